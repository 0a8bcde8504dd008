//! Summaries: the values event files carry, encoded as `tf.summary` v2
//! encodes them (scalars, histograms with TensorFlow's buckets, text, and
//! the hparams plugin's records).

use prost::Message;
use serde::{Deserialize, Serialize};

use super::proto::{
    self, SummaryMetadata, TensorProto, hparams as hp, summary, summary_metadata::PluginData,
};

/// Number of buckets of a histogram, as `tf.summary.histogram`'s default.
pub const DEFAULT_BUCKET_COUNT: usize = 30;

/// Tag of the hparams experiment summary.
pub const HPARAMS_EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// Tag of the hparams session-start summary.
pub const HPARAMS_SESSION_START_TAG: &str = "_hparams_/session_start_info";
/// Tag of the hparams session-end summary.
pub const HPARAMS_SESSION_END_TAG: &str = "_hparams_/session_end_info";

/// A hyperparameter value shown by TensorBoard's HParams dashboard.
///
/// In a config file it is written as a plain number, string or boolean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "expected a number, a string, true or false")]
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
    pub(super) fn to_proto(&self) -> proto::Value {
        let kind = match self {
            HParamValue::Bool(b) => proto::value::Kind::BoolValue(*b),
            HParamValue::Number(x) => proto::value::Kind::NumberValue(*x),
            HParamValue::Text(s) => proto::value::Kind::StringValue(s.clone()),
        };
        proto::Value { kind: Some(kind) }
    }

    pub(super) fn data_type(&self) -> hp::DataType {
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
/// use burnfit_core::tensorboard::histogram_buckets;
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

/// A summary value of `plugin` holding `tensor` (with the plugin's
/// `content` in its metadata), as `tf.summary` v2 writes every value.
pub(super) fn tensor_value(
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

/// A scalar: a 32-bit float, as TensorFlow stores it.
pub(super) fn scalar(tag: &str, value: f64) -> summary::Value {
    tensor_value(
        tag,
        "scalars",
        Vec::new(),
        TensorProto::scalar_f32(value as f32),
    )
}

/// A histogram of `values` in `bucket_count` buckets (see [`histogram_buckets`]).
pub(super) fn histogram(tag: &str, values: &[f64], bucket_count: usize) -> summary::Value {
    let buckets = histogram_buckets(values, bucket_count);
    let flat: Vec<f64> = buckets.iter().flatten().copied().collect();
    let tensor = TensorProto::f64_tensor(&[buckets.len() as i64, 3], &flat);
    tensor_value(tag, "histograms", Vec::new(), tensor)
}

/// A text summary (Markdown).
pub(super) fn text(tag: &str, text: &str) -> summary::Value {
    tensor_value(tag, "text", Vec::new(), TensorProto::string_scalar(text))
}

/// An hparams plugin record.
pub(super) fn hparams(tag: &str, data: hp::h_params_plugin_data::Data) -> summary::Value {
    let content = hp::HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    tensor_value(tag, "hparams", content, TensorProto::hparams_null())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
