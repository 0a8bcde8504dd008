//! Choosing the device to train on.

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // burn-ndarray stays selectable on purpose (see README).
use burn::backend::NdArrayDevice;
use burn::backend::wgpu::wgpu;
use burn::backend::{Backend, Dispatch, FlexDevice, WgpuDevice};
use burn::tensor::Device;
use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

use crate::config::BackendChoice;
use crate::cuda;
use crate::error::{CliError, CliResult};

/// The device training runs on, and why it was chosen.
#[derive(Clone, Debug)]
pub struct ChosenBackend {
    /// The Burn device.
    pub device: Device,
    /// `wgpu`, `cuda`, `flex` or `ndarray`.
    pub name: &'static str,
    /// One sentence for the user.
    pub reason: String,
}

impl ChosenBackend {
    /// Whether it runs on a GPU runtime (wgpu, lavapipe included, or CUDA):
    /// several devices are then separate GPUs, and the run's stack has GPU
    /// settings ([`stack`]).
    pub fn is_gpu(&self) -> bool {
        matches!(self.name, "wgpu" | "cuda")
    }

    /// The device with its runtime started now, the drivers' own stderr
    /// lines silenced as for [`wgpu_adapters`]: wgpu starts on the first
    /// tensor otherwise, and they would be printed then (`error:
    /// XDG_RUNTIME_DIR is invalid…` on a headless machine). Nothing to start
    /// on the CPU.
    pub fn started(self) -> Device {
        if self.is_gpu() {
            without_driver_noise(|| burn_name(&self.device));
        }
        self.device
    }

    /// [`started`](Self::started), for work the calling thread then does
    /// itself on this one device (evaluating, predicting, averaging): the
    /// thread also joins rayon's pool, as `train`'s does on one device
    /// (`burnfit_models::threads`), rather than waiting on the pool at each
    /// parallel pass. Not for a thread that serves the device to others.
    pub fn started_here(self) -> Device {
        burnfit_models::threads::join_global_pool();
        self.started()
    }
}

/// A wgpu adapter as the system reports it.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// The adapter's name (e.g. "NVIDIA H100", "llvmpipe").
    pub name: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub kind: String,
    /// Whether it is real GPU hardware (not a CPU rasteriser such as lavapipe).
    pub is_gpu: bool,
    /// Vulkan, Metal, Dx12, Gl…
    pub api: String,
}

/// Makes Burn's implicit default device the CPU (flex), unless
/// `BURN_DEVICE` already names one. burnfit gives every tensor it makes an
/// explicit device; Burn falls back on its default device only to stage
/// data it then moves (an optimizer state read from a backup is made on it,
/// then moved to each parameter's device at the next step). In this build
/// that default is wgpu, so a resume on flex or ndarray would start a GPU
/// runtime, probing adapters and loading display libraries that print
/// `error: XDG_RUNTIME_DIR is invalid…`, only to copy the state off it.
///
/// # Safety
///
/// Sets an environment variable: call it before any other thread exists.
pub unsafe fn stage_on_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees that no other thread runs.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// Runs `probe` with the process's stderr sent to `/dev/null`: native GPU
/// drivers print diagnostics of their own while wgpu asks them for adapters
/// (for example `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.` from the display libraries they load), which are not
/// burnfit's to show and would break its one-line errors. The probe runs at
/// start-up, before any other thread writes to stderr.
fn without_driver_noise<T>(probe: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: plain descriptor calls on descriptors this function
            // owns (`saved`, `null`) and on stderr, which is put back before
            // returning.
            let saved = unsafe { libc::dup(libc::STDERR_FILENO) };
            if saved >= 0 {
                unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
                let out = probe();
                unsafe {
                    libc::dup2(saved, libc::STDERR_FILENO);
                    libc::close(saved);
                }
                return out;
            }
        }
    }
    probe()
}

/// Every adapter wgpu finds (none is an empty list, never a panic). Only
/// the native GPU APIs are asked (Vulkan, Metal, DirectX 12): the OpenGL
/// path would load display libraries a headless machine does not have.
pub fn wgpu_adapters() -> Vec<Adapter> {
    let adapters = without_driver_noise(|| {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(descriptor);
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
    });
    adapters
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let is_gpu = matches!(
                info.device_type,
                wgpu::DeviceType::DiscreteGpu
                    | wgpu::DeviceType::IntegratedGpu
                    | wgpu::DeviceType::VirtualGpu
            );
            Adapter {
                name: info.name,
                kind: format!("{:?}", info.device_type),
                is_gpu,
                api: format!("{:?}", info.backend),
            }
        })
        .collect()
}

/// Burn's own name for the backend stack behind `device`, as its
/// `Backend::name` gives it: `dispatch<fusion<cubecl<…>>>` on wgpu and CUDA, where
/// every operation goes through Burn's kernel fusion (the `fusion` feature,
/// on in this binary: crates/cli/Cargo.toml), `dispatch<flex>` on the CPU.
/// The run's summary and `burnfit bench` record it, so a figure says which
/// stack produced it.
pub fn burn_name(device: &Device) -> String {
    <Dispatch as Backend>::name(device.as_dispatch())
}

/// The GPU settings that change a wgpu or CUDA step, in words: whether the stack
/// is fused (read from [`burn_name`], not assumed) and whether CubeCL's
/// autotune is compiled in (this crate's `autotune` feature, on by
/// default), with its level (`CUBECL_AUTOTUNE_LEVEL` or a `cubecl.toml`,
/// `balanced` by default).
pub fn gpu_settings(device: &Device) -> String {
    let fusion = if burn_name(device).contains("fusion<") {
        "on"
    } else {
        "off"
    };
    let autotune = if cfg!(feature = "autotune") {
        format!("on (level {})", autotune_level())
    } else {
        "off".to_string()
    };
    format!("fusion {fusion}, autotune {autotune}")
}

/// A GPU device's stack and settings in one line
/// (`dispatch<fusion<cubecl<wgpu<wgsl>>>> (fusion on, autotune on (level
/// balanced))`). Starts its runtime, with the drivers' own stderr lines
/// silenced as for [`wgpu_adapters`]; call it only for a device that
/// exists.
pub fn stack(device: &Device) -> String {
    without_driver_noise(|| format!("{} ({})", burn_name(device), gpu_settings(device)))
}

/// [`stack`] of the default wgpu device; call it only when an adapter
/// exists.
pub fn wgpu_stack() -> String {
    stack(&WgpuDevice::default().into())
}

/// CubeCL's autotune level as its config files spell it (`balanced`).
fn autotune_level() -> String {
    match serde_json::to_value(&CubeClRuntimeConfig::get().autotune.level) {
        Ok(serde_json::Value::String(level)) => level,
        _ => "unknown".into(),
    }
}

/// Picks the device for `choice`. `convolutional` says whether the model
/// has convolutions (burn-ndarray is unusable for those). `auto` prefers
/// CUDA, in a binary that has it, where the NVIDIA driver reports a GPU;
/// then a real GPU through wgpu; then flex.
pub fn choose(choice: BackendChoice, convolutional: bool) -> CliResult<ChosenBackend> {
    match choice {
        BackendChoice::Cuda => first_cuda("asked for cuda"),
        BackendChoice::Wgpu => {
            let adapters = wgpu_adapters();
            let Some(best) = adapters.iter().find(|a| a.is_gpu).or(adapters.first()) else {
                return Err(CliError::usage(
                    "--backend wgpu: wgpu found no adapter (no Vulkan/Metal/DX12 driver). Install a \
                     GPU driver, or `apt-get install mesa-vulkan-drivers` for the lavapipe software \
                     GPU, or train on the CPU with --backend flex",
                ));
            };
            Ok(ChosenBackend {
                device: WgpuDevice::default().into(),
                name: "wgpu",
                reason: format!(
                    "asked for wgpu: adapter {} ({}, {})",
                    best.name, best.kind, best.api
                ),
            })
        }
        BackendChoice::Flex => Ok(flex("asked for flex")),
        BackendChoice::Ndarray => ndarray(convolutional),
        BackendChoice::Auto => {
            if cuda::device_count() > 0 {
                return first_cuda("auto: found NVIDIA GPUs through CUDA");
            }
            let adapters = wgpu_adapters();
            if let Some(gpu) = adapters.iter().find(|a| a.is_gpu) {
                return Ok(ChosenBackend {
                    device: WgpuDevice::default().into(),
                    name: "wgpu",
                    reason: format!("auto: found GPU {} ({}, {})", gpu.name, gpu.kind, gpu.api),
                });
            }
            let why = if adapters.is_empty() {
                "no wgpu adapter".to_string()
            } else {
                format!(
                    "only software adapters ({})",
                    adapters
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Ok(flex(&format!(
                "auto: {why}, so the fastest CPU backend for this model: flex (measured faster than \
                 ndarray for the MLP and the CNN, see docs/benchmarks.md)"
            )))
        }
    }
}

/// The first CUDA device, chosen for `why`, which the reason completes with
/// the devices the driver reports.
fn first_cuda(why: &str) -> CliResult<ChosenBackend> {
    let (device, count) = cuda::first()?;
    Ok(ChosenBackend {
        device,
        name: "cuda",
        reason: format!("{why}: {count} device{}", if count == 1 { "" } else { "s" }),
    })
}

/// burn-ndarray, in a binary built with the `ndarray` feature.
#[cfg(feature = "ndarray")]
fn ndarray(convolutional: bool) -> CliResult<ChosenBackend> {
    #[allow(deprecated)]
    Ok(ChosenBackend {
        device: NdArrayDevice::default().into(),
        name: "ndarray",
        reason: if convolutional {
            "asked for ndarray (warning: its convolutions are ~25x slower than flex; see README)"
                .into()
        } else {
            "asked for ndarray".into()
        },
    })
}

/// burn-ndarray is not in this binary.
#[cfg(not(feature = "ndarray"))]
fn ndarray(_convolutional: bool) -> CliResult<ChosenBackend> {
    Err(CliError::usage(
        "backend ndarray: this binary is built without burn-ndarray (deprecated by Burn 0.22, and \
         slower than flex); use --backend flex, or build with `cargo build -p burnfit-cli \
         --features ndarray`",
    ))
}

fn flex(reason: &str) -> ChosenBackend {
    ChosenBackend {
        device: FlexDevice.into(),
        name: "flex",
        reason: reason.to_string(),
    }
}

/// The devices a run trains on, as named for the user and the run's
/// records (`flex`, `wgpu:1`), with the Burn device of each.
#[derive(Clone, Debug)]
pub struct Devices {
    /// `(name, device)` in order; the first holds the model.
    pub list: Vec<(String, Device)>,
}

impl Devices {
    /// One device: the backend's own.
    pub fn single(backend: &ChosenBackend) -> Self {
        Self {
            list: vec![(backend.name.to_string(), backend.device.clone())],
        }
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// Resolves `--devices N|LIST` for the chosen backend: `N` is the backend's
/// first `N` devices (on a CPU backend, `N` workers on the CPU), a list
/// names each one (`flex,flex` or `wgpu:0,wgpu:1`).
pub fn resolve_devices(spec: &str, backend: &ChosenBackend) -> CliResult<Devices> {
    let bad = |why: String| CliError::usage(format!("--devices {spec}: {why}"));
    let spec = spec.trim();
    let adapters = if backend.name == "wgpu" {
        wgpu_adapters()
    } else {
        Vec::new()
    };
    // The GPU backend's device `index`, by its name.
    let gpu = |index: usize| -> Result<(String, Device), String> {
        let device = match backend.name {
            "cuda" => cuda::indexed(index)?,
            _ => wgpu_indexed(&adapters, index)?,
        };
        Ok((format!("{}:{index}", backend.name), device))
    };
    let list: Vec<(String, Device)> = if let Ok(count) = spec.parse::<usize>() {
        if count == 0 {
            return Err(bad("at least 1 device".into()));
        }
        if backend.is_gpu() {
            (0..count).map(gpu).collect::<Result<_, _>>().map_err(bad)?
        } else {
            vec![(backend.name.to_string(), backend.device.clone()); count]
        }
    } else {
        let mut list = Vec::new();
        for entry in spec.split(',').map(str::trim) {
            if crate::remote::is_remote(entry) {
                list.push((entry.to_string(), crate::remote::connect(entry)?));
            } else {
                list.push(named_device(entry, backend, &gpu).map_err(bad)?);
            }
        }
        list
    };
    Ok(Devices { list })
}

/// One entry of a `--devices` list (`wgpu:1`, `cuda:0`, `flex`), which must
/// name a device of the chosen backend; `gpu` gives a GPU backend's
/// devices by index. A CPU backend has one device, repeated for several
/// workers.
fn named_device(
    entry: &str,
    backend: &ChosenBackend,
    gpu: &dyn Fn(usize) -> Result<(String, Device), String>,
) -> Result<(String, Device), String> {
    let (kind, index) = match entry.split_once(':') {
        Some((kind, index)) => (
            kind,
            index
                .parse::<usize>()
                .map_err(|_| format!("`{entry}`: the index must be a number"))?,
        ),
        None => (entry, 0),
    };
    if kind != backend.name {
        return Err(format!(
            "`{entry}` is not a {} device (this run trains on {}; choose the backend with \
             --backend)",
            backend.name, backend.name
        ));
    }
    if backend.is_gpu() {
        gpu(index)
    } else if index == 0 {
        Ok((kind.to_string(), backend.device.clone()))
    } else {
        Err(format!(
            "`{entry}`: {kind} has one device ({kind} or {kind}:0; repeat it for several \
             workers)"
        ))
    }
}

/// wgpu's adapter `index` (among `adapters`, as `wgpu_adapters` lists
/// them) as a device, its runtime started.
fn wgpu_indexed(adapters: &[Adapter], index: usize) -> Result<Device, String> {
    let adapter = adapters.get(index).ok_or_else(|| {
        format!(
            "wgpu:{index} does not exist (wgpu found {} adapter{}: {})",
            adapters.len(),
            if adapters.len() == 1 { "" } else { "s" },
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("wgpu:{i} {}", a.name))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    use cubecl_runtime::device::WgpuDeviceKind;
    // wgpu numbers adapters within their type.
    let rank = adapters[..index]
        .iter()
        .filter(|a| a.kind == adapter.kind)
        .count();
    let kind = match adapter.kind.as_str() {
        "DiscreteGpu" => WgpuDeviceKind::DiscreteGpu(rank),
        "IntegratedGpu" => WgpuDeviceKind::IntegratedGpu(rank),
        "VirtualGpu" => WgpuDeviceKind::VirtualGpu(rank),
        "Cpu" => WgpuDeviceKind::Cpu,
        _ => WgpuDeviceKind::Other(rank),
    };
    let device: Device = WgpuDevice::new(kind).into();
    // Start its runtime now, with the drivers' stderr lines silenced as
    // for the default device (`wgpu_stack`): a device named by index
    // comes up on its own instance, which would otherwise print them
    // from the first training step.
    without_driver_noise(|| burn_name(&device));
    Ok(device)
}
