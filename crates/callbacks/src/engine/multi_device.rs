//! Training steps on several devices: one learner, N gradient workers.
//!
//! One persistent thread per device. Each step, the coordinator (the
//! training thread, where every hook runs) hands each worker the current
//! model and that device's batch; the worker forks the model to its device,
//! runs the forward and backward pass, and returns its gradients. The
//! coordinator combines them in device order and takes one optimizer step on
//! the one learner, so a stop, a learning-rate change, restored weights or a
//! checkpoint act on it, and the next step's fork carries them to every
//! device.
//!
//! Invariants, each with a test:
//!
//! * **The mean is the update of one device with the whole batch.** With
//!   [`GradientReduction::Mean`] (the default) each device's gradients are
//!   weighted by its share of the step's items (`n_d / Σ n`), which is the
//!   gradient of the mean loss over all of them; a device that got no data
//!   (an uneven last step) takes no part. [`GradientReduction::Sum`] adds
//!   them, as Burn's own multi-device strategy does.
//! * **The same seed and devices give the same run.** With
//!   `Callbacks::deterministic(seed)` the workers run their steps in device
//!   order, each after seeding its device from the seed, the step and the
//!   device index: Burn's random generators are process-wide, so this fixes
//!   the order in which dropout draws its masks. (On GPUs the work launched
//!   by each worker still overlaps; on one CPU device the steps would compete
//!   for the same cores anyway.)
//! * **A worker's panic is a training error naming the device**, and the
//!   coordinator stops before the optimizer step: nothing is updated or
//!   written from a half step, and the backups already written stay.
//! * **BatchNorm statistics** are Burn's `RunningState`s, which keep one
//!   value per thread and average them: with one thread per device, the
//!   running statistics are the mean over the devices.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use burn::train::{LearnerModel, TrainOutput, TrainStep};

use super::batch_loss::BatchLoss;
use super::strategy::panic_message;

/// How the gradients of the devices are combined into one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientReduction {
    /// Weighted by each device's share of the step's items: the same update
    /// as one device with the whole batch.
    #[default]
    Mean,
    /// Added up, as Burn's `ExecutionStrategy::MultiDevice` does.
    Sum,
}

type Input<M> = <M as TrainStep>::Input;
type Output<M> = TrainOutput<<M as TrainStep>::Output>;

/// One device's work for a step.
struct Job<M: LearnerModel> {
    model: M,
    item: Option<Input<M>>,
    seed: Option<u64>,
}

/// One device's answer: its output, or the panic message.
type Answer<M> = (usize, Result<Option<Output<M>>, String>);

/// Whose turn it is, when the workers take turns (seeded runs).
#[derive(Default)]
struct Turn {
    next: Mutex<usize>,
    changed: Condvar,
}

impl Turn {
    fn wait_for(&self, device: usize) {
        let mut next = self.next.lock().expect("turn lock");
        while *next != device {
            next = self.changed.wait(next).expect("turn lock");
        }
    }

    fn pass(&self, to: usize) {
        *self.next.lock().expect("turn lock") = to;
        self.changed.notify_all();
    }
}

/// The worker threads, one per device.
pub(crate) struct DeviceWorkers<M: LearnerModel> {
    devices: Vec<Device>,
    jobs: Vec<Sender<Job<M>>>,
    answers: Receiver<Answer<M>>,
    threads: Vec<JoinHandle<()>>,
    turn: Arc<Turn>,
}

impl<M> DeviceWorkers<M>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    /// Starts one worker thread per device.
    pub fn start(devices: Vec<Device>) -> Self {
        let (answer, answers) = channel();
        let turn = Arc::new(Turn::default());
        let count = devices.len();
        let mut jobs = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let main = devices[0].clone();
        for (index, device) in devices.iter().enumerate() {
            let main = main.clone();
            let (sender, receiver) = channel::<Job<M>>();
            let answer = answer.clone();
            let device = device.clone();
            let turn = turn.clone();
            let thread = std::thread::Builder::new()
                .name(format!("burnfit-device-{index}"))
                .spawn(move || {
                    for job in receiver {
                        let seeded = job.seed.is_some();
                        if seeded {
                            turn.wait_for(index);
                        }
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job.item.map(|item| {
                                if let Some(seed) = job.seed {
                                    device.seed(seed);
                                }
                                let model = job.model.fork(&device);
                                let mut output = TrainStep::step(&model, item);
                                // Brought to the first device here, so that a
                                // failed transfer (a lost remote server) is
                                // this device's failure.
                                if index != 0 {
                                    output.grads = output.grads.to_device(&main, &model);
                                }
                                output
                            })
                        }))
                        .map_err(|payload| panic_message(payload.as_ref()));
                        if seeded {
                            turn.pass((index + 1) % count);
                        }
                        if answer.send((index, result)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn a device worker thread");
            jobs.push(sender);
            threads.push(thread);
        }
        Self {
            devices,
            jobs,
            answers,
            threads,
            turn,
        }
    }

    /// Runs one step: `items[d]` on device `d` (`None`: no data left for
    /// it), each worker with `model` forked to its device and, when `seed`
    /// is given, its device seeded from `(seed, d)`. Returns the outputs in
    /// device order with the gradients on the first device, or the failure
    /// of the first worker that panicked.
    pub fn step(
        &self,
        model: &M,
        items: Vec<Option<Input<M>>>,
        seed: Option<u64>,
    ) -> Result<Vec<(usize, Output<M>)>, String> {
        self.turn.pass(0);
        for (index, (item, jobs)) in items.into_iter().zip(&self.jobs).enumerate() {
            let job = Job {
                model: model.clone(),
                item,
                seed: seed.map(|s| mix(s, index as u64)),
            };
            jobs.send(job)
                .map_err(|_| format!("the worker of device {index} has stopped"))?;
        }
        // Every worker answers before this returns, even after one failed:
        // an answer left in the channel would be taken for the next step's.
        let mut outputs = Vec::new();
        let mut failure: Option<String> = None;
        for _ in 0..self.jobs.len() {
            let (index, answer) = self
                .answers
                .recv()
                .map_err(|_| "the device workers stopped".to_string())?;
            match answer {
                Ok(Some(output)) => outputs.push((index, output)),
                Ok(None) => {}
                Err(message) => {
                    failure.get_or_insert(format!(
                        "the training worker on device {index} ({:?}) panicked: {message}",
                        self.devices[index]
                    ));
                }
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        outputs.sort_by_key(|(index, _)| *index);
        Ok(outputs)
    }
}

impl<M: LearnerModel> Drop for DeviceWorkers<M> {
    fn drop(&mut self) {
        self.jobs.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Combines the devices' gradients (all on one device) into one, with the
/// given weights, parameter by parameter.
pub(crate) fn combine<M: Module>(
    model: &M,
    grads: Vec<GradientsParams>,
    weights: &[f64],
) -> GradientsParams {
    struct Combine {
        grads: Vec<GradientsParams>,
        weights: Vec<f64>,
        combined: GradientsParams,
    }
    impl ModuleVisitor for Combine {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mut sum: Option<Tensor<D>> = None;
            for (grads, weight) in self.grads.iter_mut().zip(&self.weights) {
                if let Some(grad) = grads.remove::<D>(param.id) {
                    let grad = if *weight == 1.0 {
                        grad
                    } else {
                        grad.mul_scalar(*weight)
                    };
                    sum = Some(match sum {
                        Some(sum) => sum.add(grad),
                        None => grad,
                    });
                }
            }
            if let Some(sum) = sum {
                self.combined.register(param.id, sum);
            }
        }
    }
    let mut visitor = Combine {
        grads,
        weights: weights.to_vec(),
        combined: GradientsParams::new(),
    };
    model.visit(&mut visitor);
    visitor.combined
}

/// The weights of each device's gradients for `reduction`, from the number
/// of items each processed (`None`: unknown, counted as equal shares).
pub(crate) fn weights(reduction: GradientReduction, items: &[Option<usize>]) -> Vec<f64> {
    match reduction {
        GradientReduction::Sum => vec![1.0; items.len()],
        GradientReduction::Mean => {
            let counts: Vec<f64> = items.iter().map(|n| n.unwrap_or(1) as f64).collect();
            let total: f64 = counts.iter().sum();
            counts.iter().map(|n| n / total.max(1.0)).collect()
        }
    }
}

/// SplitMix64 of `seed` and `n`: a well-spread seed per step and device.
pub(crate) fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_weights_follow_the_items_and_skip_idle_devices() {
        assert_eq!(
            weights(GradientReduction::Mean, &[Some(32), Some(32)]),
            [0.5, 0.5]
        );
        assert_eq!(
            weights(GradientReduction::Mean, &[Some(30), Some(10)]),
            [0.75, 0.25]
        );
        assert_eq!(
            weights(GradientReduction::Sum, &[Some(30), Some(10)]),
            [1.0, 1.0]
        );
        assert_eq!(
            weights(GradientReduction::Mean, &[None, None, None, None]),
            [0.25; 4]
        );
    }
}
