//! The optimizer a config's `[optimizer]` describes.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use burnfit_models::adam::FusedAdam;

use crate::config::{OptimizerConfig, OptimizerKind};

/// The optimizer a config describes. Adam is Burn's, with its update fused
/// into one pass per parameter on flex ([`FusedAdam`]: the same numbers and
/// the same records).
pub fn optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    let clipping = match (config.clip_norm, config.clip_value) {
        (Some(norm), _) => Some(GradientClippingConfig::Norm(norm)),
        (None, Some(value)) => Some(GradientClippingConfig::Value(value)),
        (None, None) => None,
    };
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.kind {
        OptimizerKind::Adam => {
            let adam = FusedAdam::new(
                config.beta_1,
                config.beta_2,
                config.epsilon,
                decay.map(|decay| decay.penalty),
            );
            match clipping {
                Some(clipping) => ModuleOptimizer::from(adam).with_grad_clipping(clipping.init()),
                None => adam.into(),
            }
        }
        OptimizerKind::AdamW => AdamWConfig::new()
            .with_beta_1(config.beta_1)
            .with_beta_2(config.beta_2)
            .with_epsilon(config.epsilon)
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clipping)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_nesterov(config.nesterov)
            }))
            .with_gradient_clipping(clipping)
            .init(),
    }
}
