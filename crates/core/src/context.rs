//! What a hook can see and do: the [`Context`] over a [`TrainingControl`].

use std::any::Any;
use std::path::Path;

use crate::error::{CallbackError, Result};

/// Where training stands when a hook runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The current epoch, 0-based as in Keras.
    pub epoch: usize,
    /// The current training batch within the epoch, 0-based.
    pub batch: usize,
    /// Optimizer steps taken since the very start of training (resume
    /// included). With gradient accumulation, one per window of batches.
    pub global_step: u64,
    /// Training batches trained since the very start of training (resume
    /// included): `global_step` unless gradients are accumulated. The axis
    /// of batch-level logs (Keras's TensorBoard counts batches too), and
    /// what backups are named after.
    pub global_batch: u64,
    /// At `on_train_batch_end`: whether this batch ended with an optimizer
    /// step (always, unless gradients are accumulated: then only each
    /// window's last batch).
    pub step_ended: bool,
    /// The number of epochs training was asked to run.
    pub total_epochs: usize,
    /// Training batches per epoch, when the data loader knows it.
    pub steps_per_epoch: Option<usize>,
    /// Training batches per optimizer step: the gradient-accumulation
    /// window (1 without accumulation; 0 is read as 1).
    pub batches_per_step: usize,
}

impl Progress {
    /// Optimizer steps per epoch, when the batches per epoch are known: one
    /// per window of [`batches_per_step`](Self::batches_per_step) batches,
    /// and one for a shorter last window at the epoch's end.
    pub fn optimizer_steps_per_epoch(&self) -> Option<usize> {
        self.steps_per_epoch
            .map(|batches| batches.div_ceil(self.batches_per_step.max(1)))
    }

    /// Whether this batch ended with optimizer step `k * every` (for
    /// callbacks that log every N optimizer steps, as Lightning's
    /// `log_every_n_steps`): once per such step, under gradient
    /// accumulation too. `false` for `every = 0`.
    pub fn at_step_multiple_of(&self, every: u64) -> bool {
        every > 0
            && self.step_ended
            && self.global_step > 0
            && self.global_step.is_multiple_of(every)
    }
}

/// What a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SaveContent {
    /// The model's parameters only (Keras's `save_weights_only=True`).
    Weights,
    /// Model, optimizer state, learning-rate scheduler and callback state:
    /// everything needed to continue training.
    Full,
}

/// A message a callback emits for the user: Keras prints these or raises
/// Python warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Something the user should know but that does not stop training
    /// (Keras's `warnings.warn`).
    Warning(String),
    /// Plain progress information (Keras's `verbose=1` prints).
    Info(String),
}

/// Why training ended, as [`Callback::on_train_end`](crate::Callback::on_train_end)
/// sees it through [`Context::train_end`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainEnd {
    /// Every planned epoch ran.
    Completed,
    /// A callback (or the loop's own early-stopping rule) asked to stop:
    /// the run is finished.
    Stopped(String),
    /// Stopped from outside at a batch boundary (Ctrl-C, SIGTERM, Burn's
    /// `Interrupter`): the run is not finished and can be resumed from a
    /// backup written now (BackupAndRestore does).
    Interrupted(String),
}

impl TrainEnd {
    /// Whether the run was interrupted from outside (and may be resumed).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, TrainEnd::Interrupted(_))
    }
}

/// The operations the training loop offers to callbacks.
///
/// The Burn glue implements it over a real `Learner`; tests implement it over
/// a scripted fake. Callbacks normally use it through [`Context`].
pub trait TrainingControl {
    /// Asks the loop to stop: the current batch finishes, the epoch's end hooks
    /// still run, then training ends.
    fn request_stop(&mut self, reason: String);
    /// Whether a stop was requested (by a callback or from outside).
    fn stop_requested(&self) -> bool;
    /// Clears a stop request (Keras lets a callback set `stop_training = False`).
    fn cancel_stop(&mut self);
    /// The learning rate the next optimizer step will use, if known.
    fn learning_rate(&self) -> Option<f64>;
    /// Sets the learning rate used from the next optimizer step on.
    fn set_learning_rate(&mut self, lr: f64) -> Result<()>;
    /// A copy of the current model that later training does not change
    /// (kept to be restored, as EarlyStopping's best weights).
    fn snapshot_model(&self) -> ModelSnapshot;
    /// The current model, to read or to derive from (it may share state
    /// that training changes, such as batch norm statistics); by default
    /// [`TrainingControl::snapshot_model`].
    fn current_model(&self) -> ModelSnapshot {
        self.snapshot_model()
    }
    /// Replaces the current model; the snapshot must hold the trained model type.
    fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()>;
    /// Writes a checkpoint to `path` atomically (temporary file, fsync, rename).
    /// The Burn glue takes the snapshot here and writes it on a background
    /// thread; an error of that write is returned by a later call.
    fn save_model(&mut self, path: &Path, content: SaveContent) -> Result<()>;
    /// Deletes a file the callback wrote (an older backup, a checkpoint that
    /// left the top k), after every checkpoint asked for before it has
    /// landed, and not at all if one of those failed. A missing file is not
    /// an error.
    fn remove_file(&mut self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CallbackError::io(path, e)),
            _ => Ok(()),
        }
    }
    /// Where training stands.
    fn progress(&self) -> Progress;
    /// The learning rate Burn's optimizer used for the last step taken, read
    /// back from the `Learner` (`None` before the first step or in fakes).
    fn last_step_learning_rate(&self) -> Option<f64> {
        None
    }
    /// Shows a message to the user (stderr for warnings, stdout for info).
    fn emit(&mut self, message: Message);
    /// Why training ended; `None` until the train-end hooks run.
    fn train_end(&self) -> Option<TrainEnd> {
        None
    }
    /// Skips the optimizer step about to be taken (only from
    /// `on_before_optimizer_step`).
    fn skip_optimizer_step(&mut self) -> Result<()> {
        Err(CallbackError::Unsupported(
            "skip_optimizer_step: only from on_before_optimizer_step, in a loop that has one"
                .into(),
        ))
    }
    /// The whole training state (model, optimizer, scheduler), to put back
    /// later with [`TrainingControl::restore_training`].
    fn snapshot_training(&mut self) -> Result<TrainingSnapshot> {
        Err(CallbackError::Unsupported(
            "this training loop cannot snapshot its state".into(),
        ))
    }
    /// Puts back a state taken with [`TrainingControl::snapshot_training`].
    fn restore_training(&mut self, _snapshot: &TrainingSnapshot) -> Result<()> {
        Err(CallbackError::Unsupported(
            "this training loop cannot restore a state".into(),
        ))
    }
    /// Recomputes BatchNorm running statistics with a pass over the
    /// training data in training mode, without changing any weight (after
    /// weights were replaced by an average).
    fn update_batch_norm(&mut self) -> Result<()> {
        Err(CallbackError::Unsupported(
            "this training loop cannot update BatchNorm statistics".into(),
        ))
    }
    /// Asks for a full backup (model, optimizer, scheduler, every callback's
    /// state, position in the data) to be written atomically to `path` once
    /// the current hook has run on every callback, so the states are current.
    fn request_backup(&mut self, _path: &Path) -> Result<()> {
        Err(CallbackError::Unsupported(
            "this training loop cannot write backups".into(),
        ))
    }
}

/// A copy of the model, taken with [`Context::snapshot_model`] and put back
/// with [`Context::restore_model`]. Burn tensors are immutable and shared, so
/// taking one is cheap; holding one keeps those parameters alive.
pub struct ModelSnapshot {
    model: Box<dyn Any + Send>,
    clone: fn(&(dyn Any + Send)) -> Box<dyn Any + Send>,
    params: Option<ParamsFn>,
    blend: Option<BlendFn>,
}

/// One parameter of a model, as [`ModelSnapshot::params`] lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Its path in the model, segments joined with `/` (`conv1/weight`).
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Whether the optimizer trains it (`false` for buffers such as
    /// BatchNorm's running statistics, and frozen parameters).
    pub trainable: bool,
    /// Its values, flattened, when asked for ([`ParamRead::Values`]).
    pub values: Option<Vec<f32>>,
}

impl ParamInfo {
    /// The number of scalars it holds.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How much of each parameter [`ModelSnapshot::params`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRead {
    /// Paths and shapes only (no device read).
    Shapes,
    /// Paths, shapes and values (waits for the device and copies every value).
    Values,
}

/// Lists the parameters of the model a snapshot holds.
pub type ParamsFn = fn(&(dyn Any + Send), ParamRead) -> Vec<ParamInfo>;

/// Mixes two models of one type, parameter by parameter: `(average,
/// current, weight)` gives `average · (1 − weight) + current · weight`, or
/// `None` when `current` is another type. What weight averaging
/// ([`ExponentialMovingAverage`](crate::builtins::ExponentialMovingAverage),
/// [`StochasticWeightAveraging`](crate::builtins::StochasticWeightAveraging))
/// needs of a model.
pub type BlendFn = fn(&(dyn Any + Send), &(dyn Any + Send), f64) -> Option<Box<dyn Any + Send>>;

impl ModelSnapshot {
    /// Wraps a model of any clonable type.
    pub fn of<M: Clone + Send + 'static>(model: M) -> Self {
        fn clone<M: Clone + Send + 'static>(model: &(dyn Any + Send)) -> Box<dyn Any + Send> {
            Box::new(
                model
                    .downcast_ref::<M>()
                    .expect("a ModelSnapshot holds the type it was made with")
                    .clone(),
            )
        }
        Self {
            model: Box::new(model),
            clone: clone::<M>,
            params: None,
            blend: None,
        }
    }

    /// Adds the way to list the model's parameters (the Burn glue adds it
    /// to every snapshot it takes, so weight histograms and parameter
    /// tables work for any model).
    pub fn with_params(mut self, params: ParamsFn) -> Self {
        self.params = Some(params);
        self
    }

    /// The model's parameters, if the snapshot knows how to list them.
    pub fn params(&self, read: ParamRead) -> Option<Vec<ParamInfo>> {
        self.params.map(|list| list(self.model.as_ref(), read))
    }

    /// Adds the way to mix two models of this type (the Burn glue adds it
    /// to every snapshot it takes, so weight averaging works for any model).
    pub fn with_blend(mut self, blend: BlendFn) -> Self {
        self.blend = Some(blend);
        self
    }

    /// `self · (1 − weight) + current · weight`, parameter by parameter,
    /// as a snapshot that lists and blends as this one does. `None` when
    /// this snapshot cannot blend, or `current` holds another type.
    pub fn blend(&self, current: &ModelSnapshot, weight: f64) -> Option<ModelSnapshot> {
        let mixed = (self.blend?)(self.model.as_ref(), current.model.as_ref(), weight)?;
        Some(Self {
            model: mixed,
            clone: self.clone,
            params: self.params,
            blend: self.blend,
        })
    }

    /// The model, if it is an `M`.
    pub fn downcast_ref<M: 'static>(&self) -> Option<&M> {
        self.model.downcast_ref::<M>()
    }

    /// The model, if it is an `M`; gives the snapshot back otherwise.
    pub fn downcast<M: 'static>(self) -> std::result::Result<M, Self> {
        match self.model.downcast::<M>() {
            Ok(model) => Ok(*model),
            Err(model) => Err(Self {
                model,
                clone: self.clone,
                params: self.params,
                blend: self.blend,
            }),
        }
    }
}

impl Clone for ModelSnapshot {
    fn clone(&self) -> Self {
        Self {
            model: (self.clone)(self.model.as_ref()),
            clone: self.clone,
            params: self.params,
            blend: self.blend,
        }
    }
}

impl std::fmt::Debug for ModelSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelSnapshot(..)")
    }
}

/// The whole training state at some step (model, optimizer, learning-rate
/// scheduler), opaque: taken with [`Context::snapshot_training`], put back
/// with [`Context::restore_training`].
pub struct TrainingSnapshot(Box<dyn Any + Send>);

impl TrainingSnapshot {
    /// Wraps the loop's own representation.
    pub fn new<T: Send + 'static>(state: T) -> Self {
        Self(Box::new(state))
    }

    /// The loop's representation, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for TrainingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrainingSnapshot(..)")
    }
}

/// The handle every hook receives.
///
/// ```
/// use burnfit_core::{Callback, Context, Logs, Result};
///
/// /// Stops training as soon as the epoch's loss drops below a threshold.
/// struct StopBelow(f64);
///
/// impl Callback for StopBelow {
///     fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
///         if logs.get("loss").is_some_and(|loss| loss < self.0) {
///             ctx.stop_training(format!("loss below {}", self.0));
///         }
///         Ok(())
///     }
/// }
/// ```
pub struct Context<'a> {
    control: &'a mut dyn TrainingControl,
    moving_average: Option<&'a mut Option<ModelSnapshot>>,
}

impl<'a> Context<'a> {
    /// Wraps a [`TrainingControl`], for a callback outside a
    /// [`CallbackList`](crate::CallbackList) (no shared moving average).
    pub fn new(control: &'a mut dyn TrainingControl) -> Self {
        Self {
            control,
            moving_average: None,
        }
    }

    /// Wraps a [`TrainingControl`] and the moving average the callbacks of
    /// one list share (see [`Context::moving_average`]).
    pub fn with_moving_average(
        control: &'a mut dyn TrainingControl,
        moving_average: &'a mut Option<ModelSnapshot>,
    ) -> Self {
        Self {
            control,
            moving_average: Some(moving_average),
        }
    }

    /// The moving average of the model's weights, once a callback keeps one
    /// (Keras keeps it in the optimizer, with `use_ema=True`):
    /// [`ExponentialMovingAverage`](crate::builtins::ExponentialMovingAverage)
    /// publishes it, [`SwapEmaWeights`](crate::builtins::SwapEmaWeights)
    /// swaps it in. Shared by the callbacks of one list.
    pub fn moving_average(&self) -> Option<&ModelSnapshot> {
        self.moving_average.as_deref()?.as_ref()
    }

    /// Publishes the moving average for the callbacks after this one (and
    /// every callback at later hooks). Without a list, a no-op.
    pub fn set_moving_average(&mut self, average: ModelSnapshot) {
        if let Some(slot) = self.moving_average.as_deref_mut() {
            *slot = Some(average);
        }
    }

    /// Asks training to stop after the current batch; the epoch-end and
    /// train-end hooks still run.
    pub fn stop_training(&mut self, reason: impl Into<String>) {
        self.control.request_stop(reason.into());
    }

    /// Whether a stop has been requested.
    pub fn stop_requested(&self) -> bool {
        self.control.stop_requested()
    }

    /// Withdraws a stop request.
    pub fn cancel_stop(&mut self) {
        self.control.cancel_stop();
    }

    /// The learning rate the next optimizer step uses, if known.
    pub fn learning_rate(&self) -> Option<f64> {
        self.control.learning_rate()
    }

    /// Sets the learning rate from the next optimizer step on. The value is
    /// remembered across resume.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(CallbackError::Unsupported(format!(
                "learning rate must be a finite number >= 0, got {lr}"
            )));
        }
        self.control.set_learning_rate(lr)
    }

    /// A copy of the current model, if it is an `M`.
    pub fn model<M: 'static>(&self) -> Option<M> {
        self.control.current_model().downcast::<M>().ok()
    }

    /// Replaces the model being trained (for example with earlier weights).
    pub fn set_model<M: Clone + Send + 'static>(&mut self, model: M) -> Result<()> {
        self.control.restore_model(ModelSnapshot::of(model))
    }

    /// A copy of the current model as it trains (gradient tracking
    /// included), to be put back later with [`Context::restore_model`].
    pub fn current_model(&self) -> ModelSnapshot {
        self.control.current_model()
    }

    /// Takes a snapshot of the current model (cheap: parameters are shared).
    pub fn snapshot_model(&self) -> ModelSnapshot {
        self.control.snapshot_model()
    }

    /// Puts a copy of `snapshot` back as the model being trained.
    pub fn restore_model(&mut self, snapshot: &ModelSnapshot) -> Result<()> {
        self.control.restore_model(snapshot.clone())
    }

    /// Saves a checkpoint atomically.
    pub fn save_model(&mut self, path: impl AsRef<Path>, content: SaveContent) -> Result<()> {
        self.control.save_model(path.as_ref(), content)
    }

    /// Deletes a file this callback wrote, in order with its checkpoints
    /// (see [`TrainingControl::remove_file`]).
    pub fn remove_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.control.remove_file(path.as_ref())
    }

    /// The learning rate the optimizer used for the last step, read back
    /// from Burn.
    pub fn last_step_learning_rate(&self) -> Option<f64> {
        self.control.last_step_learning_rate()
    }

    /// Where training stands.
    pub fn progress(&self) -> Progress {
        self.control.progress()
    }

    /// Emits a warning (Keras's `warnings.warn`).
    pub fn warn(&mut self, message: impl Into<String>) {
        self.control.emit(Message::Warning(message.into()));
    }

    /// Asks for a full training backup at `path`, written after the current
    /// hook has run on every callback (see [`TrainingControl::request_backup`]).
    pub fn request_backup(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.control.request_backup(path.as_ref())
    }

    /// Why training ended, in `on_train_end` (`None` before).
    pub fn train_end(&self) -> Option<TrainEnd> {
        self.control.train_end()
    }

    /// Skips the optimizer step about to be taken (from
    /// `on_before_optimizer_step`).
    pub fn skip_optimizer_step(&mut self) -> Result<()> {
        self.control.skip_optimizer_step()
    }

    /// The whole training state (model, optimizer, scheduler).
    pub fn snapshot_training(&mut self) -> Result<TrainingSnapshot> {
        self.control.snapshot_training()
    }

    /// Puts back a state taken with [`Context::snapshot_training`].
    pub fn restore_training(&mut self, snapshot: &TrainingSnapshot) -> Result<()> {
        self.control.restore_training(snapshot)
    }

    /// Recomputes BatchNorm running statistics over the training data.
    pub fn update_batch_norm(&mut self) -> Result<()> {
        self.control.update_batch_norm()
    }

    /// Prints an informational line (Keras's `verbose=1` output).
    pub fn info(&mut self, message: impl Into<String>) {
        self.control.emit(Message::Info(message.into()));
    }

    /// The underlying control, for code that implements its own glue.
    pub fn control(&mut self) -> &mut dyn TrainingControl {
        self.control
    }
}
