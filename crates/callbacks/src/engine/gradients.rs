//! [`StepGradients`]: the [`GradientView`] the gradient hooks read, over a
//! step's `GradientsParams`.

use std::cell::OnceCell;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burnfit_core::GradientView;

use super::batch_loss::BatchLoss;
use super::params::ParamPath;

/// A step's gradients, read lazily: nothing is computed (and the device is
/// not waited for) until a callback asks, and each figure once per step.
pub(crate) struct StepGradients<'a, M: Module, O: BatchLoss> {
    model: &'a M,
    grads: &'a GradientsParams,
    outputs: &'a [O],
    norms: OnceCell<Vec<(String, f64)>>,
    loss: OnceCell<Option<f64>>,
}

impl<'a, M: Module, O: BatchLoss> StepGradients<'a, M, O> {
    /// The gradients `grads` of `model`'s parameters; `outputs` are the
    /// step's training outputs (one per device), for the loss.
    pub(crate) fn new(model: &'a M, grads: &'a GradientsParams, outputs: &'a [O]) -> Self {
        Self {
            model,
            grads,
            outputs,
            norms: OnceCell::new(),
            loss: OnceCell::new(),
        }
    }
}

impl<M: Module, O: BatchLoss> GradientView for StepGradients<'_, M, O> {
    fn norms(&self) -> Vec<(String, f64)> {
        self.norms
            .get_or_init(|| {
                let mut visitor = NormVisitor {
                    path: ParamPath::default(),
                    grads: self.grads,
                    squares: Vec::new(),
                };
                self.model.visit(&mut visitor);
                // One read for every parameter's sum of squares.
                let names: Vec<String> = visitor.squares.iter().map(|(n, _)| n.clone()).collect();
                if names.is_empty() {
                    return Vec::new();
                }
                let stacked = Tensor::cat(visitor.squares.into_iter().map(|(_, t)| t).collect(), 0);
                // A failed read is the step's failure (the engine turns the
                // panic into a training error), never empty norms.
                let values = stacked
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .unwrap_or_else(|e| panic!("reading the gradient norms failed: {e:?}"));
                names
                    .into_iter()
                    .zip(values)
                    .map(|(name, square)| (name, square.sqrt()))
                    .collect()
            })
            .clone()
    }

    fn loss(&self) -> Option<f64> {
        *self.loss.get_or_init(|| step_loss(self.outputs))
    }
}

/// The step's loss: each device's batch loss, weighted by its items.
pub(crate) fn step_loss<O: BatchLoss>(outputs: &[O]) -> Option<f64> {
    let mut sum = 0.0;
    let mut items = 0.0;
    for output in outputs {
        let n = output.batch_size().unwrap_or(1) as f64;
        sum += output.batch_loss()? * n;
        items += n;
    }
    (items > 0.0).then(|| sum / items)
}

struct NormVisitor<'a> {
    path: ParamPath,
    grads: &'a GradientsParams,
    squares: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for NormVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let square = (grad.clone() * grad).sum();
            let name = self.path.name(self.squares.len());
            self.squares.push((name, square));
        }
    }
}
