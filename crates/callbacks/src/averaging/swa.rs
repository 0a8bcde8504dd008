//! [`StochasticWeightAveraging`]: Lightning's `StochasticWeightAveraging`.

use burn::module::Module;
use burnfit_core::builtins::StochasticWeightAveragingConfig;
use burnfit_core::{Callback, CallbackError, Context, Logs, ModelSnapshot, Result};
use serde::{Deserialize, Serialize};

use super::blend::blend;
use crate::engine::snapshot_of;

const NAME: &str = "StochasticWeightAveraging";

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
/// in backups.
pub struct StochasticWeightAveraging<M: Module> {
    config: StochasticWeightAveragingConfig,
    average: Option<M>,
    averaged: usize,
    /// The learning rate when averaging started.
    start_lr: Option<f64>,
}

impl<M: Module + 'static> StochasticWeightAveraging<M> {
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

impl<M: Module + 'static> Callback for StochasticWeightAveraging<M> {
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
        let model = ctx.model::<M>().ok_or_else(|| CallbackError::Runtime {
            callback: NAME,
            message: "the model being trained is not of the averaged type".into(),
        })?;
        self.average = Some(match self.average.take() {
            None => model,
            Some(average) => blend(average, &model, 1.0 / (self.averaged + 1) as f64),
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
        ctx.set_model(average)?;
        ctx.update_batch_norm()
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        burnfit_core::error::state_to_json(&SwaState {
            averaged: self.averaged,
            start_lr: self.start_lr.map(f64::to_bits),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: SwaState = burnfit_core::error::state_from_json(state)?;
        self.averaged = state.averaged;
        self.start_lr = state.start_lr.map(f64::from_bits);
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        self.average
            .clone()
            .map(|m| vec![("average".to_string(), snapshot_of(m))])
            .unwrap_or_default()
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        self.average = models
            .into_iter()
            .find(|(name, _)| name == "average")
            .and_then(|(_, m)| m.downcast::<M>().ok());
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SwaState {
    averaged: usize,
    start_lr: Option<u64>,
}
