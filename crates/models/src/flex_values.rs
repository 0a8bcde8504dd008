//! The `f32` values of flex tensors, for the kernels' backend extensions
//! ([`crate::conv::extension`], [`crate::pool::extension`],
//! [`crate::norm::extension`]).

use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

/// `tensor`, contiguous (copied only when it is not).
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The values of a contiguous `f32` tensor.
///
/// # Panics
///
/// Panics if the tensor is not `f32` or not contiguous (the extensions
/// check the type and call [`contiguous`] first).
pub(crate) fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

/// A flex tensor of `shape` holding `values`.
pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}
