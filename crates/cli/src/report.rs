//! Training curves (PNG and SVG) and the terminal summary of a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{CliError, CliResult};
use crate::run_dir::{RunDir, Summary};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The per-epoch history of a run, read from history.csv.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// 0-based epochs.
    pub epochs: Vec<usize>,
    /// Column name → values (NaN for `NA`).
    pub columns: BTreeMap<String, Vec<f64>>,
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
            let record = record.map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
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

/// Writes plots/training_curves.png and .svg for a run.
pub fn render_plots(run: &RunDir) -> CliResult<Vec<PathBuf>> {
    let history = History::read(&run.history())?;
    if history.epochs.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no epochs to plot",
            run.history().display()
        )));
    }
    let summary = run.read_summary().ok();
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let png = run.plots().join("training_curves.png");
    let svg = run.plots().join("training_curves.svg");
    let size = panel_size(&history);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(&root, &history, summary.as_ref())?;
        root.present().map_err(plot_error)?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(&root, &history, summary.as_ref())?;
        root.present().map_err(plot_error)?;
    }
    Ok(vec![png, svg])
}

fn panel_size(history: &History) -> (u32, u32) {
    let panels =
        history.metric_bases().len() + usize::from(history.columns.contains_key("learning_rate"));
    (1000, 320 * panels.max(1) as u32)
}

fn plot_error<E: std::fmt::Display>(e: E) -> CliError {
    CliError::usage(format!("cannot draw the plot: {e}"))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    history: &History,
    summary: Option<&Summary>,
) -> CliResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_error)?;
    let bases = history.metric_bases();
    let has_lr = history.columns.contains_key("learning_rate");
    let panels = root.split_evenly((bases.len() + usize::from(has_lr), 1));
    let x_max = history.epochs.last().copied().unwrap_or(0) + 1;
    let best_epoch = summary.and_then(|s| s.best_epoch);
    let stop_epoch = summary
        .filter(|s| s.stop_reason.is_some())
        .map(|s| s.epochs_run.saturating_sub(1));
    let cuts = history.lr_cuts();

    for (panel, base) in panels.iter().zip(&bases) {
        let train = history.columns.get(base);
        let valid = history.columns.get(&format!("val_{base}"));
        let values: Vec<f64> = train
            .into_iter()
            .chain(valid)
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = bounds(&values);
        let mut chart = ChartBuilder::on(panel)
            .caption(base.as_str(), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5f64..x_max as f64 + 0.5, lo..hi)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;
        for (series, color, label) in [(train, BLUE, "train"), (valid, RED, "validation")] {
            if let Some(series) = series {
                let points: Vec<(f64, f64)> = history
                    .epochs
                    .iter()
                    .zip(series)
                    .filter(|(_, v)| v.is_finite())
                    .map(|(e, v)| ((*e + 1) as f64, *v))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(plot_error)?;
            }
        }
        let mut markers: Vec<(usize, RGBColor, &str)> = Vec::new();
        if let Some(best) = best_epoch {
            markers.push((best, GREEN, "best checkpoint"));
        }
        if let Some(stop) = stop_epoch {
            markers.push((stop, BLACK, "early stop"));
        }
        for cut in &cuts {
            markers.push((*cut, MAGENTA, "LR cut"));
        }
        let mut labelled = std::collections::BTreeSet::new();
        for (epoch, color, label) in markers {
            let x = (epoch + 1) as f64;
            let series = chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, lo), (x, hi)],
                    color.mix(0.7).stroke_width(1),
                )))
                .map_err(plot_error)?;
            if labelled.insert(label) {
                series.label(label).legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x + 10, y - 8), (x + 10, y + 8)],
                        color.stroke_width(2),
                    )
                });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;
    }

    if has_lr {
        let lr = &history.columns["learning_rate"];
        let finite: Vec<f64> = lr
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = finite
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-12);
        let hi = finite.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
        let panel = panels.last().expect("an LR panel");
        let mut chart = ChartBuilder::on(panel)
            .caption("learning rate", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5f64..x_max as f64 + 0.5, (lo / 2.0..hi * 2.0).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 14))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                history
                    .epochs
                    .iter()
                    .zip(lr)
                    .filter(|(_, v)| v.is_finite() && **v > 0.0)
                    .map(|(e, v)| ((*e + 1) as f64, *v)),
                MAGENTA.stroke_width(2),
            ))
            .map_err(plot_error)?;
    }
    Ok(())
}

fn bounds(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(1e-6);
    (lo - pad, hi + pad)
}

/// `burnfit report`: re-draws the plots and prints a summary table.
pub fn report_command(run_dir: &Path) -> CliResult<()> {
    let run = RunDir::open(run_dir)?;
    let history = History::read(&run.history())?;
    let summary = run.read_summary().ok();
    let files = render_plots(&run)?;
    print!("{}", summary_table(&history, summary.as_ref()));
    for file in files {
        println!("plot: {}", file.display());
    }
    Ok(())
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
            "{} epochs of {}, {:.1}s, {:.0} samples/s on {}{}\n",
            s.epochs_run,
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
