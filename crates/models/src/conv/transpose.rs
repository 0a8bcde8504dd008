//! A matrix of `f32` transposed from one strided layout into another,
//! 8 × 8 blocks at a time in registers where the CPU has AVX: for
//! `window_weight_grad`'s channels-last copy of a sample, and for the
//! `V[ξ]ᵀ` that `winograd`'s weight gradient hands to gemm.
//!
//! Invariant: **only values are moved**, none computed, so the blocks and
//! the value-by-value rest give the same bits (tested below for sizes
//! around the blocks, with nothing outside the transpose written).

/// `to[j · to_stride + i] = from[i · from_stride + j]` for `i < rows` and
/// `j < cols`; nothing else of `to` is written.
///
/// # Panics
///
/// If a value read or written would be out of bounds.
pub(super) fn transpose(
    from: &[f32],
    from_stride: usize,
    [rows, cols]: [usize; 2],
    to: &mut [f32],
    to_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * from_stride + cols <= from.len(),
        "transpose read out of bounds"
    );
    assert!(
        (cols - 1) * to_stride + rows <= to.len(),
        "transpose write out of bounds"
    );
    // Blocks of 8 × 8 where the CPU has AVX (one load and one store per 8
    // values rather than one per value), the rest one value at a time.
    let mut blocked = [0, 0];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        blocked = [rows / 8 * 8, cols / 8 * 8];
        for i0 in (0..blocked[0]).step_by(8) {
            for j0 in (0..blocked[1]).step_by(8) {
                // SAFETY: the CPU has AVX; rows i0..i0 + 8 ≤ rows are read
                // at columns j0..j0 + 8 ≤ cols, and rows j0..j0 + 8 of `to`
                // written at columns i0..i0 + 8, in bounds by the asserts.
                unsafe {
                    transpose_8x8(
                        from.as_ptr().add(i0 * from_stride + j0),
                        from_stride,
                        to.as_mut_ptr().add(j0 * to_stride + i0),
                        to_stride,
                    )
                };
            }
        }
    }
    for i in 0..rows {
        let first = if i < blocked[0] { blocked[1] } else { 0 };
        for j in first..cols {
            to[j * to_stride + i] = from[i * from_stride + j];
        }
    }
}

/// `to[j · to_stride + i] = from[i · from_stride + j]` for `i, j < 8`.
///
/// # Safety
///
/// The CPU has AVX; the 8 runs of 8 values read and the 8 written are in
/// bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(from: *const f32, from_stride: usize, to: *mut f32, to_stride: usize) {
    use std::arch::x86_64::*;
    // Loads and stores through an all-set mask: they compile to the plain
    // unaligned moves, whereas `_mm256_loadu_ps` and `_mm256_storeu_ps`
    // copy through the stack with a check per vector in a crate built with
    // debug assertions, as this one is in the dev profile.
    let all = _mm256_set1_epi32(-1);
    // SAFETY: the caller's bounds.
    let r: [__m256; 8] =
        std::array::from_fn(|i| unsafe { _mm256_maskload_ps(from.add(i * from_stride), all) });
    // Pairs of rows interleaved, then pairs of pairs, then the halves.
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
    let columns = [
        _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ];
    for (j, column) in columns.into_iter().enumerate() {
        // SAFETY: the caller's bounds.
        unsafe { _mm256_maskstore_ps(to.add(j * to_stride), all, column) };
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn every_value_lands_at_its_transposed_place_and_nothing_else_is_written() {
        // Sizes around the 8 × 8 blocks, strides wider than the matrix.
        for [rows, cols] in [[1, 1], [8, 8], [7, 9], [16, 24], [19, 13], [32, 37]] {
            let (from_stride, to_stride) = (cols + 3, rows + 5);
            let from: Vec<f32> = (0..rows * from_stride).map(|v| v as f32 + 0.5).collect();
            let mut to = vec![-1.0; cols * to_stride];
            transpose(&from, from_stride, [rows, cols], &mut to, to_stride);
            for j in 0..cols {
                for i in 0..to_stride {
                    let want = if i < rows {
                        from[i * from_stride + j]
                    } else {
                        -1.0
                    };
                    assert_eq!(to[j * to_stride + i], want, "{rows}×{cols} at ({i}, {j})");
                }
            }
        }
    }
}
