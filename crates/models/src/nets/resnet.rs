//! A small residual network for small grayscale images.

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{ModelConfigError, check};
use crate::conv::conv2d;
use crate::norm::{batch_norm, batch_norm_relu};

/// Configuration of a [`ResNet`].
///
/// Every field has a default, so a partial TOML/JSON config works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    /// Input channels (1 for grayscale).
    pub in_channels: usize,
    /// Channels of the stem convolution.
    pub stem_channels: usize,
    /// Channels of each stage. Every stage after the first halves height and width.
    pub stage_channels: Vec<usize>,
    /// Basic blocks per stage.
    pub blocks_per_stage: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            stem_channels: 16,
            stage_channels: vec![16, 32, 64],
            blocks_per_stage: 2,
            num_classes: 10,
        }
    }
}

impl Config for ResNetConfig {}

impl ResNetConfig {
    /// The default configuration (stem 16, stages 16/32/64 of 2 blocks, 10 classes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stem channels.
    pub fn with_stem_channels(mut self, stem_channels: usize) -> Self {
        self.stem_channels = stem_channels;
        self
    }

    /// Sets the channels of each stage.
    pub fn with_stage_channels(mut self, stage_channels: Vec<usize>) -> Self {
        self.stage_channels = stage_channels;
        self
    }

    /// Sets the number of blocks per stage.
    pub fn with_blocks_per_stage(mut self, blocks_per_stage: usize) -> Self {
        self.blocks_per_stage = blocks_per_stage;
        self
    }

    /// Sets the number of classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        check(
            self.in_channels > 0,
            "resnet",
            "in_channels must be positive",
        )?;
        check(
            self.stem_channels > 0,
            "resnet",
            "stem_channels must be positive",
        )?;
        check(
            !self.stage_channels.is_empty() && self.stage_channels.iter().all(|&c| c > 0),
            "resnet",
            "stage_channels must be a non-empty list of positive sizes",
        )?;
        check(
            self.blocks_per_stage > 0,
            "resnet",
            "blocks_per_stage must be positive",
        )?;
        check(
            self.num_classes > 0,
            "resnet",
            "num_classes must be positive",
        )
    }

    /// Builds the network on `device`.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (see [`ResNetConfig::validate`]).
    pub fn init(&self, device: &Device) -> ResNet {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let mut blocks = Vec::new();
        let mut channels = self.stem_channels;
        for (stage, &out) in self.stage_channels.iter().enumerate() {
            for block in 0..self.blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(channels, out, stride, device));
                channels = out;
            }
        }
        ResNet {
            stem_conv: conv3x3(self.in_channels, self.stem_channels, 1, device),
            stem_bn: BatchNormConfig::new(self.stem_channels).init(device),
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(channels, self.num_classes).init(device),
            activation: Relu::new(),
        }
    }
}

/// A 3x3 convolution without bias (a batch norm follows), padding 1.
fn conv3x3(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// The projection shortcut of a block that changes shape: `conv1x1 -> batchnorm`.
#[derive(Module, Debug)]
pub struct Projection {
    /// 1x1 convolution with the block's stride.
    pub conv: Conv2d,
    /// Batch norm.
    pub bn: BatchNorm,
}

/// A residual basic block:
/// `relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3x3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// Second 3x3 convolution.
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
    /// Projection shortcut, present when the block changes channels or size.
    pub shortcut: Option<Projection>,
    /// Activation.
    pub activation: Relu,
}

impl BasicBlock {
    /// A block mapping `in_channels` to `out_channels`, dividing height and width by `stride`.
    pub fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || in_channels != out_channels).then(|| Projection {
            conv: Conv2dConfig::new([in_channels, out_channels], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_channels).init(device),
        });
        Self {
            conv1: conv3x3(in_channels, out_channels, stride, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv3x3(out_channels, out_channels, 1, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
            shortcut,
            activation: Relu::new(),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(p) => batch_norm(&p.bn, conv2d(&p.conv, x.clone())),
            None => x.clone(),
        };
        let out = batch_norm_relu(&self.bn1, conv2d(&self.conv1, x));
        let out = batch_norm(&self.bn2, conv2d(&self.conv2, out));
        self.activation.forward(out + identity)
    }
}

/// A small ResNet: `conv3x3 -> bn -> relu`, residual stages, global average
/// pooling, then a linear classifier.
///
/// Takes images `[batch, in_channels, height, width]` and returns logits
/// `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution.
    pub stem_conv: Conv2d,
    /// Stem batch norm.
    pub stem_bn: BatchNorm,
    /// Residual blocks, all stages in order.
    pub blocks: Vec<BasicBlock>,
    /// Global average pooling.
    pub pool: AdaptiveAvgPool2d,
    /// Classifier.
    pub fc: Linear,
    /// Activation.
    pub activation: Relu,
}

impl ResNet {
    /// Logits for images `[batch, channels, height, width]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm_relu(&self.stem_bn, conv2d(&self.stem_conv, images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.pool.forward(x);
        let [batch, c, _, _] = x.dims();
        self.fc.forward(x.reshape([batch, c]))
    }
}

super::impl_classifier_steps!(ResNet);
