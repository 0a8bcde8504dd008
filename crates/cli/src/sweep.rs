//! `burnfit sweep`: one training per hyperparameter combination, with
//! median-stopping pruning, a leaderboard, and resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::MedianStopping;
use burnfit_callbacks::monitor::Direction;
use burnfit_callbacks::tensorboard::HParamValue;

use crate::TrainArgs;
use crate::config::{BackendChoice, Config};
use crate::error::{CliError, CliResult};
use crate::report::History;
use crate::run_dir::{RunDir, RunState};
use crate::train;

/// Options of `burnfit sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The base config.
    pub config: PathBuf,
    /// A searched parameter: `key.path=[v1,v2,...]`, `key.path=loguniform(lo,hi)`
    /// or `key.path=uniform(lo,hi)` (repeatable).
    #[arg(long = "param", value_name = "KEY.PATH=VALUES", required = true)]
    pub params: Vec<String>,
    /// Draw this many random combinations instead of the full grid.
    #[arg(long)]
    pub random: Option<usize>,
    /// Seed of the random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run at most this many trials (in order).
    #[arg(long)]
    pub max_trials: Option<usize>,
    /// The sweep directory (default runs/<config name>-sweep).
    #[arg(long)]
    pub sweep_dir: Option<PathBuf>,
    /// Backend for every trial.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Override training.epochs for every trial.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Directory with the dataset files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Turn off median-stopping pruning.
    #[arg(long)]
    pub no_pruning: bool,
}

/// One searched dimension.
#[derive(Clone, Debug)]
enum Space {
    Values(Vec<toml::Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
}

fn parse_param(spec: &str) -> CliResult<(String, Space)> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| {
        CliError::usage(format!(
            "--param {spec}: expected key.path=[v1,v2] or key.path=loguniform(lo,hi)"
        ))
    })?;
    let raw = raw.trim();
    let range = |name: &str| -> Option<CliResult<(f64, f64)>> {
        let inner = raw
            .strip_prefix(name)?
            .strip_prefix('(')?
            .strip_suffix(')')?;
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        Some(match parts.as_slice() {
            [lo, hi] => match (lo.parse::<f64>(), hi.parse::<f64>()) {
                (Ok(lo), Ok(hi)) if lo < hi => Ok((lo, hi)),
                _ => Err(CliError::usage(format!(
                    "--param {spec}: {name}(lo, hi) needs two numbers with lo < hi"
                ))),
            },
            _ => Err(CliError::usage(format!(
                "--param {spec}: {name}(lo, hi) needs two numbers"
            ))),
        })
    };
    let space = if let Some(r) = range("loguniform") {
        let (lo, hi) = r?;
        if lo <= 0.0 {
            return Err(CliError::usage(format!(
                "--param {spec}: loguniform needs lo > 0"
            )));
        }
        Space::LogUniform(lo, hi)
    } else if let Some(r) = range("uniform") {
        let (lo, hi) = r?;
        Space::Uniform(lo, hi)
    } else {
        match crate::config::parse_value(raw) {
            toml::Value::Array(values) if !values.is_empty() => Space::Values(values),
            _ => {
                return Err(CliError::usage(format!(
                    "--param {spec}: values must be a list like [1e-3, 3e-4] or loguniform(lo, hi)"
                )));
            }
        }
    };
    Ok((key.trim().to_string(), space))
}

/// SplitMix64: small, seedable, enough for drawing trials.
struct Draw(u64);

impl Draw {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn trials(
    space: &[(String, Space)],
    random: Option<usize>,
    seed: u64,
) -> CliResult<Vec<Vec<(String, toml::Value)>>> {
    match random {
        None => {
            let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
            for (key, dim) in space {
                let Space::Values(values) = dim else {
                    return Err(CliError::usage(format!(
                        "--param {key}: a range needs --random N (a grid needs a list of values)"
                    )));
                };
                out = out
                    .into_iter()
                    .flat_map(|trial| {
                        values.iter().map(move |v| {
                            let mut t = trial.clone();
                            t.push((key.clone(), v.clone()));
                            t
                        })
                    })
                    .collect();
            }
            Ok(out)
        }
        Some(n) => {
            let mut draw = Draw(seed);
            Ok((0..n)
                .map(|_| {
                    space
                        .iter()
                        .map(|(key, dim)| {
                            let u = draw.next_f64();
                            let value = match dim {
                                Space::Values(values) => values
                                    [((u * values.len() as f64) as usize).min(values.len() - 1)]
                                .clone(),
                                Space::Uniform(lo, hi) => toml::Value::Float(lo + u * (hi - lo)),
                                Space::LogUniform(lo, hi) => {
                                    toml::Value::Float((lo.ln() + u * (hi.ln() - lo.ln())).exp())
                                }
                            };
                            (key.clone(), value)
                        })
                        .collect()
                })
                .collect())
        }
    }
}

fn hparam(value: &toml::Value) -> HParamValue {
    match value {
        toml::Value::Integer(i) => HParamValue::Number(*i as f64),
        toml::Value::Float(f) => HParamValue::Number(*f),
        toml::Value::Boolean(b) => HParamValue::Bool(*b),
        toml::Value::String(s) => HParamValue::Text(s.clone()),
        other => HParamValue::Text(other.to_string()),
    }
}

/// A finished (or pruned) trial.
#[derive(Clone, Debug)]
pub struct TrialResult {
    /// Trial index.
    pub index: usize,
    /// Its parameters.
    pub params: Vec<(String, toml::Value)>,
    /// Best monitored value.
    pub best: Option<f64>,
    /// 0-based epoch of the best value.
    pub best_epoch: Option<usize>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Why it stopped early, if it did.
    pub stop_reason: Option<String>,
}

/// `burnfit sweep`.
pub fn sweep_command(args: &SweepArgs) -> CliResult<Vec<TrialResult>> {
    if args.random == Some(0) {
        return Err(CliError::usage("--random 0: draw at least 1 trial"));
    }
    if args.max_trials == Some(0) {
        return Err(CliError::usage("--max-trials 0: run at least 1 trial"));
    }
    let base = Config::load(&args.config, &[])?;
    let space: Vec<(String, Space)> = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<CliResult<_>>()?;
    let mut all = trials(&space, args.random, args.seed)?;
    if let Some(max) = args.max_trials {
        all.truncate(max);
    }
    let name = base.run_name(&args.config);
    let dir = args
        .sweep_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{name}-sweep")));
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot create the sweep directory: {e}",
            dir.display()
        ))
    })?;
    let monitor = base.outputs.checkpoint_monitor.clone();
    let maximize = train::monitor_direction(&monitor) == Direction::Max;
    println!(
        "burnfit sweep: {} trials in {}, ranked by {monitor}",
        all.len(),
        dir.display()
    );

    let mut results: Vec<TrialResult> = Vec::new();
    let mut reference: Vec<Vec<f64>> = Vec::new();
    for (index, params) in all.into_iter().enumerate() {
        let run_dir = dir.join(format!("trial-{index:03}"));
        let sets: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let finished = run_dir.join("summary.json").is_file();
        if finished {
            println!("trial {index}: already finished, not rerun");
        } else {
            let state = RunDir::inspect(&run_dir, &train::backup_dir(&base, &run_dir));
            if state == (RunState::Unfinished { backup: None }) {
                // The sweep's own trial, killed before its first backup:
                // nothing in it can be continued, so it starts again.
                println!("trial {index}: stopped before its first backup, starting it again");
                std::fs::remove_dir_all(&run_dir).map_err(|e| {
                    CliError::usage(format!("{}: cannot clear: {e}", run_dir.display()))
                })?;
            }
            let resume = matches!(state, RunState::Unfinished { backup: Some(_) });
            let train_args = TrainArgs {
                config: args.config.clone(),
                backend: args.backend,
                epochs: args.epochs,
                data: args.data.clone(),
                run_dir: Some(run_dir.clone()),
                sets: sets.clone(),
                resume,
                force: false,
                devices: None,
            };
            println!("trial {index}: {}", sets.join(" "));
            let mut setup = train::prepare(&train_args)?;
            setup.hparams = params.iter().map(|(k, v)| (k.clone(), hparam(v))).collect();
            if !args.no_pruning {
                let rule = MedianStopping::new(monitor.clone(), maximize, reference.clone())?;
                setup
                    .extra_callbacks
                    .lock()
                    .expect("extra")
                    .push(Box::new(rule));
            }
            let data = crate::data::load_data(&setup.config, None)?;
            let started = train::start(&setup)?;
            if let train::Ended::Interrupted { .. } = train::train(&setup, &started.run, data)? {
                return Err(CliError::interrupted(
                    format!(
                        "burnfit sweep: interrupted in trial {index}; run the same command again \
                         to continue (finished trials are kept, this one resumes)"
                    ),
                    crate::interrupt::received().map_or(130, |s| s.exit_code()),
                ));
            }
        }
        let run = RunDir::open(&run_dir)?;
        let summary = run.read_summary()?;
        if let Ok(history) = History::read(&run.history()) {
            reference.push(history.columns.get(&monitor).cloned().unwrap_or_default());
        }
        results.push(TrialResult {
            index,
            params,
            best: summary.best_value,
            best_epoch: summary.best_epoch,
            epochs_run: summary.epochs_run,
            stop_reason: summary.stop_reason,
        });
    }
    write_leaderboard(&dir, &monitor, maximize, &mut results)?;
    Ok(results)
}

fn write_leaderboard(
    dir: &Path,
    monitor: &str,
    maximize: bool,
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
    let keys: Vec<String> = results
        .first()
        .map(|r| r.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
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
                .is_some_and(|s| s.contains("MedianStopping"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_random_trials() {
        let space = vec![
            parse_param("optimizer.lr=[1e-4, 1e-3]").unwrap(),
            parse_param("training.batch_size=[32,64]").unwrap(),
        ];
        let grid = trials(&space, None, 0).unwrap();
        assert_eq!(grid.len(), 4);
        assert_eq!(grid[3][1].1, toml::Value::Integer(64));
        let space = vec![parse_param("optimizer.lr=loguniform(1e-5,1e-2)").unwrap()];
        let drawn = trials(&space, Some(20), 7).unwrap();
        assert_eq!(drawn, trials(&space, Some(20), 7).unwrap(), "seeded");
        for t in drawn {
            let v = t[0].1.as_float().unwrap();
            assert!((1e-5..=1e-2).contains(&v));
        }
        assert!(trials(&space, None, 0).is_err(), "a range needs --random");
        assert!(parse_param("optimizer.lr=loguniform(0,1)").is_err());
        assert!(parse_param("optimizer.lr").is_err());
    }
}
