//! [`WindowMaxPool2dOps`]: the pooling of [`super::kernels`] as a Burn
//! backend extension, built like [`crate::conv::extension`].
//!
//! * **Flex** runs the kernels for contiguous or strided `f32` tensors, and
//!   Burn's own pooling for anything else.
//! * **Autodiff** records one node that keeps, with the input's checkpoint,
//!   the position of each window's maximum from the forward: one byte per
//!   output value on flex ([`kernels::forward_with_codes`]), Burn's `i64`
//!   indices on the fallback; its backward routes the gradient by them.
//! * Every other backend is never called: [`super::max_pool2d`] only takes
//!   this path on flex devices.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, IntDType, TensorData};

use super::kernels::{self, PoolGeometry};
use crate::flex_values::{contiguous, flex_tensor, values};

/// Max pooling over non-overlapping `window`s (stride = window, no padding,
/// no dilation) and its gradient.
#[backend_extension(Flex, Autodiff)]
pub trait WindowMaxPool2dOps: Backend {
    /// `max_pool2d(x, window, stride = window)`.
    fn window_max_pool2d(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self> {
        Self::max_pool2d(x, window, window, [0, 0], [1, 1], false)
    }

    /// [`Self::window_max_pool2d`] and where each window's maximum is, for
    /// [`Self::window_max_pool2d_backward`]: Burn's indices here.
    fn window_max_pool2d_with_codes(
        x: FloatTensor<Self>,
        window: [usize; 2],
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        burns_window_max_pool2d_with_indices::<Self>(x, window)
    }

    /// The gradient of `x` from the output's gradient, routed by the codes
    /// [`Self::window_max_pool2d_with_codes`] returned.
    fn window_max_pool2d_backward(
        x: FloatTensor<Self>,
        codes: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
        window: [usize; 2],
    ) -> FloatTensor<Self> {
        burns_window_max_pool2d_backward::<Self>(x, codes, output_grad, window)
    }
}

/// Burn's max pooling on `B` over disjoint `window`s, with its `i64`
/// indices of each maximum.
fn burns_window_max_pool2d_with_indices<B: Backend>(
    x: FloatTensor<B>,
    window: [usize; 2],
) -> (FloatTensor<B>, IntTensor<B>) {
    let pooled =
        B::max_pool2d_with_indices(x, window, window, [0, 0], [1, 1], false, IntDType::I64);
    (pooled.output, pooled.indices)
}

/// Burn's max-pool gradient on `B` for disjoint `window`s, from its
/// `indices`.
fn burns_window_max_pool2d_backward<B: Backend>(
    x: FloatTensor<B>,
    indices: IntTensor<B>,
    output_grad: FloatTensor<B>,
    window: [usize; 2],
) -> FloatTensor<B> {
    B::max_pool2d_with_indices_backward(
        x,
        window,
        window,
        [0, 0],
        [1, 1],
        false,
        output_grad,
        indices,
    )
    .x_grad
}

/// The kernels' geometry for a flex tensor `x`, when they can run it: a
/// 4-D `f32` tensor with at least one whole window.
fn flex_geometry(x: &FlexTensor, window: [usize; 2]) -> Option<PoolGeometry> {
    let shape = x.shape();
    if x.dtype() != DType::F32 || shape.num_dims() != 4 {
        return None;
    }
    let geometry = PoolGeometry {
        planes: shape[0] * shape[1],
        input: [shape[2], shape[3]],
        window,
    };
    geometry.is_valid().then_some(geometry)
}

impl WindowMaxPool2dOps for Flex {
    fn window_max_pool2d(x: FlexTensor, window: [usize; 2]) -> FlexTensor {
        let Some(g) = flex_geometry(&x, window) else {
            return Self::max_pool2d(x, window, window, [0, 0], [1, 1], false);
        };
        let shape = x.shape();
        let x = contiguous(x);
        let [out_h, out_w] = g.output();
        flex_tensor(
            kernels::forward(&g, values(&x)),
            [shape[0], shape[1], out_h, out_w],
        )
    }

    fn window_max_pool2d_with_codes(x: FlexTensor, window: [usize; 2]) -> (FlexTensor, FlexTensor) {
        let Some(g) = flex_geometry(&x, window).filter(kernels::codes_fit) else {
            return burns_window_max_pool2d_with_indices::<Self>(x, window);
        };
        let shape = x.shape();
        let x = contiguous(x);
        let (output, codes) = kernels::forward_with_codes(&g, values(&x));
        let [out_h, out_w] = g.output();
        let out_shape = [shape[0], shape[1], out_h, out_w];
        (
            flex_tensor(output, out_shape),
            FlexTensor::from_data(TensorData::new(codes, out_shape)),
        )
    }

    fn window_max_pool2d_backward(
        x: FlexTensor,
        codes: FlexTensor,
        output_grad: FlexTensor,
        window: [usize; 2],
    ) -> FlexTensor {
        let geometry = flex_geometry(&x, window)
            .filter(|_| codes.dtype() == DType::U8 && output_grad.dtype() == DType::F32);
        let Some(g) = geometry else {
            return burns_window_max_pool2d_backward::<Self>(x, codes, output_grad, window);
        };
        let (codes, output_grad) = (codes.to_contiguous(), contiguous(output_grad));
        let codes = codes.as_slice::<u8>().expect("contiguous u8 codes");
        flex_tensor(
            kernels::backward(&g, codes, values(&output_grad)),
            x.shape(),
        )
    }
}

/// The autodiff node of [`WindowMaxPool2dOps::window_max_pool2d`].
#[derive(Debug)]
struct WindowMaxPool2dBackward;

impl<B: Backend + WindowMaxPool2dOps> Backward<B, 1> for WindowMaxPool2dBackward {
    type State = (NodeId, IntTensor<B>, [usize; 2]);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, codes, window) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        if let Some(node) = node_x {
            let x_grad = B::window_max_pool2d_backward(x, codes, grad, window);
            grads.register::<B>(node.id, x_grad);
        }
    }
}

impl<B: Backend + WindowMaxPool2dOps, C: CheckpointStrategy> WindowMaxPool2dOps for Autodiff<B, C> {
    fn window_max_pool2d(x: FloatTensor<Self>, window: [usize; 2]) -> FloatTensor<Self> {
        match WindowMaxPool2dBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (y, codes) = B::window_max_pool2d_with_codes(x.into_primitive(), window);
                prep.finish((x_state, codes, window), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::window_max_pool2d(x.into_primitive(), window))
            }
        }
    }
}
