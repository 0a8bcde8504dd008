//! The [`TensorBoard`] callback: Keras's `keras.callbacks.TensorBoard` layout
//! and tags, plus hyperparameters and the run configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::event_file::{EventWriter, file_lengths, now_secs, truncate_to};
use super::proto::hparams::Status;
use super::summary::HParamValue;
use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot, ParamRead, Progress};
use crate::error::{CallbackError, Result};
use crate::frequency::Frequency;
use crate::logs::Logs;

const NAME: &str = "TensorBoard";

/// Reads the model's parameters for weight histograms: returns
/// `(name, values)` pairs, e.g. `("linear1/weight", [...])`. The callback
/// writes each as the tag `<name>/histogram`, as Keras does.
///
/// Callbacks see the model only as a type-erased [`ModelSnapshot`], so the
/// code that knows the model type (the Burn glue, the CLI) supplies this
/// function with [`TensorBoard::with_param_source`].
pub type ParamHistogramSource = Box<dyn Fn(&ModelSnapshot) -> Vec<(String, Vec<f32>)> + Send>;

/// How often per-batch scalars are written (Keras's `update_freq`): only
/// epoch-level scalars (`"epoch"`, the default), or also `batch_<metric>`
/// every N optimizer steps (an integer; Keras's `"batch"` means 1). The
/// shared [`Frequency`]; kept as a name so existing code compiles.
pub type UpdateFreq = Frequency;

/// Writes TensorBoard event files, laid out and named as Keras's
/// `keras.callbacks.TensorBoard` does, so TensorBoard shows a burnfit run
/// exactly like a Keras run:
///
/// * `log_dir/train` and `log_dir/validation` runs;
/// * at each epoch end, `epoch_<metric>` scalars at step = epoch (0-based):
///   train metrics and `epoch_learning_rate` (the optimizer's current
///   learning rate, when the loop knows it) in `train`, `val_` metrics
///   without their prefix in `validation` (`val_loss` → `epoch_loss`);
/// * after each validation pass, `evaluation_<metric>_vs_iterations` in
///   `validation` at step = optimizer steps so far;
/// * with an integer `update_freq`, `batch_<metric>` in `train` at step =
///   optimizer steps so far for every metric of the batch logs (the
///   epoch's running means, as in Keras), every `update_freq` steps (Keras 3 writes every
///   batch whatever the integer; this follows the documented intent);
/// * with an integer `update_freq`, also `batch_learning_rate` (the rate
///   of the step just taken), and with `write_steps_per_second`,
///   `batch_steps_per_second` and `epoch_steps_per_second`;
/// * with `histogram_freq = n > 0`, a histogram `<name>/histogram` of every
///   parameter every `n` epochs, at step = epoch (the parameters come from
///   [`with_param_source`](Self::with_param_source) if set, else from the
///   model snapshot, which the Burn glue can list for any model);
/// * with hyperparameters, the HParams dashboard's session in `log_dir`
///   itself (start at train begin; experiment, with every `epoch_` scalar as a
///   metric, and end status at train end);
/// * with a run configuration, a text summary `config` in `train`, once per
///   run (a resume does not write it again).
///
/// Scalars are stored as 32-bit floats, as TensorFlow does. Files are flushed
/// at every epoch end and at train end; each training run (and each resume)
/// writes new event files next to the earlier ones, which TensorBoard reads
/// as one series.
///
/// `write_graph` is accepted for Keras compatibility and does nothing (Burn
/// has no graph to export).
///
/// On resume ([`Callback::load_state`]) the step numbers continue: if the
/// loop hands out epochs or optimizer steps that were already written, they
/// are shifted to follow the last step written before the interruption.
///
/// ```
/// use burnfit_core::tensorboard::{TensorBoard, UpdateFreq};
///
/// let tb = TensorBoard::new("runs/exp1")
///     .histogram_freq(1)
///     .update_freq(UpdateFreq::Batches(100))
///     .hparam("learning_rate", 0.01)
///     .hparam("optimizer", "adam")
///     .config_text("epochs = 10\nbatch_size = 32")
///     .with_param_source(|_model| vec![("linear/weight".to_string(), vec![0.1, -0.2, 0.3])]);
/// # let _ = tb;
/// ```
pub struct TensorBoard {
    log_dir: PathBuf,
    histogram_freq: usize,
    write_graph: bool,
    update_freq: UpdateFreq,
    hparams: BTreeMap<String, HParamValue>,
    config_text: Option<String>,
    param_source: Option<ParamHistogramSource>,
    write_steps_per_second: bool,

    train: Option<EventWriter>,
    validation: Option<EventWriter>,
    session: Option<EventWriter>,
    /// `(group, tag)` of every epoch scalar written: the hparams metrics.
    metric_tags: BTreeSet<(String, String)>,
    last_epoch_step: Option<i64>,
    last_global_step: Option<i64>,
    epoch_offset: i64,
    step_offset: i64,
    /// Set by `load_state`: the first epoch / global step seen decides the offset.
    epoch_offset_pending: bool,
    step_offset_pending: bool,
    warned_no_source: bool,
    /// Whether the `config` text was written (by this run or before a
    /// resume).
    config_written: bool,
    /// When the epoch began, and the step count then (steps per second).
    epoch_start: Option<(std::time::Instant, u64)>,
    batch_start: Option<std::time::Instant>,
}

impl TensorBoard {
    /// A callback writing under `log_dir`, with Keras's defaults
    /// (`histogram_freq = 0`, `write_graph = true`, `update_freq = "epoch"`).
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self {
            log_dir: log_dir.into(),
            histogram_freq: 0,
            write_graph: true,
            update_freq: UpdateFreq::Epoch,
            hparams: BTreeMap::new(),
            config_text: None,
            param_source: None,
            write_steps_per_second: false,
            train: None,
            validation: None,
            session: None,
            metric_tags: BTreeSet::new(),
            last_epoch_step: None,
            last_global_step: None,
            epoch_offset: 0,
            step_offset: 0,
            epoch_offset_pending: false,
            step_offset_pending: false,
            warned_no_source: false,
            config_written: false,
            epoch_start: None,
            batch_start: None,
        }
    }

    /// Keras's `write_steps_per_second`: also write the training speed,
    /// `epoch_steps_per_second` at each epoch end and, with a batch
    /// `update_freq`, `batch_steps_per_second`.
    pub fn write_steps_per_second(mut self, write: bool) -> Self {
        self.write_steps_per_second = write;
        self
    }

    /// Writes weight histograms every `freq` epochs (0 = never), Keras's
    /// `histogram_freq`.
    pub fn histogram_freq(mut self, freq: usize) -> Self {
        self.histogram_freq = freq;
        self
    }

    /// Keras's `write_graph`: accepted, has no effect.
    pub fn write_graph(mut self, write_graph: bool) -> Self {
        self.write_graph = write_graph;
        self
    }

    /// Keras's `update_freq`.
    pub fn update_freq(mut self, update_freq: UpdateFreq) -> Self {
        self.update_freq = update_freq;
        self
    }

    /// Sets all hyperparameters shown in the HParams dashboard.
    pub fn hparams(mut self, hparams: BTreeMap<String, HParamValue>) -> Self {
        self.hparams = hparams;
        self
    }

    /// Adds one hyperparameter.
    pub fn hparam(mut self, name: impl Into<String>, value: impl Into<HParamValue>) -> Self {
        self.hparams.insert(name.into(), value.into());
        self
    }

    /// The run configuration, shown in TensorBoard's Text tab (tag `config`
    /// of the `train` run) as a code block.
    pub fn config_text(mut self, text: impl Into<String>) -> Self {
        self.config_text = Some(text.into());
        self
    }

    /// Sets the function that reads the model's parameters for histograms.
    pub fn with_param_source(
        mut self,
        source: impl Fn(&ModelSnapshot) -> Vec<(String, Vec<f32>)> + Send + 'static,
    ) -> Self {
        self.param_source = Some(Box::new(source));
        self
    }

    /// The log directory.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The `train` run's directory.
    pub fn train_dir(&self) -> PathBuf {
        self.log_dir.join("train")
    }

    /// The `validation` run's directory.
    pub fn validation_dir(&self) -> PathBuf {
        self.log_dir.join("validation")
    }

    fn train_writer(&mut self) -> Result<&mut EventWriter> {
        if self.train.is_none() {
            self.train = Some(EventWriter::create(self.train_dir())?);
        }
        Ok(self.train.as_mut().expect("created above"))
    }

    fn validation_writer(&mut self) -> Result<&mut EventWriter> {
        if self.validation.is_none() {
            self.validation = Some(EventWriter::create(self.validation_dir())?);
        }
        Ok(self.validation.as_mut().expect("created above"))
    }

    fn flush_all(&mut self) -> Result<()> {
        for writer in [&mut self.train, &mut self.validation, &mut self.session]
            .into_iter()
            .flatten()
        {
            writer.flush()?;
        }
        Ok(())
    }

    /// The step written for `epoch`.
    fn epoch_step(&mut self, epoch: usize) -> i64 {
        let epoch = epoch as i64;
        if std::mem::take(&mut self.epoch_offset_pending)
            && let Some(last) = self.last_epoch_step
        {
            self.epoch_offset = (last + 1 - epoch).max(0);
        }
        epoch + self.epoch_offset
    }

    /// The step written for the loop's batch count `global_batch` (Keras's
    /// TensorBoard counts batches, also under gradient accumulation).
    fn global_step(&mut self, global_batch: u64) -> i64 {
        let step = global_batch as i64;
        if std::mem::take(&mut self.step_offset_pending)
            && let Some(last) = self.last_global_step.filter(|&last| step <= last)
        {
            // The loop restarted counting: continue after the last step.
            self.step_offset = last;
        }
        let step = step + self.step_offset;
        self.last_global_step = Some(self.last_global_step.map_or(step, |last| last.max(step)));
        step
    }

    fn write_histograms(&mut self, step: i64, ctx: &mut Context) -> Result<()> {
        let snapshot = ctx.snapshot_model();
        let params = match &self.param_source {
            Some(source) => source(&snapshot),
            None => match snapshot.params(ParamRead::Values) {
                Some(params) => params
                    .into_iter()
                    .map(|p| (p.path, p.values.unwrap_or_default()))
                    .collect(),
                None => return Ok(()),
            },
        };
        let writer = self.train_writer()?;
        for (name, values) in params {
            writer.write_histogram(&format!("{name}/histogram"), &values, step)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for TensorBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(NAME)
            .field("log_dir", &self.log_dir)
            .field("histogram_freq", &self.histogram_freq)
            .field("write_graph", &self.write_graph)
            .field("update_freq", &self.update_freq)
            .field("hparams", &self.hparams)
            .field("config_text", &self.config_text.is_some())
            .field("param_source", &self.param_source.is_some())
            .finish_non_exhaustive()
    }
}

/// Markdown for `text` shown verbatim: a fenced code block whose fence is
/// longer than any backtick run inside.
fn code_block(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{text}\n{fence}")
}

impl Callback for TensorBoard {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        self.train_writer()?;
        if self.histogram_freq > 0
            && self.param_source.is_none()
            && ctx.snapshot_model().params(ParamRead::Shapes).is_none()
            && !self.warned_no_source
        {
            self.warned_no_source = true;
            ctx.warn(format!(
                "{NAME}: histogram_freq={} but the model's parameters cannot be listed \
                 here and no parameter source was set (TensorBoard::with_param_source); \
                 no weight histograms will be written",
                self.histogram_freq
            ));
        }
        // Once per run: a resume continues the run the text describes.
        if let Some(text) = self.config_text.clone().filter(|_| !self.config_written) {
            let step = ctx.progress().epoch as i64;
            self.train_writer()?
                .write_text("config", &code_block(&text), step)?;
            self.config_written = true;
        }
        if !self.hparams.is_empty() {
            let mut session = EventWriter::create(&self.log_dir)?;
            session.write_hparams_session_start(&self.hparams, "", now_secs())?;
            self.session = Some(session);
        }
        self.flush_all()
    }

    fn on_epoch_begin(&mut self, _epoch: usize, ctx: &mut Context) -> Result<()> {
        self.epoch_start = Some((std::time::Instant::now(), ctx.progress().global_batch));
        Ok(())
    }

    fn on_train_batch_begin(&mut self, _batch: usize, _ctx: &mut Context) -> Result<()> {
        if self.write_steps_per_second {
            self.batch_start = Some(std::time::Instant::now());
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let UpdateFreq::Batches(freq) = self.update_freq else {
            return Ok(());
        };
        let step = self.global_step(ctx.progress().global_batch);
        if freq == 0 || step % freq as i64 != 0 {
            return Ok(());
        }
        let lr = ctx.last_step_learning_rate().or(ctx.learning_rate());
        let speed = self
            .batch_start
            .filter(|_| self.write_steps_per_second)
            .map(|start| 1.0 / start.elapsed().as_secs_f64().max(1e-9));
        let writer = self.train_writer()?;
        for (name, value) in logs.iter() {
            writer.write_scalar(&format!("batch_{name}"), value, step)?;
        }
        if let Some(lr) = lr {
            writer.write_scalar("batch_learning_rate", lr, step)?;
        }
        if let Some(speed) = speed {
            writer.write_scalar("batch_steps_per_second", speed, step)?;
        }
        // On disk before a backup records the file's length: a resume cuts
        // each file back to that length, and events still in the buffer
        // then would be lost for good.
        writer.flush()
    }

    fn on_validation_end(&mut self, logs: &Logs, ctx: &mut Context) -> Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let step = self.global_step(ctx.progress().global_batch);
        let writer = self.validation_writer()?;
        for (name, value) in logs.iter() {
            let name = name.strip_prefix("val_").unwrap_or(name);
            writer.write_scalar(&format!("evaluation_{name}_vs_iterations"), value, step)?;
        }
        writer.flush()
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        let step = self.epoch_step(epoch);
        self.global_step(ctx.progress().global_batch);
        if !logs.is_empty() {
            let mut train = Logs::new();
            let mut validation = Logs::new();
            for (name, value) in logs.iter() {
                match name.strip_prefix("val_") {
                    Some(name) => validation.insert(name, value),
                    None => train.insert(name, value),
                }
            }
            if let Some(lr) = ctx.learning_rate() {
                train.insert("learning_rate", lr);
            }
            if self.write_steps_per_second
                && let Some((start, first_step)) = self.epoch_start
            {
                let steps = ctx.progress().global_batch.saturating_sub(first_step);
                train.insert(
                    "steps_per_second",
                    steps as f64 / start.elapsed().as_secs_f64().max(1e-9),
                );
            }
            if !train.is_empty() {
                let writer = self.train_writer()?;
                for (name, value) in train.iter() {
                    writer.write_scalar(&format!("epoch_{name}"), value, step)?;
                }
                self.metric_tags.extend(
                    train
                        .keys()
                        .map(|name| ("train".to_string(), format!("epoch_{name}"))),
                );
            }
            if !validation.is_empty() {
                let writer = self.validation_writer()?;
                for (name, value) in validation.iter() {
                    writer.write_scalar(&format!("epoch_{name}"), value, step)?;
                }
                self.metric_tags.extend(
                    validation
                        .keys()
                        .map(|name| ("validation".to_string(), format!("epoch_{name}"))),
                );
            }
        }
        if self.histogram_freq > 0 && step % self.histogram_freq as i64 == 0 {
            self.write_histograms(step, ctx)?;
        }
        self.last_epoch_step = Some(step);
        self.flush_all()
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        if let Some(session) = self.session.as_mut() {
            let metrics: Vec<(String, String)> = self.metric_tags.iter().cloned().collect();
            let now = now_secs();
            session.write_hparams_experiment(&self.hparams, &metrics, now)?;
            session.write_hparams_session_end(Status::Success, now)?;
        }
        self.flush_all()?;
        self.train = None;
        self.validation = None;
        self.session = None;
        Ok(())
    }

    fn wants_batch_logs(&self) -> bool {
        matches!(self.update_freq, UpdateFreq::Batches(_))
    }

    fn wants_batch_metrics(&self) -> bool {
        matches!(self.update_freq, UpdateFreq::Batches(_))
    }

    fn wants_batch_metrics_at(&self, progress: &Progress) -> bool {
        // Only the steps it writes. After a resume its step count may be
        // shifted from the loop's (see `global_step`): ask for both.
        let global_batch = progress.global_batch;
        match self.update_freq {
            UpdateFreq::Batches(freq) if freq > 0 => {
                let step = global_batch as i64 + self.step_offset;
                step % freq as i64 == 0 || global_batch.is_multiple_of(freq)
            }
            _ => false,
        }
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        let files = file_lengths([&self.train, &self.validation].into_iter().flatten());
        let state = TensorBoardState {
            last_epoch_step: self.last_epoch_step,
            last_global_step: self.last_global_step,
            files,
            config_written: self.config_written,
        };
        crate::error::state_to_json(&state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: TensorBoardState = crate::error::state_from_json(state)?;
        self.last_epoch_step = state.last_epoch_step;
        self.last_global_step = state.last_global_step;
        self.config_written = state.config_written;
        // Events written after this state was taken (by a run that then
        // crashed) are cut, so the resumed run does not show them twice.
        truncate_to(&state.files)?;
        self.epoch_offset = 0;
        self.step_offset = 0;
        self.epoch_offset_pending = true;
        self.step_offset_pending = true;
        Ok(())
    }
}

/// What [`TensorBoard`] saves for resume: the last steps written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorBoardState {
    last_epoch_step: Option<i64>,
    last_global_step: Option<i64>,
    /// Event files with their length on disk when the state was taken.
    #[serde(default)]
    files: Vec<(PathBuf, u64)>,
    /// Whether the `config` text was written.
    #[serde(default)]
    config_written: bool,
}

fn default_log_dir() -> PathBuf {
    PathBuf::from("logs")
}

fn default_true() -> bool {
    true
}

/// Serializable settings of a [`TensorBoard`] callback, with Keras's
/// parameter names (plus `hparams` and `config_text`). The parameter source
/// for histograms is code, set on the built callback.
///
/// ```
/// use burnfit_core::tensorboard::{TensorBoardConfig, UpdateFreq};
///
/// let config: TensorBoardConfig = serde_json::from_str(
///     r#"{"log_dir": "runs/a", "histogram_freq": 1, "update_freq": 50,
///         "hparams": {"lr": 0.01, "optimizer": "adam"}}"#,
/// )
/// .unwrap();
/// assert_eq!(config.update_freq, UpdateFreq::Batches(50));
/// let tb = config.build().unwrap();
/// assert_eq!(tb.log_dir(), std::path::Path::new("runs/a"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorBoardConfig {
    /// Root directory of the run (Keras's `log_dir`, default `logs`).
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
    /// Weight histograms every this many epochs; 0 = never (default 0).
    #[serde(default)]
    pub histogram_freq: usize,
    /// Accepted for Keras compatibility; no effect (default `true`).
    #[serde(default = "default_true")]
    pub write_graph: bool,
    /// `"epoch"` (default), `"batch"` or an integer number of batches.
    #[serde(default)]
    pub update_freq: UpdateFreq,
    /// Hyperparameters for the HParams dashboard: numbers, strings, booleans.
    #[serde(default)]
    pub hparams: BTreeMap<String, HParamValue>,
    /// Run configuration shown as text.
    #[serde(default)]
    pub config_text: Option<String>,
    /// Also write the training speed in steps per second (default `false`).
    #[serde(default)]
    pub write_steps_per_second: bool,
}

impl Default for TensorBoardConfig {
    fn default() -> Self {
        Self {
            log_dir: default_log_dir(),
            histogram_freq: 0,
            write_graph: true,
            update_freq: UpdateFreq::Epoch,
            hparams: BTreeMap::new(),
            config_text: None,
            write_steps_per_second: false,
        }
    }
}

impl TensorBoardConfig {
    /// The configured callback.
    pub fn build(&self) -> Result<TensorBoard> {
        if let UpdateFreq::Batches(0) = self.update_freq {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "update_freq",
                message: "must be \"epoch\", \"batch\" or an integer >= 1".to_string(),
            });
        }
        let mut tb = TensorBoard::new(self.log_dir.clone())
            .histogram_freq(self.histogram_freq)
            .write_graph(self.write_graph)
            .update_freq(self.update_freq)
            .write_steps_per_second(self.write_steps_per_second)
            .hparams(self.hparams.clone());
        if let Some(text) = &self.config_text {
            tb = tb.config_text(text.clone());
        }
        Ok(tb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_metrics_are_asked_for_only_on_the_steps_written() {
        let every_3 = TensorBoard::new("unused").update_freq(UpdateFreq::Batches(3));
        let at = |global_batch| Progress {
            global_batch,
            ..Progress::default()
        };
        let asked: Vec<u64> = (1..=9)
            .filter(|&s| every_3.wants_batch_metrics_at(&at(s)))
            .collect();
        assert_eq!(asked, [3, 6, 9]);
        let per_epoch = TensorBoard::new("unused");
        assert!(!per_epoch.wants_batch_metrics());
        assert!(!(1..=9).any(|s| per_epoch.wants_batch_metrics_at(&at(s))));
    }

    #[test]
    fn update_freq_serde() {
        let parse = |s: &str| serde_json::from_str::<UpdateFreq>(s);
        assert_eq!(parse("\"epoch\"").unwrap(), UpdateFreq::Epoch);
        assert_eq!(parse("\"batch\"").unwrap(), UpdateFreq::Batches(1));
        assert_eq!(parse("25").unwrap(), UpdateFreq::Batches(25));
        assert!(parse("0").is_err());
        assert!(parse("\"Epoch\"").is_err());
        assert_eq!(serde_json::to_string(&UpdateFreq::Batches(3)).unwrap(), "3");
        assert_eq!(
            serde_json::to_string(&UpdateFreq::Epoch).unwrap(),
            "\"epoch\""
        );
    }

    #[test]
    fn callback_config_builds_a_tensorboard() {
        let config: crate::builtins::CallbackConfig = serde_json::from_str(
            r#"{"type": "TensorBoard", "log_dir": "runs/a", "update_freq": "batch",
                "hparams": {"lr": 0.1, "opt": "adam", "nesterov": true}}"#,
        )
        .unwrap();
        let tb = config.build().unwrap();
        assert_eq!(tb.name(), "TensorBoard");
        assert!(tb.wants_batch_logs());
        assert!(
            serde_json::from_str::<crate::builtins::CallbackConfig>(
                r#"{"type": "TensorBoard", "profile_batch": 2}"#
            )
            .is_err()
        );
    }

    #[test]
    fn config_rejects_unknown_fields() {
        assert!(serde_json::from_str::<TensorBoardConfig>(r#"{"logdir": "x"}"#).is_err());
        let config: TensorBoardConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, TensorBoardConfig::default());
    }

    #[test]
    fn code_block_fence_is_longer_than_content_backticks() {
        assert_eq!(code_block("a = 1"), "```\na = 1\n```");
        assert_eq!(code_block("x ```` y"), "`````\nx ```` y\n`````");
    }
}
