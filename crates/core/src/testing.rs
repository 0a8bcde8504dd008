//! Testing callbacks without training: a scripted [`TrainingControl`] and a
//! driver that replays metric logs through a [`CallbackList`] in exactly the
//! order Keras's `model.fit` calls the hooks, which is the order
//! `burnfit-callbacks`' engine calls them inside Burn's loop (a test runs
//! both on the same script and compares).
//!
//! [`ScriptedControl`] behaves like the tiny Keras model the oracle fixtures
//! were recorded with:
//!
//! * the learning rate is stored as an `f32` (Keras keeps it in a float32
//!   variable): [`TrainingControl::set_learning_rate`] rounds to `f32` and
//!   [`TrainingControl::learning_rate`] returns the `f32` widened to `f64`;
//! * the "model" is an integer *epoch marker* (`ModelSnapshot::of(i64)`),
//!   `-1` for the initial weights; [`drive`] sets it to the epoch number at
//!   the start of each epoch, so a restored snapshot or a checkpoint file
//!   tells which epoch's weights it holds;
//! * `save_model` writes a small text file holding the marker (parent
//!   directories created) and records the save;
//! * emitted warnings and messages are recorded with the hook they came from.
//!
//! ```
//! use burnfit_core::builtins::{EarlyStopping, EarlyStoppingConfig};
//! use burnfit_core::testing::{drive, Script, ScriptedControl};
//! use burnfit_core::{CallbackList, Logs};
//!
//! let mut list = CallbackList::new();
//! list.push(EarlyStopping::new(EarlyStoppingConfig { patience: 2, ..Default::default() }).unwrap());
//! let mut ctl = ScriptedControl::new(0.01);
//! let script = Script::from_epochs(
//!     [0.9, 0.8, 0.85, 0.9, 0.7].map(|v| Logs::from_iter([("val_loss", v)])),
//! );
//! let trace = drive(&mut list, &mut ctl, &script);
//! assert!(trace.error.is_none());
//! assert_eq!(trace.stop_epoch, Some(3)); // two epochs without improvement
//! assert_eq!(trace.epochs_run, 4);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::context::{Message, ModelSnapshot, Progress, SaveContent, TrainingControl};
use crate::error::{CallbackError, Result};
use crate::list::CallbackList;
use crate::logs::Logs;

/// The marker of the initial weights (before any epoch ran).
pub const INITIAL_MARKER: i64 = -1;

/// Which hook (or construction) was running, with Keras's phase names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Building the callback.
    Init,
    /// `on_train_begin`.
    TrainBegin,
    /// `on_epoch_begin`.
    EpochBegin,
    /// `on_train_batch_begin`.
    BatchBegin,
    /// `on_train_batch_end`.
    BatchEnd,
    /// `on_validation_begin`.
    ValidationBegin,
    /// `on_validation_batch_end`.
    ValidationBatchEnd,
    /// `on_validation_end`.
    ValidationEnd,
    /// `on_epoch_end`.
    EpochEnd,
    /// `on_train_end`.
    TrainEnd,
}

impl Phase {
    /// The fixture spelling: `init`, `train_begin`, `epoch_begin`,
    /// `batch_begin`, `batch_end`, `validation_begin`,
    /// `validation_batch_end`, `validation_end`, `epoch_end`, `train_end`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::TrainBegin => "train_begin",
            Phase::EpochBegin => "epoch_begin",
            Phase::BatchBegin => "batch_begin",
            Phase::BatchEnd => "batch_end",
            Phase::ValidationBegin => "validation_begin",
            Phase::ValidationBatchEnd => "validation_batch_end",
            Phase::ValidationEnd => "validation_end",
            Phase::EpochEnd => "epoch_end",
            Phase::TrainEnd => "train_end",
        }
    }
}

/// A point of the run: phase, epoch and batch (0-based; `None` outside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookPoint {
    /// The hook.
    pub phase: Phase,
    /// The epoch, for epoch and batch hooks.
    pub epoch: Option<usize>,
    /// The batch, for batch hooks.
    pub batch: Option<usize>,
}

impl HookPoint {
    /// A point.
    pub fn new(phase: Phase, epoch: Option<usize>, batch: Option<usize>) -> Self {
        Self {
            phase,
            epoch,
            batch,
        }
    }
}

impl Default for HookPoint {
    fn default() -> Self {
        Self::new(Phase::Init, None, None)
    }
}

/// One checkpoint written through [`TrainingControl::save_model`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveRecord {
    /// The hook that saved.
    pub at: HookPoint,
    /// The path as given by the callback.
    pub path: PathBuf,
    /// Weights or full checkpoint.
    pub content: SaveContent,
    /// The marker written into the file.
    pub marker: i64,
}

/// A warning or message emitted through the context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// The hook that emitted it.
    pub at: HookPoint,
    /// The message.
    pub message: Message,
}

/// A fake [`TrainingControl`]; see the [module documentation](self).
#[derive(Debug)]
pub struct ScriptedControl {
    lr: Option<f32>,
    stop: Option<String>,
    marker: i64,
    progress: Progress,
    at: HookPoint,
    saves: Vec<SaveRecord>,
    emitted: Vec<Emitted>,
    restores: Vec<(HookPoint, i64)>,
}

impl ScriptedControl {
    /// A control whose learning rate starts at `initial_lr` (rounded to
    /// `f32`), holding the initial weights (marker `-1`).
    pub fn new(initial_lr: f64) -> Self {
        Self {
            lr: Some(initial_lr as f32),
            ..Self::without_learning_rate()
        }
    }

    /// A control with no learning rate at all (as an optimizer without one).
    pub fn without_learning_rate() -> Self {
        Self {
            lr: None,
            stop: None,
            marker: INITIAL_MARKER,
            progress: Progress::default(),
            at: HookPoint::default(),
            saves: Vec::new(),
            emitted: Vec::new(),
            restores: Vec::new(),
        }
    }

    /// The marker of the weights the "model" holds now.
    pub fn marker(&self) -> i64 {
        self.marker
    }

    /// Sets the marker (what "training" an epoch does).
    pub fn set_marker(&mut self, marker: i64) {
        self.marker = marker;
    }

    /// Sets what [`TrainingControl::progress`] reports.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// Sets the hook point recorded with saves, messages and restores.
    pub fn set_hook_point(&mut self, at: HookPoint) {
        self.at = at;
    }

    /// The current hook point.
    pub fn hook_point(&self) -> HookPoint {
        self.at
    }

    /// The reason given with the pending stop request, if any.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop.as_deref()
    }

    /// Every save, in order.
    pub fn saves(&self) -> &[SaveRecord] {
        &self.saves
    }

    /// Every emitted warning and message, in order.
    pub fn emitted(&self) -> &[Emitted] {
        &self.emitted
    }

    /// The warnings' texts, in order.
    pub fn warnings(&self) -> Vec<&str> {
        self.texts(|m| matches!(m, Message::Warning(_)))
    }

    /// The info messages' texts, in order.
    pub fn infos(&self) -> Vec<&str> {
        self.texts(|m| matches!(m, Message::Info(_)))
    }

    fn texts(&self, keep: impl Fn(&Message) -> bool) -> Vec<&str> {
        self.emitted
            .iter()
            .filter(|e| keep(&e.message))
            .map(|e| match &e.message {
                Message::Warning(t) | Message::Info(t) => t.as_str(),
            })
            .collect()
    }

    /// Every `restore_model` call: where, and the marker restored.
    pub fn restores(&self) -> &[(HookPoint, i64)] {
        &self.restores
    }

    /// The marker stored in a file written by [`ScriptedControl`]'s `save_model`.
    pub fn read_marker(path: &Path) -> Result<i64> {
        let text = std::fs::read_to_string(path).map_err(|e| CallbackError::io(path, e))?;
        text.lines()
            .find_map(|line| line.strip_prefix("marker="))
            .and_then(|m| m.trim().parse().ok())
            .ok_or_else(|| {
                CallbackError::State(format!("{}: not a scripted checkpoint", path.display()))
            })
    }
}

impl TrainingControl for ScriptedControl {
    fn request_stop(&mut self, reason: String) {
        self.stop = Some(reason);
    }

    fn stop_requested(&self) -> bool {
        self.stop.is_some()
    }

    fn cancel_stop(&mut self) {
        self.stop = None;
    }

    fn learning_rate(&self) -> Option<f64> {
        self.lr.map(f64::from)
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match self.lr {
            Some(_) => {
                self.lr = Some(lr as f32);
                Ok(())
            }
            None => Err(CallbackError::Unsupported(
                "this ScriptedControl has no learning rate".into(),
            )),
        }
    }

    fn snapshot_model(&self) -> ModelSnapshot {
        ModelSnapshot::of(self.marker)
    }

    fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()> {
        let marker = snapshot.downcast::<i64>().map_err(|_| {
            CallbackError::Unsupported("ScriptedControl models are i64 markers".into())
        })?;
        self.marker = marker;
        self.restores.push((self.at, marker));
        Ok(())
    }

    fn save_model(&mut self, path: &Path, content: SaveContent) -> Result<()> {
        let text = format!(
            "burnfit scripted checkpoint\nmarker={}\ncontent={content:?}\n",
            self.marker
        );
        crate::atomic::write_atomic(path, text.as_bytes())?;
        self.saves.push(SaveRecord {
            at: self.at,
            path: path.to_path_buf(),
            content,
            marker: self.marker,
        });
        Ok(())
    }

    fn progress(&self) -> Progress {
        self.progress
    }

    fn emit(&mut self, message: Message) {
        self.emitted.push(Emitted {
            at: self.at,
            message,
        });
    }
}

/// What [`drive`] replays: per epoch the logs given to `on_epoch_end`, the
/// per-batch logs given to `on_train_batch_end` and the number of
/// validation batches.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// `epochs[e]`: the logs of epoch `e`'s `on_epoch_end` (its `val_`
    /// entries are also what `on_validation_end` receives).
    pub epochs: Vec<Logs>,
    /// `batches[e]`: the batch logs of epoch `e` (missing = no batches).
    pub batches: Vec<Vec<Logs>>,
    /// `valid_batches[e]`: how many validation batches epoch `e` has
    /// (missing = none); each gets an `on_validation_batch_end` with empty logs.
    pub valid_batches: Vec<usize>,
}

impl Script {
    /// Epoch logs only, no batches.
    pub fn from_epochs(epochs: impl IntoIterator<Item = Logs>) -> Self {
        Self {
            epochs: epochs.into_iter().collect(),
            batches: Vec::new(),
            valid_batches: Vec::new(),
        }
    }

    /// Adds per-batch logs.
    pub fn with_batches(mut self, batches: Vec<Vec<Logs>>) -> Self {
        self.batches = batches;
        self
    }

    /// Sets the number of validation batches of each epoch.
    pub fn with_valid_batches(mut self, valid_batches: Vec<usize>) -> Self {
        self.valid_batches = valid_batches;
        self
    }
}

/// The error a hook returned, and where.
#[derive(Debug)]
pub struct HookError {
    /// Where it happened.
    pub at: HookPoint,
    /// The error.
    pub error: CallbackError,
}

/// What happened in one epoch that completed `on_epoch_end`.
#[derive(Clone, Debug)]
pub struct EpochTrace {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Batches whose `on_train_batch_end` ran.
    pub batches_run: usize,
    /// The learning rate after `on_epoch_begin`.
    pub lr_begin: Option<f64>,
    /// The learning rate after `on_epoch_end`.
    pub lr_end: Option<f64>,
    /// Whether a stop was requested after `on_epoch_end`.
    pub stop_training: bool,
    /// Files saved by `on_epoch_end` (batch-level saves are in
    /// [`ScriptedControl::saves`]).
    pub saved: Vec<PathBuf>,
    /// Every stateful callback's [`crate::Callback::state`] after `on_epoch_end`.
    pub states: BTreeMap<String, serde_json::Value>,
    /// The epoch logs after every callback ran (keys callbacks added included).
    pub logs: Logs,
}

/// The outcome of [`drive`], with the fields of the Keras oracle fixtures.
#[derive(Debug, Default)]
pub struct Trace {
    /// The first error a hook returned (nothing ran after it).
    pub error: Option<HookError>,
    /// Epochs whose `on_epoch_end` returned normally.
    pub epochs_run: usize,
    /// The epoch after which the loop stopped on a stop request.
    pub stop_epoch: Option<usize>,
    /// Whether a stop was requested when the run ended.
    pub stop_training: bool,
    /// The learning rate before `on_train_begin`.
    pub initial_lr: Option<f64>,
    /// The learning rate after each `on_epoch_begin` (epochs that began).
    pub lr_begin: Vec<Option<f64>>,
    /// The learning rate after each `on_epoch_end` that returned normally.
    pub lr_end: Vec<Option<f64>>,
    /// The learning rate at the end (also after an error).
    pub final_lr: Option<f64>,
    /// Per completed epoch.
    pub epochs: Vec<EpochTrace>,
    /// The callbacks' states after `on_train_end` (`None` after an error).
    pub final_states: Option<BTreeMap<String, serde_json::Value>>,
    /// The marker after `on_train_end` (`None` after an error): which
    /// epoch's weights the model holds, `-1` for the initial ones.
    pub marker_after_train_end: Option<i64>,
}

fn states_of(list: &CallbackList) -> BTreeMap<String, serde_json::Value> {
    list.states().unwrap_or_else(|e| {
        let mut m = BTreeMap::new();
        m.insert(
            "<state error>".to_string(),
            serde_json::Value::String(e.to_string()),
        );
        m
    })
}

/// Runs `list` through `script` in Keras `fit` order:
///
/// ```text
/// on_train_begin
/// for epoch in 0..script.epochs.len():
///     on_epoch_begin(epoch); marker := epoch
///     for (batch, logs) in script.batches[epoch]:
///         on_train_batch_begin(batch); on_train_batch_end(batch, logs)
///         if stop requested: break          // validation and on_epoch_end still run
///     on_validation_begin
///     for batch in 0..script.valid_batches[epoch]: on_validation_batch_end(batch, {})
///     on_validation_end(the val_ entries of the epoch's logs)
///     on_epoch_end(epoch, logs)
///     if stop requested: break
/// on_train_end(last epoch's logs)
/// ```
///
/// The first error ends the run at once (no `on_train_end`) and is recorded
/// in [`Trace::error`]. The control's progress and hook point are kept up to
/// date for every hook.
pub fn drive(list: &mut CallbackList, ctl: &mut ScriptedControl, script: &Script) -> Trace {
    let mut trace = Trace {
        initial_lr: ctl.learning_rate(),
        ..Trace::default()
    };
    let result = drive_inner(list, ctl, script, &mut trace);
    if let Err(error) = result {
        trace.error = Some(HookError {
            at: ctl.hook_point(),
            error,
        });
    }
    trace.stop_training = ctl.stop_requested();
    trace.final_lr = ctl.learning_rate();
    trace
}

fn drive_inner(
    list: &mut CallbackList,
    ctl: &mut ScriptedControl,
    script: &Script,
    trace: &mut Trace,
) -> Result<()> {
    let total_epochs = script.epochs.len();
    let steps_per_epoch = script.batches.iter().map(Vec::len).max();
    let mut progress = Progress {
        total_epochs,
        steps_per_epoch,
        ..Progress::default()
    };
    ctl.set_progress(progress);
    ctl.set_hook_point(HookPoint::new(Phase::TrainBegin, None, None));
    list.on_train_begin(ctl)?;
    let mut last_logs = Logs::new();
    for (epoch, epoch_logs) in script.epochs.iter().enumerate() {
        progress.epoch = epoch;
        progress.batch = 0;
        ctl.set_progress(progress);
        ctl.set_hook_point(HookPoint::new(Phase::EpochBegin, Some(epoch), None));
        list.on_epoch_begin(epoch, ctl)?;
        let lr_begin = ctl.learning_rate();
        trace.lr_begin.push(lr_begin);
        ctl.set_marker(epoch as i64);
        let mut batches_run = 0;
        for (batch, batch_logs) in script.batches.get(epoch).into_iter().flatten().enumerate() {
            progress.batch = batch;
            ctl.set_progress(progress);
            ctl.set_hook_point(HookPoint::new(Phase::BatchBegin, Some(epoch), Some(batch)));
            list.on_train_batch_begin(batch, ctl)?;
            progress.global_step += 1;
            progress.global_batch += 1;
            progress.step_ended = true;
            ctl.set_progress(progress);
            ctl.set_hook_point(HookPoint::new(Phase::BatchEnd, Some(epoch), Some(batch)));
            let mut logs = batch_logs.clone();
            list.on_train_batch_end(batch, &mut logs, ctl)?;
            batches_run += 1;
            if ctl.stop_requested() {
                break;
            }
        }
        ctl.set_hook_point(HookPoint::new(Phase::ValidationBegin, Some(epoch), None));
        list.on_validation_begin(ctl)?;
        for batch in 0..script.valid_batches.get(epoch).copied().unwrap_or(0) {
            ctl.set_hook_point(HookPoint::new(
                Phase::ValidationBatchEnd,
                Some(epoch),
                Some(batch),
            ));
            list.on_validation_batch_end(batch, &Logs::new(), ctl)?;
        }
        ctl.set_hook_point(HookPoint::new(Phase::ValidationEnd, Some(epoch), None));
        let val_logs: Logs = epoch_logs
            .iter()
            .filter(|(key, _)| key.starts_with("val_"))
            .collect();
        list.on_validation_end(&val_logs, ctl)?;
        let at = HookPoint::new(Phase::EpochEnd, Some(epoch), None);
        ctl.set_hook_point(at);
        let saves_before = ctl.saves().len();
        let mut logs = epoch_logs.clone();
        list.on_epoch_end(epoch, &mut logs, ctl)?;
        trace.epochs_run = epoch + 1;
        let lr_end = ctl.learning_rate();
        trace.lr_end.push(lr_end);
        trace.epochs.push(EpochTrace {
            epoch,
            batches_run,
            lr_begin,
            lr_end,
            stop_training: ctl.stop_requested(),
            saved: ctl.saves()[saves_before..]
                .iter()
                .map(|s| s.path.clone())
                .collect(),
            states: states_of(list),
            logs: logs.clone(),
        });
        last_logs = logs;
        if ctl.stop_requested() {
            trace.stop_epoch = Some(epoch);
            break;
        }
    }
    ctl.set_hook_point(HookPoint::new(Phase::TrainEnd, None, None));
    list.on_train_end(&last_logs, ctl)?;
    trace.final_states = Some(states_of(list));
    trace.marker_after_train_end = Some(ctl.marker());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Callback, Context};

    struct StopAtBatch(usize);

    impl Callback for StopAtBatch {
        fn on_train_batch_end(
            &mut self,
            batch: usize,
            _logs: &mut Logs,
            ctx: &mut Context,
        ) -> Result<()> {
            if batch == self.0 {
                ctx.warn("stopping");
                ctx.stop_training("test");
            }
            Ok(())
        }
    }

    struct FailAt(Phase);

    impl Callback for FailAt {
        fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context) -> Result<()> {
            if self.0 == Phase::EpochBegin && epoch == 1 {
                return Err(CallbackError::Unsupported("boom".into()));
            }
            Ok(())
        }
    }

    fn logs(v: f64) -> Logs {
        Logs::from_iter([("loss", v)])
    }

    #[test]
    fn lr_is_float32() {
        let mut ctl = ScriptedControl::new(0.1);
        assert_eq!(ctl.learning_rate(), Some(0.10000000149011612));
        ctl.set_learning_rate(0.05).unwrap();
        assert_eq!(ctl.learning_rate(), Some(0.05000000074505806));
        assert!(
            ScriptedControl::without_learning_rate()
                .set_learning_rate(0.1)
                .is_err()
        );
    }

    #[test]
    fn stop_in_batch_skips_rest_of_epoch_but_runs_epoch_end() {
        let mut list = CallbackList::new();
        list.push(StopAtBatch(1));
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs([logs(1.0), logs(2.0)])
            .with_batches(vec![vec![logs(1.0), logs(1.0), logs(1.0)], vec![logs(1.0)]]);
        let trace = drive(&mut list, &mut ctl, &script);
        assert!(trace.error.is_none());
        assert_eq!(trace.epochs_run, 1);
        assert_eq!(trace.stop_epoch, Some(0));
        assert_eq!(trace.epochs[0].batches_run, 2);
        assert_eq!(trace.marker_after_train_end, Some(0));
        assert_eq!(
            ctl.emitted()[0].at,
            HookPoint::new(Phase::BatchEnd, Some(0), Some(1))
        );
        assert_eq!(ctl.progress().global_step, 2);
    }

    #[test]
    fn error_ends_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = CallbackList::new();
        list.push(FailAt(Phase::EpochBegin));
        let mut ctl = ScriptedControl::new(0.01);
        let path = dir.path().join("a/b.bin");
        ctl.save_model(&path, SaveContent::Full).unwrap();
        assert_eq!(ScriptedControl::read_marker(&path).unwrap(), -1);
        let trace = drive(
            &mut list,
            &mut ctl,
            &Script::from_epochs([logs(1.0), logs(1.0), logs(1.0)]),
        );
        let err = trace.error.unwrap();
        assert_eq!(err.at, HookPoint::new(Phase::EpochBegin, Some(1), None));
        assert_eq!(trace.epochs_run, 1);
        assert_eq!(trace.lr_begin.len(), 1);
        assert!(trace.final_states.is_none());
        assert!(trace.marker_after_train_end.is_none());
        assert_eq!(trace.final_lr, Some(0.009999999776482582));
    }
}
