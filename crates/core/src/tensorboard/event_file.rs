//! [`EventWriter`]: one TensorBoard event file, named and laid out as
//! TensorFlow's `tf.summary` v2 writers do (the records are framed by
//! `record`, the values built by `summary`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::proto::{self, Event, Summary, event, hparams as hp, summary as summary_proto};
use super::record::encode_record;
use super::summary::{
    self, DEFAULT_BUCKET_COUNT, HPARAMS_EXPERIMENT_TAG, HPARAMS_SESSION_END_TAG,
    HPARAMS_SESSION_START_TAG, HParamValue,
};
use crate::error::{CallbackError, Result};

/// The `file_version` TensorFlow writes in the first record of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Seconds since the Unix epoch, as event files store wall time.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The largest `<seconds>` of the `events.out.tfevents.<seconds>.…` files in `dir`.
fn latest_file_secs(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let rest = name.split_once("tfevents.")?.1;
            rest.split('.').next()?.parse::<u64>().ok()
        })
        .max()
}

/// Writes one TensorBoard event file.
///
/// The file is `events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>.v2`
/// in the given directory (the name TensorFlow's writers use; `n` makes the
/// name unique within the process, and an existing file is never
/// overwritten). TensorBoard reads a run's files in name order, so when the
/// directory already holds a file from this second or later, the seconds in
/// the new name are set one past the latest, keeping the order of creation.
/// Its first record is the `file_version` event
/// (`brain.Event:2`); each later record is an `Event` holding one summary
/// value, encoded as `tf.summary` v2 does (so TensorBoard reads it with the
/// same code paths as files written by TensorFlow):
///
/// | method | plugin | tensor |
/// | --- | --- | --- |
/// | [`write_scalar`](Self::write_scalar) | `scalars` | `DT_FLOAT` scalar |
/// | [`write_histogram`](Self::write_histogram) | `histograms` | `DT_DOUBLE` `[k, 3]`: left edge, right edge, count |
/// | [`write_text`](Self::write_text) | `text` | `DT_STRING` scalar (Markdown) |
/// | `write_hparams_*` | `hparams` | `DT_FLOAT` `[0]`, data in the metadata |
///
/// Records are buffered; [`flush`](Self::flush) hands them to the OS (the
/// [`TensorBoard`](super::TensorBoard) callback flushes at every epoch end).
/// Dropping the writer flushes too.
///
/// ```
/// use burnfit_core::tensorboard::EventWriter;
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut writer = EventWriter::create(dir.path().join("train")).unwrap();
/// writer.write_scalar("epoch_loss", 0.25, 0).unwrap();
/// writer.write_histogram("dense/weight/histogram", &[0.1f32, -0.3, 0.7], 0).unwrap();
/// writer.write_text("config", "lr = 0.1", 0).unwrap();
/// writer.flush().unwrap();
/// assert!(writer.path().file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
/// ```
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

/// The event files of `writers` with their length on disk: what a callback
/// saves in its state so that a resume can cut what was written after it.
pub fn file_lengths<'a>(writers: impl IntoIterator<Item = &'a EventWriter>) -> Vec<(PathBuf, u64)> {
    writers
        .into_iter()
        .filter_map(|w| {
            let len = std::fs::metadata(w.path()).ok()?.len();
            Some((w.path().to_path_buf(), len))
        })
        .collect()
}

/// Cuts each file back to the length recorded by [`file_lengths`]: events a
/// crashed process wrote after its state was saved go, so the resumed run
/// does not show them twice. Event files are a sequence of records, so a
/// cut at a recorded length is a record boundary.
pub fn truncate_to(files: &[(PathBuf, u64)]) -> Result<()> {
    for (path, len) in files {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > *len) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(*len))
                .map_err(|e| CallbackError::io(path, e))?;
        }
    }
    Ok(())
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, and writes the
    /// `file_version` record.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| CallbackError::io(dir, e))?;
        let now = now_secs();
        // TensorBoard reads a run's files in name order, and drops points
        // whose step goes backwards: a new file must sort after the existing
        // ones, even when they were created in the same second.
        let mut secs = now.floor() as u64;
        if let Some(latest) = latest_file_secs(dir) {
            secs = secs.max(latest + 1);
        }
        let host = hostname();
        let pid = std::process::id();
        let (path, file) = loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "events.out.tfevents.{secs:010}.{host}.{pid}.{n}.v2"
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CallbackError::io(&path, e)),
            }
        };
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        writer.write_event(&Event {
            wall_time: now.floor(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_string())),
            source_metadata: Some(proto::SourceMetadata {
                writer: "burnfit".to_string(),
            }),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event record.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        let record = encode_record(&event.encode_to_vec());
        self.out
            .write_all(&record)
            .map_err(|e| CallbackError::io(&self.path, e))
    }

    /// Appends an event holding one summary value at `step`.
    pub fn write_value(&mut self, value: summary_proto::Value, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now_secs(),
            step,
            what: Some(event::What::Summary(Summary { value: vec![value] })),
            source_metadata: None,
        })
    }

    /// A scalar (`tf.summary.scalar`): stored as a 32-bit float, as
    /// TensorFlow does (`0.1` reads back as `0.10000000149011612`).
    pub fn write_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        self.write_value(summary::scalar(tag, value), step)
    }

    /// A histogram of `values` (`tf.summary.histogram`) with
    /// [`DEFAULT_BUCKET_COUNT`] buckets; see [`histogram_buckets`](crate::tensorboard::histogram_buckets).
    pub fn write_histogram<T: Copy + Into<f64>>(
        &mut self,
        tag: &str,
        values: &[T],
        step: i64,
    ) -> Result<()> {
        self.write_histogram_with_buckets(tag, values, DEFAULT_BUCKET_COUNT, step)
    }

    /// A histogram of `values` with `bucket_count` buckets.
    pub fn write_histogram_with_buckets<T: Copy + Into<f64>>(
        &mut self,
        tag: &str,
        values: &[T],
        bucket_count: usize,
        step: i64,
    ) -> Result<()> {
        let values: Vec<f64> = values.iter().map(|&v| v.into()).collect();
        self.write_value(summary::histogram(tag, &values, bucket_count), step)
    }

    /// A text summary (`tf.summary.text`); TensorBoard renders it as Markdown.
    pub fn write_text(&mut self, tag: &str, text: &str, step: i64) -> Result<()> {
        self.write_value(summary::text(tag, text), step)
    }

    fn write_hparams(&mut self, tag: &str, data: hp::h_params_plugin_data::Data) -> Result<()> {
        self.write_value(summary::hparams(tag, data), 0)
    }

    /// The hparams plugin's session start (`hp.hparams`): this run's
    /// hyperparameter values. Write it in the directory that holds the
    /// run's `train`/`validation` sub-runs. An empty `group_name` makes the
    /// session its own group.
    pub fn write_hparams_session_start(
        &mut self,
        hparams: &BTreeMap<String, HParamValue>,
        group_name: &str,
        start_time_secs: f64,
    ) -> Result<()> {
        let info = hp::SessionStartInfo {
            hparams: hparams
                .iter()
                .map(|(k, v)| (k.clone(), v.to_proto()))
                .collect(),
            group_name: group_name.to_string(),
            start_time_secs,
            ..Default::default()
        };
        self.write_hparams(
            HPARAMS_SESSION_START_TAG,
            hp::h_params_plugin_data::Data::SessionStartInfo(info),
        )
    }

    /// The hparams plugin's experiment (`hp.hparams_config`): which
    /// hyperparameters and metrics the dashboard shows. `metrics` are
    /// `(group, tag)` pairs: the sub-run (`train`, `validation`) and scalar
    /// tag (`epoch_loss`) of each metric.
    pub fn write_hparams_experiment(
        &mut self,
        hparams: &BTreeMap<String, HParamValue>,
        metrics: &[(String, String)],
        time_created_secs: f64,
    ) -> Result<()> {
        let experiment = hp::Experiment {
            time_created_secs,
            hparam_infos: hparams
                .iter()
                .map(|(name, value)| hp::HParamInfo {
                    name: name.clone(),
                    r#type: value.data_type() as i32,
                    ..Default::default()
                })
                .collect(),
            metric_infos: metrics
                .iter()
                .map(|(group, tag)| hp::MetricInfo {
                    name: Some(hp::MetricName {
                        group: group.clone(),
                        tag: tag.clone(),
                    }),
                    dataset_type: match group.as_str() {
                        "train" => hp::DatasetType::DatasetTraining,
                        "validation" => hp::DatasetType::DatasetValidation,
                        _ => hp::DatasetType::DatasetUnknown,
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.write_hparams(
            HPARAMS_EXPERIMENT_TAG,
            hp::h_params_plugin_data::Data::Experiment(experiment),
        )
    }

    /// The hparams plugin's session end: how the run finished.
    pub fn write_hparams_session_end(
        &mut self,
        status: hp::Status,
        end_time_secs: f64,
    ) -> Result<()> {
        let info = hp::SessionEndInfo {
            status: status as i32,
            end_time_secs,
        };
        self.write_hparams(
            HPARAMS_SESSION_END_TAG,
            hp::h_params_plugin_data::Data::SessionEndInfo(info),
        )
    }

    /// Hands buffered records to the operating system.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| CallbackError::io(&self.path, e))
    }
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::record::decode_records;

    #[test]
    fn new_files_sort_after_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..12)
            .map(|_| {
                EventWriter::create(dir.path())
                    .unwrap()
                    .path()
                    .to_path_buf()
            })
            .collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(sorted, paths);
    }

    #[test]
    fn writer_output_parses() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.write_scalar("epoch_loss", 0.1, 3).unwrap();
        let mut hparams = BTreeMap::new();
        hparams.insert("lr".to_string(), HParamValue::Number(0.01));
        hparams.insert("opt".to_string(), HParamValue::from("adam"));
        w.write_hparams_session_start(&hparams, "", 1.0).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let records = decode_records(&bytes).unwrap();
        assert_eq!(records.len(), 3);
        let first = Event::decode(records[0]).unwrap();
        assert_eq!(
            first.what,
            Some(event::What::FileVersion(FILE_VERSION.to_string()))
        );
        let scalar = Event::decode(records[1]).unwrap();
        assert_eq!(scalar.step, 3);
        let Some(event::What::Summary(s)) = scalar.what else {
            panic!("not a summary")
        };
        assert_eq!(s.value[0].tag, "epoch_loss");
        let Some(summary_proto::value::Value::Tensor(t)) = &s.value[0].value else {
            panic!("not a tensor")
        };
        assert_eq!(t.tensor_content, 0.1f32.to_le_bytes());
        let hp_event = Event::decode(records[2]).unwrap();
        let Some(event::What::Summary(s)) = hp_event.what else {
            panic!("not a summary")
        };
        let content = &s.value[0]
            .metadata
            .as_ref()
            .unwrap()
            .plugin_data
            .as_ref()
            .unwrap()
            .content;
        let data = hp::HParamsPluginData::decode(content.as_slice()).unwrap();
        let Some(hp::h_params_plugin_data::Data::SessionStartInfo(info)) = data.data else {
            panic!("not a session start")
        };
        assert_eq!(info.hparams.len(), 2);
    }
}
