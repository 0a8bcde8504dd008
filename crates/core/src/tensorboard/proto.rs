//! The protocol-buffer messages of TensorBoard event files.
//!
//! Hand-declared with `prost` derive macros (no `.proto` compilation step);
//! field numbers and types follow TensorFlow's `event.proto`, `summary.proto`,
//! `tensor.proto`, `tensor_shape.proto`, `types.proto` and TensorBoard's
//! hparams plugin protos (`plugin_data.proto`, `api.proto`), plus the
//! `google.protobuf.Value` well-known type the hparams use. Only the messages
//! and fields this crate writes are declared; a reader ignores the others.

use std::collections::BTreeMap;

/// One record of an event file (`tensorflow.Event`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step the event belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event holds.
    #[prost(oneof = "event::What", tags = "3, 4, 5")]
    pub what: Option<event::What>,
    /// Who wrote the file (set on the first event).
    #[prost(message, optional, tag = "10")]
    pub source_metadata: Option<SourceMetadata>,
}

/// The `what` one-of of [`Event`].
pub mod event {
    /// The payload of an [`Event`](super::Event).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// Version of the file format; `"brain.Event:2"` in the first record.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// A serialized `GraphDef` (not written by this crate).
        #[prost(bytes, tag = "4")]
        GraphDef(Vec<u8>),
        /// Summary values (scalars, histograms, text, hparams …).
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// `tensorflow.SourceMetadata`: the program that wrote the file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceMetadata {
    /// Writer name, e.g. `"burnfit"`.
    #[prost(string, tag = "1")]
    pub writer: String,
}

/// `tensorflow.Summary`: a list of tagged values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested messages of [`Summary`].
pub mod summary {
    /// `tensorflow.Summary.Value`: one tagged value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// Legacy node name (unused).
        #[prost(string, tag = "7")]
        pub node_name: String,
        /// The tag (series name), e.g. `epoch_loss`.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Which plugin reads the value, and how.
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        /// The value itself.
        #[prost(oneof = "value::Value", tags = "2, 5, 8")]
        pub value: Option<value::Value>,
    }

    /// The `value` one-of of [`Value`].
    pub mod value {
        /// Payload of a summary value. TF2 writers use `Tensor`; the legacy
        /// `SimpleValue` and `Histo` forms are converted by TensorBoard.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// Legacy (TF1) scalar.
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// Legacy (TF1) histogram.
            #[prost(message, tag = "5")]
            Histo(super::super::HistogramProto),
            /// A tensor interpreted by the plugin named in the metadata.
            #[prost(message, tag = "8")]
            Tensor(super::super::TensorProto),
        }
    }
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin that owns the value.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<summary_metadata::PluginData>,
    /// Display name (optional).
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Longer description (optional, Markdown).
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// [`DataClass`] of the values (TensorBoard infers it from the plugin when
    /// unset, as for files written by TensorFlow).
    #[prost(enumeration = "DataClass", tag = "4")]
    pub data_class: i32,
}

/// Nested messages of [`SummaryMetadata`].
pub mod summary_metadata {
    /// `tensorflow.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// `scalars`, `histograms`, `text`, `hparams`, …
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// Plugin-specific serialized content (empty for scalars, histograms
        /// and text at version 0; an `HParamsPluginData` for hparams).
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }
}

/// `tensorflow.DataClass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataClass {
    /// Not set.
    Unknown = 0,
    /// A scalar time series.
    Scalar = 1,
    /// A tensor time series.
    Tensor = 2,
    /// A blob sequence time series.
    BlobSequence = 3,
}

/// `tensorflow.HistogramProto`: the legacy (TF1) histogram form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    /// Smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// Number of values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Sum of the values.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// Sum of the squared values.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Right edge of each bucket.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Count of each bucket.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensorflow.DataType` (the values this crate uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    DtInvalid = 0,
    /// 32-bit float.
    DtFloat = 1,
    /// 64-bit float.
    DtDouble = 2,
    /// 32-bit signed integer.
    DtInt32 = 3,
    /// Byte string.
    DtString = 7,
    /// 64-bit signed integer.
    DtInt64 = 9,
    /// Boolean.
    DtBool = 10,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first; none for a scalar.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    /// Whether the rank is unknown.
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// Size of the dimension.
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

impl TensorShapeProto {
    /// A shape with the given dimension sizes (`&[]` for a scalar).
    pub fn of(dims: &[i64]) -> Self {
        Self {
            dim: dims
                .iter()
                .map(|&size| tensor_shape_proto::Dim {
                    size,
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        }
    }
}

/// `tensorflow.TensorProto` (the fields this crate uses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Element type, a [`DataType`].
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Serialization version (0).
    #[prost(int32, tag = "3")]
    pub version_number: i32,
    /// Raw little-endian element bytes (how TensorFlow writes numbers).
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// `DT_FLOAT` values, when not in `tensor_content`.
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    /// `DT_DOUBLE` values, when not in `tensor_content`.
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// `DT_STRING` values (strings are never in `tensor_content`).
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

impl TensorProto {
    /// A `DT_FLOAT` scalar, encoded as TensorFlow does (`tensor_content`).
    pub fn scalar_f32(value: f32) -> Self {
        Self {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto::of(&[])),
            tensor_content: value.to_le_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// A `DT_DOUBLE` tensor of shape `dims` holding `values` in row-major order.
    pub fn f64_tensor(dims: &[i64], values: &[f64]) -> Self {
        Self {
            dtype: DataType::DtDouble as i32,
            tensor_shape: Some(TensorShapeProto::of(dims)),
            tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    /// A `DT_STRING` scalar.
    pub fn string_scalar(text: &str) -> Self {
        Self {
            dtype: DataType::DtString as i32,
            tensor_shape: Some(TensorShapeProto::of(&[])),
            string_val: vec![text.as_bytes().to_vec()],
            ..Default::default()
        }
    }

    /// The hparams plugin's placeholder tensor: `DT_FLOAT` of shape `[0]`.
    pub fn hparams_null() -> Self {
        Self {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto::of(&[0])),
            ..Default::default()
        }
    }
}

/// `google.protobuf.Value`: a JSON-like value (used for hparam values).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The value.
    #[prost(oneof = "value::Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<value::Kind>,
}

/// The `kind` one-of of [`Value`].
pub mod value {
    /// One kind of JSON-like value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// `null` (always 0).
        #[prost(int32, tag = "1")]
        NullValue(i32),
        /// A number.
        #[prost(double, tag = "2")]
        NumberValue(f64),
        /// A string.
        #[prost(string, tag = "3")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "4")]
        BoolValue(bool),
        /// An object.
        #[prost(message, tag = "5")]
        StructValue(super::Struct),
        /// An array.
        #[prost(message, tag = "6")]
        ListValue(super::ListValue),
    }
}

/// `google.protobuf.Struct`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Struct {
    /// The fields.
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, Value>,
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    /// The elements.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
}

/// Messages of TensorBoard's hparams plugin (`tensorboard.hparams`).
pub mod hparams {
    use std::collections::BTreeMap;

    /// `HParamsPluginData`: the `content` of an hparams summary's metadata.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        /// Plugin data version (0).
        #[prost(int32, tag = "1")]
        pub version: i32,
        /// Which of the three hparams summaries this is.
        #[prost(oneof = "h_params_plugin_data::Data", tags = "2, 3, 4")]
        pub data: Option<h_params_plugin_data::Data>,
    }

    /// The `data` one-of of [`HParamsPluginData`].
    pub mod h_params_plugin_data {
        /// The summary kind.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            /// Tag `_hparams_/experiment`.
            #[prost(message, tag = "2")]
            Experiment(super::Experiment),
            /// Tag `_hparams_/session_start_info`.
            #[prost(message, tag = "3")]
            SessionStartInfo(super::SessionStartInfo),
            /// Tag `_hparams_/session_end_info`.
            #[prost(message, tag = "4")]
            SessionEndInfo(super::SessionEndInfo),
        }
    }

    /// Hyperparameter values of one training session (run).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        /// Name → value.
        #[prost(btree_map = "string, message", tag = "1")]
        pub hparams: BTreeMap<String, super::Value>,
        /// Where the model is stored (optional).
        #[prost(string, tag = "2")]
        pub model_uri: String,
        /// A monitoring URL (optional).
        #[prost(string, tag = "3")]
        pub monitor_url: String,
        /// Sessions with the same group name are repetitions of one trial.
        #[prost(string, tag = "4")]
        pub group_name: String,
        /// Start time, seconds since the Unix epoch.
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    /// How a session ended.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        /// A [`Status`].
        #[prost(enumeration = "Status", tag = "1")]
        pub status: i32,
        /// End time, seconds since the Unix epoch.
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }

    /// Session status.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Status {
        /// Unknown.
        Unknown = 0,
        /// Finished normally.
        Success = 1,
        /// Failed.
        Failure = 2,
        /// Still running.
        Running = 3,
    }

    /// The experiment: which hyperparameters and metrics to show.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Experiment {
        /// Name (optional).
        #[prost(string, tag = "6")]
        pub name: String,
        /// Description (optional).
        #[prost(string, tag = "1")]
        pub description: String,
        /// User (optional).
        #[prost(string, tag = "2")]
        pub user: String,
        /// Creation time, seconds since the Unix epoch.
        #[prost(double, tag = "3")]
        pub time_created_secs: f64,
        /// The hyperparameters.
        #[prost(message, repeated, tag = "4")]
        pub hparam_infos: Vec<HParamInfo>,
        /// The metrics.
        #[prost(message, repeated, tag = "5")]
        pub metric_infos: Vec<MetricInfo>,
    }

    /// Description of one hyperparameter.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamInfo {
        /// Name (the key in [`SessionStartInfo::hparams`]).
        #[prost(string, tag = "1")]
        pub name: String,
        /// Display name (optional).
        #[prost(string, tag = "2")]
        pub display_name: String,
        /// Description (optional).
        #[prost(string, tag = "3")]
        pub description: String,
        /// A [`DataType`].
        #[prost(enumeration = "DataType", tag = "4")]
        pub r#type: i32,
    }

    /// Type of a hyperparameter.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Unset = 0,
        /// String.
        String = 1,
        /// Boolean.
        Bool = 2,
        /// Number.
        Float64 = 3,
    }

    /// A metric: a scalar tag in a run below the session's directory.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricName {
        /// Sub-run relative to the session run (`train`, `validation`).
        #[prost(string, tag = "1")]
        pub group: String,
        /// Scalar tag (`epoch_loss`).
        #[prost(string, tag = "2")]
        pub tag: String,
    }

    /// Description of one metric.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricInfo {
        /// Where the metric's scalars are.
        #[prost(message, optional, tag = "1")]
        pub name: Option<MetricName>,
        /// Display name (optional).
        #[prost(string, tag = "3")]
        pub display_name: String,
        /// Description (optional).
        #[prost(string, tag = "4")]
        pub description: String,
        /// A [`DatasetType`].
        #[prost(enumeration = "DatasetType", tag = "5")]
        pub dataset_type: i32,
    }

    /// Which data set a metric is computed on.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DatasetType {
        /// Unknown.
        DatasetUnknown = 0,
        /// Training data.
        DatasetTraining = 1,
        /// Validation data.
        DatasetValidation = 2,
    }
}
