//! The example's own network and data: a 1-D convolutional classifier of
//! waveforms (sine, square, sawtooth), over waves it generates.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig1d, Relu};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use serde::{Deserialize, Serialize};

/// The classes, by label.
pub const CLASSES: [&str; 3] = ["sine", "square", "sawtooth"];

/// `[model]`: two convolutions, a global average, a linear head.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveNetConfig {
    /// Channels of the two convolutions.
    pub channels: [usize; 2],
    /// Their kernel size (odd).
    pub kernel_size: usize,
}

/// The network.
#[derive(Module, Debug)]
pub struct WaveNet {
    conv1: Conv1d,
    conv2: Conv1d,
    head: Linear,
    relu: Relu,
}

impl WaveNetConfig {
    /// A freshly initialised network on `device`.
    pub fn init(&self, device: &Device) -> WaveNet {
        let [c1, c2] = self.channels;
        let conv = |i, o| {
            Conv1dConfig::new(i, o, self.kernel_size)
                .with_padding(PaddingConfig1d::Same)
                .init(device)
        };
        WaveNet {
            conv1: conv(1, c1),
            conv2: conv(c1, c2),
            head: LinearConfig::new(c2, CLASSES.len()).init(device),
            relu: Relu::new(),
        }
    }
}

impl WaveNet {
    /// Logits `[batch, classes]` of signals `[batch, 1, length]`.
    pub fn forward(&self, signals: Tensor<3>) -> Tensor<2> {
        let x = self.relu.forward(self.conv1.forward(signals));
        let x = self.relu.forward(self.conv2.forward(x));
        let [batch, channels, _] = x.dims();
        self.head.forward(x.mean_dim(2).reshape([batch, channels]))
    }

    fn classify(&self, batch: WaveBatch) -> ClassificationOutput {
        let logits = self.forward(batch.signals);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for WaveNet {
    type Input = WaveBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: WaveBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for WaveNet {
    type Input = WaveBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: WaveBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

/// `[data]`: how many waves, how long, how noisy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavesConfig {
    /// Waves for training and validation.
    pub items: usize,
    /// Samples per wave.
    pub length: usize,
    /// Standard deviation of the noise added to each sample.
    pub noise: f32,
    /// Fraction of `items` held out for validation.
    pub validation_split: f64,
    /// Waves in the test set.
    pub test_items: usize,
}

/// One wave and its class.
#[derive(Clone, Debug)]
pub struct Wave {
    /// The samples.
    pub samples: Vec<f32>,
    /// The class (index into [`CLASSES`]).
    pub label: usize,
}

/// Generated waves: random class, frequency, phase and noise, the same for
/// the same seed.
pub struct WaveDataset {
    waves: Vec<Wave>,
}

impl WaveDataset {
    /// `count` waves of `config`, drawn from `seed`.
    pub fn generate(config: &WavesConfig, count: usize, seed: u64) -> Self {
        let mut random = SplitMix(seed);
        let waves = (0..count)
            .map(|_| {
                let label = (random.next() * CLASSES.len() as f32) as usize % CLASSES.len();
                let cycles = 1.0 + 3.0 * random.next();
                let phase = random.next();
                let samples = (0..config.length)
                    .map(|i| {
                        let t = (i as f32 / config.length as f32 * cycles + phase).fract();
                        let clean = match label {
                            0 => (t * std::f32::consts::TAU).sin(),
                            1 => {
                                if t < 0.5 {
                                    1.0
                                } else {
                                    -1.0
                                }
                            }
                            _ => 2.0 * t - 1.0,
                        };
                        clean + config.noise * random.normal()
                    })
                    .collect();
                Wave { samples, label }
            })
            .collect();
        Self { waves }
    }

    /// Waves read from text, one per line as `length` comma-separated
    /// samples (the network's input length; the label is unknown: 0).
    pub fn parse(text: &str, length: usize) -> Result<Self, String> {
        let waves = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                let samples = line
                    .split(',')
                    .map(|v| v.trim().parse::<f32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("line {}: {e}", i + 1))?;
                if samples.len() != length {
                    return Err(format!(
                        "line {}: {} samples, but the model reads waves of {length} ([data] length)",
                        i + 1,
                        samples.len()
                    ));
                }
                Ok(Wave { samples, label: 0 })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { waves })
    }
}

impl Dataset<Wave> for WaveDataset {
    fn get(&self, index: usize) -> Result<Wave, DatasetError> {
        self.waves.get(index).cloned().ok_or_else(|| {
            DatasetError::new(std::io::Error::other(format!(
                "wave {index} of {}",
                self.waves.len()
            )))
        })
    }

    fn len(&self) -> usize {
        self.waves.len()
    }
}

/// A batch: signals `[batch, 1, length]` and labels.
#[derive(Clone, Debug)]
pub struct WaveBatch {
    /// The signals.
    pub signals: Tensor<3>,
    /// The labels.
    pub targets: Tensor<1, Int>,
}

/// Makes [`WaveBatch`]es.
#[derive(Clone, Copy, Debug, Default)]
pub struct WaveBatcher;

impl Batcher<Wave, WaveBatch> for WaveBatcher {
    fn batch(&self, items: Vec<Wave>, device: &Device) -> WaveBatch {
        let (n, length) = (items.len(), items.first().map_or(0, |w| w.samples.len()));
        let samples: Vec<f32> = items.iter().flat_map(|w| w.samples.clone()).collect();
        let labels: Vec<i64> = items.iter().map(|w| w.label as i64).collect();
        WaveBatch {
            signals: Tensor::from_data(TensorData::new(samples, [n, 1, length]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

/// A small deterministic generator (SplitMix64), so that the data depends
/// on the seed alone.
struct SplitMix(u64);

impl SplitMix {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// About normal (the sum of four uniforms, scaled to unit variance).
    fn normal(&mut self) -> f32 {
        let sum: f32 = (0..4).map(|_| self.next()).sum();
        (sum - 2.0) * 3.0f32.sqrt()
    }
}
