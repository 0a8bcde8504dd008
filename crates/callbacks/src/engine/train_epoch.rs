//! [`TrainEpoch`]: one epoch's training steps, with the batch hooks.

use burn::data::dataloader::{DataLoaderIterator, Progress};
use burn::optim::GradientsParams;
use burn::tensor::Device;
use burn::train::metric::store::Split;
use burn::train::{
    EventProcessorTraining, LearnerEvent, LearnerModel, TrainLoader, TrainStep, TrainingItem,
};
use burnfit_core::{CallbackError, Logs, Result};

use super::batch_loss::BatchLoss;
use super::dispatch::dispatch;
use super::epoch_logs;
use super::gradients::{StepGradients, step_loss};
use super::multi_device::{DeviceWorkers, GradientReduction, StepFailure, combine, mix, weights};
use super::state::{LoopState, Session};

type Input<M> = <M as TrainStep>::Input;
type Output<M> = <M as TrainStep>::Output;

/// Where a step's forward and backward passes run.
pub(crate) enum Steps<M: LearnerModel> {
    /// On the learner's device, as Burn's single-device loop does.
    Single {
        /// The device random numbers are drawn on.
        device: Device,
    },
    /// On several devices, one worker thread each (the learner is on the
    /// first); see `multi_device`.
    Multi {
        /// The workers.
        workers: DeviceWorkers<M>,
        /// How their gradients are combined.
        reduction: GradientReduction,
    },
}

/// Trains one epoch, as Burn's `TrainEpoch` does, with
/// `on_train_batch_begin` / `on_train_batch_end` around each step: a step is
/// one batch on one device, or one batch per device on several. When a
/// callback reads gradients, `on_after_backward` follows each backward pass
/// and `on_before_optimizer_step` precedes each optimizer step (which it
/// may skip).
pub(crate) struct TrainEpoch<M: LearnerModel> {
    /// The training data: one loader, or one shard per device.
    pub loaders: Vec<TrainLoader<M>>,
    /// Where the steps run.
    pub steps: Steps<M>,
    /// Burn's gradient accumulation setting.
    pub grad_accumulation: Option<usize>,
    /// Step with the window's mean gradient rather than its sum.
    pub average_accumulation: bool,
    /// Whether a callback wants the batch `loss` (a device sync per step).
    pub wants_batch_logs: bool,
    /// Whether a callback wants every metric in the batch logs.
    pub wants_batch_metrics: bool,
    /// Whether a callback reads gradients (the gradient hooks run).
    pub wants_gradients: bool,
    /// Reseed the devices before each step from this seed and the step.
    pub seed: Option<u64>,
}

/// What one step produced: the combined gradients, each device's output
/// with its item count.
struct StepResult<M: LearnerModel> {
    grads: GradientsParams,
    outputs: Vec<Output<M>>,
}

impl<M> TrainEpoch<M>
where
    M: LearnerModel,
    Output<M>: BatchLoss,
{
    /// Runs epoch `epoch` (0-based), skipping its first `skip` steps (read
    /// in the same order, not trained: they were trained before a resume).
    /// Leaves the loop early on a stop; returns the first hook error, or a
    /// device worker's failure.
    pub fn run(&self, session: &mut Session<'_, M>, epoch: usize, skip: usize) -> Result<()> {
        let burn_epoch = epoch + 1;
        let state = &mut session.state;
        let total_items = self.loaders.iter().map(|l| l.num_items()).sum();
        state
            .interrupter
            .fail_on_error(state.processor.process_train(LearnerEvent::StartSplit {
                epoch_number: burn_epoch,
                total_items,
            }));
        let mut iterators: Vec<Box<dyn DataLoaderIterator<Input<M>> + '_>> =
            self.loaders.iter().map(|l| l.iter()).collect();
        let mut step = skip_trained(session, &mut iterators, skip);
        // The running mean loss of the batch logs, weighted by the items
        // of each step (as Keras's `Mean` tracker weights by batch size).
        // A resumed epoch continues the sums its backup kept.
        if skip == 0 {
            session.state.batch_loss = (0.0, 0.0);
        }
        while let Some(items) = next_items(session, &mut iterators) {
            let progress = progress_of(&iterators);
            learn_steps_per_epoch(session, &progress, step + 1);
            session.state.progress.batch = step;
            dispatch(session, |callbacks, ctl| {
                callbacks.on_train_batch_begin(step, ctl)
            })?;

            let Some(result) = self.forward_backward(session, items)? else {
                // Left unfinished by a stop: training stops at the last
                // finished batch, and a resume trains this one.
                break;
            };
            if self.wants_gradients {
                let model = session.state.learner.model();
                let view = StepGradients::new(&model, &result.grads, &result.outputs);
                dispatch(session, |callbacks, ctl| {
                    callbacks.on_after_backward(step, &view, ctl)
                })?;
            }
            let to_apply = self.to_apply(session, &progress, result.grads);
            let step_ended = to_apply.is_some();
            if let Some(grads) = to_apply {
                self.optimizer_step(session, step, grads, &result.outputs)?;
            }
            let state = &mut session.state;
            let lr = state.learner.lr_current();
            count_step(state, step, step_ended.then(|| lr.base()));
            let mut batch_logs = self.loss_logs(state, &result.outputs);
            for output in result.outputs {
                state.metric_logger.note_batch_items(
                    burn_epoch,
                    &Split::Train,
                    output.batch_size(),
                );
                let item =
                    TrainingItem::new(output, progress.clone(), Some(step + 1), Some(lr.clone()));
                state.interrupter.fail_on_error(
                    state
                        .processor
                        .process_train(LearnerEvent::ProcessedItem(item)),
                );
            }
            if self.wants_batch_metrics
                && session
                    .callbacks
                    .wants_batch_metrics_at(&session.state.progress)
            {
                let state = &mut session.state;
                epoch_logs::add_running_metrics(state, burn_epoch, &Split::Train, &mut batch_logs);
            }
            dispatch(session, |callbacks, ctl| {
                callbacks.on_train_batch_end(step, &mut batch_logs, ctl)
            })?;
            step += 1;
            if session.state.should_stop() {
                break;
            }
        }
        let state = &mut session.state;
        if state.metric_logger.has_states() {
            // Ending the split clears Burn's metrics: a backup written after
            // it (a stop, or during validation) keeps their state from now.
            epoch_logs::settle(state, burn_epoch);
            state.metric_logger.stash_states();
        }
        state.interrupter.fail_on_error(
            state
                .processor
                .process_train(LearnerEvent::EndSplit(burn_epoch)),
        );
        Ok(())
    }

    /// The gradients of this step's optimizer step, if it takes one: the
    /// step's own, or with accumulation the window's sum (or mean) once
    /// the window is full or the epoch's data ends.
    fn to_apply(
        &self,
        session: &mut Session<'_, M>,
        progress: &Progress,
        grads: GradientsParams,
    ) -> Option<GradientsParams> {
        let Some(window) = self.grad_accumulation else {
            return Some(grads);
        };
        let state = &mut session.state;
        let model = state.learner.model();
        state.accumulation.add(&model, grads);
        let ends = window <= state.accumulation.count() || progress.is_completed();
        ends.then(|| match self.average_accumulation {
            true => state.accumulation.take_mean(&model),
            false => state.accumulation.take(),
        })
    }

    /// The batch logs' `loss`: the running mean over the epoch's steps so
    /// far, when a callback wants it and the outputs have a loss.
    fn loss_logs(&self, state: &mut LoopState<M>, outputs: &[Output<M>]) -> Logs {
        let mut batch_logs = Logs::new();
        if self.wants_batch_logs
            && let Some(loss) = step_loss(outputs)
        {
            let items: f64 = outputs
                .iter()
                .map(|o| o.batch_size().unwrap_or(1) as f64)
                .sum();
            let (sum, count) = &mut state.batch_loss;
            *sum += loss * items;
            *count += items;
            batch_logs.insert("loss", *sum / *count);
        }
        batch_logs
    }

    /// The optimizer step with `grads`, after `on_before_optimizer_step`
    /// (when a callback reads gradients), which may skip it. A skipped step
    /// still advances the learning-rate schedule, so per-step schedules stay
    /// aligned with the step count.
    fn optimizer_step(
        &self,
        session: &mut Session<'_, M>,
        step: usize,
        grads: GradientsParams,
        outputs: &[Output<M>],
    ) -> Result<()> {
        let skip = self.wants_gradients && {
            let model = session.state.learner.model();
            let view = StepGradients::new(&model, &grads, outputs);
            session.state.skip_step = Some(false);
            let dispatched = dispatch(session, |callbacks, ctl| {
                callbacks.on_before_optimizer_step(step, &view, ctl)
            });
            let skip = session.state.skip_step.take() == Some(true);
            dispatched?;
            skip
        };
        let learner = &mut session.state.learner;
        learner.lr_step();
        if !skip {
            learner.optimizer_step(grads);
        }
        Ok(())
    }

    /// The forward and backward passes of one step, and its gradients;
    /// `None` when a stop from outside left the step unfinished (several
    /// devices: see `multi_device`).
    fn forward_backward(
        &self,
        session: &mut Session<'_, M>,
        items: Vec<Option<Input<M>>>,
    ) -> Result<Option<StepResult<M>>> {
        let state = &mut session.state;
        // Per batch, so that each batch of an accumulation window draws
        // its own stream.
        let step_seed = self.seed.map(|seed| mix(seed, state.progress.global_batch));
        match &self.steps {
            Steps::Single { device } => {
                if let Some(seed) = step_seed {
                    // Dropout & co. draw from a stream that depends only on
                    // the step, so a resumed run draws what the
                    // uninterrupted one did.
                    device.seed(seed);
                }
                let item = items
                    .into_iter()
                    .next()
                    .flatten()
                    .expect("a single-device step has its batch");
                let output = state.learner.train_step(item);
                Ok(Some(StepResult {
                    grads: output.grads,
                    outputs: vec![output.item],
                }))
            }
            Steps::Multi { workers, reduction } => {
                let model = state.learner.model();
                let interrupter = state.interrupter.clone();
                let stopped = move || interrupter.should_stop();
                let outputs = match workers.step(&model, items, step_seed, &stopped) {
                    Ok(outputs) => outputs,
                    Err(StepFailure::Interrupted) => return Ok(None),
                    Err(StepFailure::Failed(message)) => {
                        return Err(CallbackError::Runtime {
                            callback: "multi-device training",
                            message,
                        });
                    }
                };
                if let Some(warning) = workers.take_warning() {
                    log::warn!("{warning}");
                    state.warnings.push(warning);
                }
                let counts: Vec<Option<usize>> =
                    outputs.iter().map(|(_, o)| o.item.batch_size()).collect();
                let weights =
                    weights(*reduction, &counts).map_err(|message| CallbackError::Runtime {
                        callback: "multi-device training",
                        message,
                    })?;
                let (grads, outputs): (Vec<_>, Vec<_>) =
                    outputs.into_iter().map(|(_, o)| (o.grads, o.item)).unzip();
                Ok(Some(StepResult {
                    grads: combine(&model, grads, &weights),
                    outputs,
                }))
            }
        }
    }
}

/// Reads the first `skip` steps' batches without training them (they
/// were trained before a resume), in the same order. Returns the steps read.
fn skip_trained<M: LearnerModel>(
    session: &mut Session<'_, M>,
    iterators: &mut [Box<dyn DataLoaderIterator<Input<M>> + '_>],
    skip: usize,
) -> usize {
    let mut step = 0usize;
    while step < skip {
        let mut read = 0;
        for iterator in iterators.iter_mut() {
            read += usize::from(iterator.next().is_some());
        }
        if read == 0 {
            break;
        }
        step += 1;
        learn_steps_per_epoch(session, &progress_of(iterators), step);
    }
    step
}

/// The next step's batches, one per device (`None` for a shard that has
/// ended); `None` when every shard has ended or a loader failed (the
/// interrupter then carries the error).
fn next_items<M: LearnerModel>(
    session: &mut Session<'_, M>,
    iterators: &mut [Box<dyn DataLoaderIterator<Input<M>> + '_>],
) -> Option<Vec<Option<Input<M>>>> {
    let mut items = Vec::with_capacity(iterators.len());
    for iterator in iterators.iter_mut() {
        match iterator.next() {
            Some(Ok(item)) => items.push(Some(item)),
            Some(Err(err)) => {
                session.state.interrupter.fail(err);
                return None;
            }
            None => items.push(None),
        }
    }
    (!items.iter().all(Option::is_none)).then_some(items)
}

/// Counts batch `step` (0-based in its epoch) as done: `global_batch`
/// counts batches, `global_step` optimizer steps. `step_lr` is the rate
/// of the optimizer step the batch ended, if it ended one (Burn's rate is
/// its default until the first optimizer step: a batch inside the first
/// window has no step's rate).
fn count_step<M: LearnerModel>(state: &mut LoopState<M>, step: usize, step_lr: Option<f64>) {
    let step_ended = step_lr.is_some();
    if step_ended {
        state.last_step_lr = step_lr;
    }
    let counters = &mut state.progress;
    counters.global_batch += 1;
    counters.step_ended = step_ended;
    if step_ended {
        counters.global_step += 1;
    }
    state.batches_done = step + 1;
}

/// The loaders' progress, summed over the devices' shards.
fn progress_of<I>(iterators: &[Box<dyn DataLoaderIterator<I> + '_>]) -> Progress {
    let mut total = Progress {
        items_processed: 0,
        items_total: 0,
        unit: None,
    };
    for iterator in iterators {
        let p = iterator.progress();
        total.items_processed += p.items_processed;
        total.items_total += p.items_total;
    }
    total
}

/// Learns the number of steps per epoch from the loaders' progress after
/// the first step (`items_total / items in that step`, rounded up), so
/// progress bars know it from the first epoch on, resumed epochs included.
fn learn_steps_per_epoch<M: LearnerModel>(
    session: &mut Session<'_, M>,
    progress: &Progress,
    steps_read: usize,
) {
    let p = &mut session.state.progress;
    if p.steps_per_epoch.is_none() && steps_read == 1 && progress.items_processed > 0 {
        p.steps_per_epoch = Some(progress.items_total.div_ceil(progress.items_processed));
    }
}
