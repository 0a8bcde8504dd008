//! [`CallbackLr`]: a learning-rate scheduler callbacks can steer.

use std::sync::{Arc, Mutex};

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};

/// Wraps any Burn [`LrScheduler`] so callbacks can change the learning rate.
///
/// Burn's `Learner` owns its scheduler, so the only way for a callback to
/// change the rate of the next optimizer step is through the scheduler
/// itself. `CallbackLr` asks the wrapped scheduler for its rate and multiplies
/// it by a factor that callbacks set: with a constant rate (Keras's usual
/// case), [`set`](LrHandle::set) makes the rate exactly the requested value;
/// with a schedule (cosine, warm-up…), the schedule keeps its shape and a
/// callback's change scales it from then on (ReduceLROnPlateau on top of a
/// cosine decay halves the whole remaining curve). The factor is part of the
/// scheduler record, so Burn's checkpoints and our backups restore it.
///
/// ```
/// use burn::optim::lr_scheduler::LrScheduler;
/// use burnfit_callbacks::engine::CallbackLr;
///
/// let mut lr = CallbackLr::new(1e-3);
/// let handle = lr.handle();
/// assert_eq!(lr.step(), 1e-3);
/// handle.set(5e-4);
/// assert_eq!(lr.step(), 5e-4);
/// ```
#[derive(Clone)]
pub struct CallbackLr {
    shared: Arc<Mutex<Shared>>,
}

struct Shared {
    scheduler: Box<dyn LrScheduler>,
    factor: f64,
    /// A rate set while the wrapped schedule gives 0 (a factor cannot express it).
    absolute: Option<f64>,
}

/// A cloneable handle on a [`CallbackLr`], used by the training glue.
#[derive(Clone)]
pub struct LrHandle {
    shared: Arc<Mutex<Shared>>,
}

const FACTOR_KEY: &str = "burnfit_factor";
const ABSOLUTE_KEY: &str = "burnfit_absolute";

impl CallbackLr {
    /// Wraps `scheduler` (a plain `f64` is a constant rate).
    pub fn new(scheduler: impl LrScheduler + 'static) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                scheduler: Box::new(scheduler),
                factor: 1.0,
                absolute: None,
            })),
        }
    }

    /// A handle to read and change the rate.
    pub fn handle(&self) -> LrHandle {
        LrHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    fn apply(&self, base: f64) -> f64 {
        match self.absolute {
            Some(lr) => lr,
            None => base * self.factor,
        }
    }
}

impl LrHandle {
    /// The rate the next optimizer step will use.
    pub fn peek(&self) -> f64 {
        let shared = self.shared.lock().expect("lr lock");
        let mut probe = shared.scheduler.clone();
        shared.apply(probe.step())
    }

    /// Makes the next optimizer step use `lr` (and scales the rest of the
    /// schedule by the same factor).
    pub fn set(&self, lr: f64) {
        let mut shared = self.shared.lock().expect("lr lock");
        let mut probe = shared.scheduler.clone();
        let base = probe.step();
        if base > 0.0 && base.is_finite() {
            shared.factor = lr / base;
            shared.absolute = None;
        } else {
            shared.absolute = Some(lr);
        }
    }

    /// The factor applied to the wrapped schedule (1 until a callback changes it).
    pub fn factor(&self) -> f64 {
        self.shared.lock().expect("lr lock").factor
    }
}

impl LrScheduler for CallbackLr {
    fn step(&mut self) -> LearningRate {
        let mut shared = self.shared.lock().expect("lr lock");
        let base = shared.scheduler.step();
        shared.apply(base)
    }

    fn to_record(&self) -> LrSchedulerRecord {
        let shared = self.shared.lock().expect("lr lock");
        let mut record = LrSchedulerRecord::new()
            .with_record("inner", shared.scheduler.to_record())
            .with_scalar(FACTOR_KEY, shared.factor);
        if let Some(absolute) = shared.absolute {
            record = record.with_scalar(ABSOLUTE_KEY, absolute);
        }
        record
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        let mut shared = self.shared.lock().expect("lr lock");
        shared.scheduler.load_record(record.record("inner"));
        shared.factor = record.scalar::<f64>(FACTOR_KEY).unwrap_or(1.0);
        shared.absolute = record.scalar::<f64>(ABSOLUTE_KEY);
    }
}
