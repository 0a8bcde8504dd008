//! A multi-layer perceptron classifier for flattened images.

use burn::config::Config;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{ModelConfigError, check, check_dense, dense_forward, dense_layers};

/// Configuration of an [`Mlp`].
///
/// Every field has a default, so a partial TOML/JSON config works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Number of inputs (pixels per image); 784 for 28x28.
    pub input_size: usize,
    /// Sizes of the hidden layers, in order. May be empty (logistic regression).
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout probability after each hidden layer, in `[0, 1)`.
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            input_size: 28 * 28,
            hidden: vec![256, 128],
            num_classes: 10,
            dropout: 0.2,
        }
    }
}

impl Config for MlpConfig {}

impl MlpConfig {
    /// The default configuration (784 -> 256 -> 128 -> 10, dropout 0.2).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the input size.
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    /// Sets the hidden layer sizes.
    pub fn with_hidden(mut self, hidden: Vec<usize>) -> Self {
        self.hidden = hidden;
        self
    }

    /// Sets the number of classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        check(self.input_size > 0, "mlp", "input_size must be positive")?;
        check(self.num_classes > 0, "mlp", "num_classes must be positive")?;
        check_dense("mlp", &self.hidden, self.dropout)
    }

    /// Builds the network on `device`.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (see [`MlpConfig::validate`]).
    pub fn init(&self, device: &Device) -> Mlp {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let (hidden, width) = dense_layers(self.input_size, &self.hidden, device);
        Mlp {
            hidden,
            output: LinearConfig::new(width, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: Relu::new(),
            input_size: self.input_size,
        }
    }
}

/// A multi-layer perceptron: `(linear -> relu -> dropout)* -> linear`.
///
/// Takes images `[batch, channels, height, width]` (flattened inside) or
/// vectors `[batch, input_size]` via [`Mlp::forward_flat`]; returns logits
/// `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers.
    pub hidden: Vec<Linear>,
    /// Output layer.
    pub output: Linear,
    /// Dropout after each hidden layer.
    pub dropout: Dropout,
    /// Activation after each hidden layer. The forward applies it folded
    /// into the layer ([`crate::linear::linear_relu`]); the field stays so
    /// that the module and its records keep their shape.
    pub activation: Relu,
    /// Number of inputs expected.
    pub input_size: usize,
}

impl Mlp {
    /// Logits for images `[batch, channels, height, width]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let [batch, c, h, w] = images.dims();
        self.forward_flat(images.reshape([batch, c * h * w]))
    }

    /// Logits for flat inputs `[batch, input_size]`.
    ///
    /// # Panics
    ///
    /// Panics if the input width is not `input_size`.
    pub fn forward_flat(&self, input: Tensor<2>) -> Tensor<2> {
        let [_, width] = input.dims();
        assert_eq!(
            width, self.input_size,
            "MLP expects {} inputs per item, got {width}",
            self.input_size
        );
        dense_forward(&self.hidden, &self.dropout, &self.output, input)
    }
}

super::impl_classifier_steps!(Mlp);
