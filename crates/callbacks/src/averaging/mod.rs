//! Weight averaging's arithmetic on Burn models. The callbacks that average
//! live in `burnfit_core::builtins` with every other callback
//! ([`ExponentialMovingAverage`](burnfit_core::builtins::ExponentialMovingAverage),
//! [`SwapEmaWeights`](burnfit_core::builtins::SwapEmaWeights),
//! [`StochasticWeightAveraging`](burnfit_core::builtins::StochasticWeightAveraging));
//! they mix models through [`ModelSnapshot::blend`](burnfit_core::ModelSnapshot::blend),
//! which works on every snapshot the engine takes because
//! [`snapshot_of`](crate::engine::snapshot_of) attaches [`blend_snapshots`].

mod blend;

pub use blend::{blend, blend_snapshots};
