//! The weight gradient of a 3×3, stride-1 convolution whose output went
//! through a ReLU and a 2 × 2 max pooling ([`ThroughPool`],
//! `simple_cnn`'s second convolution), summed directly over the positions
//! that have a gradient.
//!
//! Why: through the pooling, at most one output in each 2 × 2 window has a
//! gradient (its maximum, where the ReLU passed it), and the dropout after
//! the pooling zeroes a share of those. Winograd's weight gradient still
//! multiplies every tile in 16 gemms per sample: with its input transform,
//! ≈ 19% of a `simple_cnn` step in `perf`. Here `dW[o][·][kh][kw] += g ·
//! x[·][y + kh][x + kw]` runs only for the windows whose gradient `g` is
//! not zero, over a channels-last copy of the sample's padded input, so
//! each tap is a run of contiguous channels: 9 vector products per window
//! and 16 channels, kept in registers over all of an output channel's
//! windows.
//!
//! Invariants:
//! * **A direct convolution's weight gradient, within float rounding**:
//!   every position whose gradient is not zero is summed, and a zero one
//!   adds nothing, except where the input is not finite (`0 × ∞` is NaN):
//!   a sample whose input has such a value is summed over every output
//!   position, zeros included, as the direct sum does.
//! * **Deterministic whatever the number of threads**: one sample's sum
//!   runs over the output channels and their windows in a fixed order, into
//!   a fresh sum that is then added to the caller's total; the caller adds
//!   the samples of a chunk in order, then the chunks in order.
//! * **Fused multiply-adds where the CPU has them** (AVX-512 or AVX2, with
//!   FMA, as `gemm`'s kernels use them), a product then a sum elsewhere:
//!   the last bits may differ between such CPUs, as `gemm`'s do, never
//!   between runs on one.

use super::geometry::Geometry;
use super::transpose::transpose;

/// Channels per run of a tap in the channels-last copy: the copy's channel
/// count is padded up to a multiple of this, with zeros.
const CHANNEL_BLOCK: usize = 16;

/// Taps of a 3 × 3 filter.
const TAPS: usize = 9;

/// An output gradient through a ReLU and a 2 × 2 pooling of stride 2, per
/// pooled value of the batch (`[batch, out_channels, oh / 2, ow / 2]`
/// each), as `winograd::OutputGrad::ThroughReluPool` holds it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ThroughPool<'a> {
    /// The pooled output's gradient.
    pub grad: &'a [f32],
    /// The pooled output (the ReLU passed nothing where it is not positive,
    /// nor NaN).
    pub pooled: &'a [f32],
    /// Where each window's maximum is (row-major, 0–3).
    pub codes: &'a [u8],
}

/// One task's buffers: the sample's padded input, channels last, and the
/// positions and gradients of one output channel's windows.
pub(super) struct WindowScratch {
    /// `[padded h][padded w][channels]` (channels padded to
    /// [`CHANNEL_BLOCK`]); the padding and the padded channels are zero
    /// from [`WindowScratch::new`] and never written.
    channels_last: Vec<f32>,
    /// `(where the window's tap (0, 0) starts in `channels_last`, its
    /// gradient)` of the output channel being summed.
    windows: Vec<(usize, f32)>,
}

impl WindowScratch {
    /// Buffers for the convolution `g`.
    pub(super) fn new(g: &Geometry) -> Self {
        let [h, w] = padded_input(g);
        Self {
            channels_last: vec![0.0; h * w * padded_channels(g)],
            windows: Vec::new(),
        }
    }
}

/// The input's height and width with the padding.
fn padded_input(g: &Geometry) -> [usize; 2] {
    let [(top, bottom), (left, right)] = g.padding;
    [g.input[0] + top + bottom, g.input[1] + left + right]
}

/// The input channels, padded up to a multiple of [`CHANNEL_BLOCK`].
fn padded_channels(g: &Geometry) -> usize {
    g.in_channels.next_multiple_of(CHANNEL_BLOCK)
}

/// Length of the sum [`add_weight_grad_of_sample`] adds into:
/// `[out_channels][3 × 3][padded in_channels]`.
pub(super) fn sum_len(g: &Geometry) -> usize {
    g.out_channels * TAPS * padded_channels(g)
}

/// Adds sample `n`'s weight gradient into `sum` (`[out][3 × 3][padded
/// in]`, see [`sum_len`]), from its input `x` (`[in, h, w]`) and the
/// output gradient `dy`, `dense` being the sample's dense output gradient
/// (read only when `x` has a value that is not finite).
pub(super) fn add_weight_grad_of_sample(
    g: &Geometry,
    x: &[f32],
    dy: ThroughPool,
    n: usize,
    dense: &[f32],
    s: &mut WindowScratch,
    sum: &mut [f32],
) {
    let ThroughPool {
        grad,
        pooled,
        codes,
    } = dy;
    fill_channels_last(g, x, &mut s.channels_last);
    // An or over every value, not an early exit, so that it vectorises.
    let finite = !x.iter().fold(false, |any, v| any | !v.is_finite());
    let [oh, ow] = g.output();
    let (ph, pw) = (oh / 2, ow / 2);
    let row = padded_input(g)[1] * padded_channels(g);
    let column = padded_channels(g);
    for o in 0..g.out_channels {
        let windows = if finite {
            // Every window written at `kept`, which moves on only for those
            // kept: no branch on the data, which would mispredict often.
            s.windows.resize(ph * pw + 1, (0, 0.0));
            let mut kept = 0;
            let first = (n * g.out_channels + o) * ph * pw;
            for a in 0..ph {
                for b in 0..pw {
                    let k = first + a * pw + b;
                    let (value, gradient) = (pooled[k], grad[k]);
                    let passed = value.is_nan() | (value > 0.0);
                    let code = usize::from(codes[k]);
                    let (y, x) = (2 * a + code / 2, 2 * b + code % 2);
                    s.windows[kept] = (y * row + x * column, gradient);
                    kept += usize::from(passed & (gradient != 0.0));
                }
            }
            &s.windows[..kept]
        } else {
            s.windows.clear();
            let plane = &dense[o * oh * ow..][..oh * ow];
            for (y, values) in plane.chunks_exact(ow).enumerate() {
                for (x, &value) in values.iter().enumerate() {
                    s.windows.push((y * row + x * column, value));
                }
            }
            &s.windows[..]
        };
        let out = &mut sum[o * TAPS * column..][..TAPS * column];
        add_windows(&s.channels_last, [row, column], windows, out);
    }
}

/// `channels_last[(top + r) · w' + left + c][ch] = x[ch][r][c]`: the
/// sample's own positions; the padding is left as it is (zero).
fn fill_channels_last(g: &Geometry, x: &[f32], channels_last: &mut [f32]) {
    let [h, w] = g.input;
    let [(top, _), (left, _)] = g.padding;
    let wide = padded_input(g)[1];
    let column = padded_channels(g);
    let channels = g.in_channels;
    for r in 0..h {
        let row = &mut channels_last[((top + r) * wide + left) * column..][..w * column];
        transpose(&x[r * w..], h * w, [channels, w], row, column);
    }
}

/// `out[tap][c] += Σ_windows g · x[at + tap's offset + c]`, one block of
/// [`CHANNEL_BLOCK`] channels at a time, compiled for the widest vectors
/// the CPU has.
fn add_windows(x: &[f32], strides: [usize; 2], windows: &[(usize, f32)], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512(x: &[f32], strides: [usize; 2], windows: &[(usize, f32)], out: &mut [f32]) {
                add_windows_body::<16, true>(x, strides, windows, out);
            }
            // SAFETY: the CPU has AVX-512F and FMA.
            return unsafe { avx512(x, strides, windows, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(x: &[f32], strides: [usize; 2], windows: &[(usize, f32)], out: &mut [f32]) {
                add_windows_body::<8, true>(x, strides, windows, out);
            }
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(x, strides, windows, out) };
        }
    }
    add_windows_body::<4, false>(x, strides, windows, out);
}

/// [`add_windows`] with `L` channels at a time (the vector width), the
/// nine taps' sums of them held in registers over all the windows; fused
/// multiply-adds when `FUSED`.
#[inline(always)]
fn add_windows_body<const L: usize, const FUSED: bool>(
    x: &[f32],
    [row, column]: [usize; 2],
    windows: &[(usize, f32)],
    out: &mut [f32],
) {
    let reach = 2 * row + 2 * column;
    for c0 in (0..column).step_by(L) {
        let mut sums = [[0.0f32; L]; TAPS];
        for &(at, g) in windows {
            let patch = &x[at + c0..][..reach + L];
            for (tap, sums) in sums.iter_mut().enumerate() {
                let offset = (tap / 3) * row + (tap % 3) * column;
                let values: &[f32; L] = patch[offset..][..L].try_into().expect("L values");
                for (sum, &value) in sums.iter_mut().zip(values) {
                    *sum = if FUSED {
                        g.mul_add(value, *sum)
                    } else {
                        *sum + g * value
                    };
                }
            }
        }
        for (tap, sums) in sums.iter().enumerate() {
            for (total, sum) in out[tap * column + c0..][..L].iter_mut().zip(sums) {
                *total += sum;
            }
        }
    }
}

/// The weight gradient `[out, in, 3, 3]` from the chunks' sums (each
/// [`sum_len`] long), added in chunk order.
pub(super) fn weight_grad_from_partials(g: &Geometry, partials: Vec<Vec<f32>>) -> Vec<f32> {
    let total = super::gemm::sum_in_order(partials, sum_len(g));
    let (cin, column) = (g.in_channels, padded_channels(g));
    let mut dw = vec![0.0; g.out_channels * cin * TAPS];
    for (o, filters) in dw.chunks_exact_mut(cin * TAPS).enumerate() {
        for (c, taps) in filters.chunks_exact_mut(TAPS).enumerate() {
            for (tap, value) in taps.iter_mut().enumerate() {
                *value = total[(o * TAPS + tap) * column + c];
            }
        }
    }
    dw
}
