//! A dense layer `y = x · W + b` (Burn's [`burn::nn::Linear`]: `x` is
//! `[batch, d_in]`, `W` is `[d_in, d_out]`) and its three gradients, on
//! plain row-major `f32` slices: each a gemm cut into fixed column or row
//! blocks that run on rayon's pool, written into buffers that are not
//! zeroed first.
//!
//! Invariants:
//! * **Deterministic whatever the number of threads**: the blocks are
//!   fixed ([`BLOCK`]), each output value is computed by one gemm call over
//!   the whole reduction, and the bias gradient sums the batch in order.
//! * **The same values as Burn's matmul within float rounding** (tests in
//!   [`super`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::conv::gemm::{Operand, matmul_overwrite_strided};
use crate::relu::relu;

/// Columns (or rows) of the output per block in the gradients: one gemm
/// call, one rayon task. Fixed, so that a value's sum does not depend on
/// the threads; `simple_cnn`'s `fc1` (9216 → 128) gets 36 blocks in each
/// gradient, the MLP's first layer (784 → 256) 4 in its weight gradient,
/// so that both run on every core (at 1,024 the MLP's ran on one).
const BLOCK: usize = 256;

/// Columns of the forward's output per block: its `d_out` is small (128 in
/// the networks here) and each block reads the whole input, so fewer,
/// narrower blocks than [`BLOCK`].
const FORWARD_BLOCK: usize = 64;

/// The shape of one dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dense {
    /// Rows of `x`.
    pub batch: usize,
    /// Inputs per row.
    pub d_in: usize,
    /// Outputs per row.
    pub d_out: usize,
}

/// `[rows, cols]` values built in column blocks of `block`: `fill(first,
/// width, dst)` writes every value of columns `first..first + width` of a
/// `rows × cols` row-major matrix whose first value `dst` points at.
fn by_column_blocks(
    [rows, cols]: [usize; 2],
    block: usize,
    fill: impl Fn(usize, usize, SendPtr) + Sync + Send,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(rows * cols);
    let dst = SendPtr(out.spare_capacity_mut().as_mut_ptr().cast());
    (0..cols.div_ceil(block.max(1)))
        .into_par_iter()
        .for_each(|b| {
            let first = b * block;
            fill(first, block.min(cols - first), dst);
        });
    // SAFETY: the blocks cover every column of every row, and each `fill`
    // wrote all of its block's values (see the callers).
    unsafe { out.set_len(rows * cols) };
    out
}

/// A pointer to an output that blocks write disjoint parts of.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each block writes only its own columns (or rows), so no value is
// written by two threads, and the vector outlives the parallel loop.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `x · W` (+ `bias`, then `relu` when set): `[batch, d_out]`.
pub fn forward(d: &Dense, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu_on: bool) -> Vec<f32> {
    check(d, x, w);
    let mut y = by_column_blocks([d.batch, d.d_out], FORWARD_BLOCK, |first, width, dst| {
        // SAFETY: columns `first..first + width` of the `batch × d_out`
        // output, at row stride `d_out`; gemm writes all of them.
        unsafe {
            matmul_overwrite_strided(
                [d.batch, width, d.d_in],
                dst.0.add(first),
                d.d_out,
                Operand::rows(x, d.d_in),
                Operand::rows(&w[first..], d.d_out),
            )
        }
    });
    if bias.is_some() || relu_on {
        for row in y.chunks_mut(d.d_out.max(1)) {
            for (k, value) in row.iter_mut().enumerate() {
                let biased = *value + bias.map_or(0.0, |b| b[k]);
                *value = if relu_on { relu(biased) } else { biased };
            }
        }
    }
    y
}

/// The input's gradient `dy · Wᵀ`: `[batch, d_in]`.
pub fn input_grad(d: &Dense, w: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), d.d_in * d.d_out, "weight length");
    assert_eq!(dy.len(), d.batch * d.d_out, "output gradient length");
    by_column_blocks([d.batch, d.d_in], BLOCK, |first, width, dst| {
        // SAFETY: columns `first..first + width` of the `batch × d_in`
        // gradient, at row stride `d_in`; gemm writes all of them. `Wᵀ`'s
        // columns `first..` are `W`'s rows `first..`.
        unsafe {
            matmul_overwrite_strided(
                [d.batch, width, d.d_out],
                dst.0.add(first),
                d.d_in,
                Operand::rows(dy, d.d_out),
                Operand::transposed(&w[first * d.d_out..], d.d_out),
            )
        }
    })
}

/// The weight's gradient `xᵀ · dy`: `[d_in, d_out]`, in blocks of rows.
pub fn weight_grad(d: &Dense, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), d.batch * d.d_in, "input length");
    assert_eq!(dy.len(), d.batch * d.d_out, "output gradient length");
    let mut dw: Vec<f32> = Vec::with_capacity(d.d_in * d.d_out);
    if d.d_out > 0 {
        dw.spare_capacity_mut()[..d.d_in * d.d_out]
            .par_chunks_mut(BLOCK * d.d_out)
            .enumerate()
            .for_each(|(b, rows): (usize, &mut [MaybeUninit<f32>])| {
                let (first, height) = (b * BLOCK, rows.len() / d.d_out);
                // SAFETY: `rows` is rows `first..first + height` of the
                // gradient, exactly `height × d_out` values, all written.
                unsafe {
                    matmul_overwrite_strided(
                        [height, d.d_out, d.batch],
                        rows.as_mut_ptr().cast(),
                        d.d_out,
                        Operand::transposed(&x[first..], d.d_in),
                        Operand::rows(dy, d.d_out),
                    )
                }
            });
    }
    // SAFETY: the chunks cover the whole gradient and each was written.
    unsafe { dw.set_len(d.d_in * d.d_out) };
    dw
}

/// The bias's gradient: `dy` summed over the batch, row after row.
pub fn bias_grad(d: &Dense, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0; d.d_out];
    for row in dy.chunks(d.d_out.max(1)) {
        for (total, &v) in db.iter_mut().zip(row) {
            *total += v;
        }
    }
    db
}

fn check(d: &Dense, x: &[f32], w: &[f32]) {
    assert_eq!(x.len(), d.batch * d.d_in, "input length");
    assert_eq!(w.len(), d.d_in * d.d_out, "weight length");
}
