//! The glue that runs callbacks inside Burn's `SupervisedTraining`.
//!
//! [`WithCallbacks::with_callbacks`] installs a [`CallbackStrategy`] (Burn's
//! `TrainingStrategy::Custom`) and a [`CallbackMetricLogger`]; the strategy
//! runs Burn's own train step, optimizer step, metrics, renderer, checkpoint
//! records and event stream, and calls the hooks in between. See
//! `docs/architecture.md` for why this seam was chosen.

mod batch_loss;
mod capture;
mod control;
mod ext;
mod lr;
mod metric_log;
mod params;
mod silent;
mod strategy;
pub mod writer;

pub use batch_loss::BatchLoss;
pub use capture::{StateCapture, TrainingRecords};
pub use ext::{Callbacks, FitOutcome, WithCallbacks};
pub use lr::{CallbackLr, LrHandle};
pub use metric_log::{CallbackMetricLogger, keras_metric_name};
pub use params::{param_values, param_values_of};
pub use silent::SilentRenderer;
pub use strategy::CallbackStrategy;
