//! The features beyond Keras inside Burn's real loop, on the tiny real
//! model: gradient hooks, spike skipping, the range test, weight averaging,
//! failures, batch metrics, and resume with every stateful one active.

use crate::common;

use std::sync::{Arc, Mutex};

use burnfit_callbacks::builtins::{
    EarlyStopping, EarlyStoppingConfig, EmaConfig, ExponentialMovingAverage, LearningRateFinder,
    LearningRateFinderConfig, LearningRateScheduler, LearningRateSchedulerConfig,
    OnExceptionCheckpoint, OnExceptionCheckpointConfig, ScheduleConfig, SpikeAction,
    SpikeDetection, SpikeDetectionConfig, StochasticWeightAveraging,
    StochasticWeightAveragingConfig, SwapEmaWeights, SwapEmaWeightsConfig, Timer, TimerConfig,
    TimerDuration,
};
use burnfit_callbacks::checkpoint_file::CheckpointFile;
use burnfit_callbacks::{
    Callback, Callbacks, Context, GradientView, Logs, ParamRead, Result, TrainEnd,
};
use common::{Item, Tiny, weights};

fn initial_weights() -> Vec<f32> {
    weights(&Tiny::new(&common::device()))
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// What the gradient hooks saw of one step: norms by parameter, the global
/// norm, the loss.
type StepSeen = (Vec<(String, f64)>, f64, Option<f64>);

/// Reads every step's gradients; optionally skips every optimizer step.
#[derive(Clone, Default)]
struct GradientProbe {
    skip_all: bool,
    seen: Arc<Mutex<Vec<StepSeen>>>,
}

impl Callback for GradientProbe {
    fn wants_gradients(&self) -> bool {
        true
    }
    fn on_after_backward(
        &mut self,
        _batch: usize,
        grads: &dyn GradientView,
        _ctx: &mut Context,
    ) -> Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push((grads.norms(), grads.global_norm(), grads.loss()));
        Ok(())
    }
    fn on_before_optimizer_step(
        &mut self,
        _batch: usize,
        _grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        if self.skip_all {
            ctx.skip_optimizer_step()?;
        }
        Ok(())
    }
}

#[test]
fn gradient_hooks_read_each_steps_gradients_and_a_skipped_step_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let probe = GradientProbe::default();
    let trained = common::train(
        dir.path(),
        1,
        16,
        4,
        Callbacks::new().with(probe.clone()),
        |t| t,
    );
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one call per step");
    for (norms, global, loss) in &seen {
        let names: Vec<&str> = norms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["linear/weight", "linear/bias"]);
        assert!(norms.iter().all(|(_, n)| n.is_finite() && *n > 0.0));
        let by_layer = norms.iter().map(|(_, n)| n * n).sum::<f64>().sqrt();
        assert!((global - by_layer).abs() < 1e-9);
        assert!(loss.is_some_and(|l| l > 0.0));
    }
    assert_ne!(weights(&trained.model), initial_weights());

    let dir = tempfile::tempdir().unwrap();
    let skipping = GradientProbe {
        skip_all: true,
        ..Default::default()
    };
    let untouched = common::train(dir.path(), 1, 16, 4, Callbacks::new().with(skipping), |t| t);
    assert_eq!(weights(&untouched.model), initial_weights());
}

#[test]
fn spike_detection_skips_the_spiking_batch_as_if_it_were_not_there() {
    let clean = common::items(12, 1);
    let mut spiky = clean.clone();
    // A batch whose features are 40× the others: its loss is far above
    // three times the running mean.
    let spike: Vec<Item> = common::items(4, 9)
        .into_iter()
        .map(|mut item| {
            item.x = item.x.map(|v| v * 40.0);
            item.y = (item.y + 1) % 3;
            item
        })
        .collect();
    spiky.splice(8..8, spike);

    let dir = tempfile::tempdir().unwrap();
    let without = common::train_items(dir.path(), 1, clean, 4, Callbacks::new());

    let dir = tempfile::tempdir().unwrap();
    let detector = SpikeDetection::new(SpikeDetectionConfig {
        action: SpikeAction::Skip,
        ..Default::default()
    })
    .unwrap();
    let with = common::train_items(dir.path(), 1, spiky, 4, Callbacks::new().with(detector));
    assert_eq!(weights(&with.model), weights(&without.model));
}

#[test]
fn the_range_test_leaves_the_model_as_it_was_and_records_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let finder = LearningRateFinder::new(LearningRateFinderConfig {
        min_lr: 1e-5,
        max_lr: 1.0,
        num_training_steps: 12,
        early_stop_threshold: None,
        ..Default::default()
    })
    .unwrap();
    let handle = finder.handle();
    let callbacks = Callbacks::new().with(finder);
    let outcome = callbacks.outcome();
    let result = common::train(dir.path(), 5, 16, 4, callbacks, |t| t);
    assert_eq!(weights(&result.model), initial_weights());
    let found = handle.lock().unwrap().clone().unwrap();
    assert_eq!(found.lrs.len(), 12);
    assert!((found.lrs[0] - 1e-5).abs() < 1e-15 && (found.lrs[11] - 1.0).abs() < 1e-12);
    assert!(found.raw_losses.iter().all(|l| l.is_finite()));
    assert!(
        outcome
            .get()
            .stop_reason
            .as_deref()
            .unwrap()
            .contains("sweep done"),
        "stops when the sweep is done"
    );
}

/// Records the weights after every step and at each epoch end, and what
/// the model holds during validation.
#[derive(Clone, Default)]
struct WeightTrace {
    steps: Arc<Mutex<Vec<Vec<f32>>>>,
    epochs: Arc<Mutex<Vec<Vec<f32>>>>,
    in_validation: Arc<Mutex<Vec<Vec<f32>>>>,
    lrs: Arc<Mutex<Vec<f64>>>,
}

impl Callback for WeightTrace {
    fn on_train_batch_end(&mut self, _b: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
        self.steps
            .lock()
            .unwrap()
            .push(weights(&ctx.model::<Tiny>().unwrap()));
        Ok(())
    }
    fn on_epoch_begin(&mut self, _epoch: usize, ctx: &mut Context) -> Result<()> {
        self.lrs.lock().unwrap().push(ctx.learning_rate().unwrap());
        Ok(())
    }
    fn on_validation_batch_end(&mut self, _b: usize, _l: &Logs, ctx: &mut Context) -> Result<()> {
        self.in_validation
            .lock()
            .unwrap()
            .push(weights(&ctx.model::<Tiny>().unwrap()));
        Ok(())
    }
    fn on_epoch_end(&mut self, _e: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
        self.epochs
            .lock()
            .unwrap()
            .push(weights(&ctx.model::<Tiny>().unwrap()));
        Ok(())
    }
}

/// Keras's EMA over a sequence of weights: the first step copies.
fn keras_ema(steps: &[Vec<f32>], momentum: f64) -> Vec<f32> {
    let mut average: Vec<f64> = steps[0].iter().map(|&v| v as f64).collect();
    for step in &steps[1..] {
        for (a, &w) in average.iter_mut().zip(step) {
            *a = momentum * *a + (1.0 - momentum) * w as f64;
        }
    }
    average.into_iter().map(|v| v as f32).collect()
}

#[test]
fn ema_follows_keras_and_swap_puts_the_average_in_for_validation_only() {
    let dir = tempfile::tempdir().unwrap();
    let ema = ExponentialMovingAverage::new(EmaConfig {
        momentum: 0.8,
        overwrite_frequency: None,
    })
    .unwrap();
    let swap = SwapEmaWeights::new(SwapEmaWeightsConfig {
        swap_on_epoch: false,
    });
    let trace = WeightTrace::default();
    let callbacks = Callbacks::new()
        .with(ema)
        .with(trace.clone())
        .with(swap)
        .with(trace.clone());
    let result = common::train(dir.path(), 2, 16, 4, callbacks, |t| t);
    let steps = trace.steps.lock().unwrap().clone();
    // Each step is recorded twice (the trace is in the list twice).
    let steps: Vec<Vec<f32>> = steps.chunks(2).map(|c| c[0].clone()).collect();
    assert_eq!(steps.len(), 8);
    // Validation of epoch 0 saw the average of its four steps; the model
    // ends training with the average of all eight.
    let validation = trace.in_validation.lock().unwrap().clone();
    assert!(close(&validation[0], &keras_ema(&steps[..4], 0.8), 1e-6));
    assert!(close(
        &weights(&result.model),
        &keras_ema(&steps, 0.8),
        1e-6
    ));
    // Training itself continued from the trained weights, not the average.
    let epochs = trace.epochs.lock().unwrap().clone();
    assert_eq!(epochs[0], steps[3]);
}

#[test]
fn swa_averages_the_epochs_from_its_start_and_anneals_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let swa = StochasticWeightAveraging::new(StochasticWeightAveragingConfig {
        swa_lrs: 1e-3,
        swa_epoch_start: 2.0,
        annealing_epochs: 2,
        annealing_strategy: "cos".into(),
    })
    .unwrap();
    let trace = WeightTrace::default();
    let callbacks = Callbacks::new().with(swa).with(trace.clone());
    let result = common::train(dir.path(), 4, 16, 4, callbacks, |t| t);
    let epochs = trace.epochs.lock().unwrap().clone();
    let mean: Vec<f32> = epochs[2]
        .iter()
        .zip(&epochs[3])
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    assert!(close(&weights(&result.model), &mean, 1e-6));
    // Epoch 2 starts at the rate it had; epoch 3 halfway (cosine) to swa_lrs.
    let lrs = trace.lrs.lock().unwrap().clone();
    assert!((lrs[2] - 1e-2).abs() < 1e-12, "{lrs:?}");
    assert!((lrs[3] - (1e-3 * 0.5 + 1e-2 * 0.5)).abs() < 1e-9, "{lrs:?}");
}

/// Fails at epoch 1, batch 1.
struct FailAt;

impl Callback for FailAt {
    fn on_train_batch_end(&mut self, batch: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
        if (ctx.progress().epoch, batch) == (1, 1) {
            return Err(burnfit_callbacks::CallbackError::Runtime {
                callback: "FailAt",
                message: "boom".into(),
            });
        }
        Ok(())
    }
}

#[test]
fn a_failure_or_a_panic_leaves_an_on_exception_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let saver = OnExceptionCheckpoint::new(OnExceptionCheckpointConfig {
        dirpath: dir.path().join("crash"),
        filename: "on_exception".into(),
    });
    let path = saver.path();
    let callbacks = Callbacks::new().with(saver).with(FailAt);
    let outcome = callbacks.outcome();
    common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    assert!(outcome.get().error.unwrap().message.contains("boom"));
    let file = CheckpointFile::load(&path).unwrap();
    for section in ["model", "optimizer", "scheduler", "progress"] {
        assert!(file.section(section).is_some(), "{section}");
    }

    // A panic inside a training step (a poisoned item) ends training with
    // an error, and the checkpoint is written too.
    let dir = tempfile::tempdir().unwrap();
    let saver = OnExceptionCheckpoint::new(OnExceptionCheckpointConfig {
        dirpath: dir.path().to_path_buf(),
        filename: "crash".into(),
    });
    let path = saver.path();
    let mut items = common::items(16, 1);
    items[9].x[0] = 999.0;
    let callbacks = Callbacks::new().with(saver);
    let outcome = callbacks.outcome();
    common::train_items(dir.path(), 2, items, 4, callbacks);
    let error = outcome.get().error.unwrap().message;
    assert!(error.contains("poisoned item"), "{error}");
    assert!(CheckpointFile::load(&path).is_ok());
}

#[test]
fn a_spent_timer_stops_training_at_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let timer = Timer::new(TimerConfig {
        duration: TimerDuration::Seconds(1e-9),
        interval: Default::default(),
        verbose: false,
    })
    .unwrap();
    let callbacks = Callbacks::new().with(timer);
    let outcome = callbacks.outcome();
    common::train(dir.path(), 3, 16, 4, callbacks, |t| t);
    let outcome = outcome.get();
    assert!(outcome.stop_reason.unwrap().starts_with("Timer"));
    assert_eq!(outcome.global_step, 1);
    assert_eq!(
        outcome.train_end,
        Some(TrainEnd::Stopped("Timer: time limit of 0 s reached".into()))
    );
}

/// A parameter's path and shape.
type ParamShape = (String, Vec<usize>);

/// Keeps batch logs and what the snapshot lists of the model.
#[derive(Clone, Default)]
struct BatchLogs {
    train: Arc<Mutex<Vec<Logs>>>,
    valid: Arc<Mutex<Vec<Logs>>>,
    epochs: Arc<Mutex<Vec<Logs>>>,
    params: Arc<Mutex<Vec<ParamShape>>>,
}

impl Callback for BatchLogs {
    fn wants_batch_logs(&self) -> bool {
        true
    }
    fn wants_batch_metrics(&self) -> bool {
        true
    }
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        *self.params.lock().unwrap() = ctx
            .snapshot_model()
            .params(ParamRead::Shapes)
            .unwrap()
            .into_iter()
            .map(|p| (p.path, p.shape))
            .collect();
        Ok(())
    }
    fn on_train_batch_end(&mut self, _b: usize, logs: &mut Logs, _c: &mut Context) -> Result<()> {
        self.train.lock().unwrap().push(logs.clone());
        Ok(())
    }
    fn on_validation_batch_end(&mut self, _b: usize, logs: &Logs, _c: &mut Context) -> Result<()> {
        self.valid.lock().unwrap().push(logs.clone());
        Ok(())
    }
    fn on_epoch_end(&mut self, _e: usize, logs: &mut Logs, _c: &mut Context) -> Result<()> {
        self.epochs.lock().unwrap().push(logs.clone());
        Ok(())
    }
}

#[test]
fn batch_logs_hold_every_metrics_running_mean_and_end_at_the_epoch_value() {
    let dir = tempfile::tempdir().unwrap();
    let probe = BatchLogs::default();
    common::train(
        dir.path(),
        1,
        16,
        4,
        Callbacks::new().with(probe.clone()),
        |t| t,
    );
    let train = probe.train.lock().unwrap().clone();
    let epoch = probe.epochs.lock().unwrap()[0].clone();
    let last = train.last().unwrap();
    for key in ["loss", "accuracy"] {
        let (batch, epoch) = (last.get(key).unwrap(), epoch.get(key).unwrap());
        assert!((batch - epoch).abs() < 1e-6, "{key}: {batch} vs {epoch}");
    }
    let valid = probe.valid.lock().unwrap().clone();
    assert_eq!(valid.len(), 1);
    let val_loss = epoch.get("val_loss").unwrap();
    assert!((valid[0].get("loss").unwrap() - val_loss).abs() < 1e-6);
    assert!(valid[0].get("accuracy").is_some());
    assert_eq!(
        *probe.params.lock().unwrap(),
        [
            ("linear/weight".to_string(), vec![4, 3]),
            ("linear/bias".to_string(), vec![3])
        ]
    );
}

/// Every stateful feature at once, so a resume must restore all of them
/// (the model ends with SWA's average, the last to be put in); or, with
/// `early`, EarlyStopping alone, restoring its best weights at the end.
fn stateful_callbacks(backups: &std::path::Path, trace: &WeightTrace, early: bool) -> Callbacks {
    if early {
        // "Best" is the highest training loss: epoch 0, before the
        // interruption, so its weights must come from the backup.
        let early = EarlyStopping::new(EarlyStoppingConfig {
            monitor: "loss".into(),
            mode: "max".into(),
            patience: 10,
            restore_best_weights: true,
            ..Default::default()
        })
        .unwrap();
        return Callbacks::new()
            .with(backup_callback(backups))
            .with(early)
            .with(trace.clone());
    }
    let ema = ExponentialMovingAverage::new(EmaConfig {
        momentum: 0.7,
        overwrite_frequency: Some(5),
    })
    .unwrap();
    let swap = SwapEmaWeights::new(SwapEmaWeightsConfig {
        swap_on_epoch: true,
    });
    let schedule = LearningRateScheduler::new(LearningRateSchedulerConfig {
        schedule: ScheduleConfig::OneCycle {
            max_lr: 0.05,
            total_steps: None,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        verbose: 0,
    })
    .unwrap();
    let swa = StochasticWeightAveraging::new(StochasticWeightAveragingConfig {
        swa_lrs: 1e-3,
        // A fraction: epoch int(4 × 0.2) = 0 on, so the average holds
        // epoch 0 when the run is interrupted in epoch 1.
        swa_epoch_start: 0.2,
        annealing_epochs: 2,
        annealing_strategy: "linear".into(),
    })
    .unwrap();
    let spikes = SpikeDetection::new(SpikeDetectionConfig {
        action: SpikeAction::Skip,
        rtol: Some(0.05),
        ..Default::default()
    })
    .unwrap();
    Callbacks::new()
        .with(backup_callback(backups))
        .with(schedule)
        .with(spikes)
        .with(ema)
        .with(swa)
        .with(trace.clone())
        .with(swap)
}

fn backup_callback(dir: &std::path::Path) -> impl Callback + use<> {
    use burnfit_callbacks::builtins::{BackupAndRestore, BackupAndRestoreConfig, BackupFrequency};
    BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: dir.to_string_lossy().into_owned(),
        save_freq: BackupFrequency::Epoch,
        delete_checkpoint: false,
        keep: 2,
    })
    .unwrap()
}

/// Interrupts once, at epoch 1, batch 1.
#[derive(Clone, Default)]
struct InterruptOnce {
    interrupter: Arc<Mutex<Option<burn::train::Interrupter>>>,
}

impl Callback for InterruptOnce {
    fn on_train_batch_end(&mut self, batch: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
        if (ctx.progress().epoch, batch) == (1, 1) {
            self.interrupter
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .stop(Some("test"));
        }
        Ok(())
    }
}

#[test]
fn resume_with_every_stateful_feature_matches_the_straight_run() {
    for early in [false, true] {
        resume_matches_straight_run(early);
    }
}

fn resume_matches_straight_run(early: bool) {
    let epochs = 4;
    let dir = tempfile::tempdir().unwrap();
    let straight = WeightTrace::default();
    let callbacks = stateful_callbacks(&dir.path().join("backup"), &straight, early);
    let straight_result = common::train(dir.path(), epochs, 16, 4, callbacks, |t| t);

    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backup");
    let first = WeightTrace::default();
    let interrupt = InterruptOnce::default();
    let slot = interrupt.interrupter.clone();
    let callbacks = stateful_callbacks(&backups, &first, early).with(interrupt);
    common::train(dir.path(), epochs, 16, 4, callbacks, move |t| {
        *slot.lock().unwrap() = Some(t.interrupter());
        t
    });
    let resumed = WeightTrace::default();
    let callbacks = stateful_callbacks(&backups, &resumed, early);
    let outcome = callbacks.outcome();
    let resumed_result = common::train(dir.path(), epochs, 16, 4, callbacks, |t| t);
    assert_eq!(outcome.get().resumed_at, Some((1, 2)));

    let mut epochs_seen = first.epochs.lock().unwrap().clone();
    epochs_seen.extend(resumed.epochs.lock().unwrap().iter().cloned());
    let straight_epochs = straight.epochs.lock().unwrap().clone();
    assert_eq!(epochs_seen, straight_epochs);
    let mut validation = first.in_validation.lock().unwrap().clone();
    validation.extend(resumed.in_validation.lock().unwrap().iter().cloned());
    assert_eq!(validation, *straight.in_validation.lock().unwrap());
    let final_weights = weights(&straight_result.model);
    assert_eq!(weights(&resumed_result.model), final_weights);
    // The end is not simply the last epoch's weights: an average (or the
    // best epoch's weights) was put in.
    assert_ne!(
        &final_weights,
        straight_epochs.last().unwrap(),
        "early = {early}"
    );
}

/// Records, at train end, BatchNorm statistics and trainable weights of a
/// `Classifier`, by parameter path.
#[derive(Clone, Default)]
struct BatchNormProbe {
    at_end: Arc<Mutex<Vec<burnfit_callbacks::ParamInfo>>>,
    epochs: Arc<Mutex<Vec<Vec<burnfit_callbacks::ParamInfo>>>>,
}

impl Callback for BatchNormProbe {
    fn on_epoch_end(&mut self, _e: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
        let params = ctx.snapshot_model().params(ParamRead::Values).unwrap();
        self.epochs.lock().unwrap().push(params);
        Ok(())
    }
    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        *self.at_end.lock().unwrap() = ctx.snapshot_model().params(ParamRead::Values).unwrap();
        Ok(())
    }
}

#[test]
fn swa_ends_with_averaged_weights_and_batch_norm_statistics_recomputed_for_them() {
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::optim::AdamConfig;
    use burn::train::metric::LossMetric;
    use burn::train::{Learner, SupervisedTraining};
    use burnfit_callbacks::WithCallbacks;
    use burnfit_models::Classifier;
    use burnfit_models::data::{FashionMnist, ImageBatcher};
    use burnfit_models::nets::CnnConfig;

    let device = common::device();
    let data = FashionMnist::load_subset().unwrap();
    let subset = |dataset, n| burn::data::dataset::transform::PartialDataset::new(dataset, 0, n);
    let train = DataLoaderBuilder::new(ImageBatcher)
        .batch_size(32)
        .build(subset(data.train, 128));
    let valid = DataLoaderBuilder::new(ImageBatcher)
        .batch_size(64)
        .build(subset(data.test, 64));
    let swa = StochasticWeightAveraging::new(StochasticWeightAveragingConfig {
        swa_lrs: 1e-3,
        swa_epoch_start: 1.0,
        annealing_epochs: 1,
        annealing_strategy: "cos".into(),
    })
    .unwrap();
    let before = BatchNormProbe::default();
    let after = BatchNormProbe::default();
    let mut callbacks = Callbacks::new()
        .with(before.clone())
        .with(swa)
        .with(after.clone())
        .quiet(true);
    let lr = callbacks.lr_scheduler(1e-3);
    let config = CnnConfig {
        channels: [4, 8],
        fc_size: 16,
        ..CnnConfig::new()
    };
    let model: Classifier = config.init(&device.clone().autodiff()).into();
    let dir = tempfile::tempdir().unwrap();
    SupervisedTraining::new(dir.path(), train, valid)
        .metrics((LossMetric::new(),))
        .num_epochs(3)
        .with_application_logger(None)
        .with_callbacks(callbacks)
        .launch(Learner::new(model, AdamConfig::new().init(), lr));

    let epochs = before.epochs.lock().unwrap().clone();
    let live = before.at_end.lock().unwrap().clone();
    let end = after.at_end.lock().unwrap().clone();
    let mut stats = 0;
    for (i, param) in end.iter().enumerate() {
        let value = param.values.as_ref().unwrap();
        if !param.trainable {
            // Recomputed with the averaged weights: not the statistics the
            // last epoch left.
            stats += 1;
            assert_ne!(value, live[i].values.as_ref().unwrap(), "{}", param.path);
            assert!(value.iter().all(|v| v.is_finite()));
        } else {
            // The pass changed no weight: the mean of epochs 1 and 2.
            let (a, b) = (
                epochs[1][i].values.as_ref().unwrap(),
                epochs[2][i].values.as_ref().unwrap(),
            );
            let mean: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect();
            assert!(close(value, &mean, 1e-5), "{}", param.path);
        }
    }
    assert!(stats >= 2, "the CNN has BatchNorm statistics: {end:?}");
}
