//! Keras-style training callbacks for [Burn](https://burn.dev).
//!
//! Add callbacks to an existing `SupervisedTraining` in a few lines with
//! [`WithCallbacks::with_callbacks`]; write your own by implementing
//! [`Callback`]. The built-ins (EarlyStopping, ReduceLROnPlateau,
//! ModelCheckpoint, CSVLogger, TensorBoard, …) make the same decisions as
//! Keras 3 on the same metric sequence; `docs/keras-compatibility.md` lists
//! every parameter and every deliberate difference.
//!
//! This crate is the Burn glue (the [`engine`] that runs callbacks inside
//! Burn's loop). The callbacks themselves live in the Burn-free
//! `burnfit-core`, re-exported here, so `burnfit_callbacks::builtins::…`,
//! `burnfit_callbacks::Callback` and the rest are all you need to import.
//!
//! Diagnostics (warnings, Keras's `verbose` messages) go through the `log`
//! crate: the application chooses where they appear.

#![warn(missing_docs)]

pub mod averaging;
mod device_stats;
pub mod engine;
pub mod predict;

#[cfg(feature = "tensorboard")]
pub use burnfit_core::tensorboard;
#[cfg(feature = "testing")]
pub use burnfit_core::testing;
pub use burnfit_core::{
    Callback, CallbackError, CallbackList, Context, FixedGradients, GradientView, Logs, Message,
    ModelSnapshot, ParamInfo, ParamRead, Progress, Result, SaveContent, TrainEnd, TrainingControl,
    TrainingSnapshot, atomic, builtins, checkpoint_file, error, monitor, writer,
};
pub use device_stats::device_memory;
pub use engine::{BatchLoss, CallbackLr, Callbacks, FitOutcome, WithCallbacks};
