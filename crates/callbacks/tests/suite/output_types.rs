//! Burn's other step outputs with the callbacks: a multi-label classifier
//! (`MultiLabelClassificationOutput`) and a sequence tagger
//! (`SequenceOutput`) train with batch logs, and on two devices with
//! unequal shares their update is one device's with the whole batch (each
//! device's gradients weighted by its share of the step's items, which the
//! output's `BatchLoss::batch_size` gives).

use std::sync::{Arc, Mutex};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::LossMetric;
use burn::train::{
    InferenceStep, Learner, MultiLabelClassificationOutput, SequenceOutput, SupervisedTraining,
    TrainOutput, TrainStep,
};
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, Result, WithCallbacks};

use crate::common::{self, Item, Tiny};

/// Three labels, each on when its feature is over one half.
#[derive(Module, Debug)]
struct MultiLabel {
    linear: Linear,
}

#[derive(Clone, Debug)]
struct LabelsBatch {
    x: Tensor<2>,
    y: Tensor<2, Int>,
}

#[derive(Clone, Default)]
struct LabelsBatcher;

impl Batcher<Item, LabelsBatch> for LabelsBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> LabelsBatch {
        let n = items.len();
        let xs: Vec<f32> = items.iter().flat_map(|i| i.x).collect();
        let ys: Vec<i64> = items
            .iter()
            .flat_map(|i| i.x[..3].iter().map(|&v| i64::from(v > 0.5)))
            .collect();
        LabelsBatch {
            x: Tensor::<1>::from_floats(xs.as_slice(), device).reshape([n, 4]),
            y: Tensor::<1, Int>::from_ints(ys.as_slice(), device).reshape([n, 3]),
        }
    }
}

impl MultiLabel {
    fn output(&self, batch: LabelsBatch) -> MultiLabelClassificationOutput {
        let logits = self.linear.forward(batch.x);
        let loss = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&logits.device())
            .forward(logits.clone(), batch.y.clone());
        MultiLabelClassificationOutput::new(loss, logits, batch.y)
    }
}

impl TrainStep for MultiLabel {
    type Input = LabelsBatch;
    type Output = MultiLabelClassificationOutput;
    fn step(&self, batch: LabelsBatch) -> TrainOutput<MultiLabelClassificationOutput> {
        let item = self.output(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for MultiLabel {
    type Input = LabelsBatch;
    type Output = MultiLabelClassificationOutput;
    fn step(&self, batch: LabelsBatch) -> MultiLabelClassificationOutput {
        self.output(batch)
    }
}

/// Tags each of two positions (the item's features, then them reversed)
/// with the index of the largest of its first three.
#[derive(Module, Debug)]
struct Tagger {
    linear: Linear,
}

#[derive(Clone, Debug)]
struct TagsBatch {
    x: Tensor<3>,
    y: Tensor<2, Int>,
}

#[derive(Clone, Default)]
struct TagsBatcher;

fn largest_of_three(x: [f32; 4]) -> i64 {
    (0..3).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap() as i64
}

impl Batcher<Item, TagsBatch> for TagsBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> TagsBatch {
        let n = items.len();
        let positions: Vec<[f32; 4]> = items
            .iter()
            .flat_map(|i| {
                let mut reversed = i.x;
                reversed.reverse();
                [i.x, reversed]
            })
            .collect();
        let xs: Vec<f32> = positions.iter().flatten().copied().collect();
        let ys: Vec<i64> = positions.iter().map(|&x| largest_of_three(x)).collect();
        TagsBatch {
            x: Tensor::<1>::from_floats(xs.as_slice(), device).reshape([n, 2, 4]),
            y: Tensor::<1, Int>::from_ints(ys.as_slice(), device).reshape([n, 2]),
        }
    }
}

impl Tagger {
    fn output(&self, batch: TagsBatch) -> SequenceOutput {
        let logits = self.linear.forward(batch.x);
        let [n, positions, classes] = logits.dims();
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(
                logits.clone().reshape([n * positions, classes]),
                batch.y.clone().reshape([n * positions]),
            );
        SequenceOutput::new(loss, logits, None, batch.y)
    }
}

impl TrainStep for Tagger {
    type Input = TagsBatch;
    type Output = SequenceOutput;
    fn step(&self, batch: TagsBatch) -> TrainOutput<SequenceOutput> {
        let item = self.output(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Tagger {
    type Input = TagsBatch;
    type Output = SequenceOutput;
    fn step(&self, batch: TagsBatch) -> SequenceOutput {
        self.output(batch)
    }
}

/// Every training batch's `loss` log.
struct BatchLosses(Arc<Mutex<Vec<Option<f64>>>>);

impl Callback for BatchLosses {
    fn wants_batch_logs(&self) -> bool {
        true
    }
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        _: &mut Context,
    ) -> Result<()> {
        self.0.lock().unwrap().push(logs.get("loss"));
        Ok(())
    }
}

fn loader<B: Clone + std::fmt::Debug + Send + Sync + 'static>(
    batcher: impl Batcher<Item, B> + 'static,
    items: Vec<Item>,
    batch_size: usize,
) -> Arc<dyn DataLoader<B>> {
    DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(items))
}

/// Trains `$model` (`MultiLabel` or `Tagger`, from `Tiny`'s initial
/// weights) for 3 epochs on `$items` in batches of `$batch`, with
/// `$callbacks` and a batch-loss recorder: the trained weights and every
/// batch's loss log. (A macro: Burn's training is generic over the model's
/// output through bounds that a function would have to spell out.)
macro_rules! train {
    ($model:ident, $batcher:expr, $items:expr, $batch:expr, $callbacks:expr) => {{
        let dir = tempfile::tempdir().unwrap();
        let losses = Arc::new(Mutex::new(Vec::new()));
        let mut callbacks: Callbacks = $callbacks.with(BatchLosses(losses.clone()));
        let lr = callbacks.lr_scheduler(1e-2);
        let outcome = callbacks.outcome();
        let device = common::device().autodiff();
        let model = $model {
            linear: Tiny::new(&device).linear,
        };
        let result = SupervisedTraining::new(
            dir.path(),
            loader($batcher, $items, $batch),
            loader($batcher, common::items(8, 2), 8),
        )
        .metrics((LossMetric::new(),))
        .num_epochs(3)
        .with_application_logger(None)
        .with_callbacks(callbacks.quiet(true))
        .launch(Learner::new(model, AdamConfig::new().init(), lr));
        let outcome = outcome.get();
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        let weights = common::weights(&Tiny {
            linear: result.model.linear.clone(),
        });
        let losses = losses.lock().unwrap().clone();
        (weights, losses)
    }};
}

/// Trains `$model` on 27 items on one device in steps of 8 (interleaved as
/// two devices would take them) and on two devices in steps of 4 each:
/// shards of 13 and 14 items, so each epoch ends with 1 item on the first
/// device and 2 on the second. The two runs' weights are equal (the second
/// device's gradients weigh 2/3, not 1/2), and every batch has a finite
/// `loss` log.
macro_rules! one_device_equals_two_with_unequal_shares {
    ($model:ident, $batcher:expr) => {{
        let items = common::items(27, 5);
        let (one, one_losses) = train!(
            $model,
            $batcher,
            common::interleaved(&items, 4),
            8,
            Callbacks::new()
        );
        let (two, two_losses) = train!(
            $model,
            $batcher,
            items,
            4,
            Callbacks::new().devices(vec![common::device(), common::device()])
        );
        for losses in [&one_losses, &two_losses] {
            assert_eq!(losses.len(), 3 * 4, "4 steps an epoch, 3 epochs");
            assert!(
                losses.iter().all(|l| l.is_some_and(f64::is_finite)),
                "every batch has its loss: {losses:?}"
            );
        }
        for (x, y) in one.iter().zip(&two) {
            assert!(
                (x - y).abs() <= 1e-5,
                "one device {one:?}\ntwo devices {two:?}"
            );
        }
        assert_ne!(
            one,
            common::weights(&Tiny::new(&common::device())),
            "it trained"
        );
    }};
}

#[test]
fn a_multi_label_classifier_trains_on_one_device_as_on_two() {
    one_device_equals_two_with_unequal_shares!(MultiLabel, LabelsBatcher);
}

#[test]
fn a_sequence_tagger_trains_on_one_device_as_on_two() {
    one_device_equals_two_with_unequal_shares!(Tagger, TagsBatcher);
}
