//! [`DeviceStatsMonitor`]: what training costs the machine (Lightning's
//! `DeviceStatsMonitor`): the process's resident memory and CPU use, and
//! the accelerator's memory where the backend reports it.
//!
//! Each epoch's values go into its logs, so the CSV log and TensorBoard
//! write them:
//! * `rss_mib`: the process's resident set at the epoch's end (MiB);
//! * `cpu_percent`: the process's CPU time over the epoch's wall time, all
//!   threads together (200 is two cores busy, as `ps` and psutil count);
//! * `device_memory_in_use_mib` and `device_memory_reserved_mib`: the
//!   training device's allocator (bytes its tensors use, bytes it holds),
//!   when a probe is attached ([`DeviceStatsMonitor::with_device_memory`];
//!   the `burnfit` CLI attaches Burn's `Device::memory_pool_usage`, which
//!   GPU backends answer and CPU backends do not).
//!
//! Every `log_every_n_steps` training steps the same values, over the steps
//! since the last report, go into the batch logs. Put it before CSVLogger
//! and TensorBoard in the callback list. Resident memory and CPU time are
//! read from the operating system (Linux's `/proc/self/status` and
//! `getrusage`); where it has neither, those keys are left out.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::Result;
use crate::logs::Logs;

const NAME: &str = "DeviceStatsMonitor";
const MIB: f64 = 1024.0 * 1024.0;

/// The parameters of [`DeviceStatsMonitor`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStatsMonitorConfig {
    /// Put the values in the batch logs every this many steps (0: the epoch
    /// values only). Default 50, as Lightning's loggers.
    #[serde(default = "default_every")]
    pub log_every_n_steps: u64,
}

fn default_every() -> u64 {
    50
}

impl Default for DeviceStatsMonitorConfig {
    fn default() -> Self {
        Self {
            log_every_n_steps: default_every(),
        }
    }
}

/// A training device's allocator, as its backend reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes the live allocations use.
    pub bytes_in_use: u64,
    /// Bytes reserved on the device (at least `bytes_in_use`).
    pub bytes_reserved: u64,
}

/// Asks the training device for its memory; `None` when it does not say.
pub type DeviceMemoryProbe = Arc<dyn Fn() -> Option<DeviceMemory> + Send + Sync>;

/// Logs memory and CPU use per epoch and every few steps.
pub struct DeviceStatsMonitor {
    config: DeviceStatsMonitorConfig,
    device_memory: Option<DeviceMemoryProbe>,
    /// Wall clock and process CPU seconds at the last report (or the
    /// epoch's start), for the CPU use over the interval.
    epoch_start: Option<(Instant, Option<f64>)>,
    since_report: Option<(Instant, Option<f64>)>,
}

impl fmt::Debug for DeviceStatsMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("config", &self.config)
            .field("device_memory", &self.device_memory.is_some())
            .finish()
    }
}

impl DeviceStatsMonitor {
    /// A monitor with `config` (every value is valid).
    pub fn new(config: DeviceStatsMonitorConfig) -> Result<Self> {
        Ok(Self {
            config,
            device_memory: None,
            epoch_start: None,
            since_report: None,
        })
    }

    /// Reads the training device's memory with `probe` at each report.
    pub fn with_device_memory(mut self, probe: DeviceMemoryProbe) -> Self {
        self.device_memory = Some(probe);
        self
    }

    /// The values now, with the CPU use since `since`.
    fn values(&self, since: Option<(Instant, Option<f64>)>) -> Vec<(&'static str, f64)> {
        let mut values = Vec::new();
        if let Some(bytes) = process::resident_bytes() {
            values.push(("rss_mib", bytes as f64 / MIB));
        }
        if let Some((start, Some(cpu_start))) = since
            && let Some(cpu_now) = process::cpu_seconds()
        {
            let wall = start.elapsed().as_secs_f64();
            if wall > 0.0 {
                values.push(("cpu_percent", 100.0 * (cpu_now - cpu_start) / wall));
            }
        }
        if let Some(memory) = self.device_memory.as_ref().and_then(|probe| probe()) {
            values.push(("device_memory_in_use_mib", memory.bytes_in_use as f64 / MIB));
            values.push((
                "device_memory_reserved_mib",
                memory.bytes_reserved as f64 / MIB,
            ));
        }
        values
    }
}

fn now() -> (Instant, Option<f64>) {
    (Instant::now(), process::cpu_seconds())
}

impl Callback for DeviceStatsMonitor {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.epoch_start = Some(now());
        self.since_report = self.epoch_start;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let every = self.config.log_every_n_steps;
        if ctx.progress().at_step_multiple_of(every) {
            for (key, value) in self.values(self.since_report) {
                logs.insert(key, value);
            }
            self.since_report = Some(now());
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        for (key, value) in self.values(self.epoch_start) {
            logs.insert(key, value);
        }
        Ok(())
    }
}

/// The process's own figures, from the operating system.
mod process {
    /// The resident set size in bytes (Linux: `VmRSS` of
    /// `/proc/self/status`).
    pub fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// User and system CPU seconds of every thread so far.
    #[cfg(unix)]
    pub fn cpu_seconds() -> Option<f64> {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }

    /// Not measured here.
    #[cfg(not(unix))]
    pub fn cpu_seconds() -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_and_cpu_time_grow_with_what_the_process_does() {
        let Some(cpu_before) =
            process::cpu_seconds().filter(|_| process::resident_bytes().is_some())
        else {
            // Not Linux: nothing to read.
            return;
        };
        let block = vec![1u8; 64 << 20];
        let mut spin = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 200 {
            spin =
                spin.wrapping_add(std::hint::black_box(block[spin as usize % block.len()]) as u64);
        }
        // Other tests allocate and free meanwhile: the block alone is sure.
        assert!(process::resident_bytes().unwrap() >= 64 << 20);
        assert!(process::cpu_seconds().unwrap() > cpu_before);
        drop(std::hint::black_box(block));
    }

    #[test]
    fn device_memory_comes_from_the_probe_in_mebibytes() {
        let monitor = DeviceStatsMonitor::new(DeviceStatsMonitorConfig::default())
            .unwrap()
            .with_device_memory(Arc::new(|| {
                Some(DeviceMemory {
                    bytes_in_use: 3 << 20,
                    bytes_reserved: 8 << 20,
                })
            }));
        let values = monitor.values(None);
        assert!(values.contains(&("device_memory_in_use_mib", 3.0)));
        assert!(values.contains(&("device_memory_reserved_mib", 8.0)));
        assert!(values.iter().all(|(k, _)| *k != "cpu_percent"));
        let without = DeviceStatsMonitor::new(DeviceStatsMonitorConfig::default()).unwrap();
        assert!(
            without
                .values(Some(now()))
                .iter()
                .all(|(k, _)| !k.starts_with("device_"))
        );
    }
}
