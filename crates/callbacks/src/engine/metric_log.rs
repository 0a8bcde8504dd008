//! [`CallbackMetricLogger`]: lets the callback engine see Burn's metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricAttributes, MetricDefinition, MetricId, NumericEntry};

use super::metric_state::MetricStates;

/// A Burn [`MetricLogger`] that keeps every numeric entry in memory and the
/// names of the registered metrics, so that Burn's event store can aggregate
/// epoch values (`EventStoreClient::find_metric`) and the engine knows which
/// metrics exist. Registered by [`WithCallbacks::with_callbacks`](super::WithCallbacks).
#[derive(Clone, Default)]
pub struct CallbackMetricLogger {
    shared: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    definitions: HashMap<MetricId, MetricDefinition>,
    /// Metric names in registration order.
    names: Vec<String>,
    values: HashMap<(String, String, usize), Vec<NumericEntry>>,
    /// `(split, epoch)` continued from a backup: Burn's `Final` entry for
    /// them covers only the batches of this process, so it is dropped and
    /// the epoch value is the mean of every batch's entry.
    resumed: Vec<(String, usize)>,
    /// Metrics whose epoch state came back from the backup: their `Final`
    /// entry covers the whole resumed epoch and is kept.
    restored: Vec<String>,
    /// The metrics whose epoch state backups keep.
    states: MetricStates,
    /// Their states as the training split ended (Burn then clears the
    /// metrics), until the next training batch: what a backup written in
    /// between (after a stop, or during validation) keeps.
    stashed: Option<Vec<(String, Vec<u8>)>>,
    /// The items of each batch the engine sent to Burn's processor, in
    /// order, by `(split, epoch)` (`None`: the output does not say).
    items: HashMap<(String, usize), Vec<Option<usize>>>,
    /// How many per-batch loss entries this process logged, by
    /// `(name, split, epoch)`: the next one is of the batch at that index
    /// of `items`.
    losses_logged: HashMap<(String, String, usize), usize>,
}

/// Whether `name` is the loss: Burn's `LossMetric` counts a batch's mean
/// loss as one item, so its entries are re-weighted by the batch's items
/// and its epoch value is their item-weighted mean (as Keras's `Mean`
/// tracker with the batch size as sample weight).
fn is_loss(name: &str) -> bool {
    keras_metric_name(name) == "loss"
}

fn split_key(split: &Split) -> String {
    split.to_string()
}

impl CallbackMetricLogger {
    /// A new, empty logger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names of the metrics Burn registered, in registration order.
    pub fn metric_names(&self) -> Vec<String> {
        self.shared.lock().expect("metric log lock").names.clone()
    }

    /// The factor that turns Burn's value of `name` into Keras's: `0.01` for
    /// metrics in percent (Burn's accuracy is 0–100, Keras's 0–1), else `1`.
    pub fn keras_scale(&self, name: &str) -> f64 {
        let entries = self.shared.lock().expect("metric log lock");
        let percent = entries.definitions.values().any(|d| {
            d.name.as_str() == name
                && matches!(&d.attributes, MetricAttributes::Numeric(a) if a.unit.as_deref() == Some("%"))
        });
        if percent { 0.01 } else { 1.0 }
    }

    /// The per-batch numeric entries logged so far for `epoch` (1-based)
    /// and `split`, by metric name: what a mid-epoch backup keeps so that
    /// the resumed epoch's metrics cover all of its batches. (A `Final`
    /// entry, logged when an interrupted split ends, covers only part of
    /// the epoch and is left out.)
    pub(crate) fn entries_of(
        &self,
        epoch: usize,
        split: &Split,
    ) -> Vec<(String, Vec<NumericEntry>)> {
        let entries = self.shared.lock().expect("metric log lock");
        let split = split_key(split);
        let mut found: Vec<(String, Vec<NumericEntry>)> = entries
            .values
            .iter()
            .filter(|((_, s, e), _)| *s == split && *e == epoch)
            .map(|((name, _, _), values)| {
                let per_batch = values
                    .iter()
                    .filter(|v| !matches!(v, NumericEntry::Final(_)))
                    .cloned()
                    .collect();
                (name.clone(), per_batch)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The mean of each metric's entries so far in `epoch` (1-based) and
    /// `split`, weighted by the items each entry covers: the running values
    /// batch logs hold.
    pub(crate) fn running_means(&self, epoch: usize, split: &Split) -> Vec<(String, f64)> {
        let entries = self.shared.lock().expect("metric log lock");
        let split = split_key(split);
        let mut means: Vec<(String, f64)> = entries
            .values
            .iter()
            .filter(|((_, s, e), _)| *s == split && *e == epoch)
            .filter_map(|((name, _, _), values)| {
                let (mut sum, mut count) = (0.0, 0.0);
                for value in values {
                    match value {
                        NumericEntry::Value(v) => {
                            sum += v;
                            count += 1.0;
                        }
                        NumericEntry::Aggregated {
                            aggregated_value,
                            count: n,
                        } => {
                            sum += aggregated_value * *n as f64;
                            count += *n as f64;
                        }
                        NumericEntry::Final(_) => {}
                    }
                }
                (count > 0.0).then(|| (name.clone(), sum / count))
            })
            .collect();
        means.sort_by(|a, b| a.0.cmp(&b.0));
        means
    }

    /// Puts back entries saved by [`CallbackMetricLogger::entries_of`],
    /// before any batch of the resumed epoch is logged.
    pub(crate) fn restore_entries(
        &self,
        epoch: usize,
        split: &Split,
        saved: Vec<(String, Vec<NumericEntry>)>,
    ) {
        let mut entries = self.shared.lock().expect("metric log lock");
        entries.resumed.push((split_key(split), epoch));
        for (name, values) in saved {
            let slot = entries
                .values
                .entry((name, split_key(split), epoch))
                .or_default();
            let logged = std::mem::take(slot);
            *slot = values;
            slot.extend(logged);
        }
    }

    /// Registers the metrics whose epoch state backups keep.
    pub(crate) fn set_states(&self, states: MetricStates) {
        self.shared.lock().expect("metric log lock").states = states;
    }

    /// The registered metrics' states now, by name (for a mid-epoch
    /// backup, once every batch so far has reached the metrics).
    pub(crate) fn save_states(&self) -> Vec<(String, Vec<u8>)> {
        let (states, stashed) = {
            let entries = self.shared.lock().expect("metric log lock");
            (entries.states.clone(), entries.stashed.clone())
        };
        if let Some(stashed) = stashed {
            return stashed;
        }
        states
            .iter()
            .map(|(name, state)| (name.clone(), state.save()))
            .collect()
    }

    /// Whether any metric's epoch state is registered.
    pub(crate) fn has_states(&self) -> bool {
        !self
            .shared
            .lock()
            .expect("metric log lock")
            .states
            .is_empty()
    }

    /// Keeps the registered metrics' states as they are now (every batch of
    /// the training split processed), for backups written after the split
    /// ends, until the next training batch is noted.
    pub(crate) fn stash_states(&self) {
        self.shared.lock().expect("metric log lock").stashed = None;
        let saved = self.save_states();
        self.shared.lock().expect("metric log lock").stashed = Some(saved);
    }

    /// Puts back the states of `saved` whose metric is registered (a state
    /// without its metric is ignored); returns the names restored. Nothing
    /// is kept as restored unless every state fits.
    pub(crate) fn restore_states(
        &self,
        saved: &[(String, Vec<u8>)],
    ) -> Result<Vec<String>, String> {
        let states = self.shared.lock().expect("metric log lock").states.clone();
        let mut restored = Vec::new();
        for (name, bytes) in saved {
            if let Some((_, state)) = states.iter().find(|(n, _)| n == name) {
                state
                    .restore(bytes)
                    .map_err(|e| format!("metric `{name}`: {e}"))?;
                restored.push(name.clone());
            }
        }
        self.shared
            .lock()
            .expect("metric log lock")
            .restored
            .clone_from(&restored);
        Ok(restored)
    }

    /// Notes that the next output the engine sends to Burn's processor for
    /// `epoch` (1-based) and `split` holds `items` items: the loss entry Burn
    /// logs for it is weighted by them.
    pub(crate) fn note_batch_items(&self, epoch: usize, split: &Split, items: Option<usize>) {
        let mut entries = self.shared.lock().expect("metric log lock");
        if *split == Split::Train {
            entries.stashed = None;
        }
        entries
            .items
            .entry((split_key(split), epoch))
            .or_default()
            .push(items);
    }

    /// Drops the entries of epochs before `epoch` (1-based, Burn's
    /// numbering) so memory stays flat over long runs; Burn's aggregate cache
    /// keeps the values it already computed.
    pub fn forget_before(&self, epoch: usize) {
        let mut entries = self.shared.lock().expect("metric log lock");
        entries.values.retain(|(_, _, e), _| *e >= epoch);
        entries.items.retain(|(_, e), _| *e >= epoch);
        entries.losses_logged.retain(|(_, _, e), _| *e >= epoch);
    }
}

impl MetricLogger for CallbackMetricLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let mut entries = self.shared.lock().expect("metric log lock");
        let resumed = entries.resumed.contains(&(split_key(split), epoch));
        for numeric in update.entries_numeric {
            let Some(value) = numeric.numeric_entry else {
                continue;
            };
            let Some(name) = entries
                .definitions
                .get(&numeric.entry.metric_id)
                .map(|d| d.name.to_string())
            else {
                continue;
            };
            if resumed
                && matches!(value, NumericEntry::Final(_))
                && !entries.restored.contains(&name)
            {
                continue;
            }
            let value = if is_loss(&name) {
                // Burn's `Final` loss is the plain mean of the batches'
                // losses: left out, the epoch value is the weighted mean of
                // the entries below.
                if matches!(value, NumericEntry::Final(_)) {
                    continue;
                }
                let index = entries
                    .losses_logged
                    .entry((name.clone(), split_key(split), epoch))
                    .or_default();
                let batch = *index;
                *index += 1;
                let items = entries
                    .items
                    .get(&(split_key(split), epoch))
                    .and_then(|items| items.get(batch).copied().flatten());
                match items {
                    Some(count) if count > 0 => NumericEntry::Aggregated {
                        aggregated_value: value.current(),
                        count,
                    },
                    _ => value,
                }
            } else {
                value
            };
            entries
                .values
                .entry((name, split_key(split), epoch))
                .or_default()
                .push(value);
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        let entries = self.shared.lock().expect("metric log lock");
        Ok(entries
            .values
            .get(&(name.to_string(), split_key(split), epoch))
            .cloned()
            .unwrap_or_default())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        let mut entries = self.shared.lock().expect("metric log lock");
        let name = definition.name.to_string();
        if !entries.names.contains(&name) {
            entries.names.push(name);
        }
        entries
            .definitions
            .insert(definition.metric_id.clone(), definition);
    }

    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}

/// Burn's metric name as a Keras log key: `Loss` → `loss`,
/// `Learning Rate` → `learning_rate`, `Top-5 Accuracy` → `top_5_accuracy`.
///
/// ```
/// use burnfit_callbacks::engine::keras_metric_name;
/// assert_eq!(keras_metric_name("Learning Rate"), "learning_rate");
/// assert_eq!(keras_metric_name("Top-5 Accuracy"), "top_5_accuracy");
/// ```
pub fn keras_metric_name(burn_name: &str) -> String {
    let mut out = String::with_capacity(burn_name.len());
    for c in burn_name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}
