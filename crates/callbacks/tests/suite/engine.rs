//! The engine inside Burn's real training loop: hook order, stop, learning
//! rate, model restore and epoch logs, on a tiny real model.

use crate::common;

use std::sync::{Arc, Mutex};

use burn::train::logger::FileMetricLogger;
use burn::train::metric::NumericEntry;
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, ModelSnapshot, Result};
use common::{Tiny, weights};

/// Records every hook call as a string.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn log(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
    fn take(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Callback for Recorder {
    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.log("train_begin".into());
        Ok(())
    }
    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        self.log("train_end".into());
        Ok(())
    }
    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.log(format!("epoch_begin {epoch}"));
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        self.log(format!("epoch_end {epoch}"));
        Ok(())
    }
    fn on_train_batch_begin(&mut self, batch: usize, _ctx: &mut Context) -> Result<()> {
        self.log(format!("batch_begin {batch}"));
        Ok(())
    }
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _logs: &mut Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        self.log(format!("batch_end {batch}"));
        Ok(())
    }
    fn on_validation_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.log("val_begin".into());
        Ok(())
    }
    fn on_validation_batch_end(
        &mut self,
        batch: usize,
        _logs: &Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        self.log(format!("val_batch_end {batch}"));
        Ok(())
    }
    fn on_validation_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        self.log("val_end".into());
        Ok(())
    }
}

#[test]
fn hooks_fire_in_keras_order_for_two_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let callbacks = Callbacks::new().with(recorder.clone());
    common::train(dir.path(), 2, 8, 4, callbacks, |t| t);
    let mut expected = vec!["train_begin".to_string()];
    for epoch in 0..2 {
        expected.push(format!("epoch_begin {epoch}"));
        for batch in 0..2 {
            expected.push(format!("batch_begin {batch}"));
            expected.push(format!("batch_end {batch}"));
        }
        expected.extend([
            "val_begin".into(),
            "val_batch_end 0".into(),
            "val_end".into(),
        ]);
        expected.push(format!("epoch_end {epoch}"));
    }
    expected.push("train_end".into());
    assert_eq!(recorder.take(), expected);
}

/// Stops from `on_train_batch_end` at a given (epoch, batch).
struct StopAt(usize, usize);

impl Callback for StopAt {
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        if ctx.progress().epoch == self.0 && batch == self.1 {
            ctx.stop_training("test stop");
        }
        Ok(())
    }
}

#[test]
fn stop_in_batch_end_ends_epoch_early_but_runs_end_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let callbacks = Callbacks::new().with(StopAt(0, 1)).with(recorder.clone());
    let outcome = callbacks.outcome();
    let result = common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    let events = recorder.take();
    assert_eq!(
        events,
        [
            "train_begin",
            "epoch_begin 0",
            "batch_begin 0",
            "batch_end 0",
            "batch_begin 1",
            "batch_end 1",
            "val_begin",
            "val_batch_end 0",
            "val_end",
            "epoch_end 0",
            "train_end"
        ]
    );
    assert_eq!(outcome.get().stop_reason.as_deref(), Some("test stop"));
    assert_eq!(
        result.interrupted.and_then(|i| i.reason).as_deref(),
        Some("test stop")
    );
}

/// Sets the rate at the end of epoch 0 and records, for each step, the rate
/// Burn's `Learner` reports it used.
#[derive(Clone, Default)]
struct LrProbe {
    used: Arc<Mutex<Vec<(usize, f64)>>>,
}

impl Callback for LrProbe {
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let used = ctx.last_step_learning_rate().expect("a step was taken");
        self.used.lock().unwrap().push((ctx.progress().epoch, used));
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if epoch == 0 {
            ctx.set_learning_rate(0.00123)?;
            assert_eq!(ctx.learning_rate(), Some(0.00123));
        }
        Ok(())
    }
}

#[test]
fn learning_rate_set_at_epoch_end_is_used_by_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let probe = LrProbe::default();
    common::train(
        dir.path(),
        2,
        8,
        4,
        Callbacks::new().with(probe.clone()),
        |t| t,
    );
    let used = probe.used.lock().unwrap().clone();
    assert_eq!(used, [(0, 1e-2), (0, 1e-2), (1, 0.00123), (1, 0.00123)]);
}

/// Snapshots the model after epoch 0 and puts it back at train end.
#[derive(Clone, Default)]
struct RestoreFirst {
    kept: Arc<Mutex<Option<ModelSnapshot>>>,
}

impl Callback for RestoreFirst {
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if epoch == 0 {
            *self.kept.lock().unwrap() = Some(ctx.snapshot_model());
        }
        Ok(())
    }
    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        let kept = self.kept.lock().unwrap();
        ctx.restore_model(kept.as_ref().unwrap())
    }
}

#[test]
fn restoring_an_earlier_model_makes_it_the_final_model() {
    let dir = tempfile::tempdir().unwrap();
    let restore = RestoreFirst::default();
    let result = common::train(
        dir.path(),
        3,
        8,
        4,
        Callbacks::new().with(restore.clone()),
        |t| t,
    );
    let kept = restore.kept.lock().unwrap();
    let epoch0: &Tiny = kept.as_ref().unwrap().downcast_ref().unwrap();
    let final_weights = weights(&result.model);
    assert_eq!(final_weights, weights(epoch0));
    // And it is not simply the untouched initial model or the last one.
    assert_eq!(final_weights.len(), 15);
}

/// Keeps the epoch-end logs.
#[derive(Clone, Default)]
struct KeepLogs {
    logs: Arc<Mutex<Vec<Logs>>>,
}

impl Callback for KeepLogs {
    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        self.logs.lock().unwrap().push(logs.clone());
        Ok(())
    }
}

/// The mean of the entries Burn's own file logger wrote for one metric.
fn burn_file_mean(dir: &std::path::Path, split: &str, epoch: usize, metric: &str) -> f64 {
    let text = std::fs::read_to_string(
        dir.join(split)
            .join(format!("epoch-{epoch}"))
            .join(format!("{metric}.log")),
    )
    .unwrap();
    let entries: Vec<NumericEntry> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| NumericEntry::deserialize(l).unwrap())
        .collect();
    if let Some(NumericEntry::Final(v)) = entries.last() {
        return *v;
    }
    let (sum, n) = entries.iter().fold((0.0, 0usize), |(s, n), e| match e {
        NumericEntry::Value(v) => (s + v, n + 1),
        NumericEntry::Aggregated {
            aggregated_value,
            count,
        } => (s + aggregated_value * *count as f64, n + count),
        NumericEntry::Final(_) => unreachable!(),
    });
    sum / n as f64
}

#[test]
fn epoch_logs_hold_the_values_of_burns_metric_store() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_dir = dir.path().join("burn-metrics");
    let keep = KeepLogs::default();
    let md = metrics_dir.clone();
    common::train(
        dir.path(),
        2,
        12,
        4,
        Callbacks::new().with(keep.clone()),
        move |t| t.with_metric_logger(FileMetricLogger::new(md)),
    );
    let logs = keep.logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 2);
    for (epoch, logs) in logs.iter().enumerate() {
        let keys: Vec<&str> = logs.keys().collect();
        assert_eq!(keys, ["accuracy", "loss", "val_accuracy", "val_loss"]);
        // Burn's accuracy is in percent; Keras's (and so our logs') a fraction.
        for (key, split, metric, scale) in [
            ("loss", "train", "Loss", 1.0),
            ("accuracy", "train", "Accuracy", 0.01),
            ("val_loss", "valid", "Loss", 1.0),
            ("val_accuracy", "valid", "Accuracy", 0.01),
        ] {
            let burn = burn_file_mean(&metrics_dir, split, epoch + 1, metric) * scale;
            let ours = logs.get(key).unwrap();
            assert!(
                (ours - burn).abs() <= 1e-6 * burn.abs().max(1.0),
                "{key} epoch {epoch}: ours {ours}, Burn {burn}"
            );
        }
    }
}

/// Lists, at train end, the files a directory holds.
#[derive(Clone, Default)]
struct ListAtTrainEnd {
    dir: std::path::PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Callback for ListAtTrainEnd {
    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        *self.seen.lock().unwrap() = file_names(&self.dir);
        Ok(())
    }
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn checkpoints_written_off_the_training_thread_land_in_order_before_train_end() {
    use burnfit_callbacks::builtins::{
        BackupAndRestore, BackupAndRestoreConfig, BackupFrequency, ModelCheckpoint,
        ModelCheckpointConfig,
    };
    use burnfit_callbacks::checkpoint_file::CheckpointFile;

    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("ckpt");
    let backups = dir.path().join("backup");
    let listing = ListAtTrainEnd {
        dir: checkpoints.clone(),
        ..Default::default()
    };
    let logs = KeepLogs::default();
    let callbacks = Callbacks::new()
        .with(logs.clone())
        .with(
            ModelCheckpoint::new(ModelCheckpointConfig {
                filepath: checkpoints
                    .join("epoch{epoch:02d}.bpk")
                    .to_string_lossy()
                    .into_owned(),
                monitor: "loss".into(),
                save_top_k: Some(2),
                save_weights_only: true,
                ..Default::default()
            })
            .unwrap(),
        )
        .with(
            BackupAndRestore::new(BackupAndRestoreConfig {
                backup_dir: backups.to_string_lossy().into_owned(),
                save_freq: BackupFrequency::Batches(3),
                delete_checkpoint: false,
                keep: 1,
            })
            .unwrap(),
        )
        .with(listing.clone());
    // 5 epochs of 4 batches: a backup every 3 batches, so 6 backups queued
    // and 5 deletions after them.
    common::train(dir.path(), 5, 16, 4, callbacks, |t| t);

    // Top 2 epochs by training loss (Keras's 1-based epoch in the name).
    let losses: Vec<f64> = logs
        .logs
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.get("loss").unwrap())
        .collect();
    let mut order: Vec<usize> = (0..losses.len()).collect();
    order.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]));
    let mut expected: Vec<String> = order[..2]
        .iter()
        .map(|e| format!("epoch{:02}.bpk", e + 1))
        .collect();
    expected.sort();
    assert_eq!(file_names(&checkpoints), expected, "losses {losses:?}");
    // Every write had landed when on_train_end ran.
    assert_eq!(*listing.seen.lock().unwrap(), expected);
    for name in &expected {
        let bytes = std::fs::read(checkpoints.join(name)).unwrap();
        assert!(bytes.len() > 100, "{name} is a whole record");
    }
    // One backup kept, the newest (global step 18 of 20 batches), complete.
    let kept = file_names(&backups);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains("000000000018"), "{kept:?}");
    CheckpointFile::load(&backups.join(&kept[0])).unwrap();
}

#[test]
fn the_engine_and_the_testing_harness_call_the_hooks_in_the_same_order() {
    use burnfit_callbacks::CallbackList;
    use burnfit_callbacks::testing::{Script, ScriptedControl, drive};

    // 2 epochs of 2 training batches (8 items, batches of 4) and 1
    // validation batch, in Burn's real loop…
    let dir = tempfile::tempdir().unwrap();
    let engine = Recorder::default();
    common::train(
        dir.path(),
        2,
        8,
        4,
        Callbacks::new().with(engine.clone()),
        |t| t,
    );
    // …and the same shape replayed by the harness.
    let harness = Recorder::default();
    let mut list = CallbackList::new();
    list.push(harness.clone());
    let logs = || Logs::from_iter([("loss", 1.0), ("val_loss", 1.0)]);
    let script = Script::from_epochs([logs(), logs()])
        .with_batches(vec![vec![logs(), logs()], vec![logs(), logs()]])
        .with_valid_batches(vec![1, 1]);
    let trace = drive(&mut list, &mut ScriptedControl::new(0.01), &script);
    assert!(trace.error.is_none());
    assert_eq!(harness.take(), engine.take());
}

/// Stops training from outside (as Ctrl-C does through Burn's
/// `Interrupter`) after batch `batch` of epoch `epoch`, and records how
/// `on_train_end` saw the end.
#[derive(Clone, Default)]
struct InterruptAt {
    at: (usize, usize),
    interrupter: Arc<Mutex<Option<burn::train::Interrupter>>>,
    end: Arc<Mutex<Option<burnfit_callbacks::TrainEnd>>>,
}

impl Callback for InterruptAt {
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        if (ctx.progress().epoch, batch) == self.at {
            let interrupter = self.interrupter.lock().unwrap();
            interrupter.as_ref().unwrap().stop(Some("test interrupt"));
        }
        Ok(())
    }
    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        *self.end.lock().unwrap() = ctx.train_end();
        Ok(())
    }
}

fn backup_callback(dir: &std::path::Path, every_batches: Option<u64>) -> impl Callback + use<> {
    use burnfit_callbacks::builtins::{BackupAndRestore, BackupAndRestoreConfig, BackupFrequency};
    BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: dir.to_string_lossy().into_owned(),
        save_freq: every_batches.map_or(BackupFrequency::Epoch, BackupFrequency::Batches),
        delete_checkpoint: false,
        keep: 2,
    })
    .unwrap()
}

/// The epoch logs of an uninterrupted 3-epoch run (4 batches an epoch).
fn straight_logs() -> Vec<Logs> {
    let dir = tempfile::tempdir().unwrap();
    let keep = KeepLogs::default();
    common::train(
        dir.path(),
        3,
        16,
        4,
        Callbacks::new().with(keep.clone()),
        |t| t,
    );
    keep.logs.lock().unwrap().clone()
}

#[test]
fn an_interrupt_mid_epoch_backs_up_at_that_batch_and_the_resume_matches_the_straight_run() {
    let expected = straight_logs();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backup");

    let interrupt = InterruptAt {
        at: (1, 1),
        ..Default::default()
    };
    let first = KeepLogs::default();
    let callbacks = Callbacks::new()
        .with(backup_callback(&backups, None))
        .with(first.clone())
        .with(interrupt.clone());
    let outcome = callbacks.outcome();
    let slot = interrupt.interrupter.clone();
    common::train(dir.path(), 3, 16, 4, callbacks, move |t| {
        *slot.lock().unwrap() = Some(t.interrupter());
        t
    });
    assert!(
        matches!(
            interrupt.end.lock().unwrap().as_ref(),
            Some(burnfit_callbacks::TrainEnd::Interrupted(reason)) if reason == "test interrupt"
        ),
        "{:?}",
        interrupt.end.lock().unwrap()
    );
    let outcome = outcome.get();
    assert_eq!(outcome.stopped_at, Some((1, 2)), "epoch 1, 2 batches done");
    // The epoch-0 backup and the interrupt's backup at global step 6.
    let newest = burnfit_callbacks::builtins::BackupAndRestore::backups(&backups);
    assert!(newest[0].ends_with("backup-000000000006.bfk"), "{newest:?}");
    let at = burnfit_callbacks::engine::BackupProgress::read(&newest[0]).unwrap();
    assert_eq!((at.epoch, at.epoch_ended, at.batches_done), (1, false, 2));

    // Resume: epochs 1 and 2 exactly as if nothing had happened, epoch 1's
    // metrics averaged over all four of its batches.
    let resumed = KeepLogs::default();
    let callbacks = Callbacks::new()
        .with(backup_callback(&backups, None))
        .with(resumed.clone());
    let outcome = callbacks.outcome();
    common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    assert_eq!(outcome.get().resumed_at, Some((1, 2)));
    let mut all = first.logs.lock().unwrap().clone();
    all.extend(resumed.logs.lock().unwrap().iter().cloned());
    assert_eq!(all, expected);
}

/// Fails at the first validation: training ends at once, as a kill would.
struct FailAtValidation;

impl Callback for FailAtValidation {
    fn on_validation_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Err(burnfit_callbacks::CallbackError::Unsupported(
            "killed".into(),
        ))
    }
}

#[test]
fn a_backup_on_an_epochs_last_batch_resumes_into_that_epochs_validation() {
    let expected = straight_logs();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backup");
    // A backup every 4 batches: on the last batch of each epoch.
    let callbacks = Callbacks::new()
        .with(backup_callback(&backups, Some(4)))
        .with(FailAtValidation);
    let outcome = callbacks.outcome();
    common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    assert!(outcome.get().error.is_some());

    let resumed = KeepLogs::default();
    let callbacks = Callbacks::new()
        .with(backup_callback(&backups, Some(4)))
        .with(resumed.clone());
    common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    let resumed = resumed.logs.lock().unwrap().clone();
    assert_eq!(
        resumed, expected,
        "no NaN row, every epoch as in the straight run"
    );
}

/// Records the gradient-checkpointing strategy of the model's device.
#[derive(Clone, Default)]
struct DeviceProbe(Arc<Mutex<Option<String>>>);

impl Callback for DeviceProbe {
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        use burn::module::Module;
        let model: Tiny = ctx.model().unwrap();
        let strategy = model.devices()[0].gradient_checkpointing_strategy();
        *self.0.lock().unwrap() = Some(format!("{strategy:?}"));
        Ok(())
    }
}

#[test]
fn gradient_checkpointing_under_callbacks_checkpoints_and_trains_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let plain_probe = DeviceProbe::default();
    let plain = common::train(
        dir.path(),
        2,
        8,
        4,
        Callbacks::new().with(plain_probe.clone()),
        |t| t,
    );
    // Burn keeps a parameter's checkpointing strategy when it moves, so the
    // model is built on a checkpointing device; the engine trains it there.
    let probe = DeviceProbe::default();
    let checkpointed = common::train_on(
        common::device().autodiff().gradient_checkpointing(),
        dir.path(),
        2,
        8,
        4,
        Callbacks::new().with(probe.clone()),
        |t| t,
    );
    assert_eq!(
        plain_probe.0.lock().unwrap().as_deref(),
        Some("Some(Disabled)")
    );
    assert_eq!(probe.0.lock().unwrap().as_deref(), Some("Some(Balanced)"));
    let (a, b) = (weights(&plain.model), weights(&checkpointed.model));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6, "{a:?} vs {b:?}");
    }
}

/// The same on two devices: each worker trains a copy of the model that
/// keeps its parameters' checkpointing strategy (and so can take the
/// batches of its checkpointing device).
#[test]
fn gradient_checkpointing_holds_on_two_devices() {
    let dir = tempfile::tempdir().unwrap();
    let checkpointing = common::device().autodiff().gradient_checkpointing();
    let on_two = |device: burn::tensor::Device| {
        common::train_on(
            device.clone(),
            dir.path(),
            2,
            8,
            4,
            Callbacks::new().devices(vec![device.clone(), device]),
            |t| t,
        )
    };
    let plain = on_two(common::device().autodiff());
    let checkpointed = on_two(checkpointing);
    let (a, b) = (weights(&plain.model), weights(&checkpointed.model));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6, "{a:?} vs {b:?}");
    }
}

/// Two workers on the CPU device.
fn two_devices() -> Vec<burn::tensor::Device> {
    vec![common::device(), common::device()]
}

#[test]
fn two_devices_at_half_the_batch_train_the_same_weights_as_one_device() {
    // 33 items: shards of 16 and 17, so the last step has data on device 1
    // only (one item): it alone makes that update.
    let items = common::items(33, 5);
    let dir = tempfile::tempdir().unwrap();
    let one = common::train_items(
        dir.path(),
        3,
        common::interleaved(&items, 4),
        8,
        Callbacks::new(),
    );
    let two = common::train_items(
        dir.path(),
        3,
        items.clone(),
        4,
        Callbacks::new().devices(two_devices()),
    );
    let (a, b) = (weights(&one.model), weights(&two.model));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5, "one device {a:?}\ntwo devices {b:?}");
    }
    // And the sum of the two is a different update (Burn's MultiDevice).
    let summed = common::train_items(
        dir.path(),
        3,
        items,
        4,
        Callbacks::new()
            .devices(two_devices())
            .gradient_reduction(burnfit_callbacks::engine::GradientReduction::Sum),
    );
    assert_ne!(weights(&summed.model), b);
}

#[test]
fn on_two_devices_hooks_run_once_per_step_and_stop_lr_and_restore_act_on_the_learner() {
    let dir = tempfile::tempdir().unwrap();
    let items = common::items(16, 1);
    // 16 items, 2 devices, 4 per device: 2 steps an epoch.
    let recorder = Recorder::default();
    let probe = LrProbe::default();
    let restore = RestoreFirst::default();
    let result = common::train_items(
        dir.path(),
        2,
        items.clone(),
        4,
        Callbacks::new()
            .with(recorder.clone())
            .with(probe.clone())
            .with(restore.clone())
            .devices(two_devices()),
    );
    let events = recorder.take();
    let steps = events.iter().filter(|e| e.starts_with("batch_end")).count();
    assert_eq!(steps, 4, "{events:?}");
    assert_eq!(
        *probe.used.lock().unwrap(),
        [(0, 1e-2), (0, 1e-2), (1, 0.00123), (1, 0.00123)]
    );
    let kept = restore.kept.lock().unwrap();
    let epoch0: &Tiny = kept.as_ref().unwrap().downcast_ref().unwrap();
    assert_eq!(weights(&result.model), weights(epoch0));

    let recorder = Recorder::default();
    let callbacks = Callbacks::new()
        .with(StopAt(0, 0))
        .with(recorder.clone())
        .devices(two_devices());
    let outcome = callbacks.outcome();
    common::train_items(dir.path(), 3, items, 4, callbacks);
    let events = recorder.take();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("batch_end")).count(),
        1
    );
    assert_eq!(outcome.get().stop_reason.as_deref(), Some("test stop"));
}

#[test]
fn a_panicking_device_worker_ends_training_with_an_error_naming_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = common::items(16, 1);
    // Item 12 is in the second half: device 1's shard.
    items[12].x[0] = 999.0;
    let backups = dir.path().join("backup");
    let callbacks = Callbacks::new()
        .with(backup_callback(&backups, None))
        .devices(two_devices());
    let outcome = callbacks.outcome();
    common::train_items(dir.path(), 3, items, 4, callbacks);
    let outcome = outcome.get();
    let error = outcome.error.unwrap().message;
    assert!(
        error.contains("device 1") && error.contains("poisoned item"),
        "{error}"
    );
    // The poisoned item is in the first epoch's second step: the first step
    // was applied, the failed one was not, and no epoch ended.
    assert!(outcome.epochs.is_empty());
    assert_eq!(outcome.global_step, 1);
    assert!(burnfit_callbacks::builtins::BackupAndRestore::backups(&backups).is_empty());
}

/// `Tiny` behind a dropout layer: every step draws random numbers.
#[derive(burn::module::Module, Debug)]
struct Noisy {
    tiny: Tiny,
    dropout: burn::nn::Dropout,
}

impl Noisy {
    fn step(&self, batch: common::Batch) -> burn::train::ClassificationOutput {
        let x = self.dropout.forward(batch.x);
        self.tiny.classify(common::Batch { x, y: batch.y })
    }
}

impl burn::train::TrainStep for Noisy {
    type Input = common::Batch;
    type Output = burn::train::ClassificationOutput;
    fn step(&self, batch: common::Batch) -> burn::train::TrainOutput<Self::Output> {
        let item = Noisy::step(self, batch);
        burn::train::TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl burn::train::InferenceStep for Noisy {
    type Input = common::Batch;
    type Output = burn::train::ClassificationOutput;
    fn step(&self, batch: common::Batch) -> Self::Output {
        Noisy::step(self, batch)
    }
}

fn noisy_weights(seed: u64) -> Vec<f32> {
    use burn::train::metric::LossMetric;
    use burn::train::{Learner, SupervisedTraining};
    use burnfit_callbacks::WithCallbacks;
    let dir = tempfile::tempdir().unwrap();
    let device = common::device().autodiff();
    let model = Noisy {
        tiny: Tiny::new(&device),
        dropout: burn::nn::DropoutConfig::new(0.3).init(),
    };
    let mut callbacks = Callbacks::new().deterministic(seed).devices(two_devices());
    let lr = callbacks.lr_scheduler(1e-2);
    let result = SupervisedTraining::new(
        dir.path(),
        common::loader(common::items(32, 3), 4),
        common::loader(common::items(8, 2), 8),
    )
    .metrics((LossMetric::new(),))
    .num_epochs(2)
    .renderer(Box::new(burnfit_callbacks::engine::SilentRenderer))
    .with_application_logger(None)
    .with_callbacks(callbacks.quiet(true))
    .launch(Learner::new(
        model,
        burn::optim::AdamConfig::new().init(),
        lr,
    ));
    weights(&result.model.tiny)
}

#[test]
fn on_two_devices_the_same_seed_draws_the_same_dropout_and_trains_the_same_weights() {
    if !common::in_a_process_of_its_own(
        "engine::on_two_devices_the_same_seed_draws_the_same_dropout_and_trains_the_same_weights",
    ) {
        return;
    }
    let first = noisy_weights(7);
    assert_eq!(noisy_weights(7), first);
    assert_ne!(noisy_weights(8), first, "the seed matters");
}

/// Takes `0.3 s` in `on_train_end`, as a tracker's last uploads may.
struct SlowTrainEnd;

impl Callback for SlowTrainEnd {
    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    }
}

#[test]
fn the_training_time_leaves_out_the_train_end_hooks_closing_work() {
    let dir = tempfile::tempdir().unwrap();
    let callbacks = Callbacks::new().with(SlowTrainEnd);
    let outcome = callbacks.outcome();
    let start = std::time::Instant::now();
    common::train(dir.path(), 2, 16, 4, callbacks, |t| t);
    let whole = start.elapsed();
    let loop_time = outcome.get().training_time.expect("the loop ended");
    assert!(
        loop_time + std::time::Duration::from_millis(300) <= whole,
        "loop {loop_time:?}, launch {whole:?}"
    );
    assert_eq!(outcome.get().epochs.len(), 2, "it trained");
}
