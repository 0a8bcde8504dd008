//! Where a CNN training step spends its time, layer by layer, on flex.
//!
//! `cargo run -p burnfit-models --example op_profile [batch]` (dependencies
//! are optimised in the dev profile too, see Cargo.toml)
//!
//! Times the forward pass and forward + backward of each layer type at the
//! shapes of the shipped CNN and the brief's reference CNN, so a change to a
//! layer (or to a backend) can be judged by the numbers it moves.

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, DropoutConfig, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burnfit_models::conv::{conv2d, conv2d_relu};
use burnfit_models::conv_pool::conv2d_relu_max_pool2d;
use burnfit_models::nets::cnn::ConvBlock;
use burnfit_models::nets::host_dropout::dropout as host_dropout;
use burnfit_models::nets::{Cnn, CnnConfig, SimpleCnn, SimpleCnnConfig, classification_output};
use burnfit_models::norm::batch_norm;
use burnfit_models::pool::max_pool2d;

fn time_ms(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The shipped CNN's forward with Burn's own convolution and dropout layers
/// everywhere (what `Cnn::forward` did before our convolution and dropout).
fn cnn_with_burn_layers(model: &Cnn, x: Tensor<4>) -> Tensor<2> {
    let block = |b: &ConvBlock, x: Tensor<4>| {
        let x = b.activation.forward(b.bn1.forward(b.conv1.forward(x)));
        let x = b.activation.forward(b.bn2.forward(b.conv2.forward(x)));
        b.dropout.forward(b.pool.forward(x))
    };
    let x = block(&model.block2, block(&model.block1, x));
    let [batch, c, h, w] = x.dims();
    let x = x.reshape([batch, c * h * w]);
    let x = model
        .dropout
        .forward(model.activation.forward(model.fc1.forward(x)));
    model.fc2.forward(x)
}

/// `SimpleCnn::forward` with Burn's own convolution and dropout layers.
fn simple_cnn_with_burn_layers(model: &SimpleCnn, x: Tensor<4>) -> Tensor<2> {
    let x = model.activation.forward(model.conv1.forward(x));
    let x = model.activation.forward(model.conv2.forward(x));
    let x = model.conv_dropout.forward(model.pool.forward(x));
    let [batch, c, h, w] = x.dims();
    let x = x.reshape([batch, c * h * w]);
    let x = model
        .fc_dropout
        .forward(model.activation.forward(model.fc1.forward(x)));
    model.fc2.forward(x)
}

/// Forward + backward of the cross-entropy loss, Burn's layers against
/// ours, interleaved so that machine noise hits both alike.
fn whole_network(
    name: &str,
    repeats: usize,
    ours: impl Fn(Tensor<4>) -> Tensor<2>,
    burn_layers: impl Fn(Tensor<4>) -> Tensor<2>,
    images: &Tensor<4>,
    targets: &Tensor<1, Int>,
) {
    let step = |forward: &dyn Fn(Tensor<4>) -> Tensor<2>| {
        let start = Instant::now();
        let logits = forward(images.clone());
        let _ = classification_output(logits, targets.clone())
            .loss
            .backward();
        start.elapsed().as_secs_f64() * 1000.0
    };
    step(&ours);
    step(&burn_layers);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        b.push(step(&burn_layers));
        a.push(step(&ours));
    }
    // The fastest of the interleaved runs: on a shared machine, noise only
    // ever adds time.
    let fastest = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
    let (ours, theirs) = (fastest(a), fastest(b));
    println!(
        "| {name} | {theirs:.1} | {ours:.1} | {:.2}x |",
        theirs / ours
    );
}

/// Times `layer` forward, and forward + backward with a gradient for its
/// input, and prints the row.
fn layer_row<const D: usize>(
    name: &str,
    repeats: usize,
    x: &Tensor<D>,
    layer: impl Fn(Tensor<D>) -> Tensor<D>,
) {
    let forward = time_ms(repeats, || {
        let _: f32 = layer(x.clone()).sum().into_scalar();
    });
    let both = time_ms(repeats, || {
        let _ = layer(x.clone().require_grad()).sum().backward();
    });
    row(name, forward, both);
}

fn row(name: &str, forward: f64, both: f64) {
    println!(
        "| {name} | {forward:.2} | {both:.2} | {:.2} |",
        both - forward
    );
}

fn main() {
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let device = Device::flex().autodiff();
    let repeats = 5;
    let images = Tensor::<4>::random([batch, 1, 28, 28], Distribution::Default, &device);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..batch as i64).map(|i| i % 10).collect(), [batch]),
        &device,
    );
    println!(
        "# whole network, forward + backward, flex, batch {batch}, fastest of 15 interleaved runs (ms)"
    );
    println!("| network | Burn's layers | burnfit layers | speed-up |");
    println!("| --- | ---: | ---: | ---: |");
    let simple = SimpleCnnConfig::new().init(&device);
    whole_network(
        "simple_cnn (Keras example)",
        15,
        |x| simple.forward(x),
        |x| simple_cnn_with_burn_layers(&simple, x),
        &images,
        &targets,
    );
    whole_network(
        "simple_cnn, host dropout only",
        15,
        |x| {
            let x = simple.activation.forward(simple.conv1.forward(x));
            let x = simple.activation.forward(simple.conv2.forward(x));
            let x = host_dropout(&simple.conv_dropout, simple.pool.forward(x));
            let [batch, c, h, w] = x.dims();
            let x = x.reshape([batch, c * h * w]);
            let x = host_dropout(
                &simple.fc_dropout,
                simple.activation.forward(simple.fc1.forward(x)),
            );
            simple.fc2.forward(x)
        },
        |x| simple_cnn_with_burn_layers(&simple, x),
        &images,
        &targets,
    );
    for channels in [[16, 32], [32, 64]] {
        let cnn = CnnConfig::new().with_channels(channels).init(&device);
        whole_network(
            &format!("cnn {channels:?}"),
            15,
            |x| cnn.forward(x),
            |x| cnn_with_burn_layers(&cnn, x),
            &images,
            &targets,
        );
    }
    println!();
    println!("# flex, batch {batch}, median of {repeats} (ms)");
    println!("| layer | forward | forward+backward | backward |");
    println!("| --- | ---: | ---: | ---: |");
    for (cin, cout, side, pad) in [
        (1, 32, 28, true),
        (32, 32, 28, true),
        (32, 64, 14, true),
        (64, 64, 14, true),
        (1, 32, 28, false),
        (32, 64, 26, false),
        (16, 16, 28, true),
        (16, 32, 14, true),
        (32, 32, 14, true),
    ] {
        let mut config = Conv2dConfig::new([cin, cout], [3, 3]);
        if pad {
            config = config.with_padding(PaddingConfig2d::Same);
        }
        let conv = config.init(&device);
        let x = Tensor::<4>::random([batch, cin, side, side], Distribution::Default, &device);
        let forward = time_ms(repeats, || {
            let _: f32 = conv.forward(x.clone()).sum().into_scalar();
        });
        // The first layer's input (the images) needs no gradient.
        let grad_input = |x: Tensor<4>| if cin > 1 { x.require_grad() } else { x };
        let both = time_ms(repeats, || {
            let _ = conv.forward(grad_input(x.clone())).sum().backward();
        });
        let check = (conv2d(&conv, x.clone()) - conv.forward(x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        let forward_g = time_ms(repeats, || {
            let _: f32 = conv2d(&conv, x.clone()).sum().into_scalar();
        });
        let both_g = time_ms(repeats, || {
            let _ = conv2d(&conv, grad_input(x.clone())).sum().backward();
        });
        let pad = if pad { "same" } else { "valid" };
        row(
            &format!("  gemm kernels {cin}->{cout} @{side}x{side} {pad} (max diff {check:.1e})"),
            forward_g,
            both_g,
        );
        row(
            &format!("conv3x3 {cin}->{cout} @{side}x{side} {pad}"),
            forward,
            both,
        );
    }
    for (channels, side) in [(32, 28), (64, 14)] {
        let x = Tensor::<4>::random(
            [batch, channels, side, side],
            Distribution::Default,
            &device,
        );
        let at = format!("{channels} @{side}x{side}");
        let bn = BatchNormConfig::new(channels).init(&device);
        layer_row(&format!("  norm kernels {at}"), repeats, &x, |x| {
            batch_norm(&bn, x)
        });
        layer_row(&format!("batchnorm {at}"), repeats, &x, |x| bn.forward(x));
        let pool = MaxPool2dConfig::new([2, 2]).init();
        layer_row(&format!("  pool kernels 2x2 {at}"), repeats, &x, |x| {
            max_pool2d(&pool, x)
        });
        layer_row(&format!("maxpool2 {at}"), repeats, &x, |x| pool.forward(x));
        let relu = burn::nn::Relu::new();
        layer_row(&format!("relu {at}"), repeats, &x, |x| relu.forward(x));
        let dropout = DropoutConfig::new(0.25).init();
        layer_row(&format!("dropout {at}"), repeats, &x, |x| {
            dropout.forward(x)
        });
        layer_row(&format!("  host dropout {at}"), repeats, &x, |x| {
            host_dropout(&dropout, x)
        });
    }
    fused_conv_relu_pool(batch, &device);
    for (inputs, outputs) in [(9216, 128), (3136, 128), (1568, 128)] {
        let fc = LinearConfig::new(inputs, outputs).init(&device);
        let x = Tensor::<2>::random([batch, inputs], Distribution::Default, &device);
        layer_row(&format!("linear {inputs}->{outputs}"), repeats, &x, |x| {
            fc.forward(x)
        });
    }
}

/// `simple_cnn`'s second convolution, its ReLU and its pooling, apart and
/// fused ([`conv2d_relu_max_pool2d`]), in interleaved rounds: each round's
/// fused/apart time, forward and forward + backward.
fn fused_conv_relu_pool(batch: usize, device: &Device) {
    let conv = Conv2dConfig::new([32, 64], [3, 3]).init(device);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let x = Tensor::<4>::random([batch, 32, 26, 26], Distribution::Default, device);
    let apart = |x: Tensor<4>| max_pool2d(&pool, conv2d_relu(&conv, x));
    let fused = |x: Tensor<4>| conv2d_relu_max_pool2d(&conv, &pool, x);
    let forward = |layer: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        time_ms(3, || {
            let _: f32 = layer(x.clone()).sum().into_scalar();
        })
    };
    let both = |layer: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        time_ms(3, || {
            let _ = layer(x.clone().require_grad()).sum().backward();
        })
    };
    for round in 1..=4 {
        let (fa, ff) = (forward(&apart), forward(&fused));
        let (ba, bf) = (both(&apart), both(&fused));
        println!(
            "| conv 32->64 @26 + relu + pool, round {round}: apart / fused | {fa:.2} / {ff:.2} | {ba:.2} / {bf:.2} | |"
        );
    }
}
