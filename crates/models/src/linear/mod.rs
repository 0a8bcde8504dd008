//! The models' dense layers: [`linear`] runs a Burn [`Linear`] layer (and
//! [`linear_relu`] the layer followed by a ReLU) on flex through our own
//! gemm calls ([`kernels`]), for the forward and every gradient; elsewhere
//! through Burn.
//!
//! Why: flex's matmul makes each output with `FlexTensor::empty`, a zeroed
//! byte buffer that is then copied once more into an aligned one, so the
//! gradient of `simple_cnn`'s `fc1` weight (9216 × 128, 4.7 MB) was
//! written three times; and its products ran on one core. Here each output
//! is written once, by blocks on every core (docs/benchmarks.md §6).
//!
//! Invariants:
//! * **Records are unchanged**: the parameters are those of Burn's
//!   [`Linear`].
//! * **The same numbers as Burn's layer within float rounding**, forward
//!   and gradients (tests below).
//! * **Deterministic** whatever the number of threads ([`kernels`]).
//! * **Other backends and other shapes are Burn's**: inputs of more than
//!   two dimensions, wgpu, ndarray.

use burn::nn::Linear;
use burn::prelude::*;

#[cfg(feature = "flex")]
pub mod extension;
#[cfg(feature = "flex")]
pub mod kernels;

/// `layer.forward(x)` for a `[batch, d_in]` input: on a flex device
/// through [`extension::GemmLinearOps`], otherwise Burn's layer.
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::prelude::*;
/// use burnfit_models::linear::linear;
///
/// let device = Device::flex();
/// let layer = LinearConfig::new(300, 20).init(&device);
/// let x = Tensor::<2>::random([4, 300], burn::tensor::Distribution::Default, &device);
/// let diff: f32 = (linear(&layer, x.clone()) - layer.forward(x)).abs().max().into_scalar();
/// assert!(diff < 1e-4);
/// ```
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if crate::conv::uses_gemm_kernels(&x.device()) {
        return gemm_linear(layer, x, false);
    }
    layer.forward(x)
}

/// `relu(layer.forward(x))`, with the ReLU folded into the layer on a flex
/// device (as [`linear`]); elsewhere Burn's layer and ReLU.
pub fn linear_relu(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if crate::conv::uses_gemm_kernels(&x.device()) {
        return gemm_linear(layer, x, true);
    }
    burn::tensor::activation::relu(layer.forward(x))
}

#[cfg(feature = "flex")]
fn gemm_linear(layer: &Linear, x: Tensor<2>, relu: bool) -> Tensor<2> {
    use burn::backend::Dispatch;
    use extension::GemmLinearOps;

    let (x, weight) = (x.into_dispatch(), layer.weight.val().into_dispatch());
    Tensor::<2>::from_dispatch(match &layer.bias {
        Some(bias) => <Dispatch as GemmLinearOps>::gemm_linear_bias(
            x,
            weight,
            bias.val().into_dispatch(),
            relu,
        ),
        None => <Dispatch as GemmLinearOps>::gemm_linear(x, weight, relu),
    })
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::test_values::assert_within_rounding;
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The output and the input, weight and bias gradients, through ours
    /// or through Burn's layer (and ReLU).
    fn run(layer: &Linear, x: &TensorData, relu: bool, ours: bool) -> Vec<Vec<f32>> {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(x.clone(), &device).require_grad();
        let y = match (ours, relu) {
            (true, false) => linear(layer, x.clone()),
            (true, true) => linear_relu(layer, x.clone()),
            (false, false) => layer.forward(x.clone()),
            (false, true) => burn::tensor::activation::relu(layer.forward(x.clone())),
        };
        let weights = Tensor::<1, Int>::arange(0..y.shape().num_elements() as i64, &device)
            .float()
            .reshape(y.dims())
            .sin();
        let grads = (y.clone() * weights).sum().backward();
        let mut out = vec![
            values(y.detach()),
            values(x.grad(&grads).unwrap()),
            values(layer.weight.val().grad(&grads).unwrap()),
        ];
        if let Some(bias) = &layer.bias {
            out.push(values(bias.val().grad(&grads).unwrap()));
        }
        out
    }

    #[test]
    fn output_and_gradients_equal_burns_within_rounding() {
        let _rng = crate::TEST_RNG_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        // Blocks of every kind: a short last one in each gemm (d_in 2100 is
        // 8 × 256 + 52; d_out 150 is 2 × 64 + 22), and one-block layers.
        for (batch, d_in, d_out, bias) in
            [(5, 2100, 150, true), (3, 7, 4, false), (64, 96, 10, true)]
        {
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let x = Tensor::<2>::random(
                [batch, d_in],
                Distribution::Normal(0.0, 1.0),
                &Device::flex(),
            )
            .into_data();
            for relu in [false, true] {
                let ours = run(&layer, &x, relu, true);
                let burns = run(&layer, &x, relu, false);
                for (k, (a, b)) in ours.iter().zip(&burns).enumerate() {
                    let what = format!("value {k} of [y, dx, dw, db]");
                    let context = format!("{batch}x{d_in}->{d_out} relu {relu}");
                    assert_within_rounding(a, b, 1e-5, &what, &context);
                }
            }
        }
    }

    #[test]
    fn kernels_do_not_depend_on_the_number_of_threads() {
        use kernels::Dense;
        let d = Dense {
            batch: 9,
            d_in: 2500,
            d_out: 130,
        };
        let ramp = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * k) % 101) as f32 - 50.0) / 37.0)
                .collect()
        };
        let (x, w, dy, b) = (
            ramp(d.batch * d.d_in, 3),
            ramp(d.d_in * d.d_out, 7),
            ramp(d.batch * d.d_out, 11),
            ramp(d.d_out, 13),
        );
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        kernels::forward(&d, &x, &w, Some(&b), true),
                        kernels::input_grad(&d, &w, &dy),
                        kernels::weight_grad(&d, &x, &dy),
                        kernels::bias_grad(&d, &dy),
                    )
                })
        };
        assert!(run(1) == run(3), "bitwise equal on 1 and 3 threads");
    }
}
