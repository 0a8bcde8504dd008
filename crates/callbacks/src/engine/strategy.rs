//! [`CallbackStrategy`]: Burn's training loop with callback hooks.

use std::sync::{Arc, Mutex};

use burn::optim::GradientsAccumulator;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use burn::train::{
    EventProcessorTraining, InferenceStep, Learner, LearnerEvent, LearnerModel,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainStep,
    TrainingComponents, TrainingItem, ValidLoader,
};

use super::batch_loss::BatchLoss;
use super::capture::StateCapture;
use super::control::{LoopControl, ResumeProgress, Runtime, sections};
use super::ext::Engine;
use super::metric_log::keras_metric_name;
use crate::checkpoint_file::CheckpointFile;
use crate::context::Progress;
use crate::error::CallbackError;
use crate::error::Result;
use crate::logs::Logs;

/// Burn's single-device training loop with the callback hooks called in
/// between. Installed by [`WithCallbacks::with_callbacks`](super::WithCallbacks)
/// as `TrainingStrategy::Custom`.
///
/// It runs exactly Burn's steps (`Learner::train_step`, `lr_step`,
/// `optimizer_step`, gradient accumulation, the event processor that feeds
/// Burn's metrics and renderer, Burn's checkpointer and early-stopping
/// strategy when configured); the hooks run on this, the coordinating, thread.
pub struct CallbackStrategy {
    engine: Arc<Mutex<Engine>>,
}

impl CallbackStrategy {
    pub(crate) fn new(engine: Arc<Mutex<Engine>>) -> Self {
        Self { engine }
    }
}

struct Loop<'a, M: LearnerModel> {
    learner: Learner<M>,
    rt: Runtime,
    capture: StateCapture<M>,
    store: Arc<EventStoreClient>,
    engine: &'a mut Engine,
}

macro_rules! hook {
    ($lp:expr, $method:ident $(, $arg:expr)*) => {{
        let lp = &mut *$lp;
        let mut control = LoopControl {
            learner: &mut lp.learner,
            rt: &mut lp.rt,
            capture: &mut lp.capture,
            store: &lp.store,
        };
        let result = lp.engine.callbacks.$method($($arg,)* &mut control);
        match result {
            Ok(()) => {
                write_pending_backup(lp)?;
                lp.rt.queue_removals()
            }
            Err(e) => Err(e),
        }
    }};
}

/// Writes the backup a callback asked for during the last dispatch, with the
/// callbacks' states as they are now.
fn write_pending_backup<M: LearnerModel>(lp: &mut Loop<'_, M>) -> Result<()> {
    let Some(path) = lp.rt.pending_backup.take() else {
        return Ok(());
    };
    lp.rt.callback_states = lp.engine.callbacks.states()?;
    let mut control = LoopControl {
        learner: &mut lp.learner,
        rt: &mut lp.rt,
        capture: &mut lp.capture,
        store: &lp.store,
    };
    crate::context::TrainingControl::save_model(
        &mut control,
        &path,
        crate::context::SaveContent::Full,
    )
}

/// Loads a full checkpoint into the learner and the callbacks; returns where
/// training stood.
fn restore_backup<M: LearnerModel>(
    lp: &mut Loop<'_, M>,
    path: &std::path::Path,
) -> Result<ResumeProgress> {
    use burn::optim::OptimizerRecord;
    use burn::optim::lr_scheduler::LrSchedulerRecord;
    use burn::store::ModuleRecord;
    use burn::tensor::Bytes;
    use burn::train::checkpoint::Checkpoint;

    let bad =
        |what: &str, e: String| CallbackError::State(format!("{}: {what}: {e}", path.display()));
    let file = CheckpointFile::load(path)?;
    let section = |name: &str| {
        file.section(name)
            .map(|b| Bytes::from_bytes_vec(b.to_vec()))
            .ok_or_else(|| bad(name, "section missing".into()))
    };
    let model = ModuleRecord::from_bytes(section(sections::MODEL)?)
        .map_err(|e| bad("model", e.to_string()))?;
    lp.learner
        .model()
        .try_load_record(model.clone())
        .map_err(|e| bad("model does not fit", e.to_string()))?;
    let optimizer =
        <OptimizerRecord as Checkpoint>::checkpoint_from_bytes(section(sections::OPTIMIZER)?)
            .map_err(|e| bad("optimizer", e.to_string()))?;
    let scheduler =
        <LrSchedulerRecord as Checkpoint>::checkpoint_from_bytes(section(sections::SCHEDULER)?)
            .map_err(|e| bad("scheduler", e.to_string()))?;
    let states: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(file.section(sections::CALLBACKS).unwrap_or(b"{}"))
            .map_err(|e| bad("callbacks", e.to_string()))?;
    let progress: ResumeProgress = serde_json::from_slice(
        file.section(sections::PROGRESS)
            .ok_or_else(|| bad("progress", "section missing".into()))?,
    )
    .map_err(|e| bad("progress", e.to_string()))?;
    lp.learner.load_model(model);
    lp.learner.load_optim(optimizer);
    lp.learner.load_scheduler(scheduler);
    lp.engine.callbacks.load_states(states)?;
    Ok(progress)
}

impl<M> SupervisedLearningStrategy<M> for CallbackStrategy
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
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
        let mut device = learner.model().devices()[0].clone();
        if !device.is_autodiff() {
            device = device.autodiff();
        }
        let train = dataloader_train.to_device(&device);
        let valid = dataloader_valid.to_device(&device.clone().inner());
        learner.fork(&device);

        let TrainingComponents {
            num_epochs,
            checkpointer,
            grad_accumulation,
            interrupter,
            early_stopping,
            mut event_processor,
            event_store,
            ..
        } = components;

        let rt = Runtime {
            stop_reason: None,
            interrupter: interrupter.clone(),
            lr: engine.lr.clone(),
            progress: Progress {
                epoch: starting_epoch.saturating_sub(1),
                total_epochs: num_epochs,
                ..Progress::default()
            },
            last_step_lr: None,
            quiet: engine.quiet,
            callback_states: Default::default(),
            pending_backup: None,
            epoch_complete: false,
            writer: super::writer::BackgroundWriter::new(),
            pending_removals: Vec::new(),
        };
        let mut lp = Loop {
            learner,
            rt,
            capture: StateCapture::new(),
            store: event_store,
            engine: &mut engine,
        };
        let mut burn_checkpointer = checkpointer;
        let mut burn_early_stopping = early_stopping;

        let result = run(
            &mut lp,
            &mut event_processor,
            &train,
            &valid,
            starting_epoch,
            num_epochs,
            grad_accumulation,
            |learner, epoch, store| {
                if let Some(c) = &mut burn_checkpointer {
                    c.checkpoint(learner, epoch, store);
                }
                burn_early_stopping
                    .as_mut()
                    .is_some_and(|es| es.should_stop(epoch, store))
            },
        );

        let outcome = &mut lp.engine.outcome;
        {
            let mut outcome = outcome.lock().expect("outcome lock");
            outcome.stop_reason = lp.rt.stop_reason.clone();
            outcome.global_step = lp.rt.progress.global_step;
            if let Err(error) = &result {
                outcome.error = Some(error.to_string());
            }
        }
        match result {
            Ok(()) => {
                if let Some(reason) = &lp.rt.stop_reason {
                    interrupter.stop(Some(reason));
                }
            }
            Err(error) => {
                eprintln!("error: training stopped by a callback error: {error}");
                interrupter.stop(Some(&format!("callback error: {error}")));
            }
        }
        (lp.learner.model(), event_processor)
    }
}

#[allow(clippy::too_many_arguments)]
fn run<M>(
    lp: &mut Loop<'_, M>,
    processor: &mut SupervisedTrainingEventProcessor<M>,
    train: &TrainLoader<M>,
    valid: &ValidLoader<M>,
    starting_epoch: usize,
    num_epochs: usize,
    grad_accumulation: Option<usize>,
    mut after_epoch: impl FnMut(&Learner<M>, usize, &EventStoreClient) -> bool,
) -> Result<()>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    let interrupter = lp.rt.interrupter.clone();
    let wants_batch_logs = lp.engine.callbacks.wants_batch_logs();
    let metric_logger = lp.engine.metric_logger.clone();
    let seed = lp.engine.seed;
    let device = lp.learner.model().devices()[0].clone();

    // Resume from a backup a callback (BackupAndRestore) points at.
    let mut starting_epoch = starting_epoch;
    let mut skip_batches = 0usize;
    if let Some(path) = lp.engine.callbacks.resume_point()? {
        let progress = restore_backup(lp, &path)?;
        lp.rt.progress.global_step = progress.global_step;
        if progress.epoch_complete {
            starting_epoch = progress.epoch + 2;
        } else {
            starting_epoch = progress.epoch + 1;
            skip_batches = progress.batches_done;
        }
        if !lp.rt.quiet {
            println!(
                "Resuming from {} (epoch {}, {} batches done, step {})",
                path.display(),
                progress.epoch + 1,
                progress.batches_done,
                progress.global_step
            );
        }
    }
    hook!(lp, on_train_begin)?;
    let mut last_logs = Logs::new();

    for burn_epoch in starting_epoch..=num_epochs {
        let epoch = burn_epoch - 1;
        lp.rt.progress.epoch = epoch;
        lp.rt.progress.batch = 0;
        lp.rt.epoch_complete = false;
        hook!(lp, on_epoch_begin, epoch)?;

        // Training split.
        interrupter.fail_on_error(processor.process_train(LearnerEvent::StartSplit {
            epoch_number: burn_epoch,
            total_items: train.num_items(),
        }));
        let mut iterator = train.iter();
        let mut batch = 0usize;
        // Mid-epoch resume: the batches trained before the backup are read
        // (same data order) but not trained again.
        let skip = std::mem::take(&mut skip_batches);
        while batch < skip {
            if iterator.next().is_none() {
                break;
            }
            batch += 1;
        }
        let mut accumulator = GradientsAccumulator::new();
        let mut accumulated = 0usize;
        let (mut loss_sum, mut loss_count) = (0.0f64, 0usize);
        while let Some(item) = iterator.next() {
            let item = match item {
                Ok(item) => item,
                Err(err) => {
                    interrupter.fail(err);
                    break;
                }
            };
            lp.rt.progress.batch = batch;
            hook!(lp, on_train_batch_begin, batch)?;
            if let Some(seed) = seed {
                // Dropout & co. draw from a stream that depends only on the
                // step, so a resumed run draws what the uninterrupted one did.
                device.seed(mix(seed, lp.rt.progress.global_step));
            }
            let progress = iterator.progress();
            let output = lp.learner.train_step(item);
            match grad_accumulation {
                Some(accumulation) => {
                    accumulator.accumulate(&lp.learner.model(), output.grads);
                    accumulated += 1;
                    if accumulation <= accumulated || progress.is_completed() {
                        lp.learner.lr_step();
                        lp.learner.optimizer_step(accumulator.grads());
                        accumulated = 0;
                    }
                }
                None => {
                    lp.learner.lr_step();
                    lp.learner.optimizer_step(output.grads);
                }
            }
            let lr = lp.learner.lr_current();
            lp.rt.last_step_lr = Some(lr.base());
            lp.rt.progress.global_step += 1;

            let mut batch_logs = Logs::new();
            if wants_batch_logs && let Some(loss) = output.item.batch_loss() {
                loss_sum += loss;
                loss_count += 1;
                batch_logs.insert("loss", loss_sum / loss_count as f64);
            }
            let item = TrainingItem::new(output.item, progress, Some(batch + 1), Some(lr));
            interrupter.fail_on_error(processor.process_train(LearnerEvent::ProcessedItem(item)));
            hook!(lp, on_train_batch_end, batch, &mut batch_logs)?;
            batch += 1;
            if lp.rt.stop_reason.is_some() || interrupter.should_stop() {
                break;
            }
        }
        lp.rt.progress.steps_per_epoch.get_or_insert(batch);
        lp.rt.epoch_complete = true;
        interrupter.fail_on_error(processor.process_train(LearnerEvent::EndSplit(burn_epoch)));

        // Validation split: skipped only for an outside interruption (Burn's
        // behaviour); a callback's stop still validates, as in Keras.
        let outside_stop = interrupter.should_stop();
        if !outside_stop {
            hook!(lp, on_validation_begin)?;
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::StartSplit {
                epoch_number: burn_epoch,
                total_items: valid.num_items(),
            }));
            let model = lp.learner.model().valid();
            let mut iterator = valid.iter();
            let mut valid_batch = 0usize;
            while let Some(item) = iterator.next() {
                let item = match item {
                    Ok(item) => item,
                    Err(err) => {
                        interrupter.fail(err);
                        break;
                    }
                };
                let progress = iterator.progress();
                let output = InferenceStep::step(&model, item);
                let item = TrainingItem::new(output, progress, Some(valid_batch + 1), None);
                interrupter
                    .fail_on_error(processor.process_valid(LearnerEvent::ProcessedItem(item)));
                hook!(lp, on_validation_batch_end, valid_batch, &Logs::new())?;
                valid_batch += 1;
                if interrupter.should_stop() {
                    break;
                }
            }
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::EndSplit(burn_epoch)));
        }
        interrupter.fail_on_error(processor.process_train(LearnerEvent::EndEpoch(burn_epoch)));
        interrupter.fail_on_error(processor.flush());
        // The flush returns once Burn's processor has *sent* this epoch's
        // events to the event-store thread; a query through the same channel
        // returns only after the store has applied them, so the metric names
        // our logger learns from them (read below without the channel) are
        // complete. Without it a loaded machine could end the first epoch
        // before the metric definitions arrived, and its logs lacked them.
        let _ = lp
            .store
            .find_metric("", burn_epoch, Aggregate::Mean, &Split::Train);

        // Epoch logs from Burn's own metric store.
        let mut logs = Logs::new();
        let mut val_logs = Logs::new();
        for name in metric_logger.metric_names() {
            let key = keras_metric_name(&name);
            let scale = metric_logger.keras_scale(&name);
            if let Some(v) = lp
                .store
                .find_metric(&name, burn_epoch, Aggregate::Mean, &Split::Train)
            {
                logs.insert(key.clone(), v * scale);
            }
            if let Some(v) = lp
                .store
                .find_metric(&name, burn_epoch, Aggregate::Mean, &Split::Valid)
            {
                val_logs.insert(format!("val_{key}"), v * scale);
            }
        }
        metric_logger.forget_before(burn_epoch);
        if !outside_stop {
            hook!(lp, on_validation_end, &val_logs)?;
        }
        for (key, value) in val_logs.iter() {
            logs.insert(key, value);
        }
        // A full checkpoint saved during this dispatch (ModelCheckpoint with
        // save_weights_only = false) stores the callbacks' states as of the
        // start of the epoch end; taken here, not before every hook, so the
        // batch loop does no serialisation. (Backups are written after the
        // dispatch with fresh states.)
        lp.rt.callback_states = lp.engine.callbacks.states()?;
        hook!(lp, on_epoch_end, epoch, &mut logs)?;
        lp.engine
            .outcome
            .lock()
            .expect("outcome lock")
            .epochs
            .push((epoch, logs.clone()));
        last_logs = logs;

        if interrupter.should_stop() || lp.rt.stop_reason.is_some() {
            break;
        }
        if after_epoch(&lp.learner, burn_epoch, &lp.store) {
            lp.rt.stop_reason = Some("Burn's early-stopping strategy".into());
            break;
        }
    }
    // Every checkpoint is on disk before the train-end hooks run (they may
    // read them, or delete backups); their own deletions land before
    // training returns.
    lp.rt.writer.flush()?;
    hook!(lp, on_train_end, &last_logs)?;
    lp.rt.writer.flush()
}

/// SplitMix64 of `seed` and `step`: a well-spread seed per step.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
