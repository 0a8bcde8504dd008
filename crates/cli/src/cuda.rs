//! Burn's CUDA backend (burn-cuda, CubeCL), for NVIDIA GPUs.
//!
//! Only in a binary built with the `cuda` feature (`cargo build -p
//! burnfit-cli --features cuda`). It is off by default because its build
//! needs what a build here cannot do: cubecl-cuda compiles kernels through
//! LLVM (cubecl-llvm with `nvptx`, no feature turns it off), and
//! tracel-llvm-bundler's build script downloads that LLVM from github.com.
//! Nothing else needs the CUDA toolkit: cudarc loads the driver (libcuda)
//! at run time, so the binary starts, and says so, where there is none.
//!
//! Invariants:
//! * **Asking never panics.** The driver is looked for before anything
//!   calls into it (cudarc panics where it cannot load libcuda); no driver
//!   or no device is zero devices.
//! * **A binary without the feature says how to get it**, in one `error:`
//!   line, and the way to the same GPU without it (wgpu over Vulkan).

use crate::error::{CliError, CliResult};
use burn::tensor::Device;

/// Whether this binary has the CUDA backend.
pub const BUILT: bool = cfg!(feature = "cuda");

/// The CUDA devices the NVIDIA driver reports: none where the driver
/// cannot be loaded, and none in a binary without the feature.
pub fn device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: only tries to open the driver's shared library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return 0;
        }
        cudarc::driver::CudaContext::device_count().map_or(0, |count| count.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    0
}

/// The first CUDA device and how many the driver reports; a usage error
/// where this binary has no CUDA backend or the driver reports none.
pub fn first() -> CliResult<(Device, usize)> {
    #[cfg(feature = "cuda")]
    {
        let count = device_count();
        if count == 0 {
            return Err(CliError::usage(
                "backend cuda: no CUDA device (the NVIDIA driver, libcuda, could not be loaded \
                 or reports no GPU). Install the NVIDIA driver, or train with --backend wgpu or \
                 --backend flex",
            ));
        }
        Ok((Device::cuda(0), count))
    }
    #[cfg(not(feature = "cuda"))]
    Err(not_built())
}

/// The Burn device of `cuda:INDEX`, or why there is none.
pub fn indexed(index: usize) -> Result<Device, String> {
    let count = device_count();
    #[cfg(feature = "cuda")]
    if index < count {
        return Ok(Device::cuda(index));
    }
    Err(format!(
        "cuda:{index} does not exist (the NVIDIA driver reports {count} device{})",
        if count == 1 { "" } else { "s" }
    ))
}

/// The error of a binary built without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
fn not_built() -> CliError {
    CliError::usage(
        "backend cuda: this binary is built without Burn's CUDA backend; build one with `cargo \
         build -p burnfit-cli --features cuda` (its build downloads LLVM: README, \"Speed\"), or \
         train on the same NVIDIA GPU through Vulkan with --backend wgpu",
    )
}
