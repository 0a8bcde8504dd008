//! [`Timer`]: stop training once a wall-time budget is spent (Lightning's
//! `Timer` callback).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "Timer";

/// When [`Timer`] checks its budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerInterval {
    /// After every training batch (the default, Lightning's `"step"`).
    #[default]
    Step,
    /// After every epoch.
    Epoch,
}

/// The parameters of [`Timer`], with Lightning's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerConfig {
    /// The budget: `"DD:HH:MM:SS"` (Lightning's spelling, e.g.
    /// `"00:12:00:00"`), `"HH:MM:SS"`, or a number of seconds.
    pub duration: TimerDuration,
    /// When to check: `"step"` (default) or `"epoch"`.
    #[serde(default)]
    pub interval: TimerInterval,
    /// Print a line when the budget stops training (default `true`).
    #[serde(default = "default_true")]
    pub verbose: bool,
}

fn default_true() -> bool {
    true
}

/// A duration written as `"DD:HH:MM:SS"`, `"HH:MM:SS"` or seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number of seconds, \"DD:HH:MM:SS\" or \"HH:MM:SS\""
)]
pub enum TimerDuration {
    /// Seconds.
    Seconds(f64),
    /// `"DD:HH:MM:SS"` or `"HH:MM:SS"`.
    Text(String),
}

impl TimerDuration {
    /// The duration, or why it cannot be read.
    pub fn to_duration(&self) -> std::result::Result<Duration, String> {
        let seconds = match self {
            TimerDuration::Seconds(s) => *s,
            TimerDuration::Text(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                if !(3..=4).contains(&parts.len()) {
                    return Err(format!(
                        "{text:?}: write \"DD:HH:MM:SS\", \"HH:MM:SS\" or a number of seconds"
                    ));
                }
                let units = [86_400.0, 3_600.0, 60.0, 1.0];
                let units = &units[4 - parts.len()..];
                let mut total = 0.0;
                for (part, unit) in parts.iter().zip(units) {
                    let value: f64 = part
                        .trim()
                        .parse()
                        .map_err(|_| format!("{text:?}: `{part}` is not a number"))?;
                    if value.is_sign_negative() {
                        // "-00:00:01" would read as one second.
                        return Err(format!("{text:?}: `{part}` is negative"));
                    }
                    total += value * unit;
                }
                total
            }
        };
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(format!("must be a positive duration, got {seconds} s"));
        }
        Ok(Duration::from_secs_f64(seconds))
    }
}

/// Stops training once the time spent training reaches `duration`, checked
/// after every batch (or epoch). The stop is a normal one: the epoch's end
/// hooks run (so checkpoints are written), then training ends.
///
/// The time counted is the time between `on_train_begin` and the check,
/// summed over resumes: the elapsed time is part of its state, so a run
/// resumed from a backup has only the rest of its budget.
///
/// ```
/// use burnfit_core::builtins::{Timer, TimerConfig, TimerDuration};
///
/// let timer = Timer::new(TimerConfig {
///     duration: TimerDuration::Text("00:01:30:00".into()),
///     interval: Default::default(),
///     verbose: true,
/// }).unwrap();
/// assert_eq!(timer.budget().as_secs(), 5400);
/// ```
#[derive(Debug)]
pub struct Timer {
    config: TimerConfig,
    budget: Duration,
    /// Time spent in earlier processes (restored from a backup).
    earlier: Duration,
    started: Option<Instant>,
}

impl Timer {
    /// Checks the duration and builds the callback.
    pub fn new(config: TimerConfig) -> Result<Self> {
        let budget =
            config
                .duration
                .to_duration()
                .map_err(|message| CallbackError::InvalidParameter {
                    callback: NAME,
                    param: "duration",
                    message,
                })?;
        Ok(Self {
            config,
            budget,
            earlier: Duration::ZERO,
            started: None,
        })
    }

    /// The wall-time budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Time spent training so far, resumes included.
    pub fn elapsed(&self) -> Duration {
        self.earlier + self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    fn check(&mut self, ctx: &mut Context) {
        if self.elapsed() < self.budget || ctx.stop_requested() {
            return;
        }
        let reason = format!(
            "Timer: time limit of {:.0} s reached",
            self.budget.as_secs_f64()
        );
        if self.config.verbose {
            ctx.info(format!("{reason}. Signaling Trainer to stop."));
        }
        ctx.stop_training(reason);
    }
}

impl Callback for Timer {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        if self.config.interval == TimerInterval::Step {
            self.check(ctx);
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if self.config.interval == TimerInterval::Epoch {
            self.check(ctx);
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&TimerState {
            elapsed_seconds: self.elapsed().as_secs_f64(),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: TimerState = crate::error::state_from_json(state)?;
        self.earlier = Duration::from_secs_f64(state.elapsed_seconds.max(0.0));
        self.started = None;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct TimerState {
    elapsed_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_lightning_spelling() {
        let parse = |text: &str| TimerDuration::Text(text.into()).to_duration();
        assert_eq!(
            parse("00:12:00:00").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse("01:02:03").unwrap(), Duration::from_secs(3723));
        assert!(parse("12").is_err());
        assert!(parse("aa:00:00").is_err());
        assert!(TimerDuration::Seconds(0.0).to_duration().is_err());
        assert!(parse("-00:00:01").is_err(), "a sign on a zero part");
        assert!(parse("00:-1:30").is_err());
        assert_eq!(
            TimerDuration::Seconds(2.5).to_duration().unwrap(),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn resumed_timer_has_only_the_rest_of_its_budget() {
        let config: TimerConfig = serde_json::from_str(r#"{"duration": 10}"#).unwrap();
        let mut timer = Timer::new(config).unwrap();
        timer
            .load_state(serde_json::json!({"elapsed_seconds": 12.0}))
            .unwrap();
        let mut ctl = crate::testing::ScriptedControl::new(0.1);
        let mut ctx = Context::new(&mut ctl);
        timer.on_train_begin(&mut ctx).unwrap();
        timer
            .on_train_batch_end(0, &mut Logs::new(), &mut ctx)
            .unwrap();
        assert!(ctl.stop_reason().unwrap().contains("time limit"));
    }
}
