//! Example models and datasets for burnfit.
//!
//! - [`data`]: an IDX reader (MNIST / Fashion-MNIST, plain or gzip), a
//!   Fashion-MNIST loader, a CSV table reader, deterministic splits, and Burn
//!   datasets and batchers for image classification and table regression.
//! - [`conv`]: the networks' 2-D convolution: on flex, our im2col/col2im + gemm
//!   kernels for the forward pass and both gradients; elsewhere Burn's.
//! - [`conv_pool`]: a convolution, its ReLU and a 2 × 2 max pooling as one
//!   operation on flex (Winograd's output tiles pooled as they are formed).
//! - [`linear`]: the networks' dense layers: on flex, our own gemm blocks on
//!   every core for the forward pass and every gradient; elsewhere Burn's.
//! - [`adam`]: Burn's Adam with each parameter's update fused into one
//!   multi-threaded pass on flex, bit-identical to Burn's.
//! - [`nets`]: an MLP, a CNN and a small ResNet for 28x28 images, an MLP
//!   regressor for tables, and [`nets::ModelConfig`] to build any of them from
//!   a `kind`-tagged config.
//! - `threads` (with `flex`): the training thread as one of rayon's
//!   workers, so that it runs the kernels' passes instead of waiting on
//!   them.

#![warn(missing_docs)]

pub mod adam;
#[cfg(feature = "flex")]
mod buffers;
pub mod conv;
pub mod conv_pool;
pub mod data;
#[cfg(feature = "flex")]
mod flex_values;
pub mod linear;
pub mod metrics;
pub mod nets;
pub mod norm;
pub mod pool;
#[cfg(feature = "flex")]
mod relu;
#[cfg(all(test, feature = "flex"))]
mod test_values;
#[cfg(feature = "flex")]
pub mod threads;
#[cfg(feature = "flex")]
mod wide;
#[cfg(feature = "flex")]
mod window_max;

pub use nets::{Classifier, ModelConfig, ModelConfigError, Task};

/// Burn's CPU backends draw random numbers from one process-wide generator;
/// unit tests that seed it, or draw from it, hold this lock so that tests
/// running in parallel do not interleave their draws.
#[cfg(test)]
pub(crate) static TEST_RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
