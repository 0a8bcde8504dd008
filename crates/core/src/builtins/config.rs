//! [`CallbackConfig`]: any built-in callback described in a configuration
//! file, tagged by its Keras class name.

use serde::{Deserialize, Serialize};

use super::{
    BackupAndRestore, BackupAndRestoreConfig, CsvLoggerConfig, DeviceStatsMonitor,
    DeviceStatsMonitorConfig, ProgressLogger, ProgressLoggerConfig,
};
use super::{
    EarlyStopping, EarlyStoppingConfig, LearningRateFinder, LearningRateFinderConfig,
    LearningRateScheduler, LearningRateSchedulerConfig, ModelCheckpoint, ModelCheckpointConfig,
    ModelSummary, ModelSummaryConfig, OnExceptionCheckpoint, OnExceptionCheckpointConfig,
    ReduceLROnPlateau, ReduceLROnPlateauConfig, SpikeDetection, SpikeDetectionConfig,
    TerminateOnNaN, TerminateOnNaNConfig, ThroughputMonitor, ThroughputMonitorConfig, Timer,
    TimerConfig,
};
#[cfg(feature = "trackers")]
use super::{MLFlowLogger, MLFlowLoggerConfig, RemoteMonitor, RemoteMonitorConfig};
use crate::callback::Callback;
use crate::error::{CallbackError, Result};
#[cfg(feature = "tensorboard")]
use crate::tensorboard::{GradientNormMonitor, GradientNormMonitorConfig, TensorBoardConfig};

/// A configuration that can build its callback.
pub trait BuildCallback {
    /// Validates the parameters and builds the callback.
    fn build(&self) -> Result<Box<dyn Callback>>;
}

macro_rules! build_via_new {
    ($($config:ty => $callback:ty),* $(,)?) => {$(
        impl BuildCallback for $config {
            fn build(&self) -> Result<Box<dyn Callback>> {
                Ok(Box::new(<$callback>::new(self.clone())?))
            }
        }
    )*};
}

build_via_new! {
    EarlyStoppingConfig => EarlyStopping,
    ReduceLROnPlateauConfig => ReduceLROnPlateau,
    ModelCheckpointConfig => ModelCheckpoint,
    TerminateOnNaNConfig => TerminateOnNaN,
    LearningRateSchedulerConfig => LearningRateScheduler,
    BackupAndRestoreConfig => BackupAndRestore,
    TimerConfig => Timer,
    ThroughputMonitorConfig => ThroughputMonitor,
    DeviceStatsMonitorConfig => DeviceStatsMonitor,
    SpikeDetectionConfig => SpikeDetection,
    LearningRateFinderConfig => LearningRateFinder,
}

#[cfg(feature = "tensorboard")]
build_via_new! {
    GradientNormMonitorConfig => GradientNormMonitor,
}

#[cfg(feature = "trackers")]
build_via_new! {
    RemoteMonitorConfig => RemoteMonitor,
    MLFlowLoggerConfig => MLFlowLogger,
}

impl BuildCallback for ModelSummaryConfig {
    fn build(&self) -> Result<Box<dyn Callback>> {
        Ok(Box::new(ModelSummary::new(self.clone())))
    }
}

impl BuildCallback for OnExceptionCheckpointConfig {
    fn build(&self) -> Result<Box<dyn Callback>> {
        Ok(Box::new(OnExceptionCheckpoint::new(self.clone())))
    }
}

/// The parameters of Keras's `SwapEMAWeights` callback, which swaps the
/// optimizer's moving averages into the model for validation (and, with
/// `swap_on_epoch`, for the other epoch-end callbacks). Built by the Burn
/// glue, which owns the averages (`burnfit_callbacks::averaging`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwapEmaWeightsConfig {
    /// Swap at `on_epoch_end` / `on_epoch_begin` too, so that callbacks
    /// after this one (ModelCheckpoint) see the averaged weights.
    pub swap_on_epoch: bool,
}

/// The parameters of Lightning's `StochasticWeightAveraging` callback.
/// Built by the Burn glue (`burnfit_callbacks::averaging`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticWeightAveragingConfig {
    /// The rate annealed to once averaging starts.
    pub swa_lrs: f64,
    /// The first averaged epoch: an epoch number (0-based) or, between 0 and
    /// 1, a fraction of the epochs (default 0.8).
    #[serde(default = "default_swa_start")]
    pub swa_epoch_start: f64,
    /// Epochs over which the rate moves to `swa_lrs` (default 10).
    #[serde(default = "default_annealing_epochs")]
    pub annealing_epochs: usize,
    /// `"cos"` (default) or `"linear"`.
    #[serde(default = "default_annealing_strategy")]
    pub annealing_strategy: String,
}

fn default_swa_start() -> f64 {
    0.8
}

fn default_annealing_epochs() -> usize {
    10
}

fn default_annealing_strategy() -> String {
    "cos".into()
}

impl StochasticWeightAveragingConfig {
    /// The first averaged epoch (0-based) of a run of `epochs` epochs.
    pub fn start_epoch(&self, epochs: usize) -> usize {
        if self.swa_epoch_start < 1.0 {
            (epochs as f64 * self.swa_epoch_start) as usize
        } else {
            self.swa_epoch_start as usize
        }
    }

    /// Checks the parameters (Lightning's rules).
    pub fn validate(&self) -> Result<()> {
        let invalid = |param, message: &str| CallbackError::InvalidParameter {
            callback: "StochasticWeightAveraging",
            param,
            message: message.into(),
        };
        if !(self.swa_lrs > 0.0 && self.swa_lrs.is_finite()) {
            return Err(invalid("swa_lrs", "must be a positive number"));
        }
        if !(self.swa_epoch_start > 0.0 && self.swa_epoch_start.is_finite())
            || (self.swa_epoch_start >= 1.0 && self.swa_epoch_start.fract() != 0.0)
        {
            return Err(invalid(
                "swa_epoch_start",
                "must be an epoch number >= 1 or a fraction in (0, 1)",
            ));
        }
        if self.annealing_epochs == 0 {
            return Err(invalid("annealing_epochs", "must be at least 1"));
        }
        if !matches!(self.annealing_strategy.as_str(), "cos" | "linear") {
            return Err(invalid(
                "annealing_strategy",
                "must be \"cos\" or \"linear\"",
            ));
        }
        Ok(())
    }
}

impl BuildCallback for ProgressLoggerConfig {
    fn build(&self) -> Result<Box<dyn Callback>> {
        Ok(Box::new(ProgressLogger::new(self.clone())))
    }
}

impl BuildCallback for CsvLoggerConfig {
    fn build(&self) -> Result<Box<dyn Callback>> {
        Ok(Box::new(CsvLoggerConfig::build(self)?))
    }
}

#[cfg(feature = "tensorboard")]
/// Builds a [`TensorBoard`](crate::tensorboard::TensorBoard) without the
/// parameter source of weight histograms: code that knows the model type
/// builds it with [`TensorBoardConfig::build`] and adds one with
/// [`with_param_source`](crate::tensorboard::TensorBoard::with_param_source).
impl BuildCallback for TensorBoardConfig {
    fn build(&self) -> Result<Box<dyn Callback>> {
        Ok(Box::new(TensorBoardConfig::build(self)?))
    }
}

/// One built-in callback with its parameters, tagged by `type` (the Keras
/// class name); the other keys are the callback's parameters with Keras's
/// names.
///
/// ```
/// use burnfit_core::builtins::CallbackConfig;
///
/// let configs: Vec<CallbackConfig> = serde_json::from_str(r#"[
///     {"type": "EarlyStopping", "monitor": "val_loss", "patience": 3, "restore_best_weights": true},
///     {"type": "ReduceLROnPlateau", "factor": 0.5, "patience": 2},
///     {"type": "ModelCheckpoint", "filepath": "ckpt/{epoch:02d}.mpk", "save_best_only": true},
///     {"type": "TerminateOnNaN"},
///     {"type": "LearningRateScheduler", "schedule": {"kind": "step_decay", "factor": 0.5, "every": 10}}
/// ]"#).unwrap();
/// let callbacks = configs.iter().map(|c| c.build()).collect::<Result<Vec<_>, _>>().unwrap();
/// assert_eq!(callbacks[0].name(), "EarlyStopping");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallbackConfig {
    /// [`EarlyStopping`].
    EarlyStopping(EarlyStoppingConfig),
    /// [`ReduceLROnPlateau`].
    ReduceLROnPlateau(ReduceLROnPlateauConfig),
    /// [`ModelCheckpoint`].
    ModelCheckpoint(ModelCheckpointConfig),
    /// [`TerminateOnNaN`].
    TerminateOnNaN(TerminateOnNaNConfig),
    /// [`LearningRateScheduler`].
    LearningRateScheduler(LearningRateSchedulerConfig),
    /// [`CSVLogger`](super::CSVLogger).
    CSVLogger(CsvLoggerConfig),
    /// [`TensorBoard`](crate::tensorboard::TensorBoard).
    #[cfg(feature = "tensorboard")]
    TensorBoard(TensorBoardConfig),
    /// [`BackupAndRestore`](super::BackupAndRestore).
    BackupAndRestore(BackupAndRestoreConfig),
    /// [`ProgressLogger`](super::ProgressLogger).
    ProgressLogger(ProgressLoggerConfig),
    /// [`Timer`].
    Timer(TimerConfig),
    /// [`ThroughputMonitor`].
    ThroughputMonitor(ThroughputMonitorConfig),
    /// [`DeviceStatsMonitor`].
    DeviceStatsMonitor(DeviceStatsMonitorConfig),
    /// [`SpikeDetection`].
    SpikeDetection(SpikeDetectionConfig),
    /// [`OnExceptionCheckpoint`].
    OnExceptionCheckpoint(OnExceptionCheckpointConfig),
    /// [`ModelSummary`].
    ModelSummary(ModelSummaryConfig),
    /// [`LearningRateFinder`].
    LearningRateFinder(LearningRateFinderConfig),
    /// [`GradientNormMonitor`](crate::tensorboard::GradientNormMonitor).
    #[cfg(feature = "tensorboard")]
    GradientNormMonitor(GradientNormMonitorConfig),
    /// Keras's `SwapEMAWeights` (built by the Burn glue).
    SwapEMAWeights(SwapEmaWeightsConfig),
    /// Lightning's `StochasticWeightAveraging` (built by the Burn glue).
    StochasticWeightAveraging(StochasticWeightAveragingConfig),
    /// [`RemoteMonitor`] (feature `trackers`).
    #[cfg(feature = "trackers")]
    RemoteMonitor(RemoteMonitorConfig),
    /// Lightning's [`MLFlowLogger`] (feature `trackers`).
    #[cfg(feature = "trackers")]
    MLFlowLogger(MLFlowLoggerConfig),
}

impl CallbackConfig {
    /// The Keras class name (`EarlyStopping`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            CallbackConfig::EarlyStopping(_) => "EarlyStopping",
            CallbackConfig::ReduceLROnPlateau(_) => "ReduceLROnPlateau",
            CallbackConfig::ModelCheckpoint(_) => "ModelCheckpoint",
            CallbackConfig::TerminateOnNaN(_) => "TerminateOnNaN",
            CallbackConfig::LearningRateScheduler(_) => "LearningRateScheduler",
            CallbackConfig::CSVLogger(_) => "CSVLogger",
            #[cfg(feature = "tensorboard")]
            CallbackConfig::TensorBoard(_) => "TensorBoard",
            CallbackConfig::BackupAndRestore(_) => "BackupAndRestore",
            CallbackConfig::ProgressLogger(_) => "ProgressLogger",
            CallbackConfig::Timer(_) => "Timer",
            CallbackConfig::ThroughputMonitor(_) => "ThroughputMonitor",
            CallbackConfig::DeviceStatsMonitor(_) => "DeviceStatsMonitor",
            CallbackConfig::SpikeDetection(_) => "SpikeDetection",
            CallbackConfig::OnExceptionCheckpoint(_) => "OnExceptionCheckpoint",
            CallbackConfig::ModelSummary(_) => "ModelSummary",
            CallbackConfig::LearningRateFinder(_) => "LearningRateFinder",
            #[cfg(feature = "tensorboard")]
            CallbackConfig::GradientNormMonitor(_) => "GradientNormMonitor",
            CallbackConfig::SwapEMAWeights(_) => "SwapEMAWeights",
            CallbackConfig::StochasticWeightAveraging(_) => "StochasticWeightAveraging",
            #[cfg(feature = "trackers")]
            CallbackConfig::RemoteMonitor(_) => "RemoteMonitor",
            #[cfg(feature = "trackers")]
            CallbackConfig::MLFlowLogger(_) => "MLFlowLogger",
        }
    }

    /// The log key this callback decides on, and its `mode`, for the
    /// monitoring callbacks (ModelCheckpoint only when it compares:
    /// `save_best_only` or `save_top_k`).
    pub fn monitor(&self) -> Option<(&str, &str)> {
        match self {
            CallbackConfig::EarlyStopping(c) => Some((&c.monitor, &c.mode)),
            CallbackConfig::ReduceLROnPlateau(c) => Some((&c.monitor, &c.mode)),
            CallbackConfig::ModelCheckpoint(c) if c.save_best_only || c.save_top_k.is_some() => {
                Some((&c.monitor, &c.mode))
            }
            _ => None,
        }
    }

    /// The log keys a ModelCheckpoint `filepath` template names (other
    /// than `epoch` and `batch`), which every epoch's logs must hold.
    pub fn filepath_keys(&self) -> Vec<String> {
        match self {
            CallbackConfig::ModelCheckpoint(c) => c.filepath_keys(),
            _ => Vec::new(),
        }
    }

    /// Validates the parameters and builds the callback. `SwapEMAWeights`
    /// and `StochasticWeightAveraging` average model weights, which takes
    /// the model's type: the Burn glue builds them
    /// (`burnfit_callbacks::averaging`); here they are an error.
    pub fn build(&self) -> Result<Box<dyn Callback>> {
        match self {
            CallbackConfig::EarlyStopping(c) => c.build(),
            CallbackConfig::ReduceLROnPlateau(c) => c.build(),
            CallbackConfig::ModelCheckpoint(c) => c.build(),
            CallbackConfig::TerminateOnNaN(c) => c.build(),
            CallbackConfig::LearningRateScheduler(c) => c.build(),
            CallbackConfig::CSVLogger(c) => BuildCallback::build(c),
            #[cfg(feature = "tensorboard")]
            CallbackConfig::TensorBoard(c) => BuildCallback::build(c),
            CallbackConfig::BackupAndRestore(c) => c.build(),
            CallbackConfig::ProgressLogger(c) => c.build(),
            CallbackConfig::Timer(c) => c.build(),
            CallbackConfig::ThroughputMonitor(c) => c.build(),
            CallbackConfig::DeviceStatsMonitor(c) => c.build(),
            CallbackConfig::SpikeDetection(c) => c.build(),
            CallbackConfig::OnExceptionCheckpoint(c) => c.build(),
            CallbackConfig::ModelSummary(c) => c.build(),
            CallbackConfig::LearningRateFinder(c) => c.build(),
            #[cfg(feature = "tensorboard")]
            CallbackConfig::GradientNormMonitor(c) => c.build(),
            #[cfg(feature = "trackers")]
            CallbackConfig::RemoteMonitor(c) => c.build(),
            #[cfg(feature = "trackers")]
            CallbackConfig::MLFlowLogger(c) => c.build(),
            CallbackConfig::SwapEMAWeights(_) | CallbackConfig::StochasticWeightAveraging(_) => {
                Err(CallbackError::Unsupported(format!(
                    "{} averages model weights: build it with the Burn glue \
                     (burnfit_callbacks::averaging), which knows the model type",
                    self.type_name()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(
            serde_json::from_str::<CallbackConfig>(r#"{"type": "EarlyStopping", "patiance": 3}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<CallbackConfig>(r#"{"type": "Nope"}"#).is_err());
        // ReduceLROnPlateau ignores unknown keys as Keras's **kwargs does.
        let c: CallbackConfig =
            serde_json::from_str(r#"{"type": "ReduceLROnPlateau", "epsilon": 1}"#).unwrap();
        assert!(c.build().is_ok());
    }

    #[test]
    fn build_validates() {
        let c: CallbackConfig =
            serde_json::from_str(r#"{"type": "ReduceLROnPlateau", "factor": 1.5}"#).unwrap();
        assert!(c.build().is_err());
        let c: CallbackConfig = serde_json::from_str(r#"{"type": "ModelCheckpoint"}"#).unwrap();
        assert!(c.build().is_err());
    }

    #[test]
    fn roundtrip() {
        let c: CallbackConfig = serde_json::from_str(
            r#"{"type": "ModelCheckpoint", "filepath": "a/{epoch}.mpk", "save_freq": 10}"#,
        )
        .unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CallbackConfig>(&text).unwrap(), c);
    }
}
