//! The input gradient of a 3×3, stride-1 convolution whose output went
//! through a ReLU and a 2 × 2 max pooling ([`ThroughPool`]), summed
//! directly over the outputs that have a gradient, as
//! [`super::window_weight_grad`] sums the weight gradient.
//!
//! Why: at most one output in each window has a gradient, and Winograd's
//! input gradient (the output gradient's transform, 16 gemms and the
//! scatter back) works on every tile: with the output gradient's transform
//! it needs, ≈ 20% of a `simple_cnn` step in `perf`. Here each sample's
//! gradients are first sorted by output position (a bucket per position,
//! filled without a branch on the data); then for each output position
//! the nine taps' sums `Σ_(o, g) g · W[o][·][tap]` over its gradients,
//! 16 channels at a time in registers, from the filters laid out channels
//! last, are added into the padded input gradient (channels last) at the
//! positions the taps read; each input row is then copied out channels
//! first, in 8 × 8 blocks transposed in registers.
//!
//! Invariants:
//! * **A direct convolution's input gradient, within float rounding**:
//!   every output whose gradient is not zero is summed, and a zero one adds
//!   nothing, unless a weight is not finite (`0 × ∞` is NaN): the caller
//!   then takes Winograd's input gradient instead ([`filters_are_finite`]).
//! * **Every value of a sample's `dx` is written**, once, in a fixed order,
//!   so the result does not depend on the number of threads.
//! * As in [`super::window_weight_grad`], fused multiply-adds where the CPU
//!   has them.

use std::mem::MaybeUninit;

use super::geometry::Geometry;
use super::window_weight_grad::{CHANNEL_BLOCK, TAPS, ThroughPool, padded_channels, padded_input};

/// The filters `[out, in, 3, 3]` laid out `[out][3 × 3][padded in]`, the
/// padded channels zero.
pub(super) fn channels_last_filters(g: &Geometry, weight: &[f32]) -> Vec<f32> {
    let (cin, column) = (g.in_channels, padded_channels(g));
    let mut filters = vec![0.0; g.out_channels * TAPS * column];
    for (o, taps) in filters.chunks_exact_mut(TAPS * column).enumerate() {
        for (c, values) in weight[o * cin * TAPS..][..cin * TAPS]
            .chunks_exact(TAPS)
            .enumerate()
        {
            for (tap, &value) in values.iter().enumerate() {
                taps[tap * column + c] = value;
            }
        }
    }
    filters
}

/// Whether every weight is finite: if one is not, the direct sum has NaNs
/// where a zero gradient meets it, which summing only the gradients that
/// are not zero would miss.
pub(super) fn filters_are_finite(weight: &[f32]) -> bool {
    // An or over every value, not an early exit, so that it vectorises.
    !weight.iter().fold(false, |any, v| any | !v.is_finite())
}

/// One task's buffers: per output position, how many gradients it has and
/// which (`(output channel, gradient)`, room for every channel and one
/// spare).
pub(super) struct InputGradScratch {
    counts: Vec<usize>,
    entries: Vec<(usize, f32)>,
    /// The sample's padded input gradient, channels last
    /// (`[padded h][padded w][padded in]`).
    padded: Vec<f32>,
}

impl InputGradScratch {
    /// Buffers for the convolution `g`.
    pub(super) fn new(g: &Geometry) -> Self {
        let [oh, ow] = g.output();
        Self {
            counts: vec![0; oh * ow],
            entries: vec![(0, 0.0); oh * ow * (g.out_channels + 1)],
            padded: vec![
                0.0;
                {
                    let [h, w] = padded_input(g);
                    h * w * padded_channels(g)
                }
            ],
        }
    }
}

/// Sample `n`'s input gradient `[in, h, w]` into `dx` (every value
/// written), from the output gradient `dy` through the pooling and
/// `filters` ([`channels_last_filters`]).
pub(super) fn input_grad_of_sample(
    g: &Geometry,
    filters: &[f32],
    dy: ThroughPool,
    n: usize,
    s: &mut InputGradScratch,
    dx: &mut [MaybeUninit<f32>],
) {
    sort_by_position(g, dy, n, s);
    gather(g, filters, s, dx);
}

/// Fills `s` with sample `n`'s gradients by output position, each
/// position's in the order of the output channels.
fn sort_by_position(g: &Geometry, dy: ThroughPool, n: usize, s: &mut InputGradScratch) {
    let ThroughPool {
        grad,
        pooled,
        codes,
    } = dy;
    let [oh, ow] = g.output();
    let (ph, pw) = (oh / 2, ow / 2);
    let room = g.out_channels + 1;
    s.counts.fill(0);
    for o in 0..g.out_channels {
        let first = (n * g.out_channels + o) * ph * pw;
        for a in 0..ph {
            for b in 0..pw {
                let k = first + a * pw + b;
                let (value, gradient) = (pooled[k], grad[k]);
                let passed = value.is_nan() | (value > 0.0);
                let code = usize::from(codes[k]);
                let q = (2 * a + code / 2) * ow + 2 * b + code % 2;
                // Written at the position's count, which moves on only
                // for a gradient kept: no branch on the data.
                s.entries[q * room + s.counts[q]] = (o, gradient);
                s.counts[q] += usize::from(passed & (gradient != 0.0));
            }
        }
    }
}

/// `dx[c][r][col]` for every input position: each output position's
/// nine taps' sums over its gradients, added into the padded input
/// gradient (channels last), then its own positions copied out; compiled
/// for the widest vectors the CPU has.
fn gather(g: &Geometry, filters: &[f32], s: &mut InputGradScratch, dx: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("fma") {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512(
                g: &Geometry,
                filters: &[f32],
                s: &mut InputGradScratch,
                dx: &mut [MaybeUninit<f32>],
            ) {
                gather_body::<16, true>(g, filters, s, dx);
            }
            // SAFETY: the CPU has AVX-512F and FMA.
            return unsafe { avx512(g, filters, s, dx) };
        }
        if has!("avx2") && has!("fma") {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(
                g: &Geometry,
                filters: &[f32],
                s: &mut InputGradScratch,
                dx: &mut [MaybeUninit<f32>],
            ) {
                gather_body::<8, true>(g, filters, s, dx);
            }
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(g, filters, s, dx) };
        }
    }
    gather_body::<4, false>(g, filters, s, dx);
}

/// [`gather`] with `L` channels at a time (the vector width), the nine
/// taps' sums held in registers over an output position's gradients;
/// fused multiply-adds when `FUSED`.
#[inline(always)]
fn gather_body<const L: usize, const FUSED: bool>(
    g: &Geometry,
    filters: &[f32],
    s: &mut InputGradScratch,
    dx: &mut [MaybeUninit<f32>],
) {
    const { assert!(CHANNEL_BLOCK.is_multiple_of(L)) };
    let [h, w] = g.input;
    let [oh, ow] = g.output();
    let wide = padded_input(g)[1];
    let [(top, _), (left, _)] = g.padding;
    let (cin, column) = (g.in_channels, padded_channels(g));
    let room = g.out_channels + 1;
    let InputGradScratch {
        counts,
        entries,
        padded,
    } = s;
    padded.fill(0.0);
    for (q, &count) in counts.iter().enumerate().take(oh * ow) {
        let entries = &entries[q * room..][..count];
        if entries.is_empty() {
            continue;
        }
        let (y, x) = (q / ow, q % ow);
        for c0 in (0..cin).step_by(L) {
            let mut sums = [[0.0f32; L]; TAPS];
            for &(o, gradient) in entries {
                let taps = &filters[o * TAPS * column + c0..][..(TAPS - 1) * column + L];
                for (tap, sum) in sums.iter_mut().enumerate() {
                    let weights: &[f32; L] =
                        taps[tap * column..][..L].try_into().expect("L weights");
                    add_product::<L, FUSED>(sum, gradient, weights);
                }
            }
            for kh in 0..3 {
                for kw in 0..3 {
                    let at = ((y + kh) * wide + x + kw) * column + c0;
                    let totals: &mut [f32; L] =
                        (&mut padded[at..][..L]).try_into().expect("L values");
                    let sum = &sums[kh * 3 + kw];
                    for lane in 0..L {
                        totals[lane] += sum[lane];
                    }
                }
            }
        }
    }
    for r in 0..h {
        let from = &padded[((top + r) * wide + left) * column..][..w * column];
        copy_out_row(from, column, [cin, h * w], &mut dx[r * w..]);
    }
}

/// `dx[c · plane + col] = row[col · column + c]` for `c < channels` and
/// `col < row.len() / column`: one input row's gradient from channels last
/// to channels first, in 8 × 8 blocks transposed in registers where the
/// CPU has AVX (one load and one store per 8 values rather than one per
/// value), the rest one value at a time.
fn copy_out_row(
    row: &[f32],
    column: usize,
    [channels, plane]: [usize; 2],
    dx: &mut [MaybeUninit<f32>],
) {
    let width = row.len() / column;
    let mut blocked = [0, 0];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        blocked = [width / 8 * 8, channels / 8 * 8];
        for c0 in (0..blocked[1]).step_by(8) {
            for col0 in (0..blocked[0]).step_by(8) {
                assert!((col0 + 7) * column + c0 + 8 <= row.len());
                assert!((c0 + 7) * plane + col0 + 8 <= dx.len());
                // SAFETY: the CPU has AVX, and the 8 rows read and the 8
                // written are in bounds (checked above).
                unsafe {
                    transpose_8x8(
                        row.as_ptr().add(col0 * column + c0),
                        column,
                        dx.as_mut_ptr().add(c0 * plane + col0).cast(),
                        plane,
                    )
                };
            }
        }
    }
    for c in 0..channels {
        let cols = if c < blocked[1] { blocked[0] } else { 0 };
        for col in cols..width {
            dx[c * plane + col] = MaybeUninit::new(row[col * column + c]);
        }
    }
}

/// `to[j · to_stride + i] = from[i · from_stride + j]` for `i, j < 8`.
///
/// # Safety
///
/// The CPU has AVX; the 8 runs of 8 values read and written are in
/// bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(from: *const f32, from_stride: usize, to: *mut f32, to_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's bounds.
    let r: [__m256; 8] =
        std::array::from_fn(|i| unsafe { _mm256_loadu_ps(from.add(i * from_stride)) });
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    let out = [
        _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ];
    for (j, value) in out.into_iter().enumerate() {
        // SAFETY: the caller's bounds.
        unsafe { _mm256_storeu_ps(to.add(j * to_stride), value) };
    }
}

/// `sum += gradient · weights`, lane by lane; fused multiply-adds when
/// `FUSED`.
#[inline(always)]
fn add_product<const L: usize, const FUSED: bool>(
    sum: &mut [f32; L],
    gradient: f32,
    weights: &[f32; L],
) {
    for (sum, &weight) in sum.iter_mut().zip(weights) {
        *sum = if FUSED {
            gradient.mul_add(weight, *sum)
        } else {
            *sum + gradient * weight
        };
    }
}
