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

/// Where a run was interrupted and resumed, in plot coordinates (the end
/// of 0-based epoch `e` is at x = e + 1).
fn resume_positions(run: &RunDir) -> Vec<f64> {
    run.read_resumes()
        .iter()
        .map(|r| {
            if r.epoch_ended {
                (r.epoch + 1) as f64
            } else {
                let fraction = r
                    .steps_per_epoch
                    .filter(|&s| s > 0)
                    .map_or(0.0, |s| r.batches_done as f64 / s as f64);
                r.epoch as f64 + fraction.min(1.0)
            }
        })
        .collect()
}

/// Writes plots/training_curves.png and .svg for a run, each atomically
/// (drawn to a temporary file, then renamed), so a reader never sees half
/// a plot. `interrupted_at` marks where a run just stopped, in epochs.
pub fn render_plots(run: &RunDir) -> CliResult<Vec<PathBuf>> {
    render_plots_marked(run, None)
}

/// [`render_plots`], with the position of an interruption marked.
pub fn render_plots_marked(run: &RunDir, interrupted_at: Option<f64>) -> CliResult<Vec<PathBuf>> {
    let history = History::read(&run.history())?;
    if history.epochs.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no epochs to plot",
            run.history().display()
        )));
    }
    let marks = Marks {
        summary: run.read_summary().ok(),
        resumes: resume_positions(run),
        interrupted_at,
    };
    register_font();
    let dir = run.plots();
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{}: cannot create the plots folder: a file of that name is in the way",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", dir.display())))?;
    let size = panel_size(&history);
    write_png_and_svg(
        &dir,
        "training_curves",
        size,
        |area| draw(area, &history, &marks),
        |area| draw(area, &history, &marks),
    )
}

/// Writes `dir/<stem>.png` and `dir/<stem>.svg` of `size` pixels, each drawn
/// into a temporary file renamed into place, so that a reader never sees
/// half a plot and a failed drawing leaves the old one.
pub(crate) fn write_png_and_svg(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    draw_png: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> CliResult<()>,
    draw_svg: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> CliResult<()>,
) -> CliResult<Vec<PathBuf>> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    write_through_temp(&png, |temp| {
        let area = BitMapBackend::new(temp, size).into_drawing_area();
        draw_png(&area).and_then(|()| area.present().map_err(plot_error))
    })?;
    write_through_temp(&svg, |temp| {
        let area = SVGBackend::new(temp, size).into_drawing_area();
        draw_svg(&area).and_then(|()| area.present().map_err(plot_error))
    })?;
    Ok(vec![png, svg])
}

/// Runs `render` on a temporary name next to `target`, then renames it into
/// place; on failure the temporary file is removed.
fn write_through_temp(target: &Path, render: impl FnOnce(&Path) -> CliResult<()>) -> CliResult<()> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = target.with_file_name(format!(".tmp-{name}"));
    // Created here first, so that a folder that cannot be written to is
    // reported as such (the plotting library's error names neither).
    std::fs::File::create(&temp)
        .map_err(|e| CliError::usage(format!("{}: cannot write: {e}", target.display())))?;
    if let Err(e) = render(&temp) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::rename(&temp, target).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        CliError::usage(format!("{}: cannot write: {e}", target.display()))
    })
}

/// What the plots mark besides the curves.
struct Marks {
    summary: Option<Summary>,
    resumes: Vec<f64>,
    interrupted_at: Option<f64>,
}

fn panel_size(history: &History) -> (u32, u32) {
    let panels =
        history.metric_bases().len() + usize::from(history.columns.contains_key("learning_rate"));
    (1100, 300 * panels.max(1) as u32)
}

pub(crate) fn plot_error<E: std::fmt::Display>(e: E) -> CliError {
    CliError::usage(format!("cannot draw the plot: {e}"))
}

/// A legend entry: a line, a dot-line or a marker.
#[derive(Clone, Copy)]
enum Key {
    Line(RGBColor),
    Rule(RGBColor),
    Triangle(RGBColor),
}

/// Ticks on the epoch axis: whole epochs only, at most about 12 of them.
fn epoch_label_count(x_max: usize) -> usize {
    x_max.clamp(1, 12)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    history: &History,
    marks: &Marks,
) -> CliResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_error)?;
    let bases = history.metric_bases();
    let has_lr = history.columns.contains_key("learning_rate");
    let panels = root.split_evenly((bases.len() + usize::from(has_lr), 1));
    let x_max = history.epochs.last().copied().unwrap_or(0) + 1;
    let x_range = 0.5f64..x_max as f64 + 0.5;
    let best_epoch = marks.summary.as_ref().and_then(|s| s.best_epoch);
    let stop_epoch = marks
        .summary
        .as_ref()
        .filter(|s| s.stop_reason.is_some())
        .map(|s| s.epochs_run.saturating_sub(1));
    let cuts = history.lr_cuts();
    let epoch_formatter = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };

    let mut panel_areas = Vec::new();
    for panel in panels.iter() {
        // The curves on the left, their legend in a column of its own on the
        // right, so that it never covers a curve.
        let (plot, legend) = panel.split_horizontally(panel.dim_in_pixel().0 - 200);
        panel_areas.push((plot, legend));
    }

    for ((plot, legend), base) in panel_areas.iter().zip(&bases) {
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
        let mut chart = ChartBuilder::on(plot)
            .caption(base.as_str(), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(x_range.clone(), lo..hi)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(epoch_label_count(x_max) + 1)
            .x_label_formatter(&epoch_formatter)
            .y_labels(6)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;
        let mut keys: Vec<(Key, String)> = Vec::new();
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
                    .map_err(plot_error)?;
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(plot_error)?;
                keys.push((Key::Line(color), label.to_string()));
            }
        }
        let mut rules: Vec<(f64, RGBColor, &str)> = Vec::new();
        if let Some(best) = best_epoch {
            rules.push(((best + 1) as f64, GREEN, "best checkpoint"));
        }
        if let Some(stop) = stop_epoch {
            rules.push(((stop + 1) as f64, BLACK, "early stop"));
        }
        for cut in &cuts {
            rules.push(((*cut + 1) as f64, MAGENTA, "LR cut"));
        }
        for (x, color, label) in &rules {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, lo), (*x, hi)],
                    color.mix(0.7).stroke_width(1),
                )))
                .map_err(plot_error)?;
            if !keys.iter().any(|(_, l)| l == label) {
                keys.push((Key::Rule(*color), label.to_string()));
            }
        }
        draw_axis_marks(&mut chart, marks, lo, &mut keys)?;
        draw_legend(legend, &keys)?;
    }

    if has_lr {
        let lr = &history.columns["learning_rate"];
        let finite: Vec<f64> = lr
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(0.0, f64::max);
        let (plot, legend) = panel_areas.last().expect("an LR panel");
        let points: Vec<(f64, f64)> = history
            .epochs
            .iter()
            .zip(lr)
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(e, v)| ((*e + 1) as f64, *v))
            .collect();
        let mut keys = vec![(Key::Line(MAGENTA), "learning rate".to_string())];
        if !finite.is_empty() && hi / lo >= 10.0 {
            // Several decades: a log axis with a label at each power of ten.
            let (lo_exp, hi_exp) = (lo.log10().floor(), hi.log10().ceil());
            let mut chart = ChartBuilder::on(plot)
                .caption("learning rate", ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(80)
                .build_cartesian_2d(
                    x_range.clone(),
                    (10f64.powf(lo_exp)..10f64.powf(hi_exp)).log_scale(),
                )
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epoch_label_count(x_max) + 1)
                .x_label_formatter(&epoch_formatter)
                .y_labels((hi_exp - lo_exp) as usize + 1)
                .y_label_formatter(&|v| {
                    let e = v.log10();
                    if (e - e.round()).abs() < 1e-6 {
                        format!("1e{}", e.round() as i32)
                    } else {
                        String::new()
                    }
                })
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            chart
                .draw_series(LineSeries::new(points, MAGENTA.stroke_width(2)))
                .map_err(plot_error)?;
            draw_axis_marks(&mut chart, marks, 10f64.powf(lo_exp), &mut keys)?;
        } else {
            // Less than a decade (a constant rate, a few cuts): a linear
            // axis whose labels have just enough digits to differ.
            let (lo, hi) = if finite.is_empty() {
                (0.0, 1.0)
            } else {
                let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-12);
                ((lo - pad).max(0.0), hi + pad)
            };
            let step = (hi - lo) / 5.0;
            let digits = (-(step.log10().floor()) as i32).max(0) as usize + 1;
            let mut chart = ChartBuilder::on(plot)
                .caption("learning rate", ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(80)
                .build_cartesian_2d(x_range.clone(), lo..hi)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epoch_label_count(x_max) + 1)
                .x_label_formatter(&epoch_formatter)
                .y_labels(5)
                .y_label_formatter(&|v| format!("{v:.digits$}"))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            chart
                .draw_series(LineSeries::new(points, MAGENTA.stroke_width(2)))
                .map_err(plot_error)?;
            draw_axis_marks(&mut chart, marks, lo, &mut keys)?;
        }
        draw_legend(legend, &keys)?;
    }
    Ok(())
}

/// Triangles on the epoch axis where the run was resumed after an
/// interruption, and where it was just interrupted.
fn draw_axis_marks<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    marks: &Marks,
    bottom: f64,
    keys: &mut Vec<(Key, String)>,
) -> CliResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    let groups = [
        (&marks.resumes[..], BLUE, "resumed here"),
        (marks.interrupted_at.as_slice(), RED, "interrupted here"),
    ];
    for (positions, color, label) in groups {
        if positions.is_empty() {
            continue;
        }
        chart
            .draw_series(positions.iter().map(|&x| {
                EmptyElement::at((x, bottom)) + TriangleMarker::new((0, -8), 8, color.filled())
            }))
            .map_err(plot_error)?;
        keys.push((Key::Triangle(color), label.to_string()));
    }
    Ok(())
}

/// The legend of one panel, in its own column.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    keys: &[(Key, String)],
) -> CliResult<()>
where
    DB::ErrorType: 'static,
{
    let style = ("sans-serif", 14).into_font().color(&BLACK);
    for (row, (key, label)) in keys.iter().enumerate() {
        let y = 48 + row as i32 * 22;
        match *key {
            Key::Line(color) => {
                area.draw(&PathElement::new(
                    vec![(8, y), (32, y)],
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?;
                area.draw(&Circle::new((20, y), 3, color.filled()))
                    .map_err(plot_error)?;
            }
            Key::Rule(color) => {
                area.draw(&PathElement::new(
                    vec![(20, y - 8), (20, y + 8)],
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?;
            }
            Key::Triangle(color) => {
                area.draw(&TriangleMarker::new((20, y), 8, color.filled()))
                    .map_err(plot_error)?;
            }
        }
        area.draw(&Text::new(label.clone(), (40, y - 8), style.clone()))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Makes the bundled font the plots' `sans-serif`.
pub(crate) fn register_font() {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
}

/// `(low, high)` of `values`, padded by 8%.
pub(crate) fn bounds(values: &[f64]) -> (f64, f64) {
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
