//! [`ConvReluPoolOps`]: a convolution with a bias, its ReLU and a 2 × 2
//! max pooling of stride 2 as one Burn backend extension, built like
//! [`crate::conv::extension`] and [`crate::pool::extension`].
//!
//! * **Flex** pools Winograd's output tiles as they are formed
//!   ([`winograd::forward_pooled`]) where the convolution is one Winograd
//!   takes; otherwise it runs our convolution (ReLU folded in) and our
//!   pooling one after the other. Either way it returns, beside the pooled
//!   values, one byte per value saying where in its window the maximum was
//!   (the pooling kernels' codes).
//! * **Autodiff** records one node over the input, the weight and the bias
//!   that keeps the pooled output and the codes. Its backward routes the
//!   pooled gradient back to each window's maximum where the pooled value
//!   passed the ReLU ([`pool::kernels::backward_through_relu`]), then asks
//!   for the convolution's gradients as the convolution's own node does
//!   ([`register_gradients`]).
//! * Every other backend is never called: [`super::conv2d_relu_max_pool2d`]
//!   only takes this path on flex devices. The trait's default bodies are
//!   Burn's own ops (Burn's `i64` pooling indices in place of the codes).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, IntDType, Shape, TensorData};

use crate::conv::extension::{
    GemmConv2dOps, burns_weight_bias_backward, flex_geometry, register_gradients,
    shared_gradients_geometry,
};
use crate::conv::kernels::Epilogue;
use crate::conv::winograd::{self, OutputGrad};
use crate::flex_values::{contiguous, flex_tensor, values};
use crate::pool::extension::WindowMaxPool2dOps;
use crate::pool::kernels::{self as pool_kernels, PoolGeometry};

/// The pooling's window and stride.
const WINDOW: [usize; 2] = [2, 2];

/// `max_pool2d(relu(conv2d(x, weight, bias)))` over 2 × 2 windows of
/// stride 2, and its gradient.
#[backend_extension(Flex, Autodiff)]
pub trait ConvReluPoolOps: Backend {
    /// The pooled output.
    fn conv2d_bias_relu_max_pool2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_bias_relu_max_pool2d_with_codes(x, weight, bias, options).0
    }

    /// The pooled output and where each window's maximum is, for
    /// [`Self::relu_max_pool2d_backward`]: Burn's indices here.
    fn conv2d_bias_relu_max_pool2d_with_codes(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let y = Self::relu(Self::conv2d(x, weight, Some(bias), options));
        let pooled =
            Self::max_pool2d_with_indices(y, WINDOW, WINDOW, [0, 0], [1, 1], false, IntDType::I64);
        (pooled.output, pooled.indices)
    }

    /// The gradients of the input, the weight and the bias from the pooled
    /// output's gradient, with the pooled output and the codes of
    /// [`Self::conv2d_bias_relu_max_pool2d_with_codes`].
    fn conv2d_bias_relu_max_pool2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pooled: FloatTensor<Self>,
        codes: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let conv_output = conv_output(&x.shape(), &weight.shape(), &options);
        let grad = Self::relu_max_pool2d_backward(pooled, codes, output_grad, conv_output);
        let dx = Self::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
        let (dw, db) = burns_weight_bias_backward::<Self>(x, weight, grad, options);
        (dx, dw, db)
    }

    /// The gradient of the convolution's output (`conv_output` its `[h,
    /// w]`) from the pooled output's gradient: each value routed to its
    /// window's maximum by the codes, where the pooled value passed the
    /// ReLU.
    fn relu_max_pool2d_backward(
        pooled: FloatTensor<Self>,
        codes: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
        conv_output: [usize; 2],
    ) -> FloatTensor<Self> {
        burns_relu_max_pool2d_backward::<Self>(pooled, codes, output_grad, conv_output)
    }
}

/// Burn's ReLU and pooling gradients on `B`, from its `i64` indices.
fn burns_relu_max_pool2d_backward<B: Backend>(
    pooled: FloatTensor<B>,
    indices: IntTensor<B>,
    output_grad: FloatTensor<B>,
    [h, w]: [usize; 2],
) -> FloatTensor<B> {
    let shape = pooled.shape();
    let device = pooled.device();
    let gated = B::relu_backward(pooled, output_grad);
    let input = B::float_zeros(
        Shape::new([shape[0], shape[1], h, w]),
        &device,
        DType::F32.into(),
    );
    B::max_pool2d_with_indices_backward(
        input,
        WINDOW,
        WINDOW,
        [0, 0],
        [1, 1],
        false,
        gated,
        indices,
    )
    .x_grad
}

impl ConvReluPoolOps for Flex {
    fn conv2d_bias_relu_max_pool2d_with_codes(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor) {
        let geometry = flex_geometry(&x, &weight, &options).filter(|g| {
            let [oh, ow] = g.output();
            winograd::applies(g)
                && oh >= 2
                && ow >= 2
                && bias.dtype() == DType::F32
                && bias.shape().dims() == [g.out_channels]
        });
        let Some(g) = geometry else {
            let y = <Self as GemmConv2dOps>::gemm_conv2d_bias(x, weight, bias, options, true);
            return <Self as WindowMaxPool2dOps>::window_max_pool2d_with_codes(y, WINDOW);
        };
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        let epilogue = Epilogue {
            bias: Some(values(&bias)),
            relu: true,
        };
        let (pooled, codes) = winograd::forward_pooled(&g, values(&x), values(&weight), epilogue);
        let [oh, ow] = g.output();
        let shape = [g.batch, g.out_channels, oh / 2, ow / 2];
        (
            flex_tensor(pooled, shape),
            FlexTensor::from_data(TensorData::new(codes, shape)),
        )
    }

    fn conv2d_bias_relu_max_pool2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        pooled: FlexTensor,
        codes: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let ours = codes.dtype() == DType::U8
            && pooled.dtype() == DType::F32
            && pooled.shape() == output_grad.shape();
        let geometry =
            shared_gradients_geometry(&x, &weight, &output_grad, &options).filter(|_| ours);
        let Some(g) = geometry else {
            let conv_output = conv_output(&x.shape(), &weight.shape(), &options);
            let grad = Self::relu_max_pool2d_backward(pooled, codes, output_grad, conv_output);
            return <Self as GemmConv2dOps>::gemm_conv2d_x_weight_bias_backward(
                x, weight, grad, options,
            );
        };
        let [x, weight, pooled, output_grad] = [x, weight, pooled, output_grad].map(contiguous);
        let codes = codes.to_contiguous();
        let through = OutputGrad::ThroughReluPool {
            grad: values(&output_grad),
            pooled: values(&pooled),
            codes: codes.as_slice::<u8>().expect("contiguous u8 codes"),
        };
        let (dx, dw, db) = winograd::gradients(&g, values(&x), values(&weight), through, true);
        (
            flex_tensor(dx, g.input_shape()),
            flex_tensor(dw, g.weight_shape()),
            flex_tensor(db, [g.out_channels]),
        )
    }

    fn relu_max_pool2d_backward(
        pooled: FlexTensor,
        codes: FlexTensor,
        output_grad: FlexTensor,
        conv_output: [usize; 2],
    ) -> FlexTensor {
        let ours = codes.dtype() == DType::U8
            && pooled.dtype() == DType::F32
            && output_grad.dtype() == DType::F32;
        if !ours {
            return burns_relu_max_pool2d_backward::<Self>(pooled, codes, output_grad, conv_output);
        }
        let shape = pooled.shape();
        let g = PoolGeometry {
            planes: shape[0] * shape[1],
            input: conv_output,
            window: WINDOW,
        };
        let (pooled, codes, output_grad) = (
            contiguous(pooled),
            codes.to_contiguous(),
            contiguous(output_grad),
        );
        let codes = codes.as_slice::<u8>().expect("contiguous u8 codes");
        flex_tensor(
            pool_kernels::backward_through_relu(&g, codes, values(&pooled), values(&output_grad)),
            [shape[0], shape[1], conv_output[0], conv_output[1]],
        )
    }
}

/// What the backward of the fused node needs: the checkpointed input and
/// weight, the options, the pooled output and its codes, and the
/// convolution's output `[h, w]`.
#[derive(Debug, Clone)]
struct State<F, I> {
    x: NodeId,
    weight: NodeId,
    options: ConvOptions<2>,
    pooled: F,
    codes: I,
    conv_output: [usize; 2],
}

/// The autodiff node of [`ConvReluPoolOps::conv2d_bias_relu_max_pool2d`]
/// (parents: the input, the weight and the bias).
#[derive(Debug)]
struct ConvReluPoolBackward;

impl<B: Backend + ConvReluPoolOps + GemmConv2dOps> Backward<B, 3> for ConvReluPoolBackward {
    type State = State<B::FloatTensorPrimitive, B::IntTensorPrimitive>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.weight);
        let parents = ops.parents.each_ref().map(|p| p.as_ref().map(|n| n.id));
        if let [Some(x_node), Some(weight_node), Some(bias_node)] = parents {
            // Every gradient: the backend forms them from the pooled
            // gradient in one pass.
            let (dx, dw, db) = B::conv2d_bias_relu_max_pool2d_backward(
                x,
                weight,
                state.pooled,
                state.codes,
                grad,
                state.options,
            );
            for (node, grad) in [(x_node, dx), (weight_node, dw), (bias_node, db)] {
                grads.register::<B>(node, grad);
            }
            return;
        }
        let grad = B::relu_max_pool2d_backward(state.pooled, state.codes, grad, state.conv_output);
        register_gradients::<B>(parents, x, weight, grad, state.options, grads);
    }
}

impl<B: Backend + ConvReluPoolOps + GemmConv2dOps, C: CheckpointStrategy> ConvReluPoolOps
    for Autodiff<B, C>
{
    fn conv2d_bias_relu_max_pool2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let conv_output = conv_output(&x.shape(), &weight.shape(), &options);
        let parents = [&x, &weight, &bias].map(|tensor| tensor.node());
        match ConvReluPoolBackward
            .prepare::<C>(parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_node, weight_node) = (prep.checkpoint(&x), prep.checkpoint(&weight));
                let (pooled, codes) = B::conv2d_bias_relu_max_pool2d_with_codes(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                let state = State {
                    x: x_node,
                    weight: weight_node,
                    options,
                    pooled: pooled.clone(),
                    codes,
                    conv_output,
                };
                prep.finish(state, pooled)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_bias_relu_max_pool2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }
}

/// The `[h, w]` of a convolution's output for an input and a weight of
/// these shapes.
fn conv_output(x: &Shape, weight: &Shape, options: &ConvOptions<2>) -> [usize; 2] {
    std::array::from_fn(|d| {
        let (begin, end) = options.padding[d];
        let span = options.dilation[d] * (weight[2 + d] - 1) + 1;
        (x[2 + d] + begin + end - span) / options.stride[d] + 1
    })
}
