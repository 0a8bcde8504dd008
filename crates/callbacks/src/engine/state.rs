//! [`LoopState`]: what the training loop keeps between two hook calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use burn::train::metric::store::EventStoreClient;
use burn::train::{
    Interrupter, Learner, LearnerModel, SupervisedTrainingEventProcessor, TrainLoader,
};
use burnfit_core::writer::BackgroundWriter;
use burnfit_core::{CallbackModels, Progress, TrainEnd};

use super::capture::StateCapture;
use super::lr::LrHandle;
use super::metric_log::CallbackMetricLogger;

/// The loop's state: the learner and everything hooks can see or change.
///
/// The callbacks are kept apart (in [`Session`]) so that a hook can borrow
/// them mutably while its [`Context`](burnfit_core::Context) borrows this.
pub(crate) struct LoopState<M: LearnerModel> {
    /// Burn's learner: model, optimizer, scheduler.
    pub learner: Learner<M>,
    /// Burn's event processor: feeds Burn's metrics, renderer and store.
    pub processor: SupervisedTrainingEventProcessor<M>,
    /// Burn's metric store (epoch aggregates).
    pub store: Arc<EventStoreClient>,
    /// Our logger inside Burn's store: metric names and per-batch entries.
    pub metric_logger: CallbackMetricLogger,
    /// Burn's interrupter: stops from outside (Ctrl-C, the TUI's quit key).
    pub interrupter: Interrupter,
    /// Takes the optimizer and scheduler records for full checkpoints.
    pub capture: StateCapture<M>,
    /// The learning rate callbacks can steer, when the user linked one.
    pub lr: Option<LrHandle>,
    /// Where training stands.
    pub progress: Progress,
    /// Training batches of the current epoch done so far.
    pub batches_done: usize,
    /// The batch logs' running `loss` of the current epoch: Σ(batch loss ×
    /// items) and Σ items over its batches so far (kept by mid-epoch
    /// backups, so a resumed epoch's batch logs continue it).
    pub batch_loss: (f64, f64),
    /// Whether `on_epoch_end` ran for `progress.epoch` (for backups).
    pub epoch_ended: bool,
    /// The learning rate Burn used for the last step.
    pub last_step_lr: Option<f64>,
    /// The first stop a callback asked for.
    pub stop_reason: Option<String>,
    /// Why training ended, once the train-end hooks run.
    pub train_end: Option<TrainEnd>,
    /// Silences informational messages.
    pub quiet: bool,
    /// Prints informational messages (the progress lines) on stdout rather
    /// than through `log` ([`Callbacks::progress`](super::Callbacks::progress)).
    pub print_info: bool,
    /// Callback states as of the start of the last epoch-end dispatch,
    /// stored in full checkpoints that callbacks save themselves.
    pub callback_states: BTreeMap<String, serde_json::Value>,
    /// The models callbacks keep, taken with `callback_states`.
    pub callback_models: CallbackModels,
    /// `Some` while `on_before_optimizer_step` runs: whether a callback
    /// asked to skip the step.
    pub skip_step: Option<bool>,
    /// The training data on the learner's device, for a pass that only
    /// updates BatchNorm statistics.
    pub train_loader: Option<TrainLoader<M>>,
    /// The run's seed ([`Callbacks::deterministic`](super::Callbacks::deterministic)),
    /// for the random draws of passes outside the training steps.
    pub seed: Option<u64>,
    /// A backup a callback asked for, written once the hook has run on
    /// every callback.
    pub pending_backup: Option<PathBuf>,
    /// Deletions asked for during the current dispatch, queued after its
    /// writes (a backup is written after the dispatch).
    pub pending_removals: Vec<PathBuf>,
    /// Writes checkpoints off the training thread.
    pub writer: BackgroundWriter,
    /// The gradients of the unfinished accumulation window (Burn's
    /// `grads_accumulation`), carried by backups.
    pub accumulation: super::accumulation::Accumulation,
    /// Warnings for the caller (also logged): a setting the engine could
    /// not honour as asked.
    pub warnings: Vec<String>,
}

impl<M: LearnerModel> LoopState<M> {
    /// Whether the loop should leave the batch loop: a callback's stop or a
    /// stop from outside.
    pub fn should_stop(&self) -> bool {
        self.stop_reason.is_some() || self.interrupter.should_stop()
    }

    /// Whether a stop came from outside the callbacks (Burn's interrupter).
    pub fn interrupted(&self) -> bool {
        self.interrupter.should_stop() && self.stop_reason.is_none()
    }
}

/// The callbacks and the loop's state, as one hook call needs them.
pub(crate) struct Session<'a, M: LearnerModel> {
    /// The user's callbacks, in order.
    pub callbacks: &'a mut burnfit_core::CallbackList,
    /// The rest of the loop.
    pub state: LoopState<M>,
}
