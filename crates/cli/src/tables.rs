//! What the config needs to know of the process's task: its own `[model]`
//! and `[data]` tables (read, checked, described), with no dependency on
//! how the task trains. [`crate::task`] installs the task here; the config
//! reads its tables through it.

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::de::Error as _;
use serde::{Deserializer, Serialize, Serializer};

/// A `[model]` or `[data]` table of the task's own type.
#[derive(Clone)]
pub struct Section(Arc<dyn Value>);

trait Value: Any + Debug + Send + Sync + erased_serde::Serialize {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Debug + Send + Sync + Serialize> Value for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

erased_serde::serialize_trait_object!(Value);

impl Section {
    /// A table holding `value`.
    pub fn new<T: Any + Debug + Send + Sync + Serialize>(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// The table as the task's type `T`, if it is one.
    pub fn get<T: Any>(&self) -> Option<&T> {
        // Through the `dyn Value`, not the `Arc` (which is a `Value` too).
        self.0.as_ref().as_any().downcast_ref()
    }

    /// The table as `T`: the process's task made it, so it is one.
    pub(crate) fn typed<T: Any>(&self) -> &T {
        self.get().unwrap_or_else(|| {
            panic!(
                "a config table is not a {}: it was read for another task",
                std::any::type_name::<T>()
            )
        })
    }
}

impl Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.as_ref().fmt(f)
    }
}

impl Serialize for Section {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

/// Reads the `[model]` table with the process's task (serde's path and
/// messages are kept, so errors name the key and suggest one).
pub(crate) fn deserialize_model<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Section, D::Error> {
    let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
    current()
        .deserialize_model(&mut erased)
        .map_err(D::Error::custom)
}

/// Reads the `[data]` table with the process's task.
pub(crate) fn deserialize_data<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Section, D::Error> {
    let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
    current()
        .deserialize_data(&mut erased)
        .map_err(D::Error::custom)
}

/// What [`Task::data`] gets besides its table.
#[derive(Clone, Debug)]
pub struct DataContext {
    /// The `--data` flag: it replaces the directory (or file) the table
    /// names.
    pub data_dir: Option<PathBuf>,
    /// `training.batch_size` (the batch of a step over all devices).
    pub batch_size: usize,
    /// `training.seed`, for splits drawn at random.
    pub seed: u64,
}

/// A config value that fails a check: its key and why.
#[derive(Clone, Debug)]
pub struct KeyError {
    /// The key path, such as `model.hidden`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl KeyError {
    /// The error of `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The keys a config gives, in its file or with `--set` (such as
/// `model.num_classes`), as opposed to those left to their defaults: a
/// model key the data can size ([`Task::model_for_data`]) follows the data
/// only when the config leaves it out.
///
/// [`Task::model_for_data`]: crate::task::Task::model_for_data
#[derive(Clone, Debug, Default)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// The given keys, as dotted paths of their values.
    pub(crate) fn new(keys: impl IntoIterator<Item = String>) -> Self {
        Self(keys.into_iter().collect())
    }

    /// Whether the config gives `key` (a dotted path, `model.num_classes`),
    /// or a value inside it.
    pub fn contains(&self, key: &str) -> bool {
        let inside = format!("{key}.");
        self.0.iter().any(|k| k == key || k.starts_with(&inside))
    }
}

/// The metrics a task offers.
#[derive(Clone, Debug, Default)]
pub struct MetricNames {
    /// Every name `[training] metrics` may list.
    pub available: Vec<String>,
    /// Those used when `[training] metrics` is left out.
    pub default: Vec<String>,
    /// Names that belong to other tasks (a clearer error than "unknown").
    pub other_tasks: Vec<String>,
}

/// A model's description, from its tables.
pub(crate) struct Description {
    /// Its name in messages.
    pub kind: String,
    /// Whether it has convolutions.
    pub convolutional: bool,
    /// A lower bound of its parameters and the key that sizes it.
    pub parameters: Option<(u128, &'static str)>,
    /// Its metrics.
    pub metrics: MetricNames,
    /// The `[data]` key `--data` replaces.
    pub data_path_key: Option<&'static str>,
    /// The model keys that follow the data when the config leaves them out.
    pub data_keys: Vec<String>,
}

/// The process's task, as the config sees it.
pub(crate) trait TableReader: Send + Sync {
    /// Reads a `[model]` table.
    fn deserialize_model<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error>;
    /// Reads a `[data]` table.
    fn deserialize_data<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error>;
    /// The model's description.
    fn describe(&self, model: &Section, data: &Section) -> Description;
    /// The task's own checks of its tables.
    fn check(&self, model: &Section, data: &Section) -> Result<(), KeyError>;
}

static TABLES: OnceLock<Arc<dyn TableReader>> = OnceLock::new();

/// Makes `tables` the process's (the first call wins).
pub(crate) fn install(tables: Arc<dyn TableReader>) {
    let _ = TABLES.set(tables);
}

/// The process's task's tables.
///
/// # Panics
///
/// Before [`crate::run`] installed a task.
pub(crate) fn current() -> &'static dyn TableReader {
    TABLES
        .get()
        .expect("burnfit_cli::run installs the task before anything reads a config")
        .as_ref()
}
