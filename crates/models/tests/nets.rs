//! Forward shapes of every network on the CPU (flex) device, configs, and real
//! optimisation steps that lower the loss.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::{InferenceStep, LearnerModel, TrainStep};
use burnfit_models::data::{
    FashionMnist, ImageBatch, ImageBatcher, RegressionBatcher, RegressionItem,
};
use burnfit_models::nets::{
    Classifier, CnnConfig, MlpConfig, MlpRegressorConfig, ModelConfig, ModelConfigError,
    ResNetConfig, SimpleCnnConfig, Task,
};

fn cpu() -> Device {
    Device::flex()
}

/// The first `n` training images of the committed subset as one batch.
fn image_batch(n: usize, device: &Device) -> ImageBatch {
    let data = FashionMnist::load_subset().unwrap();
    let items = (0..n).map(|i| data.train.get(i).unwrap()).collect();
    ImageBatcher.batch(items, device)
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

/// Compile-time check that a type is usable with Burn's `Learner`.
fn assert_learner_model<M: LearnerModel>(_: &M) {}

#[test]
fn batcher_shapes() {
    let batch = image_batch(3, &cpu());
    assert_eq!(batch.images.dims(), [3, 1, 28, 28]);
    assert_eq!(batch.targets.dims(), [3]);
}

#[test]
fn mlp_forward_shape() {
    let device = cpu();
    let model = MlpConfig::new().with_hidden(vec![32, 16]).init(&device);
    assert_learner_model(&model);
    let batch = image_batch(4, &device);
    assert_eq!(model.forward(batch.images.clone()).dims(), [4, 10]);
    let out = InferenceStep::step(&model, batch);
    assert_eq!(out.output.dims(), [4, 10]);
    assert!(scalar(out.loss).is_finite());
    // Display comes from #[derive(Module)].
    assert!(model.to_string().contains("Linear"));
}

#[test]
fn cnn_forward_shape() {
    let device = cpu();
    let model = CnnConfig::new()
        .with_channels([4, 8])
        .with_fc_size(16)
        .init(&device);
    assert_learner_model(&model);
    let batch = image_batch(2, &device);
    assert_eq!(model.forward(batch.images).dims(), [2, 10]);
    // Default sizes: 32/64 channels, fc 128 over 64 * 7 * 7 inputs.
    let default = CnnConfig::new().init(&device);
    assert_eq!(default.fc1.weight.dims(), [64 * 7 * 7, 128]);
}

#[test]
fn simple_cnn_has_the_keras_example_shapes_and_learns() {
    let device = cpu().autodiff();
    device.seed(1);
    let default = SimpleCnnConfig::new().init(&device);
    assert_learner_model(&default);
    // Keras's MNIST example: 28 -> 26 -> 24 -> pooled 12, 64 channels.
    assert_eq!(default.fc1.weight.dims(), [64 * 12 * 12, 128]);
    assert_eq!(default.conv1.weight.dims(), [32, 1, 3, 3]);

    let mut model = SimpleCnnConfig {
        channels: [4, 8],
        fc_size: 16,
        conv_dropout: 0.0,
        fc_dropout: 0.0,
        ..SimpleCnnConfig::default()
    }
    .init(&device);
    let batch = image_batch(16, &device);
    assert_eq!(model.forward(batch.images.clone()).dims(), [16, 10]);
    let mut optim = AdamConfig::new().init();
    let before = scalar(model.forward_classification(batch.clone()).loss);
    for _ in 0..15 {
        let out = TrainStep::step(&model, batch.clone());
        model = model.optimize(&mut optim, 3e-3_f64.into(), out.grads);
    }
    let after = scalar(model.forward_classification(batch).loss);
    assert!(after < before * 0.8, "15 steps: {before} -> {after}");
}

#[test]
fn resnet_forward_shape() {
    let device = cpu();
    let model = ResNetConfig::new()
        .with_stem_channels(4)
        .with_stage_channels(vec![4, 8])
        .with_blocks_per_stage(1)
        .init(&device);
    assert_learner_model(&model);
    assert_eq!(model.blocks.len(), 2);
    assert!(model.blocks[0].shortcut.is_none());
    assert!(model.blocks[1].shortcut.is_some());
    let batch = image_batch(2, &device);
    assert_eq!(model.forward(batch.images).dims(), [2, 10]);
}

#[test]
fn regressor_forward_shape() {
    let device = cpu();
    let model = MlpRegressorConfig::new(3)
        .with_hidden(vec![8])
        .init(&device);
    assert_learner_model(&model);
    let items = (0..5)
        .map(|i| RegressionItem {
            features: vec![i as f32, 1.0, -1.0],
            target: i as f32,
        })
        .collect();
    let batch = RegressionBatcher.batch(items, &device);
    assert_eq!(batch.features.dims(), [5, 3]);
    assert_eq!(batch.targets.dims(), [5, 1]);
    let out = InferenceStep::step(&model, batch);
    assert_eq!(out.output.dims(), [5, 1]);
    assert!(scalar(out.loss) >= 0.0);
}

#[test]
fn mlp_training_step_lowers_the_loss() {
    let device = cpu().autodiff();
    device.seed(0);
    let mut model = MlpConfig::new()
        .with_hidden(vec![64])
        .with_dropout(0.0)
        .init(&device);
    let mut optim = AdamConfig::new().init();
    let batch = image_batch(32, &device);

    let first = TrainStep::step(&model, batch.clone());
    let loss_before = scalar(first.item.loss.clone());
    assert!(
        loss_before.is_finite() && loss_before > 0.5,
        "{loss_before}"
    );
    model = model.optimize(&mut optim, 1e-3_f64.into(), first.grads);
    let loss_after_one = scalar(model.forward_classification(batch.clone()).loss);
    assert!(
        loss_after_one < loss_before,
        "one step: {loss_before} -> {loss_after_one}"
    );

    for _ in 0..10 {
        let out = TrainStep::step(&model, batch.clone());
        model = model.optimize(&mut optim, 1e-3_f64.into(), out.grads);
    }
    let loss_after = scalar(model.forward_classification(batch).loss);
    assert!(
        loss_after < loss_after_one * 0.8,
        "ten more steps: {loss_after_one} -> {loss_after}"
    );
}

#[test]
fn regressor_training_step_lowers_the_loss() {
    let device = cpu().autodiff();
    let mut model = MlpRegressorConfig::new(2)
        .with_hidden(vec![16])
        .init(&device);
    let mut optim = AdamConfig::new().init();
    let items: Vec<_> = (0..32)
        .map(|i| {
            let (a, b) = ((i % 8) as f32 / 8.0, (i / 8) as f32 / 4.0);
            RegressionItem {
                features: vec![a, b],
                target: 2.0 * a - b + 0.5,
            }
        })
        .collect();
    let batch = RegressionBatcher.batch(items, &device);
    let before = scalar(model.forward_regression(batch.clone()).loss);
    for _ in 0..5 {
        let out = TrainStep::step(&model, batch.clone());
        model = model.optimize(&mut optim, 1e-2_f64.into(), out.grads);
    }
    let after = scalar(model.forward_regression(batch).loss);
    assert!(after < before, "{before} -> {after}");
}

#[test]
fn batchnorm_models_run_in_validation_mode() {
    let device = cpu().autodiff();
    let model = CnnConfig::new()
        .with_channels([2, 4])
        .with_fc_size(8)
        .init(&device);
    let valid = model.valid();
    let batch = image_batch(2, &device.clone().without_autodiff());
    let out = InferenceStep::step(&valid, batch);
    assert_eq!(out.output.dims(), [2, 10]);
}

#[test]
fn model_config_from_toml_builds_a_classifier() {
    let device = cpu();
    let config: ModelConfig = toml::from_str(
        r#"
            kind = "resnet"
            stem_channels = 4
            stage_channels = [4, 8]
            blocks_per_stage = 1
        "#,
    )
    .unwrap();
    assert_eq!(config.kind(), "resnet");
    assert_eq!(config.task(), Task::Classification);
    let model = config.init_classifier(&device).unwrap();
    assert_learner_model(&model);
    assert!(matches!(model, Classifier::ResNet(_)));
    let batch = image_batch(2, &device);
    assert_eq!(model.forward(batch.images.clone()).dims(), [2, 10]);
    assert_eq!(InferenceStep::step(&model, batch).output.dims(), [2, 10]);

    // A bare kind takes every default.
    let cnn: ModelConfig = toml::from_str("kind = \"cnn\"").unwrap();
    assert_eq!(cnn, ModelConfig::Cnn(CnnConfig::default()));
    for kind in ModelConfig::KINDS {
        let parsed: ModelConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
        assert_eq!(Some(parsed), ModelConfig::default_for(kind));
    }

    // Round trip through JSON (Burn's Config::save format).
    let mlp = ModelConfig::Mlp(MlpConfig::new().with_hidden(vec![7]));
    let json = serde_json::to_string(&mlp).unwrap();
    assert!(json.contains("\"kind\":\"mlp\""), "{json}");
    assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), mlp);
}

#[test]
fn model_config_errors() {
    assert!(toml::from_str::<ModelConfig>("kind = \"transformer\"").is_err());
    assert!(toml::from_str::<ModelConfig>("kind = \"mlp\"\nhiden = [3]").is_err());
    let device = cpu();

    let bad = ModelConfig::Mlp(MlpConfig::new().with_dropout(1.5));
    assert!(matches!(
        bad.init_classifier(&device),
        Err(ModelConfigError::Invalid { kind: "mlp", .. })
    ));

    let reg: ModelConfig = toml::from_str("kind = \"mlp_regressor\"\nhidden = [4]").unwrap();
    assert_eq!(reg.task(), Task::Regression);
    assert!(reg.validate().is_ok());
    assert!(matches!(
        reg.init_classifier(&device),
        Err(ModelConfigError::WrongTask { .. })
    ));
    let model = reg.init_regressor(6, &device).unwrap();
    assert_eq!(model.hidden[0].weight.dims(), [6, 4]);

    let fixed = ModelConfig::MlpRegressor(MlpRegressorConfig::new(5));
    assert!(fixed.init_regressor(6, &device).is_err());
    assert!(
        ModelConfig::default()
            .init_regressor(6, &device)
            .unwrap_err()
            .to_string()
            .contains("regression")
    );
}
