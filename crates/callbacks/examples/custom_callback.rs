//! Two custom callbacks on a real training (an MLP on the committed
//! Fashion-MNIST subset):
//!
//! * `StopWhenLossBelow` stops training as soon as the epoch's loss is below a threshold;
//! * `HeldOutAccuracy` predicts on held-out data every N epochs with the
//!   current model (`ctx.predict`, `ctx.evaluate`) and collects
//!   `(epoch, accuracy, loss)` as a table, written as CSV at the end.
//!
//! Run with `cargo run --example custom_callback [-- --epochs N]`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::backend::FlexDevice;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining, ValidLoader};
use burnfit_callbacks::engine::SilentRenderer;
use burnfit_callbacks::predict::ContextExt;
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, Result, WithCallbacks};
use burnfit_models::Classifier;
use burnfit_models::data::{FashionMnist, ImageBatcher};
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

/// Every `every` epochs, predicts on held-out data with the current model
/// and collects `(epoch, accuracy, loss)`; writes the table as CSV at the end.
struct HeldOutAccuracy {
    every: usize,
    loader: ValidLoader<Classifier>,
    table: Arc<Mutex<Vec<(usize, f64, f64)>>>,
    csv: PathBuf,
}

impl Callback for HeldOutAccuracy {
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if !(epoch + 1).is_multiple_of(self.every) {
            return Ok(());
        }
        let (mut correct, mut total) = (0, 0);
        for out in ctx.predict::<Classifier>(&self.loader)? {
            let n = out.targets.dims()[0];
            let hits = out
                .output
                .argmax(1)
                .reshape([n])
                .equal(out.targets)
                .int()
                .sum();
            correct += hits.into_scalar::<i64>() as usize;
            total += n;
        }
        let loss = ctx
            .evaluate::<Classifier>(&self.loader)?
            .get("loss")
            .unwrap_or(f64::NAN);
        let accuracy = correct as f64 / total as f64;
        self.table.lock().unwrap().push((epoch + 1, accuracy, loss));
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        let mut csv = String::from("epoch,accuracy,loss\n");
        for (epoch, accuracy, loss) in self.table.lock().unwrap().iter() {
            csv.push_str(&format!("{epoch},{accuracy:.4},{loss:.4}\n"));
        }
        burnfit_callbacks::atomic::write_atomic(&self.csv, csv.as_bytes())?;
        print!("{csv}");
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
    let held_out = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher)
        .batch_size(100)
        .build(InMemDataset::new(held_out));

    let train = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher)
        .batch_size(64)
        .shuffle(7)
        .build(data.train);
    let valid = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher)
        .batch_size(256)
        .build(data.test);

    let dir = std::env::temp_dir().join("burnfit-custom-callback");
    let table = Arc::new(Mutex::new(Vec::new()));
    let csv = dir.join("held_out_accuracy.csv");
    let mut callbacks = Callbacks::new()
        .with(StopWhenLossBelow { threshold: 0.6 })
        .with(HeldOutAccuracy {
            every: 2,
            loader: held_out,
            table: table.clone(),
            csv: csv.clone(),
        });
    let lr = callbacks.lr_scheduler(1e-3);
    let outcome = callbacks.outcome();

    let model: Classifier = MlpConfig::default().init(&device.clone().autodiff()).into();
    SupervisedTraining::new(&dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(epochs)
        .renderer(Box::new(SilentRenderer))
        .with_application_logger(None)
        .with_callbacks(callbacks)
        .launch(Learner::new(model, AdamConfig::new().init(), lr));

    let outcome = outcome.get();
    println!(
        "trained {} epochs; stop reason: {}",
        outcome.epochs.len(),
        outcome
            .stop_reason
            .as_deref()
            .unwrap_or("none (all epochs ran)")
    );
    println!(
        "held-out accuracy: {} rows in {}",
        table.lock().unwrap().len(),
        csv.display()
    );
}
