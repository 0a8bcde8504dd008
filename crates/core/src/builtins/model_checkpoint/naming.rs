//! File names: Keras's `filepath` template with Python `str.format`
//! placeholders, its checks, and the `last` file next to the checkpoints.

use std::path::{Path, PathBuf};

use super::super::python::{TemplateError, Value, format_template, format_value, has_placeholders};
use super::{ModelCheckpointConfig, NAME};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

/// A `ModelCheckpoint` parameter error.
pub(super) fn invalid(param: &'static str, message: impl Into<String>) -> CallbackError {
    CallbackError::InvalidParameter {
        callback: NAME,
        param,
        message: message.into(),
    }
}

/// Keras's extension rule, applied only to Keras's own extensions.
pub(super) fn check_keras_extension(config: &ModelCheckpointConfig) -> Result<()> {
    let path = &config.filepath;
    let keras_named = path.ends_with(".keras") || path.ends_with(".h5");
    if config.save_weights_only && keras_named && !path.ends_with(".weights.h5") {
        return Err(invalid(
            "filepath",
            format!(
                "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end in \
                 `.weights.h5` (Keras weights format). Received: filepath={path}"
            ),
        ));
    }
    Ok(())
}

/// The `last` file next to the checkpoints (see [`ModelCheckpointConfig::save_last`]).
pub(super) fn last_path(template: &str) -> Result<PathBuf> {
    let path = Path::new(template);
    let dir = path
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if has_placeholders(&dir) {
        return Err(invalid(
            "save_last",
            format!(
                "the directory of filepath {template:?} contains a placeholder, so `last` has no stable place"
            ),
        ));
    }
    let dir = format_template(&dir, |_| None).map_err(|e| invalid("filepath", e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = if name.ends_with(".weights.h5") {
        ".weights.h5".to_string()
    } else {
        match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.contains(['{', '}']) => format!(".{ext}"),
            _ => String::new(),
        }
    };
    Ok(Path::new(&dir).join(format!("last{ext}")))
}

/// Checks the template's syntax now rather than at the first save.
pub(super) fn check_template(template: &str) -> Result<()> {
    format_template(template, |_| Some(Value::Int(1)))
        .map(|_| ())
        .map_err(|e| invalid("filepath", e.to_string()))
}

/// Keras's `_get_file_path`: the template filled with the 1-based epoch and
/// batch and the log values.
pub(super) fn checkpoint_path(
    template: &str,
    epoch: usize,
    batch: Option<usize>,
    logs: &Logs,
) -> Result<PathBuf> {
    let lookup = |key: &str| match key {
        "epoch" => Some(Value::Int(epoch as i64 + 1)),
        "batch" if batch.is_some() && !logs.contains("batch") => {
            batch.map(|b| Value::Int(b as i64 + 1))
        }
        key => logs.get(key).map(Value::Float),
    };
    match format_template(template, lookup) {
        Ok(path) => Ok(PathBuf::from(path)),
        Err(e @ TemplateError::MissingKey(_)) => Err(CallbackError::Runtime {
            callback: NAME,
            message: format!(
                "Failed to format this callback filepath: \"{template}\". Reason: {e}"
            ),
        }),
        Err(e) => Err(invalid("filepath", e.to_string())),
    }
}

/// A value as Keras prints it in messages (`{:.5f}`, `None` when absent).
pub(super) fn fmt5(x: Option<f64>) -> String {
    match x {
        None => "None".into(),
        Some(x) => format_value(Value::Float(x), ".5f").unwrap_or_else(|_| x.to_string()),
    }
}

impl ModelCheckpointConfig {
    /// The log keys `filepath` names (`{val_loss:.2f}` → `val_loss`), other
    /// than `epoch` and `batch`; an invalid template names none (building
    /// the callback reports it).
    pub fn filepath_keys(&self) -> Vec<String> {
        let names = std::cell::RefCell::new(Vec::new());
        let _ = format_template(&self.filepath, |name| {
            if name == "epoch" || name == "batch" {
                return Some(Value::Int(1));
            }
            names.borrow_mut().push(name.to_string());
            Some(Value::Float(0.0))
        });
        names.into_inner()
    }

    /// The file an epoch-end save writes after epoch `epoch` (0-based) with
    /// the epoch's `logs`: the template filled as Keras fills it. Tools
    /// that find a run's checkpoints from its history (`burnfit average`)
    /// use it.
    pub fn epoch_file(&self, epoch: usize, logs: &Logs) -> Result<PathBuf> {
        checkpoint_path(&self.filepath, epoch, None, logs)
    }
}
