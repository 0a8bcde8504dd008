//! `burnfit report` and what it reads: a run's per-epoch history
//! (`history.csv`) and the terminal summary; the training curves are
//! drawn in [`plot`].

mod plot;

use std::collections::BTreeMap;
use std::path::Path;

pub(crate) use plot::{bounds, plot_error, register_font, write_png_and_svg};
pub use plot::{render_plots, render_plots_marked};

use crate::error::{CliError, CliResult};
use crate::run_dir::{RunDir, Summary};

/// The per-epoch history of a run, read from history.csv.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// 0-based epochs.
    pub epochs: Vec<usize>,
    /// Column name → values (NaN for `NA`).
    pub columns: BTreeMap<String, Vec<f64>>,
}

/// A row of a CSV log that cannot be read, as one line: the file and line,
/// what is wrong with it and what to do.
fn unreadable_row(path: &Path, error: &csv::Error) -> CliError {
    // The record's index counts the header as record 0 (a log has no
    // field spanning lines); csv's own line number lags by one here.
    let line = error
        .position()
        .map(|p| format!(":{}", p.record() + 1))
        .unwrap_or_default();
    let what = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields, the header {expected_len}"),
        _ => error.to_string(),
    };
    CliError::usage(format!(
        "{}{line}: {what}; the log was changed or damaged after training: fix or remove that \
         row",
        path.display()
    ))
}

impl History {
    /// Reads a Keras-format CSV log.
    pub fn read(path: &Path) -> CliResult<Self> {
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut history = History::default();
        for record in reader.records() {
            let record = record.map_err(|e| unreadable_row(path, &e))?;
            for (name, field) in headers.iter().zip(record.iter()) {
                let value: f64 = field.trim().parse().unwrap_or(f64::NAN);
                if name == "epoch" {
                    history.epochs.push(value as usize);
                } else {
                    history.columns.entry(name.clone()).or_default().push(value);
                }
            }
        }
        Ok(history)
    }

    /// Each epoch's logs (NaN values, from `NA`, left out).
    pub fn epoch_logs(&self) -> Vec<(usize, burnfit_callbacks::Logs)> {
        self.epochs
            .iter()
            .enumerate()
            .map(|(row, epoch)| {
                let logs = self
                    .columns
                    .iter()
                    .filter(|(_, values)| values[row].is_finite())
                    .map(|(name, values)| (name.clone(), values[row]))
                    .collect();
                (*epoch, logs)
            })
            .collect()
    }

    /// Metric names without the `val_` prefix, learning_rate excluded, loss first.
    pub fn metric_bases(&self) -> Vec<String> {
        let mut bases: Vec<String> = self
            .columns
            .keys()
            .map(|k| k.strip_prefix("val_").unwrap_or(k).to_string())
            .filter(|k| k != "learning_rate")
            .collect();
        bases.sort();
        bases.dedup();
        bases.sort_by_key(|b| (b != "loss", b.clone()));
        bases
    }

    /// Epochs (0-based) at whose end the learning rate was cut.
    pub fn lr_cuts(&self) -> Vec<usize> {
        let Some(lr) = self.columns.get("learning_rate") else {
            return Vec::new();
        };
        lr.windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] < w[0])
            .map(|(i, _)| self.epochs[i])
            .collect()
    }
}

/// `burnfit report`: re-draws the plots and prints a summary table.
pub fn report_command(run_dir: &Path) -> CliResult<()> {
    let run = RunDir::open(run_dir)?;
    if !run.history().exists() {
        return Err(no_history(&run));
    }
    let history = History::read(&run.history())?;
    if history.epochs.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no epochs to report",
            run.history().display()
        )));
    }
    let summary = run.read_summary().ok();
    print!("{}", summary_table(&history, summary.as_ref()));
    // A run that cannot be written to (read-only, archived) still gets its
    // table, as `eval` still evaluates it.
    match render_plots(&run) {
        Ok(files) => {
            for file in files {
                println!("plot: {}", file.display());
            }
        }
        Err(e) => eprintln!("warning: the plots were not written: {}", e.message()),
    }
    Ok(())
}

/// Why a run has no `history.csv`, and where its results are instead:
/// everything `report` shows (the table, the plots) is drawn from it.
fn no_history(run: &RunDir) -> CliError {
    let history = run.history();
    let trained_without_csv = run.read_config().is_ok_and(|c| !c.outputs.csv);
    if trained_without_csv {
        let summary = run.summary();
        let instead = if summary.is_file() {
            format!(" (its final and best metrics are in {})", summary.display())
        } else {
            String::new()
        };
        CliError::usage(format!(
            "{}: not there: this run was trained with outputs.csv = false, so it has no \
             per-epoch history to report{instead}; train with outputs.csv = true to get a report",
            history.display(),
        ))
    } else {
        CliError::usage(format!(
            "{}: not there: the run has not finished an epoch yet, or the file was removed; \
             report needs the per-epoch history the run writes at each epoch's end",
            history.display()
        ))
    }
}

/// `n` and the noun, plural unless `n` is 1: `1 epoch`, `2 epochs`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A compact table: one row per epoch, one column per metric.
pub fn summary_table(history: &History, summary: Option<&Summary>) -> String {
    let names: Vec<&String> = history.columns.keys().collect();
    let mut out = String::new();
    out.push_str(&format!("{:>5}", "epoch"));
    for name in &names {
        out.push_str(&format!(" {:>14}", name));
    }
    out.push('\n');
    for (row, epoch) in history.epochs.iter().enumerate() {
        let marker = match summary {
            Some(s) if s.best_epoch == Some(*epoch) => '*',
            _ => ' ',
        };
        out.push_str(&format!("{:>4}{marker}", epoch + 1));
        for name in &names {
            let v = history.columns[*name][row];
            out.push_str(&format!(" {:>14.6}", v));
        }
        out.push('\n');
    }
    if let Some(s) = summary {
        out.push_str(&format!(
            "{} of {}, {:.1}s, {:.0} samples/s on {}{}\n",
            count(s.epochs_run, "epoch"),
            s.epochs_planned,
            s.wall_time_s,
            s.train_samples_per_s,
            s.backend,
            s.stop_reason
                .as_ref()
                .map(|r| format!("; stopped: {r}"))
                .unwrap_or_default()
        ));
        if let (Some(v), Some(e)) = (s.best_value, s.best_epoch) {
            out.push_str(&format!(
                "best {} = {v:.6} at epoch {} (*)\n",
                s.monitor,
                e + 1
            ));
        }
    }
    out
}
