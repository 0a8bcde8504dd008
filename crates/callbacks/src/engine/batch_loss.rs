//! [`BatchLoss`]: reading a training step's loss for the batch-level logs.

use burn::train::{ClassificationOutput, RegressionOutput};

/// Gives the loss of one training step as a number, for the `loss` entry of
/// batch logs (TerminateOnNaN, per-batch TensorBoard scalars, progress bars).
///
/// Implemented for Burn's `ClassificationOutput` and `RegressionOutput`;
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
}

impl BatchLoss for ClassificationOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }
}

impl BatchLoss for RegressionOutput {
    fn batch_loss(&self) -> Option<f64> {
        Some(self.loss.clone().into_scalar::<f32>() as f64)
    }

    fn batch_size(&self) -> Option<usize> {
        self.targets.dims().first().copied()
    }
}
