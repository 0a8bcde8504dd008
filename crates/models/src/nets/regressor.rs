//! A multi-layer perceptron regressor for numeric tables, trained with MSE.

use burn::config::Config;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::train::{InferenceStep, RegressionOutput, TrainOutput, TrainStep};
use serde::{Deserialize, Serialize};

use super::{ModelConfigError, check, check_dense, dense_forward, dense_layers};
use crate::data::RegressionBatch;

/// Configuration of an [`MlpRegressor`].
///
/// Every field has a default, so a partial TOML/JSON config works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpRegressorConfig {
    /// Number of input features. 0 means "not yet known": set it from the
    /// data (see [`MlpRegressorConfig::with_input_size`]) before `init`.
    pub input_size: usize,
    /// Sizes of the hidden layers, in order.
    pub hidden: Vec<usize>,
    /// Number of outputs (targets).
    pub output_size: usize,
    /// Dropout probability after each hidden layer, in `[0, 1)`.
    pub dropout: f64,
}

impl Default for MlpRegressorConfig {
    fn default() -> Self {
        Self {
            input_size: 0,
            hidden: vec![64, 64],
            output_size: 1,
            dropout: 0.0,
        }
    }
}

impl Config for MlpRegressorConfig {}

impl MlpRegressorConfig {
    /// A configuration for `input_size` features (hidden 64, 64; one output).
    pub fn new(input_size: usize) -> Self {
        Self {
            input_size,
            ..Self::default()
        }
    }

    /// Sets the number of input features.
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    /// Sets the hidden layer sizes.
    pub fn with_hidden(mut self, hidden: Vec<usize>) -> Self {
        self.hidden = hidden;
        self
    }

    /// Sets the number of outputs.
    pub fn with_output_size(mut self, output_size: usize) -> Self {
        self.output_size = output_size;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        check(
            self.input_size > 0,
            "mlp_regressor",
            "input_size must be set (it is 0: set it from the number of feature columns)",
        )?;
        check(
            self.output_size > 0,
            "mlp_regressor",
            "output_size must be positive",
        )?;
        check_dense("mlp_regressor", &self.hidden, self.dropout)
    }

    /// Builds the network on `device`.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (see [`MlpRegressorConfig::validate`]).
    pub fn init(&self, device: &Device) -> MlpRegressor {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let (hidden, width) = dense_layers(self.input_size, &self.hidden, device);
        MlpRegressor {
            hidden,
            output: LinearConfig::new(width, self.output_size).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: Relu::new(),
            loss: MseLoss::new(),
        }
    }
}

/// An MLP regressor: `(linear -> relu -> dropout)* -> linear`, MSE loss.
#[derive(Module, Debug)]
pub struct MlpRegressor {
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
    /// The loss.
    pub loss: MseLoss,
}

impl MlpRegressor {
    /// Predictions `[batch, output_size]` for features `[batch, input_size]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        dense_forward(&self.hidden, &self.dropout, &self.output, features)
    }

    /// Predictions and mean squared error for a batch.
    pub fn forward_regression(&self, batch: RegressionBatch) -> RegressionOutput {
        let output = self.forward(batch.features);
        let loss = self
            .loss
            .forward(output.clone(), batch.targets.clone(), Reduction::Mean);
        RegressionOutput::new(loss, output, batch.targets)
    }
}

impl TrainStep for MlpRegressor {
    type Input = RegressionBatch;
    type Output = RegressionOutput;

    fn step(&self, batch: RegressionBatch) -> TrainOutput<RegressionOutput> {
        let item = self.forward_regression(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for MlpRegressor {
    type Input = RegressionBatch;
    type Output = RegressionOutput;

    fn step(&self, batch: RegressionBatch) -> RegressionOutput {
        self.forward_regression(batch)
    }
}
