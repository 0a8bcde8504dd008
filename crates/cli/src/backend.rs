//! Choosing the device to train on.

#[allow(deprecated)] // burn-ndarray stays selectable on purpose (see README).
use burn::backend::NdArrayDevice;
use burn::backend::wgpu::wgpu;
use burn::backend::{FlexDevice, WgpuDevice};
use burn::tensor::Device;

use crate::config::BackendChoice;
use crate::error::{CliError, CliResult};

/// The device training runs on, and why it was chosen.
#[derive(Clone, Debug)]
pub struct ChosenBackend {
    /// The Burn device.
    pub device: Device,
    /// `wgpu`, `flex` or `ndarray`.
    pub name: &'static str,
    /// One sentence for the user.
    pub reason: String,
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

/// Every adapter wgpu finds (none is an empty list, never a panic).
pub fn wgpu_adapters() -> Vec<Adapter> {
    let instance = wgpu::Instance::default();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
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

/// Picks the device for `choice`. `convolutional` says whether the model
/// has convolutions (burn-ndarray is unusable for those).
pub fn choose(choice: BackendChoice, convolutional: bool) -> CliResult<ChosenBackend> {
    match choice {
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
        #[allow(deprecated)]
        BackendChoice::Ndarray => Ok(ChosenBackend {
            device: NdArrayDevice::default().into(),
            name: "ndarray",
            reason: if convolutional {
                "asked for ndarray (warning: its convolutions are ~25x slower than flex; see README)"
                    .into()
            } else {
                "asked for ndarray".into()
            },
        }),
        BackendChoice::Auto => {
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

fn flex(reason: &str) -> ChosenBackend {
    ChosenBackend {
        device: FlexDevice.into(),
        name: "flex",
        reason: reason.to_string(),
    }
}
