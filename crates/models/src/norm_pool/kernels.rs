//! The batch norm's kernels ([`crate::norm::kernels`]) with its ReLU and a
//! 2 × 2 max pooling of stride 2 ([`crate::pool::kernels`]) run plane by
//! plane: each channel's normalised plane of a sample is formed in a
//! buffer of one plane and pooled from there, and in the backward each
//! plane's gradient is routed into such a buffer and read from there, so
//! neither the batch norm's output nor the pooling's input gradient is
//! ever written whole.
//!
//! Invariant: **the layers apart, bit for bit**: the plane buffers hold
//! exactly the values the batch norm's output pass and the pooling's
//! gradient would write (the same functions form them), and everything
//! else is the same code.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffers::assume_written;
use crate::norm::kernels::{
    self as norm, Affine, GradRuns, NormGeometry, NormGrads, inverse_std, statistics,
};
use crate::pool::kernels::PoolGeometry;

/// The pooling's window and stride.
const WINDOW: [usize; 2] = [2, 2];

/// What [`forward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooled {
    /// The pooled output `[batch, channels, h / 2, w / 2]`.
    pub output: Vec<f32>,
    /// Per pooled value, where its maximum is in its window (row-major).
    pub codes: Vec<u8>,
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub variance: Vec<f32>,
}

/// The pooling of `[h, w]` planes (`g.spatial` must be `h · w`).
fn pool_geometry(g: &NormGeometry, input: [usize; 2]) -> PoolGeometry {
    assert_eq!(input[0] * input[1], g.spatial, "planes of h × w values");
    assert!(input[0] >= 2 && input[1] >= 2, "planes of at least 2 × 2");
    PoolGeometry {
        planes: g.batch * g.channels,
        input,
        window: WINDOW,
    }
}

/// `max_pool2d(relu(batch_norm(x)))` with the batch's statistics, on
/// `[batch, channels, h, w]` (`input` = `[h, w]`).
///
/// # Panics
///
/// If a slice does not match `g`, the batch is empty, or a plane is
/// smaller than 2 × 2.
pub fn forward(
    g: &NormGeometry,
    input: [usize; 2],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Pooled {
    assert_eq!(x.len(), g.len(), "input length");
    assert!(gamma.len() == g.channels && beta.len() == g.channels);
    assert!(g.count() > 0, "batch norm of an empty batch");
    let pool = pool_geometry(g, input);
    let (mean, variance) = statistics(g, x);
    let affine = Affine::new(gamma, beta, &mean, &inverse_std(&variance, epsilon));
    let (plane, offsets) = (pool.output_plane(), pool.code_offsets());
    let sample = g.channels * plane;
    let mut output = vec![0.0; g.batch * sample];
    let mut codes = vec![0u8; g.batch * sample];
    output
        .par_chunks_mut(sample)
        .zip(codes.par_chunks_mut(sample))
        .enumerate()
        .for_each_init(
            || vec![MaybeUninit::uninit(); g.spatial],
            |normalised, (n, (output, codes))| {
                for c in 0..g.channels {
                    affine.write_run(c, g.run(x, n, c), true, normalised);
                    // SAFETY: `write_run` wrote every value of the run.
                    let normalised = unsafe { assume_written(normalised) };
                    let at = c * plane..(c + 1) * plane;
                    pool.choose_plane(
                        normalised,
                        &mut output[at.clone()],
                        &mut codes[at],
                        &offsets,
                    );
                }
            },
        );
    Pooled {
        output,
        codes,
        mean,
        variance,
    }
}

/// The pooling's gradient, plane by plane: each channel's run of a sample
/// routed from the pooled gradient into the caller's scratch.
struct RoutedRuns<'a> {
    pool: PoolGeometry,
    offsets: Vec<usize>,
    codes: &'a [u8],
    pooled_grad: &'a [f32],
}

impl GradRuns for RoutedRuns<'_> {
    fn run<'a>(
        &'a self,
        g: &NormGeometry,
        n: usize,
        c: usize,
        scratch: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let plane = self.pool.output_plane();
        let at = (n * g.channels + c) * plane..(n * g.channels + c + 1) * plane;
        scratch.clear();
        scratch.resize(g.spatial, 0.0);
        self.pool.route_plane(
            &self.codes[at.clone()],
            &self.pooled_grad[at],
            None,
            scratch,
            &self.offsets,
        );
        scratch
    }
}

/// The gradients of [`forward`] from the pooled output's gradient, with
/// the statistics and codes it returned.
///
/// # Panics
///
/// If a slice does not match `g`, the batch is empty, or a plane is
/// smaller than 2 × 2.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &NormGeometry,
    input: [usize; 2],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
    codes: &[u8],
    pooled_grad: &[f32],
) -> NormGrads {
    assert!(x.len() == g.len(), "input length");
    assert!(gamma.len() == g.channels && beta.len() == g.channels);
    assert!(mean.len() == g.channels && variance.len() == g.channels);
    assert!(g.count() > 0, "batch norm of an empty batch");
    let pool = pool_geometry(g, input);
    let pooled_len = pool.planes * pool.output_plane();
    assert!(codes.len() == pooled_len && pooled_grad.len() == pooled_len);
    let inv_std = inverse_std(variance, epsilon);
    let affine = Affine::new(gamma, beta, mean, &inv_std);
    let runs = RoutedRuns {
        offsets: pool.code_offsets(),
        pool,
        codes,
        pooled_grad,
    };
    norm::backward_gated::<true>(g, x, gamma, mean, &inv_std, Some(&affine), &runs)
}
