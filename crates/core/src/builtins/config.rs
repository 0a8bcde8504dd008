//! [`CallbackConfig`]: any built-in callback described in a configuration
//! file, tagged by its Keras class name.

use serde::{Deserialize, Deserializer, Serialize};

use super::{
    BackupAndRestore, BackupAndRestoreConfig, CsvLoggerConfig, DeviceStatsMonitor,
    DeviceStatsMonitorConfig, ProgressLogger, ProgressLoggerConfig,
};
use super::{
    EarlyStopping, EarlyStoppingConfig, LearningRateFinder, LearningRateFinderConfig,
    LearningRateScheduler, LearningRateSchedulerConfig, ModelCheckpoint, ModelCheckpointConfig,
    ModelSummary, ModelSummaryConfig, OnExceptionCheckpoint, OnExceptionCheckpointConfig,
    ReduceLROnPlateau, ReduceLROnPlateauConfig, SpikeDetection, SpikeDetectionConfig,
    StochasticWeightAveraging, StochasticWeightAveragingConfig, SwapEmaWeights,
    SwapEmaWeightsConfig, TerminateOnNaN, TerminateOnNaNConfig, ThroughputMonitor,
    ThroughputMonitorConfig, Timer, TimerConfig,
};
#[cfg(feature = "trackers")]
use super::{MLFlowLogger, MLFlowLoggerConfig, RemoteMonitor, RemoteMonitorConfig};
use crate::callback::Callback;
use crate::error::Result;
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
    StochasticWeightAveragingConfig => StochasticWeightAveraging,
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
    /// [`SwapEmaWeights`] (Keras's `SwapEMAWeights`).
    SwapEMAWeights(SwapEmaWeightsConfig),
    /// [`StochasticWeightAveraging`] (Lightning's).
    StochasticWeightAveraging(StochasticWeightAveragingConfig),
    /// [`RemoteMonitor`] (feature `trackers`).
    #[cfg(feature = "trackers")]
    RemoteMonitor(RemoteMonitorConfig),
    /// Lightning's [`MLFlowLogger`] (feature `trackers`).
    #[cfg(feature = "trackers")]
    MLFlowLogger(MLFlowLoggerConfig),
}

impl CallbackConfig {
    /// Whether this callback records the logs without adding keys to them
    /// (a logger or tracker). Keras runs callbacks in list order, so a
    /// logger listed before a monitor misses the monitor's keys; an
    /// application that promises every key everywhere runs these after the
    /// others (burnfit's CLI does).
    pub fn records_logs(&self) -> bool {
        match self {
            CallbackConfig::CSVLogger(_) | CallbackConfig::ProgressLogger(_) => true,
            #[cfg(feature = "tensorboard")]
            CallbackConfig::TensorBoard(_) => true,
            #[cfg(feature = "trackers")]
            CallbackConfig::RemoteMonitor(_) | CallbackConfig::MLFlowLogger(_) => true,
            _ => false,
        }
    }

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

    /// The callback of class `type_name` (`EarlyStopping`, …) from its
    /// parameters alone: the table without its `type` key.
    ///
    /// The tagged enum reads a table through a buffer, so a deserializer
    /// that tracks where an error is (`serde_path_to_error`) stops at the
    /// table; this one gives the parameter (`patience`), for the error
    /// messages of configuration files. An unknown `type_name` is an error.
    ///
    /// ```
    /// use burnfit_core::builtins::CallbackConfig;
    ///
    /// let params = serde_json::json!({"patience": 3});
    /// let config = CallbackConfig::from_parameters("EarlyStopping", params).unwrap();
    /// assert_eq!(config.type_name(), "EarlyStopping");
    /// let params = serde_json::json!({"patience": -1});
    /// assert!(CallbackConfig::from_parameters("EarlyStopping", params).is_err());
    /// ```
    pub fn from_parameters<'de, D: Deserializer<'de>>(
        type_name: &str,
        parameters: D,
    ) -> std::result::Result<Self, D::Error> {
        use CallbackConfig as C;
        Ok(match type_name {
            "EarlyStopping" => C::EarlyStopping(Deserialize::deserialize(parameters)?),
            "ReduceLROnPlateau" => C::ReduceLROnPlateau(Deserialize::deserialize(parameters)?),
            "ModelCheckpoint" => C::ModelCheckpoint(Deserialize::deserialize(parameters)?),
            "TerminateOnNaN" => C::TerminateOnNaN(Deserialize::deserialize(parameters)?),
            "LearningRateScheduler" => {
                C::LearningRateScheduler(Deserialize::deserialize(parameters)?)
            }
            "CSVLogger" => C::CSVLogger(Deserialize::deserialize(parameters)?),
            #[cfg(feature = "tensorboard")]
            "TensorBoard" => C::TensorBoard(Deserialize::deserialize(parameters)?),
            "BackupAndRestore" => C::BackupAndRestore(Deserialize::deserialize(parameters)?),
            "ProgressLogger" => C::ProgressLogger(Deserialize::deserialize(parameters)?),
            "Timer" => C::Timer(Deserialize::deserialize(parameters)?),
            "ThroughputMonitor" => C::ThroughputMonitor(Deserialize::deserialize(parameters)?),
            "DeviceStatsMonitor" => C::DeviceStatsMonitor(Deserialize::deserialize(parameters)?),
            "SpikeDetection" => C::SpikeDetection(Deserialize::deserialize(parameters)?),
            "OnExceptionCheckpoint" => {
                C::OnExceptionCheckpoint(Deserialize::deserialize(parameters)?)
            }
            "ModelSummary" => C::ModelSummary(Deserialize::deserialize(parameters)?),
            "LearningRateFinder" => C::LearningRateFinder(Deserialize::deserialize(parameters)?),
            #[cfg(feature = "tensorboard")]
            "GradientNormMonitor" => C::GradientNormMonitor(Deserialize::deserialize(parameters)?),
            "SwapEMAWeights" => C::SwapEMAWeights(Deserialize::deserialize(parameters)?),
            "StochasticWeightAveraging" => {
                C::StochasticWeightAveraging(Deserialize::deserialize(parameters)?)
            }
            #[cfg(feature = "trackers")]
            "RemoteMonitor" => C::RemoteMonitor(Deserialize::deserialize(parameters)?),
            #[cfg(feature = "trackers")]
            "MLFlowLogger" => C::MLFlowLogger(Deserialize::deserialize(parameters)?),
            other => {
                return Err(serde::de::Error::custom(format_args!(
                    "unknown callback type `{other}`"
                )));
            }
        })
    }

    /// Validates the parameters and builds the callback.
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
            CallbackConfig::SwapEMAWeights(c) => Ok(Box::new(SwapEmaWeights::new(c.clone()))),
            CallbackConfig::StochasticWeightAveraging(c) => c.build(),
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

    /// Every class serde's tagged enum knows (the list of its unknown-variant
    /// error) reads the same through `from_parameters`.
    #[test]
    fn from_parameters_reads_every_type_as_the_tagged_enum_does() {
        let unknown = serde_json::from_str::<CallbackConfig>(r#"{"type": "?"}"#).unwrap_err();
        let message = unknown.to_string();
        let listed = message.split_once("expected one of ").unwrap().1;
        let names: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert!(names.len() >= 19, "{message}");
        for name in names {
            let tagged =
                serde_json::from_value::<CallbackConfig>(serde_json::json!({"type": name}));
            let plain = CallbackConfig::from_parameters(name, serde_json::json!({}));
            match (tagged, plain) {
                (Ok(tagged), Ok(plain)) => {
                    assert_eq!(plain.type_name(), name);
                    assert_eq!(plain, tagged);
                }
                (Err(tagged), Err(plain)) => assert_eq!(plain.to_string(), tagged.to_string()),
                (tagged, plain) => panic!("{name}: {tagged:?} but {plain:?}"),
            }
        }
        let error = CallbackConfig::from_parameters("Nope", serde_json::json!({})).unwrap_err();
        assert_eq!(error.to_string(), "unknown callback type `Nope`");
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
