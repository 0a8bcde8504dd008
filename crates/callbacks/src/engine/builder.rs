//! [`Callbacks`] and [`WithCallbacks`]: adding callbacks to a Burn training.

use std::sync::Arc;

use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::Device;
use burn::train::{InferenceStep, LearnerModel, SupervisedTraining, TrainStep, TrainingStrategy};
use burnfit_core::{Callback, CallbackList};

use super::batch_loss::BatchLoss;
use super::lr::{CallbackLr, LrHandle};
use super::metric_log::CallbackMetricLogger;
use super::metric_state::{EpochMetricState, MetricStates};
use super::multi_device::GradientReduction;
use super::outcome::Outcome;
use super::strategy::{CallbackStrategy, EngineConfig};

/// The callbacks of one training run, and the links the engine needs
/// (a controllable learning rate, the outcome).
///
/// ```no_run
/// # use burnfit_callbacks::engine::{Callbacks, WithCallbacks};
/// # fn demo<M>(training: burn::train::SupervisedTraining<M>, model: M, optim: burn::optim::ModuleOptimizer)
/// # where M: burn::train::LearnerModel, <M as burn::train::TrainStep>::Output: burnfit_callbacks::engine::BatchLoss,
/// #     <M as burn::train::InferenceStep>::Output: burnfit_callbacks::engine::BatchLoss {
/// use burnfit_callbacks::builtins::{EarlyStopping, EarlyStoppingConfig};
///
/// let mut callbacks = Callbacks::new();
/// callbacks.push(EarlyStopping::new(EarlyStoppingConfig { patience: 3, ..Default::default() }).unwrap());
/// let lr = callbacks.lr_scheduler(1e-3); // callbacks may change this rate
/// let outcome = callbacks.outcome();
/// let result = training
///     .with_callbacks(callbacks)
///     .launch(burn::train::Learner::new(model, optim, lr));
/// println!("stopped because: {:?}", outcome.get().stop_reason);
/// # }
/// ```
pub struct Callbacks {
    list: CallbackList,
    lr: Option<LrHandle>,
    quiet: bool,
    silence_burn_renderer: bool,
    average_accumulation: bool,
    seed: Option<u64>,
    devices: Vec<Device>,
    reduction: GradientReduction,
    step_timeout: Option<std::time::Duration>,
    metric_states: MetricStates,
    outcome: Outcome,
}

impl Default for Callbacks {
    fn default() -> Self {
        Self::new()
    }
}

impl Callbacks {
    /// No callbacks yet.
    pub fn new() -> Self {
        Self {
            list: CallbackList::new(),
            lr: None,
            quiet: false,
            silence_burn_renderer: false,
            average_accumulation: false,
            seed: None,
            devices: Vec::new(),
            reduction: GradientReduction::Mean,
            step_timeout: None,
            metric_states: MetricStates::new(),
            outcome: Outcome::default(),
        }
    }

    /// Adds a callback (builder style).
    pub fn with(mut self, callback: impl Callback + 'static) -> Self {
        self.list.push(callback);
        self
    }

    /// Adds a callback.
    pub fn push(&mut self, callback: impl Callback + 'static) {
        self.list.push(callback);
    }

    /// Adds a boxed callback (e.g. one built from a config).
    pub fn push_boxed(&mut self, callback: Box<dyn Callback>) {
        self.list.push_boxed(callback);
    }

    /// Wraps `scheduler` (an `f64` for a constant rate) so callbacks can
    /// change the rate; pass the result to `Learner::new`.
    pub fn lr_scheduler(&mut self, scheduler: impl LrScheduler + 'static) -> CallbackLr {
        let lr = CallbackLr::new(scheduler);
        self.lr = Some(lr.handle());
        lr
    }

    /// Links an existing [`CallbackLr`].
    pub fn with_lr_handle(mut self, handle: LrHandle) -> Self {
        self.lr = Some(handle);
        self
    }

    /// Keras-style progress, one line per epoch on stdout (a live bar on a
    /// terminal; [`ProgressLogger`](burnfit_core::builtins::ProgressLogger)),
    /// in place of Burn's renderer, which `with_callbacks` then turns off.
    /// Without Burn's `tui` feature, Burn's fallback renderer prints every
    /// progress snapshot as Debug text on stdout: this one call gives clean
    /// output. The callbacks' other notes go to stdout too (warnings still
    /// through `log`).
    pub fn progress(mut self) -> Self {
        self.list.push(burnfit_core::builtins::ProgressLogger::new(
            burnfit_core::builtins::ProgressLoggerConfig::default(),
        ));
        self.silence_burn_renderer = true;
        self
    }

    /// With Burn's `grads_accumulation(n)`: step the optimizer with the
    /// mean of the window's gradients rather than their sum (Burn's own
    /// loop sums them), as Lightning's `accumulate_grad_batches` (which
    /// divides the loss) and Keras's `gradient_accumulation_steps` do: a
    /// window of n batches then updates as one batch n times larger.
    pub fn average_accumulated_gradients(mut self) -> Self {
        self.average_accumulation = true;
        self
    }

    /// Silences the callbacks' informational prints (warnings still show).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Seeds the device's random stream before every optimizer step from
    /// `seed` and the step number, so that dropout and other random layers
    /// draw the same numbers in a run resumed from a backup as in the
    /// uninterrupted run.
    pub fn deterministic(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Trains on several devices: each step, every device runs the forward
    /// and backward pass of its own batch (from its part of the training
    /// data, as Burn's `split_dataloader` divides it), and the gradients are
    /// combined into one optimizer step on the first device, which holds the
    /// model. Hooks run once per step, on the training thread.
    ///
    /// This is the engine's equivalent of Burn's
    /// `ExecutionStrategy::MultiDevice` (which `with_callbacks` replaces).
    /// A device may appear more than once (several workers on one CPU).
    /// With one device (or none given), training runs on the model's device.
    pub fn devices(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
        self
    }

    /// How the devices' gradients are combined: [`GradientReduction::Mean`]
    /// (the default, the update of one device with the whole step's data)
    /// or [`GradientReduction::Sum`] (Burn's multi-device behaviour).
    pub fn gradient_reduction(mut self, reduction: GradientReduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// On several devices, how long one step may take before training ends
    /// with an error naming the devices that did not answer (a remote
    /// server that stopped answering without closing its connection).
    /// Without it a step is waited for as long as it takes. A stop from
    /// outside (Ctrl-C) during a step waits for it a few seconds at most,
    /// then stops at the last finished batch.
    pub fn step_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// Keeps the epoch state of the training metric Burn logs as `name` in
    /// every mid-epoch backup, and puts it back when training resumes from
    /// one, so that the resumed epoch's value of a metric computed from the
    /// whole epoch (precision, AUC, RMSE) is the uninterrupted run's. Without
    /// it such a metric's resumed epoch reports the mean of its per-batch
    /// values. See [`EpochMetricState`].
    pub fn resumable_metric(mut self, name: &str, state: Arc<dyn EpochMetricState>) -> Self {
        self.metric_states.retain(|(n, _)| n != name);
        self.metric_states.push((name.to_string(), state));
        self
    }

    /// A handle on what happened, filled in while training runs.
    pub fn outcome(&self) -> Outcome {
        self.outcome.clone()
    }

    /// The callbacks, e.g. to save or load their state.
    pub fn list(&self) -> &CallbackList {
        &self.list
    }

    /// Mutable access to the callbacks.
    pub fn list_mut(&mut self) -> &mut CallbackList {
        &mut self.list
    }

    fn into_engine(self, metric_logger: CallbackMetricLogger) -> EngineConfig {
        EngineConfig {
            callbacks: self.list,
            lr: self.lr,
            metric_logger,
            quiet: self.quiet,
            print_info: self.silence_burn_renderer,
            average_accumulation: self.average_accumulation,
            seed: self.seed,
            devices: self.devices,
            reduction: self.reduction,
            step_timeout: self.step_timeout,
            outcome: self.outcome,
            ran: false,
        }
    }
}

/// Adds callbacks to Burn's `SupervisedTraining` in one call.
///
/// It installs a [`CallbackStrategy`] as the training strategy and a
/// [`CallbackMetricLogger`] as a metric logger; Burn's metrics, renderer,
/// checkpointer and event stream keep working. Registering a metric logger
/// turns off Burn's default file metric logger: add
/// `.with_metric_logger(FileMetricLogger::new(dir))` if you want its files.
pub trait WithCallbacks: Sized {
    /// Runs `callbacks` during this training.
    fn with_callbacks(self, callbacks: Callbacks) -> Self;
}

impl<M> WithCallbacks for SupervisedTraining<M>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    fn with_callbacks(self, callbacks: Callbacks) -> Self {
        let training = if callbacks.silence_burn_renderer {
            self.renderer(Box::new(super::SilentRenderer))
        } else {
            self
        };
        let logger = CallbackMetricLogger::new();
        logger.set_states(callbacks.metric_states.clone());
        let engine = callbacks.into_engine(logger.clone());
        training
            .with_metric_logger(logger)
            .with_training_strategy(TrainingStrategy::Custom(Arc::new(CallbackStrategy::new(
                engine,
            ))))
    }
}
