//! A tiny real Burn classifier and data for the engine tests.
#![allow(dead_code)]

use std::sync::Arc;

use burn::backend::FlexDevice;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearningResult, SupervisedTraining, TrainOutput,
    TrainStep,
};
use burnfit_callbacks::{Callbacks, WithCallbacks};

/// Logistic regression on 4 features, 3 classes.
#[derive(Module, Debug)]
pub struct Tiny {
    pub linear: Linear,
}

#[derive(Clone, Debug)]
pub struct Batch {
    pub x: Tensor<2>,
    pub y: Tensor<1, Int>,
}

impl Tiny {
    /// The same initial weights every time (no random draw), so that two
    /// runs in one test process start alike.
    pub fn new(device: &Device) -> Self {
        let weight: Vec<f32> = (0..12)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let weight = Tensor::<1>::from_floats(weight.as_slice(), device).reshape([4, 3]);
        let bias = Tensor::<1>::from_floats([0.1, -0.1, 0.0], device);
        Self {
            linear: Linear {
                weight: burn::module::Param::from_tensor(weight),
                bias: Some(burn::module::Param::from_tensor(bias)),
            },
        }
    }

    pub fn classify(&self, batch: Batch) -> ClassificationOutput {
        // A feature of 999 is a poisoned item: the step panics (to test how
        // a failing device worker is reported).
        let largest: f32 = batch.x.clone().max().into_scalar();
        assert!(largest < 900.0, "poisoned item");
        let logits = self.linear.forward(batch.x);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.y.clone());
        ClassificationOutput::new(loss, logits, batch.y)
    }
}

impl TrainStep for Tiny {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, batch: Batch) -> TrainOutput<ClassificationOutput> {
        let item = self.classify(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Tiny {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, batch: Batch) -> ClassificationOutput {
        self.classify(batch)
    }
}

#[derive(Clone, Debug)]
pub struct Item {
    pub x: [f32; 4],
    pub y: i64,
}

#[derive(Clone, Default)]
pub struct TinyBatcher;

impl Batcher<Item, Batch> for TinyBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let n = items.len();
        let xs: Vec<f32> = items.iter().flat_map(|i| i.x).collect();
        let ys: Vec<i64> = items.iter().map(|i| i.y).collect();
        Batch {
            x: Tensor::<1>::from_floats(xs.as_slice(), device).reshape([n, 4]),
            y: Tensor::<1, Int>::from_ints(ys.as_slice(), device),
        }
    }
}

/// `n` deterministic items: the class is the index of the largest of the first 3 features.
pub fn items(n: usize, seed: u64) -> Vec<Item> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32) / (u32::MAX >> 1) as f32
    };
    (0..n)
        .map(|_| {
            let x = [next(), next(), next(), next()];
            let y = (0..3).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap() as i64;
            Item { x, y }
        })
        .collect()
}

pub fn device() -> Device {
    FlexDevice.into()
}

/// Trains on `train` (batches of `batch`) with `callbacks`, starting from
/// the same initial weights as [`train`]; validation is 8 items.
pub fn train_items(
    dir: &std::path::Path,
    epochs: usize,
    train: Vec<Item>,
    batch: usize,
    mut callbacks: Callbacks,
) -> LearningResult<Tiny> {
    let device = device().autodiff();
    let lr = callbacks.lr_scheduler(1e-2);
    SupervisedTraining::new(dir, loader(train, batch), loader(items(8, 2), 8))
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(epochs)
        .renderer(Box::new(CliMetricsRenderer::new()))
        .with_application_logger(None)
        .with_callbacks(callbacks.quiet(true))
        .launch(Learner::new(
            Tiny::new(&device),
            AdamConfig::new().init(),
            lr,
        ))
}

pub fn loader(items: Vec<Item>, batch_size: usize) -> Arc<dyn DataLoader<Batch>> {
    DataLoaderBuilder::new(TinyBatcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(items))
}

/// Trains `Tiny` for `epochs` with `callbacks` (train: `n_train` items in
/// batches of `batch`, validation: 8 items in one batch).
pub fn train(
    dir: &std::path::Path,
    epochs: usize,
    n_train: usize,
    batch: usize,
    callbacks: Callbacks,
    extra: impl FnOnce(SupervisedTraining<Tiny>) -> SupervisedTraining<Tiny>,
) -> LearningResult<Tiny> {
    train_on(
        device().autodiff(),
        dir,
        epochs,
        n_train,
        batch,
        callbacks,
        extra,
    )
}

/// [`train`] with the model built on `device` (an autodiff device).
pub fn train_on(
    device: Device,
    dir: &std::path::Path,
    epochs: usize,
    n_train: usize,
    batch: usize,
    mut callbacks: Callbacks,
    extra: impl FnOnce(SupervisedTraining<Tiny>) -> SupervisedTraining<Tiny>,
) -> LearningResult<Tiny> {
    let lr = callbacks.lr_scheduler(1e-2);
    let training = SupervisedTraining::new(
        dir,
        loader(items(n_train, 1), batch),
        loader(items(8, 2), 8),
    )
    .metrics((AccuracyMetric::new(), LossMetric::new()))
    .num_epochs(epochs)
    .renderer(Box::new(CliMetricsRenderer::new()))
    .with_application_logger(None);
    let training = extra(training).with_callbacks(callbacks.quiet(true));
    training.launch(Learner::new(
        Tiny::new(&device),
        AdamConfig::new().init(),
        lr,
    ))
}

/// The tiny model's parameters, flattened: weight then bias.
pub fn weights(model: &Tiny) -> Vec<f32> {
    let mut w: Vec<f32> = model.linear.weight.val().into_data().try_to_vec().unwrap();
    w.extend(
        model
            .linear
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    w
}

/// The order in which one device sees the items that two devices see in
/// steps: step `k` of the pair is device 0's batch `k` (from the first half
/// of the data) followed by device 1's batch `k` (from the second half).
pub fn interleaved(items: &[Item], per_device: usize) -> Vec<Item> {
    let half = items.len() / 2;
    let (first, second) = items.split_at(half);
    let mut out = Vec::new();
    for k in 0..second.len().div_ceil(per_device) {
        let a = (k * per_device).min(first.len())..((k + 1) * per_device).min(first.len());
        let b = (k * per_device)..((k + 1) * per_device).min(second.len());
        out.extend_from_slice(&first[a]);
        out.extend_from_slice(&second[b]);
    }
    out
}

/// Runs the test `name` (its path in the test binary) alone, in a child
/// process of this test binary, and returns `false`; in that child it
/// returns `true`, and the caller runs the test's body. For tests that
/// compare draws from flex's random generator, which is process-wide: the
/// other tests of the binary draw from it at the same time.
pub fn in_a_process_of_its_own(name: &str) -> bool {
    const CHILD: &str = "BURNFIT_TEST_ALONE";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name}, alone:\n{printed}");
    assert!(
        printed.contains("1 passed"),
        "{name} did not run:\n{printed}"
    );
    false
}
