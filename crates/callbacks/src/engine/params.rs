//! Reading a model's parameters as plain numbers (for weight histograms).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use burnfit_core::ModelSnapshot;

struct Collector {
    path: Vec<String>,
    params: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // Enum variants (e.g. `Classifier::Cnn`) add nothing useful to a name.
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let name = if self.path.is_empty() {
            format!("param{}", self.params.len())
        } else {
            self.path.join("/")
        };
        self.params.push((name, values));
    }
}

/// Every float parameter of `model` as `(path, values)`, path segments joined
/// with `/` (e.g. `conv1/weight`).
pub fn param_values<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    let mut collector = Collector {
        path: Vec::new(),
        params: Vec::new(),
    };
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
