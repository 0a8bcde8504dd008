//! Full-state snapshots through Burn's public checkpoint API.
//!
//! Burn's `Learner` keeps its optimizer and scheduler private; the one public
//! way to get their records is `LearningCheckpointer::checkpoint`, which hands
//! them to `Checkpointer`s. [`StateCapture`] plugs three capturing
//! checkpointers into it, so the engine can take a full training state
//! (model + optimizer + scheduler) whenever a callback asks. Backups are put
//! back with the `Learner`'s own `load_*` methods (`backup::restore`).

use std::sync::{Arc, Condvar, Mutex};

use burn::store::ModuleRecord;
use burn::train::checkpoint::{
    AsyncCheckpointer, Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction,
    CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use burn::train::{Learner, LearnerModel, LearningCheckpointer};

/// The three records of a training state, as bytes (burnpack).
#[derive(Clone, Debug, Default)]
pub(crate) struct TrainingRecords {
    /// The model's parameters.
    pub(crate) model: Vec<u8>,
    /// The optimizer's state.
    pub(crate) optimizer: Vec<u8>,
    /// The learning-rate scheduler's state.
    pub(crate) scheduler: Vec<u8>,
}

#[derive(Default)]
struct Slots {
    parts: [Option<Vec<u8>>; 3],
    error: Option<String>,
}

type Shared = Arc<(Mutex<Slots>, Condvar)>;

struct CaptureOne {
    index: usize,
    shared: Shared,
}

impl<R: Checkpoint> Checkpointer<R> for CaptureOne {
    fn save(&self, _epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let (lock, cvar) = &*self.shared;
        let bytes = record.checkpoint_into_bytes();
        let mut slots = lock.lock().expect("capture lock");
        match bytes {
            Ok(bytes) => slots.parts[self.index] = Some(bytes.to_vec()),
            Err(e) => {
                slots.error = Some(e.to_string());
                slots.parts[self.index] = Some(Vec::new());
            }
        }
        cvar.notify_all();
        Ok(())
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, _epoch: usize) -> Result<R, CheckpointerError> {
        // Backups are loaded from their file (`backup::restore`), never
        // through Burn's checkpointer.
        Err(CheckpointerError::Unknown(
            "the state capture only takes records".into(),
        ))
    }
}

struct AlwaysSave;

impl CheckpointingStrategy for AlwaysSave {
    fn checkpointing(
        &mut self,
        _epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

/// Takes full training states of a `Learner<M>`.
pub(crate) struct StateCapture<M: LearnerModel> {
    checkpointer: LearningCheckpointer<M>,
    shared: Shared,
}

impl<M: LearnerModel> StateCapture<M> {
    /// A capture with its three background checkpointer threads.
    pub(crate) fn new() -> Self {
        let shared: Shared = Arc::new((Mutex::new(Slots::default()), Condvar::new()));
        let one = |index| CaptureOne {
            index,
            shared: shared.clone(),
        };
        let checkpointer = LearningCheckpointer::new(
            AsyncCheckpointer::<ModuleRecord>::new(one(0)),
            AsyncCheckpointer::new(one(1)),
            AsyncCheckpointer::new(one(2)),
            Box::new(AlwaysSave),
        );
        Self {
            checkpointer,
            shared,
        }
    }

    /// The learner's model, optimizer and scheduler records.
    pub(crate) fn take(
        &mut self,
        learner: &Learner<M>,
        store: &EventStoreClient,
    ) -> Result<TrainingRecords, String> {
        {
            let (lock, _) = &*self.shared;
            let mut slots = lock.lock().expect("capture lock");
            slots.parts = [None, None, None];
            slots.error = None;
        }
        self.checkpointer.checkpoint(learner, 0, store);
        let (lock, cvar) = &*self.shared;
        let mut slots = cvar
            .wait_while(lock.lock().expect("capture lock"), |s| {
                s.parts.iter().any(|p| p.is_none())
            })
            .expect("capture lock");
        if let Some(error) = slots.error.take() {
            return Err(error);
        }
        let [model, optimizer, scheduler] = std::mem::take(&mut slots.parts);
        Ok(TrainingRecords {
            model: model.unwrap_or_default(),
            optimizer: optimizer.unwrap_or_default(),
            scheduler: scheduler.unwrap_or_default(),
        })
    }
}
