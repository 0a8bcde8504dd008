//! Output buffers for the CPU kernels ([`crate::conv`], [`crate::norm`],
//! [`crate::pool`]): allocated without zeroing, then zeroed and filled
//! chunk by chunk by the task that computes the chunk.
//!
//! Why: `vec![0.0; n]` is `calloc`, and once the allocator reuses freed
//! memory (the CLI asks glibc to, see `crates/cli/src/allocator.rs`) that is
//! a `memset` of the whole buffer on the calling thread, before any task
//! starts: ≈ 5% of a `cnn` step in `perf`, one core busy and the other
//! waiting. Zeroing each chunk right before its task fills it spreads that
//! over the cores and leaves the chunk in cache for the task.
//!
//! Invariant: **every value is initialised before the vector is handed
//! out**: with [`par_build`] each chunk is zeroed before its task sees it,
//! and the chunks cover the whole buffer, so it is sound whatever the task
//! does; [`par_build_uninit`] (no zeroing, for tasks that overwrite their
//! whole chunk) is `unsafe`, and each caller says why its task writes every
//! value.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A `len`-value vector computed in `chunk`-value chunks on rayon's pool
/// (the last one may be shorter): `fill(i, out, scratch)` gets chunk `i`
/// zeroed, and a scratch value made by `scratch()` once per task. Tasks
/// take at least `min_chunks` chunks each.
pub(crate) fn par_build<S>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    scratch: impl Fn() -> S + Sync + Send,
    fill: impl Fn(usize, &mut [f32], &mut S) + Sync + Send,
) -> Vec<f32> {
    // SAFETY: `zeroed` writes every value of each chunk before `fill` sees
    // it.
    unsafe {
        par_build_uninit(len, chunk, min_chunks, scratch, |i, out, scratch| {
            fill(i, zeroed(out), scratch)
        })
    }
}

/// As [`par_build`], for a `fill` that writes every value of its chunk
/// anyway (a gemm that does not read its output, a normalisation): the
/// chunk comes uninitialised, which saves the zeroing pass (`memset`).
///
/// # Safety
///
/// `fill(i, out, scratch)` must initialise every element of `out`.
pub(crate) unsafe fn par_build_uninit<S>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    scratch: impl Fn() -> S + Sync + Send,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut S) + Sync + Send,
) -> Vec<f32> {
    let mut values: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        values.spare_capacity_mut()[..len]
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .with_min_len(min_chunks.max(1))
            .for_each_init(scratch, |scratch, (i, out)| fill(i, out, scratch));
    }
    // SAFETY: the chunks above cover `values[..len]`, and the caller's
    // `fill` initialised every element of each.
    unsafe { values.set_len(len) };
    values
}

/// `out` as initialised values.
///
/// # Safety
///
/// Every element of `out` must have been written.
pub(crate) unsafe fn assume_written(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller wrote every element; `MaybeUninit<f32>` and `f32`
    // have the same layout.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `out`, every value set to 0, as initialised values.
fn zeroed(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for value in out.iter_mut() {
        value.write(0.0);
    }
    // SAFETY: every element was just written.
    unsafe { assume_written(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_filled_by_its_own_task_from_zero() {
        let values = par_build(
            10,
            3,
            1,
            || 0usize,
            |i, out, calls| {
                *calls += 1;
                assert!(out.iter().all(|&v| v == 0.0), "zeroed first");
                for (k, v) in out.iter_mut().enumerate() {
                    *v = (i * 3 + k) as f32;
                }
            },
        );
        assert_eq!(values, (0..10).map(|v| v as f32).collect::<Vec<_>>());
    }

    #[test]
    fn values_a_task_leaves_alone_are_zero() {
        let values = par_build(
            7,
            2,
            2,
            || (),
            |i, out, _| {
                if i % 2 == 0 {
                    out[0] = 1.0;
                }
            },
        );
        assert_eq!(values, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn an_empty_vector_runs_no_task() {
        let values = par_build(0, 4, 1, || (), |_, _, _| panic!("no chunk"));
        assert!(values.is_empty());
    }
}
