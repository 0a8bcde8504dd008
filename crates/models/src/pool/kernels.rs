//! Max pooling over non-overlapping windows (window = stride, no padding,
//! no dilation: the `MaxPool2dConfig::new([k, k])` of every network here)
//! and its gradient, on plain `f32` slices, one plane (one channel of one
//! sample) per task.
//!
//! Layouts are Burn's: the input `[batch, channels, height, width]` and the
//! output `[batch, channels, height / window_h, width / window_w]` (rows and
//! columns past the last whole window are dropped, as with Burn's floor
//! rounding), contiguous and row-major.
//!
//! Invariants:
//! * **Burn's choice of maximum**: the first largest value in row-major
//!   window order, and a NaN wins (the last NaN), as in flex's
//!   `max_pool2d_with_indices`; so the gradient goes to the same input
//!   position as with Burn's pooling.
//! * **The maximum is chosen once.** A training forward
//!   ([`forward_with_codes`]) keeps, per window, the position of its
//!   maximum in one byte; the gradient is routed by those codes and never
//!   reads the input again (a quarter of the bytes of the output instead of
//!   the four input values per window, which have left the cache by then).
//! * **The gradient never reads its own buffer before writing it.** Each
//!   plane is zeroed by its task ([`crate::buffers`]), then each window's
//!   maximum gets the output's gradient. Flex's backward adds the gradients into a zeroed buffer; a fresh zeroed
//!   allocation is a range of not-yet-touched pages, the first read of each
//!   maps the kernel's shared zero page, and the write after it then costs a
//!   copy-on-write fault with a TLB flush on every core. On `simple_cnn`
//!   that was a quarter of the training step (docs/benchmarks.md §6).
//! * **Deterministic**: planes are independent and nothing is summed across
//!   threads.
//! * **Both cores work**: planes are spread over rayon's pool (flex's own).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::par_build;
use crate::wide::wide;
use crate::window_max::{deinterleave, pool_windows};

/// Planes per rayon task at least: a plane of a 2×2 pooling over 24×24 is
/// 576 values, too little work to be worth a task on its own.
const MIN_PLANES_PER_TASK: usize = 8;

/// The shape of one pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Planes: `batch · channels`.
    pub planes: usize,
    /// Input `[height, width]`.
    pub input: [usize; 2],
    /// Window (and stride) `[height, width]`.
    pub window: [usize; 2],
}

impl PoolGeometry {
    /// Output `[height, width]`: whole windows only.
    pub fn output(&self) -> [usize; 2] {
        [
            self.input[0] / self.window[0],
            self.input[1] / self.window[1],
        ]
    }

    /// Whether at least one whole window fits.
    pub fn is_valid(&self) -> bool {
        (0..2).all(|d| self.window[d] > 0 && self.input[d] >= self.window[d])
    }

    /// Values of one input plane.
    pub fn input_plane(&self) -> usize {
        self.input[0] * self.input[1]
    }

    /// Values of one output plane.
    pub fn output_plane(&self) -> usize {
        let [h, w] = self.output();
        h * w
    }

    /// Pools one plane into `out` (`out_h · out_w` values).
    ///
    /// Row by row: first the maximum down each column of the band of
    /// `window_h` input rows (contiguous, so it vectorises), then across
    /// each window's `window_w` columns.
    fn pool_plane(&self, plane: &[f32], out: &mut [f32], column_max: &mut [f32]) {
        let [wh, ww] = self.window;
        let [_, out_w] = self.output();
        let (width, span) = (self.input[1], out_w * ww);
        for (oh, out_row) in out.chunks_exact_mut(out_w).enumerate() {
            let band = &plane[oh * wh * width..];
            column_max.copy_from_slice(&band[..span]);
            for i in 1..wh {
                for (m, &v) in column_max
                    .iter_mut()
                    .zip(&band[i * width..i * width + span])
                {
                    *m = nan_max(*m, v);
                }
            }
            for (o, window) in out_row.iter_mut().zip(column_max.chunks_exact(ww)) {
                *o = window
                    .iter()
                    .copied()
                    .reduce(nan_max)
                    .expect("window_w > 0");
            }
        }
    }

    /// Input plane `p` of `x`.
    fn plane<'a>(&self, x: &'a [f32], p: usize) -> &'a [f32] {
        &x[p * self.input_plane()..(p + 1) * self.input_plane()]
    }

    /// Pools one plane into `out` and writes, for each window, the
    /// position of its maximum in `codes` ([`forward_with_codes`]);
    /// `offsets` are [`Self::code_offsets`], `scratch` is for 2×2 windows.
    /// Writes every value of `out`.
    fn choose_plane(
        &self,
        plane: &[f32],
        out: &mut [MaybeUninit<f32>],
        codes: &mut [u8],
        offsets: &[usize],
        scratch: &mut Vec<f32>,
    ) {
        if self.window == [2, 2] {
            return choose_plane_2x2(self, plane, out, codes, scratch);
        }
        let [wh, ww] = self.window;
        let [_, out_w] = self.output();
        let width = self.input[1];
        for (w, (o, code)) in out.iter_mut().zip(codes.iter_mut()).enumerate() {
            let (oh, ow) = (w / out_w, w % out_w);
            let corner = oh * wh * width + ow * ww;
            let (mut max, mut at) = (plane[corner], 0);
            for (k, &offset) in offsets.iter().enumerate().skip(1) {
                let value = plane[corner + offset];
                if value > max || value.is_nan() {
                    (max, at) = (value, k);
                }
            }
            o.write(max);
            *code = at as u8;
        }
    }

    /// Each code's offset from its window's first value in a plane:
    /// `row · width + column`.
    fn code_offsets(&self) -> Vec<usize> {
        let [wh, ww] = self.window;
        (0..wh * ww)
            .map(|k| (k / ww) * self.input[1] + k % ww)
            .collect()
    }

    /// Writes one plane's output gradient `dy` at each window's maximum in
    /// `dx`, which comes zeroed; `offsets` are [`Self::code_offsets`].
    /// With `relu_output` (the pooled values of a ReLU's output), only
    /// where that is positive or NaN: the ReLU's gradient, gated on the way.
    fn route_plane(
        &self,
        codes: &[u8],
        dy: &[f32],
        relu_output: Option<&[f32]>,
        dx: &mut [f32],
        offsets: &[usize],
    ) {
        let [wh, ww] = self.window;
        let out_w = self.output()[1];
        let rows = codes.chunks_exact(out_w).zip(dy.chunks_exact(out_w));
        for (oh, (codes, dy)) in rows.enumerate() {
            let band = oh * wh * self.input[1];
            for (ow, (&code, &grad)) in codes.iter().zip(dy).enumerate() {
                let passes = relu_output.is_none_or(|y| {
                    let y = y[oh * out_w + ow];
                    y.is_nan() || y > 0.0
                });
                if passes {
                    dx[band + ow * ww + offsets[usize::from(code)]] = grad;
                }
            }
        }
    }
}

/// The larger of `a` and `b`, NaN if either is (Burn's pooling lets a NaN
/// win).
fn nan_max(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// The pooled output of `x`.
///
/// # Panics
///
/// Panics if `x` does not hold `planes` input planes.
pub fn forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.planes * g.input_plane(), "input length");
    let span = g.output()[1] * g.window[1];
    par_build(
        g.planes * g.output_plane(),
        g.output_plane(),
        MIN_PLANES_PER_TASK,
        || vec![0.0; span],
        |p, out, column_max| g.pool_plane(g.plane(x, p), out, column_max),
    )
}

/// Whether a window's positions fit the `u8` codes of
/// [`forward_with_codes`] (at most 256 values per window).
pub fn codes_fit(g: &PoolGeometry) -> bool {
    g.window[0] * g.window[1] <= 256
}

wide!(choose_plane_2x2 => choose_plane_2x2_body(
    g: &PoolGeometry, plane: &[f32], out: &mut [MaybeUninit<f32>], codes: &mut [u8],
    scratch: &mut Vec<f32>,
));

/// [`PoolGeometry::choose_plane`] for 2×2 windows (every network here): the
/// plane's windows' four corners gathered into four runs of `out_h · out_w`
/// values (even and odd columns of the even and odd rows), then
/// [`pool_windows`] over the whole plane at once, which vectorises (rows of
/// 7 or 14 windows, one at a time, did not).
#[inline(always)]
fn choose_plane_2x2_body(
    g: &PoolGeometry,
    plane: &[f32],
    out: &mut [MaybeUninit<f32>],
    codes: &mut [u8],
    scratch: &mut Vec<f32>,
) {
    let width = g.input[1];
    let [out_h, out_w] = g.output();
    let n = out_h * out_w;
    scratch.resize(4 * n, 0.0);
    let (top, bottom) = scratch.split_at_mut(2 * n);
    let ((top_even, top_odd), (bottom_even, bottom_odd)) =
        (top.split_at_mut(n), bottom.split_at_mut(n));
    for oh in 0..out_h {
        let rows = &plane[2 * oh * width..][..width + 2 * out_w];
        let at = oh * out_w;
        deinterleave(&rows[..2 * out_w], &mut top_even[at..], &mut top_odd[at..]);
        deinterleave(
            &rows[width..][..2 * out_w],
            &mut bottom_even[at..],
            &mut bottom_odd[at..],
        );
    }
    pool_windows([top_even, top_odd, bottom_even, bottom_odd], out, codes);
}

/// The pooled output of `x` and, per output value, the position of the
/// maximum it took inside its window (row-major, `row · window_w +
/// column`): what [`backward`] routes the gradient by, so that it does not
/// read `x` again.
///
/// # Panics
///
/// Panics if `x` does not hold `planes` input planes or the window does
/// not fit the codes ([`codes_fit`]).
pub fn forward_with_codes(g: &PoolGeometry, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    assert_eq!(x.len(), g.planes * g.input_plane(), "input length");
    assert!(codes_fit(g), "a window of at most 256 values");
    let len = g.planes * g.output_plane();
    let (mut out, mut codes) = (Vec::with_capacity(len), vec![0; len]);
    let (chunk, offsets) = (g.output_plane().max(1), g.code_offsets());
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .zip(codes.par_chunks_mut(chunk))
        .enumerate()
        .with_min_len(MIN_PLANES_PER_TASK)
        .for_each_init(Vec::new, |scratch, (p, (out, codes))| {
            g.choose_plane(g.plane(x, p), out, codes, &offsets, scratch)
        });
    // SAFETY: the chunks cover `out[..len]`, one output plane each, and
    // `choose_plane` writes every value of its plane.
    unsafe { out.set_len(len) };
    (out, codes)
}

/// The gradient of the input from the output's gradient, each value
/// written at the position [`forward_with_codes`] chose; the rest is zero.
///
/// # Panics
///
/// Panics if `codes` or `output_grad` does not hold `planes` output planes.
pub fn backward(g: &PoolGeometry, codes: &[u8], output_grad: &[f32]) -> Vec<f32> {
    routed(g, codes, output_grad, None)
}

/// The gradient of a ReLU's input from the gradient of its pooled output
/// (`relu(y)` then this pooling, whose output is `relu_output`): as
/// [`backward`], where the pooled value is positive or NaN (flex's
/// `relu_backward`), and zero elsewhere. The same values as [`backward`]
/// followed by the ReLU's gradient, since the maximum of a window of a
/// ReLU's output is where the gradient would be gated.
///
/// # Panics
///
/// Panics if `codes`, `relu_output` or `output_grad` does not hold
/// `planes` output planes.
pub fn backward_through_relu(
    g: &PoolGeometry,
    codes: &[u8],
    relu_output: &[f32],
    output_grad: &[f32],
) -> Vec<f32> {
    assert_eq!(relu_output.len(), codes.len(), "pooled output length");
    routed(g, codes, output_grad, Some(relu_output))
}

/// [`backward`], gated by `relu_output` when there is one.
fn routed(
    g: &PoolGeometry,
    codes: &[u8],
    output_grad: &[f32],
    relu_output: Option<&[f32]>,
) -> Vec<f32> {
    let len = g.planes * g.output_plane();
    assert_eq!(codes.len(), len, "codes length");
    assert_eq!(output_grad.len(), len, "output gradient length");
    let (plane, offsets) = (g.output_plane(), g.code_offsets());
    par_build(
        g.planes * g.input_plane(),
        g.input_plane(),
        MIN_PLANES_PER_TASK,
        || (),
        |p, dx, ()| {
            let span = p * plane..(p + 1) * plane;
            let gate = relu_output.map(|y| &y[span.clone()]);
            g.route_plane(&codes[span.clone()], &output_grad[span], gate, dx, &offsets)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(planes: usize, input: [usize; 2], window: [usize; 2]) -> PoolGeometry {
        PoolGeometry {
            planes,
            input,
            window,
        }
    }

    #[test]
    fn forward_takes_each_windows_maximum_and_drops_partial_windows() {
        // One 3×5 plane, 2×2 windows: two whole windows, the last row and
        // column are dropped.
        let x = [
            1.0, 5.0, 2.0, 0.0, 9.0, //
            3.0, 4.0, 7.0, 6.0, 9.0, //
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let g = geometry(1, [3, 5], [2, 2]);
        assert_eq!(g.output(), [1, 2]);
        assert_eq!(forward(&g, &x), vec![5.0, 7.0]);
    }

    #[test]
    fn gradient_goes_to_the_first_maximum_and_nan_wins() {
        let g = geometry(2, [2, 2], [2, 2]);
        let x = [
            4.0,
            1.0,
            4.0,
            4.0, // tie: the first 4 takes it
            1.0,
            f32::NAN,
            3.0,
            f32::NAN, // the last NaN takes it
        ];
        let (out, codes) = forward_with_codes(&g, &x);
        assert_eq!(out[0], 4.0);
        assert!(out[1].is_nan());
        assert_eq!(codes, [0, 3]);
        assert_eq!(
            backward(&g, &codes, &[10.0, 20.0]),
            vec![10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0]
        );
    }

    #[test]
    fn each_window_routes_its_gradient_to_its_maximum_and_the_rest_is_zero() {
        let g = geometry(3, [5, 4], [2, 2]);
        let x: Vec<f32> = (0..60).map(|i| ((i * 37) % 11) as f32).collect();
        let dy: Vec<f32> = (1..=3 * g.output_plane()).map(|i| i as f32).collect();
        let (y, codes) = forward_with_codes(&g, &x);
        assert_eq!(y, forward(&g, &x), "the same output with and without codes");
        let dx = backward(&g, &codes, &dy);
        for (((plane, grads), dy), y) in x
            .chunks(20)
            .zip(dx.chunks(20))
            .zip(dy.chunks(4))
            .zip(y.chunks(4))
        {
            assert!(grads[16..].iter().all(|&v| v == 0.0), "the partial row");
            for (oh, ow) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let window = [0, 1, 4, 5].map(|k| (oh * 2) * 4 + ow * 2 + k);
                let routed: Vec<usize> = window.into_iter().filter(|&k| grads[k] != 0.0).collect();
                assert_eq!(routed.len(), 1, "one position per window");
                assert_eq!(grads[routed[0]], dy[oh * 2 + ow]);
                assert_eq!(plane[routed[0]], y[oh * 2 + ow]);
            }
        }
    }

    #[test]
    fn a_window_larger_than_the_input_is_invalid() {
        assert!(!geometry(1, [1, 4], [2, 2]).is_valid());
        assert!(!geometry(1, [4, 4], [0, 2]).is_valid());
        assert!(geometry(1, [2, 2], [2, 2]).is_valid());
    }
}
