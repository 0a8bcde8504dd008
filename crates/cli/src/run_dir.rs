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

    /// Creates the directory (and its sub-directories).
    pub fn create(root: PathBuf) -> CliResult<Self> {
        for sub in ["", "checkpoints", "plots"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                CliError::usage(format!(
                    "{}: cannot create the run directory: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(Self { root })
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
    /// `backup/`.
    pub fn backup(&self) -> PathBuf {
        self.root.join("backup")
    }
    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
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

    /// Reads summary.json.
    pub fn read_summary(&self) -> CliResult<Summary> {
        let bytes = std::fs::read(self.summary())
            .map_err(|e| CliError::usage(format!("{}: {e}", self.summary().display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::usage(format!("{}: {e}", self.summary().display())))
    }
}

fn write(path: &Path, bytes: &[u8]) -> CliResult<()> {
    burnfit_callbacks::atomic::write_atomic(path, bytes)
        .map_err(|e| CliError::usage(format!("{e} (is the disk full or read-only?)")))
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
