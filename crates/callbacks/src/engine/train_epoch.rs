//! [`TrainEpoch`]: one epoch's training batches, with the batch hooks.

use burn::optim::GradientsAccumulator;
use burn::tensor::Device;
use burn::train::{
    EventProcessorTraining, LearnerEvent, LearnerModel, TrainLoader, TrainStep, TrainingItem,
};
use burnfit_core::{Logs, Result};

use super::batch_loss::BatchLoss;
use super::dispatch::dispatch;
use super::state::Session;

/// Trains one epoch, as Burn's single-device `TrainEpoch` does, with
/// `on_train_batch_begin` / `on_train_batch_end` around each step.
pub(crate) struct TrainEpoch<M: LearnerModel> {
    /// The training data, on the training device.
    pub loader: TrainLoader<M>,
    /// Burn's gradient accumulation setting.
    pub grad_accumulation: Option<usize>,
    /// Whether a callback wants the batch `loss` (a device sync per step).
    pub wants_batch_logs: bool,
    /// Reseed the device before each step from this seed and the step.
    pub seed: Option<u64>,
    /// The device random numbers are drawn on.
    pub device: Device,
}

impl<M> TrainEpoch<M>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    /// Runs epoch `epoch` (0-based), skipping its first `skip` batches (read
    /// in the same order, not trained: they were trained before a resume).
    /// Leaves the loop early on a stop; returns the first hook error.
    pub fn run(&self, session: &mut Session<'_, M>, epoch: usize, skip: usize) -> Result<()> {
        let burn_epoch = epoch + 1;
        let state = &mut session.state;
        state
            .interrupter
            .fail_on_error(state.processor.process_train(LearnerEvent::StartSplit {
                epoch_number: burn_epoch,
                total_items: self.loader.num_items(),
            }));
        let mut iterator = self.loader.iter();
        let mut batch = 0usize;
        while batch < skip && iterator.next().is_some() {
            batch += 1;
            learn_steps_per_epoch(session, iterator.progress(), batch);
        }
        let mut accumulator = GradientsAccumulator::new();
        let mut accumulated = 0usize;
        let (mut loss_sum, mut loss_count) = (0.0f64, 0usize);
        while let Some(item) = iterator.next() {
            let item = match item {
                Ok(item) => item,
                Err(err) => {
                    session.state.interrupter.fail(err);
                    break;
                }
            };
            let progress = iterator.progress();
            learn_steps_per_epoch(session, progress.clone(), batch + 1);
            session.state.progress.batch = batch;
            dispatch(session, |callbacks, ctl| {
                callbacks.on_train_batch_begin(batch, ctl)
            })?;

            let state = &mut session.state;
            if let Some(seed) = self.seed {
                // Dropout & co. draw from a stream that depends only on the
                // step, so a resumed run draws what the uninterrupted one did.
                self.device.seed(mix(seed, state.progress.global_step));
            }
            let output = state.learner.train_step(item);
            match self.grad_accumulation {
                Some(accumulation) => {
                    accumulator.accumulate(&state.learner.model(), output.grads);
                    accumulated += 1;
                    if accumulation <= accumulated || progress.is_completed() {
                        state.learner.lr_step();
                        state.learner.optimizer_step(accumulator.grads());
                        accumulated = 0;
                    }
                }
                None => {
                    state.learner.lr_step();
                    state.learner.optimizer_step(output.grads);
                }
            }
            let lr = state.learner.lr_current();
            state.last_step_lr = Some(lr.base());
            state.progress.global_step += 1;
            state.batches_done = batch + 1;

            let mut batch_logs = Logs::new();
            if self.wants_batch_logs
                && let Some(loss) = output.item.batch_loss()
            {
                loss_sum += loss;
                loss_count += 1;
                batch_logs.insert("loss", loss_sum / loss_count as f64);
            }
            let item = TrainingItem::new(output.item, progress, Some(batch + 1), Some(lr));
            state.interrupter.fail_on_error(
                state
                    .processor
                    .process_train(LearnerEvent::ProcessedItem(item)),
            );
            dispatch(session, |callbacks, ctl| {
                callbacks.on_train_batch_end(batch, &mut batch_logs, ctl)
            })?;
            batch += 1;
            if session.state.should_stop() {
                break;
            }
        }
        let state = &mut session.state;
        state.interrupter.fail_on_error(
            state
                .processor
                .process_train(LearnerEvent::EndSplit(burn_epoch)),
        );
        Ok(())
    }
}

/// Learns the number of batches per epoch from the loader's progress after
/// the first batch (`items_total / items in that batch`, rounded up), so
/// progress bars know it from the first epoch on, resumed epochs included.
fn learn_steps_per_epoch<M: LearnerModel>(
    session: &mut Session<'_, M>,
    progress: burn::data::dataloader::Progress,
    batches_read: usize,
) {
    let p = &mut session.state.progress;
    if p.steps_per_epoch.is_none() && batches_read == 1 && progress.items_processed > 0 {
        p.steps_per_epoch = Some(progress.items_total.div_ceil(progress.items_processed));
    }
}

/// SplitMix64 of `seed` and `step`: a well-spread seed per step.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
