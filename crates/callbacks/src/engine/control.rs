//! [`LoopControl`]: the [`TrainingControl`] a hook's `Context` wraps, over
//! the loop's [`LoopState`].

use std::path::Path;

use burn::train::LearnerModel;
use burn::train::TrainStep;
use burnfit_core::{
    CallbackError, Message, ModelSnapshot, Progress, Result, SaveContent, TrainEnd,
    TrainingControl, TrainingSnapshot,
};

use super::backup;
use super::capture::TrainingRecords;
use super::multi_device::mix;
use super::params::{detached, snapshot_of, sync_running_states};
use super::state::LoopState;
use super::weights::encode_module_record;

/// What a hook can do to the running training.
pub(crate) struct LoopControl<'a, M: LearnerModel> {
    pub state: &'a mut LoopState<M>,
}

/// Salt of the BatchNorm pass's random stream, so that it differs from
/// every training step's.
const BATCH_NORM_PASS_SALT: u64 = 0xB47C_4A0E_5EED;

impl<M: LearnerModel> TrainingControl for LoopControl<'_, M> {
    fn request_stop(&mut self, reason: String) {
        if self.state.stop_reason.is_none() {
            self.state.stop_reason = Some(reason);
        }
    }

    fn stop_requested(&self) -> bool {
        self.state.should_stop()
    }

    fn cancel_stop(&mut self) {
        self.state.stop_reason = None;
    }

    fn learning_rate(&self) -> Option<f64> {
        match &self.state.lr {
            Some(lr) => Some(lr.peek()),
            None => self.state.last_step_lr,
        }
    }

    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match &self.state.lr {
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
        snapshot_of(detached(&self.state.learner.model()))
    }

    fn current_model(&self) -> ModelSnapshot {
        // A clone: the same devices (gradient checkpointing included).
        snapshot_of(self.state.learner.model())
    }

    fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()> {
        let model = snapshot.downcast::<M>().map_err(|_| {
            CallbackError::Unsupported(
                "restore_model: the snapshot holds another model type".into(),
            )
        })?;
        // A step's update still waiting per thread would be folded in over
        // the restored statistics at the next sync: fold it in first.
        sync_running_states(&self.state.learner.model());
        self.state.learner.load_model(model.into_record());
        Ok(())
    }

    fn save_model(&mut self, path: &Path, content: SaveContent) -> Result<()> {
        // A file written now must not be deleted by a removal asked for
        // earlier in the same dispatch.
        self.state.pending_removals.retain(|p| p != path);
        let encode = match content {
            // The record shares the model's tensors (they are immutable), so
            // this is the whole cost on the training thread; reading the
            // values and encoding them happen on the writer thread.
            SaveContent::Weights => encode_module_record(self.state.learner.model().into_record()),
            SaveContent::Full => {
                let states = std::mem::take(&mut self.state.callback_states);
                let models = std::mem::take(&mut self.state.callback_models);
                let file = backup::snapshot(self.state, &states, &models);
                self.state.callback_states = states;
                self.state.callback_models = models;
                let file = file?;
                Box::new(move || Ok(file.to_bytes()))
            }
        };
        self.state.writer.write(path, encode)
    }

    fn remove_file(&mut self, path: &Path) -> Result<()> {
        self.state.pending_removals.push(path.to_path_buf());
        Ok(())
    }

    fn progress(&self) -> Progress {
        self.state.progress
    }

    fn last_step_learning_rate(&self) -> Option<f64> {
        self.state.last_step_lr
    }

    fn train_end(&self) -> Option<TrainEnd> {
        self.state.train_end.clone()
    }

    fn skip_optimizer_step(&mut self) -> Result<()> {
        match &mut self.state.skip_step {
            Some(skip) => {
                *skip = true;
                Ok(())
            }
            None => Err(CallbackError::Unsupported(
                "skip_optimizer_step: only from on_before_optimizer_step".into(),
            )),
        }
    }

    fn snapshot_training(&mut self) -> Result<TrainingSnapshot> {
        let state = &mut *self.state;
        let records = state
            .capture
            .take(&state.learner, &state.store)
            .map_err(|message| CallbackError::Runtime {
                callback: "snapshot_training",
                message,
            })?;
        Ok(TrainingSnapshot::new(records))
    }

    fn restore_training(&mut self, snapshot: &TrainingSnapshot) -> Result<()> {
        let records = snapshot.downcast_ref::<TrainingRecords>().ok_or_else(|| {
            CallbackError::Unsupported(
                "restore_training: the snapshot was not taken by this training loop".into(),
            )
        })?;
        // As in `restore_model`: no update left waiting to overwrite the
        // restored statistics.
        sync_running_states(&self.state.learner.model());
        backup::load_records(&mut self.state.learner, records)
    }

    fn update_batch_norm(&mut self) -> Result<()> {
        let Some(loader) = &self.state.train_loader else {
            return Err(CallbackError::Unsupported(
                "update_batch_norm: this loop has no training data at hand".into(),
            ));
        };
        // A forward (and backward) pass in training mode updates every
        // BatchNorm's running statistics in place; the gradients are
        // dropped, so no weight changes.
        let model = self.state.learner.model();
        // Its dropout masks change the statistics. A seeded run draws them
        // from a stream of the pass's own, (seed, step), and reseeds Burn's
        // generator with it (for models that draw from that one): never
        // from where the training steps left Burn's process-wide generator,
        // which after a step on several devices is wherever the worker
        // that seeded it last left it.
        let stream = self
            .state
            .seed
            .map(|seed| mix(seed, BATCH_NORM_PASS_SALT ^ self.state.progress.global_step));
        if let (Some(seed), Some(device)) = (stream, model.devices().first()) {
            device.seed(seed);
        }
        burnfit_core::random::with_stream(stream, || {
            for item in loader.iter() {
                let item = item.map_err(|e| CallbackError::Runtime {
                    callback: "update_batch_norm",
                    message: e.to_string(),
                })?;
                drop(TrainStep::step(&model, item));
            }
            Ok(())
        })
    }

    fn request_backup(&mut self, path: &Path) -> Result<()> {
        self.state.pending_backup = Some(path.to_path_buf());
        Ok(())
    }

    fn emit(&mut self, message: Message) {
        match message {
            Message::Warning(text) => log::warn!("{text}"),
            Message::Info(text) if self.state.quiet => drop(text),
            Message::Info(text) if self.state.print_info => println!("{text}"),
            Message::Info(text) => log::info!("{text}"),
        }
    }
}
