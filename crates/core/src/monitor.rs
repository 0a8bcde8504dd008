//! The shared monitor base of EarlyStopping, ReduceLROnPlateau and
//! ModelCheckpoint (Keras's `keras/src/callbacks/monitor_callback.py`).
//!
//! A [`Monitor`] watches one log key and decides whether a new value is an
//! *improvement* over a reference value, with Keras 3's exact rules:
//!
//! * `mode` is `"min"`, `"max"` or `"auto"`; any other string warns
//!   `"<Callback> mode '<mode>' is unknown, fallback to auto mode."` and falls
//!   back to `"auto"`.
//! * `"auto"` is resolved lazily, at the first `on_epoch_end` (as Keras does):
//!   one `val_` prefix is stripped; `loss` means minimise; otherwise the name
//!   is looked up in a [`MetricDirections`] table (Keras looks at the model's
//!   compiled metrics). A name that is not found is an error with Keras's
//!   `ValueError` text.
//! * `min_delta` is made non-negative, then negated in min mode (Keras's
//!   internal "signed" `min_delta`, see [`Monitor::min_delta`]).
//! * The improvement test is **strict** and done in **float32**:
//!   `op(f32(current - min_delta), f32(reference))` with `op` = `<` (min) or
//!   `>` (max); a missing reference (`None`) always counts as an improvement,
//!   even for NaN.
//!
//! ```
//! use burnfit_core::monitor::{Direction, Monitor};
//!
//! let mut monitor = Monitor::new("EarlyStopping", "val_loss", "auto", 0.1);
//! assert_eq!(monitor.resolve().unwrap(), Direction::Min);
//! assert_eq!(monitor.min_delta(), -0.1);
//! // 0.7 + 0.1 = 0.7999999999999999 < 0.8 in f64, but equal in f32: a tie.
//! assert!(!monitor.is_improvement(0.7, Some(0.8)).unwrap());
//! assert!(monitor.is_improvement(0.69, Some(0.8)).unwrap());
//! assert!(monitor.is_improvement(f64::NAN, None).unwrap());
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{CallbackError, Result};
use crate::logs::Logs;

/// The `mode` parameter: which direction counts as better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Infer the direction from the monitored name (see [`MetricDirections`]).
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// Parses Keras's mode string. Only the exact strings `auto`, `min` and
    /// `max` are recognised (Keras is case-sensitive); `None` otherwise.
    pub fn parse(mode: &str) -> Option<Mode> {
        match mode {
            "auto" => Some(Mode::Auto),
            "min" => Some(Mode::Min),
            "max" => Some(Mode::Max),
            _ => None,
        }
    }

    /// The Keras spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }
}

/// A resolved direction: Keras's `monitor_op` (`ops.less` or `ops.greater`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower is better (`monitor_op = less`).
    Min,
    /// Higher is better (`monitor_op = greater`).
    Max,
}

impl Direction {
    /// The name of Keras's comparison function: `"less"` or `"greater"`.
    pub fn op_name(self) -> &'static str {
        match self {
            Direction::Min => "less",
            Direction::Max => "greater",
        }
    }

    /// `op(a, b)`: `a < b` for [`Direction::Min`], `a > b` for
    /// [`Direction::Max`] (false whenever a NaN is involved).
    pub fn better<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Direction::Min => a < b,
            Direction::Max => a > b,
        }
    }
}

/// Metric names whose direction Keras knows (their `_direction`): higher is
/// better for these…
const MAXIMISED: &[&str] = &[
    "accuracy",
    "acc",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "auc",
    "precision",
    "recall",
    "precision_at_recall",
    "recall_at_precision",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "true_positives",
    "true_negatives",
    "f1_score",
    "fbeta_score",
    "r2_score",
    "iou",
    "mean_iou",
    "binary_iou",
    "one_hot_iou",
    "one_hot_mean_iou",
    "cosine_similarity",
];

/// … and lower is better for these.
const MINIMISED: &[&str] = &[
    "mae",
    "mse",
    "mape",
    "msle",
    "rmse",
    "mean_absolute_error",
    "mean_squared_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "root_mean_squared_error",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_focal_crossentropy",
    "categorical_focal_crossentropy",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "kl_divergence",
    "kld",
    "poisson",
    "log_cosh",
    "logcosh",
    "false_positives",
    "false_negatives",
];

/// The directions of the metric names `mode="auto"` can resolve.
///
/// Keras resolves `"auto"` against the metrics the model was *compiled* with
/// (each Keras metric carries a direction). A Rust callback does not see the
/// model's metric objects, so by default ([`MetricDirections::known`]) every
/// well-known Keras metric name is resolvable: `accuracy`, `acc`, `auc`,
/// `precision`, `recall`, `top_k_categorical_accuracy`, `f1_score`, … are
/// maximised; `mae`, `mse`, `rmse`, `binary_crossentropy`, `hinge`, … are
/// minimised. Unknown names (`val_f1`, `custom_auc`, `learning_rate`) fail as
/// in Keras. To mirror a model compiled with particular metrics exactly, use
/// [`MetricDirections::compiled`]; to teach `"auto"` your own metric, use
/// [`MetricDirections::with`].
///
/// ```
/// use burnfit_core::monitor::{Direction, MetricDirections};
///
/// let dirs = MetricDirections::known().with("dice", Direction::Max);
/// assert_eq!(dirs.get("dice"), Some(Direction::Max));
/// assert_eq!(dirs.get("mae"), Some(Direction::Min));
/// assert_eq!(MetricDirections::compiled(["mae"]).unwrap().get("accuracy"), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricDirections {
    entries: Vec<(String, Direction)>,
}

impl MetricDirections {
    /// No metric at all: only `loss` / `val_loss` resolve in `"auto"` mode
    /// (a model compiled without metrics).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every well-known Keras metric name (the default).
    pub fn known() -> Self {
        let mut dirs = Self::empty();
        for name in MAXIMISED {
            dirs.insert(*name, Direction::Max);
        }
        for name in MINIMISED {
            dirs.insert(*name, Direction::Min);
        }
        dirs
    }

    /// The direction Keras gives the well-known metric `name`, if any.
    pub fn known_direction(name: &str) -> Option<Direction> {
        if MAXIMISED.contains(&name) {
            Some(Direction::Max)
        } else if MINIMISED.contains(&name) {
            Some(Direction::Min)
        } else {
            None
        }
    }

    /// Exactly the given well-known metric names, as if the model had been
    /// compiled with `metrics=[...]` of these. Errors on a name whose
    /// direction is not known (add such names with [`MetricDirections::with`]).
    pub fn compiled<I, S>(names: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut dirs = Self::empty();
        for name in names {
            let name = name.as_ref();
            let direction = Self::known_direction(name).ok_or_else(|| CallbackError::InvalidParameter {
                callback: "MetricDirections",
                param: "names",
                message: format!("the direction of metric `{name}` is not known; add it with `with(name, direction)`"),
            })?;
            dirs.insert(name, direction);
        }
        Ok(dirs)
    }

    /// Sets the direction of `name` (replacing an earlier entry).
    pub fn insert(&mut self, name: impl Into<String>, direction: Direction) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = direction,
            None => self.entries.push((name, direction)),
        }
    }

    /// Builder form of [`MetricDirections::insert`].
    pub fn with(mut self, name: impl Into<String>, direction: Direction) -> Self {
        self.insert(name, direction);
        self
    }

    /// The direction of `name`, if it is in the table.
    pub fn get(&self, name: &str) -> Option<Direction> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
    }
}

/// Keras's improvement test, in float32.
///
/// `min_delta` is the *signed* value ([`Monitor::min_delta`]): negative in
/// min mode. `current - min_delta` is computed in f64, then both sides are
/// rounded to f32 (values beyond the f32 range become ±inf) and compared
/// strictly. A `None` reference is always beaten.
///
/// ```
/// use burnfit_core::monitor::{is_improvement, Direction};
/// assert!(!is_improvement(Direction::Min, 0.0, 0.99999999, Some(1.0))); // sub-ulp gain
/// assert!(!is_improvement(Direction::Min, -0.25, 0.75, Some(1.0))); // exactly min_delta
/// assert!(is_improvement(Direction::Max, 0.0, 2.0, Some(1.0)));
/// ```
pub fn is_improvement(
    direction: Direction,
    min_delta: f64,
    current: f64,
    reference: Option<f64>,
) -> bool {
    match reference {
        None => true,
        Some(reference) => direction.better((current - min_delta) as f32, reference as f32),
    }
}

/// The monitor base of the monitoring callbacks (Keras's `MonitorCallback`):
/// the monitored quantity, its mode and `min_delta` with Keras's lazy
/// `"auto"` resolution, the `best` value so far, the improvement test, and
/// their saved state ([`MonitorState`]).
///
/// EarlyStopping, ReduceLROnPlateau and ModelCheckpoint keep only their
/// policy (patience, cooldown, what to save) on top of it; a custom
/// callback gets the same semantics by embedding one.
///
/// ```
/// use burnfit_core::monitor::Monitor;
///
/// let mut monitor = Monitor::new("MyCallback", "val_loss", "auto", 0.0);
/// assert!(monitor.update_best(0.5).unwrap()); // the first value is the best
/// assert!(!monitor.update_best(0.6).unwrap());
/// assert_eq!(monitor.best(), Some(0.5));
/// let saved = monitor.saved_state();
/// let mut resumed = Monitor::new("MyCallback", "val_loss", "auto", 0.0);
/// resumed.load_saved_state(&saved);
/// assert_eq!(resumed.best(), Some(0.5));
/// ```
#[derive(Clone, Debug)]
pub struct Monitor {
    callback: &'static str,
    key: String,
    mode: Mode,
    min_delta: f64,
    direction: Option<Direction>,
    metrics: MetricDirections,
    warnings: Vec<String>,
    best: Option<f64>,
}

impl Monitor {
    /// A monitor of log key `key` for the callback named `callback` (used in
    /// messages). An unknown `mode` string is recorded as a pending warning
    /// (see [`Monitor::take_warnings`]) and treated as `"auto"`.
    pub fn new(callback: &'static str, key: impl Into<String>, mode: &str, min_delta: f64) -> Self {
        let mut warnings = Vec::new();
        let mode = Mode::parse(mode).unwrap_or_else(|| {
            warnings.push(format!(
                "{callback} mode '{mode}' is unknown, fallback to auto mode."
            ));
            Mode::Auto
        });
        Self {
            callback,
            key: key.into(),
            mode,
            min_delta: min_delta.abs(),
            direction: None,
            metrics: MetricDirections::known(),
            warnings,
            best: None,
        }
    }

    /// The best value so far (Keras's `best`; `None` before the first).
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Sets the best value (a starting threshold, or a reset with `None`).
    pub fn set_best(&mut self, best: Option<f64>) {
        self.best = best;
    }

    /// Whether `current` improves on the best so far (see [`Monitor::is_improvement`]).
    pub fn improves_on_best(&mut self, current: f64) -> Result<bool> {
        self.is_improvement(current, self.best)
    }

    /// Makes `current` the best if it improves on it; returns whether it did.
    pub fn update_best(&mut self, current: f64) -> Result<bool> {
        let improved = self.improves_on_best(current)?;
        if improved {
            self.best = Some(current);
        }
        Ok(improved)
    }

    /// `best`, the resolved comparison and the signed `min_delta`, as a
    /// callback saves them with its state.
    pub fn saved_state(&self) -> MonitorState {
        MonitorState {
            best: self.best,
            monitor_op: self.direction.map(|d| d.op_name().to_string()),
            min_delta_effective: self.min_delta(),
        }
    }

    /// Restores what [`Monitor::saved_state`] saved: `best`, and the
    /// resolved direction when it was recorded.
    pub fn load_saved_state(&mut self, state: &MonitorState) {
        self.best = state.best;
        match state.monitor_op.as_deref() {
            Some("less") => self.set_direction(Direction::Min),
            Some("greater") => self.set_direction(Direction::Max),
            _ => {}
        }
    }

    /// The monitored log key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The effective mode (after the unknown-mode fallback).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces the table `"auto"` resolves names with (before resolution).
    pub fn set_metric_directions(&mut self, metrics: MetricDirections) {
        self.metrics = metrics;
    }

    /// Warnings produced at construction (unknown mode), emptied.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The resolved direction, or `None` before [`Monitor::resolve`].
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Resolves the direction (once; later calls return the same value).
    /// Fails in `"auto"` mode when the name cannot be resolved, with Keras's
    /// `ValueError` message.
    pub fn resolve(&mut self) -> Result<Direction> {
        if let Some(direction) = self.direction {
            return Ok(direction);
        }
        let direction = match self.mode {
            Mode::Min => Direction::Min,
            Mode::Max => Direction::Max,
            Mode::Auto => {
                let name = self.key.strip_prefix("val_").unwrap_or(&self.key);
                let found = if name == "loss" {
                    Some(Direction::Min)
                } else {
                    self.metrics.get(name)
                };
                found.ok_or_else(|| CallbackError::InvalidParameter {
                    callback: self.callback,
                    param: "mode",
                    message: format!(
                        "{} callback received monitor={}, but Keras isn't able to automatically \
                         determine whether that metric should be maximized or minimized. Pass \
                         `mode='max'` in order to monitor based on the highest metric value, or \
                         pass `mode='min'` in order to use the lowest value.",
                        self.callback, self.key
                    ),
                })?
            }
        };
        self.direction = Some(direction);
        Ok(direction)
    }

    /// Forces the direction (used when restoring saved state).
    pub fn set_direction(&mut self, direction: Direction) {
        self.direction = Some(direction);
    }

    /// Keras's internal `min_delta`: `|min_delta|`, negated once the direction
    /// is resolved to min.
    pub fn min_delta(&self) -> f64 {
        match self.direction {
            Some(Direction::Min) => -self.min_delta,
            _ => self.min_delta,
        }
    }

    /// The monitored value in `logs`, if present.
    pub fn current(&self, logs: &Logs) -> Option<f64> {
        logs.get(&self.key)
    }

    /// Whether `current` improves on `reference`. A `None` reference is an
    /// improvement without looking at the direction (as in Keras); otherwise
    /// the direction is resolved first if needed. See [`is_improvement`].
    pub fn is_improvement(&mut self, current: f64, reference: Option<f64>) -> Result<bool> {
        if reference.is_none() {
            return Ok(true);
        }
        let direction = self.resolve()?;
        Ok(is_improvement(
            direction,
            self.min_delta(),
            current,
            reference,
        ))
    }
}

/// The keys of `logs` joined with `,` (Keras's "Available metrics are: …").
pub(crate) fn available_keys(logs: &Logs) -> String {
    logs.keys().collect::<Vec<_>>().join(",")
}

/// Serde helpers for floats that may be NaN or infinite.
///
/// JSON has no NaN/Infinity, so these are written as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (the fixture convention); reading accepts
/// numbers (integers included) and those strings (also `"nan"`, `"inf"`,
/// `"+inf"`, `"-inf"`).
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct S {
///     #[serde(with = "burnfit_core::monitor::special_float")]
///     x: f64,
/// }
/// let s: S = serde_json::from_str(r#"{"x": "-Infinity"}"#).unwrap();
/// assert_eq!(s.x, f64::NEG_INFINITY);
/// assert_eq!(serde_json::to_string(&S { x: f64::NAN }).unwrap(), r#"{"x":"NaN"}"#);
/// ```
pub mod special_float {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(
        untagged,
        expecting = "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\""
    )]
    enum Repr {
        Num(f64),
        Str(String),
    }

    /// Parses one of the special strings.
    pub fn parse_special(s: &str) -> Option<f64> {
        match s {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" | "+inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        }
    }

    fn to_repr(x: f64) -> Repr {
        if x.is_nan() {
            Repr::Str("NaN".into())
        } else if x == f64::INFINITY {
            Repr::Str("Infinity".into())
        } else if x == f64::NEG_INFINITY {
            Repr::Str("-Infinity".into())
        } else {
            Repr::Num(x)
        }
    }

    fn from_repr<E: serde::de::Error>(repr: Repr) -> Result<f64, E> {
        match repr {
            Repr::Num(x) => Ok(x),
            Repr::Str(s) => {
                parse_special(&s).ok_or_else(|| E::custom(format!("expected a number, got {s:?}")))
            }
        }
    }

    /// Serialises an `f64`.
    pub fn serialize<S: Serializer>(x: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        to_repr(*x).serialize(serializer)
    }

    /// Deserialises an `f64`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(deserializer)?)
    }

    /// The same for `Option<f64>` (`null` = `None`).
    pub mod option {
        use super::*;

        /// Serialises an `Option<f64>`.
        pub fn serialize<S: Serializer>(x: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
            x.map(to_repr).serialize(serializer)
        }

        /// Deserialises an `Option<f64>`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<f64>, D::Error> {
            Option::<Repr>::deserialize(deserializer)?
                .map(from_repr)
                .transpose()
        }
    }

    /// The same for `Vec<f64>`.
    pub mod vec {
        use super::*;

        /// Serialises a `Vec<f64>`.
        pub fn serialize<S: Serializer>(x: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
            x.iter()
                .map(|v| to_repr(*v))
                .collect::<Vec<_>>()
                .serialize(serializer)
        }

        /// Deserialises a `Vec<f64>`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<f64>, D::Error> {
            Vec::<Repr>::deserialize(deserializer)?
                .into_iter()
                .map(from_repr)
                .collect()
        }
    }
}

/// The monitor part of a callback's saved state: Keras's `best`, plus the
/// resolved comparison (informational; the mode is re-resolved from the
/// configuration on load when absent). Flattened into each monitoring
/// callback's state, so its JSON keys are `best`, `monitor_op` and
/// `min_delta_effective`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorState {
    /// The best monitored value so far (`None` before the first).
    #[serde(with = "special_float::option")]
    pub best: Option<f64>,
    /// `"less"` (min) or `"greater"` (max) once resolved.
    pub monitor_op: Option<String>,
    /// Keras's signed `min_delta` (negative in min mode).
    #[serde(with = "special_float")]
    pub min_delta_effective: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(key: &str, mode: &str) -> Result<Direction> {
        Monitor::new("EarlyStopping", key, mode, 0.0).resolve()
    }

    #[test]
    fn auto_mode_rules() {
        assert_eq!(resolve("loss", "auto").unwrap(), Direction::Min);
        assert_eq!(resolve("val_loss", "auto").unwrap(), Direction::Min);
        assert_eq!(resolve("val_accuracy", "auto").unwrap(), Direction::Max);
        assert_eq!(resolve("acc", "auto").unwrap(), Direction::Max);
        assert_eq!(resolve("val_auc", "auto").unwrap(), Direction::Max);
        assert_eq!(resolve("val_mae", "auto").unwrap(), Direction::Min);
        // Only one `val_` prefix is stripped; no substring matching.
        assert!(resolve("val_val_loss", "auto").is_err());
        assert!(resolve("val_top_acc", "auto").is_err());
        assert!(resolve("custom_auc", "auto").is_err());
        assert!(resolve("learning_rate", "auto").is_err());
        assert_eq!(resolve("learning_rate", "min").unwrap(), Direction::Min);
        assert_eq!(resolve("val_f1", "max").unwrap(), Direction::Max);
    }

    #[test]
    fn auto_error_has_keras_text() {
        let err = resolve("val_f1", "auto").unwrap_err().to_string();
        assert!(
            err.contains("EarlyStopping callback received monitor=val_f1, but Keras isn't able")
        );
    }

    #[test]
    fn compiled_metrics_table() {
        let mut m = Monitor::new("EarlyStopping", "val_accuracy", "auto", 0.0);
        m.set_metric_directions(MetricDirections::empty());
        assert!(m.resolve().is_err());
        let mut m = Monitor::new("EarlyStopping", "val_loss", "auto", 0.0);
        m.set_metric_directions(MetricDirections::empty());
        assert_eq!(m.resolve().unwrap(), Direction::Min);
        assert!(MetricDirections::compiled(["f1"]).is_err());
    }

    #[test]
    fn unknown_mode_warns_and_falls_back() {
        let mut m = Monitor::new("ReduceLROnPlateau", "val_loss", "MIN", 0.0);
        assert_eq!(m.mode(), Mode::Auto);
        assert_eq!(
            m.take_warnings(),
            ["ReduceLROnPlateau mode 'MIN' is unknown, fallback to auto mode."]
        );
        assert!(m.take_warnings().is_empty());
    }

    #[test]
    fn signed_min_delta() {
        let mut m = Monitor::new("EarlyStopping", "val_loss", "min", -0.5);
        assert_eq!(m.min_delta(), 0.5);
        m.resolve().unwrap();
        assert_eq!(m.min_delta(), -0.5);
        let mut m = Monitor::new("EarlyStopping", "acc", "max", -0.5);
        m.resolve().unwrap();
        assert_eq!(m.min_delta(), 0.5);
    }

    #[test]
    fn float32_comparisons() {
        let d = Direction::Min;
        assert!(!is_improvement(d, 0.0, 0.99999999, Some(1.0)));
        assert!(!is_improvement(d, -0.1, 0.7, Some(0.8)));
        assert!(is_improvement(d, -0.1, 0.69, Some(0.8)));
        assert!(is_improvement(d, 0.0, f64::NAN, None));
        assert!(!is_improvement(d, 0.0, f64::NAN, Some(1.0)));
        assert!(!is_improvement(d, 0.0, 0.0, Some(f64::NAN)));
        assert!(!is_improvement(d, 0.0, -1e300, Some(f64::NEG_INFINITY)));
        assert!(is_improvement(d, 0.0, 1e30, Some(f64::INFINITY)));
        assert!(is_improvement(
            Direction::Max,
            0.0,
            f64::INFINITY,
            Some(1.0)
        ));
        assert!(!is_improvement(Direction::Max, 0.05, 0.55, Some(0.5)));
    }

    #[test]
    fn special_float_roundtrip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "special_float::option")]
            a: Option<f64>,
            #[serde(with = "special_float::vec")]
            b: Vec<f64>,
        }
        let s = S {
            a: Some(f64::INFINITY),
            b: vec![1.0, f64::NEG_INFINITY],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, r#"{"a":"Infinity","b":[1.0,"-Infinity"]}"#);
        assert_eq!(serde_json::from_str::<S>(&text).unwrap(), s);
        let s: S = serde_json::from_str(r#"{"a":null,"b":[1,"NaN"]}"#).unwrap();
        assert_eq!(s.a, None);
        assert!(s.b[1].is_nan());
        assert!(serde_json::from_str::<S>(r#"{"a":"x","b":[]}"#).is_err());
    }
}
