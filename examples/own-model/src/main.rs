//! `own-model`: your own Burn model with all of burnfit. A network burnfit
//! does not ship (a 1-D convolution over waveforms, `waves.rs`) and its own
//! dataset become a [`Task`]; `burnfit_cli::run` gives this binary every
//! `burnfit` command: `train` (with `--resume`, `--devices`, `--remote`),
//! `eval`, `predict`, `validate`, `report`, `sweep`, `lr-find`, `serve`.
//!
//! ```text
//! own-model train examples/own-model/config.toml --run-dir runs/waves
//! own-model eval runs/waves
//! ```

mod waves;

use std::process::ExitCode;

use burn::prelude::*;
use burn::train::ClassificationOutput;
use burn::train::metric::AccuracyMetric;
use burnfit_cli::{
    CliError, CliResult, DataContext, KeyError, MetricNames, Predict, Task, TaskData,
};
use waves::{
    CLASSES, Wave, WaveBatch, WaveBatcher, WaveDataset, WaveNet, WaveNetConfig, WavesConfig,
};

/// The waveform classifier, as a burnfit task.
struct Waves;

impl Task for Waves {
    type ModelConfig = WaveNetConfig;
    type DataConfig = WavesConfig;
    type Model = WaveNet;
    type Item = Wave;
    type Batcher = WaveBatcher;

    fn model(
        &self,
        config: &WaveNetConfig,
        _: &TaskData<Wave>,
        device: &Device,
    ) -> CliResult<WaveNet> {
        Ok(config.init(device))
    }

    fn data(&self, config: &WavesConfig, context: &DataContext) -> CliResult<TaskData<Wave>> {
        let valid = (config.items as f64 * config.validation_split).round() as usize;
        let split = |count, stream| WaveDataset::generate(config, count, context.seed ^ stream);
        Ok(TaskData::new(
            split(config.items - valid, 1),
            split(valid, 2),
            split(config.test_items, 3),
        ))
    }

    fn batcher(&self) -> WaveBatcher {
        WaveBatcher
    }

    fn check(&self, model: &WaveNetConfig, data: &WavesConfig) -> Result<(), KeyError> {
        if model.kernel_size.is_multiple_of(2) {
            return Err(KeyError::new("model.kernel_size", "must be odd"));
        }
        if !(data.validation_split > 0.0 && data.validation_split < 1.0) {
            return Err(KeyError::new(
                "data.validation_split",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }

    fn metric_names(&self) -> MetricNames {
        let accuracy = vec!["accuracy".to_string()];
        MetricNames {
            available: accuracy.clone(),
            default: accuracy,
            other_tasks: vec![],
        }
    }

    fn register_metrics(
        &self,
        training: burn::train::SupervisedTraining<WaveNet>,
        _names: &[String],
    ) -> burn::train::SupervisedTraining<WaveNet> {
        burnfit_cli::register_metric(training, AccuracyMetric::new(), "accuracy")
    }

    fn correct(&self, output: &ClassificationOutput) -> Option<usize> {
        Some(burnfit_cli::task::right_classes(output))
    }

    /// `own-model predict RUN WAVES.txt`: one wave per line, comma-separated.
    fn predict(&self, job: Predict<'_, Self>) -> CliResult<()> {
        let text = std::fs::read_to_string(job.input)
            .map_err(|e| CliError::usage(format!("{}: {e}", job.input.display())))?;
        let waves = WaveDataset::parse(&text, job.data_config.length)
            .map_err(|e| CliError::usage(format!("{}: {e}", job.input.display())))?;
        let model = job.load(job.model_config.init(job.device))?;
        let mut index = 0;
        job.each_batch(waves, WaveBatcher, |batch: WaveBatch| {
            let probabilities = burn::tensor::activation::softmax(model.forward(batch.signals), 1);
            let [rows, classes] = probabilities.dims();
            let values: Vec<f32> = probabilities
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| CliError::failed(format!("the model's output: {e:?}")))?;
            for row in values.chunks(classes).take(rows) {
                let (best, p) = row
                    .iter()
                    .enumerate()
                    .fold((0, 0.0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                println!("{index}\t{best}\t{}\t{p:.4}", CLASSES[best]);
                index += 1;
            }
            Ok(())
        })
    }
}

fn main() -> ExitCode {
    burnfit_cli::run(Waves)
}
