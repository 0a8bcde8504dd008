//! Networks: four image classifiers and a table regressor, each with a
//! serde-friendly config, plus [`ModelConfig`] / [`Classifier`] to build any
//! classifier from a config file.
//!
//! Every classifier implements Burn's [`TrainStep`](burn::train::TrainStep) and
//! [`InferenceStep`](burn::train::InferenceStep) on
//! [`ImageBatch`](crate::data::ImageBatch) with a
//! cross-entropy loss and [`ClassificationOutput`]; the regressor does so on
//! [`RegressionBatch`](crate::data::RegressionBatch) with an MSE loss and
//! [`RegressionOutput`](burn::train::RegressionOutput). `#[derive(Module)]`
//! provides `Display`, so every network is a Burn `LearnerModel`.

pub mod cnn;
pub mod host_dropout;
pub mod mlp;
pub mod regressor;
pub mod resnet;
pub mod simple_cnn;

use burn::config::Config;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::train::ClassificationOutput;
use serde::{Deserialize, Serialize};

pub use cnn::{Cnn, CnnConfig};
pub use mlp::{Mlp, MlpConfig};
pub use regressor::{MlpRegressor, MlpRegressorConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use simple_cnn::{SimpleCnn, SimpleCnnConfig};

/// An invalid model configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelConfigError {
    /// A field has an invalid value.
    #[error("invalid `{kind}` model config: {message}")]
    Invalid {
        /// The model kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The model does not do the task asked of it.
    #[error("model kind `{kind}` is a {actual} model, but a {expected} model is needed")]
    WrongTask {
        /// The model kind.
        kind: &'static str,
        /// The task it does.
        actual: Task,
        /// The task asked for.
        expected: Task,
    },
}

/// Returns an [`ModelConfigError::Invalid`] unless `ok`.
pub(crate) fn check(ok: bool, kind: &'static str, message: &str) -> Result<(), ModelConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ModelConfigError::Invalid {
            kind,
            message: message.to_string(),
        })
    }
}

/// Checks the parts shared by the dense networks: positive hidden sizes and
/// a dropout probability in `[0, 1)`.
pub(crate) fn check_dense(
    kind: &'static str,
    hidden: &[usize],
    dropout: f64,
) -> Result<(), ModelConfigError> {
    check(
        hidden.iter().all(|&h| h > 0),
        kind,
        "hidden layer sizes must be positive",
    )?;
    check(
        (0.0..1.0).contains(&dropout),
        kind,
        "dropout must be in [0, 1)",
    )
}

/// The hidden layers of a dense network from `input` features through
/// `hidden` widths; returns them with the width of the last one.
pub(crate) fn dense_layers(
    input: usize,
    hidden: &[usize],
    device: &Device,
) -> (Vec<burn::nn::Linear>, usize) {
    let mut layers = Vec::with_capacity(hidden.len());
    let mut width = input;
    for &h in hidden {
        layers.push(burn::nn::LinearConfig::new(width, h).init(device));
        width = h;
    }
    (layers, width)
}

/// `hidden` layers, each followed by ReLU and dropout, then `output`; the
/// layers (and the ReLUs, folded into them) through [`crate::linear`].
pub(crate) fn dense_forward(
    hidden: &[burn::nn::Linear],
    dropout: &burn::nn::Dropout,
    output: &burn::nn::Linear,
    input: Tensor<2>,
) -> Tensor<2> {
    let mut x = input;
    for layer in hidden {
        x = host_dropout::dropout(dropout, crate::linear::linear_relu(layer, x));
    }
    crate::linear::linear(output, x)
}

/// Cross-entropy loss of `logits` `[batch, classes]` against `targets` `[batch]`,
/// packaged for Burn's metrics.
pub fn classification_output(logits: Tensor<2>, targets: Tensor<1, Int>) -> ClassificationOutput {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), targets.clone());
    ClassificationOutput::new(loss, logits, targets)
}

/// Implements `forward_classification`, `TrainStep` and `InferenceStep` for a
/// classifier type with `fn forward(&self, Tensor<4>) -> Tensor<2>`.
macro_rules! impl_classifier_steps {
    ($model:ty) => {
        impl $model {
            /// Logits and cross-entropy loss for a batch.
            pub fn forward_classification(
                &self,
                batch: $crate::data::ImageBatch,
            ) -> burn::train::ClassificationOutput {
                $crate::nets::classification_output(self.forward(batch.images), batch.targets)
            }
        }

        impl burn::train::TrainStep for $model {
            type Input = $crate::data::ImageBatch;
            type Output = burn::train::ClassificationOutput;

            fn step(
                &self,
                batch: $crate::data::ImageBatch,
            ) -> burn::train::TrainOutput<burn::train::ClassificationOutput> {
                let item = self.forward_classification(batch);
                burn::train::TrainOutput::new(self, item.loss.backward(), item)
            }
        }

        impl burn::train::InferenceStep for $model {
            type Input = $crate::data::ImageBatch;
            type Output = burn::train::ClassificationOutput;

            fn step(&self, batch: $crate::data::ImageBatch) -> burn::train::ClassificationOutput {
                self.forward_classification(batch)
            }
        }
    };
}
pub(crate) use impl_classifier_steps;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Image classification on [`ImageBatch`](crate::data::ImageBatch).
    Classification,
    /// Regression on [`RegressionBatch`](crate::data::RegressionBatch).
    Regression,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        })
    }
}

/// Any model's configuration, tagged by `kind`:
///
/// ```toml
/// kind = "cnn"          # "mlp" | "cnn" | "simple_cnn" | "resnet" | "mlp_regressor"
/// channels = [32, 64]   # the kind's own fields; omitted ones take defaults
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ModelConfig {
    /// An [`Mlp`] classifier.
    #[serde(rename = "mlp")]
    Mlp(MlpConfig),
    /// A [`Cnn`] classifier.
    #[serde(rename = "cnn")]
    Cnn(CnnConfig),
    /// A [`SimpleCnn`] classifier (Keras's MNIST example network).
    #[serde(rename = "simple_cnn")]
    SimpleCnn(SimpleCnnConfig),
    /// A [`ResNet`] classifier.
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
    /// An [`MlpRegressor`].
    #[serde(rename = "mlp_regressor")]
    MlpRegressor(MlpRegressorConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::Mlp(MlpConfig::default())
    }
}

impl Config for ModelConfig {}

impl ModelConfig {
    /// Every accepted `kind`.
    pub const KINDS: [&'static str; 5] = ["mlp", "cnn", "simple_cnn", "resnet", "mlp_regressor"];

    /// The default configuration of a kind, or `None` for an unknown kind.
    pub fn default_for(kind: &str) -> Option<Self> {
        Some(match kind {
            "mlp" => ModelConfig::Mlp(MlpConfig::default()),
            "cnn" => ModelConfig::Cnn(CnnConfig::default()),
            "simple_cnn" => ModelConfig::SimpleCnn(SimpleCnnConfig::default()),
            "resnet" => ModelConfig::ResNet(ResNetConfig::default()),
            "mlp_regressor" => ModelConfig::MlpRegressor(MlpRegressorConfig::default()),
            _ => return None,
        })
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::SimpleCnn(_) => "simple_cnn",
            ModelConfig::ResNet(_) => "resnet",
            ModelConfig::MlpRegressor(_) => "mlp_regressor",
        }
    }

    /// Whether the network is convolutional (which decides the automatic
    /// CPU backend and warnings about ndarray).
    pub fn is_convolutional(&self) -> bool {
        matches!(
            self,
            ModelConfig::Cnn(_) | ModelConfig::SimpleCnn(_) | ModelConfig::ResNet(_)
        )
    }

    /// What the model does.
    pub fn task(&self) -> Task {
        match self {
            ModelConfig::MlpRegressor(_) => Task::Regression,
            _ => Task::Classification,
        }
    }

    /// Checks the configuration. A regressor with `input_size = 0` passes:
    /// that size is filled in by [`ModelConfig::init_regressor`].
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        match self {
            ModelConfig::Mlp(c) => c.validate(),
            ModelConfig::Cnn(c) => c.validate(),
            ModelConfig::SimpleCnn(c) => c.validate(),
            ModelConfig::ResNet(c) => c.validate(),
            ModelConfig::MlpRegressor(c) => {
                c.clone().with_input_size(c.input_size.max(1)).validate()
            }
        }
    }

    /// This classifier's config for `[channels, height, width]` images of
    /// `num_classes` classes: the input keys (`in_channels` and
    /// `image_size`, or the MLP's `input_size`) and `num_classes` follow the
    /// data; the other keys are kept. The convolutional kinds need square
    /// images, and the result is validated.
    pub fn for_images(
        &self,
        [channels, height, width]: [usize; 3],
        num_classes: usize,
    ) -> Result<Self, ModelConfigError> {
        let square = || {
            check(
                height == width,
                self.kind(),
                &format!("takes square images, the data's are {width}x{height} (width x height)"),
            )
            .map(|()| height)
        };
        let config = match self.clone() {
            ModelConfig::Mlp(c) => ModelConfig::Mlp(MlpConfig {
                input_size: channels * height * width,
                num_classes,
                ..c
            }),
            ModelConfig::Cnn(c) => ModelConfig::Cnn(CnnConfig {
                in_channels: channels,
                image_size: square()?,
                num_classes,
                ..c
            }),
            ModelConfig::SimpleCnn(c) => ModelConfig::SimpleCnn(SimpleCnnConfig {
                in_channels: channels,
                image_size: square()?,
                num_classes,
                ..c
            }),
            ModelConfig::ResNet(c) => ModelConfig::ResNet(ResNetConfig {
                in_channels: channels,
                num_classes,
                ..c
            }),
            ModelConfig::MlpRegressor(_) => {
                return Err(ModelConfigError::WrongTask {
                    kind: self.kind(),
                    actual: Task::Regression,
                    expected: Task::Classification,
                });
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Builds the classifier this config describes.
    pub fn init_classifier(&self, device: &Device) -> Result<Classifier, ModelConfigError> {
        self.validate()?;
        Ok(match self {
            ModelConfig::Mlp(c) => Classifier::Mlp(c.init(device)),
            ModelConfig::Cnn(c) => Classifier::Cnn(c.init(device)),
            ModelConfig::SimpleCnn(c) => Classifier::SimpleCnn(c.init(device)),
            ModelConfig::ResNet(c) => Classifier::ResNet(c.init(device)),
            ModelConfig::MlpRegressor(_) => {
                return Err(ModelConfigError::WrongTask {
                    kind: self.kind(),
                    actual: Task::Regression,
                    expected: Task::Classification,
                });
            }
        })
    }

    /// Builds the regressor this config describes for `num_features` inputs.
    ///
    /// A configured `input_size` of 0 takes `num_features`; any other value
    /// must equal it.
    pub fn init_regressor(
        &self,
        num_features: usize,
        device: &Device,
    ) -> Result<MlpRegressor, ModelConfigError> {
        match self {
            ModelConfig::MlpRegressor(c) => {
                if c.input_size != 0 && c.input_size != num_features {
                    return Err(ModelConfigError::Invalid {
                        kind: self.kind(),
                        message: format!(
                            "input_size is {} but the table has {num_features} feature columns",
                            c.input_size
                        ),
                    });
                }
                let c = c.clone().with_input_size(num_features);
                c.validate()?;
                Ok(c.init(device))
            }
            _ => Err(ModelConfigError::WrongTask {
                kind: self.kind(),
                actual: Task::Classification,
                expected: Task::Regression,
            }),
        }
    }
}

/// Any of the image classifiers, as one Burn module type (so one
/// `Learner<Classifier>` covers them all).
// A model is built once and moved rarely, so the size gap between variants
// costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier {
    /// An MLP.
    Mlp(Mlp),
    /// A CNN.
    Cnn(Cnn),
    /// Keras's MNIST example CNN.
    SimpleCnn(SimpleCnn),
    /// A ResNet.
    ResNet(ResNet),
}

impl Classifier {
    /// Logits `[batch, classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::Mlp(m) => m.forward(images),
            Classifier::Cnn(m) => m.forward(images),
            Classifier::SimpleCnn(m) => m.forward(images),
            Classifier::ResNet(m) => m.forward(images),
        }
    }

    /// The `kind` tag of the wrapped network.
    pub fn kind(&self) -> &'static str {
        match self {
            Classifier::Mlp(_) => "mlp",
            Classifier::Cnn(_) => "cnn",
            Classifier::SimpleCnn(_) => "simple_cnn",
            Classifier::ResNet(_) => "resnet",
        }
    }
}

impl From<Mlp> for Classifier {
    fn from(m: Mlp) -> Self {
        Classifier::Mlp(m)
    }
}

impl From<Cnn> for Classifier {
    fn from(m: Cnn) -> Self {
        Classifier::Cnn(m)
    }
}

impl From<SimpleCnn> for Classifier {
    fn from(m: SimpleCnn) -> Self {
        Classifier::SimpleCnn(m)
    }
}

impl From<ResNet> for Classifier {
    fn from(m: ResNet) -> Self {
        Classifier::ResNet(m)
    }
}

impl_classifier_steps!(Classifier);
