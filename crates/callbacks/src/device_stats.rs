//! The Burn side of [`DeviceStatsMonitor`](crate::builtins::DeviceStatsMonitor):
//! a training device's memory, as its backend reports it.

use std::sync::Arc;

use burn::tensor::Device;
use burnfit_core::builtins::{DeviceMemory, DeviceMemoryProbe};

/// Reads `device`'s allocator (Burn's `Device::memory_pool_usage`): GPU
/// backends answer; CPU backends do not, and the monitor then leaves the
/// device keys out.
///
/// ```ignore
/// let monitor = DeviceStatsMonitor::new(DeviceStatsMonitorConfig::default())?
///     .with_device_memory(burnfit_callbacks::device_memory(device.clone()));
/// ```
pub fn device_memory(device: Device) -> DeviceMemoryProbe {
    Arc::new(move || {
        device.memory_pool_usage().map(|usage| DeviceMemory {
            bytes_in_use: usage.bytes_in_use,
            bytes_reserved: usage.bytes_reserved,
        })
    })
}
