//! [`ValidEpoch`]: one epoch's validation batches, with the validation hooks.

use burn::train::{
    EventProcessorTraining, InferenceStep, LearnerEvent, LearnerModel, TrainingItem, ValidLoader,
};
use burnfit_core::{Logs, Result};

use super::dispatch::dispatch;
use super::state::Session;

/// Validates one epoch, as Burn's single-device `ValidEpoch` does, with
/// `on_validation_begin` and `on_validation_batch_end` around it.
/// (`on_validation_end` needs the epoch's aggregated metrics: the strategy
/// calls it once it has read them.)
pub(crate) struct ValidEpoch<M: LearnerModel> {
    /// The validation data, on the inference device.
    pub loader: ValidLoader<M>,
}

impl<M: LearnerModel> ValidEpoch<M> {
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
            let item = TrainingItem::new(output, progress, Some(batch + 1), None);
            let state = &mut session.state;
            state.interrupter.fail_on_error(
                state
                    .processor
                    .process_valid(LearnerEvent::ProcessedItem(item)),
            );
            dispatch(session, |callbacks, ctl| {
                callbacks.on_validation_batch_end(batch, &Logs::new(), ctl)
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
