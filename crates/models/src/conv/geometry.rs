//! The shape of a convolution ([`Geometry`]), what its forward does after
//! the sums ([`Epilogue`]), and the weight gradient's fixed chunking: what
//! both ways of computing a convolution ([`super::kernels`]'s im2col and
//! [`super::winograd`]) share.

/// Samples per partial weight gradient. Fixed, so that the order of the
/// floating-point additions (and so the result) does not depend on the
/// number of threads.
pub const WEIGHT_GRAD_CHUNK: usize = 8;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Samples in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input `[height, width]`.
    pub input: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Padding `[(top, bottom), (left, right)]`.
    pub padding: [(usize, usize); 2],
    /// Dilation `[vertical, horizontal]`.
    pub dilation: [usize; 2],
}

impl Geometry {
    /// Output `[height, width]`.
    pub fn output(&self) -> [usize; 2] {
        std::array::from_fn(|d| {
            let (begin, end) = self.padding[d];
            let span = self.dilation[d] * (self.kernel[d] - 1) + 1;
            (self.input[d] + begin + end - span) / self.stride[d] + 1
        })
    }

    /// Whether the kernel (dilated) fits in the padded input.
    pub fn is_valid(&self) -> bool {
        (0..2).all(|d| {
            let (begin, end) = self.padding[d];
            self.kernel[d] > 0
                && self.stride[d] > 0
                && self.dilation[d] > 0
                && self.input[d] + begin + end > self.dilation[d] * (self.kernel[d] - 1)
        })
    }

    /// Rows of a sample's columns: `in_channels · kernel_h · kernel_w`.
    pub fn patch(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of a sample's columns: `out_h · out_w`.
    pub fn positions(&self) -> usize {
        let [h, w] = self.output();
        h * w
    }

    /// Values of one input sample.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.input[0] * self.input[1]
    }

    /// Values of one output sample.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    /// Values of the weight.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch()
    }

    /// The input's shape, `[batch, in_channels, height, width]` (that of
    /// its gradient).
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.input[0], self.input[1]]
    }

    /// The weight's shape, `[out_channels, in_channels, kh, kw]` (that of
    /// its gradient).
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
    }
}

/// What the forward does to the gemm's product before handing it out: add
/// a bias per output channel, clamp at zero (ReLU). The default is neither.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// One value per output channel, added to each of its outputs.
    pub bias: Option<&'a [f32]>,
    /// Whether the outputs are clamped at zero afterwards.
    pub relu: bool,
}

/// Adds each output channel's sum of one sample's output gradient `dy`
/// (`[out_channels, oh, ow]`) into `db`: the bias gradient's share of the
/// sample, summed as [`lane_sum`] does, so that every path that forms it
/// gets the same bits.
pub(super) fn add_bias_grad_of_sample(g: &Geometry, dy: &[f32], db: &mut [f32]) {
    for (total, row) in db.iter_mut().zip(dy.chunks(g.positions().max(1))) {
        *total += lane_sum(row);
    }
}

/// Lanes of [`lane_sum`]: one AVX-512 register of `f32`.
const LANES: usize = 16;

/// The sum of `values`, in a fixed order that vectorises: [`LANES`] running
/// sums over the values' positions modulo [`LANES`], then those sums and
/// the tail added in order. (A plain `iter().sum()` must add one value at a
/// time, each waiting on the last.)
pub(super) fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
