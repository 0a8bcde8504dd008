//! The even and odd values of a row apart ([`deinterleave`]: a 2 × 2
//! window's columns, or a Winograd tile's parity planes) and the maximum
//! of 2 × 2 windows and where it lies in its window, shared by
//! the pooling kernels ([`crate::pool::kernels`]) and the Winograd forward
//! whose output tiles are a pooling's windows ([`crate::conv`]'s
//! `forward_pooled`): one place for the choice of maximum both must make
//! alike, in a module of its own so that neither of the two depends on the
//! other.

use std::mem::MaybeUninit;

/// The maximum of each window `k`, `[top_left[k], top_right[k],
/// bottom_left[k], bottom_right[k]]` (`values`), into `pooled[k]` and its
/// position in `codes[k]`: the first largest, a NaN winning (the choice of
/// Burn's pooling, see [`crate::pool::kernels`]). Selects, not branches
/// (which the data would mispredict half the time), so that the loop
/// vectorises.
#[inline(always)]
pub(crate) fn pool_windows(values: [&[f32]; 4], pooled: &mut [MaybeUninit<f32>], codes: &mut [u8]) {
    let n = pooled.len();
    let [v0, v1, v2, v3] = values.map(|run| &run[..n]);
    let codes = &mut codes[..n];
    for k in 0..n {
        let (mut max, mut code) = (v0[k], 0u8);
        for (value, position) in [(v1[k], 1u8), (v2[k], 2), (v3[k], 3)] {
            let wins = value > max || value.is_nan();
            max = if wins { value } else { max };
            code = if wins { position } else { code };
        }
        pooled[k] = MaybeUninit::new(max);
        codes[k] = code;
    }
}

/// `first[i] = src[2i]`, `second[i] = src[2i + 1]`.
#[inline(always)]
pub(crate) fn deinterleave(src: &[f32], first: &mut [f32], second: &mut [f32]) {
    let pairs = src.len() / 2;
    for ((a, b), pair) in first[..pairs]
        .iter_mut()
        .zip(&mut second[..pairs])
        .zip(src.chunks_exact(2))
    {
        *a = pair[0];
        *b = pair[1];
    }
    if src.len() % 2 == 1 {
        first[pairs] = src[2 * pairs];
    }
}
