//! Built-in callbacks, one file each.

mod averaging;
mod backup_and_restore;
mod config;
mod csv_logger;
mod device_stats_monitor;
mod early_stopping;
mod exponential_moving_average;
mod history;
mod lambda;
mod learning_rate_finder;
mod learning_rate_scheduler;
mod median_stopping;
#[cfg(feature = "trackers")]
mod mlflow_logger;
mod model_checkpoint;
mod model_summary;
mod on_exception_checkpoint;
mod progress_logger;
mod python;
mod reduce_lr_on_plateau;
#[cfg(feature = "trackers")]
mod remote_monitor;
mod spike_detection;
mod stochastic_weight_averaging;
mod swap_ema_weights;
mod terminate_on_nan;
mod throughput_monitor;
mod timer;
#[cfg(feature = "trackers")]
mod tracker;

pub use backup_and_restore::*;
pub use config::*;
pub use csv_logger::*;
pub use device_stats_monitor::*;
pub use early_stopping::*;
pub use exponential_moving_average::*;
pub use history::*;
pub use lambda::*;
pub use learning_rate_finder::*;
pub use learning_rate_scheduler::*;
pub use median_stopping::*;
#[cfg(feature = "trackers")]
pub use mlflow_logger::*;
pub use model_checkpoint::*;
pub use model_summary::*;
pub use on_exception_checkpoint::*;
pub use progress_logger::*;
pub use reduce_lr_on_plateau::*;
#[cfg(feature = "trackers")]
pub use remote_monitor::*;
pub use spike_detection::*;
pub use stochastic_weight_averaging::*;
pub use swap_ema_weights::*;
pub use terminate_on_nan::*;
pub use throughput_monitor::*;
pub use timer::*;
