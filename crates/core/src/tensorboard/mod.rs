//! TensorBoard event files.
//!
//! * [`TensorBoard`]: the callback, writing what Keras's
//!   `keras.callbacks.TensorBoard` writes (same directories, tags and steps),
//!   plus hyperparameters and the run configuration.
//! * [`GradientNormMonitor`]: gradient norms, overall and by parameter.
//! * [`EventWriter`]: one event file; usable on its own to log anything
//!   TensorBoard shows as scalars, histograms, text or hparams.
//!
//! Split by job: `callback` (what to log when), `event_file` (the file
//! writer), `summary` (how each value is encoded), `record` (TFRecord
//! framing and CRCs), [`proto`] (the protocol-buffer messages).
//!
//! ```
//! use burnfit_core::tensorboard::TensorBoard;
//! let tb = TensorBoard::new("runs/exp1").histogram_freq(1);
//! # let _ = tb;
//! ```

mod callback;
mod event_file;
mod gradient_norms;
pub mod proto;
mod record;
mod summary;

pub use callback::{ParamHistogramSource, TensorBoard, TensorBoardConfig, UpdateFreq};
pub use event_file::{EventWriter, FILE_VERSION, file_lengths, now_secs, truncate_to};
pub use gradient_norms::{GradientNormMonitor, GradientNormMonitorConfig};
pub use summary::{
    DEFAULT_BUCKET_COUNT, HPARAMS_EXPERIMENT_TAG, HPARAMS_SESSION_END_TAG,
    HPARAMS_SESSION_START_TAG, HParamValue, histogram_buckets,
};
