//! TensorBoard event files.
//!
//! * [`TensorBoard`]: the callback, writing what Keras's
//!   `keras.callbacks.TensorBoard` writes (same directories, tags and steps),
//!   plus hyperparameters and the run configuration.
//! * [`EventWriter`]: one event file; usable on its own to log anything
//!   TensorBoard shows as scalars, histograms, text or hparams.
//! * [`proto`]: the protocol-buffer messages of event files.
//!
//! ```
//! use burnfit_callbacks::tensorboard::TensorBoard;
//! let tb = TensorBoard::new("runs/exp1").histogram_freq(1);
//! # let _ = tb;
//! ```

mod callback;
pub mod proto;
mod writer;

pub use callback::{ParamHistogramSource, TensorBoard, TensorBoardConfig, UpdateFreq};
pub use writer::{
    DEFAULT_BUCKET_COUNT, EventWriter, FILE_VERSION, HPARAMS_EXPERIMENT_TAG,
    HPARAMS_SESSION_END_TAG, HPARAMS_SESSION_START_TAG, HParamValue, RecordError, decode_records,
    encode_record, histogram_buckets, masked_crc32c, now_secs,
};
