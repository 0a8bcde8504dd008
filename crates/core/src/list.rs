//! [`CallbackList`]: runs a list of callbacks hook by hook, in order.

use std::collections::BTreeMap;

use crate::callback::Callback;
use crate::context::{Context, TrainingControl};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

/// An ordered list of callbacks, driven as one.
///
/// Each hook is called on every callback in list order; the first error
/// stops the dispatch and is returned. The epoch-end `logs` are one shared
/// map, so a key written by a callback (e.g. ReduceLROnPlateau's
/// `learning_rate`) is seen by the callbacks after it, as in Keras.
#[derive(Default)]
pub struct CallbackList {
    callbacks: Vec<Box<dyn Callback>>,
}

impl CallbackList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a callback.
    pub fn push(&mut self, callback: impl Callback + 'static) {
        self.callbacks.push(Box::new(callback));
    }

    /// Appends an already boxed callback.
    pub fn push_boxed(&mut self, callback: Box<dyn Callback>) {
        self.callbacks.push(callback);
    }

    /// Number of callbacks.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// The callbacks' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.callbacks.iter().map(|c| c.name()).collect()
    }

    /// Whether any callback wants per-batch logs.
    pub fn wants_batch_logs(&self) -> bool {
        self.callbacks.iter().any(|c| c.wants_batch_logs())
    }

    /// Runs `on_train_begin` on every callback.
    pub fn on_train_begin(&mut self, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_begin(ctx))
    }

    /// Runs `on_train_end` on every callback.
    pub fn on_train_end(&mut self, logs: &Logs, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_end(logs, ctx))
    }

    /// Runs `on_epoch_begin` on every callback.
    pub fn on_epoch_begin(&mut self, epoch: usize, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_epoch_begin(epoch, ctx))
    }

    /// Runs `on_epoch_end` on every callback, sharing `logs`.
    pub fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_epoch_end(epoch, logs, ctx))
    }

    /// Runs `on_train_batch_begin` on every callback.
    pub fn on_train_batch_begin(
        &mut self,
        batch: usize,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_batch_begin(batch, ctx))
    }

    /// Runs `on_train_batch_end` on every callback, sharing `logs`.
    pub fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_batch_end(batch, logs, ctx))
    }

    /// Runs `on_validation_begin` on every callback.
    pub fn on_validation_begin(&mut self, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_begin(ctx))
    }

    /// Runs `on_validation_batch_end` on every callback.
    pub fn on_validation_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_batch_end(batch, logs, ctx))
    }

    /// Runs `on_validation_end` on every callback.
    pub fn on_validation_end(&mut self, logs: &Logs, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_end(logs, ctx))
    }

    /// Calls `hook` on every callback in order, each with a fresh [`Context`]
    /// over `ctl`; stops at the first error and returns it.
    fn each(
        &mut self,
        ctl: &mut dyn TrainingControl,
        mut hook: impl FnMut(&mut dyn Callback, &mut Context) -> Result<()>,
    ) -> Result<()> {
        for callback in self.callbacks.iter_mut() {
            let mut ctx = Context::new(&mut *ctl);
            hook(callback.as_mut(), &mut ctx)?;
        }
        Ok(())
    }

    /// The first backup a callback wants training to resume from.
    pub fn resume_point(&mut self) -> Result<Option<std::path::PathBuf>> {
        for cb in self.callbacks.iter_mut() {
            if let Some(path) = cb.resume_point()? {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Every stateful callback's state, keyed by its name (a `#n` suffix
    /// tells apart callbacks of the same name).
    pub fn states(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut states = BTreeMap::new();
        for key_and_cb in self.keyed() {
            let (key, cb) = key_and_cb;
            if let Some(state) = cb.state()? {
                states.insert(key, state);
            }
        }
        Ok(states)
    }

    /// Gives each callback the state saved under its key by [`CallbackList::states`].
    /// A callback with no saved state keeps its fresh state.
    pub fn load_states(&mut self, mut states: BTreeMap<String, serde_json::Value>) -> Result<()> {
        let keys: Vec<String> = self.keyed().map(|(key, _)| key).collect();
        for (key, cb) in keys.into_iter().zip(self.callbacks.iter_mut()) {
            if let Some(state) = states.remove(&key) {
                cb.load_state(state)
                    .map_err(|e| CallbackError::State(format!("{key}: {e}")))?;
            }
        }
        Ok(())
    }

    fn keyed(&self) -> impl Iterator<Item = (String, &Box<dyn Callback>)> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        self.callbacks.iter().map(move |cb| {
            let name = cb.name();
            let count = seen.entry(name.clone()).or_insert(0);
            *count += 1;
            let key = if *count == 1 {
                name
            } else {
                format!("{name}#{count}")
            };
            (key, cb)
        })
    }
}

impl std::fmt::Debug for CallbackList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
