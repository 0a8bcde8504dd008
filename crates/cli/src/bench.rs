//! `burnfit bench`: callback overhead and backend throughput, as ratios.

use std::sync::Arc;
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
use burnfit_callbacks::{Callback, Callbacks, WithCallbacks};
use burnfit_models::data::{ImageBatch, ImageBatcher, ImageDataset};
use burnfit_models::{Classifier, ModelConfig};

use crate::backend::{self, ChosenBackend};
use crate::config::BackendChoice;
use crate::error::{CliError, CliResult};
use crate::train::loader;

/// A callback that does nothing (the engine still calls every hook).
struct NoOp;
impl Callback for NoOp {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    PlainBurn,
    NoCallbacks,
    FiveNoOps,
    FullSet,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::PlainBurn => "plain Burn",
            Variant::NoCallbacks => "with_callbacks, none",
            Variant::FiveNoOps => "5 no-op callbacks",
            Variant::FullSet => "full default set",
        }
    }
}

/// Options of `burnfit bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Training batches per measurement.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_value = "mlp,cnn")]
    pub models: Vec<String>,
    /// Backends to measure (those not available here are skipped).
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray,wgpu")]
    pub backends: Vec<String>,
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

fn run_once(
    model_kind: &str,
    backend: &ChosenBackend,
    variant: Variant,
    train: Arc<dyn DataLoader<ImageBatch>>,
    valid: Arc<dyn DataLoader<ImageBatch>>,
    dir: &std::path::Path,
) -> CliResult<f64> {
    let model = ModelConfig::default_for(model_kind)
        .ok_or_else(|| CliError::usage(format!("--models: unknown model {model_kind}")))?
        .init_classifier(&backend.device.clone().autodiff())
        .map_err(|e| CliError::usage(e.to_string()))?;
    let optim = burn::optim::AdamConfig::new().init();
    let training = SupervisedTraining::new(dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(1)
        .renderer(Box::new(SilentRenderer))
        .with_application_logger(None);
    let start;
    match variant {
        Variant::PlainBurn => {
            start = Instant::now();
            training.launch(Learner::new(model, optim, 1e-3));
        }
        _ => {
            let mut callbacks = Callbacks::new().quiet(true);
            if variant == Variant::FiveNoOps {
                for _ in 0..5 {
                    callbacks.push(NoOp);
                }
            }
            if variant == Variant::FullSet {
                let run = dir.join("run");
                callbacks.push(CSVLogger::new(run.join("history.csv")));
                callbacks.push(
                    TensorBoard::new(run.join("tb"))
                        .update_freq(UpdateFreq::Batches(1))
                        .with_param_source(param_values_of::<Classifier>),
                );
                callbacks.push(ModelCheckpoint::new(ModelCheckpointConfig {
                    filepath: run.join("best.bpk").to_string_lossy().into_owned(),
                    save_best_only: true,
                    save_weights_only: true,
                    ..Default::default()
                })?);
                callbacks.push(EarlyStopping::new(EarlyStoppingConfig::default())?);
                callbacks.push(ReduceLROnPlateau::new(ReduceLROnPlateauConfig::default())?);
                callbacks.push(TerminateOnNaN::new(TerminateOnNaNConfig::default())?);
                callbacks.push(ProgressLogger::new(ProgressLoggerConfig {
                    bar: "never".into(),
                    ..Default::default()
                }));
            }
            let lr = callbacks.lr_scheduler(1e-3);
            let training = training.with_callbacks(callbacks);
            start = Instant::now();
            training.launch(Learner::new(model, optim, lr));
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `burnfit bench`.
pub fn bench_command(args: &BenchArgs) -> CliResult<()> {
    let batch = 64;
    let steps = args.steps.max(2);
    let tmp = tempfile::tempdir().map_err(|e| CliError::usage(format!("temp dir: {e}")))?;
    println!(
        "# burnfit bench: {} cores, batch {batch}, {steps} steps per measurement, median of {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.repeats
    );
    let adapters = backend::wgpu_adapters();
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
    checkpoint_stall(tmp.path())?;
    for kind in &args.models {
        let convolutional = kind != "mlp";
        let auto = backend::choose(BackendChoice::Auto, convolutional)?;
        println!("\n## {kind}: auto picks {} ({})", auto.name, auto.reason);
        println!("| backend | variant | step time (ms) | samples/s | ratio to plain Burn |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for name in &args.backends {
            let choice = match name.as_str() {
                "flex" => BackendChoice::Flex,
                "ndarray" => BackendChoice::Ndarray,
                "wgpu" => BackendChoice::Wgpu,
                other => {
                    return Err(CliError::usage(format!(
                        "--backends: unknown backend {other}"
                    )));
                }
            };
            let Ok(chosen) = backend::choose(choice, convolutional) else {
                println!("| {name} | (not available here) | | | |");
                continue;
            };
            // ndarray's convolutions take seconds per step: fewer steps.
            let steps = if name == "ndarray" && convolutional {
                3
            } else {
                steps
            };
            let train = loader(
                ImageBatcher::default(),
                synthetic(steps * batch),
                batch,
                1,
                None,
            );
            let valid = loader(ImageBatcher::default(), synthetic(batch), batch, 1, None);
            let mut plain = None;
            for variant in [
                Variant::PlainBurn,
                Variant::NoCallbacks,
                Variant::FiveNoOps,
                Variant::FullSet,
            ] {
                let mut times = Vec::new();
                for _ in 0..args.repeats.max(1) {
                    times.push(run_once(
                        kind,
                        &chosen,
                        variant,
                        train.clone(),
                        valid.clone(),
                        tmp.path(),
                    )?);
                }
                let seconds = median(times);
                let per_step = seconds / steps as f64;
                let base = *plain.get_or_insert(seconds);
                println!(
                    "| {name} | {} | {:.2} | {:.0} | {:.3} |",
                    variant.label(),
                    per_step * 1000.0,
                    (steps * batch) as f64 / seconds,
                    seconds / base
                );
            }
        }
    }
    Ok(())
}

/// Time the training thread spends per weights checkpoint: taking the record
/// (reading the parameters off the device) and writing it atomically.
fn checkpoint_stall(dir: &std::path::Path) -> CliResult<()> {
    use burn::module::Module;
    let device = backend::choose(BackendChoice::Flex, true)?.device;
    println!("\n## checkpoint stall per save (flex, weights only, median of 5)");
    println!("| model | parameters | record (ms) | atomic write (ms) | file size (KiB) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for kind in ["mlp", "cnn", "resnet"] {
        let model = ModelConfig::default_for(kind)
            .expect("known kind")
            .init_classifier(&device)
            .map_err(|e| CliError::usage(e.to_string()))?;
        let params = model.num_params();
        let (mut record_ms, mut write_ms, mut size) = (Vec::new(), Vec::new(), 0);
        for i in 0..5 {
            let start = Instant::now();
            let bytes = model
                .clone()
                .into_record()
                .into_bytes()
                .map_err(|e| CliError::failed(e.to_string()))?;
            record_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            let start = Instant::now();
            burnfit_callbacks::atomic::write_atomic(&dir.join(format!("{kind}-{i}.bpk")), &bytes)?;
            write_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            size = bytes.len();
        }
        println!(
            "| {kind} | {params} | {:.2} | {:.2} | {} |",
            median(record_ms),
            median(write_ms),
            size / 1024
        );
    }
    Ok(())
}
