//! [`ModelCheckpoint`]: save the model at some frequency (Keras's
//! `keras.callbacks.ModelCheckpoint`), plus Lightning's `save_top_k` and
//! `save_last`.
//!
//! Split by job: this file holds the parameters and the save decision
//! (Keras's `_should_save_model`), `naming` the file names (the
//! `str.format` template, the `last` file), `top_k` the ranking of
//! `save_top_k`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod naming;
mod top_k;

use naming::{check_keras_extension, check_template, checkpoint_path, fmt5, invalid, last_path};
use top_k::Ranking;
pub use top_k::{TopKEntry, top_k_order};

use crate::callback::Callback;
use crate::context::{Context, SaveContent};
use crate::error::{CallbackError, Result};
use crate::frequency::Frequency;
use crate::logs::Logs;
use crate::monitor::{MetricDirections, Monitor, MonitorState, special_float};

const NAME: &str = "ModelCheckpoint";

/// When to save: Keras's `save_freq`, `"epoch"` or a number of batches
/// (the shared [`Frequency`]). With [`Frequency::Batches`] the count runs
/// across epoch boundaries and nothing is saved at epoch ends (Keras's
/// behaviour). Kept as a name so existing code compiles.
pub type SaveFreq = Frequency;

/// The parameters of [`ModelCheckpoint`], with Keras's names and defaults
/// (`filepath` is required), plus `save_top_k` and `save_last`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelCheckpointConfig {
    /// Where to save: a template with Python `str.format` placeholders:
    /// `{epoch}` (1-based, as in Keras), `{batch}` (1-based, batch-level
    /// saves), and any log key (`{val_loss:.4f}`). Format specs support
    /// fill/align, sign, zero padding, width, precision and the types `d`,
    /// `f`, `e`, `g`, `%`. Directories are created. A placeholder with no
    /// value is an error (Keras's `KeyError`).
    ///
    /// Any extension works (Burn's recorders choose their own). Keras's
    /// extensions are accepted too, with Keras's rule that a weights-only
    /// checkpoint named `*.keras` or `*.h5` must end in `.weights.h5`.
    pub filepath: String,
    /// The log key compared by `save_best_only` / `save_top_k`. Default `"val_loss"`.
    pub monitor: String,
    /// `1` prints a message for every decision. Default `0`.
    pub verbose: u32,
    /// Save only when the monitored value improves on the best so far
    /// (a missing value warns and saves anyway, as in Keras). Default `false`.
    pub save_best_only: bool,
    /// Save the parameters only ([`SaveContent::Weights`]) instead of a full
    /// resumable checkpoint ([`SaveContent::Full`]). Default `false`.
    pub save_weights_only: bool,
    /// `"auto"`, `"min"` or `"max"`; anything else warns and means `"auto"`.
    /// Resolved at the first epoch end even without `save_best_only`.
    pub mode: String,
    /// `"epoch"` (default) or a number of batches.
    pub save_freq: SaveFreq,
    /// The initial "best" value: nothing is saved (best-only / top-k) until
    /// it is beaten. Default `None`.
    #[serde(with = "special_float::option")]
    pub initial_value_threshold: Option<f64>,
    /// *Lightning extra.* Keep the `k` best checkpoints by `monitor` and
    /// delete the files of the others (`0` keeps none). The file name should
    /// contain `{epoch}` (or another changing key) so checkpoints do not
    /// overwrite each other. A save point where `monitor` is missing warns
    /// and saves nothing; NaN ranks last. Ties do not displace a kept
    /// checkpoint. Cannot be combined with `save_best_only`. Default `None`
    /// (Keras's behaviour).
    pub save_top_k: Option<usize>,
    /// *Lightning extra.* Also write the latest model at every save point
    /// (each epoch end, or every `save_freq` batches), whether or not the
    /// regular checkpoint was written, to a stable file next to the others:
    /// `last` plus the extension of `filepath` in the same directory
    /// (`ckpt/{epoch:02d}.weights.h5` → `ckpt/last.weights.h5`,
    /// `runs/model-{epoch}.mpk` → `runs/last.mpk`; `.weights.h5` counts as
    /// one extension; an extension with a placeholder is dropped). The
    /// directory part of `filepath` must not contain placeholders.
    /// Default `false`.
    pub save_last: bool,
}

impl Default for ModelCheckpointConfig {
    fn default() -> Self {
        Self {
            filepath: String::new(),
            monitor: "val_loss".into(),
            verbose: 0,
            save_best_only: false,
            save_weights_only: false,
            mode: "auto".into(),
            save_freq: SaveFreq::Epoch,
            initial_value_threshold: None,
            save_top_k: None,
            save_last: false,
        }
    }
}

/// The serialisable state of [`ModelCheckpoint`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCheckpointState {
    /// `best` and the comparison (the monitor base's state; `min_delta` is
    /// always 0 here).
    #[serde(flatten)]
    pub monitor: MonitorState,
    /// The checkpoints kept by `save_top_k`, in save order.
    pub top_k: Vec<TopKEntry>,
    /// Batches counted towards the next batch-level save.
    pub batches_since_save: u64,
    /// The last batch index seen (Keras's `_last_batch_seen`).
    pub last_batch_seen: usize,
}

/// Saves the model (or its weights) at the end of every epoch or every
/// `save_freq` batches, optionally only when the monitored metric improves,
/// with Keras 3's decisions and file names.
///
/// `best` starts at `initial_value_threshold` and is not reset by
/// `on_train_begin`; comparisons are float32 and strict (`min_delta = 0`).
/// Writes go through [`Context::save_model`], which the Burn glue makes
/// atomic.
///
/// ```
/// use burnfit_core::builtins::{ModelCheckpoint, ModelCheckpointConfig};
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let dir = tempfile::tempdir().unwrap();
/// let checkpoint = ModelCheckpoint::new(ModelCheckpointConfig {
///     filepath: dir.path().join("ckpt/{epoch:02d}-{val_loss:.2f}.mpk").display().to_string(),
///     save_best_only: true,
///     ..Default::default()
/// })
/// .unwrap();
/// let mut list = CallbackList::new();
/// list.push(checkpoint);
/// let mut ctl = ScriptedControl::new(0.01);
/// let script = Script::from_epochs([0.9, 0.7, 0.8].map(|v| Logs::from_iter([("val_loss", v)])));
/// drive(&mut list, &mut ctl, &script);
/// let saved: Vec<_> = ctl.saves().iter().map(|s| s.path.file_name().unwrap().to_owned()).collect();
/// assert_eq!(saved, ["01-0.90.mpk", "02-0.70.mpk"]);
/// ```
pub struct ModelCheckpoint {
    config: ModelCheckpointConfig,
    monitor: Monitor,
    content: SaveContent,
    current_epoch: usize,
    batches_since_save: u64,
    last_batch_seen: usize,
    top_k: Vec<TopKEntry>,
    last_path: Option<PathBuf>,
}

impl ModelCheckpoint {
    /// Builds the callback, validating the file name template and the
    /// parameter combination.
    pub fn new(config: ModelCheckpointConfig) -> Result<Self> {
        if config.filepath.is_empty() {
            return Err(invalid(
                "filepath",
                "is required (for example `ckpt/{epoch:02d}.mpk`)",
            ));
        }
        check_keras_extension(&config)?;
        check_template(&config.filepath)?;
        if config.save_top_k.is_some() && config.save_best_only {
            return Err(invalid(
                "save_top_k",
                "cannot be combined with save_best_only (save_top_k = 1 keeps only the best)",
            ));
        }
        let last_path = if config.save_last {
            Some(last_path(&config.filepath)?)
        } else {
            None
        };
        let mut monitor = Monitor::new(NAME, &config.monitor, &config.mode, 0.0);
        monitor.set_best(config.initial_value_threshold);
        Ok(Self {
            content: if config.save_weights_only {
                SaveContent::Weights
            } else {
                SaveContent::Full
            },
            config,
            monitor,
            current_epoch: 0,
            batches_since_save: 0,
            last_batch_seen: 0,
            top_k: Vec::new(),
            last_path,
        })
    }

    /// The parameters it was built with.
    pub fn config(&self) -> &ModelCheckpointConfig {
        &self.config
    }

    /// Sets the metric directions `mode="auto"` resolves with.
    pub fn with_metric_directions(mut self, metrics: MetricDirections) -> Self {
        self.monitor.set_metric_directions(metrics);
        self
    }

    /// Takes the construction warnings (unknown mode); those not taken are
    /// emitted at `on_train_begin`.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.monitor.take_warnings()
    }

    /// The `last` file, when `save_last` is on.
    pub fn last_path(&self) -> Option<&Path> {
        self.last_path.as_deref()
    }

    /// The checkpoints kept by `save_top_k`, in save order.
    pub fn top_k(&self) -> &[TopKEntry] {
        &self.top_k
    }

    /// The current state.
    pub fn current_state(&self) -> ModelCheckpointState {
        ModelCheckpointState {
            monitor: self.monitor.saved_state(),
            top_k: self.top_k.clone(),
            batches_since_save: self.batches_since_save,
            last_batch_seen: self.last_batch_seen,
        }
    }

    /// Keras's `_should_save_on_batch`: counts batches across epochs.
    fn should_save_on_batch(&mut self, batch: usize) -> bool {
        let SaveFreq::Batches(freq) = self.config.save_freq else {
            return false;
        };
        let added = if batch <= self.last_batch_seen {
            batch + 1 // a new epoch
        } else {
            batch - self.last_batch_seen
        };
        self.batches_since_save += added as u64;
        self.last_batch_seen = batch;
        if self.batches_since_save >= freq {
            self.batches_since_save = 0;
            true
        } else {
            false
        }
    }

    fn info(&self, ctx: &mut Context, message: String) {
        if self.config.verbose > 0 {
            ctx.info(message);
        }
    }

    /// Keras's `_should_save_model`.
    fn should_save(
        &mut self,
        epoch: usize,
        logs: &Logs,
        path: &Path,
        ctx: &mut Context,
    ) -> Result<bool> {
        let shown = path.display();
        if !self.config.save_best_only {
            self.info(ctx, format!("Epoch {}: saving model to {shown}", epoch + 1));
            return Ok(true);
        }
        let monitor = &self.config.monitor;
        let Some(current) = self.monitor.current(logs) else {
            ctx.warn(format!(
                "Can save best model only with {monitor} available."
            ));
            return Ok(true);
        };
        let best_str = fmt5(self.monitor.best());
        if self.monitor.improves_on_best(current)? {
            let message = format!(
                "Epoch {}: {monitor} improved from {best_str} to {}, saving model to {shown}",
                epoch + 1,
                fmt5(Some(current))
            );
            self.info(ctx, message);
            self.monitor.set_best(Some(current));
            Ok(true)
        } else {
            let message = format!(
                "Epoch {}: {monitor} did not improve from {best_str}",
                epoch + 1
            );
            self.info(ctx, message);
            Ok(false)
        }
    }

    fn write(&self, path: &Path, ctx: &mut Context) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CallbackError::io(dir, e))?;
        }
        ctx.save_model(path, self.content)
    }

    /// The save decision and bookkeeping of `save_top_k`.
    fn save_top_k(
        &mut self,
        k: usize,
        epoch: usize,
        batch: Option<usize>,
        logs: &Logs,
        path: &Path,
        ctx: &mut Context,
    ) -> Result<bool> {
        let monitor = self.config.monitor.clone();
        let Some(current) = self.monitor.current(logs) else {
            ctx.warn(format!(
                "Can save top-k models only with {monitor} available."
            ));
            return Ok(false);
        };
        let direction = self.monitor.resolve()?;
        if let Some(threshold) = self.config.initial_value_threshold
            && !crate::monitor::is_improvement(direction, 0.0, current, Some(threshold))
        {
            return Ok(false);
        }
        let candidate = TopKEntry {
            path: path.to_path_buf(),
            score: current,
            epoch,
            batch,
        };
        let Ranking::Kept { evicted } = top_k::rank(&mut self.top_k, k, direction, candidate)
        else {
            self.info(
                ctx,
                format!("Epoch {}: {monitor} was not in top {k}", epoch + 1),
            );
            return Ok(false);
        };
        self.info(
            ctx,
            format!(
                "Epoch {}: {monitor} = {} is in top {k}, saving model to {}",
                epoch + 1,
                fmt5(Some(current)),
                path.display()
            ),
        );
        self.write(path, ctx)?;
        self.monitor.update_best(current)?;
        if let Some(evicted) = evicted {
            // Queued after the write above: the new file lands first.
            ctx.remove_file(&evicted)?;
        }
        Ok(true)
    }

    /// Keras's `_save_model`, plus top-k and `last`.
    fn save_point(
        &mut self,
        epoch: usize,
        batch: Option<usize>,
        logs: &Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let path = checkpoint_path(&self.config.filepath, epoch, batch, logs)?;
        if let Some(k) = self.config.save_top_k {
            self.save_top_k(k, epoch, batch, logs, &path, ctx)?;
        } else if self.should_save(epoch, logs, &path, ctx)? {
            self.write(&path, ctx)?;
            self.info(
                ctx,
                format!(
                    "Epoch {}: finished saving model to {}",
                    epoch + 1,
                    path.display()
                ),
            );
        }
        if let Some(last) = self.last_path.clone() {
            self.write(&last, ctx)?;
        }
        Ok(())
    }
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        for warning in self.monitor.take_warnings() {
            ctx.warn(warning);
        }
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.current_epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        if self.should_save_on_batch(batch) {
            self.save_point(self.current_epoch, Some(batch), logs, ctx)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        self.monitor.resolve()?;
        if self.config.save_freq == SaveFreq::Epoch {
            self.save_point(epoch, None, logs, ctx)?;
        }
        Ok(())
    }

    fn wants_batch_logs(&self) -> bool {
        matches!(self.config.save_freq, SaveFreq::Batches(_))
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&self.current_state())
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: ModelCheckpointState = crate::error::state_from_json(state)?;
        self.monitor.load_saved_state(&state.monitor);
        self.top_k = state.top_k;
        self.batches_since_save = state.batches_since_save;
        self.last_batch_seen = state.last_batch_seen;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackList;
    use crate::testing::{Script, ScriptedControl, Trace, drive};

    fn run(config: ModelCheckpointConfig, values: &[f64]) -> (Trace, ScriptedControl) {
        let mut list = CallbackList::new();
        list.push(ModelCheckpoint::new(config).unwrap());
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs(
            values
                .iter()
                .map(|v| Logs::from_iter([("loss", 1.0), ("val_loss", *v)])),
        );
        (drive(&mut list, &mut ctl, &script), ctl)
    }

    fn files(dir: &Path) -> Vec<(String, i64)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    ScriptedControl::read_marker(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn cfg(dir: &Path, name: &str) -> ModelCheckpointConfig {
        ModelCheckpointConfig {
            filepath: dir.join(name).display().to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn top_k_keeps_the_best_and_deletes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_top_k: Some(2),
            ..cfg(dir.path(), "m-{epoch}.mpk")
        };
        let (trace, ctl) = run(config, &[0.5, 0.4, 0.6, 0.3, 0.4, f64::NAN]);
        assert!(trace.error.is_none());
        // Saved: 0.5, 0.4, (0.6 no), 0.3 evicts 0.5, (0.4 ties the worst: no), (NaN no).
        assert_eq!(ctl.saves().len(), 3);
        assert_eq!(
            files(dir.path()),
            [("m-2.mpk".to_string(), 1), ("m-4.mpk".to_string(), 3)]
        );
        let state: ModelCheckpointState =
            serde_json::from_value(trace.final_states.unwrap()["ModelCheckpoint"].clone()).unwrap();
        assert_eq!(state.top_k.len(), 2);
        assert_eq!(state.monitor.best, Some(0.3));
    }

    #[test]
    fn top_k_max_mode_nan_ranks_last_and_k0_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_top_k: Some(1),
            monitor: "val_loss".into(),
            mode: "max".into(),
            ..cfg(dir.path(), "m-{epoch}.mpk")
        };
        let (_, _) = run(config, &[f64::NAN, 0.1, 0.05, 0.2]);
        assert_eq!(files(dir.path()), [("m-4.mpk".to_string(), 3)]);

        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_top_k: Some(0),
            save_last: true,
            ..cfg(dir.path(), "m-{epoch}.mpk")
        };
        let (_, _) = run(config, &[0.5, 0.4]);
        assert_eq!(files(dir.path()), [("last.mpk".to_string(), 1)]);
    }

    #[test]
    fn top_k_missing_monitor_warns_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_top_k: Some(3),
            monitor: "val_acc".into(),
            ..cfg(dir.path(), "m-{epoch}.mpk")
        };
        let (trace, ctl) = run(config, &[0.5]);
        assert!(trace.error.is_none());
        assert!(ctl.saves().is_empty());
        assert_eq!(
            ctl.warnings(),
            ["Can save top-k models only with val_acc available."]
        );
    }

    #[test]
    fn save_last_writes_a_stable_file_every_save_point() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_best_only: true,
            save_last: true,
            ..cfg(dir.path(), "ckpt/{epoch:02d}.weights.h5")
        };
        let (_, _) = run(config, &[0.5, 0.6, 0.7]);
        assert_eq!(
            files(&dir.path().join("ckpt")),
            [
                ("01.weights.h5".to_string(), 0),
                ("last.weights.h5".to_string(), 2)
            ]
        );
    }

    #[test]
    fn last_path_rule() {
        let last = |t: &str| last_path(t).unwrap().display().to_string();
        assert_eq!(last("ckpt/{epoch:02d}.weights.h5"), "ckpt/last.weights.h5");
        assert_eq!(last("runs/model-{epoch}.mpk"), "runs/last.mpk");
        assert_eq!(last("m-{epoch}"), "last");
        assert_eq!(last("m-{val_loss:.2f}"), "last");
        assert_eq!(last("a{{b}}/m.bin"), "a{b}/last.bin");
        assert!(last_path("run-{epoch}/model.mpk").is_err());
    }

    #[test]
    fn validation() {
        let base = ModelCheckpointConfig {
            filepath: "w.h5".into(),
            save_weights_only: true,
            ..Default::default()
        };
        let err = ModelCheckpoint::new(base.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must end in `.weights.h5`"), "{err}");
        for ok in ["w.weights.h5", "w.mpk", "w", "w.bin"] {
            assert!(
                ModelCheckpoint::new(ModelCheckpointConfig {
                    filepath: ok.into(),
                    ..base.clone()
                })
                .is_ok()
            );
        }
        let full = ModelCheckpointConfig {
            save_weights_only: false,
            ..base.clone()
        };
        assert!(ModelCheckpoint::new(full).is_ok());
        assert!(
            ModelCheckpoint::new(ModelCheckpointConfig {
                filepath: String::new(),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            ModelCheckpoint::new(ModelCheckpointConfig {
                filepath: "m-{}.mpk".into(),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            ModelCheckpoint::new(ModelCheckpointConfig {
                filepath: "m-{epoch:q}.mpk".into(),
                ..base.clone()
            })
            .is_err()
        );
        let both = ModelCheckpointConfig {
            filepath: "m.mpk".into(),
            save_best_only: true,
            save_top_k: Some(2),
            ..base
        };
        assert!(ModelCheckpoint::new(both).is_err());
    }

    #[test]
    fn save_freq_serde() {
        let c: ModelCheckpointConfig =
            serde_json::from_str(r#"{"filepath": "a", "save_freq": 3}"#).unwrap();
        assert_eq!(c.save_freq, SaveFreq::Batches(3));
        let c: ModelCheckpointConfig =
            serde_json::from_str(r#"{"filepath": "a", "save_freq": "epoch"}"#).unwrap();
        assert_eq!(c.save_freq, SaveFreq::Epoch);
        // "batch" means every batch (a superset of Keras, which rejects it).
        let c: ModelCheckpointConfig =
            serde_json::from_str(r#"{"filepath": "a", "save_freq": "batch"}"#).unwrap();
        assert_eq!(c.save_freq, SaveFreq::Batches(1));
        assert!(
            serde_json::from_str::<ModelCheckpointConfig>(
                r#"{"filepath": "a", "save_freq": "weekly"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<ModelCheckpointConfig>(r#"{"filepath": "a", "save_freq": 0}"#)
                .is_err()
        );
        assert_eq!(serde_json::to_value(SaveFreq::Batches(5)).unwrap(), 5);
        assert_eq!(serde_json::to_value(SaveFreq::Epoch).unwrap(), "epoch");
    }

    #[test]
    fn missing_placeholder_key_is_a_keras_key_error() {
        let dir = tempfile::tempdir().unwrap();
        let (trace, _) = run(cfg(dir.path(), "m-{val_acc:.2f}.mpk"), &[0.5]);
        let err = trace.error.unwrap().error.to_string();
        assert!(
            err.contains("Failed to format this callback filepath"),
            "{err}"
        );
        assert!(err.contains("'val_acc'"), "{err}");
        // `{batch}` has no value at epoch end.
        let (trace, _) = run(cfg(dir.path(), "m-{batch}.mpk"), &[0.5]);
        assert!(trace.error.is_some());
    }

    #[test]
    fn verbose_messages_match_keras() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            verbose: 1,
            save_best_only: true,
            ..cfg(dir.path(), "best.mpk")
        };
        let (_, ctl) = run(config, &[0.5, 0.6]);
        let path = dir.path().join("best.mpk").display().to_string();
        assert_eq!(
            ctl.infos(),
            [
                format!("Epoch 1: val_loss improved from None to 0.50000, saving model to {path}"),
                format!("Epoch 1: finished saving model to {path}"),
                "Epoch 2: val_loss did not improve from 0.50000".to_string(),
            ]
        );
    }

    #[test]
    fn state_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelCheckpointConfig {
            save_top_k: Some(2),
            ..cfg(dir.path(), "m-{epoch}.mpk")
        };
        let (trace, _) = run(config.clone(), &[0.5, 0.4]);
        let state = trace.final_states.unwrap()["ModelCheckpoint"].clone();
        let mut mc = ModelCheckpoint::new(config).unwrap();
        mc.load_state(state.clone()).unwrap();
        assert_eq!(mc.state().unwrap().unwrap(), state);
        assert_eq!(mc.top_k().len(), 2);
    }
}
