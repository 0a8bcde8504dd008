//! A convolution, its ReLU and a 2 × 2 max pooling as one operation
//! ([`conv2d_relu_max_pool2d`]): on flex, where the convolution runs as
//! Winograd's F(2×2, 3×3), whose output tiles are the pooling's windows,
//! each tile is pooled as it is formed and the convolution's output is
//! never written, nor read back by the pooling, nor kept for the ReLU's
//! gradient.
//!
//! Why: in `simple_cnn` that output is 64 × 24 × 24 values per sample
//! (9.4 MB a batch): the pooling read it, the ReLU's gradient read it again
//! beside its own gradient, and the pooling's gradient wrote a buffer as
//! large (docs/benchmarks.md §6).
//!
//! Invariants:
//! * **The same numbers as the three layers apart** ([`crate::conv::conv2d_relu`]
//!   then [`crate::pool::max_pool2d`]): the output and the input and bias
//!   gradients bit for bit (the same products, the same maximum chosen, the
//!   first, a NaN winning, the same gradient routed); the weight gradient
//!   within float rounding, as it is summed over the windows' maxima alone
//!   (`conv::window_weight_grad`) rather than by Winograd's gemms over
//!   every tile (tests below). The path a layer takes is fixed by its
//!   configuration and backend, so a run and its resumption take the same.
//! * **Records are unchanged**: the layers stay Burn's [`Conv2d`] and
//!   [`MaxPool2d`].
//! * **Other cases are the layers apart**: another backend, a pooling that
//!   is not 2 × 2 with stride 2, a convolution without a bias, and (inside
//!   flex) a convolution Winograd does not take.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;

use crate::conv::conv2d_relu;
use crate::pool::max_pool2d;

#[cfg(feature = "flex")]
pub mod extension;

/// `pool.forward(relu(conv.forward(x)))`, in one pass on a flex device when
/// `pool` is a 2 × 2 pooling of stride 2 and `conv` has a bias (see the
/// module doc); otherwise [`conv2d_relu`] then [`max_pool2d`].
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::nn::pool::MaxPool2dConfig;
/// use burn::prelude::*;
/// use burn::tensor::activation::relu;
/// use burnfit_models::conv_pool::conv2d_relu_max_pool2d;
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([16, 16], [3, 3]).init(&device);
/// let pool = MaxPool2dConfig::new([2, 2]).init();
/// let x = Tensor::<4>::random([2, 16, 20, 20], burn::tensor::Distribution::Default, &device);
/// let fused = conv2d_relu_max_pool2d(&conv, &pool, x.clone());
/// let apart = pool.forward(relu(conv.forward(x)));
/// let diff: f32 = (fused - apart).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn conv2d_relu_max_pool2d(conv: &Conv2d, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if fuses(conv, pool) && crate::conv::uses_gemm_kernels(&x.device()) {
        return fused(conv, x);
    }
    max_pool2d(pool, conv2d_relu(conv, x))
}

/// Whether [`conv2d_relu_max_pool2d`] may take the fused path for these
/// layers: a bias, and a 2 × 2 pooling of stride 2.
#[cfg(feature = "flex")]
fn fuses(conv: &Conv2d, pool: &MaxPool2d) -> bool {
    conv.bias.is_some() && crate::pool::windows_do_not_overlap(pool) && pool.kernel_size == [2, 2]
}

#[cfg(feature = "flex")]
fn fused(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    use burn::backend::Dispatch;
    use extension::ConvReluPoolOps;

    let [_, _, height, width] = x.dims();
    let options = crate::conv::conv_options(conv, [height, width]);
    let bias = conv.bias.as_ref().expect("fuses() checked the bias");
    Tensor::<4>::from_dispatch(<Dispatch as ConvReluPoolOps>::conv2d_bias_relu_max_pool2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::test_values::assert_within_rounding;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The pooled output and the gradients of the input, weight and bias,
    /// fused or apart (ours), or through Burn's own layers.
    fn run(conv: &Conv2d, pool: &MaxPool2d, x: &TensorData, way: Way) -> [Vec<f32>; 4] {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
        let y = match way {
            Way::Fused => conv2d_relu_max_pool2d(conv, pool, x.clone()),
            Way::Apart => max_pool2d(pool, conv2d_relu(conv, x.clone())),
            Way::Burn => pool.forward(burn::tensor::activation::relu(conv.forward(x.clone()))),
        };
        // A different weight per output, so a gradient routed to the wrong
        // place shows.
        let weights = Tensor::<1, Int>::arange(0..y.shape().num_elements() as i64, &device)
            .float()
            .reshape(y.dims())
            .sin();
        let grads = (y.clone() * weights).sum().backward();
        let bias = conv.bias.as_ref().unwrap();
        [
            values(y.detach()),
            values(x.grad(&grads).unwrap()),
            values(conv.weight.val().grad(&grads).unwrap()),
            values(bias.val().grad(&grads).unwrap()),
        ]
    }

    #[derive(Clone, Copy)]
    enum Way {
        Fused,
        Apart,
        Burn,
    }

    fn layers(channels: [usize; 2], padding: PaddingConfig2d) -> (Conv2d, MaxPool2d) {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new(channels, [3, 3])
            .with_padding(padding)
            .init(&device);
        (conv, MaxPool2dConfig::new([2, 2]).init())
    }

    #[test]
    fn fused_equals_the_layers_apart_and_burns_bit_for_bit_or_within_rounding() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        for (shape, channels, padding) in [
            // simple_cnn's second convolution, smaller: Winograd, valid.
            ([3, 32, 14, 14], [32, 16], PaddingConfig2d::Valid),
            // Odd output (13 × 11): the last tile row and column are cut.
            ([2, 32, 15, 13], [32, 8], PaddingConfig2d::Valid),
            ([2, 16, 16, 16], [16, 8], PaddingConfig2d::Same),
            // Too few channels for Winograd: the fallback inside flex.
            ([2, 3, 9, 9], [3, 4], PaddingConfig2d::Valid),
        ] {
            let (conv, pool) = layers(channels, padding);
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).into_data();
            let fused = run(&conv, &pool, &x, Way::Fused);
            let apart = run(&conv, &pool, &x, Way::Apart);
            let burn = run(&conv, &pool, &x, Way::Burn);
            for (k, what) in ["output", "input grad", "weight grad", "bias grad"]
                .iter()
                .enumerate()
            {
                // The weight gradient is summed over the windows apart from
                // the layers' (see the module doc), where Winograd applies.
                if *what == "weight grad" && channels[0] >= 8 {
                    assert_within_rounding(&fused[k], &apart[k], 1e-5, what, &shape);
                } else {
                    assert!(fused[k] == apart[k], "{what} bit for bit, {shape:?}");
                }
                assert_within_rounding(&fused[k], &burn[k], 1e-4, what, &shape);
            }
        }
    }

    #[test]
    fn ties_and_dead_windows_route_the_gradient_as_the_layers_apart() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Integer inputs and weights: many windows hold their maximum twice,
        // and many are all negative (the ReLU's zero everywhere).
        let (mut conv, pool) = layers([32, 8], PaddingConfig2d::Valid);
        let device = Device::flex().autodiff();
        let quantised = |tensor: Tensor<4>| tensor.mul_scalar(2.0).round();
        conv.weight = conv
            .weight
            .map(|w| quantised(w.mul_scalar(4.0)).detach().require_grad());
        let x = quantised(Tensor::<4>::random(
            [2, 32, 10, 10],
            Distribution::Normal(0.0, 1.0),
            &device,
        ))
        .into_data();
        let fused = run(&conv, &pool, &x, Way::Fused);
        let apart = run(&conv, &pool, &x, Way::Apart);
        let zeros = fused[0].iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0, "some windows are all cut by the ReLU");
        for k in [0, 1, 3] {
            assert!(fused[k] == apart[k], "output and input and bias gradients");
        }
        assert_within_rounding(&fused[2], &apart[2], 1e-5, "weight grad", &[2, 32, 10, 10]);
    }

    #[test]
    fn only_2x2_poolings_after_a_convolution_with_a_bias_fuse() {
        let (conv, pool) = layers([8, 8], PaddingConfig2d::Valid);
        assert!(fuses(&conv, &pool));
        let no_bias = Conv2dConfig::new([8, 8], [3, 3])
            .with_bias(false)
            .init(&Device::flex());
        assert!(!fuses(&no_bias, &pool));
        assert!(!fuses(&conv, &MaxPool2dConfig::new([3, 3]).init()));
        let overlapping = MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).init();
        assert!(!fuses(&conv, &overlapping));
    }
}
