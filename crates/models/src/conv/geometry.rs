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
