//! What the kernels' unit tests share: a fixed input sequence and a
//! relative comparison.

use std::fmt::Debug;

/// `len` values in [-1, 1], a fixed, sign-changing sequence of `seed` (no
/// random generator needed).
pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// `ours` equals `reference` value by value within 1e-4 of the reference
/// (at least 1); `what` and `context` name a failure.
pub(crate) fn assert_close(ours: &[f32], reference: &[f32], what: &str, context: &impl Debug) {
    assert_eq!(ours.len(), reference.len(), "{what} {context:?}");
    for (k, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{what}[{k}]: {a} vs {b}, {context:?}"
        );
    }
}

/// `ours` equals `reference` within `tolerance` of the reference's largest
/// value (at least 1), for sums taken in another order, where the small
/// values carry the rounding of the large; `what` and `context` name a
/// failure.
pub(crate) fn assert_within_rounding(
    ours: &[f32],
    reference: &[f32],
    tolerance: f32,
    what: &str,
    context: &impl Debug,
) {
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        ours.len() == reference.len() && diff <= tolerance * scale,
        "{what} differs by {diff} from the reference's, {context:?}"
    );
}

/// `f` run on a rayon pool of `threads` threads (the kernels' results
/// must not depend on how many there are).
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
