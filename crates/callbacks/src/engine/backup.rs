//! The backup file: its sections, how the loop takes one and how it puts
//! one back.
//!
//! A backup (and a full checkpoint a callback saves with
//! [`SaveContent::Full`](burnfit_core::SaveContent::Full)) is a
//! [`CheckpointFile`] with these sections:
//!
//! | section | content |
//! | --- | --- |
//! | `model` | the model's parameters (Burn burnpack) |
//! | `optimizer` | the optimizer state, taken through Burn's checkpointer |
//! | `scheduler` | the learning-rate scheduler, with the factor callbacks applied |
//! | `callbacks` | every callback's `state()`, JSON keyed by callback name |
//! | `progress` | [`BackupProgress`]: where training stood (JSON) |
//! | `metrics` | the metric entries of the unfinished epoch's batches (JSON) |
//! | `batch_logs` | what the unfinished epoch's batch logs continue: the running loss's two sums and the last step's learning rate, as bits (JSON) |
//! | `accumulation`, `accumulation/<i>` | the gradients of an unfinished accumulation window |
//! | `callback_model/<key>/<name>` | a model a callback keeps (best weights, an average; burnpack) |
//! | `metric_state/<name>` | a metric's state over the unfinished epoch ([`EpochMetricState`](super::EpochMetricState)) |
//!
//! Invariants, each with a test named after it:
//!
//! * **A backup holds the state after the hook that asked for it.** The
//!   dispatch writes it once the hook has run on every callback.
//! * **A mid-epoch backup resumes as if the run had never stopped.** It keeps
//!   the per-batch metric entries of the epoch so far, so the resumed
//!   epoch's logs average over all of its batches, not only those trained
//!   after the resume, and what its batch logs continue (the running loss,
//!   the last optimizer step's rate; the CLI's
//!   `batch_logs_continue_exactly_after_a_resume_inside_a_window`); a
//!   backup on an epoch's last batch resumes into that epoch's validation.
//! * **A backup holds the model as the next step will read it**: the batch
//!   norms' running statistics are synced first (Burn folds a thread's last
//!   update in lazily).
//! * **Restoring checks before it changes anything.** Every section is
//!   decoded, and the model record is tried on a copy of the model, before
//!   the learner or a callback is touched: a backup of another model leaves
//!   training as it was and names the file.

use std::collections::BTreeMap;
use std::path::Path;

use burn::optim::OptimizerRecord;
use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::train::checkpoint::Checkpoint;
use burn::train::metric::NumericEntry;
use burn::train::metric::store::Split;
use burn::train::{Learner, LearnerModel};
use burnfit_core::checkpoint_file::CheckpointFile;
use burnfit_core::{CallbackError, CallbackList, CallbackModels, Result};
use serde::{Deserialize, Serialize};

use super::accumulation::Accumulation;
use super::capture::TrainingRecords;
use super::epoch_logs;
use super::params::{snapshot_of, sync_running_states};
use super::state::LoopState;

/// Section names of a backup or full checkpoint file.
pub mod sections {
    /// Model parameters (burnpack).
    pub const MODEL: &str = "model";
    /// Optimizer state (burnpack).
    pub const OPTIMIZER: &str = "optimizer";
    /// Learning-rate scheduler state (burnpack), with the callback factor.
    pub const SCHEDULER: &str = "scheduler";
    /// Callback states (JSON object keyed by callback name).
    pub const CALLBACKS: &str = "callbacks";
    /// Where training stood (JSON, [`super::BackupProgress`]).
    pub const PROGRESS: &str = "progress";
    /// Metric entries of the unfinished epoch (JSON).
    pub const METRICS: &str = "metrics";
    /// What the unfinished epoch's batch logs continue (JSON,
    /// `BatchLogsState`): the running loss's Σ(loss × items) and Σ items,
    /// and the learning rate of the last optimizer step, as `f64` bits.
    pub const BATCH_LOGS: &str = "batch_logs";
    /// The unfinished gradient-accumulation window: its count and the
    /// gradients' shapes (JSON); the gradients are `accumulation/<i>`.
    pub const ACCUMULATION: &str = "accumulation";
    /// Prefix of the sections holding the models callbacks keep:
    /// `callback_model/<callback key>/<model name>` (burnpack).
    pub const CALLBACK_MODEL: &str = "callback_model/";
    /// Prefix of the sections holding the epoch state of a training metric
    /// registered with `Callbacks::resumable_metric`:
    /// `metric_state/<metric name>` (the metric's own bytes).
    pub const METRIC_STATE: &str = "metric_state/";
}

/// Where training stood when a backup was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupProgress {
    /// The 0-based epoch.
    pub epoch: usize,
    /// Whether that epoch's end hooks ran: resume starts with the next
    /// epoch. Otherwise resume continues this epoch after `batches_done`.
    #[serde(alias = "epoch_complete")]
    pub epoch_ended: bool,
    /// Training batches of that epoch already trained.
    pub batches_done: usize,
    /// Optimizer steps since the start.
    pub global_step: u64,
    /// Training batches since the start (a backup written before it was
    /// recorded has 0: it then equals `global_step`, as no such run
    /// accumulated gradients across a backup).
    #[serde(default)]
    pub global_batch: u64,
    /// Training batches per epoch, once known.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// Why training was stopped, when a callback had stopped it by the end
    /// of the epoch this backup closes (EarlyStopping): a resume from it
    /// trains no further epoch, and ends as that run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl BackupProgress {
    /// Reads the progress section of a backup file (for tools that want to
    /// say where a run stopped without loading it).
    pub fn read(path: &Path) -> Result<Self> {
        let file = CheckpointFile::load(path)?;
        decode_progress(path, &file)
    }

    fn of<M: LearnerModel>(state: &LoopState<M>) -> Self {
        let p = state.progress;
        Self {
            epoch: p.epoch,
            epoch_ended: state.epoch_ended,
            batches_done: state.batches_done,
            global_step: p.global_step,
            global_batch: p.global_batch,
            steps_per_epoch: p.steps_per_epoch,
            stopped: state.stop_reason.clone().filter(|_| state.epoch_ended),
        }
    }
}

/// One metric entry, bit for bit (JSON has no NaN).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum SavedEntry {
    Value(u64),
    Aggregated(u64, usize),
    Final(u64),
}

impl SavedEntry {
    fn from_burn(entry: &NumericEntry) -> Self {
        match entry {
            NumericEntry::Value(v) => SavedEntry::Value(v.to_bits()),
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => SavedEntry::Aggregated(aggregated_value.to_bits(), *count),
            NumericEntry::Final(v) => SavedEntry::Final(v.to_bits()),
        }
    }

    fn to_burn(&self) -> NumericEntry {
        match *self {
            SavedEntry::Value(bits) => NumericEntry::Value(f64::from_bits(bits)),
            SavedEntry::Aggregated(bits, count) => NumericEntry::Aggregated {
                aggregated_value: f64::from_bits(bits),
                count,
            },
            SavedEntry::Final(bits) => NumericEntry::Final(f64::from_bits(bits)),
        }
    }
}

type SavedMetrics = Vec<(String, Vec<SavedEntry>)>;

/// What the unfinished epoch's batch logs continue from, bit for bit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BatchLogsState {
    loss_sum: u64,
    loss_items: u64,
    last_step_lr: Option<u64>,
}

impl BatchLogsState {
    fn of<M: LearnerModel>(state: &LoopState<M>) -> Self {
        let (sum, items) = state.batch_loss;
        Self {
            loss_sum: sum.to_bits(),
            loss_items: items.to_bits(),
            last_step_lr: state.last_step_lr.map(f64::to_bits),
        }
    }

    fn apply<M: LearnerModel>(&self, state: &mut LoopState<M>) {
        state.batch_loss = (
            f64::from_bits(self.loss_sum),
            f64::from_bits(self.loss_items),
        );
        if let Some(lr) = self.last_step_lr {
            state.last_step_lr = Some(f64::from_bits(lr));
        }
    }
}

/// Metrics (Keras keys) whose epoch value is not a mean of per-batch
/// entries but comes from state accumulated over the epoch inside the
/// metric (confusion counts, predictions, sums): unless their state is
/// registered with `Callbacks::resumable_metric` (as the CLI's are), their
/// value for an epoch resumed in its middle is not the uninterrupted run's.
const NOT_RESUMABLE: &[&str] = &[
    "precision",
    "recall",
    "f1_score",
    "fbetascore",
    "auc",
    "auroc",
    "auc_pr",
    "rmse",
    "r2_score",
];

/// Takes a full snapshot of the training state as a checkpoint file, with
/// `callback_states` as the callbacks' section. The model record shares its
/// tensors with the model; the optimizer and scheduler records are taken
/// through Burn's checkpointer.
pub(crate) fn snapshot<M: LearnerModel>(
    state: &mut LoopState<M>,
    callback_states: &BTreeMap<String, serde_json::Value>,
    callback_models: &CallbackModels,
) -> Result<CheckpointFile> {
    // Batch norms keep their last update per thread until synced: without
    // this, a backup in the middle of an epoch saves statistics one update
    // old (an epoch-end backup follows validation, which syncs them).
    sync_running_states(&state.learner.model());
    let records = state
        .capture
        .take(&state.learner, &state.store)
        .map_err(|message| CallbackError::Runtime {
            callback: "backup",
            message,
        })?;
    let progress = BackupProgress::of(state);
    let mut metrics: SavedMetrics = Vec::new();
    let mut metric_states = Vec::new();
    if !progress.epoch_ended && progress.batches_done > 0 {
        // Every event of the batches so far must have reached the store
        // (and so the metrics).
        epoch_logs::settle(state, progress.epoch + 1);
        metric_states = state.metric_logger.save_states();
        metrics = state
            .metric_logger
            .entries_of(progress.epoch + 1, &Split::Train)
            .into_iter()
            .map(|(name, entries)| (name, entries.iter().map(SavedEntry::from_burn).collect()))
            .collect();
    }
    let mut file = CheckpointFile::default();
    file.push(sections::MODEL, records.model);
    file.push(sections::OPTIMIZER, records.optimizer);
    file.push(sections::SCHEDULER, records.scheduler);
    file.push(sections::CALLBACKS, to_json(callback_states));
    file.push(sections::PROGRESS, to_json(&progress));
    file.push(sections::METRICS, to_json(&metrics));
    if !progress.epoch_ended && progress.batches_done > 0 {
        file.push(sections::BATCH_LOGS, to_json(&BatchLogsState::of(state)));
    }
    for (name, bytes) in metric_states {
        file.push(format!("{}{name}", sections::METRIC_STATE), bytes);
    }
    if let Some((header, grads)) = state.accumulation.encode(&state.learner.model()) {
        file.push(sections::ACCUMULATION, header);
        for (index, bytes) in grads.into_iter().enumerate() {
            file.push(format!("{}/{index}", sections::ACCUMULATION), bytes);
        }
    }
    for (key, models) in callback_models {
        for (name, model) in models {
            let Some(model) = model.downcast_ref::<M>() else {
                return Err(CallbackError::State(format!(
                    "{key}: its model `{name}` is not of the trained model's type"
                )));
            };
            let bytes = model
                .clone()
                .into_record()
                .into_bytes()
                .map_err(|e| CallbackError::State(format!("{key}: {name}: {e}")))?;
            file.push(
                format!("{}{key}/{name}", sections::CALLBACK_MODEL),
                bytes.to_vec(),
            );
        }
    }
    Ok(file)
}

/// Puts records taken by the state capture back into the learner (model,
/// optimizer, scheduler).
pub(crate) fn load_records<M: LearnerModel>(
    learner: &mut Learner<M>,
    records: &TrainingRecords,
) -> Result<()> {
    let fail = |what: &str, e: String| CallbackError::State(format!("{what}: {e}"));
    let model = ModuleRecord::from_bytes(Bytes::from_bytes_vec(records.model.clone()))
        .map_err(|e| fail(sections::MODEL, e.to_string()))?;
    let optimizer = <OptimizerRecord as Checkpoint>::checkpoint_from_bytes(Bytes::from_bytes_vec(
        records.optimizer.clone(),
    ))
    .map_err(|e| fail(sections::OPTIMIZER, e.to_string()))?;
    let scheduler = <LrSchedulerRecord as Checkpoint>::checkpoint_from_bytes(
        Bytes::from_bytes_vec(records.scheduler.clone()),
    )
    .map_err(|e| fail(sections::SCHEDULER, e.to_string()))?;
    learner.load_model(model);
    learner.load_optim(optimizer);
    learner.load_scheduler(scheduler);
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("backup sections serialise")
}

fn decode_progress(path: &Path, file: &CheckpointFile) -> Result<BackupProgress> {
    let section = file
        .section(sections::PROGRESS)
        .ok_or_else(|| bad(path, sections::PROGRESS, "section missing".into()))?;
    serde_json::from_slice(section).map_err(|e| bad(path, sections::PROGRESS, e.to_string()))
}

fn bad(path: &Path, what: &str, message: String) -> CallbackError {
    CallbackError::State(format!("{}: {what}: {message}", path.display()))
}

/// Loads the backup at `path` into the learner, the callbacks and the
/// metric logger; returns where training stood.
pub(crate) fn restore<M: LearnerModel>(
    path: &Path,
    state: &mut LoopState<M>,
    callbacks: &mut CallbackList,
) -> Result<BackupProgress> {
    let file = CheckpointFile::load(path)?;
    let bytes = |name: &str| {
        file.section(name)
            .map(|b| Bytes::from_bytes_vec(b.to_vec()))
            .ok_or_else(|| bad(path, name, "section missing".into()))
    };
    // Decode and check everything first.
    let model = ModuleRecord::from_bytes(bytes(sections::MODEL)?)
        .map_err(|e| bad(path, sections::MODEL, e.to_string()))?;
    // The model as it will be once loaded (its parameter ids are the
    // record's): the accumulated gradients are registered against it.
    let loaded = state
        .learner
        .model()
        .try_load_record(model.clone())
        .map_err(|e| bad(path, "the model does not fit this network", e.to_string()))?;
    let optimizer =
        <OptimizerRecord as Checkpoint>::checkpoint_from_bytes(bytes(sections::OPTIMIZER)?)
            .map_err(|e| bad(path, sections::OPTIMIZER, e.to_string()))?;
    let scheduler =
        <LrSchedulerRecord as Checkpoint>::checkpoint_from_bytes(bytes(sections::SCHEDULER)?)
            .map_err(|e| bad(path, sections::SCHEDULER, e.to_string()))?;
    let states: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(file.section(sections::CALLBACKS).unwrap_or(b"{}"))
            .map_err(|e| bad(path, sections::CALLBACKS, e.to_string()))?;
    let progress = decode_progress(path, &file)?;
    let metrics: SavedMetrics =
        serde_json::from_slice(file.section(sections::METRICS).unwrap_or(b"[]"))
            .map_err(|e| bad(path, sections::METRICS, e.to_string()))?;
    let accumulation = match file.section(sections::ACCUMULATION) {
        Some(header) => Accumulation::decode(&loaded, header, |index| {
            file.section(&format!("{}/{index}", sections::ACCUMULATION))
        })
        .map_err(|e| bad(path, sections::ACCUMULATION, e))?,
        None => Accumulation::default(),
    };
    let batch_logs: BatchLogsState = match file.section(sections::BATCH_LOGS) {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| bad(path, sections::BATCH_LOGS, e.to_string()))?,
        None => BatchLogsState::default(),
    };
    let metric_states: Vec<(String, Vec<u8>)> = file
        .sections
        .iter()
        .filter_map(|(name, data)| {
            let metric = name.strip_prefix(sections::METRIC_STATE)?;
            Some((metric.to_string(), data.clone()))
        })
        .collect();
    let mut models = CallbackModels::new();
    for (name, data) in &file.sections {
        let Some(rest) = name.strip_prefix(sections::CALLBACK_MODEL) else {
            continue;
        };
        let (key, model_name) = rest
            .rsplit_once('/')
            .ok_or_else(|| bad(path, name, "malformed section name".into()))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(data.clone()))
            .map_err(|e| bad(path, name, e.to_string()))?;
        let model = state
            .learner
            .model()
            .try_load_record(record)
            .map_err(|e| bad(path, name, e.to_string()))?;
        models
            .entry(key.to_string())
            .or_default()
            .push((model_name.to_string(), snapshot_of(model)));
    }

    // Then apply: the metrics' and callbacks' states first (they are
    // checked as they load), then the learner, which cannot fail any more.
    let mid_epoch = !progress.epoch_ended && progress.batches_done > 0;
    let restored = if mid_epoch {
        state
            .metric_logger
            .restore_states(&metric_states)
            .map_err(|e| bad(path, sections::METRIC_STATE, e))?
    } else {
        Vec::new()
    };
    callbacks.load_states(states)?;
    callbacks.load_models(models)?;
    state.learner.load_model(model);
    state.learner.load_optim(optimizer);
    state.learner.load_scheduler(scheduler);
    state.accumulation = accumulation;
    batch_logs.apply(state);
    if mid_epoch {
        let mut names: Vec<String> = metrics.iter().map(|(name, _)| name.clone()).collect();
        names.extend(state.metric_logger.metric_names());
        let mut inexact: Vec<String> = names
            .iter()
            .filter(|name| !restored.contains(name))
            .map(|name| super::metric_log::keras_metric_name(name))
            .filter(|key| NOT_RESUMABLE.contains(&key.as_str()))
            .collect();
        inexact.sort();
        inexact.dedup();
        if !inexact.is_empty() {
            log::warn!(
                "resuming in the middle of epoch {}: its training {} will differ from an \
                 uninterrupted run's (the backup keeps no state for them); validation metrics \
                 and the other training metrics are exact",
                progress.epoch + 1,
                inexact.join(", ")
            );
        }
    }
    if !progress.epoch_ended {
        state.metric_logger.restore_entries(
            progress.epoch + 1,
            &Split::Train,
            metrics
                .into_iter()
                .map(|(name, entries)| (name, entries.iter().map(SavedEntry::to_burn).collect()))
                .collect(),
        );
    }
    Ok(progress)
}
