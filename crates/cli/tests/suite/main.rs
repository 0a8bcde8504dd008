//! The `burnfit` binary's end-to-end tests, one test binary with a module
//! per subject: each integration-test file is a binary that links the
//! CLI's dependencies (Burn above all), so one binary links them once.

mod common;

mod average;
mod batch_find;
mod beyond_keras;
mod cli;
mod config_errors;
mod durability;
mod epoch_metrics;
mod gpu;
mod image_folder;
mod knobs;
mod model_data_checks;
mod monitors;
mod probe;
mod remote;
mod resume;
mod resume_batch_norm;
mod small_fixes;
mod sweep;
mod trackers;
