//! Keras-style training callbacks, independent of any training framework.
//!
//! This crate is burnfit's core: the [`Callback`] trait and the [`Context`]
//! a hook receives (over the [`TrainingControl`] a training loop
//! implements), [`Logs`], the [`CallbackList`], the [`monitor`] shared by the
//! monitoring callbacks, the [`builtins`] (EarlyStopping, ReduceLROnPlateau,
//! ModelCheckpoint, CSVLogger, …), TensorBoard event files
//! ([`tensorboard`], feature `tensorboard`), crash-safe writes ([`atomic`],
//! [`writer`]) and the [`checkpoint_file`] format, and a harness that drives
//! callbacks without a model ([`testing`], feature `testing`).
//!
//! It has no dependency on Burn: `burnfit-callbacks` runs these callbacks
//! inside Burn's training loop and re-exports everything here, so a Burn
//! user depends on that crate only.

#![warn(missing_docs)]

pub mod atomic;
pub mod builtins;
mod callback;
pub mod checkpoint_file;
mod context;
pub mod error;
pub mod frequency;
mod gradients;
mod list;
mod logs;
pub mod monitor;
pub mod random;
#[cfg(feature = "tensorboard")]
pub mod tensorboard;
#[cfg(feature = "testing")]
pub mod testing;
pub mod writer;

pub use callback::Callback;
pub use context::{
    BlendFn, Context, Message, ModelSnapshot, ParamInfo, ParamRead, ParamsFn, Progress,
    SaveContent, TrainEnd, TrainingControl, TrainingSnapshot,
};
pub use error::{CallbackError, Result};
pub use gradients::{FixedGradients, GradientView};
pub use list::{CallbackList, CallbackModels};
pub use logs::Logs;
