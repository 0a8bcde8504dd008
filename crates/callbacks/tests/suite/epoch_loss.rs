//! The epoch `loss` and `val_loss` are item-weighted means of the batches'
//! losses, as Keras's: a short last batch weighs by its items.

use crate::common;

use std::sync::{Arc, Mutex};

use burn::optim::AdamConfig;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{Learner, SupervisedTraining};
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, Result, WithCallbacks};
use common::Tiny;

/// Keeps the last batch logs' running `loss` (train and validation) and
/// each epoch's logs.
#[derive(Clone, Default)]
struct LastRunning {
    seen: Arc<Mutex<Vec<(f64, f64, Logs)>>>,
    train: Arc<Mutex<f64>>,
    valid: Arc<Mutex<f64>>,
}

impl Callback for LastRunning {
    fn wants_batch_logs(&self) -> bool {
        true
    }
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        *self.train.lock().unwrap() = logs.get("loss").unwrap();
        Ok(())
    }
    fn on_validation_batch_end(
        &mut self,
        _batch: usize,
        logs: &Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        *self.valid.lock().unwrap() = logs.get("loss").unwrap();
        Ok(())
    }
    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        let train = *self.train.lock().unwrap();
        let valid = *self.valid.lock().unwrap();
        self.seen.lock().unwrap().push((train, valid, logs.clone()));
        Ok(())
    }
}

#[test]
fn epoch_loss_weights_a_short_last_batch_by_its_items() {
    let dir = tempfile::tempdir().unwrap();
    let probe = LastRunning::default();
    let device = common::device().autodiff();
    let mut callbacks = Callbacks::new().with(probe.clone());
    let lr = callbacks.lr_scheduler(1e-1);
    // 10 training items in batches of 4, 4, 2; 7 validation items in
    // batches of 3, 3, 1.
    SupervisedTraining::new(
        dir.path(),
        common::loader(common::items(10, 1), 4),
        common::loader(common::items(7, 2), 3),
    )
    .metrics((AccuracyMetric::new(), LossMetric::new()))
    .num_epochs(2)
    .renderer(Box::new(CliMetricsRenderer::new()))
    .with_application_logger(None)
    .with_callbacks(callbacks.quiet(true))
    .launch(Learner::new(
        Tiny::new(&device),
        AdamConfig::new().init(),
        lr,
    ));
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs());
    for (train, valid, logs) in seen {
        let (loss, val_loss) = (logs.get("loss").unwrap(), logs.get("val_loss").unwrap());
        assert!(
            close(loss, train),
            "loss {loss}, item-weighted running mean {train}"
        );
        assert!(
            close(val_loss, valid),
            "val_loss {val_loss}, item-weighted running mean {valid}"
        );
    }
}
