//! Batch normalisation with the batch's own statistics (training mode) and
//! its three gradients, on plain `f32` slices in Burn's `[batch, channels,
//! spatial…]` layout, without transposing anything.
//!
//! Burn's default `batch_norm_train` (which flex keeps) swaps the batch and
//! channel dimensions and copies the tensor to reduce each channel, and its
//! backward does so three times more, plus a dozen broadcast elementwise
//! ops: ≈ 20 ms forward + backward for 32 channels of 28×28 at batch 64,
//! where one pass over those 6 MB takes well under a millisecond.
//! Here each channel's values are read where they lie (one contiguous run of
//! `spatial` values per sample).
//!
//! * forward: `mean_c = Σ x / m`, `var_c = Σ (x − mean_c)² / m` (biased,
//!   as Burn; each run's squares about its own mean, then combined, so no
//!   `Σ x²` cancels), `y = (x − mean_c) · γ_c / √(var_c + ε) + β_c`;
//! * backward, with `x̂ = (x − mean_c) / √(var_c + ε)`:
//!   `dβ_c = Σ dy`, `dγ_c = Σ dy · x̂`,
//!   `dx = γ_c / √(var_c + ε) · (dy − dβ_c / m − x̂ · dγ_c / m)`.
//!
//! Invariants:
//! * **Deterministic**: each channel's sums run in one fixed order (per
//!   sample, 16 `f32` partial sums that vectorise, added in `f64`; then the
//!   samples' sums in sample order), whichever thread sums a run; the
//!   elementwise passes write disjoint samples. Results do not depend on
//!   the number of threads.
//! * **The same numbers as Burn's**, within float rounding (the `f64` sums
//!   are, if anything, closer to exact): tests below and in [`super`].
//! * **Both cores work, reading in order**: the reductions sum each run
//!   (one sample's values of one channel) in parallel over the runs as they
//!   lie in memory, then add a channel's runs in sample order; the
//!   elementwise passes are spread over samples.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::buffers::par_build_uninit;

/// The shape of one batch normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormGeometry {
    /// Samples in the batch.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per channel per sample (`height · width` for images).
    pub spatial: usize,
}

impl NormGeometry {
    /// Values per channel over the batch: `batch · spatial`.
    pub fn count(&self) -> usize {
        self.batch * self.spatial
    }

    /// Values of the whole tensor.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channel `c`'s run of values in sample `n`.
    fn run<'a>(&self, values: &'a [f32], n: usize, c: usize) -> &'a [f32] {
        let start = (n * self.channels + c) * self.spatial;
        &values[start..start + self.spatial]
    }

    /// `f(n, c)` for every run (sample `n`, channel `c`), in parallel, in
    /// the order the runs lie in memory (`[batch, channels]`): each thread
    /// streams a contiguous stretch of the tensor, where going channel by
    /// channel would read short runs a whole sample apart (a new stream for
    /// every 0.8 to 3 KB, which `perf` put at 2.5× the time of a pass that
    /// reads the same values in order).
    fn per_run<T: Send>(&self, f: impl Fn(usize, usize) -> T + Sync + Send) -> Vec<T> {
        (0..self.batch * self.channels)
            .into_par_iter()
            .map(|i| f(i / self.channels, i % self.channels))
            .collect()
    }

    /// Channel `c`'s values of a [`Self::per_run`] result, sample by sample
    /// in order: what a channel's sums add up, in one fixed order.
    fn over_batch<'a, T: Copy>(&self, per_run: &'a [T], c: usize) -> impl Iterator<Item = T> + 'a {
        per_run[c..].iter().step_by(self.channels).copied()
    }

    /// A tensor-sized vector built sample by sample in parallel: `f(n,
    /// out_n)` gets sample `n`'s values uninitialised and must write every
    /// one of them (both callers write each channel's run value by value),
    /// which saves zeroing the whole output first (a `memset` that `perf`
    /// put at 2–3% of a `cnn` step).
    ///
    /// # Safety
    ///
    /// `f` must initialise every element of its `out_n`.
    unsafe fn per_sample(
        &self,
        f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
    ) -> Vec<f32> {
        // SAFETY: the caller's `f` writes every value of each sample.
        unsafe {
            par_build_uninit(
                self.len(),
                self.channels * self.spatial,
                1,
                || (),
                |n, sample, _| f(n, sample),
            )
        }
    }
}

/// Partial sums per lane: enough independent sums for the compiler to
/// vectorise the loop, in a fixed order (so results stay deterministic).
const LANES: usize = 16;

/// `Σ f(a[k], b[k])`, summed in [`LANES`] `f32` partial sums added in `f64`.
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let whole = a.len().min(b.len()) / LANES * LANES;
    let mut lanes = [0.0f32; LANES];
    for (ca, cb) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        for k in 0..LANES {
            lanes[k] += f(ca[k], cb[k]);
        }
    }
    let tail: f64 = a[whole..]
        .iter()
        .zip(&b[whole..])
        .map(|(&x, &y)| f(x, y) as f64)
        .sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// `(Σ gate(a[k], b[k]), Σ gate(a[k], b[k]) · (a[k] − mean))` in one pass,
/// each summed in [`LANES`] `f32` partial sums added in `f64`, in the order
/// [`lane_sum`] would sum them.
fn lane_sums_gated(a: &[f32], b: &[f32], mean: f32, gate: impl Fn(f32, f32) -> f32) -> (f64, f64) {
    let whole = a.len().min(b.len()) / LANES * LANES;
    let mut plain = [0.0f32; LANES];
    let mut centred = [0.0f32; LANES];
    for (ca, cb) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let d = gate(ca[k], cb[k]);
            plain[k] += d;
            centred[k] += d * (ca[k] - mean);
        }
    }
    let (mut tail_plain, mut tail_centred) = (0.0f64, 0.0f64);
    for (&v, &d) in a[whole..].iter().zip(&b[whole..]) {
        let d = gate(v, d);
        tail_plain += d as f64;
        tail_centred += (d * (v - mean)) as f64;
    }
    let total = |lanes: [f32; LANES]| lanes.iter().map(|&v| v as f64).sum::<f64>();
    (total(plain) + tail_plain, total(centred) + tail_centred)
}

/// What [`forward`] returns: the normalised output and the batch
/// statistics (`[channels]` each).
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// `[batch, channels, spatial]`.
    pub output: Vec<f32>,
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub variance: Vec<f32>,
}

/// What [`backward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct NormGrads {
    /// Gradient of the input, `[batch, channels, spatial]`.
    pub x: Vec<f32>,
    /// Gradient of γ, `[channels]`.
    pub gamma: Vec<f32>,
    /// Gradient of β, `[channels]`.
    pub beta: Vec<f32>,
}

/// `1 / √(variance + ε)` per channel.
fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f64> {
    variance
        .iter()
        .map(|&v| 1.0 / (v as f64 + epsilon).sqrt())
        .collect()
}

/// The normalisation as `y = x · scale_c + shift_c` per channel, formed
/// once from γ, β and the statistics: the forward's output, and what the
/// backward recomputes to find where a folded ReLU passed the gradient
/// (the same arithmetic on the same values, so the same bits).
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f64]) -> Self {
        let scale: Vec<f32> = (0..gamma.len())
            .map(|c| (gamma[c] as f64 * inv_std[c]) as f32)
            .collect();
        let shift = (0..gamma.len())
            .map(|c| beta[c] - mean[c] * scale[c])
            .collect();
        Self { scale, shift }
    }

    /// One value's normalised output, before any ReLU.
    #[inline(always)]
    fn apply(value: f32, scale: f32, shift: f32) -> f32 {
        value * scale + shift
    }
}

/// Normalises `x` with its own per-channel statistics, then clamps the
/// result at zero when `relu` is set (a ReLU folded in: [`crate::relu`]).
///
/// # Panics
///
/// Panics if a slice does not match `g`, or the batch is empty.
pub fn forward(
    g: &NormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> Normalized {
    assert_eq!(x.len(), g.len(), "input length");
    assert!(gamma.len() == g.channels && beta.len() == g.channels);
    assert!(g.count() > 0, "batch norm of an empty batch");
    let count = g.count() as f64;
    // Each run's sum and its squares about its own mean `a` (in `f32`),
    // both passes over a run still in L1; then a channel's runs combined
    // about the channel's mean, exactly: with `d = mean − a`,
    // Σ (x − mean)² = Σ (x − a)² − 2 d · Σ (x − a) + len · d².
    let len = g.spatial as f64;
    let runs = g.per_run(|n, c| {
        let run = g.run(x, n, c);
        let sum = lane_sum(run, run, |v, _| v);
        let run_mean = (sum / len) as f32;
        (
            sum,
            lane_sum(run, run, |v, _| (v - run_mean) * (v - run_mean)),
        )
    });
    let (mean, variance): (Vec<f32>, Vec<f32>) = (0..g.channels)
        .map(|c| {
            let mean = g.over_batch(&runs, c).map(|(sum, _)| sum).sum::<f64>() / count;
            let squares: f64 = g
                .over_batch(&runs, c)
                .map(|(sum, squares)| {
                    let run_mean = (sum / len) as f32 as f64;
                    let d = mean - run_mean;
                    squares - 2.0 * d * (sum - len * run_mean) + len * d * d
                })
                .sum();
            (mean as f32, (squares / count) as f32)
        })
        .unzip();
    let affine = Affine::new(gamma, beta, &mean, &inverse_std(&variance, epsilon));
    // SAFETY: each sample is `channels` runs of `spatial` values, and each
    // run's every value is written from the input's run of that length.
    let output = unsafe {
        g.per_sample(|n, sample| {
            for (c, out) in sample.chunks_mut(g.spatial).enumerate() {
                let (scale, shift) = (affine.scale[c], affine.shift[c]);
                for (o, &v) in out.iter_mut().zip(g.run(x, n, c)) {
                    let y = Affine::apply(v, scale, shift);
                    o.write(if relu { crate::relu::relu(y) } else { y });
                }
            }
        })
    };
    Normalized {
        output,
        mean,
        variance,
    }
}

/// The gradients of [`forward`] from the output's gradient `dy`, given the
/// statistics it returned.
///
/// `relu_beta` is the forward's β when it folded a ReLU in: `dy` then
/// passes only where that output was positive or NaN, which is
/// recomputed from `x` as the forward formed it (the same bits), rather
/// than gated in a pass of its own over the kept output (two streams of
/// the tensor fewer, and no output kept for the backward).
///
/// # Panics
///
/// Panics if a slice does not match `g`, or the batch is empty.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &NormGeometry,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
    relu_beta: Option<&[f32]>,
    dy: &[f32],
) -> NormGrads {
    assert!(x.len() == g.len() && dy.len() == g.len(), "input lengths");
    assert!(gamma.len() == g.channels && mean.len() == g.channels && variance.len() == g.channels);
    assert!(g.count() > 0, "batch norm of an empty batch");
    let inv_std = inverse_std(variance, epsilon);
    match relu_beta {
        None => backward_gated::<false>(g, x, gamma, mean, &inv_std, None, dy),
        Some(beta) => {
            assert_eq!(beta.len(), g.channels, "one β per channel");
            let affine = Affine::new(gamma, beta, mean, &inv_std);
            backward_gated::<true>(g, x, gamma, mean, &inv_std, Some(&affine), dy)
        }
    }
}

/// [`backward`], with `dy` gated by the ReLU the forward's `affine` output
/// went through when `RELU` (a constant, so the loops without a ReLU carry
/// no test).
fn backward_gated<const RELU: bool>(
    g: &NormGeometry,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f64],
    affine: Option<&Affine>,
    dy: &[f32],
) -> NormGrads {
    let count = g.count() as f64;
    // Channel c's gradient at input value v: dy where the ReLU passed.
    let gate = |c: usize| {
        let (scale, shift) = affine.map_or((0.0, 0.0), |a| (a.scale[c], a.shift[c]));
        move |v: f32, d: f32| {
            if !RELU || crate::relu::passes(Affine::apply(v, scale, shift)) {
                d
            } else {
                0.0
            }
        }
    };
    let run_sums = g.per_run(|n, c| {
        let (run, grad) = (g.run(x, n, c), g.run(dy, n, c));
        lane_sums_gated(run, grad, mean[c], gate(c))
    });
    let sums: Vec<(f64, f64)> = (0..g.channels)
        .map(|c| {
            let (mut beta, mut centred) = (0.0f64, 0.0f64);
            for (b, centre) in g.over_batch(&run_sums, c) {
                beta += b;
                centred += centre;
            }
            // dγ = Σ dy · x̂ = inv_std · Σ dy · (x − mean).
            (centred * inv_std[c], beta)
        })
        .collect();
    // dx = k · (dy − dβ/m − x̂ · dγ/m) with x̂ = (x − mean) · inv_std, as
    // dx = k · dy + a · x + b per channel.
    let coefficients: Vec<(f32, f32, f32)> = (0..g.channels)
        .map(|c| {
            let (dgamma, dbeta) = sums[c];
            let k = gamma[c] as f64 * inv_std[c];
            let a = -k * inv_std[c] * dgamma / count;
            let b = -k * dbeta / count - a * mean[c] as f64;
            (k as f32, a as f32, b as f32)
        })
        .collect();
    // SAFETY: as in `forward`, every value of each run is written.
    let x_grad = unsafe {
        g.per_sample(|n, sample| {
            for (c, out) in sample.chunks_mut(g.spatial).enumerate() {
                let (k, a, b) = coefficients[c];
                let gate = gate(c);
                for ((o, &v), &d) in out.iter_mut().zip(g.run(x, n, c)).zip(g.run(dy, n, c)) {
                    o.write(k * gate(v, d) + a * v + b);
                }
            }
        })
    };
    NormGrads {
        x: x_grad,
        gamma: sums.iter().map(|&(dgamma, _)| dgamma as f32).collect(),
        beta: sums.iter().map(|&(_, dbeta)| dbeta as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::on_threads;

    fn geometry() -> NormGeometry {
        NormGeometry {
            batch: 3,
            channels: 2,
            spatial: 4,
        }
    }

    fn sample_values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32 * 2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn output_has_zero_mean_and_unit_variance_per_channel_before_gamma_and_beta() {
        let g = geometry();
        let x = sample_values(g.len(), 7);
        let out = forward(&g, &x, &[1.0, 1.0], &[0.0, 0.0], 1e-5, false);
        for c in 0..g.channels {
            let values: Vec<f32> = (0..g.batch)
                .flat_map(|n| g.run(&out.output, n, c).to_vec())
                .collect();
            let mean = values.iter().sum::<f32>() / values.len() as f32;
            let var =
                values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32;
            assert!(mean.abs() < 1e-5, "channel {c} mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "channel {c} variance {var}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let g = geometry();
        let x = sample_values(g.len(), 3);
        let gamma = [0.7, -1.3];
        let beta = [0.2, 0.5];
        let dy = sample_values(g.len(), 11);
        // loss = Σ y · dy, so dloss/dy = dy.
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let out = forward(&g, x, gamma, beta, 1e-3, false);
            out.output
                .iter()
                .zip(&dy)
                .map(|(&y, &d)| y as f64 * d as f64)
                .sum()
        };
        let out = forward(&g, &x, &gamma, &beta, 1e-3, false);
        let grads = backward(&g, &x, &gamma, &out.mean, &out.variance, 1e-3, None, &dy);
        let h = 1e-2;
        let numeric = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
        for i in [0, 5, 13, 23] {
            let d = numeric(&|e| {
                let mut x = x.clone();
                x[i] += e;
                loss(&x, &gamma, &beta)
            });
            assert!(
                (d - grads.x[i] as f64).abs() < 2e-2,
                "dx[{i}]: {d} vs {}",
                grads.x[i]
            );
        }
        for c in 0..2 {
            let dg = numeric(&|e| {
                let mut gamma = gamma;
                gamma[c] += e;
                loss(&x, &gamma, &beta)
            });
            let db = numeric(&|e| {
                let mut beta = beta;
                beta[c] += e;
                loss(&x, &gamma, &beta)
            });
            assert!((dg - grads.gamma[c] as f64).abs() < 1e-2, "dgamma[{c}]");
            assert!((db - grads.beta[c] as f64).abs() < 1e-2, "dbeta[{c}]");
        }
    }

    #[test]
    fn a_folded_relu_gates_the_gradient_as_a_pass_over_the_kept_output_would() {
        // Half the outputs below zero, so the gate has work on both sides.
        let g = NormGeometry {
            batch: 5,
            channels: 3,
            spatial: 37,
        };
        let x = sample_values(g.len(), 13);
        let (gamma, beta) = ([0.8, -1.1, 1.7], [0.05, -0.3, 0.4]);
        let dy = sample_values(g.len(), 17);
        let out = forward(&g, &x, &gamma, &beta, 1e-5, true);
        let blocked = out.output.iter().filter(|&&y| y == 0.0).count();
        assert!(
            blocked > g.len() / 4 && blocked < 3 * g.len() / 4,
            "{blocked} zeros"
        );
        let mut gated = dy.clone();
        crate::relu::relu_gate(&out.output, &mut gated);
        let (mean, variance) = (&out.mean, &out.variance);
        let folded = backward(&g, &x, &gamma, mean, variance, 1e-5, Some(&beta), &dy);
        let apart = backward(&g, &x, &gamma, mean, variance, 1e-5, None, &gated);
        assert!(folded == apart, "bit for bit the gradients of the gated dy");
    }

    #[test]
    fn statistics_match_two_passes_in_f64_when_the_values_sit_far_from_zero() {
        // Values around 1000 with a spread of about 1, and each sample's
        // runs at a mean of their own: a variance from `Σ x²` would lose
        // most of its digits, and each run's squares about its own mean
        // must be moved to the channel's mean to add up.
        let g = NormGeometry {
            batch: 6,
            channels: 3,
            spatial: 37,
        };
        let x: Vec<f32> = sample_values(g.len(), 13)
            .iter()
            .enumerate()
            .map(|(i, v)| 1000.0 + v * 0.5 + (i / (g.channels * g.spatial)) as f32 * 0.75)
            .collect();
        let out = forward(&g, &x, &[1.0; 3], &[0.0; 3], 1e-5, false);
        for c in 0..g.channels {
            let values: Vec<f64> = (0..g.batch)
                .flat_map(|n| g.run(&x, n, c).iter().map(|&v| v as f64))
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var =
                values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64;
            assert!((out.mean[c] as f64 - mean).abs() < 1e-4, "channel {c} mean");
            let error = (out.variance[c] as f64 - var).abs() / var;
            assert!(
                error < 1e-5,
                "channel {c} variance {} against {var}",
                out.variance[c]
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        let g = NormGeometry {
            batch: 16,
            channels: 5,
            spatial: 49,
        };
        let x = sample_values(g.len(), 5);
        let dy = sample_values(g.len(), 9);
        let run = |threads: usize| {
            on_threads(threads, || {
                let out = forward(&g, &x, &[1.5; 5], &[0.1; 5], 1e-5, false);
                let grads = backward(&g, &x, &[1.5; 5], &out.mean, &out.variance, 1e-5, None, &dy);
                (out, grads)
            })
        };
        let one = run(1);
        assert!(one == run(3), "bitwise equal on 1 and 3 threads");
    }
}
