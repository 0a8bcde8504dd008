//! The `logs` a hook receives: metric name → value, in insertion order.

use serde::{Deserialize, Serialize};

/// Metric values seen by a hook, keyed with Keras's names.
///
/// Train metrics use their plain name (`loss`, `accuracy`, …), validation
/// metrics the `val_` prefix (`val_loss`, `val_accuracy`), and the learning
/// rate appears as `learning_rate` once a callback (or the engine) writes it.
/// Keys keep the order they were inserted in, as a Python dict does, because
/// some Keras messages list them in that order.
///
/// ```
/// use burnfit_core::Logs;
/// let mut logs = Logs::new();
/// logs.insert("loss", 0.5);
/// logs.insert("val_loss", 0.7);
/// assert_eq!(logs.get("val_loss"), Some(0.7));
/// assert_eq!(logs.keys().collect::<Vec<_>>(), ["loss", "val_loss"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    entries: Vec<(String, f64)>,
}

impl Logs {
    /// Empty logs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| *value)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, keeping the key's position if it already exists.
    pub fn insert(&mut self, key: impl Into<String>, value: f64) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes `key` and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<f64> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// `(key, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>> FromIterator<(K, f64)> for Logs {
    fn from_iter<I: IntoIterator<Item = (K, f64)>>(iter: I) -> Self {
        let mut logs = Logs::new();
        for (key, value) in iter {
            logs.insert(key, value);
        }
        logs
    }
}
