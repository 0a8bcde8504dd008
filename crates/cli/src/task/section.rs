//! A config table of a task's own type (`[model]`, `[data]`), kept inside
//! [`crate::config::Config`] and read through the process's task.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

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
pub(crate) fn model<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Section, D::Error> {
    let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
    super::current()
        .deserialize_model(&mut erased)
        .map_err(D::Error::custom)
}

/// Reads the `[data]` table with the process's task.
pub(crate) fn data<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Section, D::Error> {
    let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
    super::current()
        .deserialize_data(&mut erased)
        .map_err(D::Error::custom)
}
