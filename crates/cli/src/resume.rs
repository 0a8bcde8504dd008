//! `train --resume`: what may continue, from which backup, with which
//! config changes.
//!
//! A resume continues the run exactly where its newest good backup left
//! it, so the config must describe the same training: the model, data,
//! optimizer, seed and callbacks of the run's own `config.toml`. Changes
//! that do not change a single number (loader workers, backend, terminal
//! output) are accepted; a new learning rate, number of epochs, backend or
//! device list only with `--force`, and recorded in `resumes.json` and
//! `summary.json`; anything else is refused with the differing keys named.
//! A finished run is never retrained.
//!
//! Every run directory can be finished: a run whose training ended but
//! whose end files were not all written (a kill while `summary.json` was
//! written) gets them written, without training; a run that never wrote a
//! usable backup (killed, or a full disk, before its first) starts again
//! from its `config.toml`, the first attempt's files moved to `restart-N/`.

mod ledger;

use std::path::{Path, PathBuf};

use burnfit_callbacks::engine::BackupProgress;

pub use ledger::{ProcessLedger, this_process};

use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::run_dir::{ProcessRecord, ResumeRecord, RunDir, RunState, Summary};

/// Keys a resume may change: they change no number the run computes.
const FREE: &[&str] = &[
    "name",
    "training.workers",
    "outputs.progress",
    "outputs.plots",
];

/// Keys `--force` lets a resume change. Another backend or device list
/// continues correctly, but not bit for bit (kernels sum in other orders).
const FORCIBLE: &[&str] = &[
    "optimizer.lr",
    "training.epochs",
    "training.backend",
    "training.devices",
];

/// What a resume does.
#[derive(Clone, Debug)]
pub enum ResumeKind {
    /// Continue training from the backup.
    Continue,
    /// Training had ended: write the end files from this summary
    /// (`ended.json`), without training.
    EndFiles(Box<Summary>),
    /// No usable backup: start the run again from its config.
    Restart,
}

/// A resume that passed every check.
#[derive(Clone, Debug)]
pub struct ResumePlan {
    /// The backup training continues from.
    pub backup: PathBuf,
    /// Where it stood.
    pub progress: BackupProgress,
    /// The changes `--force` accepted, as `key: old -> new`.
    pub forced_changes: Vec<String>,
    /// What the resume does.
    pub kind: ResumeKind,
    /// The processes that trained the run up to the backup, as its
    /// [`ProcessLedger`] lists them (none for a restart, or a backup
    /// without a ledger).
    pub earlier: Vec<ProcessRecord>,
}

impl ResumePlan {
    /// The record `resumes.json` keeps of it.
    pub fn record(&self) -> ResumeRecord {
        ResumeRecord {
            backup: self.backup.clone(),
            epoch: self.progress.epoch,
            batches_done: self.progress.batches_done,
            epoch_ended: self.progress.epoch_ended,
            steps_per_epoch: self.progress.steps_per_epoch,
            global_step: self.progress.global_step,
            forced_changes: self.forced_changes.clone(),
            end_files_only: matches!(self.kind, ResumeKind::EndFiles(_)),
            restarted: matches!(self.kind, ResumeKind::Restart),
        }
    }

    /// The 0-based epoch training continues in: the backup's, or the
    /// next one when the backup closed its epoch.
    pub fn first_epoch(&self) -> usize {
        self.progress.epoch + usize::from(self.progress.epoch_ended)
    }

    /// The summary to write when training had ended, if it had.
    pub fn end_files(&self) -> Option<&Summary> {
        match &self.kind {
            ResumeKind::EndFiles(summary) => Some(summary),
            _ => None,
        }
    }
}

/// Checks that the run in `root` can be resumed with `config`.
pub fn plan(root: &Path, backup_dir: &Path, config: &Config, force: bool) -> CliResult<ResumePlan> {
    let shown = root.display();
    let backup = match RunDir::inspect(root, backup_dir) {
        RunState::Absent | RunState::Empty => {
            return Err(CliError::usage(format!(
                "--resume: {shown} holds no run to resume; train without --resume to start one"
            )));
        }
        RunState::Foreign => {
            return Err(CliError::usage(format!(
                "--resume: {shown} is not a burnfit run directory (no config.toml)"
            )));
        }
        RunState::Finished => {
            return Err(CliError::usage(format!(
                "--resume: the run in {shown} already finished (summary.json); nothing to \
                 resume, and nothing was changed"
            )));
        }
        RunState::Unfinished { backup } => backup,
    };
    let run = RunDir {
        root: root.to_path_buf(),
    };
    // Too few epochs is refused first: --force cannot help it.
    let ended = run.read_ended();
    let progress = match (&ended, &backup) {
        (None, Some(backup)) => {
            let progress =
                BackupProgress::read(backup).map_err(|e| CliError::usage(e.to_string()))?;
            check_epochs(&run, config, &progress)?;
            Some(progress)
        }
        _ => None,
    };
    let changes = check_changes(&run, config, force)?;
    let forced_changes: Vec<String> = changes
        .iter()
        .filter(|c| FORCIBLE.contains(&c.key.as_str()))
        .map(|c| c.to_string())
        .collect();
    if let Some(summary) = ended {
        // Training ended; only its end files are missing.
        return Ok(ResumePlan {
            backup: backup.unwrap_or_default(),
            progress: progress_at(summary.global_step, summary.epochs_run),
            forced_changes: Vec::new(),
            kind: ResumeKind::EndFiles(Box::new(summary)),
            earlier: Vec::new(),
        });
    }
    let (Some(backup), Some(progress)) = (backup, progress) else {
        return Ok(ResumePlan {
            backup: PathBuf::new(),
            progress: progress_at(0, 0),
            forced_changes,
            kind: ResumeKind::Restart,
            earlier: Vec::new(),
        });
    };
    Ok(ResumePlan {
        earlier: ledger::earlier_processes(&backup),
        backup,
        progress,
        forced_changes,
        kind: ResumeKind::Continue,
    })
}

/// The changes from the run's config to `config`, refused unless every one
/// is free or forced.
fn check_changes(run: &RunDir, config: &Config, force: bool) -> CliResult<Vec<Change>> {
    let old = run.read_config()?;
    let description = config.describe();
    let data_key = description.data_path_key.map(|k| format!("data.{k}"));
    // A model key the config leaves out follows the data, as the run's
    // did: `check_model` compares it once the data is loaded.
    let given = config.given();
    let follows_data =
        |c: &Change| description.data_keys.contains(&c.key) && !given.contains(&c.key);
    let changes: Vec<Change> = differences(&old, config)?
        .into_iter()
        .filter(|c| Some(&c.key) != data_key.as_ref() || !c.is_the_same_path())
        .filter(|c| !follows_data(c))
        .collect();
    let refused: Vec<&Change> = changes
        .iter()
        .filter(|c| !FREE.contains(&c.key.as_str()))
        .filter(|c| !(force && FORCIBLE.contains(&c.key.as_str())))
        .collect();
    if refused.is_empty() {
        return Ok(changes);
    }
    let all_forcible = refused.iter().all(|c| FORCIBLE.contains(&c.key.as_str()));
    let listed = refused
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Err(CliError::usage(format!(
        "--resume: the config differs from the run's ({listed}); resume with the run's own \
         config: {}{}",
        run.resume_command(),
        if all_forcible {
            ", or add --force to continue with the new value"
        } else {
            ""
        }
    )))
}

/// Checks that `config`, its model as it trains on the data loaded
/// ([`crate::task::Loaded::model`]), builds the model of the run in
/// `root`: the keys that follow the data are the run's unless the data
/// changed (a class folder added).
pub fn check_model(root: &Path, config: &Config) -> CliResult<()> {
    let run = RunDir {
        root: root.to_path_buf(),
    };
    let old = run.read_config()?;
    let changed: Vec<String> = differences(&old, config)?
        .into_iter()
        .filter(|c| c.key.starts_with("model."))
        .map(|c| c.to_string())
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "--resume: the data gives the model other sizes than the run's ({}); resume on the \
         run's data (nothing was changed)",
        changed.join("; ")
    )))
}

/// Refuses fewer epochs than the backup completed, and as many unless the
/// run itself asked for exactly that many: then every epoch ran and the
/// kill came before the end files, which the resume writes (the training
/// loop runs no epoch).
fn check_epochs(run: &RunDir, config: &Config, progress: &BackupProgress) -> CliResult<()> {
    let completed = progress.epoch + usize::from(progress.epoch_ended);
    let planned = run.read_config()?.training.epochs;
    let epochs = config.training.epochs;
    if epochs < completed || (epochs == completed && planned != completed) {
        return Err(CliError::usage(format!(
            "training.epochs = {epochs}: the run already completed {completed} epochs; ask for \
             more (with --force) to continue it"
        )));
    }
    Ok(())
}

/// The progress recorded for a resume that does not continue a backup.
fn progress_at(global_step: u64, epochs: usize) -> BackupProgress {
    BackupProgress {
        epoch: epochs.saturating_sub(1),
        epoch_ended: epochs > 0,
        batches_done: 0,
        global_step,
        global_batch: global_step,
        steps_per_epoch: None,
        stopped: None,
    }
}

/// One key whose value differs.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The key path (`optimizer.lr`, `callbacks[0].patience`).
    pub key: String,
    /// Its value in the run (`None`: absent).
    pub old: Option<String>,
    /// Its value now.
    pub new: Option<String>,
}

impl Change {
    /// Whether the two values name one path: a run made before data paths
    /// were stored absolute holds the path relative to its working
    /// directory, which is this one's when it resolves to the new value.
    fn is_the_same_path(&self) -> bool {
        let path = |v: &Option<String>| {
            v.as_deref()
                .and_then(|text| toml::from_str::<toml::Table>(&format!("v = {text}")).ok())
                .and_then(|t| t.get("v")?.as_str().map(std::path::PathBuf::from))
        };
        match (path(&self.old), path(&self.new)) {
            (Some(old), Some(new)) => std::path::absolute(old).is_ok_and(|old| old == new),
            _ => false,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// The keys whose values differ between two configs, in key order. A
/// config that cannot be written as TOML cannot be compared: an error, not
/// "no differences".
pub fn differences(old: &Config, new: &Config) -> CliResult<Vec<Change>> {
    let (old, new) = (flat(old)?, flat(new)?);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| Change {
            key: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect())
}

/// Every key of `config` with its value, as TOML text.
fn flat(config: &impl serde::Serialize) -> CliResult<std::collections::BTreeMap<String, String>> {
    let value = toml::Value::try_from(config).map_err(|e| {
        CliError::failed(format!(
            "--resume: the config cannot be compared with the run's: it does not serialise \
             ({e}); nothing was changed"
        ))
    })?;
    let mut out = std::collections::BTreeMap::new();
    flatten("", &value, &mut out);
    Ok(out)
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut std::collections::BTreeMap<String, String>,
) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        toml::Value::Array(items) if items.iter().all(|v| v.is_table()) && !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        // The config's tables are read by the process's task: burnfit's own.
        crate::task::install(crate::builtin::tasks());
        toml::from_str(&format!(
            "[model]\nkind = \"mlp\"\n[data]\nkind = \"fashion_mnist\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_relative_data_path_is_the_absolute_one_it_resolves_to_here() {
        let text = |p: &str| Some(toml::Value::String(p.into()).to_string());
        let here = std::env::current_dir().unwrap();
        let change = |old: &str, new: &std::path::Path| Change {
            key: "data.dir".into(),
            old: text(old),
            new: text(new.to_str().unwrap()),
        };
        assert!(change("data/x", &here.join("data/x")).is_the_same_path());
        assert!(!change("data/x", &here.join("data/y")).is_the_same_path());
        assert!(!change("data/x", std::path::Path::new("/elsewhere/data/x")).is_the_same_path());
    }

    #[test]
    fn differences_name_every_changed_key() {
        let old = config(
            "[optimizer]\nlr = 1e-3\n[[callbacks]]\ntype = \"EarlyStopping\"\npatience = 2\n",
        );
        let new = config(
            "[optimizer]\nlr = 5e-4\n[training]\nworkers = 4\n[[callbacks]]\ntype = \"EarlyStopping\"\npatience = 3\n",
        );
        let keys: Vec<String> = differences(&old, &new)
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            keys,
            ["callbacks[0].patience", "optimizer.lr", "training.workers"]
        );
        assert!(differences(&old, &old).unwrap().is_empty());
    }

    /// A value TOML cannot hold (a seed past `i64::MAX`) is an error, never
    /// "no differences" (which would let a resume through unchecked).
    #[test]
    fn a_config_that_does_not_serialise_is_an_error_not_no_differences() {
        let mut old = config("[optimizer]\nlr = 1e-3\n");
        let mut new = config("[optimizer]\nlr = 5e-4\n");
        old.training.seed = u64::MAX;
        new.training.seed = u64::MAX;
        let error = differences(&old, &new).unwrap_err();
        assert_eq!(error.code(), 1);
        assert!(error.message().contains("does not serialise"), "{error}");
    }
}
