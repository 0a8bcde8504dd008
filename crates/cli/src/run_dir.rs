//! The run directory: layout, resolved config, summary.json.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{CliError, CliResult};

/// Paths inside a run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The directory itself.
    pub root: PathBuf,
}

impl RunDir {
    /// `runs/<name>-<timestamp>/`, or `explicit` when given.
    pub fn choose(name: &str, explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from("runs").join(format!("{name}-{}", timestamp(now)))
            }
        }
    }

    /// What `root` holds now, its backups looked for in `backup_dir`
    /// (nothing is created or changed).
    pub fn inspect(root: &Path, backup_dir: &Path) -> RunState {
        let Ok(entries) = std::fs::read_dir(root) else {
            return RunState::Absent;
        };
        let run = Self {
            root: root.to_path_buf(),
        };
        if !run.config().is_file() {
            // Empty, or only the skeleton a process that died before
            // writing config.toml left: the lock and empty sub-directories.
            let skeleton = entries.flatten().all(|entry| {
                let name = entry.file_name();
                name == ".lock"
                    || (entry.file_type().is_ok_and(|t| t.is_dir())
                        && std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none()))
            });
            return if skeleton {
                RunState::Empty
            } else {
                RunState::Foreign
            };
        }
        if run.summary().is_file() {
            return RunState::Finished;
        }
        let backup = newest_backup(backup_dir);
        RunState::Unfinished { backup }
    }

    /// Creates the directory and its sub-directories, and locks it for this
    /// process: a second `burnfit` on the same directory is refused until
    /// this one exits (however it exits: the lock is the operating system's).
    pub fn create_locked(root: PathBuf) -> CliResult<(Self, RunLock)> {
        for sub in ["", "checkpoints", "plots"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                CliError::usage(format!(
                    "{}: cannot create the run directory: {e}",
                    dir.display()
                ))
            })?;
        }
        let run = Self { root };
        let lock = run.lock()?;
        Ok((run, lock))
    }

    /// Fails if another process holds this directory's lock (checked before
    /// anything else, so that message wins over any other).
    pub fn check_unlocked(root: &Path) -> CliResult<()> {
        if root.join(".lock").is_file() {
            drop(
                Self {
                    root: root.to_path_buf(),
                }
                .lock()?,
            );
        }
        Ok(())
    }

    /// Takes this directory's lock (`.lock`).
    pub fn lock(&self) -> CliResult<RunLock> {
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                CliError::usage(format!("{}: cannot lock the run: {e}", path.display()))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(CliError::usage(format!(
                "{}: another burnfit process is using this run directory; wait for it to end \
                 or choose another --run-dir",
                self.root.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(CliError::usage(format!(
                "{}: cannot lock the run: {e}",
                path.display()
            ))),
        }
    }

    /// Removes the temporary files interrupted writes left anywhere in the
    /// run (`.tmp-*`: never a file the user or a finished write owns).
    pub fn remove_temporary_files(&self) {
        fn sweep(dir: &Path) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    sweep(&path);
                } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        sweep(&self.root);
    }

    /// Opens an existing run directory.
    pub fn open(root: &Path) -> CliResult<Self> {
        if !root.join("config.toml").is_file() {
            return Err(CliError::usage(format!(
                "{}: not a burnfit run directory (no config.toml); pass the directory `burnfit train` created",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// `config.toml`: the resolved config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `history.csv`.
    pub fn history(&self) -> PathBuf {
        self.root.join("history.csv")
    }
    /// `tensorboard/`.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tensorboard")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/best.bpk`.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("best.bpk")
    }
    /// `checkpoints/last.bpk`.
    pub fn last_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("last.bpk")
    }
    /// `checkpoints/final.bpk`: the weights training ended with, when weight
    /// averaging (EMA, SWA) put an average into the model after the last
    /// epoch's checkpoint.
    pub fn final_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("final.bpk")
    }
    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// `resumes.json`: every `--resume` of the run.
    pub fn resumes(&self) -> PathBuf {
        self.root.join("resumes.json")
    }
    /// `burn/`: Burn's own training directory (its logs).
    pub fn burn(&self) -> PathBuf {
        self.root.join("burn")
    }

    /// Writes the resolved config.
    pub fn write_config(&self, config: &Config) -> CliResult<()> {
        let text = toml::to_string_pretty(config)
            .map_err(|e| CliError::failed(format!("cannot serialise the config: {e}")))?;
        write(&self.config(), text.as_bytes())
    }

    /// Reads the resolved config back.
    pub fn read_config(&self) -> CliResult<Config> {
        Config::load(&self.config(), &[])
    }

    /// Writes summary.json.
    pub fn write_summary(&self, summary: &Summary) -> CliResult<()> {
        let text = serde_json::to_vec_pretty(summary).expect("summary serialises");
        write(&self.summary(), &text)
    }

    /// The resumes recorded so far.
    pub fn read_resumes(&self) -> Vec<ResumeRecord> {
        std::fs::read(self.resumes())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Appends a resume to `resumes.json`.
    pub fn record_resume(&self, record: ResumeRecord) -> CliResult<()> {
        let mut all = self.read_resumes();
        all.push(record);
        write(
            &self.resumes(),
            &serde_json::to_vec_pretty(&all).expect("resumes serialise"),
        )
    }

    /// Reads summary.json.
    pub fn read_summary(&self) -> CliResult<Summary> {
        let bytes = std::fs::read(self.summary())
            .map_err(|e| CliError::usage(format!("{}: {e}", self.summary().display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::usage(format!("{}: {e}", self.summary().display())))
    }
}

fn write(path: &Path, bytes: &[u8]) -> CliResult<()> {
    burnfit_callbacks::atomic::write_atomic(path, bytes).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot write: {} (is the disk full or read-only?)",
            path.display(),
            io_reason(&e)
        ))
    })
}

/// The reason of a write error without the temporary file's name.
pub fn io_reason(error: &burnfit_callbacks::CallbackError) -> String {
    match error {
        burnfit_callbacks::CallbackError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The newest backup in `dir` that passes its checksum, if any.
pub fn newest_backup(dir: &Path) -> Option<PathBuf> {
    burnfit_callbacks::builtins::BackupAndRestore::backups(dir)
        .into_iter()
        .find(|path| burnfit_callbacks::checkpoint_file::CheckpointFile::load(path).is_ok())
}

/// What a directory holds, as `train` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Nothing there yet.
    Absent,
    /// An empty directory.
    Empty,
    /// Files that are not a burnfit run (no `config.toml`).
    Foreign,
    /// A burnfit run that finished (`summary.json`).
    Finished,
    /// A burnfit run that did not finish, with its newest good backup.
    Unfinished {
        /// The backup to resume from, if one was written.
        backup: Option<PathBuf>,
    },
}

/// Holds a run directory's lock until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// One `--resume` of a run, as recorded in `resumes.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ResumeRecord {
    /// The backup it continued from.
    pub backup: PathBuf,
    /// The 0-based epoch it continued in.
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batches_done: usize,
    /// Whether that epoch had ended (the resume starts the next one).
    #[serde(default)]
    pub epoch_ended: bool,
    /// Training batches per epoch, when known.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// Optimizer steps taken before.
    pub global_step: u64,
    /// Config changes accepted with `--force` (`key: old -> new`).
    #[serde(default)]
    pub forced_changes: Vec<String>,
}

/// `summary.json`: what a run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// Backend and why.
    pub backend: String,
    /// Why the backend was chosen.
    pub backend_reason: String,
    /// The devices it trained on (`["flex"]`, `["wgpu:0", "wgpu:1"]`).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Epochs completed.
    pub epochs_run: usize,
    /// Epochs asked for.
    pub epochs_planned: usize,
    /// Why training ended early, if it did.
    pub stop_reason: Option<String>,
    /// The last epoch's logs.
    pub final_metrics: std::collections::BTreeMap<String, f64>,
    /// The metric followed for "best".
    pub monitor: String,
    /// The best value of `monitor`.
    pub best_value: Option<f64>,
    /// The 0-based epoch of the best value.
    pub best_epoch: Option<usize>,
    /// Wall-clock seconds.
    pub wall_time_s: f64,
    /// Training samples per second (training time only, validation excluded).
    pub train_samples_per_s: f64,
    /// Optimizer steps.
    pub global_step: u64,
    /// Error that ended training, if any.
    pub error: Option<String>,
    /// Resident memory (MiB) at the end of each epoch of this process.
    #[serde(default)]
    pub rss_mib_by_epoch: Vec<f64>,
    /// Peak resident memory (MiB) of this process.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Every `--resume` of the run, with the changes `--force` accepted.
    #[serde(default)]
    pub resumes: Vec<ResumeRecord>,
}

fn timestamp(secs: u64) -> String {
    // UTC, YYYYmmdd-HHMMSS, from days since the epoch (civil-from-days).
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_is_utc_civil_time() {
        assert_eq!(super::timestamp(0), "19700101-000000");
        assert_eq!(super::timestamp(1_795_541_542), "20261124-173222");
    }
}
