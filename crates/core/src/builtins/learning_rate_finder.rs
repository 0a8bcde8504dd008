//! [`LearningRateFinder`]: the learning-rate range test (Lightning's
//! `LearningRateFinder`, fastai's `lr_find`).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, TrainingSnapshot};
use crate::error::{CallbackError, Result};
use crate::gradients::GradientView;
use crate::logs::Logs;

const NAME: &str = "LearningRateFinder";

/// How the learning rate grows from `min_lr` to `max_lr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrFinderMode {
    /// Geometrically (the default): equal steps in log scale.
    #[default]
    Exponential,
    /// Arithmetically.
    Linear,
}

/// The parameters of [`LearningRateFinder`], with Lightning's names and
/// defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningRateFinderConfig {
    /// The first rate tried (default 1e-8).
    pub min_lr: f64,
    /// The last rate tried (default 1).
    pub max_lr: f64,
    /// Optimizer steps in the sweep (default 100).
    pub num_training_steps: usize,
    /// `"exponential"` (default) or `"linear"`.
    pub mode: LrFinderMode,
    /// Stop when the smoothed loss exceeds this many times the lowest so far
    /// (default 4; `null` never stops early).
    pub early_stop_threshold: Option<f64>,
    /// The smoothing factor of the loss's exponential moving average
    /// (default 0.98, fastai's and Lightning's).
    pub beta: f64,
}

impl Default for LearningRateFinderConfig {
    fn default() -> Self {
        Self {
            min_lr: 1e-8,
            max_lr: 1.0,
            num_training_steps: 100,
            mode: LrFinderMode::Exponential,
            early_stop_threshold: Some(4.0),
            beta: 0.98,
        }
    }
}

/// What a range test found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LrFinderResult {
    /// The rate of each step.
    pub lrs: Vec<f64>,
    /// The smoothed loss of each step (bias-corrected moving average).
    pub losses: Vec<f64>,
    /// The raw loss of each step.
    pub raw_losses: Vec<f64>,
    /// The suggested rate (see [`suggest_lr`]), if there were enough steps.
    pub suggestion: Option<f64>,
    /// Whether the sweep stopped because the loss diverged.
    pub diverged: bool,
}

/// Steps left out at the start and the end of the curve when looking for
/// the steepest descent (Lightning's `skip_begin` / `skip_end`).
pub const SKIP_BEGIN: usize = 10;
/// See [`SKIP_BEGIN`].
pub const SKIP_END: usize = 1;

/// The rule of the suggestion, stated for users: printed by `burnfit
/// lr-find` and written on its plot.
pub const SUGGESTION_RULE: &str = "steepest descent of the smoothed loss before its lowest \
     point: the rate where d(loss)/d(step) is most negative, leaving out the first 10 steps";

/// The suggested learning rate: the rate at the steepest descent of the
/// smoothed loss (the most negative `numpy.gradient` of the losses by
/// step), the first [`SKIP_BEGIN`] and last [`SKIP_END`] steps left out, as
/// Lightning suggests, and nothing after the lowest smoothed loss (past it
/// the loss diverges, and its noisy recovery is no guide). `None` when
/// fewer than 2 steps remain.
pub fn suggest_lr(lrs: &[f64], losses: &[f64]) -> Option<f64> {
    let lowest = (SKIP_BEGIN..losses.len())
        .filter(|&i| losses[i].is_finite())
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))?;
    let end = losses.len().checked_sub(SKIP_END)?.min(lowest + 1);
    if end < SKIP_BEGIN + 2 {
        return None;
    }
    let window = &losses[SKIP_BEGIN..end];
    let gradient = |i: usize| -> f64 {
        let n = window.len();
        if i == 0 {
            window[1] - window[0]
        } else if i == n - 1 {
            window[n - 1] - window[n - 2]
        } else {
            (window[i + 1] - window[i - 1]) / 2.0
        }
    };
    let steepest = (0..window.len())
        .filter(|&i| gradient(i).is_finite())
        .min_by(|&a, &b| gradient(a).total_cmp(&gradient(b)))?;
    Some(lrs[SKIP_BEGIN + steepest])
}

/// Shared access to a finder's result (the finder lives inside the training
/// loop; the caller reads the result once training returns).
pub type LrFinderHandle = Arc<Mutex<Option<LrFinderResult>>>;

/// The learning-rate range test: for `num_training_steps` optimizer steps,
/// sets a rate growing from `min_lr` to `max_lr`, records the step's loss
/// (read from the gradient hook, so it is the batch's own loss, not the
/// epoch's running mean) and its moving average, and stops training when
/// the sweep is done or the smoothed loss exceeds `early_stop_threshold`
/// times its lowest value. At train end it puts back the model, optimizer
/// and scheduler it started from, and suggests a rate ([`suggest_lr`]).
///
/// Run it in a training of its own (as `burnfit lr-find` does), then train
/// with the rate found.
#[derive(Debug)]
pub struct LearningRateFinder {
    config: LearningRateFinderConfig,
    start: Option<TrainingSnapshot>,
    steps: usize,
    average: f64,
    best: f64,
    result: LrFinderResult,
    done: bool,
    handle: LrFinderHandle,
}

impl LearningRateFinder {
    /// Checks the parameters and builds the callback.
    pub fn new(config: LearningRateFinderConfig) -> Result<Self> {
        let invalid = |param, message: &str| CallbackError::InvalidParameter {
            callback: NAME,
            param,
            message: message.into(),
        };
        if !(config.min_lr > 0.0 && config.min_lr.is_finite()) {
            return Err(invalid("min_lr", "must be a positive number"));
        }
        if !(config.max_lr > config.min_lr && config.max_lr.is_finite()) {
            return Err(invalid("max_lr", "must be a number above min_lr"));
        }
        if config.num_training_steps < 2 {
            return Err(invalid("num_training_steps", "must be at least 2"));
        }
        if !(0.0..1.0).contains(&config.beta) {
            return Err(invalid("beta", "must be in [0, 1)"));
        }
        if config
            .early_stop_threshold
            .is_some_and(|t| t.is_nan() || t <= 1.0)
        {
            return Err(invalid("early_stop_threshold", "must be above 1 (or null)"));
        }
        Ok(Self {
            config,
            start: None,
            steps: 0,
            average: 0.0,
            best: f64::INFINITY,
            result: LrFinderResult::default(),
            done: false,
            handle: Arc::default(),
        })
    }

    /// A handle to read the result after training.
    pub fn handle(&self) -> LrFinderHandle {
        self.handle.clone()
    }

    /// The rate of step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let c = &self.config;
        let t = step as f64 / (c.num_training_steps - 1) as f64;
        match c.mode {
            LrFinderMode::Exponential => c.min_lr * (c.max_lr / c.min_lr).powf(t),
            LrFinderMode::Linear => c.min_lr + (c.max_lr - c.min_lr) * t,
        }
    }

    fn finish(&mut self, ctx: &mut Context, reason: &str) {
        if !self.done {
            self.done = true;
            ctx.stop_training(format!("{NAME}: {reason}"));
        }
    }
}

impl Callback for LearningRateFinder {
    fn name(&self) -> String {
        NAME.into()
    }

    fn wants_gradients(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        self.start = Some(ctx.snapshot_training()?);
        Ok(())
    }

    fn on_train_batch_begin(&mut self, _batch: usize, ctx: &mut Context) -> Result<()> {
        if !self.done {
            ctx.set_learning_rate(self.lr_at(self.steps))?;
        }
        Ok(())
    }

    fn on_after_backward(
        &mut self,
        _batch: usize,
        grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let loss = grads.loss().ok_or_else(|| CallbackError::Runtime {
            callback: NAME,
            message: "the training output has no loss to read".into(),
        })?;
        let beta = self.config.beta;
        self.average = beta * self.average + (1.0 - beta) * loss;
        let smoothed = self.average / (1.0 - beta.powi(self.steps as i32 + 1));
        self.result.lrs.push(self.lr_at(self.steps));
        self.result.losses.push(smoothed);
        self.result.raw_losses.push(loss);
        self.steps += 1;
        if !smoothed.is_finite()
            || self
                .config
                .early_stop_threshold
                .is_some_and(|t| self.steps > 1 && smoothed > t * self.best)
        {
            self.result.diverged = true;
            self.finish(ctx, "the loss diverged");
            return Ok(());
        }
        self.best = self.best.min(smoothed);
        if self.steps >= self.config.num_training_steps {
            self.finish(ctx, "sweep done");
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        // A stop asked from a gradient hook is honoured here too.
        if self.done && !ctx.stop_requested() {
            ctx.stop_training(format!("{NAME}: done"));
        }
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if let Some(start) = self.start.take() {
            ctx.restore_training(&start)?;
        }
        self.result.suggestion = suggest_lr(&self.result.lrs, &self.result.losses);
        *self.handle.lock().expect("lr finder lock") = Some(self.result.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_is_the_steepest_descent_after_the_skipped_start() {
        let lrs: Vec<f64> = (0..40).map(|i| 1e-5 * 1.3f64.powi(i)).collect();
        // Flat, then a steep fall around step 25, then a rise, then a
        // steeper fall (a diverged loss recovering) that must not count.
        let losses: Vec<f64> = (0..40)
            .map(|i| {
                let x = i as f64;
                let rise = if i > 33 { (x - 33.0).powi(2) } else { 0.0 };
                let recovery = if i > 37 { -4.0 * (x - 37.0) } else { 0.0 };
                2.0 - 1.5 / (1.0 + (-(x - 25.0)).exp()) + rise + recovery
            })
            .collect();
        let s = suggest_lr(&lrs, &losses).unwrap();
        assert_eq!(s, lrs[25]);
        assert_eq!(suggest_lr(&lrs[..12], &losses[..12]), None);
    }

    #[test]
    fn rates_span_the_range() {
        let f = LearningRateFinder::new(LearningRateFinderConfig {
            min_lr: 1e-6,
            max_lr: 1.0,
            num_training_steps: 7,
            ..Default::default()
        })
        .unwrap();
        assert!((f.lr_at(0) - 1e-6).abs() < 1e-18);
        assert!((f.lr_at(6) - 1.0).abs() < 1e-12);
        assert!((f.lr_at(3) - 1e-3).abs() < 1e-12);
        assert!(
            LearningRateFinder::new(LearningRateFinderConfig {
                max_lr: 1e-9,
                ..Default::default()
            })
            .is_err()
        );
    }
}
