//! `burnfit eval` and `burnfit predict`: using a run's checkpoint.

use std::path::{Path, PathBuf};

use crate::backend;
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};
use crate::run_dir::RunDir;
use crate::task::PredictJob;

pub use crate::task::TestMetrics;

/// Why a weights file cannot be used.
pub(crate) enum Unusable {
    /// It cannot be read (most often: it is not there).
    Unreadable(std::io::Error),
    /// Its checksum says it is truncated or damaged: reported, never loaded.
    Damaged(String),
}

/// Reads the weights file at `path` and checks the checksum it ends with.
/// `ours`: a file a run wrote (which always ends with one), so a file
/// without is truncated; a file from elsewhere may have none.
pub(crate) fn check_weights(path: &Path, ours: bool) -> Result<(), Unusable> {
    let bytes = std::fs::read(path).map_err(Unusable::Unreadable)?;
    match burnfit_callbacks::checkpoint_file::verify_trailer(&bytes) {
        Ok(true) => Ok(()),
        Ok(false) if ours => Err(Unusable::Damaged(
            "no checksum: the file is truncated".into(),
        )),
        Ok(false) => Ok(()),
        Err(e) => Err(Unusable::Damaged(e)),
    }
}

fn checkpoint_path(run: &RunDir, which: &str) -> CliResult<PathBuf> {
    let (path, ours) = match which {
        "best" => (run.best_checkpoint(), true),
        "last" => (run.last_checkpoint(), true),
        "final" => (run.final_checkpoint(), true),
        "averaged" => (run.averaged_checkpoint(), true),
        other => (PathBuf::from(other), false),
    };
    if path.is_dir() {
        return Err(CliError::usage(format!(
            "--checkpoint {}: a directory, not a weights file; give a .bpk file or one of \
             best, last, final, averaged",
            path.display()
        )));
    }
    match check_weights(&path, ours) {
        Ok(()) => Ok(path),
        Err(Unusable::Unreadable(e)) => Err(CliError::usage(format!(
            "{}: no such checkpoint ({e}; use --checkpoint best|last|final|averaged|PATH; the run \
             may have stopped before its first checkpoint, only weight averaging writes final, \
             and `burnfit average` writes averaged)",
            path.display()
        ))),
        // The run's own weights files end with a checksum: a damaged one is
        // reported rather than loaded.
        Err(Unusable::Damaged(why)) => Err(CliError::usage(format!(
            "{}: {why}; evaluate the other checkpoint (--checkpoint {})",
            path.display(),
            if which == "best" { "last" } else { "best" }
        ))),
    }
}

/// The weights `predict` uses: the run's best checkpoint, checked as
/// `eval` checks it. A damaged best.bpk is refused, never passed over for
/// another file (predictions from weights the user did not ask for would
/// look like the best's); only a run without best.bpk predicts with
/// last.bpk, with a warning that says so. predict has no `--checkpoint`:
/// its advice names files, not flags.
fn predict_weights(run: &RunDir) -> CliResult<PathBuf> {
    let best = run.best_checkpoint();
    let last = run.last_checkpoint();
    match check_weights(&best, true) {
        Ok(()) => return Ok(best),
        Err(Unusable::Damaged(why)) => {
            return Err(CliError::usage(format!(
                "{}: {why}; predict uses the run's best checkpoint and loads no damaged one: \
                 restore it from a copy, or move it aside to predict with {} (the last epoch's \
                 weights)",
                best.display(),
                last.display()
            )));
        }
        Err(Unusable::Unreadable(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CliError::usage(format!(
                "{}: cannot read the run's best checkpoint ({e})",
                best.display()
            )));
        }
        Err(Unusable::Unreadable(_)) => {}
    }
    match check_weights(&last, true) {
        Ok(()) => {
            eprintln!(
                "warning: {}: no such file; predicting with {} (the last epoch's weights)",
                best.display(),
                last.display()
            );
            Ok(last)
        }
        Err(Unusable::Damaged(why)) => Err(CliError::usage(format!(
            "{}: {why}; predict loads no damaged checkpoint, and {} is not there: restore one \
             of them from a copy",
            last.display(),
            best.display()
        ))),
        Err(Unusable::Unreadable(e)) => Err(CliError::usage(format!(
            "{}: no such checkpoint, nor {} ({e}); predict needs the run's best (or last) \
             checkpoint: the run may have stopped before its first checkpoint, or trained with \
             [outputs] checkpoint = false",
            best.display(),
            last.display()
        ))),
    }
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
    let device =
        backend::choose(choice.unwrap_or(config.training.backend), convolutional)?.started_here();
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
    let weights = predict_weights(&run)?;
    let task = crate::task::current();
    let convolutional = config.describe().convolutional;
    let device = backend::choose(config.training.backend, convolutional)?.started_here();
    task.predict(PredictJob {
        config: &config,
        run: &run,
        weights: &weights,
        input,
        limit,
        device: &device,
    })
}
