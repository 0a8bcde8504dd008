//! The engine inside Burn's real loop (`engine`) and what it adds beyond
//! Keras (`beyond_keras`), in one test binary: each file was a binary of
//! its own that linked Burn and monomorphised the training loop again.
//! The multi-device rendezvous tests stay in a binary of their own
//! (`devices_and_running_stats.rs`): they wait on each other's threads.

#[path = "../common/mod.rs"]
mod common;

mod beyond_keras;
mod engine;
mod epoch_loss;
mod output_types;
mod resumable_metrics;
