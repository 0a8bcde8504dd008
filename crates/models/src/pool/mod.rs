//! The models' max pooling: [`max_pool2d`] runs a Burn [`MaxPool2d`] layer,
//! on flex through our own kernels when its windows do not overlap, and
//! through Burn everywhere else.
//!
//! Why: flex's pooling gradient adds into a freshly zeroed buffer, and that
//! read-before-write pattern costs a copy-on-write page fault (with a TLB
//! flush on every core) for each 4 KiB of the gradient: on `simple_cnn` it
//! was a quarter of the training step (see [`kernels`] and
//! docs/benchmarks.md §6). Ours writes each position once.
//!
//! Invariants:
//! * **No parameters, so records are unchanged.**
//! * **The same numbers as Burn's pooling**: the same maximum is taken (the
//!   first, a NaN winning), so the output and the gradient are equal to
//!   Burn's, bit for bit (tests below).
//! * **Deterministic** whatever the number of threads.
//! * **Other backends and other poolings are untouched**: overlapping
//!   windows, padding, dilation or `ceil_mode` run Burn's pooling, as does
//!   every backend but flex.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub mod kernels;

/// `pool.forward(x)`: on a flex device through
/// [`extension::WindowMaxPool2dOps`] when the crate's `flex` feature is on
/// and the windows do not overlap (stride = kernel, valid padding, no
/// dilation, no `ceil_mode`); otherwise Burn's pooling.
///
/// ```
/// use burn::nn::pool::MaxPool2dConfig;
/// use burn::prelude::*;
/// use burnfit_models::pool::max_pool2d;
///
/// let device = Device::flex();
/// let pool = MaxPool2dConfig::new([2, 2]).init();
/// let x = Tensor::<4>::random([2, 3, 6, 6], burn::tensor::Distribution::Default, &device);
/// let diff: f32 = (max_pool2d(&pool, x.clone()) - pool.forward(x)).abs().max().into_scalar();
/// assert_eq!(diff, 0.0);
/// ```
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if windows_do_not_overlap(pool) && crate::conv::uses_gemm_kernels(&x.device()) {
        return window_max_pool2d(x, pool.kernel_size);
    }
    pool.forward(x)
}

/// Whether `pool` is a plain pooling over disjoint windows, the case the
/// kernels cover.
pub fn windows_do_not_overlap(pool: &MaxPool2d) -> bool {
    pool.stride == pool.kernel_size
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        )
}

#[cfg(feature = "flex")]
fn window_max_pool2d(x: Tensor<4>, window: [usize; 2]) -> Tensor<4> {
    use burn::backend::Dispatch;
    use extension::WindowMaxPool2dOps;

    Tensor::<4>::from_dispatch(<Dispatch as WindowMaxPool2dOps>::window_max_pool2d(
        x.into_dispatch(),
        window,
    ))
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, TensorData};

    fn values(tensor: Tensor<4>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Output and input gradient of `pool` on `x`, through [`max_pool2d`]
    /// and through Burn's layer, with the same upstream gradient.
    fn both_ways(pool: &MaxPool2d, x: &TensorData) -> [(Vec<f32>, Vec<f32>); 2] {
        let device = Device::flex().autodiff();
        let run = |ours: bool| {
            let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
            let y = if ours {
                max_pool2d(pool, x.clone())
            } else {
                pool.forward(x.clone())
            };
            // A different weight per output position, so a gradient routed
            // to the wrong window shows.
            let dims = y.dims();
            let weights = Tensor::<1, Int>::arange(0..y.shape().num_elements() as i64, &device)
                .float()
                .reshape(dims);
            let grads = (y.clone() * weights).sum().backward();
            (values(y.detach()), values(x.grad(&grads).unwrap()))
        };
        [run(true), run(false)]
    }

    #[test]
    fn output_and_gradient_equal_burns_bit_for_bit() {
        let device = Device::flex();
        for (shape, window) in [
            ([4, 3, 8, 8], [2, 2]),
            ([2, 5, 9, 7], [2, 2]),
            ([3, 2, 9, 9], [3, 3]),
            ([2, 3, 8, 9], [2, 3]),
            ([1, 1, 5, 5], [5, 5]),
        ] {
            let pool = MaxPool2dConfig::new(window).init();
            assert!(windows_do_not_overlap(&pool));
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let [ours, burns] = both_ways(&pool, &x.into_data());
            assert_eq!(ours.0, burns.0, "output, {shape:?} window {window:?}");
            assert_eq!(ours.1, burns.1, "gradient, {shape:?} window {window:?}");
        }
    }

    #[test]
    fn ties_route_the_gradient_as_burn_does() {
        // Quantised values: many windows hold their maximum twice.
        let values: Vec<f32> = (0..2 * 3 * 6 * 6).map(|i| ((i * 7) % 3) as f32).collect();
        let x = TensorData::new(values, [2, 3, 6, 6]);
        let [ours, burns] = both_ways(&MaxPool2dConfig::new([2, 2]).init(), &x);
        assert_eq!(ours, burns);
    }

    #[test]
    fn overlapping_or_padded_poolings_are_burns() {
        let overlapping = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        let padded = MaxPool2dConfig::new([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        assert!(!windows_do_not_overlap(&overlapping));
        assert!(!windows_do_not_overlap(&padded));
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 2, 7, 7], Distribution::Default, &device);
        for pool in [overlapping, padded] {
            let [ours, burns] = both_ways(&pool, &x.clone().into_data());
            assert_eq!(ours, burns);
        }
    }

    #[test]
    fn a_non_contiguous_input_is_pooled_as_its_values() {
        let device = Device::flex();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let x = Tensor::<4>::random([3, 2, 6, 4], Distribution::Default, &device);
        let transposed = x.swap_dims(2, 3);
        assert_eq!(
            values(max_pool2d(&pool, transposed.clone())),
            values(pool.forward(transposed))
        );
    }
}
