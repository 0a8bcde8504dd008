//! [`LearningRateScheduler`]: set the learning rate at the start of every
//! epoch from a schedule (Keras's `keras.callbacks.LearningRateScheduler`).

use serde::{Deserialize, Serialize};

use super::python::float_repr;
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "LearningRateScheduler";

/// A schedule: `(epoch, current learning rate) -> new learning rate`.
pub type ScheduleFn = Box<dyn Fn(usize, f64) -> f64 + Send>;

/// Ready-made schedules, configurable with serde (`{"kind": "cosine", …}`).
///
/// `epoch` is 0-based; `lr` is the current learning rate. The first four
/// kinds are those of the Keras oracle fixtures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// `values[epoch]` while `epoch < values.len()`, then the current rate.
    Table {
        /// One rate per epoch.
        #[serde(with = "crate::monitor::special_float::vec")]
        values: Vec<f64>,
    },
    /// Multiplies the current rate by `factor` at every epoch `> 0` that is a
    /// multiple of `every` (compounding).
    StepDecay {
        /// The multiplier.
        factor: f64,
        /// The period in epochs (`>= 1`).
        every: usize,
    },
    /// The current rate until epoch `start`, then `lr * exp(-k)` every epoch
    /// (the example of Keras's documentation).
    ExpAfter {
        /// The first decaying epoch.
        start: usize,
        /// The decay per epoch.
        k: f64,
    },
    /// `initial * factor ^ (epoch / every)` (integer division), whatever
    /// the current rate.
    Absolute {
        /// The rate of epoch 0.
        initial: f64,
        /// The multiplier per period.
        factor: f64,
        /// The period in epochs (`>= 1`).
        every: usize,
    },
    /// Always `value`.
    Constant {
        /// The rate.
        value: f64,
    },
    /// `initial * decay_rate ^ (epoch / decay_epochs)`, the exponent floored
    /// when `staircase` (Keras's `ExponentialDecay`, per epoch).
    Exponential {
        /// The rate of epoch 0.
        initial: f64,
        /// The multiplier per `decay_epochs`.
        decay_rate: f64,
        /// The period (`>= 1`).
        decay_epochs: usize,
        /// Decay in steps rather than continuously.
        #[serde(default)]
        staircase: bool,
    },
    /// Linear warm-up from `warmup_start` to `initial` over `warmup_epochs`
    /// epochs, then a cosine decay from `initial` to `min_lr` over
    /// `decay_epochs` epochs, then `min_lr`:
    /// `min_lr + (initial - min_lr) * (1 + cos(pi * t / decay_epochs)) / 2`.
    Cosine {
        /// The peak rate.
        initial: f64,
        /// The length of the cosine part (`>= 1`).
        decay_epochs: usize,
        /// The final rate.
        #[serde(default)]
        min_lr: f64,
        /// Warm-up epochs before the decay (default 0).
        #[serde(default)]
        warmup_epochs: usize,
        /// The rate of epoch 0 when warming up (default 0).
        #[serde(default)]
        warmup_start: f64,
    },
    /// Linear warm-up: `start + (target - start) * epoch / warmup_epochs`
    /// for `epoch <= warmup_epochs` (so `target` at epoch `warmup_epochs`),
    /// then the current rate is left alone (so ReduceLROnPlateau can take
    /// over).
    LinearWarmup {
        /// The rate reached at the end of the warm-up.
        target: f64,
        /// Warm-up length in epochs (`>= 1`).
        warmup_epochs: usize,
        /// The rate of epoch 0 (default 0).
        #[serde(default)]
        start: f64,
    },
    /// Per step: the one-cycle policy (Smith; PyTorch's `OneCycleLR` with
    /// cosine annealing): from `max_lr / div_factor` up to `max_lr` over the
    /// first `pct_start` of the steps, then down to
    /// `max_lr / (div_factor * final_div_factor)`.
    OneCycle {
        /// The peak rate.
        max_lr: f64,
        /// Steps in the cycle (default: every step of the run).
        #[serde(default)]
        total_steps: Option<usize>,
        /// The rising fraction (default 0.3).
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        /// `max_lr / initial rate` (default 25).
        #[serde(default = "default_div_factor")]
        div_factor: f64,
        /// `initial rate / final rate` (default 1e4).
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f64,
    },
    /// Per step: linear warm-up from `warmup_start` to `initial` over
    /// `warmup_steps`, then a cosine decay to `min_lr` over `decay_steps`
    /// (default: the rest of the run), then `min_lr`.
    WarmupCosine {
        /// The peak rate.
        initial: f64,
        /// Warm-up steps (default 0).
        #[serde(default)]
        warmup_steps: usize,
        /// Steps of the cosine part (default: the rest of the run).
        #[serde(default)]
        decay_steps: Option<usize>,
        /// The final rate (default 0).
        #[serde(default)]
        min_lr: f64,
        /// The rate of step 0 (default 0).
        #[serde(default)]
        warmup_start: f64,
    },
    /// Per step: linear warm-up from `start` to `target` over
    /// `warmup_steps`, then `target`.
    LinearWarmupSteps {
        /// The rate reached at the end of the warm-up.
        target: f64,
        /// Warm-up length in steps (`>= 1`).
        warmup_steps: usize,
        /// The rate of step 0 (default 0).
        #[serde(default)]
        start: f64,
    },
}

fn default_pct_start() -> f64 {
    0.3
}

fn default_div_factor() -> f64 {
    25.0
}

fn default_final_div_factor() -> f64 {
    1e4
}

/// `a` at `t = 0` to `b` at `t = 1` along half a cosine.
fn cosine_between(a: f64, b: f64, t: f64) -> f64 {
    b + (a - b) * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos()) / 2.0
}

fn invalid(message: impl Into<String>) -> CallbackError {
    CallbackError::InvalidParameter {
        callback: NAME,
        param: "schedule",
        message: message.into(),
    }
}

impl ScheduleConfig {
    /// Checks the periods are `>= 1`.
    pub fn validate(&self) -> Result<()> {
        let period = match self {
            ScheduleConfig::StepDecay { every, .. } | ScheduleConfig::Absolute { every, .. } => {
                Some(("every", *every))
            }
            ScheduleConfig::Exponential { decay_epochs, .. }
            | ScheduleConfig::Cosine { decay_epochs, .. } => Some(("decay_epochs", *decay_epochs)),
            ScheduleConfig::LinearWarmup { warmup_epochs, .. } => {
                Some(("warmup_epochs", *warmup_epochs))
            }
            ScheduleConfig::LinearWarmupSteps { warmup_steps, .. } => {
                Some(("warmup_steps", *warmup_steps))
            }
            ScheduleConfig::OneCycle {
                total_steps: Some(steps),
                ..
            } => Some(("total_steps", *steps)),
            ScheduleConfig::WarmupCosine {
                decay_steps: Some(steps),
                ..
            } => Some(("decay_steps", *steps)),
            _ => None,
        };
        if let ScheduleConfig::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
            ..
        } = self
        {
            if !(0.0..1.0).contains(pct_start) {
                return Err(invalid("`pct_start` must be in [0, 1)"));
            }
            if !(*div_factor > 0.0 && *final_div_factor > 0.0) {
                return Err(invalid(
                    "`div_factor` and `final_div_factor` must be positive",
                ));
            }
        }
        match period {
            Some((name, 0)) => Err(invalid(format!("`{name}` must be at least 1"))),
            _ => Ok(()),
        }
    }

    /// Whether the schedule sets the rate at every step (rather than at
    /// every epoch).
    pub fn per_step(&self) -> bool {
        matches!(
            self,
            ScheduleConfig::OneCycle { .. }
                | ScheduleConfig::WarmupCosine { .. }
                | ScheduleConfig::LinearWarmupSteps { .. }
        )
    }

    /// The rate of optimizer step `step` (0-based, counted over the whole
    /// run) of a per-step schedule, in a run of `total_steps` steps.
    pub fn step_rate(&self, step: usize, total_steps: usize) -> Option<f64> {
        match *self {
            ScheduleConfig::OneCycle {
                max_lr,
                total_steps: cycle,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let total = cycle.unwrap_or(total_steps).max(2);
                let initial = max_lr / div_factor;
                let last = initial / final_div_factor;
                let peak = ((pct_start * total as f64) - 1.0).max(0.0);
                let step = step as f64;
                Some(if step <= peak && peak > 0.0 {
                    cosine_between(initial, max_lr, step / peak)
                } else {
                    let down = (total as f64 - 1.0 - peak).max(1.0);
                    cosine_between(max_lr, last, (step - peak) / down)
                })
            }
            ScheduleConfig::WarmupCosine {
                initial,
                warmup_steps,
                decay_steps,
                min_lr,
                warmup_start,
            } => Some(if step < warmup_steps {
                warmup_start + (initial - warmup_start) * step as f64 / warmup_steps as f64
            } else {
                let decay = decay_steps
                    .unwrap_or(total_steps.saturating_sub(warmup_steps))
                    .max(1);
                cosine_between(initial, min_lr, (step - warmup_steps) as f64 / decay as f64)
            }),
            ScheduleConfig::LinearWarmupSteps {
                target,
                warmup_steps,
                start,
            } => Some(if step < warmup_steps {
                start + (target - start) * step as f64 / warmup_steps as f64
            } else {
                target
            }),
            _ => None,
        }
    }

    /// The rate for `epoch` given the current rate `lr` (per-step
    /// schedules leave it alone: see [`ScheduleConfig::step_rate`]).
    pub fn rate(&self, epoch: usize, lr: f64) -> f64 {
        match *self {
            ScheduleConfig::Table { ref values } => values.get(epoch).copied().unwrap_or(lr),
            ScheduleConfig::StepDecay { factor, every } => {
                if epoch > 0 && epoch.is_multiple_of(every) {
                    lr * factor
                } else {
                    lr
                }
            }
            ScheduleConfig::ExpAfter { start, k } => {
                if epoch < start {
                    lr
                } else {
                    lr * (-k).exp()
                }
            }
            ScheduleConfig::Absolute {
                initial,
                factor,
                every,
            } => initial * factor.powf((epoch / every) as f64),
            ScheduleConfig::Constant { value } => value,
            ScheduleConfig::Exponential {
                initial,
                decay_rate,
                decay_epochs,
                staircase,
            } => {
                let mut p = epoch as f64 / decay_epochs as f64;
                if staircase {
                    p = p.floor();
                }
                initial * decay_rate.powf(p)
            }
            ScheduleConfig::Cosine {
                initial,
                decay_epochs,
                min_lr,
                warmup_epochs,
                warmup_start,
            } => {
                if epoch < warmup_epochs {
                    warmup_start + (initial - warmup_start) * epoch as f64 / warmup_epochs as f64
                } else {
                    let t = ((epoch - warmup_epochs) as f64).min(decay_epochs as f64);
                    let cos = (std::f64::consts::PI * t / decay_epochs as f64).cos();
                    min_lr + (initial - min_lr) * (1.0 + cos) / 2.0
                }
            }
            ScheduleConfig::LinearWarmup {
                target,
                warmup_epochs,
                start,
            } => {
                if epoch <= warmup_epochs {
                    start + (target - start) * epoch as f64 / warmup_epochs as f64
                } else {
                    lr
                }
            }
            ScheduleConfig::OneCycle { .. }
            | ScheduleConfig::WarmupCosine { .. }
            | ScheduleConfig::LinearWarmupSteps { .. } => lr,
        }
    }
}

/// The parameters of [`LearningRateScheduler`] built from configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningRateSchedulerConfig {
    /// The schedule.
    pub schedule: ScheduleConfig,
    /// `1` prints the rate set at each epoch. Default `0`.
    #[serde(default)]
    pub verbose: u32,
}

/// Sets the learning rate at the start of every epoch to
/// `schedule(epoch, current_lr)`.
///
/// As in Keras the new rate is stored as `f32` (Keras's float32 variable),
/// so multiplicative schedules compound in `f32`; the schedule must return
/// a finite rate `>= 0` (Keras rejects non-floats with a `ValueError`; Rust's
/// types rule those out, so the check is on the value). At `on_epoch_end`
/// the rate the epoch trained with is written to `logs["learning_rate"]`.
///
/// ```
/// use burnfit_core::builtins::{LearningRateScheduler, LearningRateSchedulerConfig, ScheduleConfig};
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// // A closure…
/// let halve_every_2 = LearningRateScheduler::from_fn(|epoch, lr| if epoch > 0 && epoch % 2 == 0 { lr / 2.0 } else { lr });
/// // …or a configured schedule.
/// let cosine = LearningRateScheduler::new(LearningRateSchedulerConfig {
///     schedule: ScheduleConfig::Cosine { initial: 0.1, decay_epochs: 10, min_lr: 0.0, warmup_epochs: 2, warmup_start: 0.0 },
///     verbose: 0,
/// })
/// .unwrap();
/// # drop(cosine);
/// let mut list = CallbackList::new();
/// list.push(halve_every_2);
/// let mut ctl = ScriptedControl::new(0.1);
/// let script = Script::from_epochs((0..5).map(|_| Logs::from_iter([("loss", 1.0)])));
/// let trace = drive(&mut list, &mut ctl, &script);
/// assert_eq!(trace.final_lr, Some(f64::from(0.025f32)));
/// assert_eq!(trace.epochs[4].logs.get("learning_rate"), Some(f64::from(0.025f32)));
/// ```
///
/// # Per-step schedules
///
/// `one_cycle`, `warmup_cosine` and `linear_warmup_steps` set the rate
/// before every optimizer step instead, from the step count of the whole
/// run (resume included) and the run's length in optimizer steps
/// (`optimizer_steps_per_epoch × epochs`, known from the first step; under
/// gradient accumulation a step is a window of batches). They compose with callbacks that change the
/// rate (ReduceLROnPlateau) as a scaled schedule does: a change seen
/// between two steps becomes a factor on the rest of the schedule (halving
/// the rate on a plateau halves the remaining cycle). The factor is part of
/// the callback's state.
pub struct LearningRateScheduler {
    schedule: ScheduleFn,
    verbose: u32,
    per_step: Option<ScheduleConfig>,
    /// The factor other callbacks' changes put on a per-step schedule.
    scale: f64,
    /// The rate this callback set before the last step.
    last_set: Option<f64>,
}

impl LearningRateScheduler {
    /// A scheduler over a configured schedule.
    pub fn new(config: LearningRateSchedulerConfig) -> Result<Self> {
        config.schedule.validate()?;
        let per_step = config.schedule.per_step().then(|| config.schedule.clone());
        let schedule = config.schedule;
        Ok(Self {
            schedule: Box::new(move |epoch, lr| schedule.rate(epoch, lr)),
            verbose: config.verbose,
            per_step,
            scale: 1.0,
            last_set: None,
        })
    }

    /// A scheduler over any function `(epoch, current lr) -> new lr`.
    pub fn from_fn(schedule: impl Fn(usize, f64) -> f64 + Send + 'static) -> Self {
        Self {
            schedule: Box::new(schedule),
            verbose: 0,
            per_step: None,
            scale: 1.0,
            last_set: None,
        }
    }

    /// Sets the verbosity (`1` prints the rate set at each epoch).
    pub fn verbose(mut self, verbose: u32) -> Self {
        self.verbose = verbose;
        self
    }
}

impl Callback for LearningRateScheduler {
    fn on_train_batch_begin(&mut self, _batch: usize, ctx: &mut Context) -> Result<()> {
        let Some(schedule) = &self.per_step else {
            return Ok(());
        };
        let progress = ctx.progress();
        // The run's length in optimizer steps, as `global_step` counts.
        let total = progress.optimizer_steps_per_epoch().unwrap_or(0) * progress.total_epochs;
        let base = schedule
            .step_rate(progress.global_step as usize, total)
            .expect("a per-step schedule");
        if let (Some(last), Some(current)) = (self.last_set, ctx.learning_rate())
            && last > 0.0
            && ((current - last) / last).abs() > 1e-6
        {
            // Another callback changed the rate since this one set it.
            self.scale *= current / last;
        }
        let lr = base * self.scale;
        if !lr.is_finite() || lr < 0.0 {
            return Err(CallbackError::Runtime {
                callback: NAME,
                message: format!("the schedule gave an invalid rate: {}", float_repr(lr)),
            });
        }
        ctx.set_learning_rate(lr)?;
        self.last_set = ctx.learning_rate().or(Some(lr));
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        if self.per_step.is_none() {
            return Ok(None);
        }
        crate::error::state_to_json(&StepScheduleState {
            scale: self.scale.to_bits(),
            last_set: self.last_set.map(f64::to_bits),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: StepScheduleState = crate::error::state_from_json(state)?;
        self.scale = f64::from_bits(state.scale);
        self.last_set = state.last_set.map(f64::from_bits);
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> Result<()> {
        if self.per_step.is_some() {
            return Ok(());
        }
        let lr = ctx.learning_rate().ok_or_else(|| CallbackError::Runtime {
            callback: NAME,
            message: "Optimizer must have a \"learning_rate\" attribute.".into(),
        })?;
        let new_lr = (self.schedule)(epoch, lr);
        if !new_lr.is_finite() || new_lr < 0.0 {
            return Err(CallbackError::Runtime {
                callback: NAME,
                message: format!(
                    "The output of the `schedule` function should be a finite float >= 0. Got: {}",
                    float_repr(new_lr)
                ),
            });
        }
        ctx.set_learning_rate(f64::from(new_lr as f32))?;
        if self.verbose > 0 {
            ctx.info(format!(
                "Epoch {}: LearningRateScheduler setting learning rate to {}.",
                epoch + 1,
                float_repr(new_lr)
            ));
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if let Some(lr) = ctx.learning_rate() {
            logs.insert("learning_rate", lr);
        }
        Ok(())
    }
}

/// A per-step schedule's state, bit for bit.
#[derive(Serialize, Deserialize)]
struct StepScheduleState {
    scale: u64,
    last_set: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_to_max_then_falls_to_the_floor() {
        let s = ScheduleConfig::OneCycle {
            max_lr: 1.0,
            total_steps: None,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        let r: Vec<f64> = (0..100).map(|i| s.step_rate(i, 100).unwrap()).collect();
        assert!((r[0] - 0.04).abs() < 1e-12);
        let peak = r.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 1e-12);
        assert!((r[99] - 0.04 / 1e4).abs() < 1e-12);
        assert!(r.windows(2).take(28).all(|w| w[1] > w[0]));
        assert!(r.windows(2).skip(30).all(|w| w[1] < w[0]));
    }

    #[test]
    fn warmup_cosine_and_linear_warmup_by_step() {
        let s = ScheduleConfig::WarmupCosine {
            initial: 0.1,
            warmup_steps: 10,
            decay_steps: None,
            min_lr: 0.0,
            warmup_start: 0.0,
        };
        assert_eq!(s.step_rate(0, 110), Some(0.0));
        assert!((s.step_rate(5, 110).unwrap() - 0.05).abs() < 1e-12);
        assert!((s.step_rate(10, 110).unwrap() - 0.1).abs() < 1e-12);
        assert!((s.step_rate(60, 110).unwrap() - 0.05).abs() < 1e-12);
        assert!(s.step_rate(110, 110).unwrap().abs() < 1e-12);
        let w = ScheduleConfig::LinearWarmupSteps {
            target: 0.2,
            warmup_steps: 4,
            start: 0.0,
        };
        assert_eq!(w.step_rate(2, 100), Some(0.1));
        assert_eq!(w.step_rate(50, 100), Some(0.2));
        assert!(
            ScheduleConfig::OneCycle {
                max_lr: 1.0,
                total_steps: None,
                pct_start: 1.5,
                div_factor: 25.0,
                final_div_factor: 1e4,
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn a_plateau_reduction_scales_the_rest_of_a_step_schedule() {
        use crate::context::TrainingControl;
        use crate::testing::ScriptedControl;
        let mut cb = LearningRateScheduler::new(LearningRateSchedulerConfig {
            schedule: ScheduleConfig::LinearWarmupSteps {
                target: 0.5,
                warmup_steps: 4,
                start: 0.25,
            },
            verbose: 0,
        })
        .unwrap();
        let mut ctl = ScriptedControl::new(0.1);
        let at = |cb: &mut LearningRateScheduler, ctl: &mut ScriptedControl, step: u64| {
            ctl.set_progress(crate::context::Progress {
                global_step: step,
                steps_per_epoch: Some(10),
                total_epochs: 2,
                ..Default::default()
            });
            let mut ctx = Context::new(ctl);
            cb.on_train_batch_begin(0, &mut ctx).unwrap();
            ctl.learning_rate().unwrap()
        };
        assert_eq!(at(&mut cb, &mut ctl, 0), 0.25);
        assert_eq!(at(&mut cb, &mut ctl, 2), 0.375);
        // ReduceLROnPlateau halves the rate between two steps.
        ctl.set_learning_rate(0.1875).unwrap();
        assert_eq!(at(&mut cb, &mut ctl, 4), 0.25);
        let saved = cb.state().unwrap().unwrap();
        let mut resumed = LearningRateScheduler::new(LearningRateSchedulerConfig {
            schedule: ScheduleConfig::LinearWarmupSteps {
                target: 0.5,
                warmup_steps: 4,
                start: 0.25,
            },
            verbose: 0,
        })
        .unwrap();
        resumed.load_state(saved).unwrap();
        assert_eq!(at(&mut resumed, &mut ctl, 5), 0.25);
    }

    #[test]
    fn under_gradient_accumulation_a_step_schedule_spans_the_optimizer_steps() {
        use crate::context::TrainingControl;
        use crate::testing::ScriptedControl;
        let one_cycle = || {
            LearningRateScheduler::new(LearningRateSchedulerConfig {
                schedule: ScheduleConfig::OneCycle {
                    max_lr: 0.1,
                    total_steps: None,
                    pct_start: 0.3,
                    div_factor: 25.0,
                    final_div_factor: 1e4,
                },
                verbose: 0,
            })
            .unwrap()
        };
        // The rate set before optimizer step `step` of a 3-epoch run.
        let rate = |batches: usize, batches_per_step: usize, step: u64| {
            let mut cb = one_cycle();
            let mut ctl = ScriptedControl::new(0.1);
            ctl.set_progress(crate::context::Progress {
                global_step: step,
                steps_per_epoch: Some(batches),
                batches_per_step,
                total_epochs: 3,
                ..Default::default()
            });
            let mut ctx = Context::new(&mut ctl);
            cb.on_train_batch_begin(0, &mut ctx).unwrap();
            ctl.learning_rate().unwrap()
        };
        // 9 batches an epoch in windows of 2 are 5 optimizer steps (the
        // last window is 1 batch): the same cycle as 5 batches of twice
        // the size, ending at its minimum on the run's last step.
        for step in 0..15 {
            assert_eq!(rate(9, 2, step), rate(5, 1, step), "step {step}");
        }
        assert!(rate(9, 2, 14) < 1e-5, "{}", rate(9, 2, 14));
    }

    fn rates(schedule: ScheduleConfig, n: usize, mut lr: f64) -> Vec<f64> {
        (0..n)
            .map(|e| {
                lr = schedule.rate(e, lr);
                lr
            })
            .collect()
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn fixture_kinds() {
        assert_eq!(
            rates(
                ScheduleConfig::Table {
                    values: vec![0.1, 0.05]
                },
                3,
                1.0
            ),
            [0.1, 0.05, 0.05]
        );
        assert_eq!(
            rates(
                ScheduleConfig::StepDecay {
                    factor: 0.5,
                    every: 2
                },
                5,
                1.0
            ),
            [1.0, 1.0, 0.5, 0.5, 0.25]
        );
        assert!(close(
            &rates(
                ScheduleConfig::Absolute {
                    initial: 1.0,
                    factor: 0.1,
                    every: 2
                },
                4,
                9.0
            ),
            &[1.0, 1.0, 0.1, 0.1]
        ));
        let exp = rates(ScheduleConfig::ExpAfter { start: 2, k: 0.1 }, 3, 1.0);
        assert_eq!(exp[..2], [1.0, 1.0]);
        assert!((exp[2] - (-0.1f64).exp()).abs() < 1e-15);
    }

    #[test]
    fn extra_kinds() {
        let cosine = ScheduleConfig::Cosine {
            initial: 1.0,
            decay_epochs: 4,
            min_lr: 0.0,
            warmup_epochs: 2,
            warmup_start: 0.0,
        };
        assert!(close(
            &rates(cosine, 8, 9.0),
            &[
                0.0,
                0.5,
                1.0,
                0.8535533905932737,
                0.5,
                0.14644660940672627,
                0.0,
                0.0
            ]
        ));
        let warm = ScheduleConfig::LinearWarmup {
            target: 1.0,
            warmup_epochs: 4,
            start: 0.0,
        };
        assert_eq!(rates(warm.clone(), 5, 9.0), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(warm.rate(6, 0.3), 0.3);
        let exp = ScheduleConfig::Exponential {
            initial: 1.0,
            decay_rate: 0.5,
            decay_epochs: 2,
            staircase: true,
        };
        assert_eq!(rates(exp, 4, 9.0), [1.0, 1.0, 0.5, 0.5]);
        assert_eq!(ScheduleConfig::Constant { value: 0.3 }.rate(7, 1.0), 0.3);
    }

    #[test]
    fn serde_and_validation() {
        let c: LearningRateSchedulerConfig = serde_json::from_str(
            r#"{"schedule": {"kind": "step_decay", "factor": 0.5, "every": 2}}"#,
        )
        .unwrap();
        assert_eq!(
            c.schedule,
            ScheduleConfig::StepDecay {
                factor: 0.5,
                every: 2
            }
        );
        let c: LearningRateSchedulerConfig =
            serde_json::from_str(r#"{"schedule": {"kind": "table", "values": [0.1, "NaN"]}}"#)
                .unwrap();
        assert!(matches!(c.schedule, ScheduleConfig::Table { ref values } if values[1].is_nan()));
        assert!(
            serde_json::from_str::<LearningRateSchedulerConfig>(
                r#"{"schedule": {"kind": "nope"}}"#
            )
            .is_err()
        );
        let bad = LearningRateSchedulerConfig {
            schedule: ScheduleConfig::StepDecay {
                factor: 0.5,
                every: 0,
            },
            verbose: 0,
        };
        assert!(LearningRateScheduler::new(bad).is_err());
    }

    #[test]
    fn invalid_output_and_missing_lr_are_errors() {
        use crate::CallbackList;
        use crate::testing::{Phase, Script, ScriptedControl, drive};
        let script = Script::from_epochs([Logs::new()]);
        let mut list = CallbackList::new();
        list.push(LearningRateScheduler::from_fn(|_, _| f64::NAN));
        let trace = drive(&mut list, &mut ScriptedControl::new(0.1), &script);
        let err = trace.error.unwrap();
        assert_eq!(err.at.phase, Phase::EpochBegin);
        assert!(err.error.to_string().contains("Got: nan"));
        let mut list = CallbackList::new();
        list.push(LearningRateScheduler::from_fn(|_, lr| lr));
        let trace = drive(
            &mut list,
            &mut ScriptedControl::without_learning_rate(),
            &script,
        );
        assert!(trace.error.is_some());
    }

    #[test]
    fn verbose_message() {
        use crate::CallbackList;
        use crate::testing::{Script, ScriptedControl, drive};
        let mut list = CallbackList::new();
        list.push(LearningRateScheduler::from_fn(|_, _| 0.05).verbose(1));
        let mut ctl = ScriptedControl::new(0.1);
        drive(&mut list, &mut ctl, &Script::from_epochs([Logs::new()]));
        assert_eq!(
            ctl.infos(),
            ["Epoch 1: LearningRateScheduler setting learning rate to 0.05."]
        );
    }
}
