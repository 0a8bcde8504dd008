//! [`LoopControl`]: the [`TrainingControl`] the strategy hands to hooks.

use std::collections::BTreeMap;
use std::path::Path;

use burn::train::metric::store::EventStoreClient;
use burn::train::{Interrupter, Learner, LearnerModel};

use super::capture::StateCapture;
use super::lr::LrHandle;
use super::writer::BackgroundWriter;
use crate::checkpoint_file::CheckpointFile;
use crate::context::{Message, ModelSnapshot, Progress, SaveContent, TrainingControl};
use crate::error::{CallbackError, Result};

/// Section names of a full checkpoint file.
pub mod sections {
    /// Model parameters (burnpack).
    pub const MODEL: &str = "model";
    /// Optimizer state (burnpack).
    pub const OPTIMIZER: &str = "optimizer";
    /// Learning-rate scheduler state (burnpack), with the callback factor.
    pub const SCHEDULER: &str = "scheduler";
    /// Callback states (JSON object keyed by callback name).
    pub const CALLBACKS: &str = "callbacks";
    /// Where training stood (JSON: epoch, batch, global_step).
    pub const PROGRESS: &str = "progress";
}

/// Where training stood when a full checkpoint or backup was written.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct ResumeProgress {
    /// The 0-based epoch.
    pub epoch: usize,
    /// Whether all of that epoch's batches were trained.
    pub epoch_complete: bool,
    /// Training batches of that epoch already trained.
    pub batches_done: usize,
    /// Optimizer steps since the start.
    pub global_step: u64,
}

impl ResumeProgress {
    pub(crate) fn of(rt: &Runtime) -> Self {
        let p = rt.progress;
        Self {
            epoch: p.epoch,
            epoch_complete: rt.epoch_complete,
            batches_done: if rt.epoch_complete {
                p.steps_per_epoch.unwrap_or(p.batch + 1)
            } else {
                p.batch + 1
            },
            global_step: p.global_step,
        }
    }
}

/// State of the loop that outlives a single hook call.
pub(crate) struct Runtime {
    pub stop_reason: Option<String>,
    pub interrupter: Interrupter,
    pub lr: Option<LrHandle>,
    pub progress: Progress,
    pub last_step_lr: Option<f64>,
    pub quiet: bool,
    /// Callback states as of the start of the last epoch-end dispatch (or
    /// fresh, for backups), stored in full checkpoints.
    pub callback_states: BTreeMap<String, serde_json::Value>,
    /// A backup a callback asked for, written once the hook has run on every callback.
    pub pending_backup: Option<std::path::PathBuf>,
    /// Whether the current epoch's batches are all done (for backups).
    pub epoch_complete: bool,
    /// Writes checkpoints off the training thread.
    pub writer: BackgroundWriter,
    /// Deletions asked for during the current dispatch, queued after its
    /// writes (a backup is written after the dispatch).
    pub pending_removals: Vec<std::path::PathBuf>,
}

impl Runtime {
    /// Queues the deletions asked for during the last dispatch.
    pub fn queue_removals(&mut self) -> Result<()> {
        for path in std::mem::take(&mut self.pending_removals) {
            self.writer.remove(&path)?;
        }
        Ok(())
    }
}

pub(crate) struct LoopControl<'a, M: LearnerModel> {
    pub learner: &'a mut Learner<M>,
    pub rt: &'a mut Runtime,
    pub capture: &'a mut StateCapture<M>,
    pub store: &'a EventStoreClient,
}

impl<M: LearnerModel> TrainingControl for LoopControl<'_, M> {
    fn request_stop(&mut self, reason: String) {
        if self.rt.stop_reason.is_none() {
            self.rt.stop_reason = Some(reason);
        }
    }

    fn stop_requested(&self) -> bool {
        self.rt.stop_reason.is_some() || self.rt.interrupter.should_stop()
    }

    fn cancel_stop(&mut self) {
        self.rt.stop_reason = None;
    }

    fn learning_rate(&self) -> Option<f64> {
        match &self.rt.lr {
            Some(lr) => Some(lr.peek()),
            None => self.rt.last_step_lr,
        }
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match &self.rt.lr {
            Some(handle) => {
                handle.set(lr);
                Ok(())
            }
            None => Err(CallbackError::Unsupported(
                "a callback tried to change the learning rate, but the Learner's scheduler is \
                 not controllable: build the Learner with `callbacks.lr_scheduler(your_scheduler)` \
                 (or wrap it in burnfit_callbacks::engine::CallbackLr and pass its handle)"
                    .into(),
            )),
        }
    }

    fn snapshot_model(&self) -> ModelSnapshot {
        ModelSnapshot::of(self.learner.model())
    }

    fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()> {
        let model = snapshot.downcast::<M>().map_err(|_| {
            CallbackError::Unsupported(
                "restore_model: the snapshot holds another model type".into(),
            )
        })?;
        self.learner.load_model(model.into_record());
        Ok(())
    }

    fn save_model(&mut self, path: &Path, content: SaveContent) -> Result<()> {
        // A file written now must not be deleted by a removal asked for
        // earlier in the same dispatch.
        self.rt.pending_removals.retain(|p| p != path);
        match content {
            SaveContent::Weights => {
                // The record shares the model's tensors (they are immutable),
                // so this is the whole cost on the training thread; reading
                // the values and encoding them happen on the writer thread.
                let record = self.learner.model().into_record();
                self.rt
                    .writer
                    .write(path, super::writer::encode_module_record(record))
            }
            SaveContent::Full => {
                let records = self
                    .capture
                    .take(self.learner, self.store)
                    .map_err(|message| CallbackError::Runtime {
                        callback: "save_model",
                        message,
                    })?;
                let mut file = CheckpointFile::default();
                file.push(sections::MODEL, records.model);
                file.push(sections::OPTIMIZER, records.optimizer);
                file.push(sections::SCHEDULER, records.scheduler);
                file.push(
                    sections::CALLBACKS,
                    serde_json::to_vec(&self.rt.callback_states).expect("json"),
                );
                file.push(
                    sections::PROGRESS,
                    serde_json::to_vec(&ResumeProgress::of(self.rt)).expect("json"),
                );
                self.rt
                    .writer
                    .write(path, Box::new(move || Ok(file.to_bytes())))
            }
        }
    }

    fn progress(&self) -> Progress {
        self.rt.progress
    }

    fn last_step_learning_rate(&self) -> Option<f64> {
        self.rt.last_step_lr
    }

    fn remove_file(&mut self, path: &Path) -> Result<()> {
        self.rt.pending_removals.push(path.to_path_buf());
        Ok(())
    }

    fn request_backup(&mut self, path: &Path) -> Result<()> {
        self.rt.pending_backup = Some(path.to_path_buf());
        Ok(())
    }

    fn emit(&mut self, message: Message) {
        match message {
            Message::Warning(text) => eprintln!("warning: {text}"),
            Message::Info(text) => {
                if !self.rt.quiet {
                    println!("{text}")
                }
            }
        }
    }
}
