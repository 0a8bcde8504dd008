//! An epoch's logs, read from Burn's own metric store.
//!
//! Burn aggregates metrics on its event-store thread. At an epoch end the
//! engine settles the event stream ([`settle`]) and asks the store for the
//! mean of every metric our logger saw registered, on the train and the
//! validation split; Burn's names become Keras keys (`Loss` → `loss`,
//! validation → `val_loss`) and metrics in percent become fractions. The
//! values are Burn's own numbers, not a second computation.

use burn::train::metric::store::{Aggregate, Split};
use burn::train::{EventProcessorTraining, LearnerModel};
use burnfit_core::Logs;

use super::metric_log::keras_metric_name;
use super::state::LoopState;

/// Waits until every event sent so far has been applied by Burn's store.
///
/// `processor.flush()` returns once Burn's processor has *sent* the events
/// to the event-store thread; a query through the same channel returns only
/// after the store has applied them, so the metric names and entries our
/// logger holds (read without the channel) are complete. Without it a loaded
/// machine could end the first epoch before the metric definitions arrived.
pub(crate) fn settle<M: LearnerModel>(state: &mut LoopState<M>, burn_epoch: usize) {
    state.interrupter.fail_on_error(state.processor.flush());
    let _ = state
        .store
        .find_metric("", burn_epoch, Aggregate::Mean, &Split::Train);
}

/// The train logs and the `val_` logs of `burn_epoch` (1-based).
pub(crate) fn read<M: LearnerModel>(state: &mut LoopState<M>, burn_epoch: usize) -> (Logs, Logs) {
    settle(state, burn_epoch);
    let mut logs = Logs::new();
    let mut val_logs = Logs::new();
    let logger = state.metric_logger.clone();
    for name in logger.metric_names() {
        let key = keras_metric_name(&name);
        let scale = logger.keras_scale(&name);
        if let Some(v) = state
            .store
            .find_metric(&name, burn_epoch, Aggregate::Mean, &Split::Train)
        {
            logs.insert(key.clone(), v * scale);
        }
        if let Some(v) = state
            .store
            .find_metric(&name, burn_epoch, Aggregate::Mean, &Split::Valid)
        {
            val_logs.insert(format!("val_{key}"), v * scale);
        }
    }
    logger.forget_before(burn_epoch);
    (logs, val_logs)
}

/// Adds every metric's running mean so far in `burn_epoch` and `split` to
/// `logs`, as Keras keys (`loss` is left to the engine's own, exact value).
pub(crate) fn add_running_metrics<M: LearnerModel>(
    state: &mut LoopState<M>,
    burn_epoch: usize,
    split: &Split,
    logs: &mut Logs,
) {
    settle(state, burn_epoch);
    let logger = state.metric_logger.clone();
    for (name, value) in logger.running_means(burn_epoch, split) {
        let key = keras_metric_name(&name);
        if key != "loss" && key != "learning_rate" {
            logs.insert(key, value * logger.keras_scale(&name));
        }
    }
}
