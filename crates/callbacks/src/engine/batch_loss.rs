//! [`BatchLoss`]: reading a training step's loss for the batch-level logs.

use burn::train::{
    ClassificationOutput, MultiLabelClassificationOutput, RegressionOutput, SequenceOutput,
};

/// Gives the loss of one training step as a number, for the `loss` entry of
/// batch logs (TerminateOnNaN, per-batch TensorBoard scalars, progress bars).
///
/// Implemented for each of Burn's step outputs (`ClassificationOutput`,
/// `MultiLabelClassificationOutput`, `RegressionOutput`, `SequenceOutput`);
/// implement it for your own training output type. Reading the value waits
/// for the device, so the engine only calls it when a callback asks for
/// batch logs.
pub trait BatchLoss {
    /// The mean loss of the batch, if the output has one.
    fn batch_loss(&self) -> Option<f64>;

    /// The number of items in the batch, if known: on several devices,
    /// each device's gradients are weighted by its share of a step's items
    /// (unknown counts as equal shares).
    fn batch_size(&self) -> Option<usize> {
        None
    }

    /// The output with its tensors on `device`. On several devices, each
    /// worker brings its output to the first device with its gradients, so
    /// that metrics and batch logs never wait on another device (a remote
    /// server that stopped answering would otherwise hang them, outside the
    /// step timeout). The default keeps the output where it is.
    fn to_device(self, _device: &burn::tensor::Device) -> Self
    where
        Self: Sized,
    {
        self
    }
}

impl BatchLoss for ClassificationOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }

    fn to_device(self, device: &burn::tensor::Device) -> Self {
        ClassificationOutput {
            output: self.output.to_device(device),
            loss: self.loss.to_device(device),
            targets: self.targets.to_device(device),
        }
    }
}

impl BatchLoss for RegressionOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }

    fn to_device(self, device: &burn::tensor::Device) -> Self {
        RegressionOutput {
            output: self.output.to_device(device),
            loss: self.loss.to_device(device),
            targets: self.targets.to_device(device),
        }
    }
}

impl BatchLoss for MultiLabelClassificationOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }

    fn to_device(self, device: &burn::tensor::Device) -> Self {
        MultiLabelClassificationOutput {
            output: self.output.to_device(device),
            loss: self.loss.to_device(device),
            targets: self.targets.to_device(device),
        }
    }
}

/// A batch's items are its sequences (`targets` is `[batch, seq_len]`).
impl BatchLoss for SequenceOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }

    fn to_device(self, device: &burn::tensor::Device) -> Self {
        SequenceOutput {
            loss: self.loss.to_device(device),
            logits: self.logits.to_device(device),
            predictions: self.predictions.map(|p| p.to_device(device)),
            targets: self.targets.to_device(device),
        }
    }
}
