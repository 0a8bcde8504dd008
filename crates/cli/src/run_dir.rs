//! The run directory: layout, resolved config, summary.json.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use burnfit_callbacks::builtins::CallbackConfig;

use crate::config::Config;
use crate::error::{CliError, CliResult};

/// Paths inside a run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The directory itself.
    pub root: PathBuf,
}

impl RunDir {
    /// `runs/<name>-<timestamp>/` (with `-2`, `-3`, … after it when a run
    /// of the same second already has that name), or `explicit` when given.
    pub fn choose(name: &str, explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                unused_name(Path::new("runs"), name, now)
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
        if root.exists() && !root.is_dir() {
            return Err(CliError::usage(format!(
                "{}: a file, not a directory: choose another --run-dir (the file is left as it is)",
                root.display()
            )));
        }
        // `plots/` is made by the plots themselves, so a run without them
        // (`outputs.plots` or `outputs.csv` off) has none.
        for sub in ["", "checkpoints"] {
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

    /// Like [`RunDir::check_unlocked`], and, holding the lock for the
    /// moment, removes the temporary files (`.tmp-*`) that writes a kill or
    /// a full disk interrupted left in the run and in `others` (its backup
    /// directory, which may lie outside it): garbage that no process is
    /// writing, since none holds the lock. A directory without `.lock` is
    /// not touched.
    pub fn sweep_unlocked(root: &Path, others: &[&Path]) -> CliResult<()> {
        if !root.join(".lock").is_file() {
            return Ok(());
        }
        let run = Self {
            root: root.to_path_buf(),
        };
        let _lock = run.lock()?;
        run.remove_temporary_files();
        for dir in others {
            remove_temporary_files_in(dir);
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
        remove_temporary_files_in(&self.root);
    }

    /// Moves the files a run's first attempt wrote (its logs, checkpoints,
    /// plots, Burn's directory, and whatever is in its backup directory:
    /// no usable backup) into `restart-N/`, so that `--resume` can start a
    /// run that never wrote a usable backup again from its `config.toml`
    /// without mixing two attempts in one log, and without deleting
    /// anything. Returns the directory they went to.
    pub fn set_aside_attempt(&self, backup_dir: &Path) -> CliResult<PathBuf> {
        let aside = (1..)
            .map(|n| self.root.join(format!("restart-{n}")))
            .find(|p| !p.exists())
            .expect("a free name");
        let cannot = |path: &Path, e: std::io::Error| {
            CliError::usage(format!(
                "{}: cannot move aside: {e} (is the disk full or read-only?)",
                path.display()
            ))
        };
        std::fs::create_dir(&aside).map_err(|e| cannot(&aside, e))?;
        let owned = [
            self.history(),
            self.tensorboard(),
            self.checkpoints(),
            self.plots(),
            self.burn(),
            self.ended(),
        ];
        let backups = (backup_dir.starts_with(&self.root) && backup_dir != self.root)
            .then(|| backup_dir.to_path_buf());
        for path in owned.iter().chain(backups.iter()) {
            if path.exists() {
                let to = aside.join(path.file_name().expect("a file name"));
                std::fs::rename(path, &to).map_err(|e| cannot(path, e))?;
            }
        }
        let checkpoints = self.checkpoints();
        std::fs::create_dir_all(&checkpoints).map_err(|e| cannot(&checkpoints, e))?;
        Ok(aside)
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

    /// The command that continues this run from its config and backups
    /// (`burnfit train RUN/config.toml --run-dir RUN --resume`), each path
    /// quoted for a shell where it needs it.
    pub fn resume_command(&self) -> String {
        format!(
            "{} train {} --run-dir {} --resume",
            crate::program(),
            crate::shell_word(&self.config().display().to_string()),
            crate::shell_word(&self.root.display().to_string())
        )
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
    /// `checkpoints/averaged.bpk`: the mean of the best checkpoints'
    /// weights (`burnfit average`).
    pub fn averaged_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("averaged.bpk")
    }
    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// `ended.json`: the summary of a run whose training ended, written
    /// before `summary.json` (and removed after it): a run killed while its
    /// end files were written is finished by `--resume` from it, without
    /// training.
    pub fn ended(&self) -> PathBuf {
        self.root.join("ended.json")
    }
    /// `resumes.json`: every `--resume` of the run.
    pub fn resumes(&self) -> PathBuf {
        self.root.join("resumes.json")
    }
    /// `burn/`: the directory Burn's `SupervisedTraining` requires. Burn
    /// writes there only the files a task turns on itself in
    /// `register_metrics` (Burn's checkpointers, an application log): the
    /// callback engine takes the place of Burn's
    /// file metric logger and `fit` turns Burn's log off, so burnfit's own
    /// tasks never create it. Kept out of callbacks' paths and moved aside
    /// by a restart for the tasks that do.
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

    /// Writes `ended.json`: training ended, and this is its summary.
    pub fn write_ended(&self, summary: &Summary) -> CliResult<()> {
        let text = serde_json::to_vec_pretty(summary).expect("summary serialises");
        write(&self.ended(), &text)
    }

    /// The summary `ended.json` holds, when training ended but the run's
    /// end files were not all written.
    pub fn read_ended(&self) -> Option<Summary> {
        let bytes = std::fs::read(self.ended()).ok()?;
        serde_json::from_slice(&bytes).ok()
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

/// One file (or log directory) some part of the run writes.
struct Writer {
    /// The config key that names it (`callbacks[1].filename`), or what
    /// writes it when it is the run's own file.
    key: String,
    /// How to name it in a message when another writer collides with it.
    what: String,
    /// Where, relative to the run unless absolute, made absolute and
    /// normalised.
    path: PathBuf,
    /// A directory of files (TensorBoard's logs, backups), not one file.
    dir: bool,
}

/// A callback path that a run-directory check refuses: the key that gives
/// it (`callbacks[2].filename`) and the message, which names the key and
/// its value; [`Config::at_origin`] adds where the value came from.
#[derive(Debug)]
pub struct PathRefused {
    /// The key of the refused path.
    pub key: String,
    /// What is wrong and what to do, naming the key.
    pub message: String,
}

impl PathRefused {
    fn at(key: &str, message: String) -> Self {
        Self {
            key: key.to_string(),
            message,
        }
    }
}

/// Checks that no two writers aim at the same file: a callback of the
/// config against the run's own files (`history.csv`, `tensorboard/`, the
/// checkpoints, the backups, `summary.json`, …) or against another
/// callback. Two writers on one file interleave or overwrite each other
/// (a CSVLogger on `history.csv` beside the run's own log: after a resume
/// its epochs read `0,1,2,3,3,4,4,5,5`). Returns the message naming the
/// key; creates nothing.
///
/// GradientNormMonitor is not a writer here: it adds its own scalars to a
/// TensorBoard directory (by default the run's), as designed.
pub fn check_one_writer_per_file(config: &Config, root: &Path) -> Result<(), PathRefused> {
    let base = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let at = |path: &Path| normalise(&base.join(path));
    let mut writers = own_writers(config, &at);
    for (index, callback) in config.callbacks.iter().enumerate() {
        let Some((field, path)) = callback_output(callback) else {
            continue;
        };
        let key = format!("callbacks[{index}].{field}");
        let at_path = at(&path);
        let dir = writes_a_directory(callback);
        if base.starts_with(&at_path) {
            return Err(PathRefused::at(
                &key,
                format!(
                    "{key} = \"{}\": names the run directory itself (or a directory above it); \
                 give this {} a {field} of its own",
                    path.display(),
                    callback.type_name(),
                ),
            ));
        }
        let inside_a_file = writers.iter().find(|w| {
            (!w.dir && at_path.starts_with(&w.path) && at_path != w.path)
                || (!dir && w.path.starts_with(&at_path) && at_path != w.path)
        });
        if let Some(old) = inside_a_file {
            return Err(PathRefused::at(
                &key,
                format!(
                    "{key} = \"{}\": {} is at {}, and one of the two would have to be a \
                 directory holding the other; give this {} another {field}",
                    path.display(),
                    old.what,
                    old.path.display(),
                    callback.type_name(),
                ),
            ));
        }
        if let Some(old) = writers.iter().find(|w| w.path == at_path) {
            let hint = if old.key.starts_with("outputs.") {
                format!(", or set {} = false", old.key)
            } else {
                String::new()
            };
            return Err(PathRefused::at(
                &key,
                format!(
                    "{key} = \"{}\": {} writes there too, and two writers on one file corrupt it; \
                 give this {} another {field}{hint}",
                    path.display(),
                    old.what,
                    callback.type_name(),
                ),
            ));
        }
        writers.push(Writer {
            what: format!("{key} ({})", callback.type_name()),
            path: at_path,
            key,
            dir,
        });
    }
    Ok(())
}

/// The files and directories the run itself writes under `config`.
fn own_writers(config: &Config, at: &dyn Fn(&Path) -> PathBuf) -> Vec<Writer> {
    let outputs = &config.outputs;
    let own_backups = !config
        .callbacks
        .iter()
        .any(|c| matches!(c, CallbackConfig::BackupAndRestore(_)));
    let switched: [(&str, bool, &[&str], &str); 4] = [
        (
            "outputs.csv",
            outputs.csv,
            &["history.csv"],
            "the run's own CSV log",
        ),
        (
            "outputs.tensorboard",
            outputs.tensorboard,
            &["tensorboard"],
            "the run's own TensorBoard logs",
        ),
        (
            "outputs.checkpoint",
            outputs.checkpoint,
            &["checkpoints/best.bpk", "checkpoints/last.bpk"],
            "the run's own checkpoint",
        ),
        ("backup", own_backups, &["backup"], "the run's own backups"),
    ];
    let always = [
        "config.toml",
        "config.original.toml",
        "summary.json",
        "ended.json",
        "resumes.json",
        "checkpoints/final.bpk",
        "checkpoints/averaged.bpk",
        "plots",
        "burn",
        ".lock",
    ];
    let mut writers = Vec::new();
    for (key, on, paths, what) in switched {
        for path in paths.iter().filter(|_| on) {
            writers.push(Writer {
                key: key.to_string(),
                what: format!("{what} ({path})"),
                path: at(Path::new(path)),
                dir: OWN_DIRECTORIES.contains(path),
            });
        }
    }
    for path in always {
        writers.push(Writer {
            key: path.to_string(),
            what: format!("the run's own {path}"),
            path: at(Path::new(path)),
            dir: OWN_DIRECTORIES.contains(&path),
        });
    }
    writers
}

/// The run's own writers that are directories of files.
const OWN_DIRECTORIES: [&str; 4] = ["tensorboard", "backup", "plots", "burn"];

/// Whether `callback`'s output ([`callback_output`]) is a directory of
/// files rather than one file.
fn writes_a_directory(callback: &CallbackConfig) -> bool {
    matches!(
        callback,
        CallbackConfig::TensorBoard(_) | CallbackConfig::BackupAndRestore(_)
    )
}

/// Checks, for a run that starts (not a `--resume`), that no callback
/// writes over something the user already has outside the run directory
/// `root`: a file a CSVLogger (unless it appends), ModelCheckpoint or
/// OnExceptionCheckpoint would overwrite, or a `backup_dir` that holds files already (a new run
/// would resume from another run's backups, or delete them). Inside the
/// run directory everything is the run's own. Returns the message naming
/// the key; creates nothing.
pub fn check_outputs_outside_are_new(config: &Config, root: &Path) -> Result<(), PathRefused> {
    let base = normalise(&std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
    for (index, callback) in config.callbacks.iter().enumerate() {
        let Some((field, path)) = callback_output(callback) else {
            continue;
        };
        let at_path = normalise(&base.join(&path));
        if at_path.starts_with(&base) {
            continue;
        }
        let key = format!("callbacks[{index}].{field}");
        let shown = path.display();
        if writes_a_directory(callback) {
            let holds_files = std::fs::read_dir(&at_path).is_ok_and(|mut d| d.next().is_some());
            if matches!(callback, CallbackConfig::BackupAndRestore(_)) && holds_files {
                return Err(PathRefused::at(
                    &key,
                    format!(
                        "{key} = \"{shown}\": the directory holds files already (another run's \
                     backups?), which a new run would resume from or delete; give it a new or \
                     empty backup_dir, or continue that run with --run-dir ITS_RUN --resume"
                    ),
                ));
            }
        } else if at_path.exists() && !matches!(callback, CallbackConfig::CSVLogger(c) if c.append)
        {
            return Err(PathRefused::at(
                &key,
                format!(
                    "{key} = \"{shown}\": the file exists outside the run directory, and this {} \
                 would overwrite it; give a {field} that does not exist yet (or one inside the \
                 run directory)",
                    callback.type_name(),
                ),
            ));
        }
    }
    Ok(())
}

/// The file or directory a configured callback writes, with the key that
/// names it; `None` for callbacks that write no file of their own.
fn callback_output(callback: &CallbackConfig) -> Option<(&'static str, PathBuf)> {
    Some(match callback {
        CallbackConfig::CSVLogger(c) => ("filename", c.filename.clone()),
        CallbackConfig::ModelCheckpoint(c) => ("filepath", PathBuf::from(&c.filepath)),
        CallbackConfig::TensorBoard(c) => ("log_dir", c.log_dir.clone()),
        CallbackConfig::BackupAndRestore(c) => ("backup_dir", PathBuf::from(&c.backup_dir)),
        CallbackConfig::OnExceptionCheckpoint(c) => {
            ("dirpath", c.dirpath.join(format!("{}.ckpt", c.filename)))
        }
        _ => return None,
    })
}

/// `path` without `.` components and with `..` applied (lexically: links
/// are not followed).
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Removes the temporary files of interrupted atomic writes (`.tmp-*`:
/// never a file the user or a finished write owns) in `dir` and below.
fn remove_temporary_files_in(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_temporary_files_in(&path);
        } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(&path);
        }
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
    /// Training had ended: this resume only wrote the end files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_files_only: bool,
    /// The run had no usable backup: this resume started it again from
    /// its config (the first attempt's files are in `restart-N/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
}

/// One process that trained a run: a run resumed with `--resume` has
/// several.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessRecord {
    /// Its backend.
    pub backend: String,
    /// Why that backend was chosen.
    pub backend_reason: String,
    /// Its devices.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The 0-based epoch it started in.
    pub first_epoch: usize,
    /// Seconds of its training loop: up to the backup the next process
    /// continued from (what it trained after that backup was trained
    /// again), or to the end of training.
    pub training_time_s: f64,
    /// Its peak resident memory (MiB), when known.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// `summary.json`: what a run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// The backend of the process that finished the run (`processes` has
    /// every process's).
    pub backend: String,
    /// Why that backend was chosen.
    pub backend_reason: String,
    /// Burn's name for the stack that ran on the first device
    /// (`dispatch<fusion<cubecl<…>>>` on wgpu, `dispatch<flex>`).
    #[serde(default)]
    pub burn_backend: String,
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
    /// Wall-clock seconds of the run's training loop: its epochs with their
    /// validation and callbacks, not the start-up nor the train-end hooks'
    /// closing work (a tracker's last uploads). A resumed run adds its
    /// earlier processes' (`processes`).
    pub wall_time_s: f64,
    /// Training samples per second of `wall_time_s` (its validation
    /// included).
    pub train_samples_per_s: f64,
    /// Optimizer steps.
    pub global_step: u64,
    /// Error that ended training, if any.
    pub error: Option<String>,
    /// Resident memory (MiB) at the end of each epoch of the run, read by
    /// the process that ran the epoch.
    #[serde(default)]
    pub rss_mib_by_epoch: Vec<f64>,
    /// Peak resident memory (MiB) of the run's processes.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Every process that trained the run, in order: one, or more when
    /// `--resume` continued it (each with its backend and training time).
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    /// Every `--resume` of the run, with the changes `--force` accepted.
    #[serde(default)]
    pub resumes: Vec<ResumeRecord>,
}

/// `runs/<name>-<timestamp of now>`, or the first of `-2`, `-3`, … after
/// it that nothing in `runs` has.
fn unused_name(runs: &Path, name: &str, now: u64) -> PathBuf {
    let base = format!("{name}-{}", timestamp(now));
    std::iter::once(base.clone())
        .chain((2..).map(|k| format!("{base}-{k}")))
        .map(|candidate| runs.join(candidate))
        .find(|path| !path.exists())
        .expect("an unused name")
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
    fn runs_of_one_second_get_names_of_their_own() {
        let runs = tempfile::tempdir().unwrap();
        let now = 1_795_541_542;
        let first = super::unused_name(runs.path(), "mlp", now);
        assert_eq!(first, runs.path().join("mlp-20261124-173222"));
        std::fs::create_dir(&first).unwrap();
        let second = super::unused_name(runs.path(), "mlp", now);
        assert_eq!(second, runs.path().join("mlp-20261124-173222-2"));
        std::fs::create_dir(&second).unwrap();
        let third = super::unused_name(runs.path(), "mlp", now);
        assert_eq!(third, runs.path().join("mlp-20261124-173222-3"));
        assert_eq!(
            super::unused_name(runs.path(), "mlp", now + 1),
            runs.path().join("mlp-20261124-173223")
        );
    }

    #[test]
    fn timestamp_is_utc_civil_time() {
        assert_eq!(super::timestamp(0), "19700101-000000");
        assert_eq!(super::timestamp(1_795_541_542), "20261124-173222");
    }
}
