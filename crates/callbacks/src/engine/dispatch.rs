//! [`dispatch`]: the one place the loop calls a hook.

use burn::train::LearnerModel;
use burnfit_core::{CallbackList, Result, TrainingControl};

use super::backup;
use super::control::LoopControl;
use super::state::Session;

/// Runs one hook on every callback, then carries out what they asked for.
///
/// In order:
///
/// 1. `hook` runs on the callback list, which calls each callback in turn
///    with a fresh `Context` over this loop's [`LoopControl`]; the first
///    error ends the dispatch and is returned (no later callback runs, as
///    an exception would in Keras);
/// 2. a backup a callback asked for (`Context::request_backup`) is taken
///    now, so it holds every callback's state *after* this hook, and queued
///    on the writer thread;
/// 3. deletions asked for (`Context::remove_file`) are queued behind the
///    writes asked for before them: a new backup lands before the old one
///    is deleted, and nothing is deleted after a failed write.
///
/// ```text
/// dispatch(session, |callbacks, ctl| callbacks.on_epoch_begin(epoch, ctl))
/// ```
pub(crate) fn dispatch<M: LearnerModel>(
    session: &mut Session<'_, M>,
    hook: impl FnOnce(&mut CallbackList, &mut dyn TrainingControl) -> Result<()>,
) -> Result<()> {
    let mut control = LoopControl {
        state: &mut session.state,
    };
    hook(session.callbacks, &mut control)?;

    let state = &mut session.state;
    if let Some(path) = state.pending_backup.take() {
        let states = session.callbacks.states()?;
        let models = session.callbacks.models();
        let file = backup::snapshot(state, &states, &models)?;
        state
            .writer
            .write(&path, Box::new(move || Ok(file.to_bytes())))?;
    }
    for path in std::mem::take(&mut state.pending_removals) {
        state.writer.remove(&path)?;
    }
    Ok(())
}
