//! The glue that runs callbacks inside Burn's `SupervisedTraining`.
//!
//! [`WithCallbacks::with_callbacks`] installs a [`CallbackStrategy`] (Burn's
//! `TrainingStrategy::Custom`) and a [`CallbackMetricLogger`]; the strategy
//! runs Burn's own train step, optimizer step, metrics, renderer, checkpoint
//! records and event stream, and calls the hooks in between. See
//! `docs/architecture.md` for why this seam was chosen.
//!
//! One small type per job, in the order a newcomer meets them:
//!
//! | module | job |
//! | --- | --- |
//! | `builder` | [`Callbacks`] and [`WithCallbacks`]: what a user writes |
//! | `outcome` | [`FitOutcome`]: what the run did, for the caller |
//! | `strategy` | [`CallbackStrategy`]: resume, then the epochs in order, then the end |
//! | `train_epoch` | one epoch's training steps |
//! | `multi_device` | a step on several devices: worker threads, gradients combined |
//! | `running_states` | the devices' BatchNorm statistics, folded in device order |
//! | `accumulation` | the gradients of an unfinished accumulation window |
//! | `gradients` | what the gradient hooks read of a step's gradients |
//! | `valid_epoch` | one epoch's validation batches |
//! | `epoch_logs` | an epoch's logs, read from Burn's metric store |
//! | `dispatch` | the one function that calls a hook on every callback |
//! | `state` | what the loop keeps between hooks |
//! | `control` | [`TrainingControl`](crate::TrainingControl) over that state: what a hook can do |
//! | `backup` | the backup file: its sections, writing and restoring it |
//! | `capture` | the optimizer and scheduler records, through Burn's checkpointer |
//! | `lr` | [`CallbackLr`]: a learning rate callbacks can steer |

mod accumulation;
mod backup;
mod batch_loss;
mod builder;
mod capture;
mod control;
mod dispatch;
mod epoch_logs;
mod gradients;
mod lr;
mod metric_log;
mod metric_state;
mod multi_device;
mod outcome;
mod panic;
mod params;
mod running_states;
mod silent;
mod state;
mod strategy;
mod train_epoch;
mod valid_epoch;
mod weights;

pub use backup::{BackupProgress, sections};
pub use batch_loss::BatchLoss;
pub use builder::{Callbacks, WithCallbacks};
pub use lr::{CallbackLr, LrHandle};
pub use metric_log::{CallbackMetricLogger, keras_metric_name};
pub use metric_state::EpochMetricState;
pub use multi_device::GradientReduction;
pub use outcome::{FitError, FitOutcome, Outcome};
pub use panic::panic_message;
pub use params::{list_params, param_values, param_values_of, params_of_module, snapshot_of};
pub use silent::SilentRenderer;
pub use strategy::CallbackStrategy;
pub use weights::encode_module_record;
