//! A step's running statistics on several devices, folded in device order.
//!
//! Burn's `RunningState` (a batch norm's running mean and variance) keeps
//! the latest update of each thread in a map and folds them, at the next
//! sync, into their mean, summed in the map's order: a `HashMap`'s, which
//! changes from process to process. Two values add up the same in either
//! order; three or more do not, so a run on three devices would get other
//! running statistics, and other validation metrics, every time.
//!
//! So the device workers never touch the learner's running states: each
//! trains a copy whose running states are its own
//! ([`with_own_running_states`]) and sends back its statistics once the step
//! is done ([`synced`]); the coordinator puts their mean into the learner's
//! model ([`fold_in_device_order`]), summed in device order as Burn would
//! sum them, then divided by their number.
//!
//! Invariants, each with a test below:
//!
//! * **The fold is the mean, in device order, of the devices that ran**:
//!   what Burn's own fold gives for two devices, bit for bit, and one fixed
//!   order for more.
//! * **Only running states change**: parameters, trainable or frozen, are
//!   left as they are.
//! * **The copies keep the model's gradient-checkpointing strategy**, and
//!   so do the folded statistics (tested with the devices:
//!   `gradient_checkpointing_holds_on_two_devices`,
//!   `a_batch_norm_model_built_for_gradient_checkpointing_trains_on_three_devices`).

use std::any::Any;
use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, GradientCheckpointingStrategy, Tensor};

use super::params::detached;

/// `count` copies of `model` (one per device), each with running states of
/// its own (new ones, with the model's synced values): updating them leaves
/// `model`'s untouched. A copy is built on Burn's default autodiff device;
/// its tensors get the gradient-checkpointing strategy of the model's
/// trainable parameters back, looked up once (a tensor keeps the strategy
/// it was made with, and tensors of two strategies cannot meet in one
/// operation).
pub(crate) fn with_own_running_states<M: Module>(model: &M, count: usize) -> Vec<M> {
    let strategy = checkpointing_of(model);
    (0..count)
        .map(|_| {
            let copy = detached(model);
            match strategy {
                Some(strategy) => copy.map(&mut WithStrategy(strategy)),
                None => copy,
            }
        })
        .collect()
}

/// The gradient-checkpointing strategy of `model`'s first trainable
/// parameter, if it has one.
fn checkpointing_of<M: Module>(model: &M) -> Option<GradientCheckpointingStrategy> {
    struct First(Option<GradientCheckpointingStrategy>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0.is_none() {
                let value = param.val();
                if value.is_require_grad() {
                    self.0 = value.gradient_checkpointing_strategy();
                }
            }
        }
    }
    let mut first = First(None);
    model.visit(&mut first);
    first.0
}

/// Gives every autodiff tensor of a module one gradient-checkpointing
/// strategy.
struct WithStrategy(GradientCheckpointingStrategy);

impl WithStrategy {
    fn apply<const D: usize>(&self, tensor: Tensor<D>) -> Tensor<D> {
        if !tensor.is_autodiff() || tensor.gradient_checkpointing_strategy() == Some(self.0) {
            return tensor;
        }
        let require_grad = tensor.is_require_grad();
        let tensor = tensor.with_gradient_checkpointing_strategy(self.0);
        if require_grad {
            tensor.require_grad()
        } else {
            tensor
        }
    }
}

impl ModuleMapper for WithStrategy {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| self.apply(tensor))
    }
}

/// `model` (a copy from [`with_own_running_states`], after a step on this
/// thread) with its running states synced: the step's statistics, as the
/// coordinator folds them.
pub(crate) fn synced<M: Module>(model: &M) -> M {
    model.valid()
}

/// Puts into `model`'s running states the mean of those of `copies` (in
/// device order, each from [`synced`]), on `main`.
pub(crate) fn fold_in_device_order<M: Module>(model: &M, copies: &[M], main: &Device) {
    let ids = running_state_ids(model);
    if ids.is_empty() || copies.is_empty() {
        return;
    }
    let values = copies
        .iter()
        .map(|copy| {
            let mut collect = Collect {
                ids: &ids,
                tensors: HashMap::new(),
            };
            copy.visit(&mut collect);
            collect.tensors
        })
        .collect();
    let _ = model.clone().map(&mut Fold {
        values,
        main: main.clone().without_autodiff(),
        strategy: checkpointing_of(model).map(WithStrategy),
    });
}

/// The ids of `model`'s running states: the floats that stay without
/// gradients when every float is asked for them (`RunningState::map` keeps
/// its value out of the graph; a parameter, even a frozen one, takes the
/// request). Found on a copy, so the model is not changed.
fn running_state_ids<M: Module>(model: &M) -> HashSet<ParamId> {
    struct RequireGrad;
    impl ModuleMapper for RequireGrad {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|tensor| tensor.require_grad())
        }
    }
    #[derive(Default)]
    struct WithoutGrad(HashSet<ParamId>);
    impl ModuleVisitor for WithoutGrad {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.val().is_require_grad() {
                self.0.insert(param.id);
            }
        }
    }
    let mut without = WithoutGrad::default();
    detached(model).map(&mut RequireGrad).visit(&mut without);
    without.0
}

struct Collect<'a> {
    ids: &'a HashSet<ParamId>,
    tensors: HashMap<ParamId, Box<dyn Any>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.ids.contains(&param.id) {
            self.tensors.insert(param.id, Box::new(param.val()));
        }
    }
}

struct Fold {
    /// Per device, in order: its running states' values by id.
    values: Vec<HashMap<ParamId, Box<dyn Any>>>,
    main: Device,
    /// The model's checkpointing strategy, for the folded values.
    strategy: Option<WithStrategy>,
}

impl ModuleMapper for Fold {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mut sum: Option<Tensor<D>> = None;
        let mut count = 0;
        for device in &mut self.values {
            let Some(value) = device
                .remove(&param.id)
                .and_then(|v| v.downcast::<Tensor<D>>().ok())
            else {
                continue;
            };
            // Burn's fold: each value, moved to the sum's device, plus the sum.
            let value = value.to_device(&self.main);
            sum = Some(match sum {
                Some(sum) => value.add(sum),
                None => value,
            });
            count += 1;
        }
        let Some(sum) = sum else {
            return param;
        };
        let mean = Tensor::from_inner(sum.div_scalar(count));
        let mean = match &self.strategy {
            Some(strategy) => strategy.apply(mean),
            None => mean,
        };
        Param::initialized(param.id, mean)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::FlexDevice;
    use burn::nn::{BatchNorm, BatchNormConfig};

    use super::*;

    /// A batch norm beside a trainable and a frozen parameter.
    #[derive(Module, Debug)]
    struct Net {
        norm: BatchNorm,
        weight: Param<Tensor<1>>,
        frozen: Param<Tensor<1>>,
    }

    fn device() -> Device {
        Device::from(FlexDevice).autodiff()
    }

    fn net() -> Net {
        let device = device();
        Net {
            norm: BatchNormConfig::new(3).init(&device),
            weight: Param::from_tensor(Tensor::from_floats([0.1, 0.2, 0.3], &device)),
            frozen: Param::from_tensor(Tensor::from_floats([1.0 / 3.0, 0.7, 1e-3], &device))
                .set_require_grad(false),
        }
    }

    /// A forward pass in training mode on batch `seed`: one update of the
    /// running statistics, on this thread. The batch is made from `seed`
    /// alone, not drawn from the device's generator: threads that seed one
    /// device and draw from it at once (the test below, and the other tests
    /// of this binary) would race for its stream.
    fn train_on(net: &Net, seed: u64) {
        let values: Vec<f32> = (0..15)
            .map(|i| seed as f32 + 1.5 * ((i as f32 * 12.9898 + seed as f32 * 78.233).sin()))
            .collect();
        let x = Tensor::<1>::from_floats(values.as_slice(), &device()).reshape([5, 3]);
        let _ = net.norm.forward(x);
    }

    fn values(tensor: Tensor<1>) -> Vec<f32> {
        tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    }

    /// What each device's copy holds after a step on its own thread.
    fn copies(net: &Net, seeds: &[u64]) -> Vec<Net> {
        seeds
            .iter()
            .map(|&seed| {
                let copy = with_own_running_states(net, 1).remove(0);
                std::thread::scope(|s| s.spawn(|| (train_on(&copy, seed), synced(&copy)).1).join())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_fold_is_the_mean_in_device_order_of_the_devices_that_ran() {
        // Two devices: what Burn's own fold of two threads' updates gives.
        let net = net();
        let burns = with_own_running_states(&net, 1).remove(0);
        std::thread::scope(|s| {
            s.spawn(|| train_on(&burns, 1));
            s.spawn(|| train_on(&burns, 2));
        });
        let burns = burns.valid();
        let ours = copies(&net, &[1, 2]);
        fold_in_device_order(&net, &ours, &device());
        assert_eq!(
            values(net.norm.running_mean.value()),
            values(burns.norm.running_mean.value())
        );
        assert_eq!(
            values(net.norm.running_var.value()),
            values(burns.norm.running_var.value())
        );

        // Three devices: their sum in device order, divided by three.
        let net = self::net();
        let before = values(net.norm.running_mean.value());
        let three = copies(&net, &[3, 4, 5]);
        let stats: Vec<Vec<f32>> = three
            .iter()
            .map(|copy| values(copy.norm.running_mean.value()))
            .collect();
        fold_in_device_order(&net, &three, &device());
        let expected: Vec<f32> = (0..3)
            .map(|i| (stats[2][i] + (stats[1][i] + stats[0][i])) / 3.0)
            .collect();
        assert_eq!(values(net.norm.running_mean.value()), expected);
        assert_ne!(expected, before);
    }

    #[test]
    fn only_running_states_change() {
        let net = net();
        let (weight, frozen) = (values(net.weight.val()), values(net.frozen.val()));
        let before = values(net.norm.running_var.value());
        let three = copies(&net, &[6, 7, 8]);
        fold_in_device_order(&net, &three, &device());
        assert_eq!(values(net.weight.val()), weight);
        assert_eq!(values(net.frozen.val()), frozen);
        assert!(net.weight.val().is_require_grad());
        assert!(!net.frozen.val().is_require_grad());
        assert_ne!(values(net.norm.running_var.value()), before);
        let ids = running_state_ids(&net);
        assert_eq!(ids.len(), 2, "the running mean and variance");
        assert!(!ids.contains(&net.weight.id) && !ids.contains(&net.frozen.id));
    }
}
