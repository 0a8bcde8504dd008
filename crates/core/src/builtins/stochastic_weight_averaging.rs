//! [`StochasticWeightAveraging`]: Lightning's `StochasticWeightAveraging`.

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

use super::averaging::{blend, named, saved};

const NAME: &str = "StochasticWeightAveraging";

/// The parameters of Lightning's `StochasticWeightAveraging` callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticWeightAveragingConfig {
    /// The rate annealed to once averaging starts.
    pub swa_lrs: f64,
    /// The first averaged epoch: an epoch number (0-based) or, between 0 and
    /// 1, a fraction of the epochs (default 0.8).
    #[serde(default = "default_swa_start")]
    pub swa_epoch_start: f64,
    /// Epochs over which the rate moves to `swa_lrs` (default 10).
    #[serde(default = "default_annealing_epochs")]
    pub annealing_epochs: usize,
    /// `"cos"` (default) or `"linear"`.
    #[serde(default = "default_annealing_strategy")]
    pub annealing_strategy: String,
}

fn default_swa_start() -> f64 {
    0.8
}

fn default_annealing_epochs() -> usize {
    10
}

fn default_annealing_strategy() -> String {
    "cos".into()
}

impl StochasticWeightAveragingConfig {
    /// The first averaged epoch (0-based) of a run of `epochs` epochs.
    pub fn start_epoch(&self, epochs: usize) -> usize {
        if self.swa_epoch_start < 1.0 {
            (epochs as f64 * self.swa_epoch_start) as usize
        } else {
            self.swa_epoch_start as usize
        }
    }

    /// Checks the parameters (Lightning's rules).
    pub fn validate(&self) -> Result<()> {
        let invalid = |param, message: &str| CallbackError::InvalidParameter {
            callback: "StochasticWeightAveraging",
            param,
            message: message.into(),
        };
        if !(self.swa_lrs > 0.0 && self.swa_lrs.is_finite()) {
            return Err(invalid("swa_lrs", "must be a positive number"));
        }
        if !(self.swa_epoch_start > 0.0 && self.swa_epoch_start.is_finite())
            || (self.swa_epoch_start >= 1.0 && self.swa_epoch_start.fract() != 0.0)
        {
            return Err(invalid(
                "swa_epoch_start",
                "must be an epoch number >= 1 or a fraction in (0, 1)",
            ));
        }
        if self.annealing_epochs == 0 {
            return Err(invalid("annealing_epochs", "must be at least 1"));
        }
        if !matches!(self.annealing_strategy.as_str(), "cos" | "linear") {
            return Err(invalid(
                "annealing_strategy",
                "must be \"cos\" or \"linear\"",
            ));
        }
        Ok(())
    }
}

/// Stochastic weight averaging (Izmailov et al.), as Lightning's callback
/// does it:
///
/// * from epoch `swa_epoch_start` (an epoch number, or a fraction of the
///   run), the learning rate moves from its value then to `swa_lrs` over
///   `annealing_epochs` epochs (cosine or linear), set at each epoch begin
///   (PyTorch's `SWALR`);
/// * at the end of each of those epochs, the weights join an equal-weight
///   running average;
/// * when training ends (not when it is interrupted), the model gets the
///   average and its BatchNorm statistics are recomputed with a pass over
///   the training data (the loop's `update_batch_norm`; it uses each
///   layer's momentum rather than PyTorch's cumulative average, which
///   converges to the same statistics over an epoch).
///
/// The average, the number of models in it and the starting rate are saved
/// in backups. Works on any model whose snapshots can blend
/// ([`ModelSnapshot::blend`]): every model the Burn glue trains.
pub struct StochasticWeightAveraging {
    config: StochasticWeightAveragingConfig,
    average: Option<ModelSnapshot>,
    averaged: usize,
    /// The learning rate when averaging started.
    start_lr: Option<f64>,
}

impl StochasticWeightAveraging {
    /// Checks the parameters and builds the callback.
    pub fn new(config: StochasticWeightAveragingConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            average: None,
            averaged: 0,
            start_lr: None,
        })
    }

    /// How many epochs' weights are in the average.
    pub fn averaged(&self) -> usize {
        self.averaged
    }

    fn alpha(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        match self.config.annealing_strategy.as_str() {
            "linear" => t,
            _ => (1.0 - (std::f64::consts::PI * t).cos()) / 2.0,
        }
    }
}

impl Callback for StochasticWeightAveraging {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> Result<()> {
        let start = self.config.start_epoch(ctx.progress().total_epochs);
        if epoch < start {
            return Ok(());
        }
        let lr0 = match self.start_lr {
            Some(lr) => lr,
            None => {
                let lr = ctx.learning_rate().ok_or_else(|| CallbackError::Runtime {
                    callback: NAME,
                    message: "the loop does not know its learning rate".into(),
                })?;
                self.start_lr = Some(lr);
                lr
            }
        };
        let alpha = self.alpha((epoch - start) as f64 / self.config.annealing_epochs as f64);
        ctx.set_learning_rate(self.config.swa_lrs * alpha + lr0 * (1.0 - alpha))
    }

    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if epoch < self.config.start_epoch(ctx.progress().total_epochs) {
            return Ok(());
        }
        let model = ctx.current_model();
        self.average = Some(match self.average.take() {
            None => model,
            Some(average) => blend(NAME, &average, &model, 1.0 / (self.averaged + 1) as f64)?,
        });
        self.averaged += 1;
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            return Ok(());
        }
        let Some(average) = self.average.clone() else {
            ctx.warn(format!(
                "{NAME}: training ended before epoch {} (swa_epoch_start): nothing was averaged",
                self.config.start_epoch(ctx.progress().total_epochs) + 1
            ));
            return Ok(());
        };
        ctx.info(format!(
            "{NAME}: the model gets the average of {} epochs' weights; updating BatchNorm statistics",
            self.averaged
        ));
        ctx.restore_model(&average)?;
        ctx.update_batch_norm()
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&SwaState {
            averaged: self.averaged,
            start_lr: self.start_lr.map(f64::to_bits),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: SwaState = crate::error::state_from_json(state)?;
        self.averaged = state.averaged;
        self.start_lr = state.start_lr.map(f64::from_bits);
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        saved("average", &self.average)
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        self.average = named(models, "average");
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SwaState {
    averaged: usize,
    start_lr: Option<u64>,
}
