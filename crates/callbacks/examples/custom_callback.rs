//! Two custom callbacks on a real training (an MLP on the committed
//! Fashion-MNIST subset):
//!
//! * `StopWhenLossBelow` stops training as soon as the epoch's loss is below a threshold;
//! * `HeldOutAccuracy` predicts on held-out data every N epochs with the
//!   current model and records the accuracy in a table, printed at the end.
//!
//! Run with `cargo run --example custom_callback [-- --epochs N]`.

use std::sync::{Arc, Mutex};

use burn::backend::FlexDevice;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use burnfit_callbacks::engine::SilentRenderer;
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, Result, WithCallbacks};
use burnfit_models::Classifier;
use burnfit_models::data::{FashionMnist, ImageBatch, ImageBatcher};
use burnfit_models::nets::MlpConfig;

/// Stops training when the epoch's training loss drops below `threshold`.
struct StopWhenLossBelow {
    threshold: f64,
}

impl Callback for StopWhenLossBelow {
    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if let Some(loss) = logs.get("loss")
            && loss < self.threshold
        {
            println!(
                "epoch {}: loss {loss:.4} < {}, stopping",
                epoch + 1,
                self.threshold
            );
            ctx.stop_training(format!("loss below {}", self.threshold));
        }
        Ok(())
    }
}

/// Every `every` epochs, classifies a held-out batch with the current model
/// and records `(epoch, accuracy)`.
struct HeldOutAccuracy {
    every: usize,
    batch: ImageBatch,
    table: Arc<Mutex<Vec<(usize, f64)>>>,
}

impl Callback for HeldOutAccuracy {
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if !(epoch + 1).is_multiple_of(self.every) {
            return Ok(());
        }
        let model: Classifier = ctx.model().expect("the trained model is a Classifier");
        let model = model.valid();
        let device = model.devices()[0].clone();
        let images = self.batch.images.clone().to_device(&device);
        let targets = self.batch.targets.clone().to_device(&device);
        let n = targets.dims()[0];
        let predicted = model.forward(images).argmax(1).reshape([n]);
        let correct = predicted.equal(targets).int().sum().into_scalar::<i64>();
        let accuracy = correct as f64 / n as f64;
        self.table.lock().unwrap().push((epoch, accuracy));
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        println!("epoch | held-out accuracy");
        for (epoch, accuracy) in self.table.lock().unwrap().iter() {
            println!("{:>5} | {accuracy:.4}", epoch + 1);
        }
        Ok(())
    }
}

fn main() {
    let epochs = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 12,
        [flag, n] if flag == "--epochs" => n.parse().expect("--epochs takes a number"),
        _ => panic!("usage: custom_callback [--epochs N]"),
    };
    let device: Device = FlexDevice.into();
    let data = FashionMnist::load_subset().expect("the subset is committed under data/");
    // The last 200 test images are held out for the accuracy table.
    let held_out: Vec<_> = (data.test.len() - 200..data.test.len())
        .filter_map(|i| data.test.get(i).ok())
        .collect();
    let held_out = ImageBatcher::default().batch(held_out, &device);

    let train = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher::default())
        .batch_size(64)
        .shuffle(7)
        .build(data.train);
    let valid = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher::default())
        .batch_size(256)
        .build(data.test);

    let table = Arc::new(Mutex::new(Vec::new()));
    let mut callbacks = Callbacks::new()
        .with(StopWhenLossBelow { threshold: 0.6 })
        .with(HeldOutAccuracy {
            every: 2,
            batch: held_out,
            table: table.clone(),
        });
    let lr = callbacks.lr_scheduler(1e-3);
    let outcome = callbacks.outcome();

    let dir = std::env::temp_dir().join("burnfit-custom-callback");
    let model: Classifier = MlpConfig::default().init(&device.clone().autodiff()).into();
    SupervisedTraining::new(&dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(epochs)
        .renderer(Box::new(SilentRenderer))
        .with_application_logger(None)
        .with_callbacks(callbacks)
        .launch(Learner::new(model, AdamConfig::new().init(), lr));

    let outcome = outcome.lock().unwrap();
    println!(
        "trained {} epochs; stop reason: {}",
        outcome.epochs.len(),
        outcome
            .stop_reason
            .as_deref()
            .unwrap_or("none (all epochs ran)")
    );
    println!("accuracy table rows: {:?}", table.lock().unwrap());
}
