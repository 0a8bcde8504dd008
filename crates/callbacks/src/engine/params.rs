//! Reading a model's parameters as plain numbers (for weight histograms).

use burn::module::{Module, ModuleVisitor, ParamId};
use burn::tensor::Tensor;

use crate::context::ModelSnapshot;

struct Collector {
    params: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Collector {
    fn visit_float_with_path<const D: usize>(
        &mut self,
        path: &[String],
        _id: ParamId,
        tensor: &Tensor<D>,
    ) {
        let values = tensor
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        self.params.push((path.join("/"), values));
    }
}

/// Every float parameter of `model` as `(path, values)`, path segments joined
/// with `/` (e.g. `conv1/weight`).
pub fn param_values<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    let mut collector = Collector { params: Vec::new() };
    model.visit(&mut collector);
    collector.params
}

/// [`param_values`] for a snapshot of model type `M` (empty for another type).
/// This is the parameter source the TensorBoard callback uses for weight
/// histograms: `TensorBoard::with_param_source(param_values_of::<MyModel>)`.
pub fn param_values_of<M: Module + 'static>(snapshot: &ModelSnapshot) -> Vec<(String, Vec<f32>)> {
    snapshot
        .downcast_ref::<M>()
        .map(param_values)
        .unwrap_or_default()
}
