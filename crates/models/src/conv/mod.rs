//! The models' 2-D convolutions: [`conv2d`] runs a Burn [`Conv2d`] layer
//! (and [`conv2d_relu`] the layer followed by a ReLU), on flex (Burn's CPU
//! backend) through our own im2col/col2im + gemm kernels for the forward
//! pass *and every gradient*, with the bias and the ReLU folded in (3×3
//! stride-1 layers with enough channels as Winograd's F(2×2, 3×3),
//! `winograd`), elsewhere through Burn.
//!
//! Why: on flex a convolution's backward cost 3–4× its forward (Burn
//! computes the input gradient as a transposed convolution and the weight
//! gradient as a convolution whose kernel is the whole output gradient), and
//! the CNNs ran 2–5× slower than the same networks in Keras/TensorFlow on the
//! same CPU (docs/benchmarks.md §5–6). Here each gradient is one gemm per
//! sample plus a copy, spread over the cores.
//!
//! Invariants:
//! * **Records are unchanged.** The parameters are those of Burn's
//!   [`Conv2d`]; only how the output is computed differs, so checkpoints
//!   load either way.
//! * **The same numbers as Burn's convolution**, forward and gradients,
//!   within float rounding (tests below and in [`kernels`]).
//! * **Deterministic**: the same inputs give bit-identical outputs and
//!   gradients whatever the number of threads, so a resumed run replays
//!   exactly.
//! * **Other backends are untouched**: wgpu and ndarray keep Burn's
//!   convolution (with [`conv2d_stem`]'s path for one-channel stems), as
//!   does flex for what the kernels do not cover (several groups, non-`f32`).
//!
//! The kernels are plain Rust on slices (gemm and rayon, both already in a
//! flex build), written so that they could become flex's own
//! `conv2d_x_backward` / `conv2d_weight_backward` (see docs/benchmarks.md).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use stem::conv2d_stem;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub(crate) mod gemm;
#[cfg(feature = "flex")]
mod geometry;
#[cfg(feature = "flex")]
pub mod kernels;
/// The first convolution of a network (one input channel), direct rather
/// than through the gemm.
pub mod stem;
#[cfg(feature = "flex")]
mod transpose;
#[cfg(feature = "flex")]
mod window_weight_grad;
#[cfg(feature = "flex")]
pub mod winograd;

/// `conv.forward(x)`: on a flex device (with or without autodiff) through
/// [`extension::GemmConv2dOps`] when the crate's `flex` feature is on,
/// otherwise Burn's convolution ([`conv2d_stem`]).
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::nn::PaddingConfig2d;
/// use burn::prelude::*;
/// use burnfit_models::conv::conv2d;
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([2, 4], [3, 3])
///     .with_padding(PaddingConfig2d::Same)
///     .init(&device);
/// let x = Tensor::<4>::ones([2, 2, 6, 6], &device);
/// let diff: f32 = (conv2d(&conv, x.clone()) - conv.forward(x)).abs().max().into_scalar();
/// assert!(diff < 1e-5);
/// ```
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    assert_channels(conv, &x);
    #[cfg(feature = "flex")]
    if uses_gemm_kernels(&x.device()) {
        return gemm_conv2d(conv, x, false);
    }
    conv2d_stem(conv, x)
}

/// Panics unless `x` (`[batch, channels, height, width]`) has the channels
/// `conv` takes: the gemm kernels and im2col would otherwise read past or
/// short of the input's channels and give a wrong result without a word.
pub(crate) fn assert_channels(conv: &Conv2d, x: &Tensor<4>) {
    let [_, per_group, _, _] = conv.weight.dims();
    let takes = per_group * conv.groups;
    let channels = x.dims()[1];
    assert_eq!(
        channels, takes,
        "convolution: the input has {channels} channels, but the layer takes {takes}"
    );
}

/// Whether [`conv2d`] runs on `device` through the gemm kernels.
pub fn uses_gemm_kernels(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        device.clone().inner() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// `relu(conv.forward(x))`, with the ReLU folded into the convolution on a
/// flex device (as [`conv2d`]); elsewhere Burn's convolution and ReLU.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::prelude::*;
/// use burn::tensor::activation::relu;
/// use burnfit_models::conv::conv2d_relu;
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([2, 4], [3, 3]).init(&device);
/// let x = Tensor::<4>::random([2, 2, 6, 6], burn::tensor::Distribution::Default, &device);
/// let diff: f32 = (conv2d_relu(&conv, x.clone()) - relu(conv.forward(x))).abs().max().into_scalar();
/// assert!(diff < 1e-5);
/// ```
pub fn conv2d_relu(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    assert_channels(conv, &x);
    #[cfg(feature = "flex")]
    if uses_gemm_kernels(&x.device()) {
        return gemm_conv2d(conv, x, true);
    }
    burn::tensor::activation::relu(conv2d_stem(conv, x))
}

#[cfg(feature = "flex")]
fn gemm_conv2d(conv: &Conv2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    use burn::backend::Dispatch;
    use extension::GemmConv2dOps;

    let [_, _, height, width] = x.dims();
    let options = conv_options(conv, [height, width]);
    let (x, weight) = (x.into_dispatch(), conv.weight.val().into_dispatch());
    Tensor::<4>::from_dispatch(match &conv.bias {
        Some(bias) => <Dispatch as GemmConv2dOps>::gemm_conv2d_bias(
            x,
            weight,
            bias.val().into_dispatch(),
            options,
            relu,
        ),
        None => <Dispatch as GemmConv2dOps>::gemm_conv2d(x, weight, options, relu),
    })
}

/// The options Burn's [`Conv2d::forward`] passes to its convolution for an
/// input of `[height, width]` (its `Same` padding rule included: the extra
/// pixel of an odd total goes to the bottom/right).
pub fn conv_options(conv: &Conv2d, [height, width]: [usize; 2]) -> ConvOptions<2> {
    let [kh, kw] = conv.kernel_size;
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [
            same_padding(kh, conv.stride[0], height),
            same_padding(kw, conv.stride[1], width),
        ],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    };
    ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups)
}

/// Burn's `Same` padding `(begin, end)` along one dimension.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// `a` equals `b` within 1e-5 of `b`'s largest value (at least 1).
    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        let scale: f32 = b.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{what}: differs by {diff} (scale {scale})"
        );
    }

    /// An input whose channels differ from the layer's is a panic on
    /// every path, not a result computed from the wrong channels.
    #[test]
    fn an_input_with_other_channels_than_the_layer_panics() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
        let x = Tensor::<4>::ones([2, 1, 8, 8], &device);
        type Path = fn(&Conv2d, Tensor<4>) -> Tensor<4>;
        let paths: [(&str, Path); 4] = [
            ("conv2d", conv2d),
            ("conv2d_relu", conv2d_relu),
            ("conv2d_stem", conv2d_stem),
            ("conv2d_im2col", |c, x| stem::conv2d_im2col(c, x, [0, 0])),
        ];
        for (name, path) in paths {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| path(&conv, x.clone())));
            let message = result
                .err()
                .unwrap_or_else(|| panic!("{name} took 1 channel"));
            let text = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(
                text.contains("the input has 1 channels, but the layer takes 3"),
                "{name}: {text}"
            );
        }
    }

    /// Forward values and the input, weight and bias gradients of
    /// [`conv2d`] and [`conv2d_relu`] equal those of Burn's own convolution
    /// (and ReLU), on flex with autodiff.
    fn check_against_burn(config: Conv2dConfig, input: [usize; 4]) {
        check_against_burn_with(config.clone(), input, false);
        check_against_burn_with(config, input, true);
    }

    fn check_against_burn_with(config: Conv2dConfig, input: [usize; 4], relu: bool) {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        assert!(uses_gemm_kernels(&device));
        let conv = config.init(&device);
        let x = Tensor::<4>::random(input, Distribution::Default, &device).require_grad();
        // A loss that weights every output differently.
        let weights = Tensor::<4>::random(
            conv.forward(x.clone()).dims(),
            Distribution::Default,
            &device,
        );
        let loss = |y: Tensor<4>| (y * weights.clone()).sum();
        let (ours, theirs) = if relu {
            let theirs = burn::tensor::activation::relu(conv.forward(x.clone()));
            let zeros: f32 = theirs.clone().equal_elem(0.0).float().mean().into_scalar();
            assert!(
                zeros > 0.0 && zeros < 1.0,
                "the ReLU clamps some outputs, not all: {zeros}"
            );
            (conv2d_relu(&conv, x.clone()), theirs)
        } else {
            (conv2d(&conv, x.clone()), conv.forward(x.clone()))
        };
        assert_eq!(ours.dims(), theirs.dims(), "{config:?}");
        let close =
            |a, b, what: &str| assert_close(a, b, &format!("{what} for {config:?}, relu {relu}"));
        close(ours.clone(), theirs.clone(), "forward");
        let (grads_ours, grads_theirs) = (loss(ours).backward(), loss(theirs).backward());
        close(
            x.grad(&grads_ours).unwrap(),
            x.grad(&grads_theirs).unwrap(),
            "input gradient",
        );
        close(
            conv.weight.val().grad(&grads_ours).unwrap(),
            conv.weight.val().grad(&grads_theirs).unwrap(),
            "weight gradient",
        );
        if let Some(bias) = &conv.bias {
            assert_close(
                bias.val().grad(&grads_ours).unwrap(),
                bias.val().grad(&grads_theirs).unwrap(),
                &format!("bias gradient for {config:?}, relu {relu}"),
            );
        }
    }

    #[test]
    fn same_padding_matches_burn() {
        check_against_burn(
            Conv2dConfig::new([3, 8], [3, 3]).with_padding(PaddingConfig2d::Same),
            [4, 3, 10, 9],
        );
    }

    /// Shapes the Winograd path takes ([`winograd::applies`]), with
    /// and without padding, an odd output, with and without the ReLU.
    #[test]
    fn winograd_shapes_match_burn() {
        for (config, input) in [
            (Conv2dConfig::new([32, 8], [3, 3]), [3, 32, 9, 8]),
            (
                Conv2dConfig::new([16, 9], [3, 3]).with_padding(PaddingConfig2d::Same),
                [2, 16, 17, 16],
            ),
        ] {
            let [batch, channels, h, w] = input;
            let geometry = kernels::Geometry {
                batch,
                in_channels: channels,
                input: [h, w],
                out_channels: config.channels[1],
                kernel: [3, 3],
                stride: [1, 1],
                padding: match config.padding {
                    PaddingConfig2d::Same => [(1, 1), (1, 1)],
                    _ => [(0, 0), (0, 0)],
                },
                dilation: [1, 1],
            };
            assert!(winograd::applies(&geometry), "{geometry:?}");
            for relu in [false, true] {
                check_against_burn_with(config.clone(), input, relu);
            }
        }
    }

    #[test]
    fn valid_padding_one_channel_stem_matches_burn() {
        check_against_burn(Conv2dConfig::new([1, 6], [3, 3]), [5, 1, 12, 12]);
    }

    #[test]
    fn stride_and_asymmetric_padding_match_burn() {
        check_against_burn(
            Conv2dConfig::new([2, 4], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 1)),
            [3, 2, 11, 10],
        );
    }

    #[test]
    fn same_padding_with_stride_two_matches_burn() {
        check_against_burn(
            Conv2dConfig::new([2, 3], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Same),
            [2, 2, 9, 8],
        );
    }

    #[test]
    fn dilation_and_a_rectangular_kernel_match_burn() {
        check_against_burn(
            Conv2dConfig::new([3, 5], [2, 3])
                .with_dilation([2, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false),
            [2, 3, 9, 8],
        );
    }

    #[test]
    fn a_batch_of_many_chunks_matches_burn() {
        // 37 samples: several weight-gradient chunks and an uneven last one.
        check_against_burn(
            Conv2dConfig::new([4, 6], [3, 3]).with_padding(PaddingConfig2d::Same),
            [37, 4, 7, 7],
        );
    }

    #[test]
    fn grouped_layers_fall_back_to_burn() {
        check_against_burn(
            Conv2dConfig::new([4, 6], [3, 3]).with_groups(2),
            [2, 4, 6, 6],
        );
    }

    #[test]
    fn without_autodiff_the_forward_matches_burn() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
        let x = Tensor::<4>::random([2, 2, 8, 8], Distribution::Default, &device);
        let diff: f32 = (conv2d(&conv, x.clone()) - conv.forward(x))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-5);
    }

    #[test]
    fn other_backends_keep_burns_convolution() {
        // Naming a wgpu device starts no GPU runtime.
        let wgpu: Device = burn::backend::WgpuDevice::default().into();
        assert!(!uses_gemm_kernels(&wgpu));
        assert!(!uses_gemm_kernels(&wgpu.autodiff()));
    }
}
