//! [`GemmConv2dOps`]: the convolution of [`super::kernels`] as a Burn
//! backend extension (`#[backend_extension]`, Burn's mechanism for ops a
//! backend does not have; burn-signal's FFT is built the same way).
//!
//! * **Flex** runs the kernels for `f32` tensors with one group, and Burn's
//!   own convolution for anything else.
//! * **Autodiff** records one node whose backward calls the inner backend's
//!   two gradient ops, as Burn's own `conv2d` node does (checkpointed inputs).
//! * Every other backend is never called: [`super::conv2d`] only takes this
//!   path on flex devices (an extension called on a backend it does not list
//!   panics).
//!
//! The trait's default bodies are Burn's own convolution ops, so a backend
//! listed later without kernels of its own still computes the same thing.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;

use super::kernels::{self, Geometry};
use crate::flex_values::{contiguous, flex_tensor, values};

/// A 2-D convolution (no bias) and its two gradients, in Burn's
/// `ModuleOps::conv2d*` signatures.
#[backend_extension(Flex, Autodiff)]
pub trait GemmConv2dOps: Backend {
    /// `conv2d(x, weight, None, options)`.
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient of `x` from the output's gradient.
    fn gemm_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient of `weight` from the output's gradient.
    fn gemm_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

/// The kernels' geometry for flex tensors `x` and `weight`, when they can
/// run it: `f32`, one group, a kernel that fits the padded input.
fn flex_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    let (xs, ws) = (x.shape(), weight.shape());
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || options.groups != 1 {
        return None;
    }
    if xs.num_dims() != 4 || ws.num_dims() != 4 || xs[1] != ws[1] {
        return None;
    }
    let geometry = Geometry {
        batch: xs[0],
        in_channels: xs[1],
        input: [xs[2], xs[3]],
        out_channels: ws[0],
        kernel: [ws[2], ws[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    geometry.is_valid().then_some(geometry)
}

impl GemmConv2dOps for Flex {
    fn gemm_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            return Self::conv2d(x, weight, None, options);
        };
        let (x, weight) = (contiguous(x), contiguous(weight));
        let [out_h, out_w] = g.output();
        flex_tensor(
            kernels::forward(&g, values(&x), values(&weight)),
            [g.batch, g.out_channels, out_h, out_w],
        )
    }

    fn gemm_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) =
            flex_geometry(&x, &weight, &options).filter(|_| output_grad.dtype() == DType::F32)
        else {
            return Self::conv2d_x_backward(x, weight, output_grad, options);
        };
        let (weight, output_grad) = (contiguous(weight), contiguous(output_grad));
        flex_tensor(
            kernels::input_grad(&g, values(&weight), values(&output_grad)),
            [g.batch, g.in_channels, g.input[0], g.input[1]],
        )
    }

    fn gemm_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) =
            flex_geometry(&x, &weight, &options).filter(|_| output_grad.dtype() == DType::F32)
        else {
            return Self::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let (x, output_grad) = (contiguous(x), contiguous(output_grad));
        flex_tensor(
            kernels::weight_grad(&g, values(&x), values(&output_grad)),
            [g.out_channels, g.in_channels, g.kernel[0], g.kernel[1]],
        )
    }
}

/// The autodiff node of [`GemmConv2dOps::gemm_conv2d`]: its backward is the
/// inner backend's two gradient ops.
#[derive(Debug)]
struct GemmConv2dBackward;

impl<B: Backend + GemmConv2dOps> Backward<B, 2> for GemmConv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        if let Some(node) = node_x {
            let dx =
                B::gemm_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(
                node.id,
                B::gemm_conv2d_weight_backward(x, weight, grad, options),
            );
        }
    }
}

impl<B: Backend + GemmConv2dOps, C: CheckpointStrategy> GemmConv2dOps for Autodiff<B, C> {
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match GemmConv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y =
                    B::gemm_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gemm_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
}
