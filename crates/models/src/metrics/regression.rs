//! Regression metrics Burn 0.22 does not ship: mean absolute error, mean
//! squared error, root mean squared error and the coefficient of
//! determination (R²), as Burn [`Metric`]s over [`RegressionOutput`].
//!
//! Each accumulates over the epoch and reports the epoch's value at its end
//! (a `Final` entry): MAE and MSE are also exact means of the per-batch
//! values, RMSE and R² are not, so they are computed from the epoch's sums:
//!
//! * MAE = Σ|y − ŷ| / n, MSE = Σ(y − ŷ)² / n, RMSE = √MSE;
//! * R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)², with Σ(y − ȳ)² = Σy² − (Σy)²/n over the
//!   epoch (1 when the targets do not vary and the fit is exact, 0 when they
//!   do not vary and it is not, as scikit-learn reports them).
//!
//! `n` counts target values (rows × targets).
//!
//! MAE's and MSE's per-batch entries carry their batch's count, and their
//! epoch value is the count-weighted mean of those entries (the same bits
//! Burn's store computes from them), so a run resumed mid-epoch from a
//! backup (which keeps the entries) reports what the uninterrupted run did.
//! RMSE's and R²'s epoch values need the epoch's sums: a backup keeps them
//! through [`RegressionMetric::epoch_state`].

use std::sync::Arc;

use burn::tensor::{Tensor, TensorReadError};
use burn::train::RegressionOutput;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use super::state_bytes::{StateReader, StateWriter};

/// Predictions and targets of a regression step.
pub struct RegressionInput {
    /// Predicted values, `[batch, targets]`.
    pub output: Tensor<2>,
    /// True values, `[batch, targets]`.
    pub targets: Tensor<2>,
}

impl Adaptor<RegressionInput> for RegressionOutput {
    fn adapt(&self) -> RegressionInput {
        RegressionInput {
            output: self.output.clone(),
            targets: self.targets.clone(),
        }
    }
}

/// Which regression metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegressionKind {
    /// Mean absolute error (`mae`).
    Mae,
    /// Mean squared error (`mse`).
    Mse,
    /// Root mean squared error (`rmse`).
    Rmse,
    /// Coefficient of determination (`r2_score`).
    R2,
}

impl RegressionKind {
    /// Keras's name: `mae`, `mse`, `rmse`, `r2_score`.
    pub fn keras_name(self) -> &'static str {
        match self {
            RegressionKind::Mae => "mae",
            RegressionKind::Mse => "mse",
            RegressionKind::Rmse => "rmse",
            RegressionKind::R2 => "r2_score",
        }
    }
}

/// Sums over the epoch's target values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sums {
    /// Number of target values.
    pub n: f64,
    /// Σ|y − ŷ|.
    pub abs_err: f64,
    /// Σ(y − ŷ)².
    pub sq_err: f64,
    /// Σy.
    pub y: f64,
    /// Σy².
    pub y2: f64,
}

impl Sums {
    /// The sums of a batch's predictions and targets (host values).
    pub fn of(predicted: &[f32], targets: &[f32]) -> Self {
        let mut sums = Sums::default();
        for (&p, &y) in predicted.iter().zip(targets) {
            let (p, y) = (p as f64, y as f64);
            sums.n += 1.0;
            sums.abs_err += (y - p).abs();
            sums.sq_err += (y - p) * (y - p);
            sums.y += y;
            sums.y2 += y * y;
        }
        sums
    }

    fn add(&mut self, other: Sums) {
        self.n += other.n;
        self.abs_err += other.abs_err;
        self.sq_err += other.sq_err;
        self.y += other.y;
        self.y2 += other.y2;
    }

    /// The metric over these sums (NaN without values).
    pub fn value(&self, kind: RegressionKind) -> f64 {
        if self.n == 0.0 {
            return f64::NAN;
        }
        match kind {
            RegressionKind::Mae => self.abs_err / self.n,
            RegressionKind::Mse => self.sq_err / self.n,
            RegressionKind::Rmse => (self.sq_err / self.n).sqrt(),
            RegressionKind::R2 => {
                let total = self.y2 - self.y * self.y / self.n;
                if total <= 0.0 {
                    if self.sq_err == 0.0 { 1.0 } else { 0.0 }
                } else {
                    1.0 - self.sq_err / total
                }
            }
        }
    }
}

/// One of [`RegressionKind`] as a Burn metric.
#[derive(Clone)]
pub struct RegressionMetric {
    kind: RegressionKind,
    name: MetricName,
    epoch: Sums,
    batch: Sums,
    /// Burn's running state, for the per-batch display.
    state: NumericMetricState,
    /// Σ(batch value × batch count) and Σ count of the batches' entries:
    /// MAE's and MSE's epoch value, computed as Burn's store aggregates
    /// their per-batch entries, so that a resumed epoch (whose value comes
    /// from the entries kept in the backup) gives the same bits.
    mean_sum: f64,
    mean_count: usize,
}

impl RegressionMetric {
    /// A metric of `kind`, named by Keras's name.
    pub fn new(kind: RegressionKind) -> Self {
        Self {
            kind,
            name: Arc::new(kind.keras_name().to_string()),
            epoch: Sums::default(),
            batch: Sums::default(),
            state: NumericMetricState::default(),
            mean_sum: 0.0,
            mean_count: 0,
        }
    }

    /// MAE and MSE are means of their per-batch values weighted by the
    /// batch's target values; RMSE and R² are not.
    fn is_mean(&self) -> bool {
        matches!(self.kind, RegressionKind::Mae | RegressionKind::Mse)
    }

    fn epoch_value(&self) -> f64 {
        if self.is_mean() {
            self.mean_sum / self.mean_count as f64
        } else {
            self.epoch.value(self.kind)
        }
    }

    fn format(&self) -> FormatOptions {
        FormatOptions::new(self.name.clone()).precision(4)
    }

    /// What the metric accumulated over the epoch so far (its sums), for a
    /// mid-epoch backup.
    pub fn epoch_state(&self) -> Vec<u8> {
        let e = &self.epoch;
        let mut out = StateWriter::default();
        for value in [e.n, e.abs_err, e.sq_err, e.y, e.y2, self.mean_sum] {
            out.f64(value);
        }
        out.u64(self.mean_count as u64);
        out.finish()
    }

    /// Puts back a state [`epoch_state`](Self::epoch_state) returned: the
    /// epoch then continues from those sums.
    pub fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut input = StateReader::new(bytes);
        let epoch = Sums {
            n: input.f64()?,
            abs_err: input.f64()?,
            sq_err: input.f64()?,
            y: input.f64()?,
            y2: input.f64()?,
        };
        let mean_sum = input.f64()?;
        let mean_count = input.u64()? as usize;
        input.end()?;
        self.epoch = epoch;
        self.mean_sum = mean_sum;
        self.mean_count = mean_count;
        Ok(())
    }
}

impl Metric for RegressionMetric {
    type Input = RegressionInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.kind == RegressionKind::R2,
        }
        .into()
    }

    fn update(
        &mut self,
        input: &RegressionInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let predicted = input.output.clone().into_data().convert::<f32>();
        let targets = input.targets.clone().into_data().convert::<f32>();
        let predicted = predicted.as_slice::<f32>().unwrap_or_default();
        let targets = targets.as_slice::<f32>().unwrap_or_default();
        self.batch = Sums::of(predicted, targets);
        self.epoch.add(self.batch);
        let value = self.batch.value(self.kind);
        self.state.update(value, self.batch.n as usize);
        if self.batch.n > 0.0 {
            self.mean_sum += value * self.batch.n as usize as f64;
            self.mean_count += self.batch.n as usize;
        }
        Ok(self.state.compute_update(self.format()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let value = self.epoch_value();
        Ok(SerializedEntry::new(
            format!("{value:.4}"),
            NumericEntry::Final(value).serialize(),
        ))
    }

    fn clear(&mut self) {
        self.epoch = Sums::default();
        self.batch = Sums::default();
        self.state.reset();
        self.mean_sum = 0.0;
        self.mean_count = 0;
    }
}

impl Numeric for RegressionMetric {
    fn value(&self) -> Option<NumericEntry> {
        let value = self.batch.value(self.kind);
        Some(if self.is_mean() {
            NumericEntry::Aggregated {
                aggregated_value: value,
                count: self.batch.n as usize,
            }
        } else {
            NumericEntry::Value(value)
        })
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.epoch.value(self.kind)))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.epoch_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formulas, computed directly over all the values.
    fn reference(kind: RegressionKind, predicted: &[f64], targets: &[f64]) -> f64 {
        let n = targets.len() as f64;
        let mean = targets.iter().sum::<f64>() / n;
        let sq: f64 = predicted
            .iter()
            .zip(targets)
            .map(|(p, y)| (y - p).powi(2))
            .sum();
        match kind {
            RegressionKind::Mae => {
                predicted
                    .iter()
                    .zip(targets)
                    .map(|(p, y)| (y - p).abs())
                    .sum::<f64>()
                    / n
            }
            RegressionKind::Mse => sq / n,
            RegressionKind::Rmse => (sq / n).sqrt(),
            RegressionKind::R2 => {
                1.0 - sq / targets.iter().map(|y| (y - mean).powi(2)).sum::<f64>()
            }
        }
    }

    #[test]
    fn epoch_values_from_batches_equal_the_formulas_over_all_values() {
        let targets: Vec<f32> = (0..50)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let predicted: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(i, y)| y + ((i * 7 % 5) as f32 - 2.0) * 0.1)
            .collect();
        // Uneven batches, summed.
        let mut sums = Sums::default();
        for (start, end) in [(0, 16), (16, 32), (32, 48), (48, 50)] {
            sums.add(Sums::of(&predicted[start..end], &targets[start..end]));
        }
        let p: Vec<f64> = predicted.iter().map(|&v| v as f64).collect();
        let t: Vec<f64> = targets.iter().map(|&v| v as f64).collect();
        for kind in [
            RegressionKind::Mae,
            RegressionKind::Mse,
            RegressionKind::Rmse,
            RegressionKind::R2,
        ] {
            let (ours, expected) = (sums.value(kind), reference(kind, &p, &t));
            assert!(
                (ours - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "{kind:?}: {ours} vs {expected}"
            );
        }
    }

    #[test]
    fn r2_edge_cases_follow_scikit_learn() {
        let constant = [2.0f32, 2.0, 2.0];
        assert_eq!(
            Sums::of(&constant, &constant).value(RegressionKind::R2),
            1.0
        );
        assert_eq!(
            Sums::of(&[1.0, 2.0, 3.0], &constant).value(RegressionKind::R2),
            0.0
        );
        assert!(Sums::default().value(RegressionKind::Mae).is_nan());
        // Predicting the mean scores 0; perfect predictions score 1.
        let y = [1.0f32, 2.0, 3.0, 6.0];
        assert_eq!(Sums::of(&[3.0; 4], &y).value(RegressionKind::R2), 0.0);
        assert_eq!(Sums::of(&y, &y).value(RegressionKind::R2), 1.0);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn a_restored_state_ends_the_epoch_with_the_uninterrupted_value() {
        use burn::tensor::{Device, TensorData};
        let device = Device::flex();
        let batches: Vec<(Vec<f32>, Vec<f32>)> = [5usize, 16, 3, 11]
            .iter()
            .enumerate()
            .map(|(b, &rows)| {
                let y: Vec<f32> = (0..rows)
                    .map(|i| ((i + 7 * b) as f32 * 0.61).sin())
                    .collect();
                let p = y.iter().map(|v| v * 0.8 + 0.05 * b as f32).collect();
                (p, y)
            })
            .collect();
        let feed = |metric: &mut RegressionMetric, batches: &[(Vec<f32>, Vec<f32>)]| {
            for (p, y) in batches {
                let input = RegressionInput {
                    output: Tensor::<2>::from_data(
                        TensorData::new(p.clone(), [p.len(), 1]),
                        &device,
                    ),
                    targets: Tensor::<2>::from_data(
                        TensorData::new(y.clone(), [y.len(), 1]),
                        &device,
                    ),
                };
                metric
                    .update(&input, &crate::metrics::test_metadata())
                    .unwrap();
            }
        };
        for kind in [
            RegressionKind::Mae,
            RegressionKind::Mse,
            RegressionKind::Rmse,
            RegressionKind::R2,
        ] {
            let mut whole = RegressionMetric::new(kind);
            feed(&mut whole, &batches);
            let mut first = RegressionMetric::new(kind);
            feed(&mut first, &batches[..2]);
            let mut second = RegressionMetric::new(kind);
            second.restore_epoch_state(&first.epoch_state()).unwrap();
            feed(&mut second, &batches[2..]);
            let (whole, second) = (
                whole.final_value().current(),
                second.final_value().current(),
            );
            assert_eq!(second.to_bits(), whole.to_bits(), "{kind:?}");
            let state = first.epoch_state();
            assert!(
                RegressionMetric::new(kind)
                    .restore_epoch_state(&state[1..])
                    .is_err()
            );
        }
    }
}
