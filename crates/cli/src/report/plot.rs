//! The training curves of a run, `plots/training_curves.png` and `.svg`:
//! one panel per metric (train and validation, with the best checkpoint,
//! an early stop and learning-rate cuts as vertical rules) and one for the
//! learning rate, each with its legend in a column of its own, and
//! triangles on the epoch axis where the run was interrupted and resumed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::History;
use crate::error::{CliError, CliResult};
use crate::run_dir::{RunDir, Summary};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

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

/// The epoch axis every panel shares: 1-based epochs, ticks at whole
/// epochs only, at most about 12 of them.
struct EpochAxis {
    range: Range<f64>,
    labels: usize,
}

impl EpochAxis {
    fn of(history: &History) -> Self {
        let x_max = history.epochs.last().copied().unwrap_or(0) + 1;
        EpochAxis {
            range: 0.5..x_max as f64 + 0.5,
            labels: x_max.clamp(1, 12) + 1,
        }
    }

    /// A tick's label: the epoch at whole epochs, nothing between them.
    fn label(x: &f64) -> String {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    }
}

/// A panel with the legend column cut off its right side, so that the
/// legend never covers a curve.
type PanelAreas<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

fn plot_and_legend<DB: DrawingBackend>(panel: &DrawingArea<DB, Shift>) -> PanelAreas<DB> {
    panel.split_horizontally(panel.dim_in_pixel().0 - 200)
}

/// A vertical rule across the metric panels: where, its colour, its label.
type Rule = (f64, RGBColor, &'static str);

/// The best checkpoint, the early stop and each learning-rate cut, at the
/// end of their epochs.
fn rules(history: &History, marks: &Marks) -> Vec<Rule> {
    let summary = marks.summary.as_ref();
    let best = summary.and_then(|s| s.best_epoch);
    let stop = summary
        .filter(|s| s.stop_reason.is_some())
        .map(|s| s.epochs_run.saturating_sub(1));
    let at_end = |epoch: usize| (epoch + 1) as f64;
    let mut rules = Vec::new();
    if let Some(best) = best {
        rules.push((at_end(best), GREEN, "best checkpoint"));
    }
    if let Some(stop) = stop {
        rules.push((at_end(stop), BLACK, "early stop"));
    }
    for cut in history.lr_cuts() {
        rules.push((at_end(cut), MAGENTA, "LR cut"));
    }
    rules
}

/// `(epoch, value)` points of a column, for the values `keep` accepts.
fn epoch_points(history: &History, values: &[f64], keep: impl Fn(f64) -> bool) -> Vec<(f64, f64)> {
    history
        .epochs
        .iter()
        .zip(values)
        .filter(|(_, v)| keep(**v))
        .map(|(e, v)| ((*e + 1) as f64, *v))
        .collect()
}

/// A chart over the epoch axis and `y`, captioned, with its mesh drawn
/// (`y_labels` labels, by `y_label` where given, else plotters' own).
fn epoch_chart<'a, DB, Y>(
    plot: &'a DrawingArea<DB, Shift>,
    caption: &str,
    axis: &EpochAxis,
    y: Y,
    y_labels: usize,
    y_label: Option<&dyn Fn(&f64) -> String>,
) -> CliResult<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y::CoordDescType>>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(plot)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(axis.range.clone(), y)
        .map_err(plot_error)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("epoch")
        .x_labels(axis.labels)
        .x_label_formatter(&EpochAxis::label)
        .y_labels(y_labels)
        .label_style(("sans-serif", 14));
    if let Some(y_label) = y_label {
        mesh.y_label_formatter(y_label);
    }
    mesh.draw().map_err(plot_error)?;
    Ok(chart)
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
    let axis = EpochAxis::of(history);
    let rules = rules(history, marks);
    for (panel, base) in panels.iter().zip(&bases) {
        let (plot, legend) = plot_and_legend(panel);
        let keys = draw_metric(&plot, history, base, &axis, &rules, marks)?;
        draw_legend(&legend, &keys)?;
    }
    if has_lr {
        let (plot, legend) = plot_and_legend(panels.last().expect("an LR panel"));
        let keys = draw_learning_rate(&plot, history, &axis, marks)?;
        draw_legend(&legend, &keys)?;
    }
    Ok(())
}

/// The panel of one metric: its train and validation curves, the rules
/// and the axis marks. Returns the legend's keys.
fn draw_metric<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    history: &History,
    base: &str,
    axis: &EpochAxis,
    rules: &[Rule],
    marks: &Marks,
) -> CliResult<Vec<(Key, String)>>
where
    DB::ErrorType: 'static,
{
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
    let mut chart = epoch_chart(plot, base, axis, lo..hi, 6, None)?;
    let mut keys: Vec<(Key, String)> = Vec::new();
    for (series, color, label) in [(train, BLUE, "train"), (valid, RED, "validation")] {
        let Some(series) = series else { continue };
        let points = epoch_points(history, series, f64::is_finite);
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(plot_error)?;
        keys.push((Key::Line(color), label.to_string()));
    }
    for (x, color, label) in rules {
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
    Ok(keys)
}

/// The learning-rate panel: a log axis with a label at each power of ten
/// when the rate spans a decade or more; otherwise a linear axis whose
/// labels have just enough digits to differ. Returns the legend's keys.
fn draw_learning_rate<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    history: &History,
    axis: &EpochAxis,
    marks: &Marks,
) -> CliResult<Vec<(Key, String)>>
where
    DB::ErrorType: 'static,
{
    let points = epoch_points(history, &history.columns["learning_rate"], |v| {
        v.is_finite() && v > 0.0
    });
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let mut keys = vec![(Key::Line(MAGENTA), "learning rate".to_string())];
    let line = LineSeries::new(points.clone(), MAGENTA.stroke_width(2));
    if !points.is_empty() && hi / lo >= 10.0 {
        let (lo_exp, hi_exp) = (lo.log10().floor(), hi.log10().ceil());
        let (bottom, top) = (10f64.powf(lo_exp), 10f64.powf(hi_exp));
        let power_of_ten = |v: &f64| {
            let e = v.log10();
            if (e - e.round()).abs() < 1e-6 {
                format!("1e{}", e.round() as i32)
            } else {
                String::new()
            }
        };
        let labels = (hi_exp - lo_exp) as usize + 1;
        let y = (bottom..top).log_scale();
        let mut chart = epoch_chart(plot, "learning rate", axis, y, labels, Some(&power_of_ten))?;
        chart.draw_series(line).map_err(plot_error)?;
        draw_axis_marks(&mut chart, marks, bottom, &mut keys)?;
    } else {
        let (lo, hi) = if points.is_empty() {
            (0.0, 1.0)
        } else {
            let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-12);
            ((lo - pad).max(0.0), hi + pad)
        };
        let step = (hi - lo) / 5.0;
        let digits = (-(step.log10().floor()) as i32).max(0) as usize + 1;
        let fixed = |v: &f64| format!("{v:.digits$}");
        let mut chart = epoch_chart(plot, "learning rate", axis, lo..hi, 5, Some(&fixed))?;
        chart.draw_series(line).map_err(plot_error)?;
        draw_axis_marks(&mut chart, marks, lo, &mut keys)?;
    }
    Ok(keys)
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
