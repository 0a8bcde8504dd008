//! `[training] metrics`: the metrics a run computes, by Keras's names,
//! backed by Burn's metric implementations (and `burnfit-models`'
//! regression metrics where Burn has none).
//!
//! Every metric is registered for the training and the validation split
//! under its Keras name, so the logs, `history.csv`, TensorBoard,
//! `summary.json` and the plots call it `precision` and `val_precision`.
//! Classification metrics over several classes are macro-averaged (each
//! class counts the same).

use std::sync::Arc;

use burn::tensor::TensorReadError;
use burn::train::SupervisedTraining;
use burn::train::metric::{
    AccuracyMetric, AurocMetric, ClassReduction, FBetaScoreMetric, LossInput, LossMetric, Metric,
    MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    PrecisionMetric, RecallMetric, SerializedEntry, TopKAccuracyMetric,
};
use burnfit_models::Classifier;
use burnfit_models::metrics::{RegressionKind, RegressionMetric};
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
    attributes: Option<NumericAttributes>,
}

impl<M> Named<M> {
    /// `inner`, named `name`.
    pub fn new(inner: M, name: &str) -> Self {
        Self {
            inner,
            name: Arc::new(name.to_string()),
            attributes: None,
        }
    }

    /// Declares the attributes Burn's metric leaves out (AUROC reports a
    /// percentage without saying so; the engine turns percentages into
    /// Keras's fractions by this unit).
    pub fn with_attributes(mut self, attributes: NumericAttributes) -> Self {
        self.attributes = Some(attributes);
        self
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
        match &self.attributes {
            Some(attributes) => attributes.clone().into(),
            None => self.inner.attributes(),
        }
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
            "precision" => register_metric(
                training,
                PrecisionMetric::multiclass(1, ClassReduction::Macro),
                name,
            ),
            "recall" => register_metric(
                training,
                RecallMetric::multiclass(1, ClassReduction::Macro),
                name,
            ),
            "f1_score" => register_metric(
                training,
                FBetaScoreMetric::multiclass(1.0, 1, ClassReduction::Macro),
                name,
            ),
            "auc" => named(
                training,
                Named::new(AurocMetric::multiclass(ClassReduction::Macro), name).with_attributes(
                    NumericAttributes {
                        unit: Some("%".into()),
                        higher_is_better: true,
                    },
                ),
            ),
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
        training = register_metric(training, RegressionMetric::new(kind), name);
    }
    training
}
