//! [`ChannelBatchNormOps`]: the batch normalisation of [`super::kernels`]
//! as a Burn backend extension, built like [`crate::conv::extension`].
//!
//! * **Flex** runs the kernels for `f32` tensors of rank 3 or more, and
//!   Burn's own `batch_norm_train` (and its backward) for anything else.
//! * **Autodiff** records one node with the input and γ checkpointed and the
//!   batch statistics kept, as Burn's own `batch_norm_train` node does; the
//!   statistics come back untracked (they feed the running averages). With
//!   a ReLU folded in, the node keeps β rather than the output: the
//!   backward recomputes where the ReLU passed from `x`, as the forward
//!   formed it ([`kernels::backward`]).
//! * Every other backend is never called: [`super::batch_norm`] only takes
//!   this path on flex devices.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape};

use super::kernels::{self, NormGeometry};
use crate::flex_values::{contiguous, flex_tensor, values};

/// Batch normalisation with the batch's statistics, and its gradients.
#[backend_extension(Flex, Autodiff)]
pub trait ChannelBatchNormOps: Backend {
    /// Burn's `batch_norm_train(x, gamma, beta, epsilon)`: the output (then
    /// `relu` of it when `relu` is set), the batch mean and the biased batch
    /// variance (`[channels]`).
    fn channel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, mean, variance) = burns_batch_norm_train::<Self>(x, gamma, beta, epsilon);
        let output = crate::relu::relu_if::<Self>(output, relu);
        (output, mean, variance)
    }

    /// Burn's `batch_norm_train_backward`: the gradients of `x`, γ and β;
    /// when the forward folded a ReLU in (`relu`), from the gradient through
    /// that ReLU (β is only read then).
    #[allow(clippy::too_many_arguments)]
    fn channel_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let relu_beta = relu.then_some(beta);
        burns_backward_through_relu::<Self>(
            x,
            gamma,
            mean,
            variance,
            epsilon,
            relu_beta,
            output_grad,
        )
    }
}

/// The default backward, on Burn's ops: the gradient through the ReLU
/// when there was one (the ReLU of Burn's `batch_norm_train` output
/// recomputed from `x`, as that forward formed it), then Burn's
/// `batch_norm_train_backward`.
fn burns_backward_through_relu<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    relu_beta: Option<FloatTensor<B>>,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let output_grad = match relu_beta {
        Some(beta) => {
            let (output, _, _) =
                burns_batch_norm_train::<B>(x.clone(), gamma.clone(), beta, epsilon);
            B::relu_backward(B::relu(output), output_grad)
        }
        None => output_grad,
    };
    burns_batch_norm_train_backward::<B>(x, gamma, mean, variance, epsilon, output_grad)
}

/// Burn's `batch_norm_train` on `B`, as a tuple.
fn burns_batch_norm_train<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let result = B::batch_norm_train(x, gamma, beta, epsilon);
    (result.output, result.mean, result.variance)
}

/// Burn's `batch_norm_train_backward` on `B`, as a tuple.
fn burns_batch_norm_train_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let grads = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
    (grads.x_grad, grads.gamma_grad, grads.beta_grad)
}

/// The kernels' geometry for a flex input `x`, when they can run it: `f32`,
/// rank 3 or more, a non-empty batch.
fn flex_geometry(x: &FlexTensor) -> Option<NormGeometry> {
    let shape = x.shape();
    if x.dtype() != DType::F32 || shape.num_dims() < 3 {
        return None;
    }
    let geometry = NormGeometry {
        batch: shape[0],
        channels: shape[1],
        spatial: shape.iter().skip(2).product(),
    };
    (geometry.count() > 0 && geometry.channels > 0).then_some(geometry)
}

/// Whether every tensor is `f32` (γ, β and the statistics could be another
/// float type than the input in principle).
fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

impl ChannelBatchNormOps for Flex {
    fn channel_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let geometry = flex_geometry(&x).filter(|_| all_f32(&[&gamma, &beta]));
        let Some(g) = geometry else {
            let (output, mean, variance) = burns_batch_norm_train::<Self>(x, gamma, beta, epsilon);
            let output = crate::relu::relu_if::<Self>(output, relu);
            return (output, mean, variance);
        };
        let shape = x.shape();
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let out = kernels::forward(&g, values(&x), values(&gamma), values(&beta), epsilon, relu);
        let channels = Shape::new([g.channels]);
        (
            flex_tensor(out.output, shape),
            flex_tensor(out.mean, channels.clone()),
            flex_tensor(out.variance, channels),
        )
    }

    fn channel_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let relu_beta = relu.then_some(beta);
        // The forward took the kernels for exactly these inputs (an `f32`
        // x of rank 3 or more, `f32` γ and β), so the ReLU's gate is
        // recomputed here as the kernels formed the output.
        let geometry = flex_geometry(&x).filter(|_| {
            all_f32(&[&gamma, &mean, &variance, &output_grad])
                && relu_beta.as_ref().is_none_or(|beta| all_f32(&[beta]))
        });
        let Some(g) = geometry else {
            return burns_backward_through_relu::<Self>(
                x,
                gamma,
                mean,
                variance,
                epsilon,
                relu_beta,
                output_grad,
            );
        };
        let shape = x.shape();
        let [x, gamma, mean, variance, output_grad] =
            [x, gamma, mean, variance, output_grad].map(contiguous);
        let relu_beta = relu_beta.map(contiguous);
        let grads = kernels::backward(
            &g,
            values(&x),
            values(&gamma),
            values(&mean),
            values(&variance),
            epsilon,
            relu_beta.as_ref().map(values),
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

/// The autodiff node of [`ChannelBatchNormOps::channel_batch_norm_train`].
#[derive(Debug)]
struct ChannelBatchNormBackward;

impl<B: Backend + ChannelBatchNormOps> Backward<B, 3> for ChannelBatchNormBackward {
    /// The checkpointed input and γ, β, the batch statistics, ε, and
    /// whether a ReLU was folded in (the backward recomputes where it
    /// passed, from β among the rest).
    type State = (
        NodeId,
        NodeId,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
        bool,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta, mean, variance, epsilon, relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
        let (x_grad, gamma_grad, beta_grad) = B::channel_batch_norm_train_backward(
            x, gamma, beta, mean, variance, epsilon, relu, grad,
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

impl<B: Backend + ChannelBatchNormOps, C: CheckpointStrategy> ChannelBatchNormOps
    for Autodiff<B, C>
{
    fn channel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match ChannelBatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = beta.clone().into_primitive();
                let (output, mean, variance) = B::channel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                let state = (
                    x_state,
                    gamma_state,
                    beta_state,
                    mean.clone(),
                    variance.clone(),
                    epsilon,
                    relu,
                );
                (
                    prep.finish(state, output),
                    Self::from_inner(mean),
                    Self::from_inner(variance),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = B::channel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (
                    prep.finish(output),
                    Self::from_inner(mean),
                    Self::from_inner(variance),
                )
            }
        }
    }
}
