//! A library user's own metric whose epoch value comes from state it
//! accumulates (not a mean of per-batch entries), registered with
//! `Callbacks::resumable_metric`: a run stopped in the middle of an epoch
//! and resumed from its backup logs the uninterrupted run's value. Named
//! after the invariants of `engine/metric_state.rs`.

use std::sync::{Arc, Mutex};

use burn::tensor::TensorReadError;
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use burn::train::{ClassificationOutput, SupervisedTraining};
use burnfit_callbacks::engine::{Callbacks, EpochMetricState};
use burnfit_callbacks::{Callback, Context, Logs, Result};

use crate::common::{self, Tiny};

/// The rows of a batch.
struct Rows(usize);

impl Adaptor<Rows> for ClassificationOutput {
    fn adapt(&self) -> Rows {
        Rows(self.targets.dims()[0])
    }
}

/// `items`: how many items the epoch trained on (its per-batch entries are
/// the batch's rows, whose mean is not that).
#[derive(Clone, Default)]
struct ItemsSeen {
    epoch: Arc<Mutex<u64>>,
    batch: usize,
}

impl Metric for ItemsSeen {
    type Input = Rows;

    fn name(&self) -> MetricName {
        Arc::new("items".to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        rows: &Rows,
        _metadata: &MetricMetadata,
    ) -> std::result::Result<SerializedEntry, TensorReadError> {
        self.batch = rows.0;
        *self.epoch.lock().unwrap() += rows.0 as u64;
        let value = NumericEntry::Value(rows.0 as f64);
        Ok(SerializedEntry::new(rows.0.to_string(), value.serialize()))
    }

    fn compute(&mut self) -> std::result::Result<SerializedEntry, TensorReadError> {
        let total = *self.epoch.lock().unwrap() as f64;
        Ok(SerializedEntry::new(
            total.to_string(),
            NumericEntry::Final(total).serialize(),
        ))
    }

    fn clear(&mut self) {
        *self.epoch.lock().unwrap() = 0;
    }
}

impl Numeric for ItemsSeen {
    fn value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.batch as f64))
    }

    fn running_value(&self) -> Option<NumericEntry> {
        None
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(*self.epoch.lock().unwrap() as f64)
    }
}

/// The handle the engine saves and restores.
struct ItemsState(Arc<Mutex<u64>>);

impl EpochMetricState for ItemsState {
    fn save(&self) -> Vec<u8> {
        self.0.lock().unwrap().to_le_bytes().to_vec()
    }

    fn restore(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| "not 8 bytes".to_string())?;
        *self.0.lock().unwrap() = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Each epoch's logs.
#[derive(Clone, Default)]
struct KeepLogs(Arc<Mutex<Vec<Logs>>>);

impl Callback for KeepLogs {
    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        self.0.lock().unwrap().push(logs.clone());
        Ok(())
    }
}

/// Ends training with an error at `at` (epoch, batch), before that batch,
/// as a kill would, or asks Burn's interrupter to stop after it.
#[derive(Clone)]
struct StopAt {
    at: (usize, usize),
    interrupt: bool,
    interrupter: Arc<Mutex<Option<burn::train::Interrupter>>>,
}

impl Callback for StopAt {
    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut Context) -> Result<()> {
        if !self.interrupt && (ctx.progress().epoch, batch) == self.at {
            return Err(burnfit_callbacks::CallbackError::Unsupported(
                "killed".into(),
            ));
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        if self.interrupt && (ctx.progress().epoch, batch) == self.at {
            let interrupter = self.interrupter.lock().unwrap();
            interrupter.as_ref().unwrap().stop(Some("test interrupt"));
        }
        Ok(())
    }
}

fn backups(dir: &std::path::Path, every_batches: Option<u64>) -> impl Callback + use<> {
    use burnfit_callbacks::builtins::{BackupAndRestore, BackupAndRestoreConfig, BackupFrequency};
    BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: dir.join("backups").to_string_lossy().into_owned(),
        save_freq: every_batches.map_or(BackupFrequency::Epoch, BackupFrequency::Batches),
        delete_checkpoint: false,
        keep: 2,
    })
    .unwrap()
}

/// 3 epochs of 16 items in batches of 4, with `items` registered with the
/// engine when `resumable`; returns each epoch's `items`.
fn run(
    dir: &std::path::Path,
    resumable: bool,
    callbacks: Callbacks,
    hook: impl FnOnce(&SupervisedTraining<Tiny>),
) -> Vec<f64> {
    let metric = ItemsSeen::default();
    let keep = KeepLogs::default();
    let mut callbacks = callbacks.with(keep.clone());
    if resumable {
        callbacks = callbacks.resumable_metric("items", Arc::new(ItemsState(metric.epoch.clone())));
    }
    common::train(dir, 3, 16, 4, callbacks, |t| {
        let t = t.metric_train_numeric(metric);
        hook(&t);
        t
    });
    let logs = keep.0.lock().unwrap().clone();
    logs.iter().map(|l| l.get("items").unwrap()).collect()
}

/// Stopped by `stop` in epoch 1 with backups every `every` batches, then
/// resumed: epoch 1's `items` as the resumed run logs it.
fn resumed_epoch_items(resumable: bool, stop: StopAt, every: Option<u64>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let slot = stop.interrupter.clone();
    let first = run(
        dir.path(),
        resumable,
        Callbacks::new().with(backups(dir.path(), every)).with(stop),
        move |t| *slot.lock().unwrap() = Some(t.interrupter()),
    );
    assert_eq!(first, [16.0], "epoch 0 only");
    let resumed = run(
        dir.path(),
        resumable,
        Callbacks::new().with(backups(dir.path(), every)),
        |_| {},
    );
    assert_eq!(resumed.len(), 2, "epochs 1 and 2: {resumed:?}");
    assert_eq!(resumed[1], 16.0);
    resumed[0]
}

fn stop(at: (usize, usize), interrupt: bool) -> StopAt {
    StopAt {
        at,
        interrupt,
        interrupter: Arc::default(),
    }
}

#[test]
fn a_restored_metric_ends_its_epoch_as_the_uninterrupted_run_does() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), true, Callbacks::new(), |_| {}), [16.0; 3]);
    // Interrupted after batch 1 of epoch 1: the backup is written once
    // the training split has ended (and Burn has cleared the metric).
    assert_eq!(resumed_epoch_items(true, stop((1, 1), true), None), 16.0);
    // Unregistered, the resumed epoch reports the mean of its entries.
    assert_eq!(resumed_epoch_items(false, stop((1, 1), true), None), 4.0);
}

#[test]
fn state_is_taken_once_every_batch_so_far_reached_the_metric() {
    // A backup at the end of every batch, then a failure before batch 3 of
    // epoch 1: the last backup, after batch 2, holds its 12 items so far.
    assert_eq!(
        resumed_epoch_items(true, stop((1, 3), false), Some(1)),
        16.0
    );
}
