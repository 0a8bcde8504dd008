//! `burnfit sweep`: one training per hyperparameter combination, pruning,
//! a leaderboard; in one process, in parallel processes (`--jobs`), or
//! spread over machines by a job launcher (`--plan`, `--trial K`,
//! `--collect`), with the sweep directory as the only store.
//!
//! | module | job |
//! | --- | --- |
//! | `space` | the `--param` specs, the grid or the random draws |
//! | `check` | every planned trial checked as `train` would, before anything is written |
//! | `manifest` | `sweep.json`: the planned sweep, checked on every later use |
//! | `trial` | one trial: lock, resume, pruning against completed trials |
//! | `jobs` | `--jobs N`: child processes, one line per trial event, signals passed on |
//! | `leaderboard` | `--collect`: every trial's status, the ranking |

mod check;
mod jobs;
mod leaderboard;
mod manifest;
mod space;
mod trial;

use std::path::{Path, PathBuf};

use manifest::Manifest;

use crate::RunFlags;
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::interrupt::Signal;

/// Options of `burnfit sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The base config (not with --trial or --collect: the plan holds it).
    pub config: Option<PathBuf>,
    /// A searched parameter: `key.path=[v1,v2,...]`, `key.path=loguniform(lo,hi)`
    /// or `key.path=uniform(lo,hi)` (repeatable).
    #[arg(long = "param", value_name = "KEY.PATH=VALUES")]
    pub params: Vec<String>,
    /// Draw this many random combinations instead of the full grid.
    #[arg(long)]
    pub random: Option<usize>,
    /// Seed of the random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run at most this many trials (the first ones) in this invocation.
    #[arg(long)]
    pub max_trials: Option<usize>,
    /// The sweep directory (default runs/<config name>-sweep).
    #[arg(long)]
    pub sweep_dir: Option<PathBuf>,
    /// The flags every training command takes, for every trial.
    #[command(flatten)]
    pub run: RunFlags,
    /// Turn off median-stopping pruning.
    #[arg(long)]
    pub no_pruning: bool,
    /// Run this many trials at once, as child processes sharing the cores.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Devices for the trials: with --jobs, each running trial gets the next
    /// one in turn (e.g. wgpu:0,wgpu:1); with --trial, that trial's --devices.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// Only write the manifest and the numbered trial list, for a job launcher.
    #[arg(long)]
    pub plan: bool,
    /// Run one trial of a planned sweep (with --sweep-dir); without a number,
    /// from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "env")]
    pub trial: Option<String>,
    /// Report every trial's status and write the leaderboard (with --sweep-dir).
    #[arg(long)]
    pub collect: bool,
}

/// The variables job launchers number array tasks with.
const TRIAL_VARIABLES: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// `burnfit sweep`: one planned trial (`--trial`), the leaderboard
/// (`--collect`), or a new sweep planned, then run (unless `--plan`).
pub fn sweep_command(args: &SweepArgs) -> CliResult<()> {
    if args.jobs == 0 {
        return Err(CliError::usage("--jobs 0: run at least 1 trial at a time"));
    }
    if let Some(trial) = &args.trial {
        return run_planned_trial(args, trial);
    }
    if args.collect {
        let dir = sweep_dir_required(args, "--collect")?;
        leaderboard::collect(&Manifest::read(&dir)?, &dir)?;
        return Ok(());
    }
    let (manifest, dir) = plan(args)?;
    if args.plan {
        print_plan(&manifest, &dir);
        return Ok(());
    }
    run_planned(args, &manifest, &dir)
}

/// `--trial K`: one trial of the sweep planned in `--sweep-dir`.
fn run_planned_trial(args: &SweepArgs, trial: &str) -> CliResult<()> {
    let dir = sweep_dir_required(args, "--trial")?;
    let manifest = Manifest::read(&dir)?;
    let index = trial_index(trial)?;
    jobs::follow_parent();
    if index < manifest.trials.len() {
        // A launcher's task log says which trial it ran.
        let params = space::sets(&manifest.params(index));
        println!("trial {index}: {}", params.join(" "));
    }
    match trial::run(&manifest, &dir, index, args.devices.clone())? {
        trial::TrialEnd::AlreadyFinished => println!("trial {index}: already finished, not rerun"),
        trial::TrialEnd::Finished => println!("trial {index}: finished"),
    }
    Ok(())
}

/// Plans the sweep of the base config and stores its manifest in the
/// sweep directory (`--sweep-dir`, or runs/<config name>-sweep).
fn plan(args: &SweepArgs) -> CliResult<(Manifest, PathBuf)> {
    let config = args.config.as_deref().ok_or_else(|| {
        CliError::usage(
            "sweep: give the base config (burnfit sweep CONFIG --param …), or --sweep-dir with \
             --trial or --collect",
        )
    })?;
    let manifest = Manifest::plan(args, config)?;
    let dir = match &args.sweep_dir {
        Some(dir) => dir.clone(),
        None => {
            let name = Config::load(config, &[])?.run_name(config);
            PathBuf::from("runs").join(format!("{name}-sweep"))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot create the sweep directory: {e}",
            dir.display()
        ))
    })?;
    manifest.store(&dir)?;
    Ok((manifest, dir))
}

/// `--plan`: the numbered trial list, and how a launcher runs them.
fn print_plan(manifest: &Manifest, dir: &Path) {
    print!("{}", manifest.trial_list());
    println!(
        "sweep: planned in {}; run trial K with `{} sweep --sweep-dir {} --trial K` \
         (K from 0 to {}), then `--collect`",
        dir.display(),
        crate::program(),
        dir.display(),
        manifest.trials.len().saturating_sub(1)
    );
}

/// Runs the first `--max-trials` trials of the plan, in turn or in `--jobs`
/// processes, then writes the leaderboard; an error says what did not
/// finish (interrupted, failed or stopped, or held by another process).
fn run_planned(args: &SweepArgs, manifest: &Manifest, dir: &Path) -> CliResult<()> {
    let count = args
        .max_trials
        .map_or(manifest.trials.len(), |max| max.min(manifest.trials.len()));
    let indices: Vec<usize> = (0..count).collect();
    println!(
        "burnfit sweep: {} trials in {}, ranked by {}",
        count,
        dir.display(),
        manifest.monitor
    );
    let tally = if args.jobs == 1 {
        run_in_turn(manifest, dir, &indices, args.devices.clone())?
    } else {
        let devices: Vec<String> = args
            .devices
            .as_deref()
            .map(|d| d.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        jobs::run_parallel(manifest, dir, &indices, args.jobs, &devices)?
    };
    if let Some(signal) = tally.interrupted {
        return Err(interrupted(signal, tally.finished, count));
    }
    let unfinished = unfinished(manifest, dir, &tally, count);
    leaderboard::collect(manifest, dir)?;
    match unfinished {
        Some(why) => Err(CliError::failed(why)),
        None => Ok(()),
    }
}

/// The sweep stopped by `signal` with `finished` of `count` trials done.
fn interrupted(signal: Signal, finished: usize, count: usize) -> CliError {
    CliError::interrupted(
        format!(
            "burnfit sweep: interrupted by {}, {finished} of {count} trials finished; run the \
             same command again to continue (finished trials are kept, interrupted ones resume)",
            match signal {
                Signal::Interrupt => "SIGINT",
                Signal::Terminate => "SIGTERM",
            },
        ),
        signal.exit_code(),
    )
}

/// Why the sweep's trials are not all finished, if they are not: trials
/// that failed or were stopped, and trials left to another process that
/// it has not finished yet.
fn unfinished(
    manifest: &Manifest,
    dir: &Path,
    tally: &jobs::Tally,
    count: usize,
) -> Option<String> {
    let waiting: Vec<String> = tally
        .elsewhere
        .iter()
        .filter(|&&index| {
            !matches!(
                leaderboard::status(manifest, dir, index),
                leaderboard::Status::Finished(_)
            )
        })
        .map(usize::to_string)
        .collect();
    let unfinished = tally.failed + tally.stopped;
    let mut why = Vec::new();
    if unfinished > 0 {
        why.push(format!(
            "{unfinished} of {count} trials did not finish (see {}/logs); run the sweep again \
             to resume them",
            dir.display()
        ));
    }
    if !waiting.is_empty() {
        why.push(if let [one] = &waiting[..] {
            format!("trial {one} is held by another process and has not finished")
        } else {
            format!(
                "trials {} are held by other processes and have not finished",
                waiting.join(", ")
            )
        });
        why.push("run the sweep again, or --collect, once they end".into());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The trials in this process, one after the other (the reproducible way:
/// each trial is pruned against exactly the trials before it); those that
/// another process holds are skipped.
fn run_in_turn(
    manifest: &Manifest,
    dir: &Path,
    indices: &[usize],
    devices: Option<String>,
) -> CliResult<jobs::Tally> {
    let mut tally = jobs::Tally::default();
    for &index in indices {
        if jobs::held_elsewhere(dir, index) {
            tally.elsewhere.push(index);
            println!("trial {index}: {}", jobs::ELSEWHERE);
            continue;
        }
        let started = std::time::Instant::now();
        let params = space::sets(&manifest.params(index));
        println!("trial {index}: {}", params.join(" "));
        match trial::run(manifest, dir, index, devices.clone())? {
            trial::TrialEnd::AlreadyFinished => {
                println!("trial {index}: already finished, not rerun");
            }
            trial::TrialEnd::Finished => {
                jobs::report(
                    manifest,
                    dir,
                    index,
                    started.elapsed().as_secs_f64(),
                    &mut tally,
                );
            }
        }
    }
    Ok(tally)
}

fn sweep_dir_required(args: &SweepArgs, flag: &str) -> CliResult<PathBuf> {
    let dir = args.sweep_dir.clone().ok_or_else(|| {
        CliError::usage(format!(
            "{flag} needs --sweep-dir DIR: the directory of a planned sweep"
        ))
    })?;
    refuse_what_the_plan_fixes(args, flag, &dir)?;
    Ok(dir)
}

/// Refuses, with `--trial` or `--collect`, what the planned sweep in `dir`
/// fixed when it was planned (the config, the searched space, the flags of
/// every trial): given again, it would be ignored.
fn refuse_what_the_plan_fixes(args: &SweepArgs, flag: &str, dir: &Path) -> CliResult<()> {
    let run = &args.run;
    let given = [
        ("CONFIG", args.config.is_some()),
        ("--param", !args.params.is_empty()),
        ("--random", args.random.is_some()),
        ("--set", !run.sets.is_empty()),
        ("--epochs", run.epochs.is_some()),
        ("--backend", run.backend.is_some()),
        ("--data", run.data.is_some()),
    ];
    match given.iter().find(|(_, is_given)| *is_given) {
        Some((what, _)) => Err(CliError::usage(format!(
            "sweep {flag}: {what} was fixed when the sweep in {} was planned (see its \
             sweep.json), and would be ignored; leave it out, or plan a new sweep in another \
             --sweep-dir",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// `--trial K`, or the job launcher's task number.
fn trial_index(value: &str) -> CliResult<usize> {
    if value != "env" {
        return value.parse().map_err(|_| {
            CliError::usage(format!(
                "--trial {value}: expected a trial number (0, 1, …)"
            ))
        });
    }
    for variable in TRIAL_VARIABLES {
        if let Ok(raw) = std::env::var(variable) {
            return raw.trim().parse().map_err(|_| {
                CliError::usage(format!("{variable}={raw}: expected a trial number"))
            });
        }
    }
    Err(CliError::usage(format!(
        "--trial without a number takes it from {}, and neither is set",
        TRIAL_VARIABLES.join(" or ")
    )))
}
