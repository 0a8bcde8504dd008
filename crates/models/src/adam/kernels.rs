//! The Adam update of one parameter in one pass over its values, on
//! rayon's pool.
//!
//! Each value is computed with the very operations, in the same order and
//! the same `f32` roundings, as Burn's `Adam` (`burn::optim::adam`) applies
//! to whole tensors one operation at a time: `m₁ = m₁·β₁ + g·(1−β₁)`,
//! `m₂ = m₂·β₂ + (g·g)·(1−β₂)`, then `p − ((m₁·c) / (√m₂ + ε′))·lr`, with
//! `g = p·λ + g` first under weight decay. Rust never contracts `a·b + c`
//! into a fused multiply-add, so the results are bit-identical to Burn's;
//! the work is element-wise, so they do not depend on the thread count.
//!
//! One difference, in the moments only: where Burn's `m₁` or `m₂` would be
//! subnormal (non-zero and below `f32::MIN_POSITIVE`, 1.2·10⁻³⁸), the kernel
//! stores a zero of its sign, as TensorFlow's flush-to-zero does. Why: a
//! parameter whose gradient stops (a ReLU unit that no longer fires) sees
//! `m₁` decay by β₁ a step until it is subnormal, and there it stays for
//! good (0.9 times a few subnormal units rounds back to them), and every
//! operation on a subnormal is a microcode assist, tens of times slower. In
//! the flagship `cnn` half of `m₁`'s values were stuck there by its third
//! epoch, and those epochs took 18–23% longer (docs/benchmarks.md §6, item
//! 23). The parameters stay Burn's: the step a subnormal moment would make
//! is at most about 4·10⁻³⁰·lr (with ε′ ≥ 3·10⁻⁹), under half a unit of
//! any parameter larger than about 10⁻²²·lr in magnitude, and `0·β₁ + g·(1−β₁)`
//! rounds as `m₁·β₁ + g·(1−β₁)` does once the gradient is back (the test
//! below follows both through 1,100 steps).

use rayon::prelude::*;

/// Values per task: large enough to amortise a task, small enough to use
/// both cores on a bias-sized tensor of a few thousand values.
const CHUNK: usize = 16 * 1024;

/// The scalars of one Adam step, as Burn computes them (all `f32`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// `1 − β₁`.
    pub factor_1: f32,
    /// `1 − β₂`.
    pub factor_2: f32,
    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    pub combined_factor: f32,
    /// `ε·√(1 − β₂ᵗ)`.
    pub epsilon: f32,
    /// The learning rate.
    pub lr: f32,
    /// The L2 weight-decay penalty λ, if any.
    pub penalty: Option<f32>,
    /// Whether this is the parameter's first step (the moments start from
    /// the gradient alone, whatever `m₁` and `m₂` hold).
    pub first: bool,
}

impl AdamScalars {
    /// The scalars of step `time` (1 for the first), computed as Burn's
    /// `AdaptiveMomentum::transform` does.
    pub fn new(
        [beta_1, beta_2, epsilon]: [f32; 3],
        time: usize,
        lr: f64,
        penalty: Option<f32>,
    ) -> Self {
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - beta_2.powi(t)).sqrt();
        Self {
            beta_1,
            beta_2,
            factor_1: 1.0 - beta_1,
            factor_2: 1.0 - beta_2,
            combined_factor: bias_correction2_sqrt / (1.0 - beta_1.powi(t)),
            epsilon: epsilon * bias_correction2_sqrt,
            lr: lr as f32,
            penalty,
            first: time == 1,
        }
    }
}

/// Updates `param`, `moment_1` and `moment_2` in place from `grad` (all the
/// same length).
///
/// # Panics
///
/// Panics if the lengths differ.
pub fn update(
    param: &mut [f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    grad: &[f32],
    s: &AdamScalars,
) {
    let n = param.len();
    assert!(
        moment_1.len() == n && moment_2.len() == n && grad.len() == n,
        "Adam update: parameter, moments and gradient differ in length"
    );
    param
        .par_chunks_mut(CHUNK)
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((p, m1), m2), g)| update_chunk(p, m1, m2, g, s));
}

/// [`update`] of a parameter whose values are shared (a module the caller
/// still holds, as Burn's `Learner` keeps the model it steps from): the
/// updated values go to a new vector, computed from `param` in the one
/// pass, where a copy to update in place would read and write them twice
/// more. The moments are updated in place. The same values as [`update`].
///
/// # Panics
///
/// Panics if the lengths differ.
pub fn update_shared(
    param: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    grad: &[f32],
    s: &AdamScalars,
) -> Vec<f32> {
    let n = param.len();
    assert!(
        moment_1.len() == n && moment_2.len() == n && grad.len() == n,
        "Adam update: parameter, moments and gradient differ in length"
    );
    let mut updated = Vec::with_capacity(n);
    updated.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(param.par_chunks(CHUNK))
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|((((out, p), m1), m2), g)| {
            // Indexed over slices cut to one length, which vectorises (a
            // zip of five did not: one square root at a time).
            let (n, s) = (out.len(), *s);
            let (p, m1, m2, g) = (&p[..n], &mut m1[..n], &mut m2[..n], &g[..n]);
            for k in 0..n {
                let (updated, new_m1, new_m2) = step_value(p[k], m1[k], m2[k], g[k], &s);
                out[k].write(updated);
                (m1[k], m2[k]) = (new_m1, new_m2);
            }
        });
    // SAFETY: the chunks above cover `updated[..n]`, and each wrote every
    // value of its chunk.
    unsafe { updated.set_len(n) };
    updated
}

/// [`update`] on one chunk, on the calling thread.
fn update_chunk(p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], s: &AdamScalars) {
    for (((p, m1), m2), &g) in p.iter_mut().zip(m1).zip(m2).zip(g) {
        (*p, *m1, *m2) = step_value(*p, *m1, *m2, g, s);
    }
}

/// One value's step: its new parameter and moments, from the parameter,
/// the moments and the gradient.
#[inline(always)]
fn step_value(p: f32, m1: f32, m2: f32, g: f32, s: &AdamScalars) -> (f32, f32, f32) {
    let g = match s.penalty {
        Some(penalty) => p * penalty + g,
        None => g,
    };
    let (m1, m2) = if s.first {
        (g * s.factor_1, (g * g) * s.factor_2)
    } else {
        (
            m1 * s.beta_1 + g * s.factor_1,
            m2 * s.beta_2 + (g * g) * s.factor_2,
        )
    };
    let (m1, m2) = (flush_subnormal(m1), flush_subnormal(m2));
    let step = (m1 * s.combined_factor) / (m2.sqrt() + s.epsilon);
    (p - step * s.lr, m1, m2)
}

/// `x`, or a zero of its sign where `x` is subnormal (below
/// `f32::MIN_POSITIVE` in magnitude; a zero is its own flush). Decided on
/// the bits, so a subnormal `x` costs no arithmetic on it.
#[inline(always)]
fn flush_subnormal(x: f32) -> f32 {
    if x.to_bits() & 0x7fff_ffff < f32::MIN_POSITIVE.to_bits() {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burn's Adam, one whole-array operation at a time (the order of
    /// `burn::optim::adam`), on plain vectors.
    fn burns_order(
        p: &[f32],
        m1: &[f32],
        m2: &[f32],
        g: &[f32],
        s: &AdamScalars,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let g: Vec<f32> = match s.penalty {
            Some(l) => p.iter().zip(g).map(|(p, g)| p * l + g).collect(),
            None => g.to_vec(),
        };
        let sq: Vec<f32> = g.iter().map(|g| g * g).collect();
        let (m1, m2): (Vec<f32>, Vec<f32>) = if s.first {
            (
                g.iter().map(|g| g * s.factor_1).collect(),
                sq.iter().map(|q| q * s.factor_2).collect(),
            )
        } else {
            (
                m1.iter()
                    .zip(&g)
                    .map(|(m, g)| m * s.beta_1 + g * s.factor_1)
                    .collect(),
                m2.iter()
                    .zip(&sq)
                    .map(|(m, q)| m * s.beta_2 + q * s.factor_2)
                    .collect(),
            )
        };
        let p = p
            .iter()
            .zip(m1.iter().zip(&m2))
            .map(|(p, (a, b))| p - ((a * s.combined_factor) / (b.sqrt() + s.epsilon)) * s.lr)
            .collect();
        (p, m1, m2)
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn every_step_equals_burns_order_bit_for_bit_across_chunks() {
        let n = 3 * CHUNK + 17;
        for penalty in [None, Some(0.01)] {
            let (mut p, mut m1, mut m2) = (values(n, 1), vec![0.0; n], vec![0.0; n]);
            for time in 1..=4 {
                let g = values(n, 7 + time as u32);
                let s = AdamScalars::new([0.9, 0.999, 1e-7], time, 1e-3, penalty);
                let expected = burns_order(&p, &m1, &m2, &g, &s);
                update(&mut p, &mut m1, &mut m2, &g, &s);
                assert_eq!((&p, &m1, &m2), (&expected.0, &expected.1, &expected.2));
            }
        }
    }

    #[test]
    fn a_shared_parameter_gets_the_values_of_the_update_in_place() {
        let n = 2 * CHUNK + 5;
        for penalty in [None, Some(0.01)] {
            let (mut p, mut m1, mut m2) = (values(n, 1), vec![0.0; n], vec![0.0; n]);
            let (mut shared_m1, mut shared_m2) = (m1.clone(), m2.clone());
            for time in 1..=3 {
                let g = values(n, 7 + time as u32);
                let s = AdamScalars::new([0.9, 0.999, 1e-7], time, 1e-3, penalty);
                let updated = update_shared(&p, &mut shared_m1, &mut shared_m2, &g, &s);
                update(&mut p, &mut m1, &mut m2, &g, &s);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&updated), bits(&p), "step {time}");
                assert_eq!((bits(&shared_m1), bits(&shared_m2)), (bits(&m1), bits(&m2)));
            }
        }
    }

    #[test]
    fn the_first_step_ignores_what_the_moments_hold() {
        let g = values(100, 3);
        let s = AdamScalars::new([0.9, 0.999, 1e-7], 1, 1e-3, None);
        let (mut a, mut b) = (values(100, 5), values(100, 5));
        update(&mut a, &mut vec![0.0; 100], &mut vec![0.0; 100], &g, &s);
        update(&mut b, &mut vec![9.0; 100], &mut vec![9.0; 100], &g, &s);
        assert_eq!(a, b);
    }

    #[test]
    fn a_moment_burn_would_leave_subnormal_is_a_zero_and_the_parameters_stay_burns() {
        let n = 64;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (mut p, mut m1, mut m2) = (values(n, 1), vec![0.0; n], vec![0.0; n]);
        let (mut burns_p, mut burns_m1, mut burns_m2) = (p.clone(), m1.clone(), m2.clone());
        let mut flushed = [0, 0];
        for time in 1..=1100 {
            // A first gradient so small on every other value that (1 − β₂)·g²
            // is subnormal; then none for long enough that 0.9ᵗ takes the
            // first moment below f32's smallest normal (about 800 steps),
            // then gradients again.
            let g: Vec<f32> = match time {
                1 => (values(n, 2).iter().enumerate())
                    .map(|(i, g)| if i % 2 == 0 { g * 1e-18 } else { *g })
                    .collect(),
                2..=1000 => vec![0.0; n],
                _ => values(n, 7 + time as u32),
            };
            let s = AdamScalars::new([0.9, 0.999, 1e-7], time, 1e-3, None);
            let burns = burns_order(&burns_p, &burns_m1, &burns_m2, &g, &s);
            update(&mut p, &mut m1, &mut m2, &g, &s);
            assert_eq!(bits(&p), bits(&burns.0), "the parameters at step {time}");
            for (k, (ours, burns)) in [(&m1, &burns.1), (&m2, &burns.2)].into_iter().enumerate() {
                for (ours, burns) in ours.iter().zip(burns) {
                    if burns.is_subnormal() {
                        // A zero (its sign may differ from Burn's later on:
                        // −0·β₁ + 0 is +0, where Burn's stays negative).
                        assert_eq!(*ours, 0.0, "step {time}: {burns:e}");
                        flushed[k] += 1;
                    } else if *burns == 0.0 {
                        assert_eq!(*ours, 0.0, "step {time}");
                    } else {
                        assert_eq!(ours.to_bits(), burns.to_bits(), "step {time}");
                    }
                }
            }
            (burns_p, burns_m1, burns_m2) = burns;
        }
        assert!(flushed[0] > 0 && flushed[1] > 0, "{flushed:?}");
    }
}
