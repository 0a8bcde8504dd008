//! The sweep manifest (`SWEEP/sweep.json`): everything a trial needs, so
//! that any process on any machine that sees the sweep directory can run
//! trial `K` with nothing but `burnfit sweep --sweep-dir SWEEP --trial K`.
//!
//! The sweep directory is the store: `sweep.json`, `base.toml` (the config
//! the trials start from), `trials.md` (the numbered list), one
//! `trial-NNN/` run directory per trial, `logs/` (the output of trials run
//! by `--jobs`) and the leaderboard. A manifest is written once; a later
//! `sweep` with another config or other parameters on the same directory is
//! refused, so trials of two sweeps never mix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SweepArgs;
use super::space::{self, Space, TrialParams};
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};

/// The manifest's file name.
pub const FILE: &str = "sweep.json";
/// The base config's file name in the sweep directory.
pub const BASE: &str = "base.toml";

/// What a sweep is: its config, its space, its trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version.
    pub version: u32,
    /// The config file the sweep was planned from (for messages).
    pub config_path: PathBuf,
    /// That file's text when the sweep was planned.
    pub config_text: String,
    /// The `--param` specs.
    pub params: Vec<String>,
    /// `--random N`.
    pub random: Option<usize>,
    /// `--seed`.
    pub seed: u64,
    /// `--backend` for every trial.
    pub backend: Option<BackendChoice>,
    /// `--epochs` for every trial.
    pub epochs: Option<usize>,
    /// `--data` for every trial.
    pub data: Option<PathBuf>,
    /// `--set` for every trial (before the trial's own parameters).
    #[serde(default)]
    pub sets: Vec<String>,
    /// Whether MedianStopping prunes trials.
    pub pruning: bool,
    /// The metric trials are ranked (and pruned) by.
    pub monitor: String,
    /// Its mode (`auto`, `min`, `max`).
    pub mode: String,
    /// Every trial's parameters, by trial number.
    pub trials: Vec<Vec<(String, String)>>,
}

impl Manifest {
    /// Plans the sweep `args` describe (reads the config, draws the trials).
    pub fn plan(args: &SweepArgs, config_path: &Path) -> CliResult<Self> {
        if args.random == Some(0) {
            return Err(CliError::usage("--random 0: draw at least 1 trial"));
        }
        if args.max_trials == Some(0) {
            return Err(CliError::usage("--max-trials 0: run at least 1 trial"));
        }
        if args.params.is_empty() {
            return Err(CliError::usage(
                "sweep: give at least one --param key.path=[v1,v2] to search",
            ));
        }
        let base = Config::load(config_path, &args.run.sets)?;
        let config_text = std::fs::read_to_string(config_path)
            .map_err(|e| CliError::usage(format!("{}: cannot read: {e}", config_path.display())))?;
        let space: Vec<(String, Space)> = args
            .params
            .iter()
            .map(|p| space::parse_param(p))
            .collect::<CliResult<_>>()?;
        space::check_keys_once(&space)?;
        let trials = space::trials(&space, args.random, args.seed)?;
        // Every trial must pass train's checks now, not in the middle of
        // the sweep, and before the sweep directory is written.
        super::check::trials(args, config_path, &trials)?;
        Ok(Self {
            version: 1,
            config_path: config_path.to_path_buf(),
            config_text,
            params: args.params.clone(),
            random: args.random,
            seed: args.seed,
            backend: args.run.backend,
            epochs: args.run.epochs,
            data: args.run.data.clone(),
            sets: args.run.sets.clone(),
            pruning: !args.no_pruning,
            monitor: base.outputs.checkpoint_monitor.clone(),
            mode: base.outputs.checkpoint_mode.clone(),
            trials: trials
                .iter()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
                .collect(),
        })
    }

    /// Reads `SWEEP/sweep.json`.
    pub fn read(dir: &Path) -> CliResult<Self> {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            CliError::usage(format!(
                "{}: not a planned sweep ({e}); plan it with `burnfit sweep CONFIG --param … \
                 --sweep-dir {} --plan`",
                path.display(),
                dir.display()
            ))
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::usage(format!("{}: unreadable manifest: {e}", path.display())))
    }

    /// Writes the manifest, the base config and the numbered trial list
    /// into `dir`, or, when `dir` already holds a manifest, checks that it
    /// is this sweep's.
    pub fn store(&self, dir: &Path) -> CliResult<()> {
        if dir.join(FILE).is_file() {
            let stored = Self::read(dir)?;
            return self.check_same(&stored, dir);
        }
        let foreign = std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if foreign {
            return Err(CliError::usage(format!(
                "{}: not empty and not a sweep directory (no {FILE}); choose a new --sweep-dir",
                dir.display()
            )));
        }
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            burnfit_callbacks::atomic::write_atomic(&path, bytes).map_err(|e| {
                CliError::usage(format!(
                    "{}: cannot write: {}",
                    path.display(),
                    crate::run_dir::io_reason(&e)
                ))
            })
        };
        write(BASE, self.config_text.as_bytes())?;
        write("trials.md", self.trial_list().as_bytes())?;
        // The manifest last: its presence means the sweep is planned.
        write(
            FILE,
            &serde_json::to_vec_pretty(self).expect("the manifest serialises"),
        )
    }

    /// Refuses `stored` if it is another sweep's manifest.
    fn check_same(&self, stored: &Self, dir: &Path) -> CliResult<()> {
        let differs = if stored.config_text != self.config_text {
            Some(format!(
                "the config differs from the one it was planned with ({})",
                stored.config_path.display()
            ))
        } else if stored.params != self.params
            || stored.random != self.random
            || stored.seed != self.seed
        {
            Some(format!(
                "it was planned with other parameters ({}{})",
                stored.params.join(" "),
                stored
                    .random
                    .map(|n| format!(" --random {n} --seed {}", stored.seed))
                    .unwrap_or_default()
            ))
        } else if stored.backend != self.backend
            || stored.epochs != self.epochs
            || stored.data != self.data
            || stored.sets != self.sets
            || stored.pruning != self.pruning
        {
            Some(
                "it was planned with other --backend/--epochs/--data/--set/--no-pruning flags"
                    .into(),
            )
        } else {
            None
        };
        match differs {
            Some(why) => Err(CliError::usage(format!(
                "{}: this sweep directory belongs to another sweep: {why}; choose a new \
                 --sweep-dir, or run its own trials with `burnfit sweep --sweep-dir {} --trial K`",
                dir.join(FILE).display(),
                dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// The numbered trial list, as Markdown.
    pub fn trial_list(&self) -> String {
        let mut out = format!(
            "# {} trials, ranked by {}\n\n| trial | parameters |\n| ---: | --- |\n",
            self.trials.len(),
            self.monitor
        );
        for (index, trial) in self.trials.iter().enumerate() {
            let params: Vec<String> = trial.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("| {index} | {} |\n", params.join(" ")));
        }
        out
    }

    /// Trial `index`'s parameters as values.
    pub fn params(&self, index: usize) -> TrialParams {
        self.trials[index]
            .iter()
            .map(|(k, v)| (k.clone(), crate::config::parse_value(v)))
            .collect()
    }
}

/// `trial-NNN`, the run directory of trial `index`.
pub fn trial_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("trial-{index:03}"))
}
