//! 3×3 convolutions of stride 1 as Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016): the forward, the input gradient and the weight gradient, on the
//! layouts of [`super::kernels`].
//!
//! Each 2×2 block of outputs (a *tile*) reads a 4×4 block of the padded
//! input. In the transformed domain the 3×3 convolution of a tile is an
//! elementwise product of 16 values, so the channel sums become 16 gemms
//! per sample, `M[ξ] = U[ξ] · V[ξ]` (out × in channels times in channels ×
//! tiles), with 2.25× fewer multiplications than im2col's one gemm:
//!
//! * forward: `V = Bᵀ d B` per input tile, `U = G g Gᵀ` per filter, `y = Aᵀ
//!   M A` per output tile, then the bias and the ReLU of the [`Epilogue`];
//! * input gradient: the adjoint of the forward on the forward's own
//!   tiles, `dx = Σ_tiles B (U[ξ]ᵀ (A dY Aᵀ)[ξ]) Bᵀ`, each tile's 4 × 4
//!   result added into the block of the padded input it was read from
//!   ([`scatter_input_grad`]);
//! * weight gradient: the adjoint of the forward, `dW = Gᵀ (Σ_tiles (A dY
//!   Aᵀ) ⊙ (Bᵀ d B)) G`: the sum over tiles is again 16 gemms, over the
//!   same transformed input as the forward;
//! * both gradients at once ([`gradients`], what a training step's backward
//!   calls): the output gradient's transform `A dY Aᵀ` is made once per
//!   sample for the two, and the bias gradient is summed in the same pass;
//! * the forward followed by a 2 × 2 max pooling ([`forward_pooled`]): the
//!   pooling's windows are the output tiles, so each is pooled as it is
//!   formed, and [`gradients`] takes the pooled gradient back
//!   ([`OutputGrad::ThroughReluPool`]) one sample at a time, its weight
//!   gradient summed over the windows' maxima alone
//!   (`conv::window_weight_grad`), not by the 16 gemms.
//!
//! Invariants:
//! * **The convolution's values within float rounding** (the transforms
//!   reorder the sums): tested against a direct convolution in `f64` for
//!   odd and even sizes, every padding up to 2, and both gradients.
//! * **Deterministic whatever the number of threads**: the forward and the
//!   input gradient write disjoint samples (the overlapping tiles of one
//!   sample are added in a fixed order); the weight gradient sums fixed
//!   chunks of [`WEIGHT_GRAD_CHUNK`] samples, then the chunks in order (as
//!   [`super::kernels`] does). Where two samples share the gemms (small
//!   outputs, see `Tiling`), the pairs are fixed too: samples `2i` and
//!   `2i + 1` of the batch (of a weight gradient's chunk), a lone last
//!   sample on its own.
//! * **Taken only where it is the same convolution** ([`applies`]): 3×3,
//!   stride 1, dilation 1, padding at most 2 on every side, and enough
//!   channels on both sides for the 16 gemms to pay for the transforms.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{Operand, add_into, matmul, sum_in_order};
use super::geometry::{Epilogue, Geometry, WEIGHT_GRAD_CHUNK, add_bias_grad_of_sample};
use super::transpose::transpose;
use super::window_weight_grad::{self, ThroughPool, WindowScratch};
use crate::buffers::par_build_uninit;
use crate::relu::relu;
use crate::wide::wide;
use crate::window_max::{deinterleave, pool_windows};

/// Values of a transformed tile (4 × 4).
const XI: usize = 16;

/// The slots are counted in multiples of this: `gemm`'s `f32` vector width
/// with AVX-512 (see [`Tiling::slots`]).
const SLOT_MULTIPLE: usize = 16;

/// `f32`s in 4 KiB, the span of addresses over which the L1 cache's sets
/// (and the store buffer's 4K-aliasing check) repeat.
const PAGE: usize = 1024;

/// Where, modulo [`PAGE`], one block of transformed values starts after
/// the one before ([`Tiling::block`]): 17 cache lines, so that any 64
/// blocks in a row start on 64 different lines of the page.
const BLOCK_PHASE: usize = 17 * 16;

/// Fewest channels, in and out, for which the transforms pay off: at one
/// input channel (a network's first layer) the gemm has nothing to save.
pub const MIN_CHANNELS: usize = 8;

/// Below this many input channels, the outputs must be at least
/// [`MIN_POSITIONS_WITH_FEW_CHANNELS`] for the transforms to pay off:
/// `examples/op_profile` measured a 16→32 convolution at 14 × 14 slower
/// this way (4.4 against 3.1 ms for the forward and both gradients) and a
/// 16→16 one at 28 × 28 faster (5.1 against 6.4 ms); from 32 input channels
/// every measured shape was faster.
const FEW_CHANNELS: usize = 32;

/// See [`FEW_CHANNELS`]: 16 × 16 outputs.
const MIN_POSITIONS_WITH_FEW_CHANNELS: usize = 256;

/// Whether the convolution `g` is one this module computes: 3×3, stride
/// and dilation 1, padding at most 2, at least [`MIN_CHANNELS`] channels in
/// and out (and, below 32 input channels, at least 16 × 16 outputs: see
/// `FEW_CHANNELS`), and a non-empty output.
pub fn applies(g: &Geometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.padding.iter().all(|&(a, b)| a <= 2 && b <= 2)
        && g.in_channels >= MIN_CHANNELS
        && g.out_channels >= MIN_CHANNELS
        && (g.in_channels >= FEW_CHANNELS || g.positions() >= MIN_POSITIONS_WITH_FEW_CHANNELS)
        && g.is_valid()
        && g.positions() > 0
}

/// Where a convolution's tiles lie: `tiles` 2×2 output blocks, each
/// reading a 4×4 block of the input padded by the convolution's padding on
/// the top and left (`before`) and by zeros to the tiles' reach.
///
/// The padded input is kept as four *parity planes* (even or odd rows ×
/// even or odd columns), each `[tiles_h + 1, tiles_w + 1]`: a tile's four
/// rows are then rows `a` and `a + 1` of two planes, and its four columns
/// columns `b` and `b + 1`, so that every transform is a pass over whole
/// planes. The transformed values are laid out the same way, one *slot*
/// per plane position of the first `tiles_h` rows: the slot of each row's
/// last column is not a tile (its values are computed and then ignored, and
/// are zero in the output gradient, so they add nothing to the weight
/// gradient). That costs the gemms `1 / tiles_w` more columns and saves
/// every gather.
///
/// Where the slots of one sample, rounded up to [`SLOT_MULTIPLE`], would
/// be mostly rounding (14 × 14 outputs: 56 slots in 64), a *pair* of
/// samples shares one row of slots (112 for two), so that each gemm runs
/// over both: see [`Tiling::pair_saves`] and [`Span`].
#[derive(Clone, Copy)]
struct Tiling {
    /// The convolution's output `[oh, ow]`.
    out: [usize; 2],
    tiles: [usize; 2],
    before: [usize; 2],
    /// Samples whose slots share a row: 1, or 2 where that saves (see
    /// [`Tiling::pair_saves`]).
    group: usize,
}

/// Where one sample's slots lie in a row of `Tiling::slots` slots: `len`
/// slots from `start`. A group's samples take [`Tiling::sample_slots`]
/// each, in order, and its last sample the rest of the row, so that every
/// slot of a row is some sample's (a lone sample, the last of an odd
/// batch or chunk, takes the whole row): a transform writes all of its
/// sample's span, zeros past the sample's tiles, so that no slot of the
/// row keeps another sample's or an earlier call's values for the gemms
/// to read.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
}

impl Tiling {
    fn new(g: &Geometry) -> Self {
        let mut t = Self {
            out: g.output(),
            tiles: g.output().map(|n| n.div_ceil(2)),
            before: [g.padding[0].0, g.padding[1].0],
            group: 1,
        };
        if t.pair_saves() {
            t.group = 2;
        }
        t
    }

    /// Whether two samples sharing a row of slots take at least a tenth
    /// fewer slots than each in its own row: the gemms' columns, and the
    /// transforms' values, that many fewer. 14 × 14 outputs: 112 against
    /// 2 × 64; 28 × 28: 432 against 2 × 224, which is not (and would
    /// double buffers that already fill much of the L2 cache). The 16
    /// gemms alone at 14 × 14, 32 → 64 and 64 → 64 channels: 7–9% less
    /// time for the forward's, 11–15% for the weight gradient's
    /// (docs/benchmarks.md §6, item 28).
    fn pair_saves(&self) -> bool {
        let one = self.sample_slots().next_multiple_of(SLOT_MULTIPLE);
        let pair = (2 * self.sample_slots()).next_multiple_of(SLOT_MULTIPLE);
        10 * pair <= 9 * 2 * one
    }

    /// Slots of one sample's tiles: `tiles_h × (tiles_w + 1)`.
    fn sample_slots(&self) -> usize {
        self.tiles[0] * self.half()
    }

    /// The `members` samples of group `group` (the batch's groups of
    /// [`Tiling::group`] samples, counted from 0) in `values`, `len` values
    /// a sample.
    fn samples<'a>(
        &self,
        values: &'a [f32],
        group: usize,
        members: usize,
        len: usize,
    ) -> &'a [f32] {
        &values[group * self.group * len..][..members * len]
    }

    /// The span of sample `k` of a group of `members` (at most
    /// [`Tiling::group`]) in a row of slots.
    fn span(&self, k: usize, members: usize) -> Span {
        debug_assert!(k < members && members <= self.group);
        let start = k * self.sample_slots();
        let len = if k + 1 == members {
            self.slots() - start
        } else {
            self.sample_slots()
        };
        Span { start, len }
    }

    /// Columns of a parity plane: `tiles_w + 1`.
    fn half(&self) -> usize {
        self.tiles[1] + 1
    }

    /// Slots of a row of the transformed values: the group's
    /// [`Tiling::sample_slots`], rounded up to a whole number of 16-lane
    /// vectors, so that `gemm` reads the transformed input where it lies
    /// (it copies it into its own layout first when the count is not a
    /// multiple of its vector width: `gemm-common`'s `do_prepack_lhs`). The
    /// extra slots are not tiles either.
    fn slots(&self) -> usize {
        (self.group * self.sample_slots()).next_multiple_of(SLOT_MULTIPLE)
    }

    /// Values from one transformed value's block of `rows` channels' slots
    /// (`V[ξ]`, `M[ξ]` or `Z[ξ]`, `rows × slots`) to the next: the block,
    /// and a gap that puts the next one [`BLOCK_PHASE`] past it modulo 4
    /// KiB. Without it, 32 channels of 224 slots or 64 of 112 make a block
    /// exactly 28 KiB, and the transforms' writes, four blocks at a time,
    /// fell in one set of the L1 cache and 4K-aliased the loads: per
    /// channel, alone, the input's transform took 1.27–1.34 µs at 32
    /// channels of 28 × 28 against 1.10–1.12 at 31 or 33, the output
    /// gradient's 0.97–1.00 against 0.85–0.86, and at 64 channels of 14 ×
    /// 14 0.33 against 0.23 µs; with the gap, 1.14, 0.78–0.79 and 0.23 µs.
    fn block(&self, rows: usize) -> usize {
        let plain = rows * self.slots();
        plain + (BLOCK_PHASE + PAGE - plain % PAGE) % PAGE
    }

    /// Values of a row of [`Scratch::margined_rows`]: a plane's positions
    /// and a row of zeros (`half` values) on either side.
    fn margined_row(&self) -> usize {
        self.half() + self.slots() + 1 + self.half()
    }

    /// Values of a parity plane: its rows, and zeros past them for the
    /// reach of the last slots (a tile reads up to row `a + 1` and column
    /// `b + 1` of a plane).
    fn plane_len(&self) -> usize {
        self.half() + self.slots() + 1
    }
}

/// The 16 transformed filters `U[ξ] = (G g Gᵀ)[ξ]`, each `[rows, cols]`
/// row-major, where `weight(r, c)` is the 3×3 filter of gemm row `r` and
/// column `c`.
fn transform_filters(
    rows: usize,
    cols: usize,
    weight: impl Fn(usize, usize) -> [f32; 9],
) -> Vec<f32> {
    let count = rows * cols;
    let mut u = vec![0.0; XI * count];
    let mut taps = [[0.0f32; FILTER_STRETCH]; 9];
    let mut gg = [[[0.0f32; FILTER_STRETCH]; 3]; 4];
    for start in (0..count).step_by(FILTER_STRETCH) {
        let n = FILTER_STRETCH.min(count - start);
        for k in 0..n {
            let g = weight((start + k) / cols, (start + k) % cols);
            for (tap, value) in taps.iter_mut().zip(g) {
                tap[k] = value;
            }
        }
        // G g: 4 × 3, for `n` filters at once.
        for j in 0..3 {
            let (a, b, d) = (&taps[j][..n], &taps[3 + j][..n], &taps[6 + j][..n]);
            for k in 0..n {
                let (a, b, d) = (a[k], b[k], d[k]);
                gg[0][j][k] = a;
                gg[1][j][k] = 0.5 * (a + b + d);
                gg[2][j][k] = 0.5 * (a - b + d);
                gg[3][j][k] = d;
            }
        }
        // (G g) Gᵀ: 4 × 4, row i of G g into U[4 i + j].
        for (i, [a, b, d]) in gg.iter().enumerate() {
            let block = |j: usize| (i * 4 + j) * count + start;
            let [u0, u1, u2, u3] = runs(&mut u, std::array::from_fn(block), n);
            for k in 0..n {
                let (a, b, d) = (a[k], b[k], d[k]);
                u0[k] = a;
                u1[k] = 0.5 * (a + b + d);
                u2[k] = 0.5 * (a - b + d);
                u3[k] = d;
            }
        }
    }
    u
}

/// Filters per pass of [`transform_filters`] and
/// [`filters_from_transformed`]: each of the 3 × 3 taps and each
/// intermediate value in a run of its own (about 20 KiB in all, in L1), so
/// that the passes go over many filters at once in vectors. One filter at
/// a time, scalar, with the 16 values stored to 16 places, took about
/// 0.23 ms for 64 × 64 filters (29 µs this way), on the training thread
/// while the pool waited.
const FILTER_STRETCH: usize = 256;

/// The scratch of one task: the four parity planes of an input channel and
/// those of an output gradient channel, twelve rows of intermediate
/// combinations (and, for the input gradient, eight with zero margins,
/// see [`Tiling::margined_row`], and four planes of its own: the input's
/// and the output gradient's must stay zero where no channel writes), the transformed input `V[ξ][channel][slot]`
/// and the 16 gemms' products `M[ξ][out][slot]` (or, for the weight
/// gradient, the transformed output gradient `Z[ξ][out][slot]`).
struct Scratch {
    planes: [Vec<f32>; 4],
    grad_planes: [Vec<f32>; 4],
    rows: Vec<f32>,
    margined_rows: Vec<f32>,
    input_grad_planes: [Vec<f32>; 4],
    v: Vec<f32>,
    m: Vec<f32>,
    /// One `V[ξ]ᵀ` (`slots × in`), for the weight gradient's gemms (sized
    /// there).
    v_transposed: Vec<f32>,
}

impl Scratch {
    /// A scratch for the tiling `t`. The two large buffers (`v` and `m`,
    /// about 1 MiB for `simple_cnn`'s second convolution) come from this
    /// thread's [`SPARE`] when it holds them: every value of them is
    /// written before it is read (the input transform writes all of `v`,
    /// a gemm or the output gradient's transform all of `m`), so they need
    /// no zeroing, which cost a `memset` of them per task.
    fn new(t: &Tiling, in_channels: usize, products: usize) -> Self {
        let [mut v, mut m] = SPARE.take();
        grow(&mut v, XI * t.block(in_channels));
        grow(&mut m, XI * t.block(products));
        Self {
            planes: std::array::from_fn(|_| vec![0.0; t.plane_len()]),
            grad_planes: std::array::from_fn(|_| vec![0.0; t.plane_len()]),
            rows: vec![0.0; 12 * (t.slots() + 1)],
            margined_rows: vec![0.0; 8 * t.margined_row()],
            input_grad_planes: std::array::from_fn(|_| vec![0.0; t.plane_len()]),
            v,
            m,
            v_transposed: Vec::new(),
        }
    }
}

/// Makes `buffer` at least `len` values long. Never shorter: the spare
/// buffers go from one convolution's tasks to another's on the same
/// thread, and cutting them to a smaller convolution's length made the
/// next larger one zero the difference again (a `memset` on every switch
/// between the network's layers, in `perf`). Every reader indexes its own
/// extent, so the values past it are never read.
fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        SPARE.set([std::mem::take(&mut self.v), std::mem::take(&mut self.m)]);
    }
}

thread_local! {
    /// The large buffers of the last [`Scratch`] dropped on this thread,
    /// for the next one (a task takes them; one that finds them taken
    /// allocates its own).
    static SPARE: std::cell::Cell<[Vec<f32>; 2]> = const { std::cell::Cell::new([Vec::new(), Vec::new()]) };
}

/// Fills the parity planes (`half` columns each) from one `[h, w]` channel
/// placed at `before` in a plane of `2 × rows` padded rows: padded row `r`
/// goes, its even and odd columns apart, to row `r / 2` of planes `2 (r %
/// 2)` and `2 (r % 2) + 1`.
///
/// Only the channel's own positions are written: every other one (the
/// padding, the columns past the tiles' reach, the spare) is zero from
/// [`Scratch::new`] and stays so, since every channel of every sample
/// written into these planes has the same shape and place.
#[inline(always)]
fn fill_planes(
    planes: &mut [Vec<f32>; 4],
    half: usize,
    rows: usize,
    [top, left]: [usize; 2],
    [h, w]: [usize; 2],
    src: &[f32],
) {
    let cols = w.min((2 * half).saturating_sub(left));
    for r in 0..h.min((2 * rows).saturating_sub(top)) {
        let padded = top + r;
        let (first, second) = planes.split_at_mut(2);
        let (even, odd) = if padded % 2 == 0 { first } else { second }.split_at_mut(1);
        let at = (padded / 2) * half + left / 2;
        let row = &src[r * w..][..cols];
        // Column left + k is even for even k when `left` is even.
        if left % 2 == 0 {
            deinterleave(row, &mut even[0][at..], &mut odd[0][at..]);
        } else {
            deinterleave(row, &mut odd[0][at..], &mut even[0][at + 1..]);
        }
    }
}

wide!(transform_input => transform_input_body(
    t: &Tiling, input: [usize; 2], channels: usize, x: &[f32], span: Span, s: &mut Scratch,
));
wide!(transform_output => transform_output_body(
    t: &Tiling, outputs: usize, m: &[f32], span: Span, rows: &mut [f32],
    epilogue: Epilogue, y: &mut [MaybeUninit<f32>],
));
wide!(transform_output_pooled => transform_output_pooled_body(
    t: &Tiling, outputs: usize, m: &[f32], span: Span, rows: &mut [f32],
    epilogue: Epilogue, sample: PooledSample<'_>,
));
wide!(transform_output_grad => transform_output_grad_body(
    t: &Tiling, outputs: usize, dy: &[f32], span: Span, s: &mut Scratch,
));
wide!(scatter_input_grad => scatter_input_grad_body(
    t: &Tiling, input: [usize; 2], channels: usize, span: Span, s: &mut Scratch,
    dx: &mut [MaybeUninit<f32>],
));

/// `outputs[q][k] = f(inputs[·][k])[q]` for every `k` below the outputs'
/// length: one pass over equally long rows, which the compiler vectorises.
#[inline(always)]
fn map_rows<const I: usize, const O: usize>(
    inputs: [&[f32]; I],
    outputs: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let n = outputs.first().map_or(0, |o| o.len());
    let inputs = inputs.map(|row| &row[..n]);
    let mut outputs = outputs.map(|row| &mut row[..n]);
    for k in 0..n {
        let mut args = [0.0; I];
        for (arg, row) in args.iter_mut().zip(&inputs) {
            *arg = row[k];
        }
        let values = f(args);
        for (row, value) in outputs.iter_mut().zip(values) {
            row[k] = value;
        }
    }
}

/// `O` disjoint runs of `len` values of `values`, starting at `starts`
/// (increasing, at least `len` apart).
#[inline(always)]
fn runs<const O: usize>(values: &mut [f32], starts: [usize; O], len: usize) -> [&mut [f32]; O] {
    let mut rest = values;
    let mut taken = 0;
    starts.map(|start| {
        let tail = std::mem::take(&mut rest);
        let (run, after) = tail[start - taken..].split_at_mut(len);
        rest = after;
        taken = start + len;
        run
    })
}

/// The rows of `Bᵀ d` from the four rows `d` of a tile:
/// `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]` (and, on columns, `d B`).
#[inline(always)]
fn input_combination([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `V[ξ][c][slot] = (Bᵀ d B)[ξ]` for every channel of one sample `x`
/// (`[channels, h, w]`), in the sample's `span` of each row: the rows of
/// `Bᵀ d` over whole parity planes (a tile's rows are rows `a` of the
/// even-row and of the odd-row planes, then rows `a + 1` of both), then
/// `· B` from them (a tile's columns are even column `b`, odd `b`, even
/// `b + 1`, odd `b + 1`). Short passes of at most four rows in and out,
/// which the compiler vectorises (one pass of 16 does not).
#[inline(always)]
fn transform_input_body(
    t: &Tiling,
    input: [usize; 2],
    channels: usize,
    x: &[f32],
    span: Span,
    s: &mut Scratch,
) {
    let (half, slots, len, block) = (t.half(), t.slots(), span.len, t.block(channels));
    let n = len + 1;
    let [h, w] = input;
    let Scratch {
        planes, rows, v, ..
    } = s;
    for c in 0..channels {
        fill_planes(
            planes,
            half,
            t.tiles[0] + 1,
            t.before,
            input,
            &x[c * h * w..][..h * w],
        );
        for parity in 0..2 {
            let (even_rows, odd_rows) = (&planes[parity], &planes[2 + parity]);
            let d = [
                &even_rows[..n],
                &odd_rows[..n],
                &even_rows[half..half + n],
                &odd_rows[half..half + n],
            ];
            let out = &mut rows[parity * 4 * n..][..4 * n];
            map_rows(d, runs(out, [0, n, 2 * n, 3 * n], n), input_combination);
        }
        for i in 0..4 {
            let e = &rows[i * n..][..n];
            let o = &rows[(4 + i) * n..][..n];
            let starts = std::array::from_fn(|j| (i * 4 + j) * block + c * slots + span.start);
            map_rows(
                [&e[..len], &o[..len], &e[1..], &o[1..]],
                runs(v, starts, len),
                input_combination,
            );
        }
    }
}

/// `y = Aᵀ m A` of every tile of `M[ξ][out][slot]`, with `Aᵀ = [1 1 1 0; 0
/// 1 −1 −1]`, the bias added and the ReLU applied as `epilogue` asks, into
/// one sample's `[outputs, oh, ow]` (tiles past an odd edge are cut), from
/// the sample's `span` of each row.
#[inline(always)]
fn transform_output_body(
    t: &Tiling,
    outputs: usize,
    m: &[f32],
    span: Span,
    rows: &mut [f32],
    epilogue: Epilogue,
    y: &mut [MaybeUninit<f32>],
) {
    let (half, [oh, ow]) = (t.half(), t.out);
    for o in 0..outputs {
        let [even0, odd0, even1, odd1] = output_tiles(t, outputs, o, m, span, rows, epilogue);
        for row in 0..oh {
            let (a, i) = (row / 2, row % 2);
            let (even, odd) = if i == 0 { (even0, odd0) } else { (even1, odd1) };
            let (even, odd) = (
                &even[a * half..][..ow.div_ceil(2)],
                &odd[a * half..][..ow / 2],
            );
            interleave(even, odd, &mut y[(o * oh + row) * ow..][..ow]);
        }
    }
}

/// The four outputs of every tile of output channel `o`, `Aᵀ m A` of
/// `M[ξ][o][slot]` (the slots of `span`) with the epilogue applied,
/// computed in `rows` (eight rows of intermediate combinations, then these
/// four): the tile row 0's even and odd columns, then row 1's, each
/// indexed by slot from the span's start.
#[inline(always)]
fn output_tiles<'r>(
    t: &Tiling,
    outputs: usize,
    o: usize,
    m: &[f32],
    span: Span,
    rows: &'r mut [f32],
    epilogue: Epilogue,
) -> [&'r [f32]; 4] {
    let (slots, len, block) = (t.slots(), span.len, t.block(outputs));
    let a_t = |[m0, m1, m2, m3]: [f32; 4]| [m0 + m1 + m2, m1 - m2 - m3];
    let bias = epilogue.bias.map_or(0.0, |b| b[o]);
    let (r, ends) = rows.split_at_mut(8 * len);
    let [even0, odd0, even1, odd1] = runs(ends, [0, len, 2 * len, 3 * len], len);
    // Aᵀ m: r[j] and r[4 + j] are column j of its two rows.
    for j in 0..4 {
        let m: [&[f32]; 4] =
            std::array::from_fn(|i| &m[(i * 4 + j) * block + o * slots + span.start..][..len]);
        map_rows(m, runs(r, [j * len, (4 + j) * len], len), a_t);
    }
    // · A, the bias and the ReLU: each tile row's even and odd columns.
    for (i, [even, odd]) in [[&mut *even0, &mut *odd0], [&mut *even1, &mut *odd1]]
        .into_iter()
        .enumerate()
    {
        let r: [&[f32]; 4] = std::array::from_fn(|j| &r[(4 * i + j) * len..][..len]);
        map_rows(r, [even, odd], |columns| {
            a_t(columns).map(|value| {
                let value = value + bias;
                if epilogue.relu { relu(value) } else { value }
            })
        });
    }
    [even0, odd0, even1, odd1].map(|run| &*run)
}

/// Where [`transform_output_pooled`] writes one sample's pooled values and
/// the position of each one's maximum in its window.
struct PooledSample<'a> {
    pooled: &'a mut [MaybeUninit<f32>],
    codes: &'a mut [u8],
}

/// [`transform_output_body`] followed by a 2 × 2 max pooling of stride 2,
/// whose windows are the tiles: one sample's `[outputs, oh / 2, ow / 2]`
/// maxima into `pooled`, and into `codes` where each one is in its window
/// (row-major, 0–3). The first largest value is taken, a NaN winning, as
/// [`crate::pool`]'s kernels choose; a tile cut by an odd edge is no
/// window and is dropped, as the pooling drops it.
#[inline(always)]
fn transform_output_pooled_body(
    t: &Tiling,
    outputs: usize,
    m: &[f32],
    span: Span,
    rows: &mut [f32],
    epilogue: Epilogue,
    PooledSample { pooled, codes }: PooledSample<'_>,
) {
    let (half, [oh, ow]) = (t.half(), t.out);
    let [ph, pw] = [oh / 2, ow / 2];
    for o in 0..outputs {
        let tiles = output_tiles(t, outputs, o, m, span, rows, epilogue);
        for a in 0..ph {
            let at = (o * ph + a) * pw;
            pool_windows(
                tiles.map(|run| &run[a * half..][..pw]),
                &mut pooled[at..][..pw],
                &mut codes[at..][..pw],
            );
        }
    }
}

/// `out = even[0], odd[0], even[1], odd[1], …` (`even` one longer than
/// `odd` when `out`'s length is odd).
#[inline(always)]
fn interleave(even: &[f32], odd: &[f32], out: &mut [MaybeUninit<f32>]) {
    let pairs = odd.len();
    for ((pair, &e), &o) in out[..2 * pairs].chunks_exact_mut(2).zip(even).zip(odd) {
        pair[0] = MaybeUninit::new(e);
        pair[1] = MaybeUninit::new(o);
    }
    if let (Some(last), Some(&e)) = (out.get_mut(2 * pairs), even.get(pairs)) {
        *last = MaybeUninit::new(e);
    }
}

/// The convolution of `x` with the transformed filters `u` (`U[ξ][out][in]`)
/// over the geometry `g`, with the epilogue, as [`super::kernels::forward`].
fn forward_transformed(g: &Geometry, x: &[f32], u: &[f32], epilogue: Epilogue) -> Vec<f32> {
    let t = Tiling::new(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let fill = |group: usize, y: &mut [MaybeUninit<f32>], s: &mut Scratch| {
        let members = y.len() / g.output_len();
        products(g, &t, u, t.samples(x, group, members, g.input_len()), s);
        for (k, y) in y.chunks_exact_mut(g.output_len()).enumerate() {
            let span = t.span(k, members);
            transform_output(&t, cout, &s.m, span, &mut s.rows, epilogue, y);
        }
    };
    // SAFETY: each chunk is one group's output, `out_channels × oh × ow`
    // values per sample, and `transform_output` writes every one of them:
    // the tiles cover every output row and column (2 × ceil(n / 2) ≥ n).
    unsafe {
        par_build_uninit(
            g.batch * g.output_len(),
            t.group * g.output_len(),
            samples_per_task(g.batch).div_ceil(t.group),
            || Scratch::new(&t, cin, cout),
            fill,
        )
    }
}

/// The 16 gemms' products `M[ξ] = U[ξ] · V[ξ]` of one group of samples `x`
/// (at most [`Tiling::group`], each in its [`Span`]) into `s.m`, with `V`
/// their transformed input (into `s.v`).
fn products(g: &Geometry, t: &Tiling, u: &[f32], x: &[f32], s: &mut Scratch) {
    let (cin, cout, count) = (g.in_channels, g.out_channels, t.slots());
    let members = x.len() / g.input_len();
    for (k, x) in x.chunks_exact(g.input_len()).enumerate() {
        transform_input(t, g.input, cin, x, t.span(k, members), s);
    }
    for xi in 0..XI {
        matmul(
            [cout, count, cin],
            &mut s.m[xi * t.block(cout)..][..cout * count],
            Operand::rows(&u[xi * cout * cin..(xi + 1) * cout * cin], cin),
            Operand::rows(&s.v[xi * t.block(cin)..][..cin * count], count),
            false,
        );
    }
}

/// Fewest samples a task of the forward takes: a quarter of an even share
/// of the batch per thread. Each task builds its own [`Scratch`] (the
/// transformed input and products of a sample, about 1 MiB for `simple_cnn`'s
/// second convolution), so splitting the batch down to single samples
/// cost more in allocating and zeroing those than it gained in balance.
fn samples_per_task(batch: usize) -> usize {
    batch.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// The forward of [`super::kernels::forward`] for a convolution that
/// [`applies`].
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32], epilogue: Epilogue) -> Vec<f32> {
    forward_transformed(g, x, &filters_for_forward(g, weight, epilogue), epilogue)
}

/// `U[ξ]` for the forward (row o, column c is filter (o, c) transformed),
/// once the convolution is checked to be one this module takes.
fn filters_for_forward(g: &Geometry, weight: &[f32], epilogue: Epilogue) -> Vec<f32> {
    debug_assert!(applies(g));
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), g.out_channels, "one bias per output channel");
    }
    let cin = g.in_channels;
    transform_filters(g.out_channels, cin, |o, c| {
        weight[(o * cin + c) * 9..][..9].try_into().expect("9 taps")
    })
}

/// [`forward`] followed by a 2 × 2 max pooling of stride 2, in one pass:
/// the pooling's windows are Winograd's output tiles, so each tile's four
/// outputs are pooled as they are formed and the convolution's output is
/// never written. Returns the pooled `[batch, out_channels, oh / 2, ow /
/// 2]` and, per pooled value, where its maximum is in its window
/// (row-major, 0–3): the values and codes [`crate::pool`]'s
/// `forward_with_codes` gives for the convolution's output, bit for bit.
pub fn forward_pooled(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    epilogue: Epilogue,
) -> (Vec<f32>, Vec<u8>) {
    let u = filters_for_forward(g, weight, epilogue);
    let t = Tiling::new(g);
    let [oh, ow] = g.output();
    let sample = g.out_channels * (oh / 2) * (ow / 2);
    let len = g.batch * sample;
    let mut pooled: Vec<f32> = Vec::with_capacity(len);
    let mut codes = vec![0u8; len];
    if len > 0 {
        pooled.spare_capacity_mut()[..len]
            .par_chunks_mut(t.group * sample)
            .zip(codes.par_chunks_mut(t.group * sample))
            .enumerate()
            .with_min_len(samples_per_task(g.batch).div_ceil(t.group))
            .for_each_init(
                || Scratch::new(&t, g.in_channels, g.out_channels),
                |s, (group, (pooled, codes))| {
                    let members = pooled.len() / sample;
                    products(g, &t, &u, t.samples(x, group, members, g.input_len()), s);
                    let samples = pooled
                        .chunks_exact_mut(sample)
                        .zip(codes.chunks_exact_mut(sample));
                    for (k, (pooled, codes)) in samples.enumerate() {
                        transform_output_pooled(
                            &t,
                            g.out_channels,
                            &s.m,
                            t.span(k, members),
                            &mut s.rows,
                            epilogue,
                            PooledSample { pooled, codes },
                        );
                    }
                },
            );
    }
    // SAFETY: the chunks above cover `pooled[..len]`, one per group, and
    // `transform_output_pooled` writes every value of each sample's
    // `out_channels × (oh / 2) × (ow / 2)`.
    unsafe { pooled.set_len(len) };
    (pooled, codes)
}

/// The input gradient of [`super::kernels::input_grad`] for a convolution
/// that [`applies`]: the adjoint of the forward, sample by sample. The
/// output gradient's tiles are transformed as the weight gradient's are (`Z
/// = A dY Aᵀ`, zero in the slots that are not tiles), the 16 gemms take them
/// back through the filters (`dV[ξ] = U[ξ]ᵀ Z[ξ]`), and
/// [`scatter_input_grad`] adds each tile's `B dV Bᵀ` into the 4 × 4 block
/// of the padded input it was read from.
///
/// The forward's own tiling, so no transform of the padded output gradient
/// over the output channels (the "full" correlation's way) and fewer
/// slots where the convolution pads less than 2.
pub fn input_grad(g: &Geometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(applies(g));
    let t = Tiling::new(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let u = filters_for_input_grad(g, weight);
    let fill = |group: usize, dx: &mut [MaybeUninit<f32>], s: &mut Scratch| {
        let members = dx.len() / g.input_len();
        let dy = t.samples(dy, group, members, g.output_len());
        for (k, dy) in dy.chunks_exact(g.output_len()).enumerate() {
            transform_output_grad(&t, cout, dy, t.span(k, members), s);
        }
        input_grad_from_transformed(g, &t, &u, s, dx);
    };
    // SAFETY: each chunk is one group's input gradient, `in_channels × h ×
    // w` values per sample, and `input_grad_from_transformed` writes every
    // one of them.
    unsafe {
        par_build_uninit(
            g.batch * g.input_len(),
            t.group * g.input_len(),
            samples_per_task(g.batch).div_ceil(t.group),
            || Scratch::new(&t, cin, cout),
            fill,
        )
    }
}

/// `U[ξ]ᵀ` for [`input_grad_from_transformed`]: row c, column o is filter
/// (o, c) transformed, so that gemm reads it in rows.
fn filters_for_input_grad(g: &Geometry, weight: &[f32]) -> Vec<f32> {
    let cin = g.in_channels;
    transform_filters(cin, g.out_channels, |c, o| {
        weight[(o * cin + c) * 9..][..9].try_into().expect("9 taps")
    })
}

/// One group's input gradient `dx` (its samples', every value written)
/// from their transformed output gradient `Z` in `s.m`, each in its
/// [`Span`]: `dV[ξ] = U[ξ]ᵀ Z[ξ]` into `s.v` (whatever was there), then
/// [`scatter_input_grad`] for each sample.
fn input_grad_from_transformed(
    g: &Geometry,
    t: &Tiling,
    u: &[f32],
    s: &mut Scratch,
    dx: &mut [MaybeUninit<f32>],
) {
    let (cin, cout, count) = (g.in_channels, g.out_channels, t.slots());
    for xi in 0..XI {
        matmul(
            [cin, count, cout],
            &mut s.v[xi * t.block(cin)..][..cin * count],
            Operand::rows(&u[xi * cin * cout..(xi + 1) * cin * cout], cout),
            Operand::rows(&s.m[xi * t.block(cout)..][..cout * count], count),
            false,
        );
    }
    let members = dx.len() / g.input_len();
    for (k, dx) in dx.chunks_exact_mut(g.input_len()).enumerate() {
        scatter_input_grad(t, g.input, cin, t.span(k, members), s, dx);
    }
}

/// The output gradient of a convolution, as [`gradients`] reads it.
#[derive(Clone, Copy, Debug)]
pub enum OutputGrad<'a> {
    /// The gradient of every output, `[batch, out_channels, oh, ow]`.
    Dense(&'a [f32]),
    /// The gradient of the convolution's ReLU followed by a 2 × 2 max
    /// pooling of stride 2 (as [`forward_pooled`] computes them), per pooled
    /// value (`[batch, out_channels, oh / 2, ow / 2]` each): its gradient,
    /// the pooled value (where it is not positive, nor NaN, the ReLU passes
    /// nothing) and the position of its maximum in its window (row-major,
    /// 0–3). Each sample's dense gradient is formed from them as the
    /// pooling's and the ReLU's gradients would form it, one sample at a
    /// time, so it is never written out for the whole batch.
    ThroughReluPool {
        /// The pooled output's gradient.
        grad: &'a [f32],
        /// The pooled output.
        pooled: &'a [f32],
        /// Where each window's maximum is.
        codes: &'a [u8],
    },
}

impl OutputGrad<'_> {
    /// Sample `n`'s dense output gradient: a slice of it, or formed in
    /// `dense` (every value written).
    fn sample<'s>(&'s self, g: &Geometry, n: usize, dense: &'s mut Vec<f32>) -> &'s [f32] {
        let len = g.output_len();
        match *self {
            Self::Dense(dy) => &dy[n * len..][..len],
            Self::ThroughReluPool {
                grad,
                pooled,
                codes,
            } => {
                let [oh, ow] = g.output();
                let (ph, pw) = (oh / 2, ow / 2);
                dense.clear();
                dense.resize(len, 0.0);
                let mut k = n * g.out_channels * ph * pw;
                for plane in dense.chunks_exact_mut(oh * ow) {
                    for a in 0..ph {
                        for b in 0..pw {
                            let value = pooled[k];
                            if value.is_nan() || value > 0.0 {
                                let code = usize::from(codes[k]);
                                plane[(2 * a + code / 2) * ow + 2 * b + code % 2] = grad[k];
                            }
                            k += 1;
                        }
                    }
                }
                dense
            }
        }
    }
}

/// The input, weight and (with `bias`, else empty) bias gradients of a
/// convolution that [`applies`] in one pass over the samples: each
/// sample's output gradient is transformed once for both (`Z`), its input
/// for the weight's (`V`), whose buffer then takes the input gradient's
/// `dV`. The same values as [`input_grad`] and [`weight_grad`] (and the
/// bias's as [`super::kernels`] sums it), bit for bit: the same operations
/// on each sample, and the weight and bias gradients summed in the same
/// chunks, in the same order.
///
/// Through the pooling ([`OutputGrad::ThroughReluPool`]) the weight
/// gradient is instead summed directly over the windows' maxima that have
/// a gradient (`conv::window_weight_grad`; the same chunks, in the same order),
/// which is within float rounding of [`weight_grad`] of the dense
/// gradient; the input and bias gradients stay bit for bit those of the
/// dense gradient.
pub fn gradients(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    dy: OutputGrad,
    bias: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    debug_assert!(applies(g));
    let t = Tiling::new(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let u = filters_for_input_grad(g, weight);
    let len = g.batch * g.input_len();
    let mut dx: Vec<f32> = Vec::with_capacity(len);
    // Through the pooling, the weight gradient is summed over the windows
    // directly ([`window_weight_grad`]), in a sum of its own layout.
    let windows = match dy {
        OutputGrad::Dense(_) => None,
        OutputGrad::ThroughReluPool {
            grad,
            pooled,
            codes,
        } => Some(ThroughPool {
            grad,
            pooled,
            codes,
        }),
    };
    let sum_len = if windows.is_some() {
        window_weight_grad::sum_len(g)
    } else {
        XI * cout * cin
    };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx.spare_capacity_mut()[..len]
        .par_chunks_mut(g.input_len() * WEIGHT_GRAD_CHUNK)
        .zip(x.par_chunks(g.input_len() * WEIGHT_GRAD_CHUNK))
        .enumerate()
        .map(|(chunk, (dx, x))| {
            let mut s = Scratch::new(&t, cin, cout);
            let mut ws = windows.map(|through| (through, WindowScratch::new(g)));
            let mut total = vec![0.0; sum_len];
            let mut db = vec![0.0; if bias { cout } else { 0 }];
            let mut dense = Vec::new();
            let group_len = t.group * g.input_len();
            for (j, (dx, x)) in dx
                .chunks_mut(group_len)
                .zip(x.chunks(group_len))
                .enumerate()
            {
                let members = x.len() / g.input_len();
                for (k, x) in x.chunks_exact(g.input_len()).enumerate() {
                    let n = chunk * WEIGHT_GRAD_CHUNK + j * t.group + k;
                    let dense = dy.sample(g, n, &mut dense);
                    let span = t.span(k, members);
                    transform_output_grad(&t, cout, dense, span, &mut s);
                    if let Some((through, ws)) = &mut ws {
                        window_weight_grad::add_weight_grad_of_sample(
                            g, x, *through, n, dense, ws, &mut total,
                        );
                    } else {
                        transform_input(&t, g.input, cin, x, span, &mut s);
                    }
                    add_bias_grad_of_sample(g, dense, &mut db);
                }
                if ws.is_none() {
                    add_weight_grad_of_group(g, &t, &mut s, &mut total, j > 0);
                }
                input_grad_from_transformed(g, &t, &u, &mut s, dx);
            }
            (total, db)
        })
        .collect();
    // SAFETY: the chunks above cover `dx[..len]` (one per chunk of samples,
    // as `x`'s), and `input_grad_from_transformed` wrote every value of each
    // sample's.
    unsafe { dx.set_len(len) };
    let (weights, biases): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
    let mut biases = biases.into_iter();
    let mut db = biases
        .next()
        .unwrap_or_else(|| vec![0.0; if bias { cout } else { 0 }]);
    for partial in biases {
        add_into(&mut db, &partial);
    }
    let dw = if windows.is_some() {
        window_weight_grad::weight_grad_from_partials(g, weights)
    } else {
        weight_grad_from_partials(g, weights)
    };
    (dx, dw, db)
}

/// The adjoint of [`input_combination`]: the gradients of `d0..d3` from
/// those of its four outputs, `B v` with `B = (Bᵀ)ᵀ`.
#[inline(always)]
fn input_combination_adjoint([v0, v1, v2, v3]: [f32; 4]) -> [f32; 4] {
    [v0, v1 - v2 + v3, v1 + v2 - v0, -v3]
}

/// The adjoint of [`transform_input_body`]: one sample's input gradient
/// `dx` (`[channels, h, w]`, every value written) from `dV[ξ][c][slot]` in
/// the sample's `span` of `s.v`, which is zero in the slots that are not
/// tiles (so that the rows' right margins, which a longer span of an
/// earlier call wrote into, hold zeros there too: the values of positions
/// past every sample's tiles). Per channel, the
/// columns' `· Bᵀ` (a tile's columns `b` and `b + 1` of the two column
/// parities, so each parity row takes slot `k` and slot `k − 1`), then the
/// rows' `B ·` into the four parity planes (rows `a` and `a + 1`: plane
/// positions `k` and `k − half`), then the channel's own positions out of
/// the planes. The overlapping tiles' sums are formed in this fixed order
/// whatever the thread, and each plane position is written, not added to,
/// so the planes need no zeroing.
#[inline(always)]
fn scatter_input_grad_body(
    t: &Tiling,
    input: [usize; 2],
    channels: usize,
    span: Span,
    s: &mut Scratch,
    dx: &mut [MaybeUninit<f32>],
) {
    let (half, slots, len, block) = (t.half(), t.slots(), span.len, t.block(channels));
    let n = len + 1;
    let [h, w] = input;
    let [top, left] = t.before;
    let width = t.margined_row();
    let Scratch {
        input_grad_planes: planes,
        margined_rows: rows,
        v,
        ..
    } = s;
    for c in 0..channels {
        // `· Bᵀ` on the columns: row i of each column parity (rows[i] even,
        // rows[4 + i] odd), over plane positions 0..=slots.
        for i in 0..4 {
            let dv: [&[f32]; 4] =
                std::array::from_fn(|j| &v[(i * 4 + j) * block + c * slots + span.start..][..len]);
            let [even, odd] = runs(rows, [i * width + half, (4 + i) * width + half], n);
            let [first, last] = [0, len - 1].map(|k| input_combination_adjoint(dv.map(|r| r[k])));
            even[0] = first[0];
            odd[0] = first[1];
            even[len] = last[2];
            odd[len] = last[3];
            map_rows(
                [
                    dv[0],
                    dv[1],
                    dv[2],
                    dv[3],
                    &dv[0][1..],
                    &dv[1][1..],
                    &dv[2][1..],
                    &dv[3][1..],
                ],
                [&mut even[1..len], &mut odd[1..len]],
                |[b0, b1, b2, b3, a0, a1, a2, a3]| {
                    let here = input_combination_adjoint([a0, a1, a2, a3]);
                    let before = input_combination_adjoint([b0, b1, b2, b3]);
                    [here[0] + before[2], here[1] + before[3]]
                },
            );
        }
        // `B ·` on the rows: plane position k takes row a's part from
        // position k and row a + 1's from position k − half, which the
        // rows' zero margins turn into one pass over every position.
        for parity in 0..2 {
            let d: [&[f32]; 4] =
                std::array::from_fn(|i| &rows[(parity * 4 + i) * width..][..width]);
            let (first, second) = planes.split_at_mut(2);
            map_rows(
                [
                    &d[0][half..],
                    &d[1][half..],
                    &d[2][half..],
                    &d[3][half..],
                    d[0],
                    d[1],
                    d[2],
                    d[3],
                ],
                [
                    &mut first[parity][..half + n],
                    &mut second[parity][..half + n],
                ],
                |[a0, a1, a2, a3, b0, b1, b2, b3]| {
                    let here = input_combination_adjoint([a0, a1, a2, a3]);
                    let before = input_combination_adjoint([b0, b1, b2, b3]);
                    [here[0] + before[2], here[1] + before[3]]
                },
            );
        }
        // The channel's own positions, rows apart by parity, columns
        // interleaved (the inverse of `fill_planes`).
        for r in 0..h {
            let padded = top + r;
            let (even, odd) = (&planes[2 * (padded % 2)], &planes[2 * (padded % 2) + 1]);
            let at = (padded / 2) * half + left / 2;
            let row = &mut dx[(c * h + r) * w..][..w];
            let (first, second) = if left % 2 == 0 {
                (&even[at..], &odd[at..])
            } else {
                (&odd[at..], &even[at + 1..])
            };
            interleave(&first[..w.div_ceil(2)], &second[..w / 2], row);
        }
    }
}

/// `Z[ξ][out][slot] = (A e Aᵀ)[ξ]` for the 2×2 block `e` of each tile of
/// one sample's output gradient `dy` (`[outputs, oh, ow]`; zero past an odd
/// edge and in the slots that are not tiles), in the sample's `span` of
/// each row, with `A = (Aᵀ)ᵀ`, `Aᵀ = [1 1
/// 1 0; 0 1 −1 −1]`: over its parity planes (a tile's `e` is even row `a`,
/// columns even and odd `b`, and odd row `a`, the same columns).
#[inline(always)]
fn transform_output_grad_body(t: &Tiling, outputs: usize, dy: &[f32], span: Span, s: &mut Scratch) {
    let (slots, len, block) = (t.slots(), span.len, t.block(outputs));
    let [oh, ow] = t.out;
    let Scratch {
        grad_planes: planes,
        m: z,
        ..
    } = s;
    for o in 0..outputs {
        fill_planes(
            planes,
            t.half(),
            t.tiles[0],
            [0, 0],
            t.out,
            &dy[o * oh * ow..][..oh * ow],
        );
        let e: [&[f32]; 4] = std::array::from_fn(|k| &planes[k][..len]);
        for i in 0..4 {
            let starts = std::array::from_fn(|j| (i * 4 + j) * block + o * slots + span.start);
            map_rows(e, runs(z, starts, len), |[p0, q0, p1, q1]| {
                // Row i of A e: e0, e0 + e1, e0 − e1, −e1; then · Aᵀ.
                let (p, q) = match i {
                    0 => (p0, q0),
                    1 => (p0 + p1, q0 + q1),
                    2 => (p0 - p1, q0 - q1),
                    _ => (-p1, -q1),
                };
                [p, p + q, p - q, -q]
            });
        }
    }
}

/// The weight gradient of [`super::kernels::weight_grad`] for a
/// convolution that [`applies`]: `[out, in, 3, 3]`.
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(applies(g));
    let t = Tiling::new(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(g.input_len() * WEIGHT_GRAD_CHUNK)
        .zip(dy.par_chunks(g.output_len() * WEIGHT_GRAD_CHUNK))
        .map(|(x, dy)| {
            let mut s = Scratch::new(&t, cin, cout);
            let mut total = vec![0.0; XI * cout * cin];
            let groups = x
                .chunks(t.group * g.input_len())
                .zip(dy.chunks(t.group * g.output_len()));
            for (j, (x, dy)) in groups.enumerate() {
                let members = x.len() / g.input_len();
                let samples = x
                    .chunks_exact(g.input_len())
                    .zip(dy.chunks_exact(g.output_len()));
                for (k, (x, dy)) in samples.enumerate() {
                    let span = t.span(k, members);
                    transform_input(&t, g.input, cin, x, span, &mut s);
                    transform_output_grad(&t, cout, dy, span, &mut s);
                }
                add_weight_grad_of_group(g, &t, &mut s, &mut total, j > 0);
            }
            total
        })
        .collect();
    weight_grad_from_partials(g, partials)
}

/// One group's part of the weight gradient, `S[ξ] (out × in) += Z[ξ]
/// (out × slots) · V[ξ]ᵀ`, into `total` (overwritten unless `accumulate`),
/// from the group's transformed inputs `V` in `s.v` and output gradients
/// `Z` in `s.m` (each sample's in its [`Span`]).
fn add_weight_grad_of_group(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch,
    total: &mut [f32],
    accumulate: bool,
) {
    let (cin, cout, count) = (g.in_channels, g.out_channels, t.slots());
    s.v_transposed.resize(count * cin, 0.0);
    for xi in 0..XI {
        // Both operands are summed along their rows (the slots), which gemm
        // would repack one value at a time for one of them: `V[ξ]ᵀ` is
        // copied into `slots × in` first, 8 × 8 blocks at a time. Only the
        // layout changes, not the sums' order.
        let v = &s.v[xi * t.block(cin)..][..cin * count];
        transpose(v, count, [cin, count], &mut s.v_transposed, cin);
        matmul(
            [cout, cin, count],
            &mut total[xi * cout * cin..(xi + 1) * cout * cin],
            Operand::rows(&s.m[xi * t.block(cout)..][..cout * count], count),
            Operand::rows(&s.v_transposed, cin),
            accumulate,
        );
    }
}

/// The weight gradient `[out, in, 3, 3]` from the chunks' sums of
/// transformed products, added in chunk order.
fn weight_grad_from_partials(g: &Geometry, partials: Vec<Vec<f32>>) -> Vec<f32> {
    let (cin, cout) = (g.in_channels, g.out_channels);
    let total = sum_in_order(partials, XI * cout * cin);
    filters_from_transformed(&total, cout, cin)
}

/// `dW[o][c] = Gᵀ S[·][o][c] G` (3 × 3) from the summed transformed
/// products `S[ξ][o][c]`, with `Gᵀ = [1 ½ ½ 0; 0 ½ −½
/// 0; 0 ½ ½ 1]`.
fn filters_from_transformed(s: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let count = rows * cols;
    let mut dw = vec![0.0; count * 9];
    // Gᵀ v for the four values v of each filter, run by run.
    let gt = |v: [&[f32]; 4], out: [&mut [f32]; 3]| {
        let [out0, out1, out2] = out;
        for k in 0..out0.len() {
            let v = [v[0][k], v[1][k], v[2][k], v[3][k]];
            out0[k] = v[0] + 0.5 * (v[1] + v[2]);
            out1[k] = 0.5 * (v[1] - v[2]);
            out2[k] = 0.5 * (v[1] + v[2]) + v[3];
        }
    };
    let mut columns = [[[0.0f32; FILTER_STRETCH]; 3]; 4];
    let mut taps = [[0.0f32; FILTER_STRETCH]; 9];
    for start in (0..count).step_by(FILTER_STRETCH) {
        let n = FILTER_STRETCH.min(count - start);
        // Gᵀ S: 3 × 4, column by column.
        for (j, column) in columns.iter_mut().enumerate() {
            let at = |i: usize| &s[(i * 4 + j) * count + start..][..n];
            let [c0, c1, c2] = column;
            gt(
                [at(0), at(1), at(2), at(3)],
                [&mut c0[..n], &mut c1[..n], &mut c2[..n]],
            );
        }
        // (Gᵀ S) G: row i of the 3 × 3 filter from row i of each column.
        for (i, row) in taps.chunks_exact_mut(3).enumerate() {
            let [t0, t1, t2] = row else {
                unreachable!("rows of 3")
            };
            let v = std::array::from_fn(|j| &columns[j][i][..n]);
            gt(v, [&mut t0[..n], &mut t1[..n], &mut t2[..n]]);
        }
        for (k, filter) in dw[start * 9..][..n * 9].chunks_exact_mut(9).enumerate() {
            for (value, tap) in filter.iter_mut().zip(&taps) {
                *value = tap[k];
            }
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::kernels;
    use crate::test_values::{assert_close, on_threads, values};

    /// Every geometry the module takes, odd and even sizes, padding 0–2
    /// (also uneven), a batch that leaves a short last chunk.
    fn geometries() -> Vec<Geometry> {
        let base = Geometry {
            batch: 11,
            in_channels: 32,
            input: [7, 6],
            out_channels: 9,
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
                padding: [(2, 2), (2, 2)],
                input: [5, 8],
                ..base
            },
            Geometry {
                padding: [(0, 2), (1, 0)],
                input: [6, 9],
                in_channels: 33,
                out_channels: 8,
                ..base
            },
            Geometry {
                input: [3, 3],
                batch: 2,
                ..base
            },
            // Pairs of samples share a row of slots (`Tiling::pair_saves`):
            // 56 of a sample's, and 20 then the rest of the row's 48 for the
            // second of a pair (a longer span than the first's); the batch of
            // 11 leaves a lone last sample.
            Geometry {
                padding: [(1, 1), (1, 1)],
                input: [14, 14],
                ..base
            },
            Geometry {
                padding: [(1, 1), (1, 1)],
                input: [7, 7],
                ..base
            },
        ]
    }

    /// The convolution and both gradients computed in `f64`, directly.
    fn direct(g: &Geometry, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
        let [oh, ow] = g.output();
        let [h, wd] = g.input;
        let mut y = vec![0.0f64; g.batch * g.output_len()];
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for n in 0..g.batch {
            for o in 0..g.out_channels {
                for r in 0..oh {
                    for col in 0..ow {
                        let yi = ((n * g.out_channels + o) * oh + r) * ow + col;
                        for c in 0..g.in_channels {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let ih = (r + i) as isize - g.padding[0].0 as isize;
                                    let iw = (col + j) as isize - g.padding[1].0 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.in_channels + c) * h + ih as usize) * wd
                                        + iw as usize;
                                    let wi = ((o * g.in_channels + c) * 3 + i) * 3 + j;
                                    y[yi] += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += dy[yi] as f64 * w[wi] as f64;
                                    dw[wi] += dy[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw].map(|v| v.into_iter().map(|v| v as f32).collect())
    }

    /// A gradient through a ReLU and a 2 × 2 pooling of a convolution's
    /// output, as [`OutputGrad::ThroughReluPool`] takes it, and the dense
    /// output gradient it makes.
    struct ThroughReluPool {
        /// Per pooled value; every fifth zero, as a dropout leaves them.
        grad: Vec<f32>,
        /// About half of them not positive: the ReLU passed nothing there.
        pooled: Vec<f32>,
        /// The position of each one's maximum in its window.
        codes: Vec<u8>,
        /// The output gradient they make, `[batch, out, oh, ow]`.
        dense: Vec<f32>,
    }

    impl ThroughReluPool {
        /// One for `g`'s output, from the value sequence `seed`.
        fn new(g: &Geometry, seed: u32) -> Self {
            let [oh, ow] = g.output();
            let (ph, pw) = (oh / 2, ow / 2);
            let len = g.batch * g.out_channels * ph * pw;
            let mut grad = values(len, seed);
            grad.iter_mut().step_by(5).for_each(|v| *v = 0.0);
            let pooled = values(len, seed + 1);
            let codes: Vec<u8> = (0..len).map(|k| ((k * 7 + k / 3) % 4) as u8).collect();
            let mut dense = vec![0.0; g.batch * g.output_len()];
            for (k, ((&gradient, &value), &code)) in
                grad.iter().zip(&pooled).zip(&codes).enumerate()
            {
                let (plane, a, b, code) = (k / (ph * pw), k / pw % ph, k % pw, usize::from(code));
                if value > 0.0 {
                    dense[(plane * oh + 2 * a + code / 2) * ow + 2 * b + code % 2] = gradient;
                }
            }
            Self {
                grad,
                pooled,
                codes,
                dense,
            }
        }

        /// As [`gradients`] takes it.
        fn output_grad(&self) -> OutputGrad<'_> {
            OutputGrad::ThroughReluPool {
                grad: &self.grad,
                pooled: &self.pooled,
                codes: &self.codes,
            }
        }
    }

    #[test]
    fn through_the_pooling_the_gradients_equal_a_direct_convolution() {
        for g in geometries() {
            let x = values(g.batch * g.input_len(), 1);
            let w = values(g.weight_len(), 2);
            let through = ThroughReluPool::new(&g, 3);
            let dense = &through.dense;
            let (dx, dw, db) = gradients(&g, &x, &w, through.output_grad(), true);
            let [_, direct_dx, direct_dw] = direct(&g, &x, &w, dense);
            assert_close(&dw, &direct_dw, "dw", &g);
            assert_close(&dx, &direct_dx, "dx", &g);
            let (dense_dx, _, dense_db) = gradients(&g, &x, &w, OutputGrad::Dense(dense), true);
            assert!(
                dx == dense_dx && db == dense_db,
                "the input and bias gradients bit for bit as from the dense gradient: {g:?}"
            );
        }
    }

    #[test]
    fn through_the_pooling_an_input_that_is_not_finite_gives_the_direct_convolutions_nans() {
        let g = geometries()[1];
        let mut x = values(g.batch * g.input_len(), 4);
        // Sample 3, channel 5: an infinity, and a NaN in another channel.
        x[3 * g.input_len() + 5 * g.input[0] * g.input[1] + 8] = f32::INFINITY;
        x[3 * g.input_len() + 9 * g.input[0] * g.input[1] + 20] = f32::NAN;
        let w = values(g.weight_len(), 5);
        let through = ThroughReluPool::new(&g, 6);
        let (_, dw, _) = gradients(&g, &x, &w, through.output_grad(), false);
        let [_, _, direct_dw] = direct(&g, &x, &w, &through.dense);
        let not_finite = direct_dw.iter().filter(|v| !v.is_finite()).count();
        assert!(not_finite > 0, "the direct sum has NaNs (0 × ∞)");
        for (k, (ours, direct)) in dw.iter().zip(&direct_dw).enumerate() {
            if direct.is_finite() {
                assert!(
                    (ours - direct).abs() <= 1e-4 * direct.abs().max(1.0),
                    "dw[{k}]"
                );
            } else {
                assert!(
                    ours.to_bits() == direct.to_bits() || (ours.is_nan() && direct.is_nan()),
                    "dw[{k}]: {ours} where the direct sum has {direct}"
                );
            }
        }
    }

    #[test]
    fn applies_only_to_3x3_stride_1_with_enough_channels() {
        let g = geometries()[1];
        assert!(applies(&g));
        assert!(!applies(&Geometry {
            stride: [2, 2],
            ..g
        }));
        assert!(!applies(&Geometry {
            dilation: [1, 2],
            ..g
        }));
        assert!(!applies(&Geometry {
            kernel: [3, 5],
            ..g
        }));
        assert!(!applies(&Geometry {
            padding: [(3, 1), (1, 1)],
            ..g
        }));
        assert!(!applies(&Geometry {
            in_channels: 1,
            ..g
        }));
        let few = Geometry {
            in_channels: 16,
            ..g
        };
        assert!(!applies(&few), "16 channels at 7 × 6");
        assert!(applies(&Geometry {
            input: [16, 16],
            ..few
        }));
    }

    #[test]
    fn forward_and_gradients_equal_a_direct_convolution() {
        for g in geometries() {
            assert!(applies(&g), "{g:?}");
            let x = values(g.batch * g.input_len(), 1);
            let w = values(g.weight_len(), 2);
            let dy = values(g.batch * g.output_len(), 3);
            let [y, dx, dw] = direct(&g, &x, &w, &dy);
            assert_close(&forward(&g, &x, &w, Epilogue::default()), &y, "y", &g);
            assert_close(&input_grad(&g, &w, &dy), &dx, "dx", &g);
            assert_close(&weight_grad(&g, &x, &dy), &dw, "dw", &g);
            assert!(
                gradients(&g, &x, &w, OutputGrad::Dense(&dy), false)
                    == (
                        input_grad(&g, &w, &dy),
                        weight_grad(&g, &x, &dy),
                        Vec::new()
                    ),
                "both gradients in one pass, bit for bit as apart: {g:?}"
            );
            let (_, db) = kernels::weight_and_bias_grad(&g, &x, &dy);
            assert!(
                gradients(&g, &x, &w, OutputGrad::Dense(&dy), true).2 == db,
                "the bias's in the same pass, bit for bit as apart: {g:?}"
            );
        }
    }

    #[test]
    fn the_epilogue_adds_the_bias_then_clamps_at_zero() {
        let g = geometries()[3];
        let x = values(g.batch * g.input_len(), 4);
        let w = values(g.weight_len(), 5);
        let bias = values(g.out_channels, 6);
        let positions = g.positions();
        let [y, _, _] = direct(&g, &x, &w, &vec![0.0; g.batch * g.output_len()]);
        let reference: Vec<f32> = y
            .into_iter()
            .enumerate()
            .map(|(k, y)| (y + bias[(k / positions) % g.out_channels]).max(0.0))
            .collect();
        let epilogue = Epilogue {
            bias: Some(&bias),
            relu: true,
        };
        assert_close(
            &forward(&g, &x, &w, epilogue),
            &reference,
            "relu(y + b)",
            &g,
        );
    }

    #[test]
    fn the_kernels_take_this_path_where_it_applies() {
        let g = geometries()[0];
        let x = values(g.batch * g.input_len(), 7);
        let w = values(g.weight_len(), 8);
        let dy = values(g.batch * g.output_len(), 9);
        let epilogue = Epilogue::default();
        assert_eq!(
            kernels::forward(&g, &x, &w, epilogue),
            forward(&g, &x, &w, epilogue)
        );
        assert_eq!(kernels::input_grad(&g, &w, &dy), input_grad(&g, &w, &dy));
        assert_eq!(kernels::weight_grad(&g, &x, &dy), weight_grad(&g, &x, &dy));
    }

    #[test]
    fn pairs_of_samples_share_the_slots_where_that_saves_a_tenth() {
        let groups: Vec<usize> = geometries().iter().map(|g| Tiling::new(g).group).collect();
        // The last two geometries are there for the pairs (above); 28 × 28
        // outputs (432 slots for two against 2 × 224) keep one sample a row.
        assert_eq!(groups[groups.len() - 2..], [2, 2]);
        let wide = Geometry {
            input: [28, 28],
            ..geometries()[1]
        };
        assert_eq!(Tiling::new(&wide).group, 1);
        let t = Tiling::new(&geometries()[geometries().len() - 1]);
        let spans = [t.span(0, 2), t.span(1, 2), t.span(0, 1)].map(|s| (s.start, s.len));
        assert_eq!(spans, [(0, 20), (20, 28), (0, 48)]);
    }

    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        // One sample a row of slots, and pairs (the last geometry) with a
        // lone last sample.
        for base in [geometries()[1], geometries()[geometries().len() - 1]] {
            let g = Geometry { batch: 21, ..base };
            let x = values(g.batch * g.input_len(), 10);
            let w = values(g.weight_len(), 11);
            let dy = values(g.batch * g.output_len(), 12);
            let through = ThroughReluPool::new(&g, 13);
            let run = |threads: usize| {
                on_threads(threads, || {
                    (
                        forward(&g, &x, &w, Epilogue::default()),
                        input_grad(&g, &w, &dy),
                        weight_grad(&g, &x, &dy),
                        gradients(&g, &x, &w, OutputGrad::Dense(&dy), true),
                        gradients(&g, &x, &w, through.output_grad(), true),
                    )
                })
            };
            assert!(run(1) == run(3), "bitwise equal on 1 and 3 threads: {g:?}");
        }
    }
}
