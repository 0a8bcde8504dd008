//! One gemm on this thread over row-major operands given by their strides
//! (the `gemm` crate, no threads of its own: the kernels spread samples
//! over rayon's pool instead), shared by [`super::kernels`] and
//! [`super::winograd`].

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};

use crate::buffers::assume_written;

/// A row-major matrix operand: its values and `(row, column)` strides (a
/// transpose is the same values with the strides swapped).
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    pub(crate) fn rows(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            row_stride: cols,
            col_stride: 1,
        }
    }

    pub(crate) fn transposed(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`, on this thread.
pub(super) fn matmul(
    dims: [usize; 3],
    dst: &mut [f32],
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    let n = dims[1];
    assert!(dst.len() >= dims[0] * n, "an output of m × n values");
    // SAFETY: `dst` is initialised, exclusively borrowed, at least m × n
    // values long.
    unsafe { gemm_into(dims, dst.as_mut_ptr(), n, lhs, rhs, accumulate) }
}

/// `dst (m×n, row-major) = lhs (m×k) · rhs (k×n)` into a buffer of exactly
/// `m × n` values that need not be initialised (gemm does not read its
/// output here), on this thread; the written values.
pub(super) fn matmul_overwrite<'a>(
    dims @ [m, n, _]: [usize; 3],
    dst: &'a mut [MaybeUninit<f32>],
    lhs: Operand,
    rhs: Operand,
) -> &'a mut [f32] {
    assert_eq!(dst.len(), m * n, "an output of m × n values");
    // SAFETY: `dst` is exclusively borrowed and `dst.len()` long;
    // `MaybeUninit<f32>` has `f32`'s layout; without `accumulate` gemm
    // writes every one of the m × n values and reads none of them, so they
    // are all initialised afterwards.
    unsafe {
        gemm_into(dims, dst.as_mut_ptr().cast(), n, lhs, rhs, false);
        assume_written(dst)
    }
}

/// `dst (m×n at row stride dst_row_stride) = lhs (m×k) · rhs (k×n)`, on
/// this thread: a block of a larger row-major output (gemm does not read
/// its output here, so it need not be initialised).
///
/// # Safety
///
/// `dst` must be valid for writes of row `r < m`, column `c < n` at
/// `r · dst_row_stride + c`, with no other thread reading or writing
/// those values during the call.
pub(crate) unsafe fn matmul_overwrite_strided(
    dims: [usize; 3],
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
) {
    // SAFETY: as the caller promises.
    unsafe { gemm_into(dims, dst, dst_row_stride, lhs, rhs, false) }
}

/// The gemm of [`matmul`] on a raw output of row stride `dst_row_stride`.
///
/// # Safety
///
/// `dst` must be valid for writes of row `r < m`, column `c < n` at `r ·
/// dst_row_stride + c`, not aliased, and initialised there when
/// `accumulate` is set.
unsafe fn gemm_into(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    let reach = |o: &Operand, rows: usize, cols: usize| {
        rows == 0
            || cols == 0
            || (rows - 1) * o.row_stride + (cols - 1) * o.col_stride < o.values.len()
    };
    assert!(
        reach(&lhs, m, k) && reach(&rhs, k, n),
        "matmul operand out of bounds"
    );
    // SAFETY: the asserts above keep every index gemm reads (row·rs + col·cs
    // below the given sizes) inside the slices, and the caller gives room
    // for m×n values at strides (dst_row_stride, 1), readable when
    // `accumulate` is set.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.values.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.values.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `total += part`, value by value.
pub(super) fn add_into(total: &mut [f32], part: &[f32]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t += p;
    }
}

/// Values per stretch of [`sum_in_order`]: 16 KiB, in L1.
const SUM_STRETCH: usize = 4096;

/// The sum of `partials` (each `len` long; zeros when there are none),
/// value by value, adding them in their order as [`add_into`] one after
/// the other would: the same bits. Stretch by stretch, every partial added
/// into a stretch of the total while it stays in L1, where adding each
/// partial into the whole total in turn streamed the total through the
/// caches once per partial.
pub(super) fn sum_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut partials = partials.into_iter();
    let Some(mut total) = partials.next() else {
        return vec![0.0; len];
    };
    let rest: Vec<Vec<f32>> = partials.collect();
    for (i, stretch) in total.chunks_mut(SUM_STRETCH).enumerate() {
        for part in &rest {
            add_into(stretch, &part[i * SUM_STRETCH..]);
        }
    }
    total
}
