//! `burnfit lr-find`: the learning-rate range test on a config's model and
//! data, with its plot and a suggested rate.

use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::{
    LearningRateFinder, LearningRateFinderConfig, LrFinderResult, SKIP_BEGIN, SUGGESTION_RULE,
};
use plotters::prelude::*;

use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::report::{count, plot_error};
use crate::run_dir::RunDir;
use crate::train;
use crate::{RunFlags, TrainArgs};

/// `burnfit lr-find` options.
#[derive(clap::Args, Debug, Clone)]
pub struct LrFindArgs {
    /// The config file: its model, data, optimizer and batch size.
    pub config: PathBuf,
    /// The first rate tried.
    #[arg(long, default_value_t = 1e-7)]
    pub min_lr: f64,
    /// The last rate tried.
    #[arg(long, default_value_t = 10.0)]
    pub max_lr: f64,
    /// Optimizer steps in the sweep.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// The flags every training command takes (`--epochs` does not apply:
    /// `--steps` sets the length).
    #[command(flatten)]
    pub run: RunFlags,
    /// Where the plot and the table go (default runs/<name>-lr-find-<timestamp>/).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

/// The files `lr-find` writes in its run directory.
pub struct LrFindFiles {
    /// `lr_find.csv`: step, rate, smoothed and raw loss; a plain CSV table
    /// (a header and one row a step).
    pub table: PathBuf,
    /// `lr_find.json`: the suggested rate (`null` when there is none), the
    /// rule that chose it, the steps run and whether the loss diverged.
    pub suggestion: PathBuf,
    /// `plots/lr_find.png` and `.svg`.
    pub plots: Vec<PathBuf>,
}

/// The finder's refusal of a parameter, named by the flag that set it
/// (`--steps 1: must be at least 2`).
fn finder_error(args: &LrFindArgs, error: burnfit_core::CallbackError) -> CliError {
    let flag = match &error {
        burnfit_core::CallbackError::InvalidParameter { param, message, .. } => match *param {
            "num_training_steps" => Some((format!("--steps {}", args.steps), message)),
            "min_lr" => Some((format!("--min-lr {}", args.min_lr), message)),
            "max_lr" => Some((format!("--max-lr {}", args.max_lr), message)),
            _ => None,
        },
        _ => None,
    };
    match flag {
        Some((flag, message)) => CliError::usage(format!(
            "lr-find: {flag}: {}",
            message.replace("min_lr", "--min-lr")
        )),
        None => CliError::usage(format!(
            "lr-find: {error} (see --min-lr, --max-lr, --steps)"
        )),
    }
}

/// `burnfit lr-find`: the range test alone in a run directory of its own,
/// its table, suggestion and plots, and the rate to train with.
pub fn lr_find_command(args: &LrFindArgs) -> CliResult<()> {
    let finder_config = LearningRateFinderConfig {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        num_training_steps: args.steps,
        ..Default::default()
    };
    let finder = LearningRateFinder::new(finder_config).map_err(|e| finder_error(args, e))?;
    let handle = finder.handle();
    if args.run.epochs.is_some() {
        return Err(CliError::usage(
            "lr-find: --epochs does not apply (the range test runs --steps optimizer steps)",
        ));
    }
    // Held until the files are written: the run stays locked.
    let started = run_range_test(args, finder)?;
    let result = handle
        .lock()
        .expect("lr finder")
        .take()
        .ok_or_else(|| CliError::failed("lr-find: training ended before the range test ran"))?;
    let files = write_outputs(&started.run.root, &result)?;
    print_outputs(&result, &files);
    suggest(args, &result)
}

/// Trains with `finder` alone for `--steps` steps (no other callback
/// changes the rate or stops, no averaging, nothing written but the run's
/// config and the test). Returns the run, still locked.
fn run_range_test(args: &LrFindArgs, finder: LearningRateFinder) -> CliResult<train::Started> {
    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => {
            let config = Config::load(&args.config, &args.run.sets)?;
            RunDir::choose(&format!("{}-lr-find", config.run_name(&args.config)), None)
        }
    };
    let train_args = TrainArgs {
        config: args.config.clone(),
        run: args.run.clone(),
        run_dir: Some(run_dir),
        ..Default::default()
    };
    let mut setup = train::prepare(&train_args)?;
    let data = train::load(&mut setup)?;
    let config = &mut setup.config;
    let steps_per_epoch = data.sizes().0.div_ceil(config.training.batch_size).max(1);
    config.training.epochs = args.steps.div_ceil(steps_per_epoch).max(1);
    config.bare_training();
    setup.extra_callbacks.push(Box::new(finder));

    let started = train::start(&setup)?;
    let run = &started.run;
    println!("burnfit: run directory {}", run.root.display());
    println!(
        "burnfit: learning-rate range test, {} from {:e} to {:e} ({} backend)",
        count(args.steps, "step"),
        args.min_lr,
        args.max_lr,
        setup.backend.name
    );
    match train::train(&mut setup, run, data)? {
        train::Ended::Finished(_) => Ok(started),
        train::Ended::Interrupted { .. } => Err(CliError::interrupted(
            "burnfit lr-find: interrupted; the model was not changed, run it again",
            crate::interrupt::received().map_or(130, |s| s.exit_code()),
        )),
    }
}

/// What ran and where its files are.
fn print_outputs(result: &LrFinderResult, files: &LrFindFiles) {
    println!(
        "burnfit: {} run{}",
        count(result.lrs.len(), "step"),
        if result.diverged {
            format!(
                ", stopped when the loss diverged at lr {:.3e}",
                result.lrs.last().copied().unwrap_or(f64::NAN)
            )
        } else {
            String::new()
        }
    );
    println!("burnfit: loss by learning rate: {}", files.table.display());
    println!(
        "burnfit: the suggestion, as JSON: {}",
        files.suggestion.display()
    );
    for plot in &files.plots {
        println!("burnfit: plot {}", plot.display());
    }
}

/// The suggested rate and the command that trains with it, or why there
/// is none (an error: the range test gave no rate to use).
fn suggest(args: &LrFindArgs, result: &LrFinderResult) -> CliResult<()> {
    match result.suggestion {
        Some(lr) => {
            println!("burnfit: suggested learning rate {lr:.3e} ({SUGGESTION_RULE})");
            println!(
                "burnfit: train with it: {} train {}{} --set optimizer.lr={lr:.3e}",
                crate::program(),
                crate::shell_word(&args.config.display().to_string()),
                args.run.shown()
            );
            Ok(())
        }
        None if result.diverged => Err(CliError::failed(format!(
            "lr-find: no suggestion: only {} ran before the loss diverged; lower --min-lr \
             or --max-lr, or raise --steps",
            count(result.lrs.len(), "step")
        ))),
        None => Err(CliError::failed(format!(
            "lr-find: no suggestion from the {} run: the rule leaves out the first \
             {SKIP_BEGIN} steps and needs the smoothed loss to fall for at least 2 steps after \
             them; raise --steps (or --max-lr, if the loss did not fall)",
            count(result.lrs.len(), "step")
        ))),
    }
}

/// Writes `lr_find.csv`, `lr_find.json` and the plots under `root`.
pub fn write_outputs(root: &Path, result: &LrFinderResult) -> CliResult<LrFindFiles> {
    let table = root.join("lr_find.csv");
    let mut text = String::from("step,learning_rate,loss_smoothed,loss\n");
    for (i, ((lr, smoothed), raw)) in result
        .lrs
        .iter()
        .zip(&result.losses)
        .zip(&result.raw_losses)
        .enumerate()
    {
        text.push_str(&format!("{i},{lr:e},{smoothed},{raw}\n"));
    }
    burnfit_callbacks::atomic::write_atomic(&table, text.as_bytes())?;
    // The suggestion beside the table, not in it: a comment line would be a
    // data row to an ordinary CSV reader.
    let suggestion = root.join("lr_find.json");
    let json = serde_json::json!({
        "suggested_lr": result.suggestion,
        "rule": SUGGESTION_RULE,
        "steps_run": result.lrs.len(),
        "diverged": result.diverged,
        "table": "lr_find.csv",
    });
    burnfit_callbacks::atomic::write_atomic(
        &suggestion,
        &serde_json::to_vec_pretty(&json).expect("json"),
    )?;
    let dir = root.join("plots");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", dir.display())))?;
    crate::report::register_font();
    let plots = crate::report::write_png_and_svg(
        &dir,
        "lr_find",
        (900, 560),
        |area| draw(area, result),
        |area| draw(area, result),
    )?;
    Ok(LrFindFiles {
        table,
        suggestion,
        plots,
    })
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    result: &LrFinderResult,
) -> CliResult<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(plot_error)?;
    let height = area.dim_in_pixel().1;
    let (area, footer) = area.split_vertically(height - 30);
    let points: Vec<(f64, f64)> = result
        .lrs
        .iter()
        .copied()
        .zip(result.losses.iter().copied())
        .filter(|(lr, loss)| *lr > 0.0 && loss.is_finite())
        .collect();
    if points.is_empty() {
        return Err(CliError::failed("lr-find: no finite loss to plot"));
    }
    let lo_lr = points.first().map_or(1e-8, |p| p.0);
    let hi_lr = points.last().map_or(1.0, |p| p.0).max(lo_lr * 10.0);
    // The divergence at the end would squash the curve: clip the y range at
    // four times the starting loss.
    let cap = points[0].1.abs() * 4.0;
    let shown: Vec<f64> = points.iter().map(|p| p.1.min(cap)).collect();
    let (lo, hi) = crate::report::bounds(&shown);
    let mut chart = ChartBuilder::on(&area)
        .caption("learning-rate range test", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((lo_lr..hi_lr).log_scale(), lo..hi)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("learning rate (log scale)")
        .y_desc("loss (smoothed)")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|&(lr, loss)| (lr, loss.min(cap))),
            BLUE.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label("smoothed loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    if let Some(lr) = result.suggestion {
        let at = points
            .iter()
            .min_by(|a, b| (a.0 - lr).abs().total_cmp(&(b.0 - lr).abs()))
            .map_or(lo, |p| p.1.min(cap));
        chart
            .draw_series(std::iter::once(Circle::new((lr, at), 7, RED.filled())))
            .map_err(plot_error)?
            .label(format!("suggestion {lr:.2e}"))
            .legend(|(x, y)| Circle::new((x + 9, y), 5, RED.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    footer
        .draw(&Text::new(
            format!("suggestion: {SUGGESTION_RULE}"),
            (14, 6),
            ("sans-serif", 12).into_font().color(&BLACK.mix(0.7)),
        ))
        .map_err(plot_error)?;
    Ok(())
}
