//! [`FitOutcome`]: what a training run with callbacks did.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use burnfit_core::{Logs, TrainEnd};

/// A handle on a run's [`FitOutcome`], filled in while training runs:
/// [`Outcome::get`] reads it (during training, or after `launch` returns).
#[derive(Clone, Debug, Default)]
pub struct Outcome(Arc<Mutex<FitOutcome>>);

impl Outcome {
    /// What happened so far.
    pub fn get(&self) -> FitOutcome {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the outcome (the engine's side).
    pub(crate) fn update(&self, change: impl FnOnce(&mut FitOutcome)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// The error that ended a run: a callback's hook failed.
#[derive(Clone, Debug, PartialEq)]
pub struct FitError {
    /// What went wrong.
    pub message: String,
    /// The file that could not be read or written, when that was the
    /// error (a full disk, a read-only directory).
    pub path: Option<PathBuf>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FitError {}

/// What happened during a training run with callbacks, readable after
/// `launch` returns through [`Callbacks::outcome`](super::Callbacks::outcome).
#[derive(Clone, Debug, Default)]
pub struct FitOutcome {
    /// Every epoch (0-based) this process completed, with its final logs
    /// as the last callback saw them.
    pub epochs: Vec<(usize, Logs)>,
    /// Why training stopped before its last epoch, if a callback (or Burn's
    /// early-stopping strategy) stopped it.
    pub stop_reason: Option<String>,
    /// Why training ended, as `on_train_end` saw it (`None` if a hook
    /// error ended it before).
    pub train_end: Option<TrainEnd>,
    /// The error a hook returned, if one ended training.
    pub error: Option<FitError>,
    /// Optimizer steps taken since the very start (resume included).
    pub global_step: u64,
    /// The epoch and batch training resumed from, if it resumed from a
    /// backup: `(epoch, batches already done in it)`.
    pub resumed_at: Option<(usize, usize)>,
    /// Where training stood when it ended: `(epoch, batches done in it)`.
    pub stopped_at: Option<(usize, usize)>,
    /// Training batches per epoch, once known.
    pub steps_per_epoch: Option<usize>,
    /// What the engine could not do as asked, for the caller to show (also
    /// logged at `warn` level): for example devices that take turns.
    pub warnings: Vec<String>,
    /// How long the training loop ran in this process: from the train-begin
    /// hooks to the train-end hooks, not counting the latter (a tracker's
    /// last uploads, a final file). `None` until the loop ended.
    pub training_time: Option<std::time::Duration>,
}
