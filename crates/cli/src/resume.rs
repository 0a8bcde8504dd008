//! `train --resume`: what may continue, from which backup, with which
//! config changes.
//!
//! A resume continues the run exactly where its newest good backup left
//! it, so the config must describe the same training: the model, data,
//! optimizer, seed and callbacks of the run's own `config.toml`. Changes
//! that do not change a single number (loader workers, backend, terminal
//! output) are accepted; a new learning rate or number of epochs only with
//! `--force`, and recorded in `resumes.json` and `summary.json`; anything
//! else is refused with the differing keys named. A finished run, or one
//! with no backup, is never retrained.

use std::path::{Path, PathBuf};

use burnfit_callbacks::engine::BackupProgress;

use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::run_dir::{ResumeRecord, RunDir, RunState};

/// Keys a resume may change: they change no number the run computes.
const FREE: &[&str] = &[
    "name",
    "training.workers",
    "training.backend",
    "outputs.progress",
    "outputs.plots",
];

/// Keys `--force` lets a resume change.
const FORCIBLE: &[&str] = &["optimizer.lr", "training.epochs"];

/// A resume that passed every check.
#[derive(Clone, Debug)]
pub struct ResumePlan {
    /// The backup training continues from.
    pub backup: PathBuf,
    /// Where it stood.
    pub progress: BackupProgress,
    /// The changes `--force` accepted, as `key: old -> new`.
    pub forced_changes: Vec<String>,
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
        RunState::Unfinished { backup: None } => {
            return Err(CliError::usage(format!(
                "--resume: {shown} has no usable backup (the run stopped before its first \
                 backup); start it again without --resume in a new --run-dir"
            )));
        }
        RunState::Unfinished {
            backup: Some(backup),
        } => backup,
    };
    let run = RunDir {
        root: root.to_path_buf(),
    };
    let old = run.read_config()?;
    let changes = differences(&old, config);
    let refused: Vec<&Change> = changes
        .iter()
        .filter(|c| !FREE.contains(&c.key.as_str()))
        .filter(|c| !(force && FORCIBLE.contains(&c.key.as_str())))
        .collect();
    if !refused.is_empty() {
        let all_forcible = refused.iter().all(|c| FORCIBLE.contains(&c.key.as_str()));
        let listed = refused
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CliError::usage(format!(
            "--resume: the config differs from the run's ({listed}); resume with the run's own \
             config: burnfit train {} --run-dir {shown} --resume{}",
            run.config().display(),
            if all_forcible {
                ", or add --force to continue with the new value"
            } else {
                ""
            }
        )));
    }
    let progress = BackupProgress::read(&backup).map_err(|e| CliError::usage(e.to_string()))?;
    let completed = progress.epoch + usize::from(progress.epoch_ended);
    if config.training.epochs <= completed {
        return Err(CliError::usage(format!(
            "training.epochs = {}: the run already completed {completed} epochs; ask for more \
             (with --force) to continue it",
            config.training.epochs
        )));
    }
    let forced_changes = changes
        .iter()
        .filter(|c| FORCIBLE.contains(&c.key.as_str()))
        .map(|c| c.to_string())
        .collect();
    Ok(ResumePlan {
        backup,
        progress,
        forced_changes,
    })
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

/// The keys whose values differ between two configs, in key order.
pub fn differences(old: &Config, new: &Config) -> Vec<Change> {
    let flat = |config: &Config| {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(value) = toml::Value::try_from(config) {
            flatten("", &value, &mut out);
        }
        out
    };
    let (old, new) = (flat(old), flat(new));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| Change {
            key: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
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
        toml::from_str(&format!(
            "[model]\nkind = \"mlp\"\n[data]\nkind = \"fashion_mnist\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn differences_name_every_changed_key() {
        let old = config(
            "[optimizer]\nlr = 1e-3\n[[callbacks]]\ntype = \"EarlyStopping\"\npatience = 2\n",
        );
        let new = config(
            "[optimizer]\nlr = 5e-4\n[training]\nworkers = 4\n[[callbacks]]\ntype = \"EarlyStopping\"\npatience = 3\n",
        );
        let keys: Vec<String> = differences(&old, &new).into_iter().map(|c| c.key).collect();
        assert_eq!(
            keys,
            ["callbacks[0].patience", "optimizer.lr", "training.workers"]
        );
        assert!(differences(&old, &old).is_empty());
    }
}
