//! [`GradientView`]: what the gradient hooks can read of a step's gradients.

/// Read access to the gradients of a training step, given to
/// [`Callback::on_after_backward`](crate::Callback::on_after_backward) and
/// [`Callback::on_before_optimizer_step`](crate::Callback::on_before_optimizer_step).
///
/// Reading a value waits for the device, so the training loop computes
/// nothing until a callback asks, and computes each figure once per step
/// whichever callbacks ask for it.
pub trait GradientView {
    /// The L2 norm of each parameter's gradient, by the parameter's path
    /// (`conv1/weight`), in the model's order.
    fn norms(&self) -> Vec<(String, f64)>;

    /// The L2 norm over every parameter's gradient.
    fn global_norm(&self) -> f64 {
        self.norms().iter().map(|(_, n)| n * n).sum::<f64>().sqrt()
    }

    /// The mean loss of the step's batch (over every device's share), when
    /// the training output has one.
    fn loss(&self) -> Option<f64>;
}

/// A [`GradientView`] over plain numbers, for tests and the harness.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FixedGradients {
    /// `(path, norm)` of each parameter.
    pub norms: Vec<(String, f64)>,
    /// The step's loss.
    pub loss: Option<f64>,
}

impl GradientView for FixedGradients {
    fn norms(&self) -> Vec<(String, f64)> {
        self.norms.clone()
    }

    fn loss(&self) -> Option<f64> {
        self.loss
    }
}
