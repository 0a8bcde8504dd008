//! [`CSVLogger`]: one CSV row per epoch, in the exact format Keras writes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::python::float_repr;
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "CSVLogger";

/// Streams epoch results to a CSV file, byte for byte as
/// `keras.callbacks.CSVLogger` does.
///
/// * The header is `epoch` followed by the **sorted** keys of the first
///   epoch's logs (plain string order: upper case before lower case, `_x`
///   before `alpha`). If none of those keys starts with `val_`, a `val_<key>`
///   column is added for every key (Keras does this so that validation run
///   only every few epochs still has columns); they hold `NA` while absent.
/// * The columns never change afterwards: keys that appear later are dropped,
///   missing ones are written as `NA`.
/// * `epoch` is 0-based; numbers are written as Python's `repr()` of a double
///   (`0.1`, `0.30000000000000004`, `1e-05`, `123456789.0`, `nan`, `inf`);
///   rows end with `\r\n` (the csv "excel" dialect); a field that contains
///   the separator, a quote or a line break is quoted, quotes doubled.
/// * The file is truncated (or created) in `on_train_begin`; with
///   `append(true)` rows are added to an existing file, and the header is
///   written only if the file is missing or empty. Existing content is not
///   checked: a different header is not rewritten and a missing final newline
///   is not added, exactly as in Keras.
/// * Every row is flushed to disk at once, so the file can be watched while
///   training runs.
///
/// The separator must be one character; as in Keras, a longer one is only
/// detected at the first epoch end (after the file was truncated), where the
/// hook fails with [`CallbackError::InvalidParameter`] and the message Keras
/// raises (`"delimiter" must be a 1-character string`).
///
/// Differences from Keras: logs hold numbers only, so string and array values
/// cannot occur; missing parent directories of `filename` are created.
///
/// On resume ([`Callback::load_state`]) the logger keeps the columns of the
/// interrupted run and appends to the file (header only if it is empty or
/// gone), whatever `append` says.
///
/// ```
/// use burnfit_core::builtins::CSVLogger;
///
/// let dir = tempfile::tempdir().unwrap();
/// let logger = CSVLogger::new(dir.path().join("training.log"))
///     .separator(";")
///     .append(true);
/// # let _ = logger;
/// ```
pub struct CSVLogger {
    filename: PathBuf,
    separator: String,
    append: bool,
    /// Columns after `epoch`, fixed at the first epoch end of a run.
    keys: Option<Vec<String>>,
    /// Columns restored by `load_state`, used by the next `on_train_begin`.
    resume_keys: Option<Vec<String>>,
    resumed: bool,
    /// File length recorded with the state: rows written after the backup
    /// (by a run that then crashed) are cut on resume, so none is duplicated.
    resume_len: Option<u64>,
    append_header: bool,
    file: Option<File>,
    writer: Option<RowWriter>,
}

impl CSVLogger {
    /// A logger writing to `filename`, with Keras's defaults: separator `,`,
    /// `append = false`.
    pub fn new(filename: impl Into<PathBuf>) -> Self {
        Self {
            filename: filename.into(),
            separator: ",".to_string(),
            append: false,
            keys: None,
            resume_keys: None,
            resumed: false,
            resume_len: None,
            append_header: true,
            file: None,
            writer: None,
        }
    }

    /// Sets the field separator (Keras's `separator`); one character.
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// Appends to an existing file instead of overwriting it (Keras's `append`).
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// The file written to.
    pub fn filename(&self) -> &Path {
        &self.filename
    }

    /// The columns after `epoch`, once the first epoch of the run fixed them.
    pub fn columns(&self) -> Option<&[String]> {
        self.keys.as_deref()
    }

    fn open(&mut self) -> Result<()> {
        let append = self.append || self.resumed;
        if let Some(dir) = self.filename.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CallbackError::io(dir, e))?;
        }
        let mut options = OpenOptions::new();
        if append {
            // Keras reads the first line: the header is written only when
            // there is none, i.e. the file is missing or empty.
            self.append_header = match std::fs::metadata(&self.filename) {
                Ok(meta) => meta.len() == 0,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(CallbackError::io(&self.filename, e)),
            };
            options.append(true).create(true);
        } else {
            options.write(true).create(true).truncate(true);
        }
        let file = options
            .open(&self.filename)
            .map_err(|e| CallbackError::io(&self.filename, e))?;
        self.file = Some(file);
        self.writer = None;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.file = None;
        if let Some(mut writer) = self.writer.take() {
            writer
                .flush()
                .map_err(|e| CallbackError::io(&self.filename, e))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CSVLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(NAME)
            .field("filename", &self.filename)
            .field("separator", &self.separator)
            .field("append", &self.append)
            .field("columns", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The columns Keras derives from the first epoch's logs.
fn columns_from(logs: &Logs) -> Vec<String> {
    let mut keys: Vec<String> = logs.keys().map(str::to_string).collect();
    keys.sort();
    if !keys.iter().any(|k| k.starts_with("val_")) {
        let val: Vec<String> = keys.iter().map(|k| format!("val_{k}")).collect();
        keys.extend(val);
    }
    keys
}

impl Callback for CSVLogger {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.close()?;
        self.keys = self.resume_keys.take();
        if let Some(len) = self.resume_len.take()
            && std::fs::metadata(&self.filename).is_ok_and(|m| m.len() > len)
        {
            let file = OpenOptions::new()
                .write(true)
                .open(&self.filename)
                .map_err(|e| CallbackError::io(&self.filename, e))?;
            file.set_len(len)
                .map_err(|e| CallbackError::io(&self.filename, e))?;
        }
        self.open()?;
        self.resumed = false;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        if self.file.is_none() && self.writer.is_none() {
            // An epoch end outside on_train_begin/on_train_end: open the file
            // as training would, but never truncate what this logger wrote.
            if let Some(keys) = self.resume_keys.take() {
                self.keys = Some(keys);
                self.resumed = true;
            } else if self.keys.is_some() {
                self.resumed = true;
            }
            self.open()?;
            self.resumed = false;
        }
        let keys = self.keys.get_or_insert_with(|| columns_from(logs)).clone();
        if self.writer.is_none() {
            let file = self.file.take().ok_or_else(|| CallbackError::Runtime {
                callback: NAME,
                message: "the CSV file is not open".to_string(),
            })?;
            let mut writer = RowWriter::new(file, &self.separator)?;
            if self.append_header {
                let mut header = Vec::with_capacity(keys.len() + 1);
                header.push("epoch".to_string());
                header.extend(keys.iter().cloned());
                writer
                    .write_row(&header)
                    .map_err(|e| CallbackError::io(&self.filename, e))?;
            }
            self.writer = Some(writer);
        }
        let mut row = Vec::with_capacity(keys.len() + 1);
        row.push(epoch.to_string());
        row.extend(
            keys.iter()
                .map(|k| logs.get(k).map_or_else(|| "NA".to_string(), float_repr)),
        );
        let writer = self.writer.as_mut().expect("writer created above");
        writer
            .write_row(&row)
            .and_then(|()| writer.flush())
            .map_err(|e| CallbackError::io(&self.filename, e))
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        self.close()
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        let state = CsvLoggerState {
            columns: self.keys.clone(),
            bytes: std::fs::metadata(&self.filename).ok().map(|m| m.len()),
        };
        crate::error::state_to_json(&state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: CsvLoggerState = crate::error::state_from_json(state)?;
        self.resume_keys = state.columns;
        self.resume_len = state.bytes;
        self.resumed = true;
        Ok(())
    }
}

/// What [`CSVLogger`] saves for resume: the frozen columns.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvLoggerState {
    columns: Option<Vec<String>>,
    /// The file's length when the state was taken.
    #[serde(default)]
    bytes: Option<u64>,
}

/// Writes rows in Python's csv "excel" dialect with a custom delimiter:
/// minimal quoting, `"` doubled inside quotes, `\r\n` line ends.
enum RowWriter {
    /// A one-byte (ASCII) separator: the `csv` crate does the work.
    Csv(Box<csv::Writer<File>>),
    /// A separator outside ASCII, which the `csv` crate cannot use.
    Char { file: File, separator: char },
}

impl RowWriter {
    fn new(file: File, separator: &str) -> Result<Self> {
        let mut chars = separator.chars();
        let (Some(sep), None) = (chars.next(), chars.next()) else {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "separator",
                message: "\"delimiter\" must be a 1-character string".to_string(),
            });
        };
        Ok(if sep.is_ascii() {
            let writer = csv::WriterBuilder::new()
                .delimiter(sep as u8)
                .quote(b'"')
                .double_quote(true)
                .quote_style(csv::QuoteStyle::Necessary)
                .terminator(csv::Terminator::CRLF)
                .has_headers(false)
                .flexible(true)
                .from_writer(file);
            RowWriter::Csv(Box::new(writer))
        } else {
            RowWriter::Char {
                file,
                separator: sep,
            }
        })
    }

    fn write_row(&mut self, fields: &[String]) -> std::io::Result<()> {
        match self {
            RowWriter::Csv(writer) => writer.write_record(fields).map_err(csv_to_io),
            RowWriter::Char { file, separator } => {
                let line = excel_row(fields, *separator);
                file.write_all(line.as_bytes())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RowWriter::Csv(writer) => writer.flush(),
            RowWriter::Char { file, .. } => file.flush(),
        }
    }
}

fn csv_to_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// One row in the excel dialect with a (non-ASCII) `separator`, as Python's
/// csv module writes it with `QUOTE_MINIMAL`.
fn excel_row(fields: &[String], separator: char) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(separator);
        }
        let lone_empty = fields.len() == 1 && field.is_empty();
        let quote = lone_empty
            || field
                .chars()
                .any(|c| c == separator || c == '"' || c == '\r' || c == '\n');
        if quote {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push_str("\r\n");
    line
}

fn default_separator() -> String {
    ",".to_string()
}

/// Serializable settings of a [`CSVLogger`], with Keras's parameter names.
///
/// ```
/// use burnfit_core::builtins::CsvLoggerConfig;
///
/// let config: CsvLoggerConfig =
///     serde_json::from_str(r#"{"filename": "runs/log.csv", "append": true}"#).unwrap();
/// assert_eq!(config.separator, ",");
/// let logger = config.build().unwrap();
/// assert_eq!(logger.filename(), std::path::Path::new("runs/log.csv"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvLoggerConfig {
    /// The CSV file (Keras's `filename`).
    pub filename: PathBuf,
    /// Field separator, one character (Keras's `separator`, default `,`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Append to an existing file instead of overwriting it (default `false`).
    #[serde(default)]
    pub append: bool,
}

impl CsvLoggerConfig {
    /// The configured callback. Never fails today (Keras checks the separator
    /// only at the first epoch end, and so does [`CSVLogger`]); the `Result`
    /// keeps the signature of the other configs.
    pub fn build(&self) -> Result<CSVLogger> {
        Ok(CSVLogger::new(self.filename.clone())
            .separator(self.separator.clone())
            .append(self.append))
    }
}

impl From<CsvLoggerConfig> for CSVLogger {
    fn from(config: CsvLoggerConfig) -> Self {
        CSVLogger::new(config.filename)
            .separator(config.separator)
            .append(config.append)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_sorted_and_val_added() {
        let logs: Logs = [("loss", 1.0), ("accuracy", 0.5)].into_iter().collect();
        assert_eq!(
            columns_from(&logs),
            ["accuracy", "loss", "val_accuracy", "val_loss"]
        );
        let logs: Logs = [("zeta", 1.0), ("Loss", 1.0), ("_x", 1.0), ("val_b", 1.0)]
            .into_iter()
            .collect();
        assert_eq!(columns_from(&logs), ["Loss", "_x", "val_b", "zeta"]);
    }

    #[test]
    fn excel_row_quotes_like_python() {
        let row = |f: &[&str]| excel_row(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>(), '§');
        assert_eq!(
            row(&["a", "b§c", "say \"hi\"", ""]),
            "a§\"b§c\"§\"say \"\"hi\"\"\"§\r\n"
        );
        assert_eq!(row(&[""]), "\"\"\r\n");
        assert_eq!(row(&["x,y"]), "x,y\r\n");
    }

    #[test]
    fn multichar_separator_is_rejected() {
        let file = tempfile::tempfile().unwrap();
        let err = RowWriter::new(file, ", ").err().unwrap();
        assert!(
            err.to_string()
                .contains("\"delimiter\" must be a 1-character string")
        );
        let file = tempfile::tempfile().unwrap();
        assert!(RowWriter::new(file, "").is_err());
    }

    #[test]
    fn callback_config_builds_a_csv_logger() {
        let config: crate::builtins::CallbackConfig = serde_json::from_str(
            r#"{"type": "CSVLogger", "filename": "log.csv", "separator": ";"}"#,
        )
        .unwrap();
        assert_eq!(config.build().unwrap().name(), "CSVLogger");
        assert!(
            serde_json::from_str::<crate::builtins::CallbackConfig>(
                r#"{"type": "CSVLogger", "filename": "log.csv", "sep": ";"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let err = serde_json::from_str::<CsvLoggerConfig>(r#"{"filename": "a.csv", "sep": ";"}"#);
        assert!(err.is_err());
    }
}
