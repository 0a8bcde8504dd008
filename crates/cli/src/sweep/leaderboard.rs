//! `--collect`: where every trial stands, and the leaderboard of the
//! finished ones (each trial counted once, from its own directory).

use std::collections::BTreeMap;
use std::path::Path;

use burnfit_callbacks::monitor::Direction;

use super::manifest::{self, Manifest};
use super::space::TrialParams;
use super::trial::{self, FAILED};
use crate::error::CliResult;
use crate::run_dir::{RunDir, RunState};

/// A finished (or pruned) trial.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialResult {
    /// Trial index.
    pub index: usize,
    /// Its parameters.
    pub params: TrialParams,
    /// Best monitored value.
    pub best: Option<f64>,
    /// 0-based epoch of the best value.
    pub best_epoch: Option<usize>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Why it stopped early, if it did.
    pub stop_reason: Option<String>,
}

/// Where a trial stands, as seen from the sweep directory.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Not started.
    Missing,
    /// A process holds its lock.
    Running,
    /// Stopped with an error (`failed.txt` holds it).
    Failed(String),
    /// Stopped (killed, interrupted) and resumable from a backup, or
    /// stopped before its first backup (it starts again).
    Interrupted,
    /// Finished (or pruned).
    Finished(Box<TrialResult>),
}

/// The status of trial `index`.
pub fn status(manifest: &Manifest, dir: &Path, index: usize) -> Status {
    let run_dir = manifest::trial_dir(dir, index);
    if RunDir::check_unlocked(&run_dir).is_err() {
        return Status::Running;
    }
    let backups = run_dir.join("backup");
    match RunDir::inspect(&run_dir, &backups) {
        RunState::Absent | RunState::Empty | RunState::Foreign => Status::Missing,
        RunState::Finished => match (RunDir { root: run_dir }).read_summary() {
            Ok(summary) => Status::Finished(Box::new(TrialResult {
                index,
                params: manifest.params(index),
                best: summary.best_value,
                best_epoch: summary.best_epoch,
                epochs_run: summary.epochs_run,
                stop_reason: summary.stop_reason,
            })),
            Err(e) => Status::Failed(e.message().to_string()),
        },
        RunState::Unfinished { .. } => match std::fs::read_to_string(run_dir.join(FAILED)) {
            Ok(message) => Status::Failed(message.trim().to_string()),
            Err(_) => Status::Interrupted,
        },
    }
}

/// Every trial's status, the leaderboard of the finished ones, and a
/// report of the others. Returns the finished trials, best first.
pub fn collect(manifest: &Manifest, dir: &Path) -> CliResult<Vec<TrialResult>> {
    let mut results = Vec::new();
    let mut others: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for index in 0..manifest.trials.len() {
        match status(manifest, dir, index) {
            Status::Finished(result) => results.push(*result),
            Status::Missing => others.entry("missing").or_default().push(index.to_string()),
            Status::Running => others.entry("running").or_default().push(index.to_string()),
            Status::Interrupted => others
                .entry("interrupted (resumable)")
                .or_default()
                .push(index.to_string()),
            Status::Failed(why) => others
                .entry("failed")
                .or_default()
                .push(format!("{index} ({why})")),
        }
    }
    let maximize =
        crate::fit::monitor_direction(&manifest.monitor, &manifest.mode) == Direction::Max;
    // The parameters' names from the plan, so that a leaderboard with no
    // finished trial yet has their columns too.
    let keys: Vec<String> = if manifest.trials.is_empty() {
        Vec::new()
    } else {
        manifest.params(0).into_iter().map(|(k, _)| k).collect()
    };
    write_leaderboard(dir, &manifest.monitor, maximize, &keys, &mut results)?;
    let pruned = results
        .iter()
        .filter(|r| r.stop_reason.as_deref().is_some_and(trial::is_pruned))
        .count();
    println!(
        "sweep: {} of {} trials finished ({pruned} pruned)",
        results.len(),
        manifest.trials.len()
    );
    for (what, trials) in others {
        println!("sweep: {what}: {}", trials.join(", "));
    }
    Ok(results)
}

/// Writes `leaderboard.csv` and `leaderboard.md` (best first, a column
/// per parameter of `keys`) and prints the Markdown table.
pub fn write_leaderboard(
    dir: &Path,
    monitor: &str,
    maximize: bool,
    keys: &[String],
    results: &mut [TrialResult],
) -> CliResult<()> {
    results.sort_by(|a, b| {
        let key = |r: &TrialResult| r.best.filter(|v| v.is_finite());
        match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                if maximize {
                    y.total_cmp(&x)
                } else {
                    x.total_cmp(&y)
                }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.index.cmp(&b.index),
        }
    });
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["rank".to_string(), "trial".to_string()];
    header.extend(keys.iter().cloned());
    header.extend([
        format!("best_{monitor}"),
        "best_epoch".into(),
        "epochs_run".into(),
        "pruned".into(),
    ]);
    csv.write_record(&header).expect("csv in memory");
    let mut md = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        vec![" --- "; header.len()].join("|")
    );
    for (rank, r) in results.iter().enumerate() {
        let values: BTreeMap<&str, String> = r
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        let mut row = vec![(rank + 1).to_string(), r.index.to_string()];
        row.extend(
            keys.iter()
                .map(|k| values.get(k.as_str()).cloned().unwrap_or_default()),
        );
        row.push(
            r.best
                .map(|v| format!("{v:.6}"))
                .unwrap_or_else(|| "NA".into()),
        );
        row.push(
            r.best_epoch
                .map(|e| (e + 1).to_string())
                .unwrap_or_else(|| "NA".into()),
        );
        row.push(r.epochs_run.to_string());
        row.push(
            r.stop_reason
                .as_deref()
                .is_some_and(super::trial::is_pruned)
                .to_string(),
        );
        csv.write_record(&row).expect("csv in memory");
        md.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    let bytes = csv.into_inner().expect("csv in memory");
    burnfit_callbacks::atomic::write_atomic(&dir.join("leaderboard.csv"), &bytes)?;
    burnfit_callbacks::atomic::write_atomic(&dir.join("leaderboard.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
}
