//! A faster path for convolutions with very few input channels (the first
//! layer of an image network), computed as im2col and one batched matmul.
//!
//! Burn computes a convolution's backward pass with two more convolutions:
//! the input gradient is a transposed convolution and the weight gradient is
//! a convolution whose kernel is the whole output gradient (28×28 for a
//! Fashion-MNIST stem). On the CPU backends that second one is a poor fit for
//! their im2col + gemm kernels when the layer has one input channel: a
//! `1 -> 32` 3×3 stem at batch 64 took 37 ms forward + backward on flex.
//! Written as shifted slices stacked into columns and one matmul, its
//! backward becomes two well-shaped matmuls and slice adjoints: 16 ms
//! (see `examples/op_profile.rs` and docs/benchmarks.md). With more input
//! channels the copies cost more than they save, so [`conv2d_stem`] only
//! takes this path for small `in_channels × kernel` products.
//!
//! The parameters stay those of Burn's [`Conv2d`], so records and
//! checkpoints are unchanged; only how the forward is computed differs.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// Largest `in_channels × kernel_h × kernel_w` for which [`conv2d_stem`]
/// uses im2col (the measured crossover is between 9 and 144).
pub const IM2COL_MAX_PATCH: usize = 27;

/// `conv.forward(x)`, computed by im2col and a matmul when the layer has a
/// small patch (`in_channels × kernel` ≤ [`IM2COL_MAX_PATCH`]), stride 1,
/// dilation 1, one group and symmetric padding; otherwise Burn's convolution.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::nn::PaddingConfig2d;
/// use burn::prelude::*;
/// use burnfit_models::conv::stem::conv2d_stem;
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([1, 8], [3, 3])
///     .with_padding(PaddingConfig2d::Same)
///     .init(&device);
/// let x = Tensor::<4>::ones([2, 1, 6, 6], &device);
/// let fast = conv2d_stem(&conv, x.clone());
/// let reference = conv.forward(x);
/// let diff: f32 = (fast - reference).abs().max().into_scalar();
/// assert!(diff < 1e-5);
/// ```
pub fn conv2d_stem(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    super::assert_channels(conv, &x);
    match im2col_padding(conv) {
        Some(padding) => conv2d_im2col(conv, x, padding),
        None => conv.forward(x),
    }
}

/// The symmetric padding `[vertical, horizontal]` when `conv` qualifies for
/// the im2col path.
fn im2col_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    let [_, in_channels, kh, kw] = conv.weight.dims();
    let simple = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    if !simple || in_channels * kh * kw > IM2COL_MAX_PATCH {
        return None;
    }
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Same if kh % 2 == 1 && kw % 2 == 1 => Some([(kh - 1) / 2, (kw - 1) / 2]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// Stride-1 convolution as shifted slices stacked into columns
/// `[batch, in·kh·kw, out_h·out_w]` and one matmul with the weight
/// `[out, in·kh·kw]`, so that autodiff's backward is two matmuls; for any
/// layer with stride 1, dilation 1 and one group (whatever its width), with
/// symmetric zero padding `[vertical, horizontal]`. [`conv2d_stem`] decides
/// when it pays; `examples/op_profile.rs` measures it at every width.
pub fn conv2d_im2col(conv: &Conv2d, x: Tensor<4>, [pad_h, pad_w]: [usize; 2]) -> Tensor<4> {
    super::assert_channels(conv, &x);
    let weight = conv.weight.val();
    let [out_channels, in_channels, kh, kw] = weight.dims();
    let [batch, _, height, width] = x.dims();
    let x = if pad_h + pad_w > 0 {
        x.pad((pad_w, pad_w, pad_h, pad_h), 0.0)
    } else {
        x
    };
    let (out_h, out_w) = (height + 2 * pad_h + 1 - kh, width + 2 * pad_w + 1 - kw);
    let mut patches = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            patches.push(
                x.clone()
                    .slice([0..batch, 0..in_channels, i..i + out_h, j..j + out_w]),
            );
        }
    }
    // [batch, in, kh·kw, out_h, out_w]: the weight's own (in, kh, kw) order.
    let columns: Tensor<5> = Tensor::stack(patches, 2);
    let patch = in_channels * kh * kw;
    let columns = columns.reshape([batch, patch, out_h * out_w]);
    let y = weight.reshape([1, out_channels, patch]).matmul(columns);
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out_channels, 1]),
        None => y,
    };
    y.reshape([batch, out_channels, out_h, out_w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn device() -> Device {
        Device::flex().autodiff()
    }

    /// Forward values and both gradients equal Burn's convolution.
    fn check_against_burn(config: Conv2dConfig, input: [usize; 4]) {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = device();
        let conv = config.init(&device);
        assert!(
            im2col_padding(&conv).is_some(),
            "the im2col path applies to {config:?}"
        );
        let x = Tensor::<4>::random(input, Distribution::Default, &device).require_grad();
        let target = |y: Tensor<4>| (y.clone() * y).sum();
        let ours = conv2d_stem(&conv, x.clone());
        let theirs = conv.forward(x.clone());
        let forward_diff: f32 = (ours.clone() - theirs.clone()).abs().max().into_scalar();
        assert!(forward_diff < 1e-4, "forward differs by {forward_diff}");
        let grads_ours = target(ours).backward();
        let grads_theirs = target(theirs).backward();
        let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
            let scale: f32 = b.clone().abs().max().into_scalar();
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "{what} gradient differs by {diff} (scale {scale})"
            );
        };
        close(
            x.grad(&grads_ours).unwrap(),
            x.grad(&grads_theirs).unwrap(),
            "input",
        );
        close(
            conv.weight.val().grad(&grads_ours).unwrap(),
            conv.weight.val().grad(&grads_theirs).unwrap(),
            "weight",
        );
    }

    #[test]
    fn same_padding_matches_burn_forward_and_gradients() {
        check_against_burn(
            Conv2dConfig::new([1, 8], [3, 3]).with_padding(PaddingConfig2d::Same),
            [3, 1, 10, 10],
        );
    }

    #[test]
    fn valid_padding_with_bias_and_three_channels_matches_burn() {
        check_against_burn(Conv2dConfig::new([3, 4], [3, 3]), [2, 3, 9, 7]);
    }

    #[test]
    fn explicit_padding_matches_burn() {
        check_against_burn(
            Conv2dConfig::new([1, 4], [5, 5]).with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
            [2, 1, 8, 8],
        );
    }

    #[test]
    fn wide_strided_or_grouped_layers_use_burns_convolution() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = device();
        let wide = Conv2dConfig::new([16, 16], [3, 3]).init(&device);
        let strided = Conv2dConfig::new([1, 4], [3, 3])
            .with_stride([2, 2])
            .init(&device);
        let asymmetric = Conv2dConfig::new([1, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 0, 1))
            .init(&device);
        for conv in [wide, strided, asymmetric] {
            assert_eq!(im2col_padding(&conv), None, "{conv:?}");
        }
    }
}
