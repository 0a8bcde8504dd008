//! Before a sweep writes anything, every planned trial gets the checks
//! `burnfit train` makes before it creates anything (those of `burnfit
//! validate`, and the flags): a mistake is refused while it can still be
//! corrected, not stored in `sweep.json` or found at trial K.

use std::path::Path;

use super::SweepArgs;
use super::space::{self, TrialParams};
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};
use crate::{RunFlags, TrainArgs, backend, task, train};

/// Checks every trial of `trials` on the base config `path` with the
/// sweep's flags. The first failure is the error; where the trial's own
/// values cause it, the error names the trial and its parameters.
pub fn trials(args: &SweepArgs, path: &Path, trials: &[TrialParams]) -> CliResult<()> {
    let mut checks = Checks::default();
    for (index, trial) in trials.iter().enumerate() {
        if let Err(error) = checks.trial(args, path, trial) {
            return Err(blame(args, path, index, trial, error));
        }
    }
    Ok(())
}

/// What was checked already: the data and the backends are checked once
/// per distinct setting, not once per trial.
#[derive(Default)]
struct Checks {
    data: Vec<String>,
    backends: Vec<BackendChoice>,
}

impl Checks {
    /// One trial: its config and flags as `train` resolves them, the
    /// config's own checks, the backend asked for (where the trials run
    /// here), and the data.
    fn trial(&mut self, args: &SweepArgs, path: &Path, trial: &TrialParams) -> CliResult<()> {
        let config = resolve(args, path, trial)?;
        train::check_config(path, &config, None)?;
        // Planned trials run elsewhere, on devices this machine may lack.
        let choice = args.run.backend.unwrap_or(config.training.backend);
        let here = !args.plan && choice != BackendChoice::Auto;
        if here && !self.backends.contains(&choice) {
            backend::choose(choice, config.describe().convolutional)?;
            self.backends.push(choice);
        }
        // The data's checks depend on [data] and [training] (the batch
        // size, the seed, the batch limits).
        let key = serde_json::to_string(&(&config.data, &config.training)).ok();
        if key.as_ref().is_none_or(|key| !self.data.contains(key)) {
            task::current().load(&config, None)?;
            self.data.extend(key);
        }
        Ok(())
    }
}

/// The config trial `trial` trains with: the base config, the sweep's
/// `--set`, the trial's values, `--data` and `--epochs`, as
/// `train::prepare` applies them.
fn resolve(args: &SweepArgs, path: &Path, trial: &TrialParams) -> CliResult<Config> {
    let mut sets = args.run.sets.clone();
    sets.extend(space::sets(trial));
    train::resolve_config(&TrainArgs {
        config: path.to_path_buf(),
        run: RunFlags {
            sets,
            ..args.run.clone()
        },
        ..Default::default()
    })
}

/// `error` of trial `index`, as reported: as it is where the config and
/// flags fail without the trial's values too (a flag, the data), else
/// naming the trial and its parameters, and the `--param` whose value the
/// error is about (the trial's values reach the config as `--set`s, which
/// the user did not write).
fn blame(
    args: &SweepArgs,
    path: &Path,
    index: usize,
    trial: &TrialParams,
    error: CliError,
) -> CliError {
    let base = Checks::default().trial(args, path, &Vec::new());
    if base.is_err_and(|base| base.message() == error.message()) {
        return error;
    }
    let sets = space::sets(trial);
    let named = format!("trial {index} ({})", sets.join(" "));
    let from_param = sets.iter().find_map(|set| {
        let reason = error.message().strip_prefix(&format!("--set {set}: "))?;
        let key = set.split_once('=').map_or(set.as_str(), |(key, _)| key);
        Some(format!("--param {key}: {named}: {reason}"))
    });
    let message = from_param.unwrap_or_else(|| format!("{named}: {}", error.message()));
    match error.code() {
        2 => CliError::usage(message),
        _ => CliError::failed(message),
    }
}
