//! The optimizer step alone: Burn's `Adam` against [`FusedAdam`] on the
//! parameters of the example networks, on flex (docs/benchmarks.md §6,
//! item 9).
//!
//! `cargo run --example adam_profile -p burnfit-models [ROUNDS]`: each
//! round times 20 steps of each optimizer in turn, on gradients of a real
//! forward and backward pass; prints the range over the rounds of the
//! milliseconds per step and of the per-round ratio.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burnfit_models::adam::FusedAdam;
use burnfit_models::nets::{CnnConfig, MlpConfig, SimpleCnnConfig};

const STEPS: usize = 20;

/// Milliseconds per step of `optimizer` over [`STEPS`] steps of `model`,
/// each on fresh gradients from `grads` (not timed).
fn time_steps<M: Module + Clone>(
    optimizer: &mut ModuleOptimizer,
    mut model: M,
    grads: &impl Fn(&M) -> GradientsParams,
) -> f64 {
    let mut seconds = 0.0;
    for _ in 0..STEPS {
        let g = grads(&model);
        let start = Instant::now();
        model = optimizer.step(1e-3, model, g);
        seconds += start.elapsed().as_secs_f64();
    }
    seconds * 1e3 / STEPS as f64
}

fn range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

fn profile<M: Module + Clone>(
    name: &str,
    rounds: usize,
    model: M,
    grads: impl Fn(&M) -> GradientsParams,
) {
    let (mut burns, mut fused, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut burns_adam = AdamConfig::new().init();
        let mut fused_adam: ModuleOptimizer = FusedAdam::new(0.9, 0.999, 1e-5, None).into();
        let b = time_steps(&mut burns_adam, model.clone(), &grads);
        let f = time_steps(&mut fused_adam, model.clone(), &grads);
        burns.push(b);
        fused.push(f);
        ratios.push(f / b);
    }
    let (b, f, r) = (range(&burns), range(&fused), range(&ratios));
    println!(
        "| {name} | {} | {:.2}–{:.2} | {:.2}–{:.2} | {:.2}–{:.2}× |",
        model.num_params(),
        b.0,
        b.1,
        f.0,
        f.1,
        r.0,
        r.1
    );
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let device = Device::flex().autodiff();
    let images = Tensor::<4>::random([64, 1, 28, 28], Distribution::Default, &device);
    println!(
        "# Adam step alone, flex, {STEPS} steps per round, {rounds} rounds (ranges over the rounds, ms per step)"
    );
    println!("| network | parameters | Burn's Adam | FusedAdam | fused / Burn's |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mlp = MlpConfig::new().init(&device);
    profile("mlp", rounds, mlp, |m| {
        GradientsParams::from_grads(
            m.forward(images.clone()).powi_scalar(2).mean().backward(),
            m,
        )
    });
    let simple = SimpleCnnConfig::new().init(&device);
    profile("simple_cnn", rounds, simple, |m| {
        GradientsParams::from_grads(
            m.forward(images.clone()).powi_scalar(2).mean().backward(),
            m,
        )
    });
    let cnn = CnnConfig {
        channels: [32, 64],
        ..CnnConfig::new()
    }
    .init(&device);
    profile("cnn 32/64", rounds, cnn, |m| {
        GradientsParams::from_grads(
            m.forward(images.clone()).powi_scalar(2).mean().backward(),
            m,
        )
    });
}
