//! [`ProcessLedger`]: the processes that trained a run, kept in its
//! backups, so that the `summary.json` of a resumed run covers the whole
//! run (the training time and backend of each process), not only the
//! process that finished it.
//!
//! Invariant: a backup's ledger describes the run up to that backup, and
//! no further: the resume that continues from it adds itself after the
//! processes it lists.

use std::path::Path;
use std::time::Instant;

use burnfit_callbacks::checkpoint_file::CheckpointFile;
use burnfit_callbacks::engine::sections;
use burnfit_callbacks::error::{state_from_json, state_to_json};
use burnfit_callbacks::{Callback, Context, Result};

use super::ResumePlan;
use crate::backend::{ChosenBackend, Devices};
use crate::run_dir::ProcessRecord;
use crate::shuffle::resident_mib;

/// The ledger's name: the key of its state in a backup.
const NAME: &str = "ProcessLedger";

/// Keeps, in every backup, the processes that trained the run so far: the
/// earlier ones (given back by the backup this process resumed from), then
/// this one, with its training time up to that backup.
pub struct ProcessLedger {
    this: ProcessRecord,
    earlier: Vec<ProcessRecord>,
    began: Option<Instant>,
}

/// This process's record before training: its backend, devices and the
/// epoch it starts in (its time and memory are measured as it trains).
pub fn this_process(
    backend: &ChosenBackend,
    devices: &Devices,
    resume: Option<&ResumePlan>,
) -> ProcessRecord {
    ProcessRecord {
        backend: backend.name.to_string(),
        backend_reason: backend.reason.clone(),
        devices: devices.names(),
        first_epoch: resume.map_or(0, ResumePlan::first_epoch),
        training_time_s: 0.0,
        peak_rss_mib: None,
    }
}

impl ProcessLedger {
    /// The ledger of the process `this` ([`this_process`]).
    pub fn new(this: ProcessRecord) -> Self {
        Self {
            this,
            earlier: Vec::new(),
            began: None,
        }
    }

    /// This process as it stands now.
    fn now(&self) -> ProcessRecord {
        ProcessRecord {
            training_time_s: self.began.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            peak_rss_mib: resident_mib().map(|(_, peak)| peak),
            ..self.this.clone()
        }
    }
}

impl Callback for ProcessLedger {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.began = Some(Instant::now());
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        let mut all = self.earlier.clone();
        all.push(self.now());
        state_to_json(&all)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.earlier = state_from_json(state)?;
        Ok(())
    }
}

/// The processes the ledger in `backup` lists: those that trained the run
/// up to it. None when the backup has no ledger (a burnfit without one
/// wrote it) or cannot be read (the resume reports that itself).
pub fn earlier_processes(backup: &Path) -> Vec<ProcessRecord> {
    let Ok(file) = CheckpointFile::load(backup) else {
        return Vec::new();
    };
    file.section(sections::CALLBACKS)
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).ok()
        })
        .and_then(|mut states| states.remove(NAME))
        .and_then(|state| serde_json::from_value(state).ok())
        .unwrap_or_default()
}
