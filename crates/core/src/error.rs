//! The error type shared by every callback and by the training glue.

use std::path::PathBuf;

/// Why a callback could not be built or why a hook failed.
///
/// A hook that returns an error ends training at once (as an exception does in
/// Keras): no further hook runs, `on_train_end` included, and the error is
/// handed back to the caller.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// A parameter has a value the callback cannot work with
    /// (Keras raises `ValueError` for the same cases).
    #[error("{callback}: invalid parameter `{param}`: {message}")]
    InvalidParameter {
        /// The callback's name, e.g. `ReduceLROnPlateau`.
        callback: &'static str,
        /// The parameter's (Keras) name.
        param: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A value a callback needed at run time was wrong or missing.
    #[error("{callback}: {message}")]
    Runtime {
        /// The callback's name.
        callback: &'static str,
        /// What happened.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The training loop cannot do what the callback asked
    /// (for example a learning-rate change without a controllable scheduler).
    #[error("{0}")]
    Unsupported(String),
    /// Saving or loading callback state failed.
    #[error("callback state: {0}")]
    State(String),
}

impl CallbackError {
    /// Shorthand for [`CallbackError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CallbackError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used by every hook.
pub type Result<T, E = CallbackError> = std::result::Result<T, E>;

/// Serialises a callback's state for [`Callback::state`](crate::Callback::state).
pub fn state_to_json<T: serde::Serialize>(state: &T) -> Result<Option<serde_json::Value>> {
    serde_json::to_value(state)
        .map(Some)
        .map_err(|e| CallbackError::State(e.to_string()))
}

/// Reads back a state written by [`state_to_json`], for
/// [`Callback::load_state`](crate::Callback::load_state).
pub fn state_from_json<T: serde::de::DeserializeOwned>(state: serde_json::Value) -> Result<T> {
    serde_json::from_value(state).map_err(|e| CallbackError::State(e.to_string()))
}
