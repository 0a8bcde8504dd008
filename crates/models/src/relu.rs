//! ReLU folded into the kernels that precede it ([`crate::conv`],
//! [`crate::norm`]): applied to each value as it is written, and its
//! gradient gated in place on every core.
//!
//! Invariant: **flex's arithmetic**: a value is kept when it is positive or
//! NaN (flex's `relu`), and so is the gradient where the output is (flex's
//! `relu_backward`, which Burn's autodiff calls with the input: the same
//! positions).

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex};
use burn::tensor::DType;
use rayon::prelude::*;

use crate::flex_values::{contiguous, flex_tensor, values};

/// Whether flex's ReLU keeps `value` (and passes its gradient): positive or
/// NaN.
#[inline(always)]
pub(crate) fn passes(value: f32) -> bool {
    value.is_nan() || value > 0.0
}

/// Flex's ReLU: the value when it is positive or NaN, otherwise 0.
pub(crate) fn relu(value: f32) -> f32 {
    if passes(value) { value } else { 0.0 }
}

/// Values per task of [`relu_gate`]: enough work to be worth a task.
const GATE_CHUNK: usize = 1 << 14;

/// The gradient through a ReLU from its output `y`, in place: `dy` is kept
/// where `y` is positive or NaN and zeroed elsewhere (flex's
/// `relu_backward`), on rayon's pool.
///
/// # Panics
///
/// When `y` and `dy` differ in length.
pub(crate) fn relu_gate(y: &[f32], dy: &mut [f32]) {
    assert_eq!(y.len(), dy.len(), "an output and its gradient");
    dy.par_chunks_mut(GATE_CHUNK)
        .zip(y.par_chunks(GATE_CHUNK))
        .for_each(|(dy, y)| {
            for (d, &y) in dy.iter_mut().zip(y) {
                *d = if passes(y) { *d } else { 0.0 };
            }
        });
}

/// `tensor` (contiguous) as the sole owner of a buffer holding exactly its
/// values, so that `storage_mut` writes them in place: a gradient handed to
/// a backward op usually is one already; otherwise its values are copied.
fn owned(tensor: FlexTensor) -> FlexTensor {
    let exact = tensor.layout().start_offset() == 0
        && tensor.storage::<f32>().len() == tensor.shape().num_elements();
    if tensor.is_unique() && exact {
        tensor
    } else {
        flex_tensor(values(&tensor).to_vec(), tensor.shape())
    }
}

/// Flex's `relu_backward(output, output_grad)`, through [`relu_gate`] in
/// place for `f32` tensors of one shape.
pub(crate) fn flex_relu_backward(output: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    if output.dtype() != DType::F32
        || output_grad.dtype() != DType::F32
        || output.shape() != output_grad.shape()
    {
        return <Flex as ActivationOps<Flex>>::relu_backward(output, output_grad);
    }
    let output = contiguous(output);
    let mut grad = owned(contiguous(output_grad));
    relu_gate(values(&output), grad.storage_mut::<f32>());
    grad
}

/// `tensor` through Burn's `relu` on `B` when `relu` is set: the fallbacks
/// of the extensions that fold a ReLU in, for what their kernels do not
/// cover.
pub(crate) fn relu_if<B: Backend>(tensor: FloatTensor<B>, relu: bool) -> FloatTensor<B> {
    if relu { B::relu(tensor) } else { tensor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::values;

    #[test]
    fn relu_gate_passes_the_gradient_where_the_output_is_positive_or_nan() {
        let y = [1.0, 0.0, -0.0, -2.0, f32::NAN, 3.5];
        let mut dy = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        relu_gate(&y, &mut dy);
        assert_eq!(dy, [10.0, 0.0, 0.0, 0.0, 50.0, 60.0]);
        let relu_of_nan = relu(f32::NAN);
        assert!(relu_of_nan.is_nan(), "NaN propagates through ReLU");
        // Past one task's chunk.
        let n = 3 * GATE_CHUNK + 5;
        let (y, mut dy) = (values(n, 13), values(n, 14));
        let expected: Vec<f32> = y
            .iter()
            .zip(&dy)
            .map(|(&y, &d)| if y > 0.0 { d } else { 0.0 })
            .collect();
        relu_gate(&y, &mut dy);
        assert_eq!(dy, expected);
    }
}
