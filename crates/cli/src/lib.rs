//! burnfit's command line as a library: [`run`] gives a binary every
//! `burnfit` command for a [`Task`] (your own model and data), as the
//! `burnfit` binary has them for burnfit's own networks
//! ([`builtin::tasks`]).
//!
//! ```no_run
//! # use std::process::ExitCode;
//! fn main() -> ExitCode {
//!     burnfit_cli::run(burnfit_cli::builtin::tasks())
//! }
//! ```

mod allocator;
mod average;
mod backend;
mod batch_find;
mod bench;
pub mod builtin;
mod config;
mod cuda;
mod data;
mod error;
mod eval;
mod faults;
mod fit;
mod image_folder;
mod inference;
mod interrupt;
mod logging;
mod lr_find;
mod memory;
mod metrics;
mod remote;
mod report;
mod resume;
mod run_dir;
mod serve;
mod shuffle;
mod sweep;
mod tables;
pub mod task;
mod train;

pub use burnfit_models;
pub use config::{CsvDataConfig, DataConfig, ImageDataConfig, ImageFolderConfig};
pub use error::{CliError, CliResult};
pub use metrics::{SavesEpochState, register_metric, register_resumable_metric};
pub use task::{
    DataContext, KeyError, MetricNames, Predict, Runnable, Section, Select, Task, TaskData,
    TestMetrics, Which,
};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::BackendChoice;

/// Train Burn models from a TOML config, with Keras-style callbacks.
#[derive(Parser, Debug)]
#[command(name = "burnfit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The flags of every command that trains or checks a training (`train`,
/// `sweep`, `lr-find`, `batch-find`, `validate`), with one meaning
/// everywhere.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct RunFlags {
    /// Backend: auto picks CUDA where this binary has it and the driver reports a GPU, else a
    /// real GPU through wgpu when there is one, else the fastest CPU backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Override training.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The dataset's directory or file (replaces the one `[data]` names).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Override any config value: --set optimizer.lr=3e-4, --set callbacks[0].patience=5 (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub sets: Vec<String>,
}

impl RunFlags {
    /// The flags as a command line would give them again (`--backend
    /// flex --data DIR --set k=v`, each word quoted for a POSIX shell where
    /// it needs it), each after a space: what a suggested `train` command
    /// adds so that it trains on what was measured.
    pub fn shown(&self) -> String {
        let mut words = Vec::new();
        if let Some(value) = self
            .backend
            .and_then(|b| clap::ValueEnum::to_possible_value(&b))
        {
            words.extend(["--backend".to_string(), value.get_name().to_string()]);
        }
        if let Some(epochs) = self.epochs {
            words.extend(["--epochs".to_string(), epochs.to_string()]);
        }
        if let Some(data) = &self.data {
            words.extend(["--data".to_string(), data.display().to_string()]);
        }
        for set in &self.sets {
            words.extend(["--set".to_string(), set.clone()]);
        }
        words
            .iter()
            .map(|w| format!(" {}", shell_word(w)))
            .collect()
    }
}

/// `word` as one word of a POSIX shell command: as it is when it has only
/// characters no shell treats specially, else in single quotes.
pub(crate) fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Options of `train`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// The config file (see configs/ and the README's config reference).
    pub config: PathBuf,
    /// The flags every training command takes.
    #[command(flatten)]
    pub run: RunFlags,
    /// Run directory (default runs/<config name>-<timestamp>/).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its last backup.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: accept a changed optimizer.lr, training.epochs, backend or devices
    /// (recorded in the run's resumes.json).
    #[arg(long, requires = "resume")]
    pub force: bool,
    /// Train on several devices: N (the backend's first N; on the CPU, N workers) or a list
    /// such as wgpu:0,wgpu:1. training.batch_size is the batch of a step over all of them.
    #[arg(long, value_name = "N|LIST")]
    pub devices: Option<String>,
    /// Also train on the devices of `burnfit serve` processes on other machines:
    /// ws://HOST:PORT[,ws://HOST:PORT] (needs the `remote` feature). Callbacks and
    /// files stay here; this machine's device holds the model.
    #[arg(long, value_name = "URLS")]
    pub remote: Option<String>,
}

/// Options of `validate`: those of `train` that decide what it checks.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ValidateArgs {
    /// The config file.
    pub config: PathBuf,
    /// The flags every training command takes, as `train` reads them.
    #[command(flatten)]
    pub run: RunFlags,
    /// The run directory `train --run-dir` would use: the callbacks' relative
    /// paths are checked there, and the directory as a new run would check it.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model from a config file.
    Train(TrainArgs),
    /// Test-set metrics of a run's best (or last) checkpoint.
    Eval {
        /// The run directory.
        run_dir: PathBuf,
        /// Which checkpoint: best, last, final (the averaged weights of a
        /// run with EMA or SWA), averaged (`burnfit average`) or a path.
        #[arg(long, default_value = "best")]
        checkpoint: String,
        /// Backend for evaluation.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
    },
    /// Predict the class (or value) of inputs with a run's best checkpoint
    /// (its last one where it kept no best).
    Predict {
        /// The run directory.
        run_dir: PathBuf,
        /// An IDX image file (predicts each image), a PNG or JPEG image or a folder of them
        /// (runs trained on an image folder), or a CSV table (predicts each row).
        input: PathBuf,
        /// Predict at most this many items (at least 1).
        #[arg(long, value_parser = at_least_one)]
        limit: Option<usize>,
    },
    /// Check a config (and its data) as `train` would with the same flags, without training.
    Validate(ValidateArgs),
    /// Average the weights of a run's best checkpoints (those its ModelCheckpoint
    /// with save_top_k kept) into checkpoints/averaged.bpk.
    Average {
        /// The run directory.
        run_dir: PathBuf,
        /// How many of the best checkpoints to average.
        #[arg(long)]
        top_k: usize,
        /// Backend the weights are averaged on.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
    },
    /// Plots and a summary table for a run directory.
    Report {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Measure callback overhead and backend throughput (prints ratios).
    Bench(bench::BenchArgs),
    /// Hyperparameter search: one training per combination, pruning, leaderboard.
    Sweep(sweep::SweepArgs),
    /// Learning-rate range test: loss by rate (plot and table) and a suggested rate.
    LrFind(lr_find::LrFindArgs),
    /// The largest training batch that fits in memory, and its step time (tries each
    /// size in a child process; changes nothing).
    BatchFind(batch_find::BatchFindArgs),
    /// Serve this machine's device to a coordinator's `train --remote` (needs the
    /// `remote` feature; unencrypted WebSocket, loopback unless --bind says otherwise).
    Serve(serve::ServeArgs),
}

impl Command {
    /// Whether the command only prints results (`predict RUN IN | head` is
    /// done when the reader has what it wanted), rather than doing work
    /// that a closed output would cut short.
    fn only_lists(&self) -> bool {
        match self {
            Command::Eval { .. }
            | Command::Predict { .. }
            | Command::Validate { .. }
            | Command::Report { .. } => true,
            Command::Sweep(args) => args.collect,
            _ => false,
        }
    }
}

fn run_command(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Train(args) => train::train_command(&args).map(|_| ()),
        Command::Eval {
            run_dir,
            checkpoint,
            backend,
        } => eval::eval_command(&run_dir, &checkpoint, backend),
        Command::Predict {
            run_dir,
            input,
            limit,
        } => eval::predict_command(&run_dir, &input, limit),
        Command::Validate(args) => validate(&args),
        Command::Average {
            run_dir,
            top_k,
            backend,
        } => average::average_command(&run_dir, top_k, backend),
        Command::Report { run_dir } => report::report_command(&run_dir),
        Command::Bench(args) => bench::bench_command(&args),
        Command::Sweep(args) => sweep::sweep_command(&args),
        Command::LrFind(args) => lr_find::lr_find_command(&args),
        Command::BatchFind(args) => batch_find::batch_find_command(&args),
        Command::Serve(args) => serve::serve_command(&args),
    }
}

/// `burnfit validate`: every check `train` runs before training (the
/// config and flags, its names, the run directory, the data files and
/// splits), creating nothing.
fn validate(args: &ValidateArgs) -> CliResult<()> {
    let path = args.config.as_path();
    let cfg = train::resolve_config(&TrainArgs {
        config: args.config.clone(),
        run: args.run.clone(),
        run_dir: args.run_dir.clone(),
        ..Default::default()
    })?;
    train::check_config(path, &cfg, args.run_dir.as_deref())?;
    let choice = args.run.backend.unwrap_or(cfg.training.backend);
    if choice != BackendChoice::Auto {
        // A backend named in the config or the flag must be here, as
        // `sweep` checks it (only `auto` never fails: it falls back).
        backend::choose(choice, cfg.describe().convolutional).map_err(|e| {
            match args.run.backend {
                Some(_) => e,
                None => cfg.locate(CliError::at_key("training.backend", e.message())),
            }
        })?;
    }
    let loaded = task::current().load(&cfg, None)?;
    let (train, valid, test) = loaded.sizes();
    println!(
        "{}: ok ({} model, {}, {}; {train} training, {valid} validation, {test} test \
         items)",
        path.display(),
        cfg.describe().kind,
        report::count(cfg.callbacks.len(), "callback"),
        report::count(cfg.training.epochs, "epoch")
    );
    Ok(())
}

/// The name this binary was run by (`burnfit`, or a task's own binary),
/// for the commands that messages suggest.
/// A count of at least 1, for clap.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a count of at least 1, got {text:?}")),
    }
}

/// clap's several-line message about the command line (the error, its
/// details and tips, the usage, a pointer to --help) as one `error:` line.
fn one_line_usage_error(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: invalid arguments");
    // Without a command clap shows the program's about line, then the usage.
    let mut out = if first.starts_with("error:") {
        first.to_string()
    } else {
        "error: no command given".to_string()
    };
    let mut tips = Vec::new();
    for line in lines {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            out.push_str(&format!("; usage: {usage} (more with --help)"));
            break;
        } else if let Some(tip) = line.strip_prefix("tip: ") {
            tips.push(tip);
        } else if line.starts_with("For more information") {
            continue;
        } else {
            out.push_str(&format!(" {line}"));
        }
    }
    if !tips.is_empty() {
        let at = out.find("; usage:").unwrap_or(out.len());
        out.insert_str(at, &format!(" ({})", tips.join("; ")));
    }
    if !out.ends_with("(more with --help)") {
        out.push_str(" (more with --help)");
    }
    out
}

/// The command line, with the help naming this program (a `Task`'s own
/// binary is not `burnfit`).
fn parse_arguments() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    // clap keeps a command's name for the process (once, at start-up).
    let program: &'static str = Box::leak(program().into_boxed_str());
    let mut command = Cli::command();
    if program != "burnfit" {
        command = command.name(program).bin_name(program).about(format!(
            "Train {program}'s model from a TOML config, with burnfit's Keras-style callbacks."
        ));
    }
    Cli::from_arg_matches(&command.try_get_matches()?)
}

pub(crate) fn program() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "burnfit".into())
}

/// Panics on the threads where burnfit catches them (the main thread, the
/// device workers) become one `error:` line, so the default hook's report
/// (message, location, backtrace) is not printed there; set
/// `BURNFIT_PANIC_REPORT=1` to see it. Other threads keep the default hook.
fn quiet_caught_panics() {
    if std::env::var_os("BURNFIT_PANIC_REPORT").is_some() {
        return;
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().map(str::to_string);
        let caught =
            matches!(name.as_deref(), Some(n) if n == "main" || n.starts_with("burnfit-device-"));
        if !caught {
            default(info);
        }
    }));
}

/// Whether a panic is `println!`'s on a closed pipe (`burnfit predict RUN
/// IN | head -1`): the reader has all it wanted, which is a normal end
/// (exit code 0, nothing printed), not an error.
fn stdout_closed(panic_message: &str) -> bool {
    panic_message.starts_with("failed printing to stdout")
        && panic_message.contains(&format!("(os error {})", libc::EPIPE))
}

/// Runs the command line for `task`: parses the arguments, runs the
/// command, prints an error as one `error:` line, and returns the exit code
/// (0, 2 for bad input, 130/143 when interrupted, 1 otherwise).
///
/// Call it first thing in `main`, before any other thread starts: it sets
/// the environment Burn's CPU backends read.
pub fn run(task: impl Runnable) -> ExitCode {
    // SAFETY: the caller calls it first thing in main; no other thread exists yet.
    unsafe { backend::stage_on_the_cpu() };
    task::install(task);
    let kept = allocator::keep_freed_memory();
    logging::init();
    log::debug!("glibc keeps freed memory between steps: {kept}");
    quiet_caught_panics();
    let cli = match parse_arguments() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", one_line_usage_error(&e.render().to_string()));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let lists = cli.command.only_lists();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_command(cli)))
        .unwrap_or_else(|payload| {
            let message = burnfit_callbacks::engine::panic_message(payload.as_ref());
            if stdout_closed(&message) {
                return if lists {
                    Ok(())
                } else {
                    Err(error::CliError::failed(
                        "stopped: the standard output was closed before burnfit finished",
                    ))
                };
            }
            Err(error::CliError::failed(format!(
                "internal error: {message} (please report it; BURNFIT_PANIC_REPORT=1 shows where)"
            )))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.line());
            ExitCode::from(e.code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_shown_as_words_a_shell_reads_back_unchanged() {
        let flags = RunFlags {
            backend: Some(BackendChoice::Flex),
            epochs: Some(3),
            data: Some(PathBuf::from("my data/it's")),
            sets: vec!["model.hidden=[64, 32]".into(), "optimizer.lr=1e-3".into()],
        };
        assert_eq!(
            flags.shown(),
            " --backend flex --epochs 3 --data 'my data/it'\\''s' \
             --set 'model.hidden=[64, 32]' --set optimizer.lr=1e-3"
        );
        // A POSIX shell reads them back as the same words.
        let echoed = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n'{}", flags.shown()))
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(echoed.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            words,
            [
                "--backend",
                "flex",
                "--epochs",
                "3",
                "--data",
                "my data/it's",
                "--set",
                "model.hidden=[64, 32]",
                "--set",
                "optimizer.lr=1e-3"
            ]
        );
        assert_eq!(RunFlags::default().shown(), "");
    }
}
