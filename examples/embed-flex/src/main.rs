//! Adding callbacks to your own Burn model and `SupervisedTraining`, in a
//! project of its own: this crate depends on `burn` with only `std`,
//! `train`, `autodiff` and `flex`, and on `burnfit-callbacks`; no other
//! backend, no TUI, no plotting comes with it.
//!
//! Everything here is plain Burn 0.22 (model, data, metrics, learner) except
//! the marked lines that add Keras-style callbacks.
//!
//! Run with `cargo run -p embed-flex -- [--epochs N] [--out DIR]`.

use burn::backend::FlexDevice;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep,
};

// --- your model ------------------------------------------------------------

/// A two-layer network for 2-D points.
#[derive(Module, Debug)]
pub struct TwoLayer {
    hidden: Linear,
    out: Linear,
    act: Relu,
}

#[derive(Clone, Debug)]
pub struct PointBatch {
    points: Tensor<2>,
    labels: Tensor<1, Int>,
}

impl TwoLayer {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(2, 32).init(device),
            out: LinearConfig::new(32, 2).init(device),
            act: Relu::new(),
        }
    }

    fn classify(&self, batch: PointBatch) -> ClassificationOutput {
        let logits = self
            .out
            .forward(self.act.forward(self.hidden.forward(batch.points)));
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
    }
}

impl TrainStep for TwoLayer {
    type Input = PointBatch;
    type Output = ClassificationOutput;
    fn step(&self, batch: PointBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.classify(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for TwoLayer {
    type Input = PointBatch;
    type Output = ClassificationOutput;
    fn step(&self, batch: PointBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

// --- your data: points inside (1) or outside (0) the unit circle -------------

#[derive(Clone, Debug)]
struct Point {
    xy: [f32; 2],
    label: i64,
}

#[derive(Clone, Default)]
struct PointBatcher;

impl Batcher<Point, PointBatch> for PointBatcher {
    fn batch(&self, items: Vec<Point>, device: &Device) -> PointBatch {
        let n = items.len();
        let xy: Vec<f32> = items.iter().flat_map(|p| p.xy).collect();
        let labels: Vec<i64> = items.iter().map(|p| p.label).collect();
        PointBatch {
            points: Tensor::<1>::from_floats(xy.as_slice(), device).reshape([n, 2]),
            labels: Tensor::<1, Int>::from_ints(labels.as_slice(), device),
        }
    }
}

fn points(n: usize, mut seed: u64) -> Vec<Point> {
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (u32::MAX >> 1) as f32) * 3.0 - 1.5
    };
    (0..n)
        .map(|_| {
            let xy = [next(), next()];
            let label = i64::from(xy[0] * xy[0] + xy[1] * xy[1] < 1.0);
            Point { xy, label }
        })
        .collect()
}

/// `--epochs N` (default 30) and `--out DIR` (default: a temporary directory).
fn args() -> (usize, std::path::PathBuf) {
    let mut epochs = 30;
    let mut out = std::env::temp_dir().join("burnfit-embed-flex");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--epochs", Some(n)) => epochs = n.parse().expect("--epochs takes a number"),
            ("--out", Some(dir)) => out = dir.into(),
            _ => panic!("usage: embed-flex [--epochs N] [--out DIR]"),
        }
    }
    (epochs, out)
}

fn main() -> Result<(), burnfit_callbacks::CallbackError> {
    let (epochs, dir) = args();
    let device: Device = FlexDevice.into();
    let train = DataLoaderBuilder::new(PointBatcher)
        .batch_size(32)
        .shuffle(1)
        .build(InMemDataset::new(points(2000, 1)));
    let valid = DataLoaderBuilder::new(PointBatcher)
        .batch_size(256)
        .build(InMemDataset::new(points(500, 2)));

    // --- the callbacks: a few lines ------------------------------------------
    use burnfit_callbacks::builtins::*;
    use burnfit_callbacks::{Callbacks, WithCallbacks};
    let mut callbacks = Callbacks::new()
        .with(EarlyStopping::new(EarlyStoppingConfig {
            monitor: "val_loss".into(),
            patience: 3,
            restore_best_weights: true,
            ..Default::default()
        })?)
        .with(ReduceLROnPlateau::new(ReduceLROnPlateauConfig {
            monitor: "val_loss".into(),
            factor: 0.5,
            patience: 1,
            ..Default::default()
        })?)
        .with(CSVLogger::new(dir.join("history.csv")))
        .progress(); // one Keras-style line per epoch; Burn's renderer off
    let lr = callbacks.lr_scheduler(1e-2); // a rate the callbacks may change
    let outcome = callbacks.outcome();
    // -------------------------------------------------------------------------

    let result = SupervisedTraining::new(&dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(epochs)
        .with_callbacks(callbacks) // <- the one extra call
        .launch(Learner::new(
            TwoLayer::new(&device.autodiff()),
            AdamConfig::new().init(),
            lr,
        ));

    let outcome = outcome.get();
    println!(
        "{} epochs, stop: {:?}, last logs: {:?}",
        outcome.epochs.len(),
        outcome.stop_reason,
        outcome.epochs.last().map(|(_, logs)| logs)
    );
    println!("history written to {}", dir.join("history.csv").display());
    drop(result);
    Ok(())
}
