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
//! * **The devices work at once.** Each worker forks the model, runs its
//!   step and brings its gradients to the first device on its own thread,
//!   while the others do the same; only the combination waits for all.
//! * **The same seed and devices give the same run, with the devices at
//!   once.** With `Callbacks::deterministic(seed)` each worker seeds its
//!   device and gets a random stream of its own ([`burnfit_core::random`])
//!   from the seed, the step and the device index; model code that draws
//!   from it (burnfit's dropout) draws the same numbers whatever the
//!   scheduling. Burn's own generators are process-wide, so a model that
//!   draws from them (Burn's `Dropout`) would draw in a racy order: the
//!   first step of each launch runs the workers in turn and checks whether
//!   Burn's generator moved; if it did, the workers keep taking turns for
//!   the whole run (reproducible, not parallel) and a warning says why.
//!   The gradients are combined in device order, so the reduction's order
//!   is fixed. After steps at once, Burn's generator is left wherever the
//!   worker that seeded it last left it, so the coordinator never draws
//!   from it as it stands: a pass outside the steps (SWA's BatchNorm pass,
//!   `update_batch_norm`) draws from a stream and a reseeding of its own,
//!   from the seed and the step.
//! * **A worker's panic is a training error naming the device**, and the
//!   coordinator stops before the optimizer step: nothing is updated or
//!   written from a half step, and the backups already written stay.
//! * **A step that does not end is not waited for forever.** With a step
//!   timeout (`Callbacks::step_timeout`), a device that has not answered
//!   by then (a remote server that stopped answering without closing its
//!   connection) ends training with an error naming it. A stop from outside
//!   (Ctrl-C) while a step runs waits [`INTERRUPT_GRACE`] for it, then
//!   leaves it: training stops at the last finished batch. A worker left
//!   behind is not joined.
//! * **BatchNorm statistics are the mean over the devices, in device
//!   order.** Each worker updates running states of its own copy, and the
//!   coordinator folds their values into the learner's in device order
//!   ([`running_states`]): Burn's own fold sums in a `HashMap`'s order,
//!   which differs from run to run with three devices or more. Each worker
//!   reads the same folded value whatever the order in which they run.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use burn::train::{LearnerModel, TrainOutput, TrainStep};

use super::batch_loss::BatchLoss;
use super::panic::panic_message;
use super::params::sync_running_states;
use super::running_states;

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
    /// Wait for this device's turn (seeded runs whose model draws from
    /// Burn's process-wide generator, and every first step).
    in_turn: bool,
    /// Check whether the step drew from Burn's generator.
    probe: bool,
}

/// One device's result: its output, whether it drew from Burn's
/// generator and its copy of the model with the step's running statistics
/// ([`running_states::synced`]), or the panic message.
type Answer<M> = (usize, Result<Option<(Output<M>, bool, M)>, String>);

/// How the workers of a run are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// A seeded run's first step: in turn, checking Burn's generator.
    Probe,
    /// Every device at once.
    AtOnce,
    /// One device after the other: the model draws from Burn's generator.
    InTurn,
}

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
    schedule: Cell<Schedule>,
    warning: Cell<Option<String>>,
    step_timeout: Option<Duration>,
    /// A worker was left in the middle of a step: not joined on drop.
    abandoned: Cell<bool>,
}

/// How long a step may still run after a stop from outside before it is
/// left: enough for any local step, not for a hung remote one.
pub(crate) const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// How often the coordinator looks at the stop flag and the clock while
/// the workers run.
const POLL: Duration = Duration::from_millis(50);

/// Why a step on several devices did not produce its gradients.
#[derive(Debug)]
pub(crate) enum StepFailure {
    /// A worker failed, or did not answer within the step timeout.
    Failed(String),
    /// A stop from outside came while the step ran, and the step was left.
    Interrupted,
}

impl<M> DeviceWorkers<M>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    /// Starts one worker thread per device; a step not finished within
    /// `step_timeout` fails.
    pub fn start(devices: Vec<Device>, step_timeout: Option<Duration>) -> Self {
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
                        let in_turn = job.in_turn;
                        if in_turn {
                            turn.wait_for(index);
                        }
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            work(job, index, &device, &main)
                        }))
                        .map_err(|payload| panic_message(payload.as_ref()));
                        if in_turn {
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
            schedule: Cell::new(Schedule::Probe),
            warning: Cell::new(None),
            step_timeout,
            abandoned: Cell::new(false),
        }
    }

    /// Why the workers take turns instead of running at once, once that is
    /// known (the caller shows it to the user).
    pub fn take_warning(&self) -> Option<String> {
        self.warning.take()
    }

    /// Runs one step: `items[d]` on device `d` (`None`: no data left for
    /// it), each worker with `model` forked to its device and, when `seed`
    /// is given, its device and random stream seeded from `(seed, d)`.
    /// `stopped` tells whether a stop came from outside. Returns the outputs
    /// in device order with the gradients on the first device, or why there
    /// are none.
    pub fn step(
        &self,
        model: &M,
        items: Vec<Option<Input<M>>>,
        seed: Option<u64>,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Vec<(usize, Output<M>)>, StepFailure> {
        let schedule = match seed {
            Some(_) => self.schedule.get(),
            None => Schedule::AtOnce,
        };
        sync_running_states(model);
        self.turn.pass(0);
        let copies = running_states::with_own_running_states(model, self.jobs.len());
        for (index, ((item, jobs), copy)) in
            items.into_iter().zip(&self.jobs).zip(copies).enumerate()
        {
            let job = Job {
                model: copy,
                item,
                seed: seed.map(|s| mix(s, index as u64)),
                in_turn: schedule != Schedule::AtOnce,
                probe: schedule == Schedule::Probe,
            };
            jobs.send(job).map_err(|_| {
                StepFailure::Failed(format!("the worker of device {index} has stopped"))
            })?;
        }
        let answers = self.collect(stopped)?;
        // Every worker answered, even after one failed: an answer left in
        // the channel would be taken for the next step's.
        let mut outputs = Vec::new();
        let mut copies = Vec::new();
        let mut drew = false;
        let mut failure: Option<String> = None;
        for (index, answer) in answers {
            match answer {
                Ok(Some((output, drew_here, copy))) => {
                    drew |= drew_here;
                    outputs.push((index, output));
                    copies.push((index, copy));
                }
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
            return Err(StepFailure::Failed(failure));
        }
        if schedule == Schedule::Probe && !outputs.is_empty() {
            self.schedule.set(if drew {
                self.warning.set(Some(
                    "the model draws random numbers from Burn's process-wide generator (Burn's \
                     `Dropout` does): to keep this seeded run reproducible, the devices take \
                     turns instead of working at once; burnfit_models::nets::host_dropout::dropout \
                     (or seeds from burnfit_core::random::next_seed) lets them work at once"
                        .into(),
                ));
                Schedule::InTurn
            } else {
                Schedule::AtOnce
            });
        }
        outputs.sort_by_key(|(index, _)| *index);
        copies.sort_by_key(|(index, _)| *index);
        let copies: Vec<M> = copies.into_iter().map(|(_, copy)| copy).collect();
        running_states::fold_in_device_order(model, &copies, &self.devices[0]);
        Ok(outputs)
    }

    /// Every worker's answer to the step just sent, unless the step timeout
    /// passes first, or a stop from outside came and the grace passed.
    fn collect(&self, stopped: &dyn Fn() -> bool) -> Result<Vec<Answer<M>>, StepFailure> {
        let started = Instant::now();
        let mut stop_seen: Option<Instant> = None;
        let mut answers = Vec::with_capacity(self.jobs.len());
        while answers.len() < self.jobs.len() {
            match self.answers.recv_timeout(POLL) {
                Ok(answer) => {
                    answers.push(answer);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StepFailure::Failed("the device workers stopped".into()));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let waiting = || self.waiting_for(&answers);
            if let Some(limit) = self.step_timeout
                && started.elapsed() >= limit
            {
                self.abandoned.set(true);
                return Err(StepFailure::Failed(format!(
                    "no answer from {} within the step timeout of {} s (a remote server that \
                     stopped answering?)",
                    waiting(),
                    limit.as_secs_f64()
                )));
            }
            if stop_seen.is_none() && stopped() {
                stop_seen = Some(Instant::now());
            }
            if stop_seen.is_some_and(|at| at.elapsed() >= INTERRUPT_GRACE) {
                log::warn!(
                    "stopping without the step in progress: no answer from {}",
                    waiting()
                );
                self.abandoned.set(true);
                return Err(StepFailure::Interrupted);
            }
        }
        Ok(answers)
    }

    /// The devices whose answer is missing, for a message.
    fn waiting_for(&self, answers: &[Answer<M>]) -> String {
        let missing: Vec<String> = (0..self.devices.len())
            .filter(|d| !answers.iter().any(|(i, _)| i == d))
            .map(|d| format!("device {d} ({:?})", self.devices[d]))
            .collect();
        missing.join(", ")
    }
}

/// A worker's step: fork the model to `device`, run the step there with the
/// device and this thread's random stream seeded, bring the gradients to
/// `main`, and (when probing) tell whether Burn's generator was drawn from.
fn work<M>(
    job: Job<M>,
    index: usize,
    device: &Device,
    main: &Device,
) -> Option<(Output<M>, bool, M)>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    let Job {
        model,
        item,
        seed,
        probe,
        ..
    } = job;
    let item = item?;
    if let Some(seed) = seed {
        device.seed(seed);
    }
    let stream = seed.map(|s| mix(s, STREAM_SALT));
    burnfit_core::random::with_stream(stream, || {
        let model = model.fork(device);
        let mut output = TrainStep::step(&model, item);
        // Brought to the first device here, so that a failed transfer (a
        // lost remote server) is this device's failure (within the step
        // timeout), and the transfers of the devices overlap.
        if index != 0 {
            output.grads = output.grads.to_device(main, &model);
            // The output too: metrics then never wait on this device.
            output.item = output.item.to_device(main);
        }
        let drew = match (probe, seed) {
            (true, Some(seed)) => burn_generator_moved(device, seed),
            _ => false,
        };
        Some((output, drew, running_states::synced(&model)))
    })
}

/// Salt of a worker's random stream, so that it differs from the seed of
/// Burn's generator on that device.
const STREAM_SALT: u64 = 0x5EED_0F57_AEA4;

/// Whether Burn's generator on `device`, seeded with `seed` before the
/// step, was drawn from since: its next numbers are not those of a fresh
/// seeding. Leaves the generator seeded afresh.
fn burn_generator_moved(device: &Device, seed: u64) -> bool {
    let base = device.clone().without_autodiff();
    let draw = || Tensor::<1>::random([4], Distribution::Default, &base).into_data();
    let now = draw();
    device.seed(seed);
    now != draw()
}

impl<M: LearnerModel> Drop for DeviceWorkers<M> {
    fn drop(&mut self) {
        self.jobs.clear();
        if self.abandoned.get() {
            // A worker may never come back (a hung remote step): the
            // threads end on their own once their step returns.
            return;
        }
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
/// of items each processed ([`BatchLoss::batch_size`]). When no device
/// knows its count, the shares are equal; a mix of known and unknown counts
/// is refused, since no weighting of it is the mean over the items.
pub(crate) fn weights(
    reduction: GradientReduction,
    items: &[Option<usize>],
) -> Result<Vec<f64>, String> {
    if reduction == GradientReduction::Sum {
        return Ok(vec![1.0; items.len()]);
    }
    let counts: Vec<f64> = match items.iter().copied().collect::<Option<Vec<usize>>>() {
        Some(counts) => counts.into_iter().map(|n| n as f64).collect(),
        None if items.iter().all(Option::is_none) => vec![1.0; items.len()],
        None => {
            let unknown: Vec<String> = items
                .iter()
                .enumerate()
                .filter(|(_, n)| n.is_none())
                .map(|(d, _)| d.to_string())
                .collect();
            return Err(format!(
                "the training output of device(s) {} has no item count while the others have \
                 one: the gradient mean cannot be weighted by the items; implement \
                 BatchLoss::batch_size for every output, or use GradientReduction::Sum",
                unknown.join(", ")
            ));
        }
    };
    let total: f64 = counts.iter().sum();
    Ok(counts.iter().map(|n| n / total.max(1.0)).collect())
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
        let mean = |items: &[Option<usize>]| weights(GradientReduction::Mean, items).unwrap();
        assert_eq!(mean(&[Some(32), Some(32)]), [0.5, 0.5]);
        assert_eq!(mean(&[Some(30), Some(10)]), [0.75, 0.25]);
        assert_eq!(
            weights(GradientReduction::Sum, &[Some(30), Some(10)]).unwrap(),
            [1.0, 1.0]
        );
        assert_eq!(mean(&[None, None, None, None]), [0.25; 4]);
    }

    #[test]
    fn mixed_known_and_unknown_item_counts_are_refused() {
        let error = weights(GradientReduction::Mean, &[Some(3), None, Some(1)]).unwrap_err();
        assert!(error.contains("device(s) 1 "), "{error}");
        assert!(weights(GradientReduction::Sum, &[Some(3), None]).is_ok());
    }
}
