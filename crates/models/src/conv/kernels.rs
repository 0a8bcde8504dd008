//! The 2-D convolution and both its gradients on plain `f32` slices, as
//! im2col/col2im and gemm, one sample per task. The 3×3 stride-1
//! convolutions with enough channels ([`super::winograd::applies`]) take
//! Winograd's F(2×2, 3×3) instead, with 2.25× fewer multiplications
//! ([`super::winograd`]); [`forward`], [`input_grad`] and the weight
//! gradients choose.
//!
//! Layouts are Burn's: the input `[batch, in_channels, height, width]`, the
//! weight `[out_channels, in_channels, kernel_h, kernel_w]` and the output
//! `[batch, out_channels, out_h, out_w]`, all contiguous and row-major. A
//! sample's *columns* are the `[in_channels·kernel_h·kernel_w, out_h·out_w]`
//! matrix of the input values each output position sees (zero in the
//! padding), in the weight's own `(channel, row, column)` order, so that
//!
//! * forward: `y[n] = W · cols(x[n])`, with, as the [`Epilogue`] asks, the
//!   bias of each output channel (`[W | b] · [cols; 1]`: one more column of
//!   the weight against a row of ones, so the gemm adds it) and then clamped
//!   at zero (ReLU) in the same task while the sample is in cache;
//! * input gradient: `dx[n] = col2im(Wᵀ · dy[n])` (col2im adds each column
//!   entry back onto the input value it was copied from);
//! * weight gradient: `dW = Σₙ dy[n] · cols(x[n])ᵀ`, and the bias's, the
//!   row sums of `dy[n]`, in the same pass.
//!
//! Invariants:
//! * **Every result is deterministic.** Each gemm runs on one thread; the
//!   forward and the input gradient write disjoint samples; the weight
//!   gradient sums fixed chunks of [`WEIGHT_GRAD_CHUNK`] samples and then adds
//!   the chunks in order, so the result does not depend on how many threads
//!   rayon has.
//! * **Both cores work.** Samples are spread over rayon's pool (flex's own),
//!   and a task's column buffer is reused for all its samples.
//! * **Any stride, padding (also asymmetric) and dilation**; one group.
//! * **The epilogue is Burn's arithmetic**: the bias is the last term of
//!   each output's sum, as Burn adds it after the convolution; ReLU keeps a
//!   value when it is positive or NaN (flex's `relu`), and
//!   [`crate::relu::relu_gate`]
//!   passes a gradient where the output is (flex's `relu_backward`); the
//!   bias's gradient is summed in the weight's fixed chunks
//!   ([`weight_and_bias_grad`]).

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::buffers::{par_build, par_build_uninit};
use crate::relu::relu;

use super::gemm::{Operand, add_into, matmul, matmul_overwrite};
use super::geometry::add_bias_grad_of_sample;
pub use super::geometry::{Epilogue, Geometry, WEIGHT_GRAD_CHUNK};
use super::winograd;

impl Geometry {
    /// The input row that output row `oh` reads with kernel row `i`
    /// (negative or past the end: padding).
    fn input_row(&self, oh: usize, i: usize) -> isize {
        (oh * self.stride[0] + i * self.dilation[0]) as isize - self.padding[0].0 as isize
    }

    /// How far right of an output column kernel column `j` reads:
    /// `iw = ow·stride + shift` with `shift = j·dilation − left`.
    fn column_shift(&self, j: usize) -> isize {
        (j * self.dilation[1]) as isize - self.padding[1].0 as isize
    }

    /// With stride 1, the output columns `lo..hi` whose input column
    /// `ow + shift` lies inside a row of `width` values.
    fn unit_stride_span(shift: isize, width: usize, out_w: usize) -> (usize, usize) {
        let lo = (-shift).clamp(0, out_w as isize) as usize;
        let hi = (width as isize - shift).clamp(lo as isize, out_w as isize) as usize;
        (lo, hi)
    }
}

/// Copies sample `x` (`[in_channels, height, width]`) into `cols`
/// (`[patch, positions]`), zeros where the kernel reads padding.
pub fn im2col(g: &Geometry, x: &[f32], cols: &mut [f32]) {
    let [height, width] = g.input;
    let [out_h, out_w] = g.output();
    let [kh, kw] = g.kernel;
    let positions = out_h * out_w;
    for c in 0..g.in_channels {
        let channel = &x[c * height * width..][..height * width];
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut cols[((c * kh + i) * kw + j) * positions..][..positions];
                if Band::applies(g) {
                    copy_band(g, i, j, channel, row);
                    continue;
                }
                for oh in 0..out_h {
                    let dst = &mut row[oh * out_w..][..out_w];
                    let ih = g.input_row(oh, i);
                    if ih < 0 || ih >= height as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &channel[ih as usize * width..][..width];
                    copy_row(g, j, src, dst);
                }
            }
        }
    }
}

/// Adds `cols` (`[patch, positions]`) back onto sample `dx`
/// (`[in_channels, height, width]`): the adjoint of [`im2col`]. The values
/// of `cols` that the kernel read from padding are set to 0 on the way.
pub fn col2im(g: &Geometry, cols: &mut [f32], dx: &mut [f32]) {
    let [height, width] = g.input;
    let [out_h, out_w] = g.output();
    let [kh, kw] = g.kernel;
    let positions = out_h * out_w;
    for c in 0..g.in_channels {
        let channel = &mut dx[c * height * width..][..height * width];
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut cols[((c * kh + i) * kw + j) * positions..][..positions];
                if Band::applies(g) {
                    add_band(g, i, j, row, channel);
                    continue;
                }
                for oh in 0..out_h {
                    let src = &row[oh * out_w..][..out_w];
                    let ih = g.input_row(oh, i);
                    if ih < 0 || ih >= height as isize {
                        continue;
                    }
                    let dst = &mut channel[ih as usize * width..][..width];
                    scatter_row(g, j, src, dst);
                }
            }
        }
    }
}

/// Where one row of a sample's columns (kernel position `(i, j)`) meets
/// its channel's input plane, when the stride is 1 and the output rows are
/// as wide as the input's (`Same` padding, [`Band::applies`]): the output
/// rows that read inside the input then read one contiguous stretch of it,
/// at a fixed offset, so [`im2col`] copies it at once and [`col2im`] adds it
/// back at once, instead of a short `memcpy` (and two `memset` calls) or a
/// short loop per output row. Only the `|shift|` columns per row that read
/// the left or right padding need care.
struct Band {
    /// The band: the output positions of the rows that read inside the
    /// input (`start..end`, whole rows).
    rows: std::ops::Range<usize>,
    /// The positions of the band whose input index is inside the plane.
    inside: std::ops::Range<usize>,
    /// Position `p` reads the plane at `p + offset`.
    offset: isize,
    /// The columns of each row that read inside the input (`left..right`).
    columns: std::ops::Range<usize>,
}

impl Band {
    /// Whether the columns of `g` come in bands.
    fn applies(g: &Geometry) -> bool {
        g.stride == [1, 1] && g.output()[1] == g.input[1]
    }

    /// The band of kernel position `(i, j)`, or `None` when every output
    /// row reads padding.
    fn new(g: &Geometry, i: usize, j: usize) -> Option<Band> {
        let [height, width] = g.input;
        let [out_h, out_w] = g.output();
        let inside_rows = |oh: &usize| (0..height as isize).contains(&g.input_row(*oh, i));
        let first = (0..out_h).find(inside_rows)?;
        let last = (first..out_h)
            .take_while(inside_rows)
            .last()
            .unwrap_or(first);
        let shift = g.column_shift(j);
        let offset = g.input_row(first, i) * width as isize - (first * out_w) as isize + shift;
        let rows = first * out_w..(last + 1) * out_w;
        let plane = (height * width) as isize;
        let start = rows.start.max((-offset).max(0) as usize);
        let end = rows.end.min((plane - offset).max(0) as usize).max(start);
        let (left, right) = Geometry::unit_stride_span(shift, width, out_w);
        Some(Band {
            rows,
            inside: start..end,
            offset,
            columns: left..right,
        })
    }

    /// The plane's values read by [`Self::inside`].
    fn source(&self) -> std::ops::Range<usize> {
        (self.inside.start as isize + self.offset) as usize
            ..(self.inside.end as isize + self.offset) as usize
    }

    /// Sets to 0 the values of `row` in the band's padding columns (column
    /// by column: a strided store each, not a `memset` call per row).
    fn zero_padding_columns(&self, row: &mut [f32], out_w: usize) {
        for ow in (0..self.columns.start).chain(self.columns.end..out_w) {
            for value in row[self.rows.start + ow..self.rows.end]
                .iter_mut()
                .step_by(out_w)
            {
                *value = 0.0;
            }
        }
    }
}

/// [`im2col`]'s row of kernel position `(i, j)` of a channel `plane`, by
/// its [`Band`].
fn copy_band(g: &Geometry, i: usize, j: usize, plane: &[f32], row: &mut [f32]) {
    let Some(band) = Band::new(g, i, j) else {
        row.fill(0.0);
        return;
    };
    let inside = band.inside.clone();
    row[..inside.start].fill(0.0);
    row[inside.clone()].copy_from_slice(&plane[band.source()]);
    row[inside.end..].fill(0.0);
    band.zero_padding_columns(row, g.output()[1]);
}

/// [`col2im`]'s row of kernel position `(i, j)` added back onto a channel
/// `plane`, by its [`Band`]: the row's padding columns are zeroed first,
/// so the one stretch added adds 0 where they land.
fn add_band(g: &Geometry, i: usize, j: usize, row: &mut [f32], plane: &mut [f32]) {
    let Some(band) = Band::new(g, i, j) else {
        return;
    };
    band.zero_padding_columns(row, g.output()[1]);
    for (d, s) in plane[band.source()]
        .iter_mut()
        .zip(&row[band.inside.clone()])
    {
        *d += s;
    }
}

/// One output row of [`im2col`]: `dst[ow] = src[ow·stride + shift]`, zero
/// outside `src`.
fn copy_row(g: &Geometry, j: usize, src: &[f32], dst: &mut [f32]) {
    let shift = g.column_shift(j);
    if g.stride[1] == 1 {
        let (lo, hi) = Geometry::unit_stride_span(shift, src.len(), dst.len());
        let start = (lo as isize + shift) as usize;
        dst[..lo].fill(0.0);
        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
        dst[hi..].fill(0.0);
        return;
    }
    for (ow, d) in dst.iter_mut().enumerate() {
        let iw = (ow * g.stride[1]) as isize + shift;
        *d = if (0..src.len() as isize).contains(&iw) {
            src[iw as usize]
        } else {
            0.0
        };
    }
}

/// One output row of [`col2im`]: `dst[ow·stride + shift] += src[ow]` where
/// that index lies inside `dst`.
fn scatter_row(g: &Geometry, j: usize, src: &[f32], dst: &mut [f32]) {
    let shift = g.column_shift(j);
    if g.stride[1] == 1 {
        let (lo, hi) = Geometry::unit_stride_span(shift, dst.len(), src.len());
        let start = (lo as isize + shift) as usize;
        for (d, s) in dst[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
            *d += s;
        }
        return;
    }
    for (ow, s) in src.iter().enumerate() {
        let iw = (ow * g.stride[1]) as isize + shift;
        if (0..dst.len() as isize).contains(&iw) {
            dst[iw as usize] += s;
        }
    }
}

/// The convolution, `[batch, out_channels, out_h, out_w]`, with the
/// [`Epilogue`]'s bias and ReLU applied.
///
/// The bias is one more column of the weight, against a row of ones below
/// each sample's columns: the gemm adds it as the last term of each output's
/// sum, as Burn adds it after the convolution.
///
/// # Panics
///
/// When the bias does not have one value per output channel.
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32], epilogue: Epilogue) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(g, x, weight, epilogue);
    }
    let positions = g.positions();
    let extended;
    let (weight, rows) = match epilogue.bias {
        Some(bias) => {
            assert_eq!(bias.len(), g.out_channels, "one bias per output channel");
            extended = with_bias_column(g, weight, bias);
            (&extended[..], g.patch() + 1)
        }
        None => (weight, g.patch()),
    };
    let fill = |n: usize, y: &mut [MaybeUninit<f32>], cols: &mut Vec<f32>| {
        if positions == 0 {
            return;
        }
        im2col(g, &x[n * g.input_len()..(n + 1) * g.input_len()], cols);
        let y = matmul_overwrite(
            [g.out_channels, positions, rows],
            y,
            Operand::rows(weight, rows),
            Operand::rows(cols, positions),
        );
        if epilogue.relu {
            for value in y.iter_mut() {
                *value = relu(*value);
            }
        }
    };
    // SAFETY: each chunk is one sample's output, `out_channels × positions`
    // values, and `matmul_overwrite` writes all of them (or there are none).
    unsafe {
        par_build_uninit(
            g.batch * g.output_len(),
            g.output_len(),
            1,
            || columns(g, rows),
            fill,
        )
    }
}

/// A sample's column buffer of `rows` rows: the [`im2col`] rows, and when
/// `rows` is one more, a last row of ones (which [`im2col`] leaves alone,
/// so it is written once per buffer).
fn columns(g: &Geometry, rows: usize) -> Vec<f32> {
    let positions = g.positions();
    let mut cols = vec![0.0; rows * positions];
    cols[g.patch() * positions..].fill(1.0);
    cols
}

/// The weight `[out_channels, patch]` with the bias as one more column:
/// `[out_channels, patch + 1]`.
fn with_bias_column(g: &Geometry, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let patch = g.patch();
    let mut extended = Vec::with_capacity(g.out_channels * (patch + 1));
    for (row, &b) in weight.chunks(patch.max(1)).zip(bias) {
        extended.extend_from_slice(&row[..patch]);
        extended.push(b);
    }
    extended
}

/// The gradient of the input, `[batch, in_channels, height, width]`, from the
/// output's gradient `dy`.
pub fn input_grad(g: &Geometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::input_grad(g, weight, dy);
    }
    let (patch, positions) = (g.patch(), g.positions());
    par_build(
        g.batch * g.input_len(),
        g.input_len(),
        1,
        || vec![0.0; patch * positions],
        |n, dx, cols| {
            if positions == 0 {
                return;
            }
            matmul(
                [patch, positions, g.out_channels],
                cols,
                Operand::transposed(weight, patch),
                Operand::rows(&dy[n * g.output_len()..(n + 1) * g.output_len()], positions),
                false,
            );
            col2im(g, cols, dx);
        },
    )
}

/// The gradient of the weight, `[out_channels, in_channels, kernel_h,
/// kernel_w]`, from the input `x` and the output's gradient `dy`.
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    weight_grad_with(g, x, dy, false).0
}

/// The gradients of the weight and of the bias (`[out_channels]`: `dy`
/// summed over the samples and positions), from the input `x` and the
/// output's gradient `dy`. The bias's is summed in the same pass, while
/// each sample's `dy` is in cache.
pub fn weight_and_bias_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    weight_grad_with(g, x, dy, true)
}

/// Whether [`gradients`] computes the input's and the weight's gradients
/// together, sharing work, rather than as [`input_grad`] and
/// [`weight_grad`] do apart.
pub fn shares_gradient_work(g: &Geometry) -> bool {
    winograd::applies(g)
}

/// The gradients of the input, of the weight and (with `bias`, else empty)
/// of the bias, as [`input_grad`] and [`weight_and_bias_grad`] give them.
/// Where the convolution takes Winograd's path, the input's and the
/// weight's come from one pass over the samples, which transforms each
/// sample's output gradient once for both.
pub fn gradients(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    bias: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    if shares_gradient_work(g) {
        return winograd::gradients(g, x, weight, winograd::OutputGrad::Dense(dy), bias);
    }
    let (dw, db) = weight_grad_with(g, x, dy, bias);
    (input_grad(g, weight, dy), dw, db)
}

/// `Σₙ dy[n] · cols(x[n])ᵀ`, and with `bias` the row sums of `dy`. Chunks of
/// [`WEIGHT_GRAD_CHUNK`] samples are summed apart, then added in order.
fn weight_grad_with(g: &Geometry, x: &[f32], dy: &[f32], bias: bool) -> (Vec<f32>, Vec<f32>) {
    if winograd::applies(g) {
        return (winograd::weight_grad(g, x, dy), bias_grad(g, dy, bias));
    }
    let (patch, positions) = (g.patch(), g.positions());
    let db_len = if bias { g.out_channels } else { 0 };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks((g.input_len() * WEIGHT_GRAD_CHUNK).max(1))
        .zip(dy.par_chunks((g.output_len() * WEIGHT_GRAD_CHUNK).max(1)))
        .map(|(x, dy)| {
            let mut dw_t = vec![0.0; g.weight_len()];
            let mut db = vec![0.0; db_len];
            let mut cols = vec![0.0; patch * positions];
            for (n, (x, dy)) in x
                .chunks(g.input_len().max(1))
                .zip(dy.chunks(g.output_len().max(1)))
                .enumerate()
            {
                im2col(g, x, &mut cols);
                // dWᵀ = cols · dyᵀ: gemm reads the columns where they lie
                // and packs only `dy`, ten times smaller (the weight's own
                // orientation would have it copy the columns per sample).
                matmul(
                    [patch, g.out_channels, positions],
                    &mut dw_t,
                    Operand::rows(&cols, positions),
                    Operand::transposed(dy, positions),
                    n > 0,
                );
                if bias {
                    add_bias_grad_of_sample(g, dy, &mut db);
                }
            }
            (dw_t, db)
        })
        .collect();
    let mut partials = partials.into_iter();
    let (mut dw_t, mut db) = partials
        .next()
        .unwrap_or_else(|| (vec![0.0; g.weight_len()], vec![0.0; db_len]));
    for (partial_w, partial_b) in partials {
        add_into(&mut dw_t, &partial_w);
        add_into(&mut db, &partial_b);
    }
    (transpose(&dw_t, [patch, g.out_channels]), db)
}

/// The bias's gradient (`dy` summed per output channel over the samples,
/// in the weight gradient's fixed chunks), or nothing without `bias`.
fn bias_grad(g: &Geometry, dy: &[f32], bias: bool) -> Vec<f32> {
    if !bias {
        return Vec::new();
    }
    let partials: Vec<Vec<f32>> = dy
        .par_chunks((g.output_len() * WEIGHT_GRAD_CHUNK).max(1))
        .map(|dy| {
            let mut db = vec![0.0; g.out_channels];
            for dy in dy.chunks(g.output_len().max(1)) {
                add_bias_grad_of_sample(g, dy, &mut db);
            }
            db
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut db = partials.next().unwrap_or_else(|| vec![0.0; g.out_channels]);
    for partial in partials {
        add_into(&mut db, &partial);
    }
    db
}

/// The transpose of the row-major `[rows, cols]` matrix `values`.
fn transpose(values: &[f32], [rows, cols]: [usize; 2]) -> Vec<f32> {
    (0..cols * rows)
        .map(|i| values[(i % rows) * cols + i / rows])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{assert_close, on_threads, values};

    /// A direct (seven nested loops) convolution: the reference.
    fn direct_forward(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let [oh_n, ow_n] = g.output();
        let mut y = vec![0.0f64; g.batch * g.output_len()];
        for (n, o, oh, ow, c, i, j, xi) in taps(g) {
            let wi = ((o * g.in_channels + c) * g.kernel[0] + i) * g.kernel[1] + j;
            y[((n * g.out_channels + o) * oh_n + oh) * ow_n + ow] += (x[xi] * w[wi]) as f64;
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    /// Every (sample, out channel, out row, out column, in channel, kernel
    /// row, kernel column) with the input index it reads, padding skipped.
    #[allow(clippy::type_complexity)]
    fn taps(g: &Geometry) -> Vec<(usize, usize, usize, usize, usize, usize, usize, usize)> {
        let [oh_n, ow_n] = g.output();
        let [h, w] = g.input;
        let mut taps = Vec::new();
        for n in 0..g.batch {
            for o in 0..g.out_channels {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        for c in 0..g.in_channels {
                            for i in 0..g.kernel[0] {
                                for j in 0..g.kernel[1] {
                                    let ih = (oh * g.stride[0] + i * g.dilation[0]) as isize
                                        - g.padding[0].0 as isize;
                                    let iw = (ow * g.stride[1] + j * g.dilation[1]) as isize
                                        - g.padding[1].0 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.in_channels + c) * h + ih as usize) * w
                                        + iw as usize;
                                    taps.push((n, o, oh, ow, c, i, j, xi));
                                }
                            }
                        }
                    }
                }
            }
        }
        taps
    }

    fn geometries() -> Vec<Geometry> {
        let base = Geometry {
            batch: 3,
            in_channels: 2,
            input: [7, 6],
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [(0, 0), (0, 0)],
            dilation: [1, 1],
        };
        vec![
            base,
            Geometry {
                padding: [(1, 1), (1, 1)],
                ..base
            },
            Geometry {
                stride: [2, 2],
                padding: [(1, 1), (1, 1)],
                ..base
            },
            Geometry {
                stride: [2, 1],
                padding: [(0, 1), (2, 0)],
                ..base
            },
            Geometry {
                dilation: [2, 2],
                padding: [(2, 2), (1, 1)],
                ..base
            },
            Geometry {
                kernel: [1, 1],
                in_channels: 5,
                ..base
            },
            Geometry {
                kernel: [2, 3],
                stride: [3, 2],
                dilation: [1, 2],
                ..base
            },
            Geometry {
                batch: 19,
                in_channels: 1,
                ..base
            },
            // Output rows as wide as the input's, stride 1 (`copy_band`):
            // a kernel taller than the input, rows that read only padding,
            // dilated columns, asymmetric padding.
            Geometry {
                input: [3, 6],
                kernel: [5, 3],
                padding: [(2, 2), (1, 1)],
                ..base
            },
            Geometry {
                input: [1, 6],
                padding: [(1, 1), (1, 1)],
                ..base
            },
            Geometry {
                dilation: [1, 2],
                padding: [(1, 1), (2, 2)],
                ..base
            },
            Geometry {
                padding: [(0, 2), (2, 0)],
                ..base
            },
        ]
    }

    #[test]
    fn forward_equals_a_direct_convolution() {
        for g in geometries() {
            let (x, w) = (
                values(g.batch * g.input_len(), 1),
                values(g.weight_len(), 2),
            );
            assert_close(
                &forward(&g, &x, &w, Epilogue::default()),
                &direct_forward(&g, &x, &w),
                "y",
                &g,
            );
        }
    }

    #[test]
    fn gradients_equal_those_of_a_direct_convolution() {
        for g in geometries() {
            let x = values(g.batch * g.input_len(), 3);
            let w = values(g.weight_len(), 4);
            let dy = values(g.batch * g.output_len(), 5);
            let [oh_n, ow_n] = g.output();
            let mut dx = vec![0.0f64; x.len()];
            let mut dw = vec![0.0f64; w.len()];
            for (n, o, oh, ow, c, i, j, xi) in taps(&g) {
                let wi = ((o * g.in_channels + c) * g.kernel[0] + i) * g.kernel[1] + j;
                let d = dy[((n * g.out_channels + o) * oh_n + oh) * ow_n + ow] as f64;
                dx[xi] += d * w[wi] as f64;
                dw[wi] += d * x[xi] as f64;
            }
            let dx: Vec<f32> = dx.into_iter().map(|v| v as f32).collect();
            let dw: Vec<f32> = dw.into_iter().map(|v| v as f32).collect();
            assert_close(&input_grad(&g, &w, &dy), &dx, "dx", &g);
            assert_close(&weight_grad(&g, &x, &dy), &dw, "dw", &g);
        }
    }

    #[test]
    fn the_epilogue_adds_the_bias_then_clamps_at_zero() {
        for g in geometries() {
            let (x, w) = (
                values(g.batch * g.input_len(), 10),
                values(g.weight_len(), 11),
            );
            let bias = values(g.out_channels, 12);
            let positions = g.positions();
            let reference: Vec<f32> = direct_forward(&g, &x, &w)
                .into_iter()
                .enumerate()
                .map(|(k, y)| (y + bias[(k / positions) % g.out_channels]).max(0.0))
                .collect();
            let epilogue = Epilogue {
                bias: Some(&bias),
                relu: true,
            };
            let ours = forward(&g, &x, &w, epilogue);
            assert_close(&ours, &reference, "relu(y + b)", &g);
            assert!(ours.contains(&0.0) && ours.iter().any(|&v| v > 0.0));
        }
    }

    #[test]
    fn bias_grad_sums_the_output_gradient_per_channel() {
        for g in geometries() {
            let dy = values(g.batch * g.output_len(), 15);
            let positions = g.positions();
            let mut reference = vec![0.0f64; g.out_channels];
            for (k, &d) in dy.iter().enumerate() {
                reference[(k / positions) % g.out_channels] += d as f64;
            }
            let reference: Vec<f32> = reference.into_iter().map(|v| v as f32).collect();
            let x = values(g.batch * g.input_len(), 16);
            let (dw, db) = weight_and_bias_grad(&g, &x, &dy);
            assert_close(&db, &reference, "db", &g);
            assert_close(&dw, &weight_grad(&g, &x, &dy), "dw beside db", &g);
        }
    }

    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        let g = Geometry {
            batch: 21,
            ..geometries()[2]
        };
        let x = values(g.batch * g.input_len(), 6);
        let w = values(g.weight_len(), 7);
        let dy = values(g.batch * g.output_len(), 8);
        let bias = values(g.out_channels, 9);
        let epilogue = Epilogue {
            bias: Some(&bias),
            relu: true,
        };
        let run = |threads: usize| {
            on_threads(threads, || {
                (
                    forward(&g, &x, &w, epilogue),
                    input_grad(&g, &w, &dy),
                    weight_grad(&g, &x, &dy),
                    weight_and_bias_grad(&g, &x, &dy),
                )
            })
        };
        let one = run(1);
        assert!(one == run(3), "bitwise equal on 1 and 3 threads");
    }

    #[test]
    fn output_size_follows_burn() {
        // 28×28, 3×3, same padding; 26×26 valid; stride 2 with padding 1.
        let g = geometries()[0];
        let same = Geometry {
            input: [28, 28],
            padding: [(1, 1), (1, 1)],
            ..g
        };
        assert_eq!(same.output(), [28, 28]);
        assert_eq!(
            Geometry {
                input: [28, 28],
                ..g
            }
            .output(),
            [26, 26]
        );
        let strided = Geometry {
            input: [28, 28],
            stride: [2, 2],
            padding: [(1, 1), (1, 1)],
            ..g
        };
        assert_eq!(strided.output(), [14, 14]);
        assert!(!Geometry { input: [2, 2], ..g }.is_valid());
    }
}
