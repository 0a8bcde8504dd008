//! The classic Keras MNIST convolutional network: two valid 3×3 convolutions
//! (32 and 64 channels), 2×2 max pooling, dropout, a 128-wide dense layer.
//!
//! It is the network the Keras/TensorFlow step times in docs/benchmarks.md
//! were measured with, so `burnfit bench` can compare like with like.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::host_dropout::dropout;
use super::{ModelConfigError, check};
use crate::conv::conv2d_relu;
use crate::conv_pool::conv2d_relu_max_pool2d;
use crate::linear::{linear, linear_relu};

/// Configuration of a [`SimpleCnn`].
///
/// Every field has a default, so a partial TOML/JSON config works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimpleCnnConfig {
    /// Input channels (1 for grayscale).
    pub in_channels: usize,
    /// Input height and width; at least 6 and even after the two valid
    /// convolutions (`image_size - 4` must be even).
    pub image_size: usize,
    /// Output channels of the two convolutions.
    pub channels: [usize; 2],
    /// Width of the hidden fully connected layer.
    pub fc_size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout probability after pooling.
    pub conv_dropout: f64,
    /// Dropout probability after the hidden fully connected layer.
    pub fc_dropout: f64,
}

impl Default for SimpleCnnConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            channels: [32, 64],
            fc_size: 128,
            num_classes: 10,
            conv_dropout: 0.25,
            fc_dropout: 0.5,
        }
    }
}

impl Config for SimpleCnnConfig {}

impl SimpleCnnConfig {
    /// The default configuration (Keras's MNIST example: 32, 64, fc 128).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let kind = "simple_cnn";
        check(self.in_channels > 0, kind, "in_channels must be positive")?;
        check(
            self.image_size >= 6 && (self.image_size - 4).is_multiple_of(2),
            kind,
            "image_size must be at least 6 and even",
        )?;
        check(
            self.channels.iter().all(|&c| c > 0),
            kind,
            "channels must be positive",
        )?;
        check(self.fc_size > 0, kind, "fc_size must be positive")?;
        check(self.num_classes > 0, kind, "num_classes must be positive")?;
        check(
            (0.0..1.0).contains(&self.conv_dropout) && (0.0..1.0).contains(&self.fc_dropout),
            kind,
            "dropout must be in [0, 1)",
        )
    }

    /// Builds the network on `device`.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (see [`SimpleCnnConfig::validate`]).
    pub fn init(&self, device: &Device) -> SimpleCnn {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let [c1, c2] = self.channels;
        let side = (self.image_size - 4) / 2;
        SimpleCnn {
            conv1: Conv2dConfig::new([self.in_channels, c1], [3, 3]).init(device),
            conv2: Conv2dConfig::new([c1, c2], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            conv_dropout: DropoutConfig::new(self.conv_dropout).init(),
            fc1: LinearConfig::new(c2 * side * side, self.fc_size).init(device),
            fc_dropout: DropoutConfig::new(self.fc_dropout).init(),
            fc2: LinearConfig::new(self.fc_size, self.num_classes).init(device),
            activation: Relu::new(),
        }
    }
}

/// `conv3x3 -> relu -> conv3x3 -> relu -> maxpool2x2 -> dropout -> fc -> relu
/// -> dropout -> fc`.
///
/// Takes images `[batch, in_channels, image_size, image_size]` and returns
/// logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct SimpleCnn {
    /// First convolution (valid padding).
    pub conv1: Conv2d,
    /// Second convolution (valid padding).
    pub conv2: Conv2d,
    /// 2×2 max pooling.
    pub pool: MaxPool2d,
    /// Dropout after pooling.
    pub conv_dropout: Dropout,
    /// Hidden fully connected layer.
    pub fc1: Linear,
    /// Dropout after `fc1`.
    pub fc_dropout: Dropout,
    /// Output layer.
    pub fc2: Linear,
    /// Activation.
    pub activation: Relu,
}

impl SimpleCnn {
    /// Logits for images `[batch, channels, height, width]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = conv2d_relu(&self.conv1, images);
        let x = conv2d_relu_max_pool2d(&self.conv2, &self.pool, x);
        let x = dropout(&self.conv_dropout, x);
        let [batch, c, h, w] = x.dims();
        let x = x.reshape([batch, c * h * w]);
        let x = dropout(&self.fc_dropout, linear_relu(&self.fc1, x));
        linear(&self.fc2, x)
    }
}

super::impl_classifier_steps!(SimpleCnn);
