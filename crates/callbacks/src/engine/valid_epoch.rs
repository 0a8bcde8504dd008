//! [`ValidEpoch`]: one epoch's validation batches, with the validation hooks.

use burn::train::metric::store::Split;
use burn::train::{
    EventProcessorTraining, InferenceStep, LearnerEvent, LearnerModel, TrainingItem, ValidLoader,
};
use burnfit_core::{Logs, Result};

use super::batch_loss::BatchLoss;
use super::dispatch::dispatch;
use super::epoch_logs;
use super::state::Session;

/// Validates one epoch, as Burn's single-device `ValidEpoch` does, with
/// `on_validation_begin` and `on_validation_batch_end` around it. The
/// batch logs hold the running mean `loss` when a callback wants batch
/// logs, and every metric's running mean when one wants batch metrics.
/// (`on_validation_end` needs the epoch's aggregated metrics: the strategy
/// calls it once it has read them.)
pub(crate) struct ValidEpoch<M: LearnerModel> {
    /// The validation data, on the inference device.
    pub loader: ValidLoader<M>,
    /// Whether a callback wants the batch `loss`.
    pub wants_batch_logs: bool,
    /// Whether a callback wants every metric in the batch logs.
    pub wants_batch_metrics: bool,
}

impl<M> ValidEpoch<M>
where
    M: LearnerModel,
    <M as InferenceStep>::Output: BatchLoss,
{
    /// Validates epoch `epoch` (0-based). Only a stop from outside (Burn's
    /// interrupter) cuts it short: a callback's stop still validates, as in
    /// Keras.
    pub fn run(&self, session: &mut Session<'_, M>, epoch: usize) -> Result<()> {
        let burn_epoch = epoch + 1;
        dispatch(session, |callbacks, ctl| callbacks.on_validation_begin(ctl))?;
        let state = &mut session.state;
        state
            .interrupter
            .fail_on_error(state.processor.process_valid(LearnerEvent::StartSplit {
                epoch_number: burn_epoch,
                total_items: self.loader.num_items(),
            }));
        let model = state.learner.model().valid();
        let mut iterator = self.loader.iter();
        let mut batch = 0usize;
        let (mut loss_sum, mut items) = (0.0f64, 0.0f64);
        while let Some(item) = iterator.next() {
            let item = match item {
                Ok(item) => item,
                Err(err) => {
                    session.state.interrupter.fail(err);
                    break;
                }
            };
            let progress = iterator.progress();
            let output = InferenceStep::step(&model, item);
            let mut logs = Logs::new();
            if self.wants_batch_logs
                && let Some(loss) = output.batch_loss()
            {
                let n = output.batch_size().unwrap_or(1) as f64;
                loss_sum += loss * n;
                items += n;
                logs.insert("loss", loss_sum / items);
            }
            let state = &mut session.state;
            state
                .metric_logger
                .note_batch_items(burn_epoch, &Split::Valid, output.batch_size());
            let item = TrainingItem::new(output, progress, Some(batch + 1), None);
            state.interrupter.fail_on_error(
                state
                    .processor
                    .process_valid(LearnerEvent::ProcessedItem(item)),
            );
            if self.wants_batch_metrics {
                epoch_logs::add_running_metrics(state, burn_epoch, &Split::Valid, &mut logs);
            }
            dispatch(session, |callbacks, ctl| {
                callbacks.on_validation_batch_end(batch, &logs, ctl)
            })?;
            batch += 1;
            if session.state.interrupter.should_stop() {
                break;
            }
        }
        let state = &mut session.state;
        state.interrupter.fail_on_error(
            state
                .processor
                .process_valid(LearnerEvent::EndSplit(burn_epoch)),
        );
        Ok(())
    }
}
