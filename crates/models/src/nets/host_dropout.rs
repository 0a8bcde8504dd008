//! Dropout with the mask drawn by a fast generator on the host, for the CPU
//! backends.
//!
//! Burn's [`Dropout`] draws its Bernoulli mask through the backend's random
//! tensor, which on flex and ndarray is a ChaCha generator filling the mask
//! one value at a time on one thread: ≈ 24 ns per element, 14 ms per step
//! for the dropout after the pooled 64×12×12 maps of `simple_cnn` at
//! batch 64, about 4% of the whole step (see docs/benchmarks.md).
//! [`dropout`] draws one seed from Burn's generator (so `Device::seed` still
//! makes runs reproducible) and expands it with xoshiro generators into a
//! ready-scaled mask, chunk by chunk on every core ([`MASK_CHUNK`]): one
//! multiplication instead of two, one 64-bit draw for two values.
//! On other devices (wgpu, where the mask is drawn on the GPU) it is Burn's
//! dropout unchanged, except in a worker of a multi-device step, which has
//! a random stream of its own ([`burnfit_core::random`]): there the mask is
//! always drawn from that stream, so that the workers can run at once and
//! still draw the same masks on every run.
//!
//! The layer stays Burn's [`Dropout`] module, so records are unchanged.

use std::mem::MaybeUninit;

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// `dropout.forward(input)`, with the mask drawn on the host when the
/// device is a CPU backend (flex or ndarray).
///
/// Like Burn's, it is the identity outside training (no autodiff device, or
/// the module switched to evaluation) and for probability 0; kept values are
/// scaled by `1 / (1 - prob)`.
///
/// ```
/// use burn::nn::DropoutConfig;
/// use burn::prelude::*;
/// use burnfit_models::nets::host_dropout::dropout;
///
/// let device = Device::flex().autodiff();
/// let layer = DropoutConfig::new(0.5).init();
/// let out = dropout(&layer, Tensor::<2>::ones([4, 1000], &device));
/// let kept: f32 = out.clone().greater_elem(0.0).float().mean().into_scalar();
/// assert!((kept - 0.5).abs() < 0.05);
/// let max: f32 = out.max().into_scalar();
/// assert_eq!(max, 2.0);
/// ```
pub fn dropout<const D: usize>(dropout: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    if !dropout.training.is_enabled() || !device.is_autodiff() || dropout.prob == 0.0 {
        return input;
    }
    // A worker of a multi-device step has a random stream of its own
    // (`burnfit_core::random`): the mask is drawn from it on the host, on
    // every device, so that workers running at once draw what they would
    // in turn.
    let stream_seed = burnfit_core::random::next_seed();
    if stream_seed.is_none() && !on_host(&device) {
        return dropout.forward(input);
    }
    let keep = 1.0 - dropout.prob;
    let scale = (1.0 / keep) as f32;
    let shape = input.shape();
    let seed = stream_seed.unwrap_or_else(|| seed_from_burn(&device));
    let mask = mask(shape.num_elements(), keep, scale, seed);
    let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &device);
    input * mask
}

/// Values per chunk of a mask, each drawn from a generator of its own.
const MASK_CHUNK: usize = 1 << 14;

/// A mask of `len` values, each `scale` with probability `keep` and 0
/// otherwise. Chunk `i` of [`MASK_CHUNK`] values is drawn from a xoshiro
/// generator seeded by `(seed, i)`, so the chunks are drawn on every core
/// (with the `flex` feature) and the mask does not depend on how many
/// threads there are. Each 64-bit draw decides two values, by comparing
/// each half with `keep`'s share of 2³².
fn mask(len: usize, keep: f64, scale: f32, seed: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let value = |half: u32| if half < threshold { scale } else { 0.0 };
    // Every value of `out` written, two per draw (a last odd one from the
    // low half of one more draw).
    let fill = |chunk: usize, out: &mut [MaybeUninit<f32>]| {
        let chunk_seed = seed ^ (chunk as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = SmallRng::seed_from_u64(chunk_seed);
        let mut pairs = out.chunks_exact_mut(2);
        for pair in &mut pairs {
            let draw = rng.next_u64();
            pair[0].write(value(draw as u32));
            pair[1].write(value((draw >> 32) as u32));
        }
        if let [last] = pairs.into_remainder() {
            last.write(value(rng.next_u64() as u32));
        }
    };
    #[cfg(feature = "flex")]
    {
        // SAFETY: `fill` writes every value of its chunk.
        unsafe {
            crate::buffers::par_build_uninit(len, MASK_CHUNK, 1, || (), |i, out, ()| fill(i, out))
        }
    }
    #[cfg(not(feature = "flex"))]
    {
        let mut values = Vec::with_capacity(len);
        for (i, out) in values.spare_capacity_mut()[..len]
            .chunks_mut(MASK_CHUNK)
            .enumerate()
        {
            fill(i, out);
        }
        // SAFETY: the chunks cover `values[..len]`, and `fill` wrote every value of each.
        unsafe { values.set_len(len) };
        values
    }
}

/// Whether tensors on `device` live in host memory (flex, and ndarray when
/// this crate's `ndarray` feature is on: Burn names its device only then).
fn on_host(device: &Device) -> bool {
    let base = device.clone().without_autodiff();
    // ndarray is deprecated in Burn 0.22 but still a backend users can pick.
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if base == Device::ndarray() {
        return true;
    }
    base == Device::flex()
}

/// A 64-bit seed drawn from Burn's generator for `device`.
fn seed_from_burn(device: &Device) -> u64 {
    seed_from_halves(
        Tensor::<1>::random(
            [2],
            Distribution::Default,
            &device.clone().without_autodiff(),
        )
        .into_data(),
    )
}

/// The seed two uniform draws in `[0, 1)` make, whatever float type Burn
/// drew them in.
///
/// # Panics
///
/// When the draws cannot be read: a made-up seed (0) would give every mask
/// of the run the same pattern, silently.
fn seed_from_halves(halves: TensorData) -> u64 {
    let halves = halves
        .try_into_vec_as::<f32>()
        .unwrap_or_else(|e| panic!("dropout: cannot read the seed Burn drew: {e:?}"));
    halves.iter().fold(0u64, |acc, h| {
        (acc << 32) ^ u64::from((h * 4_294_967_296.0) as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    #[test]
    fn same_seed_same_mask_and_gradient_flows_through_kept_values_only() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.3).init();
        let run = || {
            device.seed(7);
            let x = Tensor::<2>::ones([8, 500], &device).require_grad();
            let y = dropout(&layer, x.clone());
            let grads = y.clone().sum().backward();
            (y.into_data(), x.grad(&grads).unwrap().into_data())
        };
        let (first, grad) = run();
        let (second, _) = run();
        assert_eq!(first, second, "Device::seed makes the mask reproducible");
        // The gradient of a kept value is the scale, of a dropped one 0.
        assert_eq!(first, grad);
        let values = first.try_to_vec::<f32>().unwrap();
        let kept = values.iter().filter(|&&v| v > 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.7).abs() < 0.03, "kept fraction {kept}");
        assert!(
            values
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6)
        );
    }

    #[test]
    fn a_threads_random_stream_gives_its_mask_whatever_burns_generator_does() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let mask = |stream: u64, burn_seed: u64| {
            burnfit_core::random::with_stream(Some(stream), || {
                device.seed(burn_seed);
                dropout(&layer, Tensor::<2>::ones([4, 64], &device)).into_data()
            })
        };
        let first = mask(3, 1);
        assert_eq!(mask(3, 2), first, "Burn's generator is not drawn from");
        assert_ne!(mask(4, 1), first, "the stream's seed decides the mask");
    }

    #[test]
    fn a_mask_keeps_its_share_and_does_not_depend_on_the_number_of_threads() {
        let len = 5 * MASK_CHUNK + 3;
        let draw = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| mask(len, 0.8, 1.25, 42))
        };
        let values = draw(1);
        assert!(values == draw(3), "bitwise equal on 1 and 3 threads");
        assert!(values.iter().all(|&v| v == 0.0 || v == 1.25));
        for chunk in values.chunks_exact(MASK_CHUNK) {
            let kept = chunk.iter().filter(|&&v| v > 0.0).count() as f64 / chunk.len() as f64;
            assert!((kept - 0.8).abs() < 0.05, "kept fraction {kept} in a chunk");
        }
        let first: Vec<f32> = values[..MASK_CHUNK].to_vec();
        assert_ne!(
            first,
            values[MASK_CHUNK..2 * MASK_CHUNK],
            "chunks draw apart"
        );
        assert_ne!(
            mask(len, 0.8, 1.25, 43),
            values,
            "the seed decides the mask"
        );
    }

    #[test]
    fn the_seed_is_read_whatever_float_type_burn_draws_in() {
        let single = seed_from_halves(TensorData::new(vec![0.25f32, 0.5], [2]));
        assert_ne!(single, 0);
        let double = seed_from_halves(TensorData::new(vec![0.25f64, 0.5], [2]));
        assert_eq!(double, single, "not a seed of 0 for f64 draws");
    }

    #[test]
    fn identity_in_evaluation_and_without_autodiff() {
        let device = Device::flex();
        let layer = DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::ones([3, 4], &device);
        assert_eq!(
            dropout(&layer, x.clone()).into_data(),
            x.clone().into_data()
        );
        let ad = Tensor::<2>::ones([3, 4], &device.clone().autodiff());
        let frozen = Dropout {
            prob: 0.5,
            training: burn::module::Param::from_bool(false),
        };
        assert_eq!(dropout(&frozen, ad.clone()).into_data(), ad.into_data());
    }
}
