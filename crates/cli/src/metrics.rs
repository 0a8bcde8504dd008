//! `[training] metrics`: the metrics a run computes, by Keras's names,
//! backed by Burn's metric implementations (and `burnfit-models`'
//! regression metrics where Burn has none).
//!
//! Every metric is registered for the training and the validation split
//! under its Keras name, so the logs, `history.csv`, TensorBoard,
//! `summary.json` and the plots call it `precision` and `val_precision`.
//! Classification metrics over several classes are macro-averaged (each
//! class counts the same).
//!
//! Metrics whose epoch value comes from state accumulated over the epoch
//! (precision, recall, F1, AUC, RMSE, R²; and MAE and MSE) are burnfit's
//! own ([`burnfit_models::metrics`]) and their training instance is
//! registered with the engine ([`collect_epoch_states`]): a mid-epoch backup
//! keeps its state, so a resumed epoch ends with the uninterrupted run's
//! values.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use burn::tensor::TensorReadError;
use burn::train::SupervisedTraining;
use burn::train::metric::{
    AccuracyMetric, LossInput, LossMetric, Metric, MetricAttributes, MetricMetadata, MetricName,
    Numeric, NumericEntry, SerializedEntry, TopKAccuracyMetric,
};
use burnfit_callbacks::engine::EpochMetricState;
use burnfit_models::Classifier;
use burnfit_models::metrics::{
    AucMetric, ConfusionKind, ConfusionMetric, RegressionKind, RegressionMetric,
};
use burnfit_models::nets::MlpRegressor;

/// Metrics of classifiers, by Keras's names.
pub const CLASSIFICATION: &[&str] = &[
    "accuracy",
    "top_k_categorical_accuracy",
    "precision",
    "recall",
    "f1_score",
    "auc",
];

/// Metrics of regressors, by Keras's names.
pub const REGRESSION: &[&str] = &["mae", "mse", "rmse", "r2_score"];

/// The classes `top_k_categorical_accuracy` counts (Keras's default).
pub const TOP_K: usize = 5;

/// A Burn metric logged under another name (the Keras one).
#[derive(Clone)]
pub struct Named<M> {
    inner: M,
    name: MetricName,
}

impl<M> Named<M> {
    /// `inner`, named `name`.
    pub fn new(inner: M, name: &str) -> Self {
        Self {
            inner,
            name: Arc::new(name.to_string()),
        }
    }
}

impl<M: Metric> Metric for Named<M> {
    type Input = M::Input;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        self.inner.description()
    }

    fn attributes(&self) -> MetricAttributes {
        self.inner.attributes()
    }

    fn update(
        &mut self,
        item: &Self::Input,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.inner.update(item, metadata)
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.inner.compute()
    }

    fn clear(&mut self) {
        self.inner.clear()
    }
}

impl<M: Numeric> Numeric for Named<M> {
    fn value(&self) -> Option<NumericEntry> {
        self.inner.value()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.inner.running_value()
    }

    fn final_value(&self) -> NumericEntry {
        self.inner.final_value()
    }
}

/// Registers a metric for both splits under `name`.
/// Registers the loss, which every task's outputs give: the epoch logs'
/// `loss` and `val_loss`.
pub fn register_loss<T>(training: SupervisedTraining<T>) -> SupervisedTraining<T>
where
    T: burn::train::LearnerModel,
    <T as burn::train::TrainStep>::Output: burn::train::metric::Adaptor<LossInput> + 'static,
    <T as burn::train::InferenceStep>::Output: burn::train::metric::Adaptor<LossInput> + 'static,
{
    register_metric(training, LossMetric::new(), "loss")
}

/// Registers `metric` for training and validation under `name` (a Keras
/// name such as `accuracy`: the logs say `accuracy` and `val_accuracy`).
pub fn register_metric<M, T>(
    training: SupervisedTraining<T>,
    metric: M,
    name: &str,
) -> SupervisedTraining<T>
where
    T: burn::train::LearnerModel,
    M: Metric + Numeric + 'static,
    <T as burn::train::TrainStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
    <T as burn::train::InferenceStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
{
    named(training, Named::new(metric, name))
}

/// Registers an already named metric for both splits.
fn named<M, T>(training: SupervisedTraining<T>, metric: Named<M>) -> SupervisedTraining<T>
where
    T: burn::train::LearnerModel,
    M: Metric + Numeric + 'static,
    <T as burn::train::TrainStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
    <T as burn::train::InferenceStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
{
    training
        .metric_train_numeric(metric.clone())
        .metric_valid_numeric(metric)
}

/// Registers the loss and the classification metrics `names` (checked
/// names, see [`CLASSIFICATION`]).
pub fn register_classification(
    training: SupervisedTraining<Classifier>,
    names: &[String],
) -> SupervisedTraining<Classifier> {
    let mut training = training;
    for name in names {
        training = match name.as_str() {
            "accuracy" => register_metric(training, AccuracyMetric::new(), name),
            "top_k_categorical_accuracy" => {
                register_metric(training, TopKAccuracyMetric::new(TOP_K), name)
            }
            "precision" => register_resumable_metric(training, name, || {
                ConfusionMetric::new(ConfusionKind::Precision)
            }),
            "recall" => register_resumable_metric(training, name, || {
                ConfusionMetric::new(ConfusionKind::Recall)
            }),
            "f1_score" => register_resumable_metric(training, name, || {
                ConfusionMetric::new(ConfusionKind::F1)
            }),
            "auc" => register_resumable_metric(training, name, AucMetric::new),
            other => unreachable!("metric names are checked with the config: {other}"),
        };
    }
    training
}

/// Registers the loss (mean squared error) and the regression metrics
/// `names` (checked names, see [`REGRESSION`]).
pub fn register_regression(
    training: SupervisedTraining<MlpRegressor>,
    names: &[String],
) -> SupervisedTraining<MlpRegressor> {
    let mut training = training;
    for name in names {
        let kind = match name.as_str() {
            "mae" => RegressionKind::Mae,
            "mse" => RegressionKind::Mse,
            "rmse" => RegressionKind::Rmse,
            "r2_score" => RegressionKind::R2,
            other => unreachable!("metric names are checked with the config: {other}"),
        };
        training = register_resumable_metric(training, name, || RegressionMetric::new(kind));
    }
    training
}

/// A metric whose state over the epoch so far can be saved and put back
/// (burnfit's own metrics, [`burnfit_models::metrics`]).
pub trait SavesEpochState {
    /// The state after the batches seen this epoch.
    fn epoch_state(&self) -> Vec<u8>;
    /// Puts back what [`epoch_state`](Self::epoch_state) returned.
    fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String>;
}

macro_rules! saves_epoch_state {
    ($($metric:ty),*) => {$(
        impl SavesEpochState for $metric {
            fn epoch_state(&self) -> Vec<u8> {
                <$metric>::epoch_state(self)
            }
            fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String> {
                <$metric>::restore_epoch_state(self, bytes)
            }
        }
    )*};
}
saves_epoch_state!(RegressionMetric, ConfusionMetric, AucMetric);

impl<M: SavesEpochState> SavesEpochState for Named<M> {
    fn epoch_state(&self) -> Vec<u8> {
        self.inner.epoch_state()
    }

    fn restore_epoch_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.inner.restore_epoch_state(bytes)
    }
}

/// One metric instance shared by Burn's event processor (which updates it)
/// and the engine's backups (which save and restore its epoch state).
/// Clones share the instance: register one per split.
pub struct Resumable<M>(Arc<Mutex<M>>);

impl<M> Clone for Resumable<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M> Resumable<M> {
    fn lock(&self) -> std::sync::MutexGuard<'_, M> {
        // A panic inside a metric update ends training; the state is still
        // the metric's own.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<M: Metric> Metric for Resumable<M> {
    type Input = M::Input;

    fn name(&self) -> MetricName {
        self.lock().name()
    }

    fn description(&self) -> Option<String> {
        self.lock().description()
    }

    fn attributes(&self) -> MetricAttributes {
        self.lock().attributes()
    }

    fn update(
        &mut self,
        item: &Self::Input,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.lock().update(item, metadata)
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.lock().compute()
    }

    fn clear(&mut self) {
        self.lock().clear()
    }
}

impl<M: Metric + Numeric> Numeric for Resumable<M> {
    fn value(&self) -> Option<NumericEntry> {
        self.lock().value()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.lock().running_value()
    }

    fn final_value(&self) -> NumericEntry {
        self.lock().final_value()
    }
}

impl<M: SavesEpochState + Send> EpochMetricState for Resumable<M> {
    fn save(&self) -> Vec<u8> {
        self.lock().epoch_state()
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        self.lock().restore_epoch_state(bytes)
    }
}

/// The epoch states of the training metrics registered by
/// [`register_resumable_metric`] while [`collect_epoch_states`] runs.
type EpochStates = Vec<(String, Arc<dyn EpochMetricState>)>;

thread_local! {
    static COLLECTING: RefCell<Option<EpochStates>> = const { RefCell::new(None) };
}

/// Runs `register` (a task's metric registration) and returns what it
/// returned with the epoch states of the training metrics it registered
/// through [`register_resumable_metric`], for
/// `Callbacks::resumable_metric`. (A task registers its metrics through a
/// fixed signature, so they are collected on this thread while it runs.)
pub fn collect_epoch_states<R>(register: impl FnOnce() -> R) -> (R, EpochStates) {
    let outer = COLLECTING.with(|c| c.borrow_mut().replace(Vec::new()));
    let result = register();
    let states = COLLECTING.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (result, states.unwrap_or_default())
}

/// Registers the metric `make` builds for training and validation under
/// `name`, as [`register_metric`] does; the training instance's epoch state
/// is kept by mid-epoch backups when registration runs inside
/// [`collect_epoch_states`] (as `burnfit train` runs a task's).
pub fn register_resumable_metric<M, T>(
    training: SupervisedTraining<T>,
    name: &str,
    make: impl Fn() -> M,
) -> SupervisedTraining<T>
where
    T: burn::train::LearnerModel,
    M: Metric + Numeric + SavesEpochState + 'static,
    <T as burn::train::TrainStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
    <T as burn::train::InferenceStep>::Output: burn::train::metric::Adaptor<M::Input> + 'static,
{
    let train = Resumable(Arc::new(Mutex::new(Named::new(make(), name))));
    COLLECTING.with(|c| {
        if let Some(states) = c.borrow_mut().as_mut() {
            states.push((name.to_string(), Arc::new(train.clone())));
        }
    });
    training
        .metric_train_numeric(train)
        .metric_valid_numeric(Named::new(make(), name))
}
