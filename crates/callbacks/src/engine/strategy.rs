//! [`CallbackStrategy`]: resume, the epochs in order, the end.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use burn::train::metric::store::EventStoreClient;
use burn::train::{
    EventProcessorTraining, InferenceStep, Learner, LearnerEvent, LearnerModel,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainStep,
    TrainingComponents, ValidLoader,
};
use burnfit_core::writer::BackgroundWriter;
use burnfit_core::{CallbackList, Logs, Progress, Result, TrainEnd};

use super::backup;
use super::batch_loss::BatchLoss;
use super::capture::StateCapture;
use super::dispatch::dispatch;
use super::epoch_logs;
use super::lr::LrHandle;
use super::metric_log::CallbackMetricLogger;
use super::multi_device::{DeviceWorkers, GradientReduction};
use super::outcome::{FitError, Outcome};
use super::panic::panic_message;
use super::state::{LoopState, Session};
use super::train_epoch::{Steps, TrainEpoch};
use super::valid_epoch::ValidEpoch;

/// What [`Callbacks`](super::Callbacks) hands the strategy.
pub(crate) struct EngineConfig {
    pub callbacks: CallbackList,
    pub lr: Option<LrHandle>,
    pub metric_logger: CallbackMetricLogger,
    pub quiet: bool,
    pub print_info: bool,
    pub average_accumulation: bool,
    pub seed: Option<u64>,
    pub devices: Vec<Device>,
    pub reduction: GradientReduction,
    pub step_timeout: Option<std::time::Duration>,
    pub outcome: Outcome,
    /// Whether Burn ran this strategy (see the `Drop` below).
    pub ran: bool,
}

impl Drop for EngineConfig {
    fn drop(&mut self) {
        // `with_training_strategy` after `with_callbacks` replaces this
        // strategy: the callbacks would never run, and nothing would say so.
        if !self.ran && !self.callbacks.is_empty() {
            let warning = format!(
                "the callbacks ({}) never ran: Burn trained with another strategy; call \
                 `.with_callbacks(...)` after `.with_training_strategy(...)`, or use \
                 `Callbacks` options for what the engine supports",
                self.callbacks.names().join(", ")
            );
            log::warn!("{warning}");
            self.outcome
                .update(|outcome| outcome.warnings.push(warning));
        }
    }
}

/// Burn's single-device training loop with the callback hooks called in
/// between. Installed by [`WithCallbacks::with_callbacks`](super::WithCallbacks)
/// as `TrainingStrategy::Custom`.
///
/// It runs exactly Burn's steps (`Learner::train_step`, `lr_step`,
/// `optimizer_step`, gradient accumulation, the event processor that feeds
/// Burn's metrics and renderer, Burn's checkpointer and early-stopping
/// strategy when configured); the hooks run on this, the coordinating,
/// thread. The order of the hooks is documented in `docs/architecture.md`.
pub struct CallbackStrategy {
    engine: Arc<Mutex<EngineConfig>>,
}

impl CallbackStrategy {
    pub(crate) fn new(engine: EngineConfig) -> Self {
        Self {
            engine: Arc::new(Mutex::new(engine)),
        }
    }
}

impl<M> SupervisedLearningStrategy<M> for CallbackStrategy
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    fn fit(
        &self,
        components: TrainingComponents<M>,
        mut learner: Learner<M>,
        dataloader_train: TrainLoader<M>,
        dataloader_valid: ValidLoader<M>,
        starting_epoch: usize,
    ) -> (M, SupervisedTrainingEventProcessor<M>) {
        let mut engine = self.engine.lock().expect("callback engine lock");
        let engine = &mut *engine;
        engine.ran = true;
        let devices = training_devices(engine, &learner);
        let device = devices[0].clone();
        learner.fork(&device);
        let (train, valid) = epochs::<M>(
            engine,
            &devices,
            components.grad_accumulation,
            &dataloader_train,
            dataloader_valid,
        );
        let TrainingComponents {
            num_epochs,
            mut checkpointer,
            interrupter,
            mut early_stopping,
            event_processor,
            event_store,
            ..
        } = components;
        let mut session = Session {
            callbacks: &mut engine.callbacks,
            state: LoopState {
                learner,
                processor: event_processor,
                store: event_store,
                metric_logger: engine.metric_logger.clone(),
                interrupter: interrupter.clone(),
                capture: StateCapture::new(),
                lr: engine.lr.clone(),
                progress: Progress {
                    epoch: starting_epoch.saturating_sub(1),
                    total_epochs: num_epochs,
                    batches_per_step: components.grad_accumulation.unwrap_or(1),
                    ..Progress::default()
                },
                batches_done: 0,
                batch_loss: (0.0, 0.0),
                epoch_ended: false,
                last_step_lr: None,
                stop_reason: None,
                train_end: None,
                quiet: engine.quiet,
                print_info: engine.print_info,
                callback_states: Default::default(),
                callback_models: Default::default(),
                skip_step: None,
                train_loader: Some(dataloader_train.to_device(&device)),
                seed: engine.seed,
                pending_backup: None,
                pending_removals: Vec::new(),
                writer: BackgroundWriter::new(),
                warnings: Vec::new(),
                accumulation: Default::default(),
            },
        };
        let outcome = engine.outcome.clone();
        // A panic inside the loop (a bug in a model, a callback or Burn)
        // ends training like an error: the callbacks' `on_exception` runs
        // and the caller gets an error, not an unwinding thread.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_epochs(
                &mut session,
                &train,
                &valid,
                starting_epoch.max(1) - 1,
                num_epochs,
                &outcome,
                |learner, burn_epoch, store| {
                    if let Some(c) = &mut checkpointer {
                        c.checkpoint(learner, burn_epoch, store);
                    }
                    early_stopping
                        .as_mut()
                        .is_some_and(|es| es.should_stop(burn_epoch, store))
                },
            )
        }))
        .unwrap_or_else(|panic| {
            Err(burnfit_core::CallbackError::Runtime {
                callback: "training",
                message: format!("panicked: {}", panic_message(&*panic)),
            })
        });
        if let Err(error) = &result {
            let message = error.to_string();
            // Their last chance to save something; what they write lands
            // before training returns.
            let _ = dispatch(&mut session, |callbacks, ctl| {
                callbacks.on_exception(&message, ctl);
                Ok(())
            });
            if let Err(e) = session.state.writer.flush() {
                log::warn!("on_exception: {e}");
            }
        }

        let state = session.state;
        record_outcome(&outcome, &state, &result);
        match &result {
            Ok(()) => {
                if let Some(reason) = &state.stop_reason {
                    interrupter.stop(Some(reason));
                }
            }
            Err(error) => interrupter.stop(Some(&format!("callback error: {error}"))),
        }
        (state.learner.model(), state.processor)
    }
}

/// The devices to train on, with autodiff: on one device, the model's own
/// (a model built on `device.autodiff().gradient_checkpointing()` keeps
/// that strategy, and the data follows it); on several, the engine's, the
/// first holding the learner.
fn training_devices<M: LearnerModel>(engine: &EngineConfig, learner: &Learner<M>) -> Vec<Device> {
    let autodiff = |device: Device| {
        if device.is_autodiff() {
            device
        } else {
            device.autodiff()
        }
    };
    match engine.devices.len() {
        0 | 1 => vec![autodiff(
            engine
                .devices
                .first()
                .cloned()
                .unwrap_or_else(|| learner.model().devices()[0].clone()),
        )],
        _ => engine.devices.iter().cloned().map(autodiff).collect(),
    }
}

/// How each training and validation epoch runs: the training data on its
/// device (one shard per device, with their workers, on several), the
/// validation data on the first device, and what the callbacks want of
/// each batch.
fn epochs<M>(
    engine: &EngineConfig,
    devices: &[Device],
    grad_accumulation: Option<usize>,
    dataloader_train: &TrainLoader<M>,
    dataloader_valid: ValidLoader<M>,
) -> (TrainEpoch<M>, ValidEpoch<M>)
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    let device = &devices[0];
    let (loaders, steps) = if devices.len() == 1 {
        (
            vec![dataloader_train.to_device(device)],
            Steps::Single {
                device: device.clone(),
            },
        )
    } else {
        (
            shards::<M>(dataloader_train, devices),
            Steps::Multi {
                workers: DeviceWorkers::start(devices.to_vec(), engine.step_timeout),
                reduction: engine.reduction,
            },
        )
    };
    let train = TrainEpoch {
        loaders,
        steps,
        grad_accumulation,
        average_accumulation: engine.average_accumulation,
        wants_batch_logs: engine.callbacks.wants_batch_logs(),
        wants_gradients: engine.callbacks.wants_gradients(),
        wants_batch_metrics: engine.callbacks.wants_batch_metrics(),
        seed: engine.seed,
    };
    let valid = ValidEpoch {
        loader: dataloader_valid.to_device(&device.clone().inner()),
        wants_batch_logs: engine.callbacks.wants_batch_logs(),
        wants_batch_metrics: engine.callbacks.wants_batch_metrics(),
    };
    (train, valid)
}

/// What the loop ended with, for the caller: why it stopped, where, its
/// warnings, and the error that ended it, if one did.
fn record_outcome<M: LearnerModel>(outcome: &Outcome, state: &LoopState<M>, result: &Result<()>) {
    outcome.update(|outcome| {
        outcome.stop_reason = state.stop_reason.clone();
        outcome.train_end = state.train_end.clone();
        outcome.global_step = state.progress.global_step;
        outcome.stopped_at = Some((state.progress.epoch, state.batches_done));
        outcome.steps_per_epoch = state.progress.steps_per_epoch;
        outcome.warnings = state.warnings.clone();
        if let Err(error) = result {
            // Reported to the caller, who decides how to show it.
            outcome.error = Some(match error {
                burnfit_core::CallbackError::Io { source, path } => FitError {
                    message: source.to_string(),
                    path: Some(path.clone()),
                },
                other => FitError {
                    message: other.to_string(),
                    path: None,
                },
            });
        }
    });
}

/// One contiguous part of the training data per device (Burn's
/// `split_dataloader`): device `d` reads items `d·n/N .. (d+1)·n/N`, the last
/// one the rest.
fn shards<M: LearnerModel>(loader: &TrainLoader<M>, devices: &[Device]) -> Vec<TrainLoader<M>> {
    let items = loader.num_items();
    let share = items / devices.len();
    devices
        .iter()
        .enumerate()
        .map(|(d, device)| {
            let start = d * share;
            let end = if d + 1 == devices.len() {
                items
            } else {
                start + share
            };
            loader.slice(start, end).to_device(device)
        })
        .collect()
}

/// Resumes from a backup if a callback points at one, runs the epochs from
/// `first_epoch` (0-based) and the train-end hooks.
fn run_epochs<M>(
    session: &mut Session<'_, M>,
    train: &TrainEpoch<M>,
    valid: &ValidEpoch<M>,
    first_epoch: usize,
    num_epochs: usize,
    outcome: &Outcome,
    mut after_epoch: impl FnMut(&Learner<M>, usize, &EventStoreClient) -> bool,
) -> Result<()>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    let mut first_epoch = first_epoch;
    let mut skip = 0usize;
    if let Some(path) = session.callbacks.resume_point()? {
        let at = backup::restore(&path, &mut session.state, session.callbacks)?;
        let progress = &mut session.state.progress;
        progress.global_step = at.global_step;
        progress.global_batch = if at.global_batch == 0 {
            at.global_step
        } else {
            at.global_batch
        };
        progress.steps_per_epoch = at.steps_per_epoch;
        if let Some(reason) = at.stopped.clone().filter(|_| at.epoch_ended) {
            // Stopped by a callback at that epoch's end: nothing more to
            // train, only the end of training.
            first_epoch = num_epochs;
            session.state.progress.epoch = at.epoch;
            session.state.stop_reason = Some(reason);
        } else if at.epoch_ended {
            first_epoch = at.epoch + 1;
        } else {
            first_epoch = at.epoch;
            skip = at.batches_done;
        }
        outcome.update(|o| o.resumed_at = Some((first_epoch, skip)));
        log::info!(
            "Resuming from {} (epoch {}, {} batches done, step {})",
            path.display(),
            first_epoch + 1,
            skip,
            at.global_step
        );
    }
    let loop_start = std::time::Instant::now();
    dispatch(session, |callbacks, ctl| callbacks.on_train_begin(ctl))?;
    let mut last_logs = Logs::new();
    for epoch in first_epoch..num_epochs {
        let skip = std::mem::take(&mut skip);
        let state = &mut session.state;
        state.progress.epoch = epoch;
        state.progress.batch = skip;
        state.batches_done = skip;
        state.epoch_ended = false;
        dispatch(session, |callbacks, ctl| {
            callbacks.on_epoch_begin(epoch, ctl)
        })?;
        train.run(session, epoch, skip)?;
        // A stop from outside skips validation and the epoch end (Burn's
        // behaviour): the run is resumed from here, so validation runs then.
        if session.state.interrupted() {
            break;
        }
        valid.run(session, epoch)?;
        if session.state.interrupted() {
            break;
        }
        let logs = end_epoch(session, epoch)?;
        outcome.update(|o| o.epochs.push((epoch, logs.clone())));
        last_logs = logs;
        let state = &mut session.state;
        if state.should_stop() {
            break;
        }
        if after_epoch(&state.learner, epoch + 1, &state.store) {
            state.stop_reason = Some("Burn's early-stopping strategy".into());
            break;
        }
    }
    // Every checkpoint is on disk before the train-end hooks run (they may
    // read them, or delete backups); their own writes and deletions land
    // before training returns.
    let state = &mut session.state;
    state.writer.flush()?;
    outcome.update(|o| o.training_time = Some(loop_start.elapsed()));
    state.train_end = Some(if state.interrupted() {
        let reason = state
            .interrupter
            .error()
            .map(|e| e.to_string())
            .or_else(|| state.interrupter.get_message())
            .unwrap_or_else(|| "interrupted".into());
        TrainEnd::Interrupted(reason)
    } else if let Some(reason) = &state.stop_reason {
        TrainEnd::Stopped(reason.clone())
    } else {
        TrainEnd::Completed
    });
    dispatch(session, |callbacks, ctl| {
        callbacks.on_train_end(&last_logs, ctl)
    })?;
    session.state.writer.flush()
}

/// The end of an epoch whose batches and validation ran: its logs, then
/// `on_validation_end` and `on_epoch_end`. Returns the logs as the last
/// callback left them.
fn end_epoch<M: LearnerModel>(session: &mut Session<'_, M>, epoch: usize) -> Result<Logs> {
    let burn_epoch = epoch + 1;
    let state = &mut session.state;
    state.interrupter.fail_on_error(
        state
            .processor
            .process_train(LearnerEvent::EndEpoch(burn_epoch)),
    );
    let (mut logs, val_logs) = epoch_logs::read(state, burn_epoch);
    dispatch(session, |callbacks, ctl| {
        callbacks.on_validation_end(&val_logs, ctl)
    })?;
    for (key, value) in val_logs.iter() {
        logs.insert(key, value);
    }
    // A full checkpoint a callback saves during the epoch end (ModelCheckpoint
    // with save_weights_only = false) stores the callbacks' states as of the
    // start of the epoch end; taken here, not before every hook, so the batch
    // loop does no serialisation. (Backups are taken after the dispatch,
    // with fresh states.)
    session.state.callback_states = session.callbacks.states()?;
    session.state.callback_models = session.callbacks.models();
    session.state.epoch_ended = true;
    dispatch(session, |callbacks, ctl| {
        callbacks.on_epoch_end(epoch, &mut logs, ctl)
    })?;
    Ok(logs)
}
