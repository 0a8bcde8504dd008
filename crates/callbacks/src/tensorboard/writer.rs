//! [`EventWriter`]: writes TensorBoard event files (TFRecord framing of
//! `Event` protos), as `tf.summary` v2 writers do.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use serde::{Deserialize, Serialize};

use super::proto::{
    self, Event, Summary, SummaryMetadata, TensorProto, event, hparams as hp, summary,
    summary_metadata::PluginData,
};
use crate::error::{CallbackError, Result};

/// The `file_version` TensorFlow writes in the first record of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Number of buckets of a histogram, as `tf.summary.histogram`'s default.
pub const DEFAULT_BUCKET_COUNT: usize = 30;

/// Tag of the hparams experiment summary.
pub const HPARAMS_EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// Tag of the hparams session-start summary.
pub const HPARAMS_SESSION_START_TAG: &str = "_hparams_/session_start_info";
/// Tag of the hparams session-end summary.
pub const HPARAMS_SESSION_END_TAG: &str = "_hparams_/session_end_info";

/// CRC32C of `data`, masked as TFRecord files store it:
/// `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
///
/// ```
/// use burnfit_callbacks::tensorboard::masked_crc32c;
/// assert_eq!(masked_crc32c(b""), 0xa282_ead8);
/// assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
/// ```
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// Frames `data` as one TFRecord: length (`u64` little-endian), masked CRC32C
/// of those 8 bytes, the data, masked CRC32C of the data.
pub fn encode_record(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Why [`decode_records`] rejected a file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The file ends inside a record.
    #[error("record #{index} at offset {offset}: truncated")]
    Truncated {
        /// Record number (0-based).
        index: usize,
        /// Byte offset of the record.
        offset: usize,
    },
    /// A stored checksum does not match.
    #[error("record #{index} at offset {offset}: bad {what} CRC")]
    BadCrc {
        /// Record number (0-based).
        index: usize,
        /// Byte offset of the record.
        offset: usize,
        /// `length` or `data`.
        what: &'static str,
    },
}

/// Splits TFRecord bytes into record payloads, checking both checksums of
/// every record (the inverse of [`encode_record`]).
///
/// ```
/// use burnfit_callbacks::tensorboard::{decode_records, encode_record};
/// let mut bytes = encode_record(b"first");
/// bytes.extend(encode_record(b"second"));
/// assert_eq!(decode_records(&bytes).unwrap(), vec![&b"first"[..], &b"second"[..]]);
/// ```
pub fn decode_records(bytes: &[u8]) -> std::result::Result<Vec<&[u8]>, RecordError> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let index = records.len();
        let truncated = RecordError::Truncated { index, offset: pos };
        let header = bytes.get(pos..pos + 12).ok_or(truncated.clone())?;
        let (len, len_crc) = header.split_at(8);
        if masked_crc32c(len) != u32::from_le_bytes(len_crc.try_into().expect("4 bytes")) {
            return Err(RecordError::BadCrc {
                index,
                offset: pos,
                what: "length",
            });
        }
        let len = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes")))
            .map_err(|_| truncated.clone())?;
        let start = pos + 12;
        let end = start.checked_add(len).ok_or(truncated.clone())?;
        let data = bytes.get(start..end).ok_or(truncated.clone())?;
        let crc = bytes.get(end..end + 4).ok_or(truncated)?;
        if masked_crc32c(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(RecordError::BadCrc {
                index,
                offset: pos,
                what: "data",
            });
        }
        records.push(data);
        pos = end + 4;
    }
    Ok(records)
}

/// A hyperparameter value shown by TensorBoard's HParams dashboard.
///
/// In a config file it is written as a plain number, string or boolean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
}

impl From<f64> for HParamValue {
    fn from(value: f64) -> Self {
        HParamValue::Number(value)
    }
}

impl From<f32> for HParamValue {
    fn from(value: f32) -> Self {
        HParamValue::Number(value as f64)
    }
}

impl From<i64> for HParamValue {
    fn from(value: i64) -> Self {
        HParamValue::Number(value as f64)
    }
}

impl From<usize> for HParamValue {
    fn from(value: usize) -> Self {
        HParamValue::Number(value as f64)
    }
}

impl From<bool> for HParamValue {
    fn from(value: bool) -> Self {
        HParamValue::Bool(value)
    }
}

impl From<String> for HParamValue {
    fn from(value: String) -> Self {
        HParamValue::Text(value)
    }
}

impl From<&str> for HParamValue {
    fn from(value: &str) -> Self {
        HParamValue::Text(value.to_string())
    }
}

impl HParamValue {
    fn to_proto(&self) -> proto::Value {
        let kind = match self {
            HParamValue::Bool(b) => proto::value::Kind::BoolValue(*b),
            HParamValue::Number(x) => proto::value::Kind::NumberValue(*x),
            HParamValue::Text(s) => proto::value::Kind::StringValue(s.clone()),
        };
        proto::Value { kind: Some(kind) }
    }

    fn data_type(&self) -> hp::DataType {
        match self {
            HParamValue::Bool(_) => hp::DataType::Bool,
            HParamValue::Number(_) => hp::DataType::Float64,
            HParamValue::Text(_) => hp::DataType::String,
        }
    }
}

/// Histogram buckets of `values` exactly as `tf.summary.histogram` (v2)
/// computes them: `bucket_count` equal-width buckets from the smallest to the
/// largest value, each `[left_edge, right_edge, count]`; the last bucket
/// includes the maximum. All values equal: every bucket is `[v, v, 0]` but
/// the last, which holds all of them. No values: `bucket_count` rows of zeros.
///
/// Non-finite values (NaN, ±inf) are left out (TensorFlow would produce
/// meaningless edges from them).
///
/// ```
/// use burnfit_callbacks::tensorboard::histogram_buckets;
/// let b = histogram_buckets(&[0.0, 1.0, 1.0, 4.0], 4);
/// assert_eq!(b, vec![[0.0, 1.0, 1.0], [1.0, 2.0, 2.0], [2.0, 3.0, 0.0], [3.0, 4.0, 1.0]]);
/// ```
pub fn histogram_buckets(values: &[f64], bucket_count: usize) -> Vec<[f64; 3]> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if bucket_count == 0 {
        return Vec::new();
    }
    if finite.is_empty() {
        return vec![[0.0; 3]; bucket_count];
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = max - min;
    if range == 0.0 {
        let mut buckets = vec![[max, max, 0.0]; bucket_count];
        buckets[bucket_count - 1][2] = finite.len() as f64;
        return buckets;
    }
    let width = range / bucket_count as f64;
    let mut counts = vec![0.0f64; bucket_count];
    for v in &finite {
        let index = ((v - min) / width).floor();
        let index = if index >= (bucket_count - 1) as f64 {
            bucket_count - 1
        } else {
            index.max(0.0) as usize
        };
        counts[index] += 1.0;
    }
    // tf.linspace(min, max, k + 1): min + i * (range / k), last edge forced to max.
    let edge = |i: usize| {
        if i == bucket_count {
            max
        } else {
            min + i as f64 * width
        }
    };
    (0..bucket_count)
        .map(|i| [edge(i), edge(i + 1), counts[i]])
        .collect()
}

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
/// use burnfit_callbacks::tensorboard::EventWriter;
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
    pub fn write_value(&mut self, value: summary::Value, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now_secs(),
            step,
            what: Some(event::What::Summary(Summary { value: vec![value] })),
            source_metadata: None,
        })
    }

    fn tensor_value(
        tag: &str,
        plugin: &str,
        content: Vec<u8>,
        tensor: TensorProto,
    ) -> summary::Value {
        summary::Value {
            node_name: String::new(),
            tag: tag.to_string(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: plugin.to_string(),
                    content,
                }),
                ..Default::default()
            }),
            value: Some(summary::value::Value::Tensor(tensor)),
        }
    }

    /// A scalar (`tf.summary.scalar`): stored as a 32-bit float, as
    /// TensorFlow does (`0.1` reads back as `0.10000000149011612`).
    pub fn write_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        let value = Self::tensor_value(
            tag,
            "scalars",
            Vec::new(),
            TensorProto::scalar_f32(value as f32),
        );
        self.write_value(value, step)
    }

    /// A histogram of `values` (`tf.summary.histogram`) with
    /// [`DEFAULT_BUCKET_COUNT`] buckets; see [`histogram_buckets`].
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
        let buckets = histogram_buckets(&values, bucket_count);
        let flat: Vec<f64> = buckets.iter().flatten().copied().collect();
        let tensor = TensorProto::f64_tensor(&[buckets.len() as i64, 3], &flat);
        self.write_value(
            Self::tensor_value(tag, "histograms", Vec::new(), tensor),
            step,
        )
    }

    /// A text summary (`tf.summary.text`); TensorBoard renders it as Markdown.
    pub fn write_text(&mut self, tag: &str, text: &str, step: i64) -> Result<()> {
        let value = Self::tensor_value(tag, "text", Vec::new(), TensorProto::string_scalar(text));
        self.write_value(value, step)
    }

    fn write_hparams(&mut self, tag: &str, data: hp::h_params_plugin_data::Data) -> Result<()> {
        let content = hp::HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        let value = Self::tensor_value(tag, "hparams", content, TensorProto::hparams_null());
        self.write_value(value, 0)
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

    /// The first record of an event file written by TensorFlow 2.21
    /// (`tb_examples/tf_summary_logdir`): the `file_version` event.
    const TF_FIRST_RECORD: [u8; 78] = [
        0x3e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9, 0xd2, 0x40, 0xe7, 0x09, 0x00, 0x00,
        0x80, 0x85, 0x72, 0xc1, 0xda, 0x41, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e, 0x2e, 0x45,
        0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32, 0x52, 0x24, 0x0a, 0x22, 0x74, 0x65, 0x6e, 0x73, 0x6f,
        0x72, 0x66, 0x6c, 0x6f, 0x77, 0x2e, 0x63, 0x6f, 0x72, 0x65, 0x2e, 0x75, 0x74, 0x69, 0x6c,
        0x2e, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x73, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x72, 0x08,
        0x64, 0xd5, 0xba,
    ];

    #[test]
    fn masked_crc_known_values() {
        // Values computed with tensorboard's masked_crc32c.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224b_7fa3);
    }

    #[test]
    fn decodes_a_tensorflow_record() {
        let records = decode_records(&TF_FIRST_RECORD).unwrap();
        assert_eq!(records.len(), 1);
        let event = Event::decode(records[0]).unwrap();
        assert_eq!(
            event.what,
            Some(event::What::FileVersion(FILE_VERSION.to_string()))
        );
        assert_eq!(
            event.source_metadata.unwrap().writer,
            "tensorflow.core.util.events_writer"
        );
        // Re-encoding gives TensorFlow's bytes back.
        assert_eq!(encode_record(&event_bytes(records[0])), TF_FIRST_RECORD);
    }

    fn event_bytes(payload: &[u8]) -> Vec<u8> {
        Event::decode(payload).unwrap().encode_to_vec()
    }

    #[test]
    fn record_framing_round_trip_and_corruption() {
        let payloads: [&[u8]; 3] = [b"", b"x", &[7u8; 1000]];
        let mut bytes = Vec::new();
        for p in payloads {
            bytes.extend(encode_record(p));
        }
        assert_eq!(decode_records(&bytes).unwrap(), payloads.to_vec());

        let mut bad = bytes.clone();
        bad[16 + 17 + 12 + 5] ^= 0x40; // inside the third payload
        assert!(matches!(
            decode_records(&bad),
            Err(RecordError::BadCrc {
                index: 2,
                what: "data",
                ..
            })
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decode_records(&bad),
            Err(RecordError::BadCrc {
                index: 0,
                what: "length",
                ..
            })
        ));
        assert!(matches!(
            decode_records(&bytes[..bytes.len() - 1]),
            Err(RecordError::Truncated { index: 2, .. })
        ));
    }

    #[test]
    fn histogram_matches_tf_rules() {
        assert_eq!(histogram_buckets(&[], 3), vec![[0.0; 3]; 3]);
        assert_eq!(
            histogram_buckets(&[2.0, 2.0], 3),
            vec![[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [2.0, 2.0, 2.0]]
        );
        let b = histogram_buckets(&[-1.0, 0.0, 0.5, 1.0, f64::NAN], 2);
        assert_eq!(b, vec![[-1.0, 0.0, 1.0], [0.0, 1.0, 3.0]]);
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 3.0)
            .collect();
        let b = histogram_buckets(&values, DEFAULT_BUCKET_COUNT);
        assert_eq!(b.len(), DEFAULT_BUCKET_COUNT);
        assert_eq!(b.iter().map(|r| r[2]).sum::<f64>(), 1000.0);
        assert_eq!(b[0][0], 0.0);
        assert_eq!(b[29][1], 999.0 / 3.0);
    }

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
        let Some(summary::value::Value::Tensor(t)) = &s.value[0].value else {
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
