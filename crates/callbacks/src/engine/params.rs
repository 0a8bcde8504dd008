//! Reading a model's parameters as plain numbers (weight histograms, the
//! parameter table, gradient norms by layer).

use std::any::Any;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use burnfit_core::{ModelSnapshot, ParamInfo, ParamRead};

/// The path of the parameter a visitor is at: module names joined with `/`
/// (enum variants such as `Classifier::Cnn` add nothing useful to a name).
#[derive(Default)]
pub(crate) struct ParamPath {
    segments: Vec<String>,
}

impl ParamPath {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.segments.push(name.to_string());
        }
    }

    pub(crate) fn exit(&mut self, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.segments.pop();
        }
    }

    /// The current path, or `param<index>` at the top level.
    pub(crate) fn name(&self, index: usize) -> String {
        if self.segments.is_empty() {
            format!("param{index}")
        } else {
            self.segments.join("/")
        }
    }
}

struct Collector {
    path: ParamPath,
    read: ParamRead,
    params: Vec<ParamInfo>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.lazy_shape().to_vec();
        let values = match self.read {
            ParamRead::Shapes => None,
            ParamRead::Values => Some(
                param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap_or_default(),
            ),
        };
        self.params.push(ParamInfo {
            path: self.path.name(self.params.len()),
            shape,
            trainable: param.val().is_require_grad(),
            values,
        });
    }
}

/// Every float parameter of `model`, in the model's order.
pub fn params_of_module<M: Module>(model: &M, read: ParamRead) -> Vec<ParamInfo> {
    let mut collector = Collector {
        path: ParamPath::default(),
        read,
        params: Vec::new(),
    };
    model.visit(&mut collector);
    collector.params
}

/// A [`ParamsFn`](burnfit_core::ParamsFn) for models of type `M`: what the
/// engine attaches to every [`ModelSnapshot`] it takes
/// (`ModelSnapshot::of(model).with_params(list_params::<M>)`).
pub fn list_params<M: Module + 'static>(
    model: &(dyn Any + Send),
    read: ParamRead,
) -> Vec<ParamInfo> {
    model
        .downcast_ref::<M>()
        .map(|m| params_of_module(m, read))
        .unwrap_or_default()
}

/// A snapshot of `model` that can list its parameters and blend with
/// another of its type (for weight averaging).
pub fn snapshot_of<M: Module + 'static>(model: M) -> ModelSnapshot {
    ModelSnapshot::of(model)
        .with_params(list_params::<M>)
        .with_blend(crate::averaging::blend_snapshots::<M>)
}

/// Every float parameter of `model` as `(path, values)`, path segments joined
/// with `/` (e.g. `conv1/weight`).
pub fn param_values<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    params_of_module(model, ParamRead::Values)
        .into_iter()
        .map(|p| (p.path, p.values.unwrap_or_default()))
        .collect()
}

/// [`param_values`] for a snapshot of model type `M` (empty for another type).
/// A parameter source for `TensorBoard::with_param_source`; snapshots the
/// engine takes list their parameters without one.
pub fn param_values_of<M: Module + 'static>(snapshot: &ModelSnapshot) -> Vec<(String, Vec<f32>)> {
    snapshot
        .downcast_ref::<M>()
        .map(param_values)
        .unwrap_or_default()
}

/// Folds the per-thread updates of the model's running statistics (Burn's
/// `RunningState`, in `BatchNorm`) into their values.
///
/// Burn keeps a batch norm's latest update per thread and folds it in only
/// at the next update on that thread or at `valid()`/`train()`; a record
/// taken before that (`into_record`, a backup in the middle of an epoch) is
/// one update old. The fold of one thread's update is that value exactly,
/// so syncing early changes nothing for the steps that follow. `valid()`
/// syncs every running state of the module as it builds its inference copy,
/// which is dropped.
pub(crate) fn sync_running_states<M: Module>(model: &M) {
    let _ = model.valid();
}

/// A copy of `model` that later training does not change.
///
/// A clone of a Burn module shares its running statistics (a batch norm's
/// `RunningState` is one `Arc` for every clone): a snapshot taken by
/// cloning would follow the live model's statistics as training goes on,
/// and restoring it (EarlyStopping's `restore_best_weights`) would bring
/// back the best epoch's weights with the last step's statistics.
/// `valid()` syncs them and builds new ones; `train()` puts the parameters
/// back on an autodiff device. That device has Burn's default settings: a
/// model restored from the copy trains without gradient checkpointing
/// (EarlyStopping restores when training ends, where it does not matter).
pub(crate) fn detached<M: Module>(model: &M) -> M {
    model.valid().train()
}
