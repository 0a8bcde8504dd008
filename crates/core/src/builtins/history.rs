//! [`History`]: record every epoch's logs (Keras's `keras.callbacks.History`).

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::Result;
use crate::logs::Logs;
use crate::monitor::special_float;

type Records = Vec<(usize, Logs)>;

/// A cloneable, thread-safe view of what a [`History`] recorded; keep one to
/// read the history after training has consumed the callback.
#[derive(Clone, Debug, Default)]
pub struct HistoryHandle {
    records: Arc<Mutex<Records>>,
}

impl HistoryHandle {
    fn lock(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `(epoch, logs)` of every recorded epoch, in order. The logs are those
    /// the History saw: keys added by callbacks before it in the list (such
    /// as `learning_rate`) included.
    pub fn epochs(&self) -> Vec<(usize, Logs)> {
        self.lock().clone()
    }

    /// The values of `key`, one per epoch that had it (Keras's
    /// `history.history[key]`).
    pub fn metric(&self, key: &str) -> Vec<f64> {
        self.lock()
            .iter()
            .filter_map(|(_, logs)| logs.get(key))
            .collect()
    }

    /// The number of recorded epochs.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Records the logs of every epoch end.
///
/// Put it last in the list to see the keys other callbacks add. Records are
/// kept across `on_train_begin` (so a resumed run continues its history; use
/// a new `History` for an unrelated run) and are part of the saved state.
///
/// ```
/// use burnfit_core::builtins::History;
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let history = History::new();
/// let handle = history.handle();
/// let mut list = CallbackList::new();
/// list.push(history);
/// let script = Script::from_epochs([0.5, 0.4].map(|v| Logs::from_iter([("loss", v)])));
/// drive(&mut list, &mut ScriptedControl::new(0.01), &script);
/// assert_eq!(handle.metric("loss"), [0.5, 0.4]);
/// assert_eq!(handle.epochs()[1].0, 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct History {
    handle: HistoryHandle,
}

/// One record of [`History`]'s saved state.
#[derive(Serialize, Deserialize)]
struct StateRecord {
    epoch: usize,
    logs: Vec<StateEntry>,
}

#[derive(Serialize, Deserialize)]
struct StateEntry(String, #[serde(with = "special_float")] f64);

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle to read the records, also after training.
    pub fn handle(&self) -> HistoryHandle {
        self.handle.clone()
    }
}

impl Callback for History {
    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        self.handle.lock().push((epoch, logs.clone()));
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        let records: Vec<StateRecord> = self
            .handle
            .lock()
            .iter()
            .map(|(epoch, logs)| StateRecord {
                epoch: *epoch,
                logs: logs
                    .iter()
                    .map(|(k, v)| StateEntry(k.to_string(), v))
                    .collect(),
            })
            .collect();
        crate::error::state_to_json(&records)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let records: Vec<StateRecord> = crate::error::state_from_json(state)?;
        *self.handle.lock() = records
            .into_iter()
            .map(|r| {
                (
                    r.epoch,
                    r.logs.into_iter().map(|StateEntry(k, v)| (k, v)).collect(),
                )
            })
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrip_with_special_floats() {
        let history = History::new();
        history
            .handle
            .lock()
            .push((0, Logs::from_iter([("loss", f64::NAN), ("acc", 0.5)])));
        let state = history.state().unwrap().unwrap();
        let mut other = History::new();
        other.load_state(state).unwrap();
        let epochs = other.handle().epochs();
        assert_eq!(epochs.len(), 1);
        assert!(epochs[0].1.get("loss").unwrap().is_nan());
        assert_eq!(epochs[0].1.keys().collect::<Vec<_>>(), ["loss", "acc"]);
        assert_eq!(other.handle().metric("acc"), [0.5]);
        other.handle().clear();
        assert!(other.handle().is_empty());
    }
}
