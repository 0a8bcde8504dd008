//! `burnfit average RUN --top-k N`: the mean of the weights of a run's N
//! best checkpoints, as fairseq's `average_checkpoints.py` makes it, into
//! `checkpoints/averaged.bpk` (`eval --checkpoint averaged` reads it).
//!
//! The checkpoints are those a `[[callbacks]] ModelCheckpoint` with
//! `save_top_k` kept: each epoch's file name comes from the callback's
//! template and the epoch's row of `history.csv`, its rank from the
//! monitored value in that row. Only trainable parameters are averaged;
//! buffers (batch norm's running statistics) are the best checkpoint's.
//! Every chosen file's checksum is checked, as `eval` checks it, before
//! any is loaded: a damaged one is refused by name and nothing is written.

use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::{CallbackConfig, ModelCheckpointConfig, top_k_order};
use burnfit_callbacks::monitor::Monitor;

use crate::backend;
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};
use crate::eval::{Unusable, check_weights};
use crate::report::History;
use crate::run_dir::RunDir;

/// One kept checkpoint: its epoch (0-based), monitored value and file.
#[derive(Clone, Debug, PartialEq)]
struct Kept {
    epoch: usize,
    score: f64,
    path: PathBuf,
}

/// `burnfit average`.
pub fn average_command(
    run_dir: &Path,
    top_k: usize,
    choice: Option<BackendChoice>,
) -> CliResult<()> {
    if top_k == 0 {
        return Err(CliError::usage("--top-k: average at least 1 checkpoint"));
    }
    let run = RunDir::open(run_dir)?;
    let config = run.read_config()?;
    let checkpoint = top_k_callback(&config, &run)?;
    let ranked = ranked(&checkpoint, &run)?;
    if ranked.len() < top_k {
        return Err(CliError::usage(format!(
            "--top-k {top_k}: {} holds {} checkpoint{} of its ModelCheckpoint (save_top_k = {}); \
             average at most {}",
            run.root.display(),
            ranked.len(),
            if ranked.len() == 1 { "" } else { "s" },
            checkpoint.save_top_k.unwrap_or(0),
            ranked.len()
        )));
    }
    let chosen = &ranked[..top_k];
    verify(chosen, &checkpoint)?;
    let convolutional = config.describe().convolutional;
    let device =
        backend::choose(choice.unwrap_or(config.training.backend), convolutional)?.started_here();
    let paths: Vec<PathBuf> = chosen.iter().map(|k| k.path.clone()).collect();
    let bytes = crate::task::current().average(&config, &paths, &device)?;
    let out = run.averaged_checkpoint();
    burnfit_callbacks::atomic::write_atomic(&out, &bytes)?;
    let listed: Vec<String> = chosen
        .iter()
        .map(|k| format!("epoch {} ({} {})", k.epoch + 1, checkpoint.monitor, k.score))
        .collect();
    println!(
        "averaged {top_k} checkpoint{} into {}: {}",
        if top_k == 1 { "" } else { "s" },
        out.display(),
        listed.join(", ")
    );
    Ok(())
}

/// Checks every chosen checkpoint's checksum before any is loaded, as
/// `eval` checks a run's weights: a damaged file is reported by name and
/// nothing is averaged or written. The files are the run's ModelCheckpoint's,
/// which always end with a checksum: one without is truncated.
fn verify(chosen: &[Kept], checkpoint: &ModelCheckpointConfig) -> CliResult<()> {
    for (rank, kept) in chosen.iter().enumerate() {
        let path = kept.path.display();
        let why = match check_weights(&kept.path, true) {
            Ok(()) => continue,
            Err(Unusable::Damaged(why)) => why,
            Err(Unusable::Unreadable(e)) => {
                return Err(CliError::usage(format!(
                    "{path}: cannot read this kept checkpoint ({e}); nothing was averaged"
                )));
            }
        };
        let above = if rank == 0 {
            String::new()
        } else {
            format!(", or average only those ranked above it (--top-k {rank})")
        };
        return Err(CliError::usage(format!(
            "{path}: {why} (epoch {}, {} {}); average loads no damaged checkpoint: restore it \
             from a copy, or move it aside to average the other kept checkpoints{above}",
            kept.epoch + 1,
            checkpoint.monitor,
            kept.score
        )));
    }
    Ok(())
}

/// The run's ModelCheckpoint that keeps the top k, with what `average`
/// needs of it.
fn top_k_callback(config: &Config, run: &RunDir) -> CliResult<ModelCheckpointConfig> {
    let config_file = run.root.join("config.toml");
    let found = config.callbacks.iter().find_map(|c| match c {
        CallbackConfig::ModelCheckpoint(c) if c.save_top_k.is_some() => Some(c.clone()),
        _ => None,
    });
    let Some(checkpoint) = found else {
        return Err(CliError::usage(format!(
            "{}: no [[callbacks]] ModelCheckpoint with save_top_k; average needs the k best \
             checkpoints kept (add save_top_k = K and save_weights_only = true)",
            config_file.display()
        )));
    };
    let refuse = |why: &str| {
        Err(CliError::usage(format!(
            "{}: the ModelCheckpoint with save_top_k {why}",
            config_file.display()
        )))
    };
    if !checkpoint.save_weights_only {
        return refuse(
            "saves full checkpoints; average reads weights: set save_weights_only = true",
        );
    }
    if !checkpoint.save_freq.is_epoch() {
        return refuse(
            "saves every N batches; average finds checkpoints by epoch: use save_freq = \"epoch\"",
        );
    }
    Ok(checkpoint)
}

/// The checkpoints still on disk, best first by the callback's monitor
/// as `save_top_k` ranked them (NaN last; a tie keeps the earlier epoch first).
fn ranked(checkpoint: &ModelCheckpointConfig, run: &RunDir) -> CliResult<Vec<Kept>> {
    let direction = Monitor::new(
        "ModelCheckpoint",
        &checkpoint.monitor,
        &checkpoint.mode,
        0.0,
    )
    .resolve()
    .map_err(|e| CliError::usage(format!("ModelCheckpoint: {e}")))?;
    let history = History::read(&run.history())?;
    let mut kept: Vec<Kept> = Vec::new();
    for (epoch, logs) in history.epoch_logs() {
        let (Ok(path), Some(score)) = (
            checkpoint.epoch_file(epoch, &logs),
            logs.get(&checkpoint.monitor),
        ) else {
            continue;
        };
        let path = if path.is_relative() {
            run.root.join(path)
        } else {
            path
        };
        // A name without a changing key is overwritten: the file holds
        // the latest epoch.
        kept.retain(|k| k.path != path);
        if path.is_file() {
            kept.push(Kept { epoch, score, path });
        }
    }
    kept.sort_by(|a, b| top_k_order(direction, a.score, b.score));
    Ok(kept)
}
