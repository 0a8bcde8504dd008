//! [`BatchNormReluPoolOps`]: a batch norm with the batch's statistics, its
//! ReLU and a 2 × 2 max pooling of stride 2 as one Burn backend
//! extension, built like [`crate::norm::extension`] and
//! [`crate::conv_pool::extension`].
//!
//! * **Flex** runs [`super::kernels`] for `f32` tensors of rank 4 whose
//!   planes are at least 2 × 2, returning beside the pooled values one
//!   byte per value saying where in its window the maximum was (the
//!   pooling kernels' codes); for anything else, Burn's own ops (Burn's
//!   `i64` pooling indices in place of the codes), as the trait's default
//!   bodies.
//! * **Autodiff** records one node over the input, γ and β, with the input
//!   and γ checkpointed and β, the statistics and the codes kept (neither
//!   the batch norm's output nor the pooling's input gradient is ever
//!   kept or formed whole); the statistics come back untracked, for the
//!   running averages.
//! * Every other backend is never called:
//!   [`super::batch_norm_relu_max_pool2d`] only takes this path on flex
//!   devices.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, IntDType, Shape, TensorData};

use super::kernels;
use crate::flex_values::{contiguous, flex_tensor, values};
use crate::norm::extension::{
    all_f32, burns_backward_through_relu, burns_batch_norm_train, flex_geometry,
};
use crate::norm::kernels::NormGeometry;

/// The pooling's window and stride.
const WINDOW: [usize; 2] = [2, 2];

/// `max_pool2d(relu(batch_norm_train(x)))` over 2 × 2 windows of stride 2,
/// and its gradients.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormReluPoolOps: Backend {
    /// The pooled output, the batch mean and the biased batch variance
    /// (`[channels]`).
    fn batch_norm_relu_max_pool2d_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (pooled, _, mean, variance) =
            Self::batch_norm_relu_max_pool2d_train_with_codes(x, gamma, beta, epsilon);
        (pooled, mean, variance)
    }

    /// As [`Self::batch_norm_relu_max_pool2d_train`], with where each
    /// window's maximum is, for [`Self::batch_norm_relu_max_pool2d_train_backward`]
    /// (Burn's indices here).
    fn batch_norm_relu_max_pool2d_train_with_codes(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (
        FloatTensor<Self>,
        IntTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        burns_with_indices::<Self>(x, gamma, beta, epsilon)
    }

    /// The gradients of the input, γ and β from the pooled output's
    /// gradient, with the statistics and the codes of
    /// [`Self::batch_norm_relu_max_pool2d_train_with_codes`].
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_relu_max_pool2d_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        codes: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        burns_backward::<Self>(x, gamma, beta, mean, variance, epsilon, codes, output_grad)
    }
}

/// Burn's batch norm, ReLU and pooling on `B`, with its `i64` indices.
#[allow(clippy::type_complexity)]
fn burns_with_indices<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, IntTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (output, mean, variance) = burns_batch_norm_train::<B>(x, gamma, beta, epsilon);
    let pooled = B::max_pool2d_with_indices(
        B::relu(output),
        WINDOW,
        WINDOW,
        [0, 0],
        [1, 1],
        false,
        IntDType::I64,
    );
    (pooled.output, pooled.indices, mean, variance)
}

/// The gradients of [`burns_with_indices`] on `B`: Burn's pooling
/// gradient, then the batch norm's through its ReLU.
#[allow(clippy::too_many_arguments)]
fn burns_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    indices: IntTensor<B>,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let grad = B::max_pool2d_with_indices_backward(
        x.clone(),
        WINDOW,
        WINDOW,
        [0, 0],
        [1, 1],
        false,
        output_grad,
        indices,
    )
    .x_grad;
    burns_backward_through_relu::<B>(x, gamma, mean, variance, epsilon, Some(beta), grad)
}

/// The kernels' geometry and `[h, w]` for a flex input `x`, when they can
/// run it: `f32` of rank 4, planes of at least 2 × 2, a non-empty batch.
fn pooled_geometry(x: &FlexTensor) -> Option<(NormGeometry, [usize; 2])> {
    let shape = x.shape();
    if shape.num_dims() != 4 || shape[2] < 2 || shape[3] < 2 {
        return None;
    }
    flex_geometry(x).map(|g| (g, [shape[2], shape[3]]))
}

impl BatchNormReluPoolOps for Flex {
    fn batch_norm_relu_max_pool2d_train_with_codes(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let Some((g, input)) = pooled_geometry(&x).filter(|_| all_f32(&[&gamma, &beta])) else {
            return burns_with_indices::<Self>(x, gamma, beta, epsilon);
        };
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let out = kernels::forward(
            &g,
            input,
            values(&x),
            values(&gamma),
            values(&beta),
            epsilon,
        );
        let shape = [g.batch, g.channels, input[0] / 2, input[1] / 2];
        let channels = Shape::new([g.channels]);
        (
            flex_tensor(out.output, shape),
            FlexTensor::from_data(TensorData::new(out.codes, shape)),
            flex_tensor(out.mean, channels.clone()),
            flex_tensor(out.variance, channels),
        )
    }

    fn batch_norm_relu_max_pool2d_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        codes: FlexTensor,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        // The forward took the kernels for exactly these inputs, and only
        // they give `u8` codes.
        let ours =
            codes.dtype() == DType::U8 && all_f32(&[&gamma, &beta, &mean, &variance, &output_grad]);
        let Some((g, input)) = pooled_geometry(&x).filter(|_| ours) else {
            return burns_backward::<Self>(
                x,
                gamma,
                beta,
                mean,
                variance,
                epsilon,
                codes,
                output_grad,
            );
        };
        let shape = x.shape();
        let [x, gamma, beta, mean, variance, output_grad] =
            [x, gamma, beta, mean, variance, output_grad].map(contiguous);
        let codes = codes.to_contiguous();
        let grads = kernels::backward(
            &g,
            input,
            values(&x),
            values(&gamma),
            values(&beta),
            values(&mean),
            values(&variance),
            epsilon,
            codes.as_slice::<u8>().expect("contiguous u8 codes"),
            values(&output_grad),
        );
        let channels = Shape::new([g.channels]);
        (
            flex_tensor(grads.x, shape),
            flex_tensor(grads.gamma, channels.clone()),
            flex_tensor(grads.beta, channels),
        )
    }
}

/// What the backward of the node needs: the checkpointed input and γ, β,
/// the batch statistics, ε and the codes.
#[derive(Debug, Clone)]
struct State<F, I> {
    x: NodeId,
    gamma: NodeId,
    beta: F,
    mean: F,
    variance: F,
    epsilon: f64,
    codes: I,
}

/// The autodiff node of
/// [`BatchNormReluPoolOps::batch_norm_relu_max_pool2d_train`] (parents: the
/// input, γ and β).
#[derive(Debug)]
struct BatchNormReluPoolBackward;

impl<B: Backend + BatchNormReluPoolOps> Backward<B, 3> for BatchNormReluPoolBackward {
    type State = State<B::FloatTensorPrimitive, B::IntTensorPrimitive>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.gamma);
        let (x_grad, gamma_grad, beta_grad) = B::batch_norm_relu_max_pool2d_train_backward(
            x,
            gamma,
            state.beta,
            state.mean,
            state.variance,
            state.epsilon,
            state.codes,
            grad,
        );
        for (node, grad) in [
            (node_x, x_grad),
            (node_gamma, gamma_grad),
            (node_beta, beta_grad),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + BatchNormReluPoolOps, C: CheckpointStrategy> BatchNormReluPoolOps
    for Autodiff<B, C>
{
    fn batch_norm_relu_max_pool2d_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormReluPoolBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_node, gamma_node) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let beta_state = beta.clone().into_primitive();
                let (pooled, codes, mean, variance) =
                    B::batch_norm_relu_max_pool2d_train_with_codes(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        epsilon,
                    );
                let state = State {
                    x: x_node,
                    gamma: gamma_node,
                    beta: beta_state,
                    mean: mean.clone(),
                    variance: variance.clone(),
                    epsilon,
                    codes,
                };
                (
                    prep.finish(state, pooled),
                    Self::from_inner(mean),
                    Self::from_inner(variance),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (pooled, mean, variance) = B::batch_norm_relu_max_pool2d_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (
                    prep.finish(pooled),
                    Self::from_inner(mean),
                    Self::from_inner(variance),
                )
            }
        }
    }
}
