//! The models' batch normalisation: [`batch_norm`] runs a Burn
//! [`BatchNorm`] layer, in training on flex through our own kernels (the
//! statistics and all three gradients without transposes), and everywhere
//! else through Burn.
//!
//! Why: on flex, Burn's default `batch_norm_train` and its backward swap the
//! batch and channel dimensions and copy the activations to reduce each
//! channel; the two batch norms of `cnn`'s first block cost ≈ 40 ms of a
//! ≈ 140 ms step (docs/benchmarks.md §6).
//!
//! Invariants:
//! * **Records are unchanged**: γ, β and the running statistics are the
//!   layer's own, updated with Burn's momentum rule.
//! * **The same numbers as Burn's batch norm**, output, gradients and
//!   running statistics, within float rounding (tests below).
//! * **Deterministic** whatever the number of threads ([`kernels`]).
//! * **Inference and other backends are untouched**: outside training (no
//!   autodiff device, or the layer switched off) and on every backend but
//!   flex it is `BatchNorm::forward`.

use burn::nn::BatchNorm;
use burn::prelude::*;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub mod kernels;

/// `bn.forward(x)`: in training on a flex device through
/// [`extension::ChannelBatchNormOps`] when the crate's `flex` feature is on,
/// otherwise Burn's batch norm. Updates the running statistics as Burn does.
///
/// ```
/// use burn::nn::BatchNormConfig;
/// use burn::prelude::*;
/// use burnfit_models::norm::batch_norm;
///
/// let device = Device::flex().autodiff();
/// let ours = BatchNormConfig::new(3).init(&device);
/// let burns = BatchNormConfig::new(3).init(&device);
/// let x = Tensor::<4>::random([4, 3, 5, 5], burn::tensor::Distribution::Default, &device);
/// let diff: f32 = (batch_norm(&ours, x.clone()) - burns.forward(x)).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if runs_kernels(bn, &x) {
        return channel_batch_norm_train(bn, x, false);
    }
    bn.forward(x)
}

/// `relu(bn.forward(x))`: as [`batch_norm`], with the ReLU folded into the
/// kernels in training on flex ([`crate::relu`]); elsewhere Burn's batch
/// norm and ReLU.
///
/// ```
/// use burn::nn::BatchNormConfig;
/// use burn::prelude::*;
/// use burn::tensor::activation::relu;
/// use burnfit_models::norm::batch_norm_relu;
///
/// let device = Device::flex().autodiff();
/// let ours = BatchNormConfig::new(3).init(&device);
/// let burns = BatchNormConfig::new(3).init(&device);
/// let x = Tensor::<4>::random([4, 3, 5, 5], burn::tensor::Distribution::Default, &device);
/// let diff: f32 = (batch_norm_relu(&ours, x.clone()) - relu(burns.forward(x))).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if runs_kernels(bn, &x) {
        return channel_batch_norm_train(bn, x, true);
    }
    burn::tensor::activation::relu(bn.forward(x))
}

/// Whether [`batch_norm`] runs `x` through the kernels: in training, on flex
/// with autodiff, rank 3 or more.
#[cfg(feature = "flex")]
fn runs_kernels<const D: usize>(bn: &BatchNorm, x: &Tensor<D>) -> bool {
    D >= 3
        && bn.training.is_enabled()
        && x.device().is_autodiff()
        && crate::conv::uses_gemm_kernels(&x.device())
}

/// Burn's `BatchNorm::forward_train` with the statistics and the output
/// from the kernels.
#[cfg(feature = "flex")]
fn channel_batch_norm_train<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    use burn::backend::Dispatch;
    use extension::ChannelBatchNormOps;

    let device = x.device();
    let (output, mean, variance) = <Dispatch as ChannelBatchNormOps>::channel_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu,
    );
    let (mean, variance) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(variance),
    );
    // Burn's rule: running = (1 − momentum) · running + momentum · batch.
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - bn.momentum)
            .add(batch.detach().mul_scalar(bn.momentum))
            .detach()
    };
    bn.running_mean
        .update(blend(bn.running_mean.value_sync(), mean));
    bn.running_var
        .update(blend(bn.running_var.value_sync(), variance));
    Tensor::<D>::from_dispatch(output)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// `a` equals `b` within `1e-4` of `b`'s largest value (at least 1).
    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        assert!(
            diff <= 1e-4 * scale,
            "{what}: differs by {diff} (scale {scale})"
        );
    }

    /// Output, the gradients of x, γ and β, and the running statistics after
    /// one training forward, through [`batch_norm`] or Burn's layer.
    fn train_step<const D: usize>(x: &TensorData, ours: bool, relu: bool) -> Vec<Vec<f32>> {
        let device = Device::flex().autodiff();
        let channels = x.shape()[1];
        let bn = BatchNormConfig::new(channels).init(&device);
        // γ and β away from 1 and 0, the same for both runs.
        let gamma = Tensor::<1, Int>::arange(0..channels as i64, &device).float() * 0.3 + 0.5;
        let beta = Tensor::<1, Int>::arange(0..channels as i64, &device).float() * -0.2;
        let bn = BatchNorm {
            gamma: burn::module::Param::from_tensor(gamma),
            beta: burn::module::Param::from_tensor(beta),
            ..bn
        };
        let x = Tensor::<D>::from_data(x.clone(), &device).require_grad();
        let y = match (ours, relu) {
            (true, false) => batch_norm(&bn, x.clone()),
            (true, true) => batch_norm_relu(&bn, x.clone()),
            (false, false) => bn.forward(x.clone()),
            (false, true) => burn::tensor::activation::relu(bn.forward(x.clone())),
        };
        // A different weight per output value, so every gradient term shows.
        let weights = Tensor::<1, Int>::arange(0..y.shape().num_elements() as i64, &device)
            .float()
            .sin()
            .reshape(y.shape());
        let grads = (y.clone() * weights).sum().backward();
        vec![
            values(y.detach()),
            values(x.grad(&grads).unwrap()),
            values(bn.gamma.val().grad(&grads).unwrap()),
            values(bn.beta.val().grad(&grads).unwrap()),
            // `value_sync`: Burn keeps this thread's update aside until
            // then, and `value()` would still be the initial statistics.
            values(bn.running_mean.value_sync()),
            values(bn.running_var.value_sync()),
        ]
    }

    fn check<const D: usize>(shape: [usize; D]) {
        // Seeded: with unseeded data a channel's mean could land within
        // 1e-3 of 0 by chance, failing the check that the statistics moved.
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        device.seed(D as u64 * 1000 + shape.iter().product::<usize>() as u64);
        let x = Tensor::<D>::random(shape, Distribution::Normal(0.5, 2.0), &device);
        let x = x.into_data();
        for relu in [false, true] {
            compare(
                shape,
                train_step::<D>(&x, true, relu),
                train_step::<D>(&x, false, relu),
            );
        }
    }

    /// `ours` (from [`train_step`]) equals `burns`; the statistics moved.
    fn compare<const D: usize>(shape: [usize; D], ours: Vec<Vec<f32>>, burns: Vec<Vec<f32>>) {
        // The statistics moved from their initial values (mean 0, var 1),
        // so comparing them checks the momentum blend.
        assert!(ours[4].iter().all(|m| m.abs() > 1e-3), "{:?}", ours[4]);
        assert!(
            ours[5].iter().all(|v| (v - 1.0).abs() > 1e-3),
            "{:?}",
            ours[5]
        );
        for (what, (a, b)) in [
            "output",
            "x grad",
            "gamma grad",
            "beta grad",
            "running mean",
            "running var",
        ]
        .iter()
        .zip(ours.iter().zip(&burns))
        {
            assert_close(a, b, &format!("{what}, {shape:?}"));
        }
    }

    #[test]
    fn output_gradients_and_running_statistics_match_burns() {
        check([4, 3, 5, 5]);
        check([16, 8, 7, 7]);
        check([2, 6, 9]);
        check([1, 2, 3, 3]);
    }

    #[test]
    fn inference_is_burns_layer() {
        let device = Device::flex();
        let bn = BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Default, &device);
        assert_eq!(values(batch_norm(&bn, x.clone())), values(bn.forward(x)));
    }
}
