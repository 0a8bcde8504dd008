//! [`FusedAdam`]: Burn's Adam, with each parameter's update done in one
//! multi-threaded pass on flex.
//!
//! Why: Burn's `Adam` updates a parameter with about a dozen whole-tensor
//! operations (scale, add, square, square root, divide, ...), each a pass
//! over the parameter on one thread on flex. On `simple_cnn` (1.2 million
//! parameters) those passes were a visible share of a CPU step
//! (docs/benchmarks.md §6); here they are one pass over both cores.
//!
//! Invariants:
//! * **The same numbers as Burn's `Adam`, bit for bit**: the same
//!   operations in the same order and roundings ([`kernels`], and the tests
//!   below against Burn's optimizer). The one exception is a moment Burn
//!   would leave subnormal, which is stored as zero (flush-to-zero, as
//!   TensorFlow does) because operating on it stalls the CPU; the
//!   parameters stay Burn's ([`kernels`] says why).
//! * **The same state and records.** The per-parameter state is Burn's
//!   [`AdamState`], so optimizer records (and burnfit's backups) written
//!   with either optimizer load into the other.
//! * **Deterministic**: element-wise, so the thread count changes nothing.
//! * **Other backends and other cases run Burn's `Adam`**: every backend but
//!   flex, non-`f32` parameters, and AMSGrad state.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, AdamState, LearningRate, Optimizer};
use burn::prelude::*;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub mod kernels;

/// Adam (Kingma & Ba), as Burn's [`AdamConfig`] builds it without AMSGrad,
/// with the fused update on flex. Wrap it in a
/// [`ModuleOptimizer`](burn::optim::ModuleOptimizer) with `.into()`, as any
/// Burn optimizer.
///
/// ```
/// use burn::optim::ModuleOptimizer;
/// use burnfit_models::adam::FusedAdam;
///
/// let optimizer: ModuleOptimizer = FusedAdam::new(0.9, 0.999, 1e-7, None).into();
/// # let _ = optimizer;
/// ```
#[derive(Clone)]
pub struct FusedAdam {
    /// β₁, β₂ and ε (read by the fused step, which needs `flex`).
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    settings: [f32; 3],
    /// The L2 weight-decay penalty (Burn's `WeightDecayConfig`).
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    penalty: Option<f32>,
    /// Burn's own Adam with the same settings, for what is not fused.
    burns: Adam,
}

impl FusedAdam {
    /// Adam with `beta_1`, `beta_2`, `epsilon` and an optional L2
    /// `weight_decay` penalty (added to the gradient, as Burn's Adam does).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: Option<f32>) -> Self {
        let burns = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        Self {
            settings: [beta_1, beta_2, epsilon],
            penalty: weight_decay,
            burns,
        }
    }

    /// Whether this step can run fused: an `f32` parameter on flex whose
    /// state (if any) has no AMSGrad maximum.
    #[cfg(feature = "flex")]
    fn fuses<const D: usize>(
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdamState<D>>,
    ) -> bool {
        use burn::tensor::DType;
        let f32s = tensor.dtype() == DType::F32 && grad.dtype() == DType::F32;
        let plain_state = state.is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && s.momentum.moment_1.dtype() == DType::F32
                && s.momentum.moment_2.dtype() == DType::F32
        });
        f32s && plain_state && crate::conv::uses_gemm_kernels(&tensor.device())
    }

    /// The step through [`extension::FusedAdamOps`].
    #[cfg(feature = "flex")]
    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        use burn::backend::Dispatch;
        use burn::optim::AdaptiveMomentumState;
        use extension::FusedAdamOps;

        // The first step's moments are placeholders the kernel overwrites.
        let (time, moment_1, moment_2) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.time + 1, momentum.moment_1, momentum.moment_2)
            }
            None => (1, tensor.zeros_like(), tensor.zeros_like()),
        };
        let scalars = kernels::AdamScalars::new(self.settings, time, lr, self.penalty);
        let (param, moment_1, moment_2) = <Dispatch as FusedAdamOps>::fused_adam_step(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            moment_1.into_dispatch(),
            moment_2.into_dispatch(),
            scalars,
        );
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_dispatch(moment_1),
            Tensor::from_dispatch(moment_2),
        );
        (Tensor::from_dispatch(param), Some(AdamState::new(momentum)))
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "flex")]
        if Self::fuses(&tensor, &grad, state.as_ref()) {
            return self.fused_step(lr, tensor, grad, state);
        }
        self.burns.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};

    /// A layer of 21,160 values (more than one chunk of the kernel), on
    /// flex with autodiff.
    fn layer() -> Linear {
        let device = Device::flex().autodiff();
        LinearConfig::new(230, 92).init(&device)
    }

    fn grads(model: &Linear, step: usize) -> GradientsParams {
        let device = model.weight.val().device();
        let x = Tensor::<1, Int>::arange(0..920, &device)
            .float()
            .reshape([4, 230])
            .mul_scalar(0.37 + step as f32)
            .sin();
        let loss = model
            .forward(x)
            .mul_scalar(1.0 + step as f32)
            .powi_scalar(2)
            .mean();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn bits(model: &Linear) -> Vec<u32> {
        let mut values = model.weight.val().into_data().try_to_vec::<f32>().unwrap();
        values.extend(
            model
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        values.into_iter().map(f32::to_bits).collect()
    }

    /// Runs `steps` steps of each optimizer on its own copy of the layer
    /// (the same gradients while the copies stay equal), and returns both.
    fn both(
        ours: &mut ModuleOptimizer,
        burns: &mut ModuleOptimizer,
        mut a: Linear,
        mut b: Linear,
        steps: std::ops::Range<usize>,
    ) -> (Linear, Linear) {
        for step in steps {
            let lr = 1e-2 / (1 + step) as f64;
            let (g_a, g_b) = (grads(&a, step), grads(&b, step));
            a = ours.step(lr, a, g_a);
            b = burns.step(lr, b, g_b);
        }
        (a, b)
    }

    #[test]
    fn fused_adam_equals_burns_adam_bit_for_bit() {
        for decay in [None, Some(0.05)] {
            let mut ours: ModuleOptimizer = FusedAdam::new(0.9, 0.999, 1e-7, decay).into();
            let mut burns = AdamConfig::new()
                .with_epsilon(1e-7)
                .with_weight_decay(decay.map(WeightDecayConfig::new))
                .init();
            let model = layer();
            let (a, b) = both(&mut ours, &mut burns, model.clone(), model, 0..5);
            assert_eq!(bits(&a), bits(&b), "weight decay {decay:?}");
        }
    }

    #[test]
    fn records_of_either_optimizer_load_into_the_other() {
        let mut burns = AdamConfig::new().with_epsilon(1e-7).init();
        let mut ours: ModuleOptimizer = FusedAdam::new(0.9, 0.999, 1e-7, None).into();
        let model = layer();
        let (a, b) = both(&mut ours, &mut burns, model.clone(), model, 0..3);
        // Swap the states: ours continues from Burn's record and Burn's
        // from ours.
        let ours_bytes = ours.into_bytes().unwrap();
        let burns_bytes = burns.into_bytes().unwrap();
        let fresh: ModuleOptimizer = FusedAdam::new(0.9, 0.999, 1e-7, None).into();
        let mut ours = fresh.from_bytes(burns_bytes).unwrap();
        let mut burns = AdamConfig::new()
            .with_epsilon(1e-7)
            .init()
            .from_bytes(ours_bytes)
            .unwrap();
        let (a, b) = both(&mut ours, &mut burns, a, b, 3..6);
        assert_eq!(bits(&a), bits(&b));
    }
}
