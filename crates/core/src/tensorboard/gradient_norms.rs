//! [`GradientNormMonitor`]: gradient norms to TensorBoard, overall and by
//! parameter.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::event_file::{EventWriter, file_lengths, truncate_to};
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::gradients::GradientView;
use crate::logs::Logs;

const NAME: &str = "GradientNormMonitor";

/// The parameters of [`GradientNormMonitor`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientNormMonitorConfig {
    /// The TensorBoard run directory (its `train` subdirectory gets the
    /// scalars, next to the TensorBoard callback's). Default `logs`; the CLI
    /// puts it in the run's `tensorboard/` directory.
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
    /// Write every this many optimizer steps (default 1).
    #[serde(default = "default_every")]
    pub every_n_steps: usize,
    /// Also write each parameter's norm (default `true`).
    #[serde(default = "default_true")]
    pub per_layer: bool,
}

fn default_log_dir() -> PathBuf {
    PathBuf::from("logs")
}

fn default_every() -> usize {
    1
}

fn default_true() -> bool {
    true
}

impl Default for GradientNormMonitorConfig {
    fn default() -> Self {
        Self {
            log_dir: default_log_dir(),
            every_n_steps: 1,
            per_layer: true,
        }
    }
}

/// Writes the L2 norm of the gradients the optimizer is about to apply
/// (Lightning logs them at the same point, `on_before_optimizer_step`):
/// `grad_norm/global` and, with `per_layer`, `grad_norm/<parameter path>`
/// (`grad_norm/conv1/weight`), into `log_dir/train` at step = the optimizer
/// step being taken (1-based, as the TensorBoard callback's batch scalars).
///
/// It reads gradients (`wants_gradients`): the norms cost one device read
/// per written step, and nothing on the other steps. On resume, events the
/// interrupted process wrote after its backup are cut, as the TensorBoard
/// callback does.
#[derive(Debug)]
pub struct GradientNormMonitor {
    config: GradientNormMonitorConfig,
    writer: Option<EventWriter>,
}

impl GradientNormMonitor {
    /// Checks the parameters and builds the callback.
    pub fn new(config: GradientNormMonitorConfig) -> Result<Self> {
        if config.every_n_steps == 0 {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "every_n_steps",
                message: "must be at least 1".into(),
            });
        }
        Ok(Self {
            config,
            writer: None,
        })
    }

    fn writer(&mut self) -> Result<&mut EventWriter> {
        if self.writer.is_none() {
            self.writer = Some(EventWriter::create(self.config.log_dir.join("train"))?);
        }
        Ok(self.writer.as_mut().expect("created above"))
    }
}

impl Callback for GradientNormMonitor {
    fn name(&self) -> String {
        NAME.into()
    }

    fn wants_gradients(&self) -> bool {
        true
    }

    fn on_before_optimizer_step(
        &mut self,
        _batch: usize,
        grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        let step = ctx.progress().global_step + 1;
        if !step.is_multiple_of(self.config.every_n_steps as u64) {
            return Ok(());
        }
        let norms = grads.norms();
        let global = norms.iter().map(|(_, n)| n * n).sum::<f64>().sqrt();
        let per_layer = self.config.per_layer;
        let writer = self.writer()?;
        writer.write_scalar("grad_norm/global", global, step as i64)?;
        if per_layer {
            for (path, norm) in &norms {
                writer.write_scalar(&format!("grad_norm/{path}"), *norm, step as i64)?;
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, _logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer.flush()?;
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&file_lengths(self.writer.iter()))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let files: Vec<(PathBuf, u64)> = crate::error::state_from_json(state)?;
        truncate_to(&files)
    }
}
