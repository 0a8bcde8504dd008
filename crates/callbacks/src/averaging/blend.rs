//! [`blend`]: the one piece of arithmetic on whole models that weight
//! averaging needs, and [`blend_snapshots`], the same for models behind a
//! [`ModelSnapshot`](burnfit_core::ModelSnapshot).

use std::any::Any;
use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// `average · (1 − weight) + current · weight`, parameter by parameter,
/// matched by parameter id (an average starts as a copy of the model, so
/// the ids agree).
///
/// Only trainable parameters are averaged. Buffers that do not take
/// gradients (BatchNorm's running statistics) are left as they are: as in
/// Keras's EMA and PyTorch's `AveragedModel` (`use_buffers=False`), an
/// average uses the live statistics, and SWA recomputes them at the end.
/// (A copy of a Burn model shares those buffers with the original.)
///
/// The result keeps the average's autodiff settings (device, gradient
/// requirement, checkpointing strategy), so it can be put back into
/// training; the arithmetic itself records no graph.
pub fn blend<M: Module>(average: M, current: &M, weight: f64) -> M {
    let mut collect = Collect::default();
    current.visit(&mut collect);
    average.map(&mut Blend {
        current: collect.tensors,
        weight,
    })
}

/// [`blend`] for two models of type `M` behind `dyn Any` (`None` when
/// either is another type): the [`BlendFn`](burnfit_core::BlendFn) the
/// engine attaches to its snapshots.
pub fn blend_snapshots<M: Module + 'static>(
    average: &(dyn Any + Send),
    current: &(dyn Any + Send),
    weight: f64,
) -> Option<Box<dyn Any + Send>> {
    let average = average.downcast_ref::<M>()?.clone();
    let current = current.downcast_ref::<M>()?;
    Some(Box::new(blend(average, current, weight)))
}

#[derive(Default)]
struct Collect {
    tensors: HashMap<ParamId, Box<dyn Any>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.tensors.insert(param.id, Box::new(value));
        }
    }
}

struct Blend {
    current: HashMap<ParamId, Box<dyn Any>>,
    weight: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self
            .current
            .remove(&param.id)
            .and_then(|t| t.downcast::<Tensor<D>>().ok())
        else {
            return param;
        };
        let weight = self.weight;
        param.map(|average| {
            let autodiff = average.is_autodiff();
            let require_grad = average.is_require_grad();
            let strategy = average.gradient_checkpointing_strategy();
            let mixed =
                average.inner().mul_scalar(1.0 - weight) + current.inner().mul_scalar(weight);
            let mut mixed = if autodiff {
                Tensor::from_inner(mixed)
            } else {
                mixed
            };
            if let Some(strategy) = strategy {
                mixed = mixed.with_gradient_checkpointing_strategy(strategy);
            }
            if require_grad {
                mixed = mixed.require_grad();
            }
            mixed
        })
    }
}
