//! A batch norm in training, its ReLU and a 2 × 2 max pooling as one
//! operation ([`batch_norm_relu_max_pool2d`]): on flex, each channel's
//! normalised plane of a sample is pooled as it is formed, and the
//! backward routes each plane's gradient from the pooled one as it reads
//! it, so the batch norm's output and the pooling's input gradient, each
//! the size of the batch norm's input, are never written nor read back.
//!
//! Why: the batch norm's loops wait on memory (docs/benchmarks.md §6,
//! item 26). In the flagship `cnn`'s first block that output is 32 × 28 ×
//! 28 values per sample (6.4 MB a batch): written by the batch norm, read
//! by the pooling; and the pooling's gradient of the same size was zeroed,
//! written, and read twice by the batch norm's backward.
//!
//! Invariants:
//! * **The same numbers as the layers apart** ([`crate::norm::batch_norm_relu`]
//!   then [`crate::pool::max_pool2d`]), bit for bit: the output, every
//!   gradient and the running statistics (the same functions form each
//!   plane; tests below).
//! * **Records are unchanged**: the layers stay Burn's [`BatchNorm`] and
//!   [`MaxPool2d`], and the running statistics are updated by Burn's rule.
//! * **Other cases are the layers apart**: another backend, inference, a
//!   pooling that is not 2 × 2 with stride 2 over disjoint windows.

use burn::nn::BatchNorm;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

use crate::norm::batch_norm_relu;
use crate::pool::max_pool2d;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub mod kernels;

/// `pool.forward(relu(bn.forward(x)))`, in one pass in training on a flex
/// device when `pool` is a 2 × 2 pooling of stride 2 (see the module doc);
/// otherwise [`batch_norm_relu`] then [`max_pool2d`]. Updates the running
/// statistics as Burn does.
///
/// ```
/// use burn::nn::BatchNormConfig;
/// use burn::nn::pool::MaxPool2dConfig;
/// use burn::prelude::*;
/// use burn::tensor::activation::relu;
/// use burnfit_models::norm_pool::batch_norm_relu_max_pool2d;
///
/// let device = Device::flex().autodiff();
/// let ours = BatchNormConfig::new(3).init(&device);
/// let burns = BatchNormConfig::new(3).init(&device);
/// let pool = MaxPool2dConfig::new([2, 2]).init();
/// let x = Tensor::<4>::random([4, 3, 6, 6], burn::tensor::Distribution::Default, &device);
/// let fused = batch_norm_relu_max_pool2d(&ours, &pool, x.clone());
/// let apart = pool.forward(relu(burns.forward(x)));
/// let diff: f32 = (fused - apart).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn batch_norm_relu_max_pool2d(bn: &BatchNorm, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if fuses(pool, &x) && crate::norm::runs_kernels(bn, &x) {
        return fused(bn, x);
    }
    max_pool2d(pool, batch_norm_relu(bn, x))
}

/// Whether [`batch_norm_relu_max_pool2d`] may take the fused path: a 2 × 2
/// pooling of stride 2 over disjoint windows, on planes of at least 2 × 2.
#[cfg(feature = "flex")]
fn fuses(pool: &MaxPool2d, x: &Tensor<4>) -> bool {
    let [_, _, h, w] = x.dims();
    crate::pool::windows_do_not_overlap(pool) && pool.kernel_size == [2, 2] && h >= 2 && w >= 2
}

#[cfg(feature = "flex")]
fn fused(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    use burn::backend::Dispatch;
    use extension::BatchNormReluPoolOps;

    let device = x.device();
    let (pooled, mean, variance) =
        <Dispatch as BatchNormReluPoolOps>::batch_norm_relu_max_pool2d_train(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            bn.epsilon,
        );
    crate::norm::update_running_statistics(
        bn,
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(variance),
        &device,
    );
    Tensor::<4>::from_dispatch(pooled)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::test_values::assert_within_rounding;
    use burn::nn::BatchNormConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    #[derive(Clone, Copy)]
    enum Way {
        Fused,
        Apart,
        Burn,
    }

    /// The pooled output, the gradients of the input, γ and β, and the
    /// running mean and variance after the step, one way.
    fn run(x: &TensorData, gamma_beta: &TensorData, way: Way) -> [Vec<f32>; 6] {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
        let channels = x.dims()[1];
        let mut bn = BatchNormConfig::new(channels).init(&device);
        // γ and β of both signs, so that the ReLU cuts whole windows.
        let params = Tensor::<2>::from_data(gamma_beta.clone(), &device);
        bn.gamma = bn
            .gamma
            .map(|_| params.clone().slice([0..1]).squeeze_dim(0).require_grad());
        bn.beta = bn
            .beta
            .map(|_| params.clone().slice([1..2]).squeeze_dim(0).require_grad());
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let y = match way {
            Way::Fused => batch_norm_relu_max_pool2d(&bn, &pool, x.clone()),
            Way::Apart => max_pool2d(&pool, batch_norm_relu(&bn, x.clone())),
            Way::Burn => pool.forward(burn::tensor::activation::relu(bn.forward(x.clone()))),
        };
        // A different weight per output, so a gradient routed to the wrong
        // place shows.
        let weights = Tensor::<1, Int>::arange(0..y.shape().num_elements() as i64, &device)
            .float()
            .reshape(y.dims())
            .sin();
        let grads = (y.clone() * weights).sum().backward();
        [
            values(y.detach()),
            values(x.grad(&grads).unwrap()),
            values(bn.gamma.val().grad(&grads).unwrap()),
            values(bn.beta.val().grad(&grads).unwrap()),
            values(bn.running_mean.value()),
            values(bn.running_var.value()),
        ]
    }

    const WHAT: [&str; 6] = [
        "output",
        "input grad",
        "gamma grad",
        "beta grad",
        "running mean",
        "running variance",
    ];

    #[test]
    fn fused_equals_the_layers_apart_bit_for_bit_and_burns_within_rounding() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        // The flagship's first block, smaller; odd planes (the last row
        // and column are outside every window); planes of 2 × 2.
        for shape in [[3, 8, 28, 28], [2, 5, 7, 9], [4, 3, 2, 2]] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.5, 2.0), &device).into_data();
            let gamma_beta =
                Tensor::<2>::random([2, shape[1]], Distribution::Normal(0.0, 1.0), &device)
                    .into_data();
            let fused = run(&x, &gamma_beta, Way::Fused);
            let apart = run(&x, &gamma_beta, Way::Apart);
            let burn = run(&x, &gamma_beta, Way::Burn);
            for (k, what) in WHAT.iter().enumerate() {
                assert!(fused[k] == apart[k], "{what} bit for bit, {shape:?}");
                assert_within_rounding(&fused[k], &burn[k], 1e-4, what, &shape);
            }
        }
    }

    #[test]
    fn ties_and_windows_the_relu_cuts_route_the_gradient_as_the_layers_apart() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        // Integer inputs: many windows hold their maximum twice, and with
        // a negative γ many are cut by the ReLU everywhere.
        let shape = [3, 4, 10, 10];
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device)
            .round()
            .into_data();
        let gamma_beta = TensorData::new(vec![1.0f32, -1.0, 2.0, 0.5, 0.0, 0.5, -0.5, 0.0], [2, 4]);
        let fused = run(&x, &gamma_beta, Way::Fused);
        let apart = run(&x, &gamma_beta, Way::Apart);
        let zeros = fused[0].iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0, "some windows are all cut by the ReLU");
        for (k, what) in WHAT.iter().enumerate() {
            assert!(fused[k] == apart[k], "{what} bit for bit");
        }
    }

    #[test]
    fn only_2x2_poolings_of_stride_2_fuse() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        assert!(fuses(&MaxPool2dConfig::new([2, 2]).init(), &x));
        assert!(!fuses(&MaxPool2dConfig::new([3, 3]).init(), &x));
        let overlapping = MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).init();
        assert!(!fuses(&overlapping, &x));
        let one_row = Tensor::<4>::zeros([1, 1, 1, 4], &device);
        assert!(!fuses(&MaxPool2dConfig::new([2, 2]).init(), &one_row));
    }
}
