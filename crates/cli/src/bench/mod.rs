//! `burnfit bench`: callback overhead and backend throughput, as ratios;
//! with `--peers`, against Keras/TensorFlow on the same machine (`peers`).

mod peers;

use peers::Record;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use burnfit_callbacks::builtins::{
    CSVLogger, EarlyStopping, EarlyStoppingConfig, ModelCheckpoint, ModelCheckpointConfig,
    ProgressLogger, ProgressLoggerConfig, ReduceLROnPlateau, ReduceLROnPlateauConfig,
    TerminateOnNaN, TerminateOnNaNConfig,
};
use burnfit_callbacks::engine::{SilentRenderer, param_values_of};
use burnfit_callbacks::tensorboard::{TensorBoard, UpdateFreq};
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, WithCallbacks};

type CbResult<T> = burnfit_callbacks::Result<T>;
use burnfit_models::data::{ImageBatch, ImageBatcher, ImageDataset};
use burnfit_models::{Classifier, ModelConfig};

use crate::backend::{self, ChosenBackend};
use crate::config::BackendChoice;
use crate::data::loader;
use crate::error::{CliError, CliResult};
use crate::shuffle::{MemoryProbe, resident_mib};

/// The network `bench` measures under `name`: a model kind with its
/// defaults, or `cnn-C1-C2`, the CNN with C1 and C2 channels (the flagship
/// config's is `cnn-16-32`).
pub fn bench_model(name: &str) -> Option<ModelConfig> {
    if let Some(channels) = name.strip_prefix("cnn-") {
        let (c1, c2) = channels.split_once('-')?;
        return Some(ModelConfig::Cnn(burnfit_models::nets::CnnConfig {
            channels: [c1.parse().ok()?, c2.parse().ok()?],
            ..Default::default()
        }));
    }
    ModelConfig::default_for(name)
}

/// A callback that does nothing (the engine still calls every hook).
struct NoOp;
impl Callback for NoOp {}

/// Wraps a callback and adds the time spent in its hooks to a shared
/// counter: the direct measure of what the callbacks cost the training
/// thread, free of the run-to-run noise of whole-run timings.
struct Timed {
    inner: Box<dyn Callback>,
    clock: Arc<HookClock>,
}

/// Nanoseconds spent in callback hooks: per-batch hooks and the others
/// (train, epoch and validation begin/end), which a real epoch of hundreds
/// of steps amortises.
#[derive(Default)]
struct HookClock {
    batch: AtomicU64,
    other: AtomicU64,
}

impl Timed {
    fn time<T>(&mut self, per_batch: bool, hook: impl FnOnce(&mut dyn Callback) -> T) -> T {
        let start = Instant::now();
        let out = hook(self.inner.as_mut());
        let counter = if per_batch {
            &self.clock.batch
        } else {
            &self.clock.other
        };
        counter.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

impl Callback for Timed {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn on_train_begin(&mut self, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_train_begin(ctx))
    }
    fn on_train_end(&mut self, logs: &Logs, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_train_end(logs, ctx))
    }
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_epoch_begin(epoch, ctx))
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_epoch_end(epoch, logs, ctx))
    }
    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut Context) -> CbResult<()> {
        self.time(true, |c| c.on_train_batch_begin(batch, ctx))
    }
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> CbResult<()> {
        self.time(true, |c| c.on_train_batch_end(batch, logs, ctx))
    }
    fn on_validation_begin(&mut self, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_validation_begin(ctx))
    }
    fn on_validation_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut Context,
    ) -> CbResult<()> {
        self.time(true, |c| c.on_validation_batch_end(batch, logs, ctx))
    }
    fn on_validation_end(&mut self, logs: &Logs, ctx: &mut Context) -> CbResult<()> {
        self.time(false, |c| c.on_validation_end(logs, ctx))
    }
    fn wants_batch_logs(&self) -> bool {
        self.inner.wants_batch_logs()
    }
}

/// When the latest training step ended (its `on_train_batch_end`, which
/// follows the optimizer step): where the Keras comparison stops the
/// clock of a run with callbacks, before the epoch's validation and files.
#[derive(Clone, Default)]
struct LastStepEnd(Arc<Mutex<Option<Instant>>>);

impl LastStepEnd {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Callback for LastStepEnd {
    fn on_train_batch_end(&mut self, _: usize, _: &mut Logs, _: &mut Context) -> CbResult<()> {
        *self.lock() = Some(Instant::now());
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    PlainBurn,
    NoCallbacks,
    FiveNoOps,
    FullSet,
}

impl Variant {
    /// The variant's name in JSON records.
    fn key(self) -> &'static str {
        match self {
            Variant::PlainBurn => "plain",
            Variant::NoCallbacks => "none",
            Variant::FiveNoOps => "noop5",
            Variant::FullSet => "full",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::PlainBurn => "plain Burn",
            Variant::NoCallbacks => "with_callbacks, none",
            Variant::FiveNoOps => "5 no-op callbacks",
            Variant::FullSet => "full default set, fused Adam",
        }
    }
}

/// Training steps of one Fashion-MNIST epoch at batch 64 (54,000 images
/// after the 10% validation split), over which per-epoch hook costs spread.
const FASHION_MNIST_STEPS: usize = 844;

/// Options of `burnfit bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Training batches per measurement (at least 1).
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Items per batch of the throughput table and the loader comparison
    /// (the Keras comparison, --peers, is at 64).
    #[arg(long, default_value_t = BATCH)]
    pub batch: usize,
    /// Repetitions of each measurement (at least 1; the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_value = "mlp,simple_cnn,cnn")]
    pub models: Vec<String>,
    /// Epochs of the memory measurement: at least 4 (epoch 1 is a warm-up,
    /// and the ceilings of the two halves of the rest are compared), or 0 to
    /// skip it.
    #[arg(long, default_value_t = 20)]
    pub memory_epochs: usize,
    /// Backends to measure (those not available here are skipped).
    #[arg(long, value_delimiter = ',', default_value = "flex,wgpu")]
    pub backends: Vec<String>,
    /// Batches of the data-loader comparison (0 skips it).
    #[arg(long, default_value_t = 400)]
    pub loader_batches: usize,
    /// Device counts of the multi-device scaling table, e.g. 1,2 (on the CPU
    /// backends, that many workers on the CPU; on wgpu, the first adapters).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
    /// Also time the same networks in Keras/TensorFlow, interleaved with
    /// burnfit's steps, and print the ratios (needs a Python with
    /// tensorflow-cpu: `make bench-peers` sets one up).
    #[arg(long)]
    pub peers: bool,
    /// The Python that runs the Keras side of --peers.
    #[arg(long, default_value = "target/peers-venv/bin/python")]
    pub peers_python: std::path::PathBuf,
    /// Write every measured step time as JSON records to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

fn synthetic(n: usize) -> ImageDataset {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels = (0..n * 784)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    ImageDataset::new(pixels, labels, 28, 28, 0.286, 0.353)
}

/// Seconds to read every batch of `loader` once.
fn read_all(loader: &dyn DataLoader<ImageBatch>) -> f64 {
    let start = Instant::now();
    let mut items = 0usize;
    for batch in loader.iter() {
        items += batch.expect("synthetic data loads").targets.dims()[0];
    }
    std::hint::black_box(items);
    start.elapsed().as_secs_f64()
}

/// Batches per second of Burn's multi-threaded loader (batches in the order
/// workers finish them) and of the ordered loader (index order, so runs are
/// reproducible whatever the number of workers), side by side.
fn loader_throughput(batches: usize, batch: usize, repeats: usize) {
    println!(
        "\n## data loader: {batches} batches of {batch} images, median of {repeats} interleaved rounds"
    );
    println!(
        "| workers | Burn's loader (batches/s) | ordered loader (batches/s) | ordered / Burn |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    for workers in [1usize, 2, 4] {
        let burn = burn::data::dataloader::DataLoaderBuilder::new(ImageBatcher)
            .batch_size(batch)
            .num_workers(workers)
            .build(synthetic(batches * batch));
        let ours = loader(ImageBatcher, synthetic(batches * batch), batch, workers);
        let (mut burn_s, mut ours_s) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            burn_s.push(read_all(burn.as_ref()));
            ours_s.push(read_all(ours.as_ref()));
        }
        let (b, o) = (median(burn_s), median(ours_s));
        println!(
            "| {workers} | {:.0} | {:.0} | {:.2} |",
            batches as f64 / b,
            batches as f64 / o,
            b / o
        );
    }
}

/// One training to time: a model kind on a backend over the given data.
struct Run<'a> {
    model_kind: &'a str,
    backend: &'a ChosenBackend,
    train: Arc<dyn DataLoader<ImageBatch>>,
    valid: Arc<dyn DataLoader<ImageBatch>>,
    dir: &'a std::path::Path,
    epochs: usize,
    /// Records the resident memory at each epoch end (callback variants).
    memory: Option<MemoryProbe>,
}

/// What one training took.
struct Timing {
    /// The whole training, in seconds.
    seconds: f64,
    /// From the start to the last training step's end, in seconds: the
    /// training steps without the epoch end (runs with callbacks only).
    steps_seconds: Option<f64>,
    /// Inside per-batch callback hooks (full default set only).
    batch_hooks: f64,
    /// Inside the other hooks (full default set only).
    other_hooks: f64,
}

/// Trains once.
fn run_once(run: &Run<'_>, variant: Variant) -> CliResult<Timing> {
    let Run {
        model_kind,
        backend,
        dir,
        ..
    } = *run;
    let (train, valid) = (run.train.clone(), run.valid.clone());
    let clock = Arc::new(HookClock::default());
    let model = bench_model(model_kind)
        .ok_or_else(|| CliError::usage(format!("--models: unknown model {model_kind}")))?
        .init_classifier(&backend.device.clone().autodiff())
        .map_err(|e| CliError::usage(e.to_string()))?;
    let optim = match variant {
        // What `burnfit train` runs: its Adam, fused on flex (the same
        // numbers as Burn's; burnfit_models::adam).
        Variant::FullSet => burnfit_models::adam::FusedAdam::new(0.9, 0.999, 1e-5, None).into(),
        _ => burn::optim::AdamConfig::new().init(),
    };
    let training = SupervisedTraining::new(dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(run.epochs)
        .renderer(Box::new(SilentRenderer))
        .with_application_logger(None);
    let start;
    let last_step = LastStepEnd::default();
    match variant {
        Variant::PlainBurn => {
            start = Instant::now();
            training.launch(Learner::new(model, optim, 1e-3));
        }
        _ => {
            // Seeded, as every CLI run is: the devices then work at once
            // only if the engine keeps the run reproducible that way.
            let mut callbacks = Callbacks::new().quiet(true).deterministic(42);
            if variant == Variant::FiveNoOps {
                for _ in 0..5 {
                    callbacks.push(NoOp);
                }
            }
            if variant == Variant::FullSet {
                for inner in full_set(&dir.join("run"), run.epochs)? {
                    callbacks.push(Timed {
                        inner,
                        clock: Arc::clone(&clock),
                    });
                }
            }
            if let Some(probe) = &run.memory {
                callbacks.push(MemoryProbe(Arc::clone(&probe.0)));
            }
            callbacks.push(last_step.clone());
            let lr = callbacks.lr_scheduler(1e-3);
            let training = training.with_callbacks(callbacks);
            start = Instant::now();
            training.launch(Learner::new(model, optim, lr));
        }
    }
    Ok(Timing {
        seconds: start.elapsed().as_secs_f64(),
        steps_seconds: last_step.lock().map(|end| (end - start).as_secs_f64()),
        batch_hooks: clock.batch.load(Ordering::Relaxed) as f64 * 1e-9,
        other_hooks: clock.other.load(Ordering::Relaxed) as f64 * 1e-9,
    })
}

/// `burnfit train`'s default callbacks as the full-set variant times them,
/// writing under `out`: every epoch's work of each, none ending the run
/// early, TensorBoard scalars at every batch.
fn full_set(out: &std::path::Path, epochs: usize) -> CliResult<Vec<Box<dyn Callback>>> {
    Ok(vec![
        Box::new(CSVLogger::new(out.join("history.csv"))),
        Box::new(
            TensorBoard::new(out.join("tb"))
                .update_freq(UpdateFreq::Batches(1))
                .with_param_source(param_values_of::<Classifier>),
        ),
        Box::new(ModelCheckpoint::new(ModelCheckpointConfig {
            filepath: out.join("best.bpk").to_string_lossy().into_owned(),
            save_best_only: true,
            save_weights_only: true,
            ..Default::default()
        })?),
        // Patience as long as the run: it does all its work each epoch but
        // never ends a measurement early.
        Box::new(EarlyStopping::new(EarlyStoppingConfig {
            patience: epochs,
            ..Default::default()
        })?),
        Box::new(ReduceLROnPlateau::new(ReduceLROnPlateauConfig::default())?),
        Box::new(TerminateOnNaN::new(TerminateOnNaNConfig::default())?),
        Box::new(ProgressLogger::new(ProgressLoggerConfig {
            bar: "never".into(),
            ..Default::default()
        })),
    ])
}

/// Step time with the batch of a step (64 images) split over 1, 2, …
/// devices, each count timed in turn per round, seeded as the CLI's runs
/// are; the range over the `repeats` rounds (each round's speed-up is
/// against that round's one-device time).
fn device_scaling(
    kind: &str,
    backend: &ChosenBackend,
    counts: &[usize],
    steps: usize,
    repeats: usize,
    dir: &std::path::Path,
) -> CliResult<()> {
    let batch = 64;
    println!(
        "\n## {kind} on {}: one step of {batch} images over several devices",
        backend.name
    );
    println!(
        "| devices | step time (ms) | samples/s | speed-up over 1 device (range over rounds) |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    let devices: Vec<crate::backend::Devices> = counts
        .iter()
        .map(|n| crate::backend::resolve_devices(&n.to_string(), backend))
        .collect::<CliResult<_>>()?;
    let mut times = vec![Vec::new(); counts.len()];
    for _ in 0..repeats {
        for (i, list) in devices.iter().enumerate() {
            let n = list.list.len();
            let model = bench_model(kind)
                .ok_or_else(|| CliError::usage(format!("--models: unknown model {kind}")))?
                .init_classifier(&backend.device.clone().autodiff())
                .map_err(|e| CliError::usage(e.to_string()))?;
            // Seeded, as every CLI run is: the devices then work at once
            // only if the engine keeps the run reproducible that way.
            let mut callbacks = Callbacks::new().quiet(true).deterministic(42);
            if n > 1 {
                callbacks = callbacks.devices(list.list.iter().map(|(_, d)| d.clone()).collect());
            }
            let lr = callbacks.lr_scheduler(1e-3);
            let training = SupervisedTraining::new(
                dir,
                loader(ImageBatcher, synthetic(steps * batch), batch / n, 1),
                loader(ImageBatcher, synthetic(batch), batch, 1),
            )
            .metrics((LossMetric::new(),))
            .num_epochs(1)
            .renderer(Box::new(SilentRenderer))
            .with_application_logger(None)
            .with_callbacks(callbacks);
            let start = Instant::now();
            training.launch(Learner::new(
                model,
                burn::optim::AdamConfig::new().init(),
                lr,
            ));
            times[i].push(start.elapsed().as_secs_f64() / steps as f64);
        }
    }
    for (count, steps) in counts.iter().zip(&times) {
        let (fast, slow) = low_high(steps);
        let speedups: Vec<f64> = times[0].iter().zip(steps).map(|(one, n)| one / n).collect();
        let (low, high) = low_high(&speedups);
        println!(
            "| {count} | {:.1}–{:.1} | {:.0}–{:.0} | {low:.2}–{high:.2} |",
            fast * 1e3,
            slow * 1e3,
            batch as f64 / slow,
            batch as f64 / fast,
        );
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `burnfit bench`.
pub fn bench_command(args: &BenchArgs) -> CliResult<()> {
    check_names(args)?;
    // As `train` on one device; the device-scaling runs keep their
    // training thread out of the pool, as `train` on several devices does.
    let in_pool = args.devices.is_empty() && burnfit_models::threads::join_global_pool();
    let steps = args.steps;
    let tmp = tempfile::tempdir().map_err(|e| CliError::usage(format!("temp dir: {e}")))?;
    let adapters = backend::wgpu_adapters();
    print_header(args, steps, &adapters, in_pool);
    if args.loader_batches > 0 {
        loader_throughput(args.loader_batches, args.batch, args.repeats);
    }
    checkpoint_stall(tmp.path())?;
    if args.memory_epochs > 0 {
        memory_growth(args.memory_epochs, tmp.path())?;
    }
    if !args.devices.is_empty() {
        return device_scaling_section(args, steps, tmp.path());
    }
    let mut records = Vec::new();
    for kind in &args.models {
        overhead_section(args, kind, steps, &adapters, tmp.path(), &mut records)?;
    }
    if args.peers {
        peers::compare(args, steps, tmp.path(), &mut records)?;
    }
    if let Some(path) = &args.json {
        peers::write_json(path, &records)?;
    }
    Ok(())
}

/// The batch of the measurements by default, and of the Keras comparison.
const BATCH: usize = 64;

/// Refuses unknown names before anything is measured.
fn check_names(args: &BenchArgs) -> CliResult<()> {
    if let Some(path) = &args.json {
        peers::check_json_target(path)?;
    }
    for name in &args.backends {
        if !["flex", "ndarray", "wgpu", "cuda"].contains(&name.as_str()) {
            return Err(CliError::usage(format!(
                "--backends: unknown backend {name}; use flex, ndarray, wgpu or cuda"
            )));
        }
    }
    for kind in &args.models {
        if bench_model(kind).is_none_or(|m| !m.is_convolutional() && kind != "mlp") {
            return Err(CliError::usage(format!(
                "--models: unknown image model {kind}; use mlp, simple_cnn, cnn, cnn-C1-C2 \
                 (channels, e.g. cnn-16-32) or resnet"
            )));
        }
    }
    if args.batch == 0 {
        return Err(CliError::usage("--batch: at least 1 item"));
    }
    if args.steps == 0 {
        return Err(CliError::usage(
            "--steps 0: a measurement times at least 1 training step; use --steps 1 or more",
        ));
    }
    if args.repeats == 0 {
        return Err(CliError::usage(
            "--repeats 0: each measurement runs at least once; use --repeats 1 or more",
        ));
    }
    if (1..MIN_MEMORY_EPOCHS).contains(&args.memory_epochs) {
        return Err(CliError::usage(format!(
            "--memory-epochs {}: the memory measurement needs at least {MIN_MEMORY_EPOCHS} \
             epochs (a warm-up epoch, then two halves to compare); use {MIN_MEMORY_EPOCHS} \
             or more, or 0 to skip it",
            args.memory_epochs
        )));
    }
    if args.peers && args.batch != BATCH {
        return Err(CliError::usage(format!(
            "--batch {}: the Keras comparison (--peers) runs at batch {BATCH}; leave --batch out",
            args.batch
        )));
    }
    if args.devices.contains(&0) {
        return Err(CliError::usage("--devices: every count must be at least 1"));
    }
    if args.peers {
        peers::check_python(&args.peers_python)?;
    }
    Ok(())
}

/// The machine: cores, allocator, wgpu adapters.
fn print_header(args: &BenchArgs, steps: usize, adapters: &[backend::Adapter], in_pool: bool) {
    println!(
        "# burnfit bench: {} cores, batch {}, {steps} steps per measurement, median of {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.batch,
        args.repeats
    );
    println!("# allocator: {}", crate::allocator::describe());
    println!(
        "# threads: {} rayon workers, the training thread {}",
        burnfit_models::threads::pool_threads(),
        if in_pool {
            "one of them"
        } else {
            "outside them"
        }
    );
    println!("# build: {}", build_description());
    if args.backends.iter().any(|b| b == "wgpu") {
        println!("# wgpu stack: {}", wgpu_description(adapters));
    }
    if args.backends.iter().any(|b| b == "cuda") {
        println!("# cuda stack: {}", cuda_description());
    }
    println!(
        "# wgpu adapters: {}",
        if adapters.is_empty() {
            "none".to_string()
        } else {
            adapters
                .iter()
                .map(|a| format!("{} ({})", a.name, a.kind))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
}

/// How this binary was built, for reading its figures: the profile and
/// the backends compiled in.
fn build_description() -> String {
    let profile = if cfg!(debug_assertions) {
        "dev profile (training-step crates at opt-level 3, see Cargo.toml)"
    } else {
        "release profile"
    };
    let cuda = if cfg!(feature = "cuda") { ", cuda" } else { "" };
    let ndarray = if cfg!(feature = "ndarray") {
        ", ndarray"
    } else {
        ""
    };
    format!("{profile}; backends flex, wgpu{cuda}{ndarray}")
}

/// The wgpu stack the figures come from, read from Burn at run time: its
/// backend name and the fusion and autotune state. Only asked when an
/// adapter exists (Burn would panic starting a runtime without one).
fn wgpu_description(adapters: &[backend::Adapter]) -> String {
    if adapters.is_empty() {
        return "no adapter".into();
    }
    backend::wgpu_stack()
}

/// The CUDA stack as [`wgpu_description`] gives wgpu's, or why there is
/// none (not in this binary, or no device).
fn cuda_description() -> String {
    match backend::choose(BackendChoice::Cuda, true) {
        Ok(chosen) => format!("{}, {}", backend::stack(&chosen.device), chosen.reason),
        Err(_) if !crate::cuda::BUILT => {
            "not in this binary (built without `--features cuda`)".into()
        }
        Err(_) => "no device".into(),
    }
}

/// The backend `--backends` names.
fn backend_choice(name: &str) -> BackendChoice {
    match name {
        "wgpu" => BackendChoice::Wgpu,
        "cuda" => BackendChoice::Cuda,
        "ndarray" => BackendChoice::Ndarray,
        _ => BackendChoice::Flex,
    }
}

/// `--devices`: step times on 1, 2, … devices, for every model and backend.
fn device_scaling_section(args: &BenchArgs, steps: usize, dir: &std::path::Path) -> CliResult<()> {
    for kind in &args.models {
        for name in &args.backends {
            let Ok(chosen) = backend::choose(backend_choice(name), kind != "mlp") else {
                continue;
            };
            device_scaling(kind, &chosen, &args.devices, steps, args.repeats, dir)?;
        }
    }
    Ok(())
}

/// The overhead table of one model: a row per backend and variant.
fn overhead_section(
    args: &BenchArgs,
    kind: &str,
    steps: usize,
    adapters: &[backend::Adapter],
    dir: &std::path::Path,
    records: &mut Vec<Record>,
) -> CliResult<()> {
    let convolutional = kind != "mlp";
    let auto = backend::choose(BackendChoice::Auto, convolutional)?;
    println!("\n## {kind}: auto picks {} ({})", auto.name, auto.reason);
    println!(
        "| backend | variant | step time (ms) | samples/s | ratio to plain Burn | hooks per step | hooks per epoch | overhead, {FASHION_MNIST_STEPS}-step epoch |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for name in &args.backends {
        let Ok(chosen) = backend::choose(backend_choice(name), convolutional) else {
            println!("| {name} | (not available here) | | | | | | |");
            continue;
        };
        let row = BackendRows {
            args,
            kind,
            name,
            chosen: &chosen,
            steps,
            adapters,
            dir,
        };
        row.measure(records)?;
    }
    Ok(())
}

/// The rows of one model on one backend.
struct BackendRows<'a> {
    args: &'a BenchArgs,
    kind: &'a str,
    name: &'a str,
    chosen: &'a ChosenBackend,
    steps: usize,
    adapters: &'a [backend::Adapter],
    dir: &'a std::path::Path,
}

/// What the rounds of one model on one backend measured.
struct Rounds {
    /// Seconds per round, by variant.
    times: Vec<Vec<f64>>,
    /// The full set's hook time per step and per epoch, by round.
    per_step_hooks: Vec<f64>,
    per_epoch_hooks: Vec<f64>,
}

impl BackendRows<'_> {
    /// Times every variant in rounds and prints their rows.
    fn measure(&self, records: &mut Vec<Record>) -> CliResult<()> {
        // ndarray's convolutions, and wgpu on a software adapter, take
        // seconds per CNN step: there, after a warm-up step, 3 steps, once,
        // plain Burn against the full set only (throughput, not overhead).
        let software_wgpu = self.name == "wgpu" && !self.adapters.iter().any(|a| a.is_gpu);
        let slow = self.kind != "mlp" && (self.name == "ndarray" || software_wgpu);
        let (steps, repeats) = if slow {
            (3, 1)
        } else {
            (self.steps, self.args.repeats)
        };
        let variants: &[Variant] = if slow {
            &[Variant::PlainBurn, Variant::FullSet]
        } else {
            &[
                Variant::PlainBurn,
                Variant::NoCallbacks,
                Variant::FiveNoOps,
                Variant::FullSet,
            ]
        };
        if self.chosen.is_gpu() || slow {
            // Untimed steps first: a GPU runtime compiles its kernels on first use
            // (over a minute on lavapipe for the CNN), fusion compiles each
            // new fused chain, and autotune times the candidate kernels of
            // each new shape (12.8 s of the first MLP step on lavapipe). Both
            // loops, whose operation streams differ.
            run_once(&self.run(2), Variant::PlainBurn)?;
            run_once(&self.run(2), Variant::FullSet)?;
        }
        let rounds = self.rounds(variants, steps, repeats)?;
        self.print_rows(variants, steps, rounds, records);
        Ok(())
    }

    /// A training of `steps` batches of synthetic images.
    fn run(&self, steps: usize) -> Run<'_> {
        let batch = self.args.batch;
        Run {
            model_kind: self.kind,
            backend: self.chosen,
            train: loader(ImageBatcher, synthetic(steps * batch), batch, 1),
            valid: loader(ImageBatcher, synthetic(batch), batch, 1),
            dir: self.dir,
            epochs: 1,
            memory: None,
        }
    }

    /// Rounds of every variant in turn, so that drift in the machine's
    /// speed hits all variants alike.
    fn rounds(&self, variants: &[Variant], steps: usize, repeats: usize) -> CliResult<Rounds> {
        let run = self.run(steps);
        let mut rounds = Rounds {
            times: vec![Vec::new(); variants.len()],
            per_step_hooks: Vec::new(),
            per_epoch_hooks: Vec::new(),
        };
        for _ in 0..repeats {
            for (i, variant) in variants.iter().enumerate() {
                let timing = run_once(&run, *variant)?;
                rounds.times[i].push(timing.seconds);
                if *variant == Variant::FullSet {
                    // One validation batch per epoch: its hook is counted
                    // with the per-batch ones.
                    rounds
                        .per_step_hooks
                        .push(timing.batch_hooks / (steps + 1) as f64);
                    rounds.per_epoch_hooks.push(timing.other_hooks);
                }
            }
        }
        Ok(rounds)
    }

    /// One row per variant: medians over the rounds, ratios to plain Burn.
    fn print_rows(
        &self,
        variants: &[Variant],
        steps: usize,
        rounds: Rounds,
        records: &mut Vec<Record>,
    ) {
        // The device each row ran on: wgpu names its adapter.
        let gpu = self.adapters.iter().find(|a| a.is_gpu);
        let label = match gpu.or(self.adapters.first()) {
            Some(adapter) if self.name == "wgpu" => {
                format!("wgpu ({}, {})", adapter.name, adapter.kind)
            }
            _ => self.name.to_string(),
        };
        let plain = median(rounds.times[0].clone());
        let plain_step = plain / steps as f64;
        for (variant, times) in variants.iter().zip(rounds.times) {
            let seconds = median(times);
            let hooks = if *variant == Variant::FullSet {
                let step = median(rounds.per_step_hooks.clone());
                let epoch = median(rounds.per_epoch_hooks.clone());
                let overhead = (step + epoch / FASHION_MNIST_STEPS as f64) / plain_step;
                format!(
                    "{:.0} µs | {:.1} ms | {:.2}%",
                    step * 1e6,
                    epoch * 1e3,
                    100.0 * overhead
                )
            } else {
                " | |".to_string()
            };
            let step_ms = seconds / steps as f64 * 1000.0;
            records.push(Record::burnfit(
                self.kind,
                self.name,
                variant.key(),
                step_ms,
            ));
            println!(
                "| {label} | {} | {step_ms:.2} | {:.0} | {:.3} | {hooks} |",
                variant.label(),
                (steps * self.args.batch) as f64 / seconds,
                seconds / plain
            );
        }
    }
}

/// Milliseconds per training step of `kind` on `backend` under `variant`
/// (one training of `steps` batches of 64 synthetic images), for the Keras
/// comparison, whose timed `fit` validates nothing and writes no file. A
/// run with callbacks is timed to its last step's end: its epoch end
/// (validation, checkpoint, CSV and TensorBoard files, each synced to disk:
/// 1–6 ms per file here) would otherwise weigh on a 30-step window 28
/// times as much as on the flagship's 844-step epoch, and the overhead
/// table times it. Plain Burn, which has no hook, is timed whole, its
/// one validation batch included.
fn step_ms(
    kind: &str,
    backend: &ChosenBackend,
    variant: Variant,
    steps: usize,
    dir: &std::path::Path,
) -> CliResult<f64> {
    let timing = run_once(&peer_run(kind, backend, steps, dir), variant)?;
    Ok(timing.steps_seconds.unwrap_or(timing.seconds) / steps as f64 * 1000.0)
}

/// One epoch of `steps` batches of 64 synthetic images, and one batch of
/// validation: what the Keras comparison times.
fn peer_run<'a>(
    kind: &'a str,
    backend: &'a ChosenBackend,
    steps: usize,
    dir: &'a std::path::Path,
) -> Run<'a> {
    let batch = 64;
    Run {
        model_kind: kind,
        backend,
        train: loader(ImageBatcher, synthetic(steps * batch), batch, 1),
        valid: loader(ImageBatcher, synthetic(batch), batch, 1),
        dir,
        epochs: 1,
        memory: None,
    }
}

/// Fewest epochs of the memory measurement: epoch 1 (the warm-up) is left
/// out of the comparison, and each half of the rest needs an epoch.
const MIN_MEMORY_EPOCHS: usize = 4;

/// The epochs whose resident memory the table shows: the first two, the
/// middle and the last, four different epochs for any count from
/// [`MIN_MEMORY_EPOCHS`] on (the middle moves up to 3 below 6 epochs).
fn memory_columns(epochs: usize) -> [usize; 4] {
    debug_assert!(epochs >= MIN_MEMORY_EPOCHS);
    [1, 2, (epochs / 2).max(3), epochs]
}

/// Resident memory of a CNN training with the full default callback set
/// over `epochs` short epochs (at least [`MIN_MEMORY_EPOCHS`]): at each
/// epoch end, and the process peak. A leak in logs, metrics or callbacks
/// shows as growth from epoch to epoch.
fn memory_growth(epochs: usize, dir: &std::path::Path) -> CliResult<()> {
    let backend = backend::choose(BackendChoice::Flex, true)?;
    let batch = 64;
    let probe = MemoryProbe(Default::default());
    let run = Run {
        model_kind: "cnn",
        backend: &backend,
        train: loader(ImageBatcher, synthetic(4 * batch), batch, 1),
        valid: loader(ImageBatcher, synthetic(batch), batch, 1),
        dir,
        epochs,
        memory: Some(MemoryProbe(Arc::clone(&probe.0))),
    };
    run_once(&run, Variant::FullSet)?;
    let rss = probe.0.lock().expect("memory probe").clone();
    let peak = resident_mib().map(|(_, peak)| peak).unwrap_or(f64::NAN);
    println!("\n## memory: cnn on flex, full default set, {epochs} epochs of 4 steps");
    if rss.is_empty() {
        println!("(resident memory is not readable here: no /proc/self/status)");
        return Ok(());
    }
    let ended = rss.len();
    if ended < MIN_MEMORY_EPOCHS {
        println!("(the training ended after {ended} of {epochs} epochs: too few to compare)");
        return Ok(());
    }
    let columns = memory_columns(ended);
    let labels: Vec<String> = columns.iter().map(usize::to_string).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|&epoch| format!("{:.1}", rss[epoch - 1]))
        .collect();
    println!("| after epoch | {} | process peak |", labels.join(" | "));
    println!("| --- |{} ---: |", " ---: |".repeat(columns.len()));
    println!(
        "| resident memory (MiB) | {} | {peak:.1} |",
        values.join(" | ")
    );
    // Resident memory moves up and down as the allocator takes and returns
    // pages; a leak shows as a higher ceiling in the second half of the run
    // than in the first (epoch 1, the warm-up, left out): epochs 2 to half,
    // then half + 1 to the last, neither empty from 4 epochs on.
    let half = ended / 2;
    let ceiling = |epochs: &[f64]| epochs.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "highest resident memory: epochs 2-{half}: {:.1} MiB, epochs {}-{ended}: {:.1} MiB",
        ceiling(&rss[1..half]),
        half + 1,
        ceiling(&rss[half..])
    );
    Ok(())
}

/// What a weights checkpoint costs the training thread, through the same
/// [`BackgroundWriter`] the training loop uses: the stall is taking the
/// record and queueing it; reading the values, encoding and the atomic write
/// (temporary file, fsync, rename, fsync of the directory) happen on the
/// writer thread. The synchronous cost (what a save cost before the writer
/// thread) is measured alongside.
fn checkpoint_stall(dir: &std::path::Path) -> CliResult<()> {
    use burn::module::Module;
    use burnfit_callbacks::{engine::encode_module_record, writer::BackgroundWriter};
    let device = backend::choose(BackendChoice::Flex, true)?.device;
    println!("\n## checkpoint stall per save (flex, weights only, median of 7)");
    println!(
        "| model | parameters | file (KiB) | synchronous save (ms) | training-thread stall (ms) | writer thread (ms) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let failed = |e: burnfit_callbacks::CallbackError| CliError::failed(e.to_string());
    for kind in ["mlp", "simple_cnn", "cnn", "resnet"] {
        let model = bench_model(kind)
            .expect("known kind")
            .init_classifier(&device)
            .map_err(|e| CliError::usage(e.to_string()))?;
        let params = model.num_params();
        let (mut sync_ms, mut stall_ms, mut writer_ms, mut size) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        let mut writer = BackgroundWriter::new();
        for i in 0..7 {
            let start = Instant::now();
            let bytes = model
                .clone()
                .into_record()
                .into_bytes()
                .map_err(|e| CliError::failed(e.to_string()))?;
            burnfit_callbacks::atomic::write_atomic(&dir.join(format!("{kind}-{i}.bpk")), &bytes)
                .map_err(failed)?;
            sync_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            size = bytes.len();

            let start = Instant::now();
            let record = model.clone().into_record();
            writer
                .write(
                    &dir.join(format!("{kind}-async-{i}.bpk")),
                    encode_module_record(record),
                )
                .map_err(failed)?;
            stall_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            writer.flush().map_err(failed)?;
            writer_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "| {kind} | {params} | {} | {:.2} | {:.3} | {:.2} |",
            size / 1024,
            median(sync_ms),
            median(stall_ms),
            median(writer_ms),
        );
    }
    Ok(())
}

/// The lowest and highest of `values` (rounds of one measurement).
fn low_high(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Keras comparison stops a run's clock at its last step's end:
    /// inside the run, before the epoch end (validation, synced files)
    /// that the whole timing includes. Plain Burn has no hook, so no such
    /// time, and is timed whole.
    #[test]
    fn a_run_with_callbacks_is_timed_to_its_last_step_end() {
        let backend = backend::choose(BackendChoice::Flex, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let run = peer_run("mlp", &backend, 3, dir.path());
        let full = run_once(&run, Variant::FullSet).unwrap();
        let steps = full.steps_seconds.expect("the full set's last step end");
        assert!(
            0.0 < steps && steps < full.seconds,
            "{steps} of {}",
            full.seconds
        );
        assert!(
            dir.path().join("run/best.bpk").is_file(),
            "the epoch end ran"
        );
        let plain = run_once(&run, Variant::PlainBurn).unwrap();
        assert_eq!(plain.steps_seconds, None);
    }
}
