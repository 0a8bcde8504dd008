//! [`GemmConv2dOps`]: the convolution of [`super::kernels`] as a Burn
//! backend extension (`#[backend_extension]`, Burn's mechanism for ops a
//! backend does not have; burn-signal's FFT is built the same way).
//!
//! * **Flex** runs the kernels for `f32` tensors with one group, and Burn's
//!   own convolution for anything else. The bias is folded into the
//!   forward's gemm (one more weight column against a row of ones) and its
//!   gradient summed beside the weight's, a ReLU is applied in the
//!   forward's task ([`kernels::Epilogue`]) and its gradient gated in place
//!   on every core ([`crate::relu::relu_gate`]): no pass of one core over the
//!   whole output remains for either.
//! * **Autodiff** records one node whose backward calls the inner backend's
//!   gradient ops, as Burn's own `conv2d` node does (checkpointed inputs),
//!   asking for the input's and the weight's (and the bias's) in one call
//!   when it needs both, so that flex's Winograd path shares the output
//!   gradient's transform between them;
//!   with a ReLU folded in it keeps the output, as Burn's `relu` node keeps
//!   its input, to gate the gradient.
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
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape};

use super::kernels::{self, Epilogue, Geometry};
use crate::flex_values::{contiguous, flex_tensor, values};

/// A 2-D convolution, with or without a bias and a ReLU folded in, and its
/// gradients, in Burn's `ModuleOps::conv2d*` signatures.
#[backend_extension(Flex, Autodiff)]
pub trait GemmConv2dOps: Backend {
    /// `conv2d(x, weight, None, options)`, then `relu` when `relu` is set.
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let y = Self::conv2d(x, weight, None, options);
        crate::relu::relu_if::<Self>(y, relu)
    }

    /// `conv2d(x, weight, Some(bias), options)`, then `relu` when `relu` is
    /// set.
    fn gemm_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let y = Self::conv2d(x, weight, Some(bias), options);
        crate::relu::relu_if::<Self>(y, relu)
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

    /// The gradients of `weight` and of the bias from the output's gradient
    /// (the bias's: its sum over all but the channels).
    fn gemm_conv2d_weight_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burns_weight_bias_backward::<Self>(x, weight, output_grad, options)
    }

    /// The gradients of `x` and of `weight` from the output's gradient, in
    /// one call, so that a backend can share work between them.
    fn gemm_conv2d_x_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        x_weight_apart::<Self>(x, weight, output_grad, options)
    }

    /// The gradients of `x`, of `weight` and of the bias from the output's
    /// gradient, in one call, so that a backend can share work between
    /// them.
    fn gemm_conv2d_x_weight_bias_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        x_weight_bias_apart::<Self>(x, weight, output_grad, options)
    }

    /// The gradient through a ReLU from its output: `relu_backward`.
    fn gemm_relu_backward(
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::relu_backward(output, output_grad)
    }
}

/// [`GemmConv2dOps::gemm_conv2d_x_weight_backward`] from the two gradient
/// ops, one after the other.
fn x_weight_apart<B: GemmConv2dOps>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dx = B::gemm_conv2d_x_backward(
        x.clone(),
        weight.clone(),
        output_grad.clone(),
        options.clone(),
    );
    (
        dx,
        B::gemm_conv2d_weight_backward(x, weight, output_grad, options),
    )
}

/// [`GemmConv2dOps::gemm_conv2d_x_weight_bias_backward`] from the input's
/// gradient op and the weight's and bias's, one after the other.
fn x_weight_bias_apart<B: GemmConv2dOps>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dx = B::gemm_conv2d_x_backward(
        x.clone(),
        weight.clone(),
        output_grad.clone(),
        options.clone(),
    );
    let (dw, db) = B::gemm_conv2d_weight_bias_backward(x, weight, output_grad, options);
    (dx, dw, db)
}

/// Burn's gradients of a convolution's weight and bias on `B`: its
/// `conv2d_weight_backward`, and the output gradient summed over all but
/// the channels.
pub(crate) fn burns_weight_bias_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let channels = output_grad.shape()[1];
    let summed = [0, 2, 3]
        .into_iter()
        .fold(output_grad.clone(), |grad, dim| B::float_sum_dim(grad, dim));
    (
        B::conv2d_weight_backward(x, weight, output_grad, options),
        B::float_reshape(summed, Shape::new([channels])),
    )
}

/// The kernels' geometry for flex tensors `x` and `weight`, when they can
/// run it: `f32`, one group, a kernel that fits the padded input.
pub(crate) fn flex_geometry(
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

/// The kernels' forward on contiguous flex tensors, as a flex tensor.
fn flex_forward(
    g: &Geometry,
    x: &FlexTensor,
    weight: &FlexTensor,
    epilogue: Epilogue,
) -> FlexTensor {
    let [out_h, out_w] = g.output();
    flex_tensor(
        kernels::forward(g, values(x), values(weight), epilogue),
        [g.batch, g.out_channels, out_h, out_w],
    )
}

impl GemmConv2dOps for Flex {
    fn gemm_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FlexTensor {
        let Some(g) = flex_geometry(&x, &weight, &options) else {
            let y = Self::conv2d(x, weight, None, options);
            return crate::relu::relu_if::<Self>(y, relu);
        };
        let (x, weight) = (contiguous(x), contiguous(weight));
        let epilogue = Epilogue { bias: None, relu };
        flex_forward(&g, &x, &weight, epilogue)
    }

    fn gemm_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FlexTensor {
        let geometry = flex_geometry(&x, &weight, &options)
            .filter(|g| bias.dtype() == DType::F32 && bias.shape().dims() == [g.out_channels]);
        let Some(g) = geometry else {
            let y = Self::conv2d(x, weight, Some(bias), options);
            return crate::relu::relu_if::<Self>(y, relu);
        };
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        let epilogue = Epilogue {
            bias: Some(values(&bias)),
            relu,
        };
        flex_forward(&g, &x, &weight, epilogue)
    }

    fn gemm_conv2d_weight_bias_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor) {
        let Some(g) =
            flex_geometry(&x, &weight, &options).filter(|_| output_grad.dtype() == DType::F32)
        else {
            return burns_weight_bias_backward::<Self>(x, weight, output_grad, options);
        };
        let (x, output_grad) = (contiguous(x), contiguous(output_grad));
        let (dw, db) = kernels::weight_and_bias_grad(&g, values(&x), values(&output_grad));
        (
            flex_tensor(dw, g.weight_shape()),
            flex_tensor(db, [g.out_channels]),
        )
    }

    fn gemm_conv2d_x_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor) {
        if let Some(g) = shared_gradients_geometry(&x, &weight, &output_grad, &options) {
            let [dx, dw, _] = flex_shared_gradients(&g, x, weight, output_grad, false);
            return (dx, dw);
        }
        x_weight_apart::<Self>(x, weight, output_grad, options)
    }

    fn gemm_conv2d_x_weight_bias_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if let Some(g) = shared_gradients_geometry(&x, &weight, &output_grad, &options) {
            let [dx, dw, db] = flex_shared_gradients(&g, x, weight, output_grad, true);
            return (dx, dw, db);
        }
        x_weight_bias_apart::<Self>(x, weight, output_grad, options)
    }

    fn gemm_relu_backward(output: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        crate::relu::flex_relu_backward(output, output_grad)
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
            g.input_shape(),
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
            g.weight_shape(),
        )
    }
}

/// The geometry of a convolution whose gradients the kernels compute
/// together, sharing work ([`kernels::shares_gradient_work`]).
pub(crate) fn shared_gradients_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Geometry> {
    flex_geometry(x, weight, options)
        .filter(|g| output_grad.dtype() == DType::F32 && kernels::shares_gradient_work(g))
}

/// The gradients of `x`, of `weight` and (with `bias`; else an empty
/// tensor) of the bias from [`kernels::gradients`], for the geometry `g` of
/// [`shared_gradients_geometry`].
fn flex_shared_gradients(
    g: &Geometry,
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    bias: bool,
) -> [FlexTensor; 3] {
    let (x, weight, output_grad) = (contiguous(x), contiguous(weight), contiguous(output_grad));
    let (dx, dw, db) =
        kernels::gradients(g, values(&x), values(&weight), values(&output_grad), bias);
    let db_len = db.len();
    [
        flex_tensor(dx, g.input_shape()),
        flex_tensor(dw, g.weight_shape()),
        flex_tensor(db, [db_len]),
    ]
}

/// What the backward of a convolution node needs: the checkpointed input
/// and weight, the options, and the output when a ReLU was folded in (the
/// gradient passes where it is positive).
#[derive(Debug, Clone)]
struct ConvState<T> {
    x: NodeId,
    weight: NodeId,
    options: ConvOptions<2>,
    relu_output: Option<T>,
}

/// The autodiff node of [`GemmConv2dOps::gemm_conv2d`] (`N` = 2 parents: the
/// input and the weight) and of [`GemmConv2dOps::gemm_conv2d_bias`] (`N` =
/// 3: and the bias): its backward is the inner backend's gradient ops.
#[derive(Debug)]
struct GemmConv2dBackward;

impl<B: Backend + GemmConv2dOps, const N: usize> Backward<B, N> for GemmConv2dBackward {
    type State = ConvState<B::FloatTensorPrimitive>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        if let Some(output) = state.relu_output {
            grad = B::gemm_relu_backward(output, grad);
        }
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.weight);
        let parents =
            std::array::from_fn(|k| ops.parents.get(k).and_then(|p| p.as_ref().map(|n| n.id)));
        register_gradients::<B>(parents, x, weight, grad, state.options, grads);
    }
}

/// Registers the gradients of a convolution's tracked parents (the
/// input's, the weight's and the bias's nodes, `None` for one that is not
/// tracked or absent), from the gradient of its output (after any
/// activation folded in), asking the backend for those it needs together
/// in one call.
pub(crate) fn register_gradients<B: Backend + GemmConv2dOps>(
    parents: [Option<NodeId>; 3],
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
    grads: &mut Gradients,
) {
    let computed = match parents {
        [Some(_), Some(_), Some(_)] => {
            let (dx, dw, db) = B::gemm_conv2d_x_weight_bias_backward(x, weight, grad, options);
            [Some(dx), Some(dw), Some(db)]
        }
        [Some(_), Some(_), None] => {
            let (dx, dw) = B::gemm_conv2d_x_weight_backward(x, weight, grad, options);
            [Some(dx), Some(dw), None]
        }
        [want_x, want_weight, want_bias] => {
            let dx = want_x.map(|_| {
                B::gemm_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
            });
            let (dw, db) = match (want_weight, want_bias) {
                (_, Some(_)) => {
                    let (dw, db) = B::gemm_conv2d_weight_bias_backward(x, weight, grad, options);
                    (Some(dw), Some(db))
                }
                (Some(_), None) => (
                    Some(B::gemm_conv2d_weight_backward(x, weight, grad, options)),
                    None,
                ),
                (None, None) => (None, None),
            };
            [dx, dw, db]
        }
    };
    for (node, grad) in parents.into_iter().zip(computed) {
        if let (Some(node), Some(grad)) = (node, grad) {
            grads.register::<B>(node, grad);
        }
    }
}

impl<B: Backend + GemmConv2dOps, C: CheckpointStrategy> GemmConv2dOps for Autodiff<B, C> {
    fn gemm_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        record::<B, C, 2>([x, weight], options, relu, move |[x, weight], options| {
            B::gemm_conv2d(x, weight, options, relu)
        })
    }

    fn gemm_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
        relu: bool,
    ) -> FloatTensor<Self> {
        record::<B, C, 3>(
            [x, weight, bias],
            options,
            relu,
            move |[x, weight, bias], options| B::gemm_conv2d_bias(x, weight, bias, options, relu),
        )
    }
}

/// Runs `forward` on the inner tensors of `parents` (the input, the
/// weight, and the bias when there is one) and records a
/// [`GemmConv2dBackward`] node over them when any is tracked.
fn record<B: Backend + GemmConv2dOps, C: CheckpointStrategy, const N: usize>(
    parents: [FloatTensor<Autodiff<B, C>>; N],
    options: ConvOptions<2>,
    relu: bool,
    forward: impl FnOnce([B::FloatTensorPrimitive; N], ConvOptions<2>) -> B::FloatTensorPrimitive,
) -> FloatTensor<Autodiff<B, C>> {
    match GemmConv2dBackward
        .prepare::<C>(parents.each_ref().map(|tensor| tensor.node()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x, weight) = (prep.checkpoint(&parents[0]), prep.checkpoint(&parents[1]));
            let y = forward(
                parents.map(|tensor| tensor.into_primitive()),
                options.clone(),
            );
            let state = ConvState {
                x,
                weight,
                options,
                relu_output: relu.then(|| y.clone()),
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            parents.map(|tensor| tensor.into_primitive()),
            options,
        )),
    }
}
