//! ProgressLogger: a progress bar per epoch, or one line per epoch when the
//! output is not a terminal.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::Result;
use crate::logs::Logs;

/// Configuration of [`ProgressLogger`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressLoggerConfig {
    /// Draw a live bar (`"auto"`: only when stderr is a terminal; `"always"`; `"never"`).
    pub bar: String,
    /// Significant digits of metric values in the epoch line.
    pub precision: usize,
}

impl Default for ProgressLoggerConfig {
    fn default() -> Self {
        Self {
            bar: "auto".into(),
            precision: 4,
        }
    }
}

/// Shows training progress, like Keras's `verbose=1` / `verbose=2` output.
///
/// On a terminal it draws a bar per epoch (batches done, ETA, running loss);
/// when output is piped it prints exactly one line per epoch, so logs stay
/// readable:
///
/// ```text
/// Epoch 3/10 - 12.4s - 4.8ms/step - accuracy: 0.8812 - loss: 0.3301 - val_accuracy: 0.8790 - val_loss: 0.3412
/// ```
///
/// Use it when Burn's own renderer is off (the `burnfit` CLI does).
///
/// ```
/// use burnfit_core::builtins::{ProgressLogger, ProgressLoggerConfig};
/// let progress = ProgressLogger::new(ProgressLoggerConfig { bar: "never".into(), ..Default::default() });
/// ```
pub struct ProgressLogger {
    config: ProgressLoggerConfig,
    interactive: bool,
    bar: Option<ProgressBar>,
    epoch_start: Option<Instant>,
    steps: usize,
}

impl ProgressLogger {
    /// A progress logger.
    pub fn new(config: ProgressLoggerConfig) -> Self {
        let interactive = match config.bar.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stderr().is_terminal(),
        };
        Self {
            config,
            interactive,
            bar: None,
            epoch_start: None,
            steps: 0,
        }
    }

    /// The line printed at the end of an epoch.
    pub fn epoch_line(
        &self,
        epoch: usize,
        total: usize,
        seconds: f64,
        steps: usize,
        logs: &Logs,
    ) -> String {
        let mut line = format!("Epoch {}/{} - {:.1}s", epoch + 1, total, seconds);
        if steps > 0 {
            line.push_str(&format!(" - {:.1}ms/step", seconds * 1000.0 / steps as f64));
        }
        let mut keys: Vec<&str> = logs.keys().collect();
        keys.sort();
        for key in keys {
            let value = logs.get(key).unwrap_or(f64::NAN);
            line.push_str(&format!(
                " - {key}: {}",
                format_value(value, self.config.precision)
            ));
        }
        line
    }
}

fn format_value(value: f64, precision: usize) -> String {
    if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.prec$e}", prec = precision.saturating_sub(1))
    } else {
        format!("{value:.precision$}")
    }
}

impl Callback for ProgressLogger {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> Result<()> {
        self.epoch_start = Some(Instant::now());
        self.steps = 0;
        if self.interactive {
            let progress = ctx.progress();
            let bar = match progress.steps_per_epoch {
                Some(n) => ProgressBar::new(n as u64),
                None => ProgressBar::no_length(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("Epoch {}/{}", epoch + 1, progress.total_epochs));
            // A resumed epoch starts where the interrupted one stopped.
            bar.set_position(progress.batch as u64);
            self.bar = Some(bar);
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        self.steps += 1;
        if let Some(bar) = &self.bar {
            if bar.length().is_none()
                && let Some(total) = ctx.progress().steps_per_epoch
            {
                // Known from the first batch of the first epoch on.
                bar.set_length(total as u64);
            }
            bar.inc(1);
            if let Some(loss) = logs.get("loss") {
                bar.set_message(format!(
                    "loss: {}",
                    format_value(loss, self.config.precision)
                ));
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        let seconds = self
            .epoch_start
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let line = self.epoch_line(
            epoch,
            ctx.progress().total_epochs,
            seconds,
            self.steps,
            logs,
        );
        ctx.info(line);
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }

    fn wants_batch_logs(&self) -> bool {
        self.interactive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_line_lists_sorted_metrics() {
        let p = ProgressLogger::new(ProgressLoggerConfig {
            bar: "never".into(),
            precision: 4,
        });
        let logs: Logs = [("val_loss", 0.5), ("loss", 0.25), ("learning_rate", 1e-4)]
            .into_iter()
            .collect();
        assert_eq!(
            p.epoch_line(2, 10, 3.0, 100, &logs),
            "Epoch 3/10 - 3.0s - 30.0ms/step - learning_rate: 1.000e-4 - loss: 0.2500 - val_loss: 0.5000"
        );
    }
}
