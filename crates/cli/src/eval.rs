//! `burnfit eval` and `burnfit predict`: using a run's checkpoint.

use std::path::{Path, PathBuf};

use crate::backend;
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};
use crate::run_dir::RunDir;
use crate::task::PredictJob;

pub use crate::task::TestMetrics;

fn checkpoint_path(run: &RunDir, which: &str) -> CliResult<PathBuf> {
    let (path, ours) = match which {
        "best" => (run.best_checkpoint(), true),
        "last" => (run.last_checkpoint(), true),
        "final" => (run.final_checkpoint(), true),
        "averaged" => (run.averaged_checkpoint(), true),
        other => (PathBuf::from(other), false),
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        CliError::usage(format!(
            "{}: no such checkpoint ({e}; use --checkpoint best|last|final|averaged|PATH; the run \
             may have stopped before its first checkpoint, only weight averaging writes final, \
             and `burnfit average` writes averaged)",
            path.display()
        ))
    })?;
    // The run's own weights files end with a checksum: a damaged one is
    // reported rather than loaded.
    let damaged = |why: &str| {
        CliError::usage(format!(
            "{}: {why}; evaluate the other checkpoint (--checkpoint {})",
            path.display(),
            if which == "best" { "last" } else { "best" }
        ))
    };
    match burnfit_callbacks::checkpoint_file::verify_trailer(&bytes) {
        Ok(true) => {}
        Ok(false) if ours => return Err(damaged("no checksum: the file is truncated")),
        Ok(false) => {}
        Err(e) => return Err(damaged(&e)),
    }
    Ok(path)
}

/// Evaluates the checkpoint `which` of the run in `run_dir` on its test
/// set: its metrics and the line that reports them.
pub fn evaluate(
    run_dir: &Path,
    which: &str,
    choice: Option<BackendChoice>,
) -> CliResult<(TestMetrics, String)> {
    let run = RunDir::open(run_dir)?;
    let config: Config = run.read_config()?;
    let path = checkpoint_path(&run, which)?;
    let task = crate::task::current();
    let convolutional = config.describe().convolutional;
    let device = backend::choose(choice.unwrap_or(config.training.backend), convolutional)?.device;
    task.evaluate(&config, &path, &device, which)
}

/// `burnfit eval`.
pub fn eval_command(run_dir: &Path, which: &str, choice: Option<BackendChoice>) -> CliResult<()> {
    let (metrics, line) = evaluate(run_dir, which, choice)?;
    println!("{line}");
    // Kept in the run for `best` and `last` (a checkpoint given by path may
    // lie anywhere: nothing is written for it). A run that cannot be written
    // to (read-only, archived) is still evaluated.
    if which == "best" || which == "last" {
        let run = RunDir::open(run_dir)?;
        let path = run.root.join(format!("test_metrics_{which}.json"));
        if let Err(e) = burnfit_callbacks::atomic::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&metrics).expect("json"),
        ) {
            eprintln!(
                "warning: {}: not written ({})",
                path.display(),
                crate::run_dir::io_reason(&e)
            );
        }
    }
    Ok(())
}

/// `burnfit predict`: the task's predictions of the items in `input`.
pub fn predict_command(run_dir: &Path, input: &Path, limit: Option<usize>) -> CliResult<()> {
    let run = RunDir::open(run_dir)?;
    let config = run.read_config()?;
    let weights = checkpoint_path(&run, "best").or_else(|_| checkpoint_path(&run, "last"))?;
    let task = crate::task::current();
    let convolutional = config.describe().convolutional;
    let device = backend::choose(config.training.backend, convolutional)?.device;
    task.predict(PredictJob {
        config: &config,
        run: &run,
        weights: &weights,
        input,
        limit,
        device: &device,
    })
}
