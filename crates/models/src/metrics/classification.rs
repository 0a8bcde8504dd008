//! Classification metrics over Burn's [`ConfusionStatsInput`] (scores and
//! one-hot targets), computed as Burn 0.22's own `PrecisionMetric`,
//! `RecallMetric`, `FBetaScoreMetric` (β = 1) and `AurocMetric` compute them
//! with top-1 decisions and macro averaging, but from state kept on the
//! host that a backup can save ([`ConfusionMetric::epoch_state`],
//! [`AucMetric::epoch_state`]).
//!
//! Values are fractions (Keras's scale), not Burn's percentages:
//!
//! * precision of a class = TP / (TP + FP), 0 where it was never predicted;
//! * recall = TP / (TP + FN), 0 where it never occurs;
//! * F1 = 2·TP / (2·TP + FP + FN), left out of the mean where undefined;
//! * AUC of a class: the share of (positive, negative) pairs the scores
//!   rank right, ties counting half; classes without both are left out,
//!   and an epoch where no class has both reports 0.5 (chance).
//!
//! The epoch's value is the mean over classes of each class's value from
//! the epoch's counts (a `Final` entry); each batch also logs its own value.

use std::sync::Arc;

use burn::tensor::TensorReadError;
use burn::train::metric::{
    ConfusionStatsInput, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};

use super::state_bytes::{StateReader, StateWriter};

/// Which metric of the confusion counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfusionKind {
    /// `precision`.
    Precision,
    /// `recall`.
    Recall,
    /// `f1_score`.
    F1,
}

impl ConfusionKind {
    /// Keras's name.
    pub fn keras_name(self) -> &'static str {
        match self {
            ConfusionKind::Precision => "precision",
            ConfusionKind::Recall => "recall",
            ConfusionKind::F1 => "f1_score",
        }
    }

    /// One class's value from its counts (NaN where undefined and left out
    /// of the mean).
    fn of(self, c: Counts) -> f64 {
        let (tp, fp, fn_) = (c.tp as f64, c.fp as f64, c.fn_ as f64);
        match self {
            ConfusionKind::Precision => tp / if tp + fp == 0.0 { 1.0 } else { tp + fp },
            ConfusionKind::Recall => tp / if tp + fn_ == 0.0 { 1.0 } else { tp + fn_ },
            ConfusionKind::F1 => 2.0 * tp / (2.0 * tp + fp + fn_),
        }
    }

    /// The mean over classes of the defined values (NaN if none is).
    fn macro_mean(self, counts: &[Counts]) -> f64 {
        let defined: Vec<f64> = counts
            .iter()
            .map(|&c| self.of(c))
            .filter(|v| !v.is_nan())
            .collect();
        defined.iter().sum::<f64>() / defined.len() as f64
    }
}

/// One class's confusion counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

/// The index of each row's highest score (the first of equal ones; NaN
/// never wins), for `classes` scores per row.
fn top1(scores: &[f32], classes: usize) -> impl Iterator<Item = usize> + '_ {
    scores.chunks(classes).map(|row| {
        let mut best = 0;
        for (index, &score) in row.iter().enumerate() {
            if score > row[best] || row[best].is_nan() {
                best = index;
            }
        }
        best
    })
}

/// Host copies of a batch: scores and one-hot targets, row-major, and the
/// number of classes.
fn host(input: &ConfusionStatsInput) -> Result<(Vec<f32>, Vec<bool>, usize), TensorReadError> {
    let [_, classes] = input.predictions.dims();
    let scores = input.predictions.clone().try_into_vec_as::<f32>()?;
    let targets = input.targets.clone().try_into_vec_as::<bool>()?;
    Ok((scores, targets, classes.max(1)))
}

/// Precision, recall or F1 of a multi-class classifier: top-1 decisions,
/// macro-averaged over classes.
#[derive(Clone)]
pub struct ConfusionMetric {
    kind: ConfusionKind,
    name: MetricName,
    /// The epoch's counts, by class.
    epoch: Vec<Counts>,
    /// The last batch's value and rows.
    batch: Option<(f64, usize)>,
}

impl ConfusionMetric {
    /// A metric of `kind`, named by Keras's name.
    pub fn new(kind: ConfusionKind) -> Self {
        Self {
            kind,
            name: Arc::new(kind.keras_name().to_string()),
            epoch: Vec::new(),
            batch: None,
        }
    }

    fn epoch_value(&self) -> f64 {
        self.kind.macro_mean(&self.epoch)
    }

    /// The epoch's counts so far, for a mid-epoch backup.
    pub fn epoch_state(&self) -> Vec<u8> {
        let mut out = StateWriter::default();
        out.u64(self.epoch.len() as u64);
        for c in &self.epoch {
            out.u64(c.tp);
            out.u64(c.fp);
            out.u64(c.fn_);
        }
        out.finish()
    }

    /// Puts back counts [`epoch_state`](Self::epoch_state) returned.
    pub fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut input = StateReader::new(bytes);
        let classes = input.u64()? as usize;
        if classes > bytes.len() / 24 {
            return Err("the saved state is cut short".into());
        }
        let mut epoch = Vec::with_capacity(classes);
        for _ in 0..classes {
            epoch.push(Counts {
                tp: input.u64()?,
                fp: input.u64()?,
                fn_: input.u64()?,
            });
        }
        input.end()?;
        self.epoch = epoch;
        Ok(())
    }
}

impl Metric for ConfusionMetric {
    type Input = ConfusionStatsInput;

    fn name(&self) -> MetricName {
        self.name.clone()
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
        input: &ConfusionStatsInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let (scores, targets, classes) = host(input)?;
        let mut batch = vec![Counts::default(); classes];
        for (row, predicted) in top1(&scores, classes).enumerate() {
            for (class, counts) in batch.iter_mut().enumerate() {
                match (class == predicted, targets[row * classes + class]) {
                    (true, true) => counts.tp += 1,
                    (true, false) => counts.fp += 1,
                    (false, true) => counts.fn_ += 1,
                    (false, false) => {}
                }
            }
        }
        if self.epoch.len() < classes {
            self.epoch.resize(classes, Counts::default());
        }
        for (total, counts) in self.epoch.iter_mut().zip(&batch) {
            total.tp += counts.tp;
            total.fp += counts.fp;
            total.fn_ += counts.fn_;
        }
        let value = self.kind.macro_mean(&batch);
        self.batch = Some((value, scores.len() / classes));
        let entry = self
            .value()
            .unwrap_or(NumericEntry::Value(f64::NAN))
            .serialize();
        Ok(SerializedEntry::new(
            format!("epoch {:.4} - batch {value:.4}", self.epoch_value()),
            entry,
        ))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let value = self.epoch_value();
        Ok(SerializedEntry::new(
            format!("{value:.4}"),
            NumericEntry::Final(value).serialize(),
        ))
    }

    fn clear(&mut self) {
        self.epoch.clear();
        self.batch = None;
    }
}

impl Numeric for ConfusionMetric {
    fn value(&self) -> Option<NumericEntry> {
        let (value, rows) = self.batch?;
        (!value.is_nan()).then_some(NumericEntry::Aggregated {
            aggregated_value: value,
            count: rows,
        })
    }

    fn running_value(&self) -> Option<NumericEntry> {
        let value = self.epoch_value();
        (!value.is_nan()).then_some(NumericEntry::Value(value))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.epoch_value())
    }
}

/// Macro-averaged one-vs-rest ROC AUC over all of the epoch's scores.
#[derive(Clone)]
pub struct AucMetric {
    name: MetricName,
    classes: usize,
    /// The epoch's scores, row-major.
    scores: Vec<f32>,
    /// Each score's target (one-hot), as 1.0 or 0.0.
    targets: Vec<f32>,
}

impl Default for AucMetric {
    fn default() -> Self {
        Self::new()
    }
}

impl AucMetric {
    /// The metric, named `auc` (Keras's name).
    pub fn new() -> Self {
        Self {
            name: Arc::new("auc".to_string()),
            classes: 0,
            scores: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The epoch's AUC: the mean over classes with both positives and
    /// negatives; 0.5 when no class has both.
    fn epoch_value(&self) -> f64 {
        let classes = self.classes.max(1);
        let rows = self.scores.len() / classes;
        let mut samples = Vec::with_capacity(rows);
        let (mut sum, mut count) = (0.0, 0);
        for class in 0..classes {
            samples.clear();
            samples.extend((0..rows).map(|row| {
                let index = row * classes + class;
                (self.scores[index] as f64, self.targets[index] > 0.5)
            }));
            if let Some(auc) = sorted_auc(&mut samples) {
                sum += auc;
                count += 1;
            }
        }
        if count == 0 { 0.5 } else { sum / count as f64 }
    }

    /// The epoch's scores and targets so far, for a mid-epoch backup.
    pub fn epoch_state(&self) -> Vec<u8> {
        let mut out = StateWriter::default();
        out.u64(self.classes as u64);
        out.f32s(&self.scores);
        out.f32s(&self.targets);
        out.finish()
    }

    /// Puts back what [`epoch_state`](Self::epoch_state) returned.
    pub fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut input = StateReader::new(bytes);
        let classes = input.u64()? as usize;
        let scores = input.f32s()?;
        let targets = input.f32s()?;
        input.end()?;
        if scores.len() != targets.len() || (classes > 0 && scores.len() % classes != 0) {
            return Err("its scores and targets do not match".into());
        }
        self.classes = classes;
        self.scores = scores;
        self.targets = targets;
        Ok(())
    }
}

/// One class's AUC from its (score, is positive) pairs: one win for each
/// negative scored below a positive, half for each tie (NaN scores win
/// nothing but count in the pairs); `None` without both kinds.
fn sorted_auc(samples: &mut Vec<(f64, bool)>) -> Option<f64> {
    let positives = samples.iter().filter(|(_, positive)| *positive).count() as u128;
    let negatives = samples.len() as u128 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    samples.retain(|(score, _)| !score.is_nan());
    samples.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut negatives_below, mut twice_wins) = (0u128, 0u128);
    let mut index = 0;
    while index < samples.len() {
        let score = samples[index].0;
        let (mut group_positives, mut group_negatives) = (0u128, 0u128);
        while index < samples.len() && samples[index].0 == score {
            if samples[index].1 {
                group_positives += 1;
            } else {
                group_negatives += 1;
            }
            index += 1;
        }
        twice_wins += group_positives * (2 * negatives_below + group_negatives);
        negatives_below += group_negatives;
    }
    Some(twice_wins as f64 / (2 * positives * negatives) as f64)
}

impl Metric for AucMetric {
    type Input = ConfusionStatsInput;

    fn name(&self) -> MetricName {
        self.name.clone()
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
        input: &ConfusionStatsInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let (scores, targets, classes) = host(input)?;
        self.classes = classes;
        self.scores.extend_from_slice(&scores);
        self.targets
            .extend(targets.iter().map(|&t| if t { 1.0 } else { 0.0 }));
        Ok(SerializedEntry::new(
            "computed at the end of the epoch".into(),
            String::new(),
        ))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let value = self.epoch_value();
        Ok(SerializedEntry::new(
            format!("{value:.4}"),
            NumericEntry::Final(value).serialize(),
        ))
    }

    fn clear(&mut self) {
        self.scores.clear();
        self.targets.clear();
    }
}

impl Numeric for AucMetric {
    fn value(&self) -> Option<NumericEntry> {
        None
    }

    fn running_value(&self) -> Option<NumericEntry> {
        None
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.epoch_value())
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::{Bool, Device, Tensor, TensorData};
    use burn::train::metric::{
        AurocMetric, ClassReduction, FBetaScoreMetric, PrecisionMetric, RecallMetric,
    };

    const CLASSES: usize = 4;

    /// Uneven batches of scores (quantized, so equal scores occur across
    /// rows, never within one) and labels. Class 3 is never a label and
    /// always scores lowest: its precision and recall are 0, its F1 and
    /// AUC undefined.
    fn batches() -> Vec<(Vec<f32>, Vec<usize>)> {
        let mut seed = 12345u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as usize
        };
        [7, 16, 1, 16, 9]
            .into_iter()
            .map(|rows| {
                let mut scores = Vec::new();
                let mut labels = Vec::new();
                for _ in 0..rows {
                    let label = next() % 3;
                    for class in 0..CLASSES {
                        let score = if class == 3 {
                            -10.0
                        } else {
                            let bonus = if class == label { 0.5 } else { 0.0 };
                            (next() % 5) as f32 * 0.25 + bonus + class as f32 * 1e-3
                        };
                        scores.push(score);
                    }
                    labels.push(label);
                }
                (scores, labels)
            })
            .collect()
    }

    fn input(scores: &[f32], labels: &[usize]) -> ConfusionStatsInput {
        let device = Device::flex();
        let rows = labels.len();
        let one_hot: Vec<bool> = labels
            .iter()
            .flat_map(|&label| (0..CLASSES).map(move |class| class == label))
            .collect();
        ConfusionStatsInput {
            predictions: Tensor::<2>::from_data(
                TensorData::new(scores.to_vec(), [rows, CLASSES]),
                &device,
            ),
            targets: Tensor::<2, Bool>::from_data(
                TensorData::new(one_hot, [rows, CLASSES]),
                &device,
            ),
        }
    }

    /// The metric's epoch value after `batches`.
    fn epoch_value<M: Metric<Input = ConfusionStatsInput> + Numeric>(
        metric: &mut M,
        batches: &[(Vec<f32>, Vec<usize>)],
    ) -> f64 {
        for (scores, labels) in batches {
            metric
                .update(&input(scores, labels), &crate::metrics::test_metadata())
                .unwrap();
        }
        metric.compute().unwrap();
        metric.final_value().current()
    }

    #[test]
    fn epoch_values_equal_burns_own_metrics() {
        let data = batches();
        let cases: [(ConfusionKind, f64); 3] = [
            (
                ConfusionKind::Precision,
                epoch_value(
                    &mut PrecisionMetric::multiclass(1, ClassReduction::Macro),
                    &data,
                ),
            ),
            (
                ConfusionKind::Recall,
                epoch_value(
                    &mut RecallMetric::multiclass(1, ClassReduction::Macro),
                    &data,
                ),
            ),
            (
                ConfusionKind::F1,
                epoch_value(
                    &mut FBetaScoreMetric::multiclass(1.0, 1, ClassReduction::Macro),
                    &data,
                ),
            ),
        ];
        for (kind, burn_percent) in cases {
            let ours = epoch_value(&mut ConfusionMetric::new(kind), &data);
            assert!(
                (ours - burn_percent / 100.0).abs() < 1e-6,
                "{kind:?}: ours {ours}, Burn's {burn_percent}%"
            );
        }
        let burn_auc = epoch_value(&mut AurocMetric::multiclass(ClassReduction::Macro), &data);
        let ours = epoch_value(&mut AucMetric::new(), &data);
        assert!(
            (ours - burn_auc / 100.0).abs() < 1e-9,
            "auc: ours {ours}, Burn's {burn_auc}%"
        );
    }

    /// Trains `fresh()` on the first `split` batches, saves its state,
    /// restores it into another `fresh()` that sees the rest.
    fn resumed<M: Metric<Input = ConfusionStatsInput> + Numeric>(
        fresh: impl Fn() -> M,
        save: impl Fn(&M) -> Vec<u8>,
        restore: impl Fn(&mut M, &[u8]) -> Result<(), String>,
        data: &[(Vec<f32>, Vec<usize>)],
        split: usize,
    ) -> f64 {
        let mut first = fresh();
        for (scores, labels) in &data[..split] {
            first
                .update(&input(scores, labels), &crate::metrics::test_metadata())
                .unwrap();
        }
        let mut second = fresh();
        restore(&mut second, &save(&first)).unwrap();
        epoch_value(&mut second, &data[split..])
    }

    #[test]
    fn a_restored_state_ends_the_epoch_with_the_uninterrupted_value() {
        let data = batches();
        for split in 1..data.len() {
            for kind in [
                ConfusionKind::Precision,
                ConfusionKind::Recall,
                ConfusionKind::F1,
            ] {
                let whole = epoch_value(&mut ConfusionMetric::new(kind), &data);
                let resumed = resumed(
                    || ConfusionMetric::new(kind),
                    ConfusionMetric::epoch_state,
                    ConfusionMetric::restore_epoch_state,
                    &data,
                    split,
                );
                assert_eq!(resumed.to_bits(), whole.to_bits(), "{kind:?} at {split}");
                let fresh = epoch_value(&mut ConfusionMetric::new(kind), &data[split..]);
                assert_ne!(fresh, whole, "{kind:?}: the test data must tell them apart");
            }
            let whole = epoch_value(&mut AucMetric::new(), &data);
            let resumed = resumed(
                AucMetric::new,
                AucMetric::epoch_state,
                AucMetric::restore_epoch_state,
                &data,
                split,
            );
            assert_eq!(resumed.to_bits(), whole.to_bits(), "auc at {split}");
        }
    }

    #[test]
    fn a_damaged_state_is_refused_and_changes_nothing() {
        let data = batches();
        let mut metric = ConfusionMetric::new(ConfusionKind::F1);
        let (scores, labels) = &data[0];
        metric
            .update(&input(scores, labels), &crate::metrics::test_metadata())
            .unwrap();
        let state = metric.epoch_state();
        let mut other = ConfusionMetric::new(ConfusionKind::F1);
        assert!(
            other
                .restore_epoch_state(&state[..state.len() - 8])
                .is_err()
        );
        assert!(other.epoch.is_empty());
        let mut auc = AucMetric::new();
        assert!(auc.restore_epoch_state(&state).is_err());
        assert!(auc.scores.is_empty());
    }
}
