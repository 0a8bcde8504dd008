//! [`GemmLinearOps`]: the dense layer of [`super::kernels`] as a Burn
//! backend extension, built like [`crate::conv::extension`].
//!
//! * **Flex** runs the kernels for 2-D `f32` tensors, and Burn's matmul for
//!   anything else. The bias and the ReLU are applied as the output is
//!   formed.
//! * **Autodiff** records one node over the input, the weight and the bias
//!   (when there is one), whose backward calls the inner backend's gradient
//!   ops for the parents that are tracked; with a ReLU folded in it keeps
//!   the output to gate the gradient, as Burn's `relu` node keeps its input.
//! * Every other backend is never called: [`super::linear`] only takes
//!   this path on flex devices. The trait's default bodies are Burn's own
//!   ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape};

use super::kernels::{self, Dense};
use crate::flex_values::{contiguous, flex_tensor, values};
use crate::relu::relu_if;

/// A dense layer `x · W (+ b)`, with a ReLU folded in or not, and its
/// gradients (`x` is `[batch, d_in]`, `W` is `[d_in, d_out]`).
#[backend_extension(Flex, Autodiff)]
pub trait GemmLinearOps: Backend {
    /// `x · W`, then `relu` when `relu` is set.
    fn gemm_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        relu_if::<Self>(Self::float_matmul(x, weight), relu)
    }

    /// `x · W + b`, then `relu` when `relu` is set.
    fn gemm_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        relu_if::<Self>(burns_linear_bias::<Self>(x, weight, bias), relu)
    }

    /// The input's gradient `dy · Wᵀ`.
    fn gemm_linear_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_matmul(output_grad, Self::float_transpose(weight))
    }

    /// The weight's gradient `xᵀ · dy`.
    fn gemm_linear_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_matmul(Self::float_transpose(x), output_grad)
    }

    /// The bias's gradient: `dy` summed over the batch.
    fn gemm_linear_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        burns_bias_backward::<Self>(output_grad)
    }
}

/// Burn's `x · W + b` on `B`.
fn burns_linear_bias<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let d_out = bias.shape()[0];
    B::float_add(
        B::float_matmul(x, weight),
        B::float_reshape(bias, Shape::new([1, d_out])),
    )
}

/// Burn's sum of `dy` over the batch on `B`, as `[d_out]`.
fn burns_bias_backward<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let d_out = output_grad.shape()[1];
    B::float_reshape(B::float_sum_dim(output_grad, 0), Shape::new([d_out]))
}

/// The kernels' shape for flex tensors `x` (`[batch, d_in]`) and `weight`
/// (`[d_in, d_out]`), when they can run it.
fn flex_dense(x: &FlexTensor, weight: &FlexTensor) -> Option<Dense> {
    let (xs, ws) = (x.shape(), weight.shape());
    let ok = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && xs.num_dims() == 2
        && ws.num_dims() == 2
        && xs[1] == ws[0];
    ok.then(|| Dense {
        batch: xs[0],
        d_in: xs[1],
        d_out: ws[1],
    })
}

/// The kernels' shape for a gradient `output_grad` of `[batch, d_out]`
/// against `other` (the weight, `[d_in, d_out]`, or the input, `[batch,
/// d_in]`, as `input_side` says).
fn flex_grad_dense(
    other: &FlexTensor,
    output_grad: &FlexTensor,
    input_side: bool,
) -> Option<Dense> {
    let (os, gs) = (other.shape(), output_grad.shape());
    let ok = other.dtype() == DType::F32
        && output_grad.dtype() == DType::F32
        && os.num_dims() == 2
        && gs.num_dims() == 2;
    if !ok {
        return None;
    }
    let dense = if input_side {
        // `other` is the input.
        Dense {
            batch: gs[0],
            d_in: os[1],
            d_out: gs[1],
        }
    } else {
        Dense {
            batch: gs[0],
            d_in: os[0],
            d_out: gs[1],
        }
    };
    let fits = if input_side {
        os[0] == gs[0]
    } else {
        os[1] == gs[1]
    };
    fits.then_some(dense)
}

impl GemmLinearOps for Flex {
    fn gemm_linear(x: FlexTensor, weight: FlexTensor, relu: bool) -> FlexTensor {
        let Some(d) = flex_dense(&x, &weight) else {
            return relu_if::<Self>(Self::float_matmul(x, weight), relu);
        };
        let (x, weight) = (contiguous(x), contiguous(weight));
        flex_tensor(
            kernels::forward(&d, values(&x), values(&weight), None, relu),
            [d.batch, d.d_out],
        )
    }

    fn gemm_linear_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        relu: bool,
    ) -> FlexTensor {
        let dense = flex_dense(&x, &weight)
            .filter(|d| bias.dtype() == DType::F32 && bias.shape().dims() == [d.d_out]);
        let Some(d) = dense else {
            return relu_if::<Self>(burns_linear_bias::<Self>(x, weight, bias), relu);
        };
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        flex_tensor(
            kernels::forward(&d, values(&x), values(&weight), Some(values(&bias)), relu),
            [d.batch, d.d_out],
        )
    }

    fn gemm_linear_x_backward(weight: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let Some(d) = flex_grad_dense(&weight, &output_grad, false) else {
            return Self::float_matmul(output_grad, Self::float_transpose(weight));
        };
        let (weight, output_grad) = (contiguous(weight), contiguous(output_grad));
        flex_tensor(
            kernels::input_grad(&d, values(&weight), values(&output_grad)),
            [d.batch, d.d_in],
        )
    }

    fn gemm_linear_weight_backward(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let Some(d) = flex_grad_dense(&x, &output_grad, true) else {
            return Self::float_matmul(Self::float_transpose(x), output_grad);
        };
        let (x, output_grad) = (contiguous(x), contiguous(output_grad));
        flex_tensor(
            kernels::weight_grad(&d, values(&x), values(&output_grad)),
            [d.d_in, d.d_out],
        )
    }

    fn gemm_linear_bias_backward(output_grad: FlexTensor) -> FlexTensor {
        let shape = output_grad.shape();
        if output_grad.dtype() != DType::F32 || shape.num_dims() != 2 {
            return burns_bias_backward::<Self>(output_grad);
        }
        let d = Dense {
            batch: shape[0],
            d_in: 0,
            d_out: shape[1],
        };
        let output_grad = contiguous(output_grad);
        flex_tensor(kernels::bias_grad(&d, values(&output_grad)), [d.d_out])
    }
}

/// What the backward of a dense node needs: the checkpointed input and
/// weight, and the output when a ReLU was folded in.
#[derive(Debug, Clone)]
struct LinearState<T> {
    x: NodeId,
    weight: NodeId,
    relu_output: Option<T>,
}

/// The autodiff node of [`GemmLinearOps::gemm_linear`] (`N` = 2 parents:
/// the input and the weight) and of [`GemmLinearOps::gemm_linear_bias`]
/// (`N` = 3: and the bias).
#[derive(Debug)]
struct GemmLinearBackward;

impl<B: Backend + GemmLinearOps, const N: usize> Backward<B, N> for GemmLinearBackward {
    type State = LinearState<B::FloatTensorPrimitive>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        if let Some(output) = state.relu_output {
            grad = B::relu_backward(output, grad);
        }
        let parents: [Option<NodeId>; 3] =
            std::array::from_fn(|k| ops.parents.get(k).and_then(|p| p.as_ref().map(|n| n.id)));
        if let Some(node) = parents[0] {
            let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.weight);
            grads.register::<B>(node, B::gemm_linear_x_backward(weight, grad.clone()));
        }
        if let Some(node) = parents[2] {
            grads.register::<B>(node, B::gemm_linear_bias_backward(grad.clone()));
        }
        if let Some(node) = parents[1] {
            let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
            grads.register::<B>(node, B::gemm_linear_weight_backward(x, grad));
        }
    }
}

impl<B: Backend + GemmLinearOps, C: CheckpointStrategy> GemmLinearOps for Autodiff<B, C> {
    fn gemm_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        record::<B, C, 2>([x, weight], relu, move |[x, weight]| {
            B::gemm_linear(x, weight, relu)
        })
    }

    fn gemm_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        record::<B, C, 3>([x, weight, bias], relu, move |[x, weight, bias]| {
            B::gemm_linear_bias(x, weight, bias, relu)
        })
    }
}

/// Runs `forward` on the inner tensors of `parents` (the input, the
/// weight, and the bias when there is one) and records a
/// [`GemmLinearBackward`] node over them when any is tracked.
fn record<B: Backend + GemmLinearOps, C: CheckpointStrategy, const N: usize>(
    parents: [FloatTensor<Autodiff<B, C>>; N],
    relu: bool,
    forward: impl FnOnce([B::FloatTensorPrimitive; N]) -> B::FloatTensorPrimitive,
) -> FloatTensor<Autodiff<B, C>> {
    match GemmLinearBackward
        .prepare::<C>(parents.each_ref().map(|tensor| tensor.node()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x, weight) = (prep.checkpoint(&parents[0]), prep.checkpoint(&parents[1]));
            let y = forward(parents.map(|tensor| tensor.into_primitive()));
            let state = LinearState {
                x,
                weight,
                relu_output: relu.then(|| y.clone()),
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(parents.map(|tensor| tensor.into_primitive())))
        }
    }
}
