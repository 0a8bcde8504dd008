//! BackupAndRestore: periodic full backups, and resume from the newest good one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::checkpoint_file::CheckpointFile;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::frequency::Frequency;
use crate::logs::Logs;

const NAME: &str = "BackupAndRestore";
const PREFIX: &str = "backup-";
const SUFFIX: &str = ".bfk";

/// When to back up: at every epoch end, or every N training batches
/// (counted across epochs): the shared [`Frequency`]. Kept as a name so
/// existing code compiles.
pub type BackupFrequency = Frequency;

/// Configuration of [`BackupAndRestore`], with Keras's parameter names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupAndRestoreConfig {
    /// Directory of the backups (created if needed).
    pub backup_dir: String,
    /// `"epoch"` (default) or a number of batches.
    #[serde(default)]
    pub save_freq: BackupFrequency,
    /// Delete the backups when training ends normally (Keras's default `true`).
    #[serde(default = "default_true")]
    pub delete_checkpoint: bool,
    /// How many backups to keep, so a damaged newest one can fall back to the
    /// previous one (default 2, at least 1).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_true() -> bool {
    true
}

fn default_keep() -> usize {
    2
}

/// Saves the whole training state periodically and, when training starts
/// again after a crash, kill or reboot, continues from the newest backup
/// that loads.
///
/// A backup holds the model, the optimizer state, the learning-rate scheduler
/// (including any rate set by callbacks), the position in training (epoch,
/// batches done, global step) and **every callback's state** (EarlyStopping's
/// wait and best, ReduceLROnPlateau's counters, ModelCheckpoint's best,
/// CSVLogger's columns, TensorBoard's step…); Keras restores only the first
/// three. Files are written atomically (temporary file, fsync, rename, fsync
/// of the directory) and carry a CRC: a damaged newest backup is reported and
/// the previous one is used. See `docs/resume.md`.
///
/// ```
/// use burnfit_core::builtins::{BackupAndRestore, BackupAndRestoreConfig, BackupFrequency};
/// let backup = BackupAndRestore::new(BackupAndRestoreConfig {
///     backup_dir: "runs/demo/backup".into(),
///     save_freq: BackupFrequency::Batches(500),
///     delete_checkpoint: false,
///     keep: 2,
/// })
/// .unwrap();
/// ```
pub struct BackupAndRestore {
    dir: PathBuf,
    save_freq: Frequency,
    delete_checkpoint: bool,
    keep: usize,
    batches_seen: u64,
    /// Backups on disk or queued, oldest first.
    kept: Vec<PathBuf>,
}

impl BackupAndRestore {
    /// Checks the configuration.
    pub fn new(config: BackupAndRestoreConfig) -> Result<Self> {
        if config.save_freq == Frequency::Batches(0) {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "save_freq",
                message: "must be at least 1 batch".into(),
            });
        }
        if config.backup_dir.is_empty() {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "backup_dir",
                message: "must name a directory".into(),
            });
        }
        Ok(Self {
            dir: PathBuf::from(config.backup_dir),
            save_freq: config.save_freq,
            delete_checkpoint: config.delete_checkpoint,
            keep: config.keep.max(1),
            batches_seen: 0,
            kept: Vec::new(),
        })
    }

    /// The backups in the directory, newest first.
    pub fn backups(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name
                    .strip_prefix(PREFIX)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        found.into_iter().map(|(_, p)| p).collect()
    }

    /// Named after the batches trained, so that two backups inside one
    /// gradient-accumulation window differ.
    fn backup_path(&self, global_batch: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{global_batch:012}{SUFFIX}"))
    }

    fn backup_now(&mut self, ctx: &mut Context) -> Result<()> {
        let path = self.backup_path(ctx.progress().global_batch);
        ctx.request_backup(&path)?;
        if self.kept.last() != Some(&path) {
            self.kept.push(path);
        }
        // Deletions land after the new backup has (the writer keeps the
        // order), so a crash never leaves fewer than one complete backup.
        while self.kept.len() > self.keep {
            let oldest = self.kept.remove(0);
            ctx.remove_file(&oldest)?;
        }
        Ok(())
    }
}

impl Callback for BackupAndRestore {
    fn name(&self) -> String {
        NAME.into()
    }

    fn resume_point(&mut self) -> Result<Option<PathBuf>> {
        for (index, path) in Self::backups(&self.dir).into_iter().enumerate() {
            match CheckpointFile::load(&path) {
                Ok(_) => {
                    if index > 0 {
                        log::warn!("{NAME}: resuming from the older backup {}", path.display());
                    }
                    return Ok(Some(path));
                }
                Err(e) => log::warn!("{NAME}: skipping unreadable backup: {e}"),
            }
        }
        Ok(None)
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        self.batches_seen += 1;
        if self.save_freq.is_due(self.batches_seen) {
            self.backup_now(ctx)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if self.save_freq.is_epoch() {
            self.backup_now(ctx)?;
        }
        Ok(())
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.kept = Self::backups(&self.dir);
        self.kept.reverse();
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            // Stopped from outside (Ctrl-C, SIGTERM): back up at this very
            // batch, so that a resume loses nothing, and keep every backup.
            return self.backup_now(ctx);
        }
        if self.delete_checkpoint {
            for path in Self::backups(&self.dir) {
                ctx.remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        Ok(Some(
            serde_json::json!({ "batches_seen": self.batches_seen }),
        ))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.batches_seen = state
            .get("batches_seen")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| CallbackError::State("BackupAndRestore: missing batches_seen".into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_loadable_backup_wins_and_corrupt_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CheckpointFile::default();
        file.push("model", vec![1, 2, 3]);
        file.save(&dir.path().join("backup-000000000010.bfk"))
            .unwrap();
        file.save(&dir.path().join("backup-000000000020.bfk"))
            .unwrap();
        let mut callback = BackupAndRestore::new(BackupAndRestoreConfig {
            backup_dir: dir.path().to_string_lossy().into_owned(),
            save_freq: BackupFrequency::default(),
            delete_checkpoint: true,
            keep: 2,
        })
        .unwrap();
        assert_eq!(
            callback.resume_point().unwrap(),
            Some(dir.path().join("backup-000000000020.bfk"))
        );
        // Damage the newest: the previous one is used.
        let newest = dir.path().join("backup-000000000020.bfk");
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(
            callback.resume_point().unwrap(),
            Some(dir.path().join("backup-000000000010.bfk"))
        );
    }

    #[test]
    fn save_freq_is_checked() {
        let config = |save_freq| BackupAndRestoreConfig {
            backup_dir: "x".into(),
            save_freq,
            delete_checkpoint: true,
            keep: 2,
        };
        assert!(BackupAndRestore::new(config(BackupFrequency::Batches(0))).is_err());
        assert!(BackupAndRestore::new(config(BackupFrequency::Batches(5))).is_ok());
    }
}
