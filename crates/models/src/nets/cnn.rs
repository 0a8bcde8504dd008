//! A small convolutional network for 28x28 grayscale images.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::host_dropout::dropout;
use super::{ModelConfigError, check};
use crate::conv::conv2d;
use crate::linear::{linear, linear_relu};
use crate::norm::batch_norm_relu;
use crate::pool::max_pool2d;

/// Configuration of a [`Cnn`].
///
/// Every field has a default, so a partial TOML/JSON config works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnConfig {
    /// Input channels (1 for grayscale).
    pub in_channels: usize,
    /// Input height and width; must be divisible by 4 (two 2x2 poolings).
    pub image_size: usize,
    /// Output channels of the first and second convolution blocks.
    pub channels: [usize; 2],
    /// Width of the hidden fully connected layer.
    pub fc_size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout probability at the end of each convolution block.
    pub conv_dropout: f64,
    /// Dropout probability after the hidden fully connected layer.
    pub fc_dropout: f64,
}

impl Default for CnnConfig {
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

impl Config for CnnConfig {}

impl CnnConfig {
    /// The default configuration (channels 32 and 64, fc 128, 10 classes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the channels of the two convolution blocks.
    pub fn with_channels(mut self, channels: [usize; 2]) -> Self {
        self.channels = channels;
        self
    }

    /// Sets the width of the hidden fully connected layer.
    pub fn with_fc_size(mut self, fc_size: usize) -> Self {
        self.fc_size = fc_size;
        self
    }

    /// Sets the number of classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Sets both dropout probabilities.
    pub fn with_dropout(mut self, conv_dropout: f64, fc_dropout: f64) -> Self {
        self.conv_dropout = conv_dropout;
        self.fc_dropout = fc_dropout;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        check(self.in_channels > 0, "cnn", "in_channels must be positive")?;
        check(
            self.image_size >= 4 && self.image_size.is_multiple_of(4),
            "cnn",
            "image_size must be a positive multiple of 4",
        )?;
        check(
            self.channels.iter().all(|&c| c > 0),
            "cnn",
            "channels must be positive",
        )?;
        check(self.fc_size > 0, "cnn", "fc_size must be positive")?;
        check(self.num_classes > 0, "cnn", "num_classes must be positive")?;
        check(
            (0.0..1.0).contains(&self.conv_dropout) && (0.0..1.0).contains(&self.fc_dropout),
            "cnn",
            "dropout must be in [0, 1)",
        )
    }

    /// Builds the network on `device`.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (see [`CnnConfig::validate`]).
    pub fn init(&self, device: &Device) -> Cnn {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let [c1, c2] = self.channels;
        let side = self.image_size / 4;
        Cnn {
            block1: ConvBlock::new(self.in_channels, c1, self.conv_dropout, device),
            block2: ConvBlock::new(c1, c2, self.conv_dropout, device),
            fc1: LinearConfig::new(c2 * side * side, self.fc_size).init(device),
            fc2: LinearConfig::new(self.fc_size, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.fc_dropout).init(),
            activation: Relu::new(),
        }
    }
}

/// `conv3x3 -> batchnorm -> relu -> conv3x3 -> batchnorm -> relu -> maxpool2x2 -> dropout`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// First convolution.
    pub conv1: Conv2d,
    /// Batch norm after the first convolution.
    pub bn1: BatchNorm,
    /// Second convolution.
    pub conv2: Conv2d,
    /// Batch norm after the second convolution.
    pub bn2: BatchNorm,
    /// 2x2 max pooling.
    pub pool: MaxPool2d,
    /// Dropout at the end of the block.
    pub dropout: Dropout,
    /// Activation.
    pub activation: Relu,
}

impl ConvBlock {
    /// A block mapping `in_channels` to `out_channels`, halving height and width.
    pub fn new(in_channels: usize, out_channels: usize, dropout: f64, device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device)
        };
        Self {
            conv1: conv(in_channels, out_channels),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv(out_channels, out_channels),
            bn2: BatchNormConfig::new(out_channels).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(dropout).init(),
            activation: Relu::new(),
        }
    }

    /// `[batch, in, h, w]` to `[batch, out, h / 2, w / 2]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        let x = batch_norm_relu(&self.bn2, conv2d(&self.conv2, x));
        dropout(&self.dropout, max_pool2d(&self.pool, x))
    }
}

/// Two convolution blocks then `fc -> relu -> dropout -> fc`.
///
/// Takes images `[batch, in_channels, image_size, image_size]` and returns
/// logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct Cnn {
    /// First convolution block.
    pub block1: ConvBlock,
    /// Second convolution block.
    pub block2: ConvBlock,
    /// Hidden fully connected layer.
    pub fc1: Linear,
    /// Output layer.
    pub fc2: Linear,
    /// Dropout after `fc1`.
    pub dropout: Dropout,
    /// Activation after `fc1`.
    pub activation: Relu,
}

impl Cnn {
    /// Logits for images `[batch, channels, height, width]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.block2.forward(self.block1.forward(images));
        let [batch, c, h, w] = x.dims();
        let x = x.reshape([batch, c * h * w]);
        let x = dropout(&self.dropout, linear_relu(&self.fc1, x));
        linear(&self.fc2, x)
    }
}

super::impl_classifier_steps!(Cnn);
