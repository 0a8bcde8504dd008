//! Shows which Burn devices this machine offers, without panicking where there
//! is no GPU.
//!
//! ```text
//! cargo run -p burnfit-models --example device_probe
//! ```
//!
//! It lists the wgpu adapters (`Device::enumerate(DeviceType::Wgpu)`, empty
//! when there are none), tries to initialise the default wgpu device
//! (`Device::wgpu_options().init()`, an error rather than a panic when no
//! adapter exists; a software rasterizer counts as an adapter), and runs one small matmul on each device that came up plus
//! the flex CPU device, with and without autodiff.

use burn::prelude::*;
use burn::tensor::DeviceType;

fn smoke(name: &str, device: &Device) {
    let a = Tensor::<2>::ones([2, 3], device);
    let b = Tensor::<2>::ones([3, 2], device);
    // `require_grad` panics on a device without autodiff.
    let b = if device.is_autodiff() {
        b.require_grad()
    } else {
        b
    };
    let y = a.matmul(b.clone()).sum();
    let value: f32 = y.clone().into_scalar();
    let grads = device.is_autodiff().then(|| y.backward());
    let grad = grads
        .as_ref()
        .and_then(|g| b.grad(g))
        .map(|g| g.sum().into_scalar::<f32>());
    println!("{name:<24} {device:?}: sum(ones*ones) = {value}, autodiff grad sum = {grad:?}");
}

fn main() {
    let adapters = Device::enumerate(DeviceType::Wgpu);
    println!("wgpu adapters: {}", adapters.len());
    for device in adapters.iter() {
        println!("  {device:?}");
    }
    // A software rasterizer (llvmpipe, lavapipe, WARP) is listed as a `Cpu`
    // adapter; anything else is a real GPU.
    let software = Device::wgpu(DeviceKind::Cpu);
    let has_gpu = adapters.iter().any(|d| *d != software);
    println!("hardware GPU adapter: {has_gpu}");
    // Asking for a kind that is absent is an error, not a panic.
    if let Err(err) = Device::wgpu_options()
        .device_kind(DeviceKind::DiscreteGpu(0))
        .init()
    {
        println!("wgpu DiscreteGpu(0) unavailable: {err}");
    }
    match Device::wgpu_options().init() {
        Ok(device) => {
            smoke("wgpu", &device);
            smoke("wgpu + autodiff", &device.autodiff());
        }
        Err(err) => println!("wgpu unavailable: {err}"),
    }
    let flex = Device::flex();
    smoke("flex", &flex);
    smoke("flex + autodiff", &flex.clone().autodiff());
    // ndarray, in a build that has it (Burn 0.22 deprecates it for flex).
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    smoke("ndarray", &Device::ndarray());
}
