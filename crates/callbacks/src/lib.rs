//! Keras-style training callbacks for [Burn](https://burn.dev).
//!
//! Add callbacks to an existing `SupervisedTraining` in a few lines with
//! [`WithCallbacks::with_callbacks`]; write your own by implementing
//! [`Callback`]. The built-ins (EarlyStopping, ReduceLROnPlateau,
//! ModelCheckpoint, CSVLogger, TensorBoard, …) make the same decisions as
//! Keras 3 on the same metric sequence; `docs/keras-compatibility.md` lists
//! every parameter and every deliberate difference.

pub mod atomic;
pub mod builtins;
mod callback;
pub mod checkpoint_file;
mod context;
pub mod engine;
pub mod error;
mod list;
mod logs;
pub mod monitor;
pub mod tensorboard;
pub mod testing;

pub use callback::Callback;
pub use context::{Context, Message, ModelSnapshot, Progress, SaveContent, TrainingControl};
pub use engine::{BatchLoss, CallbackLr, Callbacks, FitOutcome, WithCallbacks};
pub use error::{CallbackError, Result};
pub use list::CallbackList;
pub use logs::Logs;
