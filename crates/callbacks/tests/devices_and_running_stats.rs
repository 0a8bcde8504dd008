//! Several devices at once, and batch-norm running statistics across
//! backups: the engine's invariants in `engine/multi_device.rs` and
//! `engine/backup.rs`, each tested by name here.

mod common;

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::LossMetric;
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearningResult, SupervisedTraining, TrainOutput,
    TrainStep,
};
use burnfit_callbacks::builtins::{
    BackupAndRestore, BackupAndRestoreConfig, BackupFrequency, StochasticWeightAveraging,
    StochasticWeightAveragingConfig,
};
use burnfit_callbacks::engine::{FitOutcome, SilentRenderer};
use burnfit_callbacks::{Callback, Callbacks, Context, Logs, Result, WithCallbacks};
use common::{Batch, Tiny};

/// Which dropout a [`Net`] uses.
#[derive(Clone, Copy, PartialEq)]
enum Drop {
    /// burnfit's, which draws from the worker's own stream when it has one.
    Burnfit,
    /// Burn's, which draws from Burn's process-wide generator.
    Burns,
}

/// `Tiny` behind a dropout and a batch norm.
#[derive(Module, Debug)]
struct Net {
    norm: BatchNorm,
    dropout: Dropout,
    burns_dropout: bool,
    tiny: Tiny,
}

impl Net {
    fn new(device: &Device, drop: Drop) -> Self {
        Self {
            norm: BatchNormConfig::new(4).init(device),
            dropout: DropoutConfig::new(0.3).init(),
            burns_dropout: drop == Drop::Burns,
            tiny: Tiny::new(device),
        }
    }

    fn classify(&self, batch: Batch) -> ClassificationOutput {
        rendezvous::meet();
        // The dropout first: its masks shape the running statistics.
        let x = if self.burns_dropout {
            self.dropout.forward(batch.x)
        } else {
            burnfit_models::nets::host_dropout::dropout(&self.dropout, batch.x)
        };
        let x = self.norm.forward(x);
        self.tiny.classify(Batch { x, y: batch.y })
    }

    /// Parameters and running statistics, flattened.
    fn values(&self) -> Vec<f32> {
        let mut values = common::weights(&self.tiny);
        for tensor in [
            self.norm.gamma.val(),
            self.norm.beta.val(),
            self.norm.running_mean.value(),
            self.norm.running_var.value(),
        ] {
            values.extend(tensor.into_data().try_to_vec::<f32>().unwrap());
        }
        values
    }
}

impl TrainStep for Net {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, batch: Batch) -> TrainOutput<ClassificationOutput> {
        let item = self.classify(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Net {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, batch: Batch) -> ClassificationOutput {
        self.classify(batch)
    }
}

/// Tells whether two device workers were inside a training step at the same
/// time: when armed, a step waits (a bounded while) for a second one to
/// arrive, and records the most steps seen inside at once.
mod rendezvous {
    use super::*;

    #[derive(Default)]
    struct State {
        armed: bool,
        inside: usize,
        most_inside: usize,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        armed: false,
        inside: 0,
        most_inside: 0,
    });
    static CHANGED: Condvar = Condvar::new();
    /// One test at a time uses it.
    pub static USER: Mutex<()> = Mutex::new(());

    pub fn arm(armed: bool) {
        let mut state = STATE.lock().unwrap();
        *state = State {
            armed,
            ..State::default()
        };
    }

    pub fn most_inside() -> usize {
        STATE.lock().unwrap().most_inside
    }

    pub fn meet() {
        let mut state = STATE.lock().unwrap();
        if !state.armed {
            return;
        }
        state.inside += 1;
        state.most_inside = state.most_inside.max(state.inside);
        CHANGED.notify_all();
        // Serial workers never meet: each waits out the bound alone.
        let (mut state, _) = CHANGED
            .wait_timeout_while(state, Duration::from_secs(5), |s| s.most_inside < 2)
            .unwrap();
        state.inside -= 1;
        // Only the first step after arming counts: a serial worker that
        // waited alone disarms it for the others.
        state.armed = false;
    }
}

/// Arms the rendezvous once, after the first step (the check of Burn's
/// generator, always in turn).
struct ArmAfterFirstStep(bool);

impl Callback for ArmAfterFirstStep {
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut burnfit_callbacks::Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        if !self.0 {
            self.0 = true;
            rendezvous::arm(true);
        }
        Ok(())
    }
}

fn two_devices() -> Vec<Device> {
    vec![common::device(), common::device()]
}

/// Trains a [`Net`] for `epochs` on 32 items in batches of `batch` (the
/// step's batch over all devices when `devices` is given), with `callbacks`.
fn train(
    dir: &std::path::Path,
    drop: Drop,
    epochs: usize,
    items: Vec<common::Item>,
    batch: usize,
    callbacks: Callbacks,
) -> (LearningResult<Net>, FitOutcome) {
    let device = common::device().autodiff();
    train_on(device, dir, drop, epochs, items, batch, callbacks)
}

/// [`train`] with the model built on `device` (an autodiff device).
fn train_on(
    device: Device,
    dir: &std::path::Path,
    drop: Drop,
    epochs: usize,
    items: Vec<common::Item>,
    batch: usize,
    mut callbacks: Callbacks,
) -> (LearningResult<Net>, FitOutcome) {
    let lr = callbacks.lr_scheduler(1e-2);
    let outcome = callbacks.outcome();
    let result = SupervisedTraining::new(
        dir,
        common::loader(items, batch),
        common::loader(common::items(8, 2), 8),
    )
    .metrics((LossMetric::new(),))
    .num_epochs(epochs)
    .renderer(Box::new(SilentRenderer))
    .with_application_logger(None)
    .with_callbacks(callbacks.quiet(true))
    .launch(Learner::new(
        Net::new(&device, drop),
        AdamConfig::new().init(),
        lr,
    ));
    let outcome = outcome.get();
    (result, outcome)
}

/// Held by the tests whose steps would disturb the rendezvous count of
/// another one running at the same time.
static ALONE: Mutex<()> = Mutex::new(());

/// A seeded run of a [`Net`] on two devices: its values, its outcome, and
/// (when `arm`) the most workers seen inside the step after the first.
fn seeded_on_two(seed: u64, drop: Drop, arm: bool) -> (Vec<f32>, FitOutcome, usize) {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    rendezvous::arm(false);
    let dir = tempfile::tempdir().unwrap();
    let mut callbacks = Callbacks::new().deterministic(seed).devices(two_devices());
    if arm {
        callbacks = callbacks.with(ArmAfterFirstStep(false));
    }
    let (result, outcome) = train(dir.path(), drop, 2, common::items(32, 3), 4, callbacks);
    let most_inside = rendezvous::most_inside();
    rendezvous::arm(false);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    (result.model.values(), outcome, most_inside)
}

#[test]
fn the_devices_work_at_once() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let (_, outcome, most_inside) = seeded_on_two(7, Drop::Burnfit, true);
    assert_eq!(most_inside, 2, "two workers in a step at once");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
}

#[test]
fn the_same_seed_and_devices_give_the_same_run_with_the_devices_at_once() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let (first, _, _) = seeded_on_two(7, Drop::Burnfit, false);
    let (again, _, _) = seeded_on_two(7, Drop::Burnfit, false);
    assert_eq!(again, first);
    let (other, _, _) = seeded_on_two(8, Drop::Burnfit, false);
    assert_ne!(other, first, "the seed decides the dropout masks");
}

#[test]
fn a_model_drawing_from_burns_generator_takes_turns_says_so_and_stays_reproducible() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let (first, outcome, most_inside) = seeded_on_two(7, Drop::Burns, true);
    assert_eq!(most_inside, 1, "the workers took turns");
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].contains("take turns"),
        "{:?}",
        outcome.warnings
    );
    let (again, _, _) = seeded_on_two(7, Drop::Burns, false);
    assert_eq!(again, first);
}

#[test]
fn the_mean_is_the_update_of_one_device_with_the_whole_batch_for_unequal_shares() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    rendezvous::arm(false);
    // 27 items: shards of 13 and 14, 4 per device a step, so each epoch
    // ends with a step of 1 item on device 0 and 2 on device 1: weights
    // 1/3 and 2/3, not halves.
    let items = common::items(27, 5);
    let dir = tempfile::tempdir().unwrap();
    let one = common::train_items(
        dir.path(),
        3,
        common::interleaved(&items, 4),
        8,
        Callbacks::new(),
    );
    let two = common::train_items(
        dir.path(),
        3,
        items,
        4,
        Callbacks::new().devices(two_devices()),
    );
    let (a, b) = (common::weights(&one.model), common::weights(&two.model));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5, "one device {a:?}\ntwo devices {b:?}");
    }
}

/// Fails at the start of global step `at` (1-based), as a kill would end
/// the run there.
struct FailAtStep {
    at: u64,
    seen: u64,
}

impl Callback for FailAtStep {
    fn on_train_batch_begin(&mut self, _batch: usize, _ctx: &mut Context) -> Result<()> {
        self.seen += 1;
        if self.seen == self.at {
            return Err(burnfit_callbacks::CallbackError::Unsupported(
                "killed".into(),
            ));
        }
        Ok(())
    }
}

fn batch_backups(dir: &std::path::Path, every: u64) -> BackupAndRestore {
    BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: dir.to_string_lossy().into_owned(),
        save_freq: BackupFrequency::Batches(every),
        delete_checkpoint: false,
        keep: 2,
    })
    .unwrap()
}

/// `resumed_at`: where the resume starts, (epoch, batches done): with two
/// devices an epoch has half the steps.
fn a_backup_mid_epoch_resumes_exactly(devices: Option<Vec<Device>>, resumed_at: (usize, usize)) {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    rendezvous::arm(false);
    let with_devices = |callbacks: Callbacks| match &devices {
        Some(devices) => callbacks.devices(devices.clone()),
        None => callbacks,
    };
    // 32 items in batches of 4 (a device): 8 steps an epoch on one device,
    // 4 on two; a backup every 3 steps, the run ends at the start of step
    // 12, so the newest backup is step 9's, in the middle of an epoch.
    let items = common::items(32, 3);
    let dir = tempfile::tempdir().unwrap();
    let straight = with_devices(Callbacks::new().deterministic(5));
    let (straight, _) = train(dir.path(), Drop::Burnfit, 3, items.clone(), 4, straight);

    let backups = dir.path().join("backups");
    let killed = with_devices(
        Callbacks::new()
            .deterministic(5)
            .with(batch_backups(&backups, 3))
            .with(FailAtStep { at: 12, seen: 0 }),
    );
    let (_, outcome) = train(dir.path(), Drop::Burnfit, 3, items.clone(), 4, killed);
    assert!(outcome.error.is_some(), "the run was cut");
    let resumed = with_devices(
        Callbacks::new()
            .deterministic(5)
            .with(batch_backups(&backups, 3)),
    );
    let (resumed, outcome) = train(dir.path(), Drop::Burnfit, 3, items, 4, resumed);
    assert_eq!(outcome.resumed_at, Some(resumed_at), "from step 9's backup");
    assert_eq!(resumed.model.values(), straight.model.values());
}

#[test]
fn a_backup_holds_the_model_as_the_next_step_will_read_it() {
    a_backup_mid_epoch_resumes_exactly(None, (1, 1));
}

#[test]
fn a_backup_holds_the_model_as_the_next_step_will_read_it_on_two_devices() {
    a_backup_mid_epoch_resumes_exactly(Some(two_devices()), (2, 1));
}

#[test]
fn a_window_cut_by_a_backup_resumes_exactly() {
    // 24 items in batches of 4: 6 steps an epoch, windows of 4 steps (the
    // last one of an epoch ends with it). A backup every 2 steps; the run
    // ends at the start of step 9, so it resumes from step 8's backup, in
    // the middle of epoch 1's first window (2 of its 4 steps done).
    let window = |t: SupervisedTraining<Tiny>| t.grads_accumulation(4);
    let dir = tempfile::tempdir().unwrap();
    let straight = common::train(dir.path(), 3, 24, 4, Callbacks::new(), window);

    let backups = dir.path().join("backups");
    let cut = Callbacks::new()
        .with(batch_backups(&backups, 2))
        .with(FailAtStep { at: 9, seen: 0 });
    let outcome = cut.outcome();
    common::train(dir.path(), 3, 24, 4, cut, window);
    assert!(outcome.get().error.is_some(), "the run was cut");
    let newest = BackupAndRestore::backups(&backups);
    assert!(newest[0].ends_with("backup-000000000008.bfk"), "{newest:?}");

    let resumed = Callbacks::new().with(batch_backups(&backups, 2));
    let outcome = resumed.outcome();
    let resumed = common::train(dir.path(), 3, 24, 4, resumed, window);
    let outcome = outcome.get();
    assert_eq!(outcome.resumed_at, Some((1, 2)), "{:?}", outcome.error);
    assert_eq!(
        common::weights(&resumed.model),
        common::weights(&straight.model)
    );
}

/// Takes a snapshot of the model at the end of epoch 0 and restores it when
/// training ends (as EarlyStopping's `restore_best_weights` does), keeping
/// the snapshot's values as they were when it was taken.
struct SnapshotThenRestore {
    snapshot: Option<burnfit_callbacks::ModelSnapshot>,
    taken: std::sync::Arc<std::sync::Mutex<Vec<f32>>>,
}

impl Callback for SnapshotThenRestore {
    fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if epoch == 0 {
            let snapshot = ctx.snapshot_model();
            *self.taken.lock().unwrap() = snapshot.downcast_ref::<Net>().unwrap().values();
            self.snapshot = Some(snapshot);
        }
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        ctx.restore_model(self.snapshot.as_ref().unwrap())
    }
}

/// A snapshot keeps the batch norm's running statistics of the moment it
/// was taken: a clone of a Burn module shares them with the live model, so
/// a snapshot that is a clone follows training and restores the best
/// epoch's weights with the last step's statistics.
#[test]
fn a_restored_snapshot_brings_back_the_running_statistics_it_was_taken_with() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let callbacks = Callbacks::new().deterministic(3).with(SnapshotThenRestore {
        snapshot: None,
        taken: taken.clone(),
    });
    let (result, outcome) = train(
        dir.path(),
        Drop::Burnfit,
        3,
        common::items(32, 3),
        4,
        callbacks,
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let taken = taken.lock().unwrap().clone();
    assert!(!taken.is_empty());
    assert_eq!(result.model.values(), taken, "as restored");
    // And after a sync (what `valid()` does): no update of the last step
    // left waiting to overwrite them.
    assert_eq!(result.model.valid().values(), taken, "after a sync");
}

/// Seeds Burn's generator at train end, before the callbacks after it.
struct SeedBurnsGeneratorAtTrainEnd(u64);

impl Callback for SeedBurnsGeneratorAtTrainEnd {
    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        common::device().autodiff().seed(self.0);
        Ok(())
    }
}

/// SWA's BatchNorm pass runs the model in training mode, dropout included.
/// In a seeded run its masks come from the run's seed and step, whichever
/// dropout the model uses: not from the state the steps left Burn's
/// process-wide generator in, which after steps on several devices is the
/// seed of whichever worker seeded it last. Here that state is set on
/// purpose, to two values; the final statistics do not change.
#[test]
fn a_batch_norm_pass_draws_from_the_runs_seed_not_from_where_the_workers_left_burns_generator() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    rendezvous::arm(false);
    for drop in [Drop::Burnfit, Drop::Burns] {
        let run = |burns_state: u64| {
            let swa = StochasticWeightAveraging::new(StochasticWeightAveragingConfig {
                swa_lrs: 1e-3,
                swa_epoch_start: 1.0,
                annealing_epochs: 1,
                annealing_strategy: "cos".into(),
            })
            .unwrap();
            let callbacks = Callbacks::new()
                .deterministic(5)
                .devices(two_devices())
                .with(SeedBurnsGeneratorAtTrainEnd(burns_state))
                .with(swa);
            let dir = tempfile::tempdir().unwrap();
            let (result, outcome) = train(dir.path(), drop, 2, common::items(32, 3), 4, callbacks);
            assert!(outcome.error.is_none(), "{:?}", outcome.error);
            result.model.values()
        };
        assert_eq!(run(1), run(2));
    }
}

/// A seeded run of a [`Net`] built on `device` and trained on three of
/// it, in batches of 6 (2 items a device, 6 steps an epoch): its values.
fn seeded_on_three(device: Device) -> Vec<f32> {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    rendezvous::arm(false);
    let callbacks = Callbacks::new()
        .deterministic(7)
        .devices(vec![device.clone(); 3]);
    let dir = tempfile::tempdir().unwrap();
    let (result, outcome) = train_on(
        device,
        dir.path(),
        Drop::Burnfit,
        2,
        common::items(36, 3),
        6,
        callbacks,
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    result.model.values()
}

/// Burn folds the threads' running statistics in a `HashMap`'s order,
/// which changes from run to run: with three devices the sums, and so the
/// statistics, changed with it. The engine folds them in device order.
#[test]
fn three_devices_give_the_same_running_statistics_every_run() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let first = seeded_on_three(common::device().autodiff());
    for _ in 0..3 {
        assert_eq!(seeded_on_three(common::device().autodiff()), first);
    }
}

/// A batch norm built on a gradient-checkpointing device trains on several
/// of them: each worker's copy, and the folded statistics, keep the model's
/// strategy (Burn refuses to mix two strategies in one operation).
#[test]
fn a_batch_norm_model_built_for_gradient_checkpointing_trains_on_three_devices() {
    let _one = rendezvous::USER.lock().unwrap_or_else(|e| e.into_inner());
    let plain = seeded_on_three(common::device().autodiff());
    let checkpointed = seeded_on_three(common::device().autodiff().gradient_checkpointing());
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!((a - b).abs() <= 1e-5, "{plain:?} vs {checkpointed:?}");
    }
}
