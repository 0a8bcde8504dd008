//! [`FusedAdamOps`]: the Adam update of [`super::kernels`] as a Burn backend
//! extension on flex.
//!
//! The optimizer works on the inner (non-autodiff) tensors, so only flex is
//! listed; [`super::FusedAdam`] calls it on flex devices for `f32`
//! parameters and runs Burn's `Adam` everywhere else.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};

use super::kernels::{self, AdamScalars};
use crate::flex_values::{contiguous, flex_tensor, values};

/// One Adam step of a parameter, in one pass.
#[backend_extension(Flex)]
pub trait FusedAdamOps: Backend {
    /// The updated parameter and moments from `param`, its `grad` and the
    /// moments of the last step (ignored on the first step, see
    /// [`AdamScalars::first`]).
    fn fused_adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        scalars: AdamScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `tensor` as a contiguous `f32` tensor whose storage is exactly its
/// values, so that it can be updated in place (a copy when it is a view).
fn whole(tensor: FlexTensor) -> FlexTensor {
    let n = tensor.shape().num_elements();
    let exact = tensor.layout().contiguous_offsets() == Some((0, n))
        && tensor.bytes().len() == n * size_of::<f32>();
    if exact {
        tensor
    } else {
        let shape = tensor.shape();
        flex_tensor(values(&contiguous(tensor)).to_vec(), shape)
    }
}

impl FusedAdamOps for Flex {
    fn fused_adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        scalars: AdamScalars,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut param, mut moment_1, mut moment_2) =
            (whole(param), whole(moment_1), whole(moment_2));
        let grad = contiguous(grad);
        // A shared parameter (Burn's `Learner` steps a clone of the model
        // it holds, so every step's are) is read and its update written to
        // a new buffer; a parameter of its own is updated in place. Either
        // way nothing outside sees the update. `storage_mut` copies a
        // moment that is shared (a record being written, say).
        let (m1, m2) = (moment_1.storage_mut::<f32>(), moment_2.storage_mut::<f32>());
        if param.is_unique() {
            kernels::update(param.storage_mut::<f32>(), m1, m2, values(&grad), &scalars);
        } else {
            let shape = param.shape();
            let updated = kernels::update_shared(values(&param), m1, m2, values(&grad), &scalars);
            param = flex_tensor(updated, shape);
        }
        (param, moment_1, moment_2)
    }
}
