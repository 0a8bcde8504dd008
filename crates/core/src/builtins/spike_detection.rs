//! [`SpikeDetection`]: skip the step, or stop, when the loss jumps far above
//! its recent values (Lightning's `SpikeDetection`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::gradients::GradientView;

const NAME: &str = "SpikeDetection";

/// What [`SpikeDetection`] does about a spike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeAction {
    /// Stop training (the epoch's end hooks still run). The default, as
    /// Lightning raises.
    #[default]
    Stop,
    /// Skip the optimizer step of the spiking batch and go on.
    Skip,
}

/// The parameters of [`SpikeDetection`], with Lightning's names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeDetectionConfig {
    /// Steps in the running mean the loss is compared with (default 10).
    pub window: usize,
    /// Steps to see before any spike is called (default 1).
    pub warmup: usize,
    /// A spike exceeds the running mean by at least this much (default:
    /// no absolute bound).
    pub atol: Option<f64>,
    /// …and by at least this fraction of it (default 2.0: three times the
    /// mean).
    pub rtol: Option<f64>,
    /// Watch finite losses only (default `true`, Lightning's): `false`
    /// makes a NaN or infinite loss a spike too. (A non-finite loss never
    /// enters the running mean.)
    pub finite_only: bool,
    /// `"stop"` (default) or `"skip"`.
    pub action: SpikeAction,
}

impl Default for SpikeDetectionConfig {
    fn default() -> Self {
        Self {
            window: 10,
            warmup: 1,
            atol: None,
            rtol: Some(2.0),
            finite_only: true,
            action: SpikeAction::Stop,
        }
    }
}

/// One spike seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spike {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based batch in the epoch.
    pub batch: usize,
    /// The step's loss (`null` in JSON when not finite).
    pub loss: Option<f64>,
    /// The running mean it was compared with.
    pub running_mean: f64,
}

/// Watches each step's loss before the optimizer step. A loss is a spike
/// when it is not finite (unless `finite_only`), or, after `warmup` steps,
/// when it exceeds the
/// mean of the last `window` losses by at least `atol` and by at least
/// `rtol` times that mean (Lightning's rule). A spike is logged as a
/// warning and then skipped (its optimizer step is not taken, and its loss
/// stays out of the running mean) or stops training.
///
/// It reads gradients' loss only (`wants_gradients`), so the gradient
/// norms are never computed for it. Its window and the spikes seen are
/// part of its state, so a resumed run decides as the uninterrupted one.
#[derive(Clone, Debug)]
pub struct SpikeDetection {
    config: SpikeDetectionConfig,
    recent: VecDeque<f64>,
    seen: usize,
    spikes: Vec<Spike>,
}

impl SpikeDetection {
    /// Checks the parameters and builds the callback.
    pub fn new(config: SpikeDetectionConfig) -> Result<Self> {
        let invalid = |param, message: &str| CallbackError::InvalidParameter {
            callback: NAME,
            param,
            message: message.into(),
        };
        if config.window == 0 {
            return Err(invalid("window", "must be at least 1"));
        }
        if config.atol.is_some_and(|a| a.is_nan() || a < 0.0) {
            return Err(invalid("atol", "must be a number >= 0"));
        }
        if config.rtol.is_some_and(|r| r.is_nan() || r < 0.0) {
            return Err(invalid("rtol", "must be a number >= 0"));
        }
        Ok(Self {
            config,
            recent: VecDeque::new(),
            seen: 0,
            spikes: Vec::new(),
        })
    }

    /// The spikes seen so far.
    pub fn spikes(&self) -> &[Spike] {
        &self.spikes
    }

    /// The mean of the recent losses.
    fn running_mean(&self) -> f64 {
        if self.recent.is_empty() {
            return f64::NAN;
        }
        self.recent.iter().sum::<f64>() / self.recent.len() as f64
    }

    /// Whether `loss` is a spike against the running mean.
    pub fn is_spike(&self, loss: f64) -> bool {
        if !loss.is_finite() {
            return !self.config.finite_only;
        }
        if self.seen < self.config.warmup || self.recent.is_empty() {
            return false;
        }
        let mean = self.running_mean();
        let diff = loss - mean;
        diff > 0.0
            && self.config.atol.is_none_or(|atol| diff >= atol)
            && self
                .config
                .rtol
                .is_none_or(|rtol| diff >= rtol * mean.abs())
    }
}

impl Callback for SpikeDetection {
    fn name(&self) -> String {
        NAME.into()
    }

    fn wants_gradients(&self) -> bool {
        true
    }

    fn on_before_optimizer_step(
        &mut self,
        batch: usize,
        grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        let Some(loss) = grads.loss() else {
            return Ok(());
        };
        if self.is_spike(loss) {
            let spike = Spike {
                epoch: ctx.progress().epoch,
                batch,
                loss: loss.is_finite().then_some(loss),
                running_mean: self.running_mean(),
            };
            let what = format!(
                "{NAME}: loss {loss} at epoch {}, batch {batch} (running mean {:.6})",
                spike.epoch, spike.running_mean
            );
            self.spikes.push(spike);
            match self.config.action {
                SpikeAction::Skip => {
                    ctx.warn(format!("{what}: step skipped"));
                    ctx.skip_optimizer_step()?;
                }
                SpikeAction::Stop => {
                    ctx.warn(format!("{what}: stopping"));
                    ctx.stop_training(what);
                }
            }
            return Ok(());
        }
        if !loss.is_finite() {
            return Ok(());
        }
        self.seen += 1;
        self.recent.push_back(loss);
        while self.recent.len() > self.config.window {
            self.recent.pop_front();
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&SpikeState {
            recent: self.recent.iter().map(|v| v.to_bits()).collect(),
            seen: self.seen,
            spikes: self.spikes.clone(),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: SpikeState = crate::error::state_from_json(state)?;
        self.recent = state.recent.into_iter().map(f64::from_bits).collect();
        self.seen = state.seen;
        self.spikes = state.spikes;
        Ok(())
    }
}

/// Bit-exact losses: JSON has no NaN and rounds nothing here.
#[derive(Serialize, Deserialize)]
struct SpikeState {
    recent: Vec<u64>,
    seen: usize,
    spikes: Vec<Spike>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradients::FixedGradients;
    use crate::testing::ScriptedControl;

    fn step(cb: &mut SpikeDetection, ctl: &mut ScriptedControl, loss: f64) {
        let grads = FixedGradients {
            norms: vec![],
            loss: Some(loss),
        };
        let mut ctx = Context::new(ctl);
        // ScriptedControl cannot skip steps: skipping shows as an error.
        let _ = cb.on_before_optimizer_step(0, &grads, &mut ctx);
    }

    #[test]
    fn a_loss_three_times_the_mean_is_a_spike_and_stays_out_of_the_mean() {
        let mut cb = SpikeDetection::new(SpikeDetectionConfig::default()).unwrap();
        let mut ctl = ScriptedControl::new(0.1);
        for loss in [1.0, 1.1, 0.9, 1.0] {
            step(&mut cb, &mut ctl, loss);
        }
        assert!(cb.spikes().is_empty());
        assert!(!cb.is_spike(2.9));
        step(&mut cb, &mut ctl, 3.5);
        assert_eq!(cb.spikes().len(), 1);
        assert!(ctl.stop_reason().unwrap().contains("SpikeDetection"));
        assert!((cb.running_mean() - 1.0).abs() < 1e-12);
        assert!(!cb.is_spike(f64::NAN));
        let all = SpikeDetection::new(SpikeDetectionConfig {
            finite_only: false,
            ..Default::default()
        })
        .unwrap();
        assert!(all.is_spike(f64::INFINITY));
    }

    #[test]
    fn warmup_and_atol_hold_back_early_calls() {
        let config = SpikeDetectionConfig {
            warmup: 3,
            atol: Some(10.0),
            ..Default::default()
        };
        let mut cb = SpikeDetection::new(config).unwrap();
        let mut ctl = ScriptedControl::new(0.1);
        step(&mut cb, &mut ctl, 1.0);
        assert!(!cb.is_spike(100.0)); // warming up
        step(&mut cb, &mut ctl, 1.0);
        step(&mut cb, &mut ctl, 1.0);
        assert!(!cb.is_spike(5.0)); // above rtol, below atol
        assert!(cb.is_spike(12.0));
    }

    #[test]
    fn state_round_trips_bit_for_bit() {
        let mut cb = SpikeDetection::new(SpikeDetectionConfig::default()).unwrap();
        let mut ctl = ScriptedControl::new(0.1);
        for loss in [0.1, 0.2, 0.30000000000000004] {
            step(&mut cb, &mut ctl, loss);
        }
        let mut other = SpikeDetection::new(SpikeDetectionConfig::default()).unwrap();
        other.load_state(cb.state().unwrap().unwrap()).unwrap();
        assert_eq!(other.recent, cb.recent);
        assert_eq!(other.seen, cb.seen);
    }
}
