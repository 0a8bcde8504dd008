//! [`LambdaCallback`]: a callback made of closures (Keras's
//! `keras.callbacks.LambdaCallback`).

use crate::callback::Callback;
use crate::context::Context;
use crate::error::Result;
use crate::logs::Logs;

/// What a [`LambdaCallback`] closure may return: `()` or [`Result<()>`].
pub trait HookOutput {
    /// Converts to the hook's result.
    fn into_result(self) -> Result<()>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl HookOutput for Result<()> {
    fn into_result(self) -> Result<()> {
        self
    }
}

type Hook0 = Box<dyn FnMut(&mut Context) -> Result<()> + Send>;
type HookIdx = Box<dyn FnMut(usize, &mut Context) -> Result<()> + Send>;
type HookIdxLogs = Box<dyn FnMut(usize, &mut Logs, &mut Context) -> Result<()> + Send>;
type HookIdxRefLogs = Box<dyn FnMut(usize, &Logs, &mut Context) -> Result<()> + Send>;
type HookLogs = Box<dyn FnMut(&Logs, &mut Context) -> Result<()> + Send>;

/// A callback built from closures, one per hook you need.
///
/// Each closure gets the hook's arguments and the [`Context`]; it returns
/// `()` or a [`Result<()>`] (an `Err` ends training like any hook error).
/// The builder methods have the hooks' names, so to call a hook of a
/// `LambdaCallback` directly use the trait: `Callback::on_epoch_end(&mut cb, …)`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use burnfit_core::builtins::LambdaCallback;
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let callback = LambdaCallback::new()
///     .on_epoch_end(move |epoch, logs, _ctx| sink.lock().unwrap().push((epoch, logs.get("loss"))))
///     .on_train_end(|_logs, ctx| ctx.info("done"));
/// let mut list = CallbackList::new();
/// list.push(callback);
/// let mut ctl = ScriptedControl::new(0.01);
/// drive(&mut list, &mut ctl, &Script::from_epochs([Logs::from_iter([("loss", 0.5)])]));
/// assert_eq!(*seen.lock().unwrap(), [(0, Some(0.5))]);
/// assert_eq!(ctl.infos(), ["done"]);
/// ```
#[derive(Default)]
pub struct LambdaCallback {
    train_begin: Option<Hook0>,
    train_end: Option<HookLogs>,
    epoch_begin: Option<HookIdx>,
    epoch_end: Option<HookIdxLogs>,
    batch_begin: Option<HookIdx>,
    batch_end: Option<HookIdxLogs>,
    validation_begin: Option<Hook0>,
    validation_batch_end: Option<HookIdxRefLogs>,
    validation_end: Option<HookLogs>,
    wants_batch_logs: bool,
}

impl LambdaCallback {
    /// A callback with no hook.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` at `on_train_begin`.
    pub fn on_train_begin<R: HookOutput>(
        mut self,
        mut f: impl FnMut(&mut Context) -> R + Send + 'static,
    ) -> Self {
        self.train_begin = Some(Box::new(move |ctx| f(ctx).into_result()));
        self
    }

    /// Runs `f` at `on_train_end`.
    pub fn on_train_end<R: HookOutput>(
        mut self,
        mut f: impl FnMut(&Logs, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.train_end = Some(Box::new(move |logs, ctx| f(logs, ctx).into_result()));
        self
    }

    /// Runs `f` at `on_epoch_begin`.
    pub fn on_epoch_begin<R: HookOutput>(
        mut self,
        mut f: impl FnMut(usize, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.epoch_begin = Some(Box::new(move |epoch, ctx| f(epoch, ctx).into_result()));
        self
    }

    /// Runs `f` at `on_epoch_end`; it may add keys to the logs.
    pub fn on_epoch_end<R: HookOutput>(
        mut self,
        mut f: impl FnMut(usize, &mut Logs, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.epoch_end = Some(Box::new(move |epoch, logs, ctx| {
            f(epoch, logs, ctx).into_result()
        }));
        self
    }

    /// Runs `f` at `on_train_batch_begin`.
    pub fn on_train_batch_begin<R: HookOutput>(
        mut self,
        mut f: impl FnMut(usize, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.batch_begin = Some(Box::new(move |batch, ctx| f(batch, ctx).into_result()));
        self
    }

    /// Runs `f` at `on_train_batch_end`, and asks for the per-batch `loss`
    /// (see [`Callback::wants_batch_logs`]).
    pub fn on_train_batch_end<R: HookOutput>(
        mut self,
        mut f: impl FnMut(usize, &mut Logs, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.batch_end = Some(Box::new(move |batch, logs, ctx| {
            f(batch, logs, ctx).into_result()
        }));
        self.wants_batch_logs = true;
        self
    }

    /// Runs `f` at `on_validation_begin`.
    pub fn on_validation_begin<R: HookOutput>(
        mut self,
        mut f: impl FnMut(&mut Context) -> R + Send + 'static,
    ) -> Self {
        self.validation_begin = Some(Box::new(move |ctx| f(ctx).into_result()));
        self
    }

    /// Runs `f` at `on_validation_batch_end`.
    pub fn on_validation_batch_end<R: HookOutput>(
        mut self,
        mut f: impl FnMut(usize, &Logs, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.validation_batch_end = Some(Box::new(move |batch, logs, ctx| {
            f(batch, logs, ctx).into_result()
        }));
        self
    }

    /// Runs `f` at `on_validation_end`.
    pub fn on_validation_end<R: HookOutput>(
        mut self,
        mut f: impl FnMut(&Logs, &mut Context) -> R + Send + 'static,
    ) -> Self {
        self.validation_end = Some(Box::new(move |logs, ctx| f(logs, ctx).into_result()));
        self
    }
}

impl Callback for LambdaCallback {
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        self.train_begin.as_mut().map_or(Ok(()), |f| f(ctx))
    }

    fn on_train_end(&mut self, logs: &Logs, ctx: &mut Context) -> Result<()> {
        self.train_end.as_mut().map_or(Ok(()), |f| f(logs, ctx))
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> Result<()> {
        self.epoch_begin.as_mut().map_or(Ok(()), |f| f(epoch, ctx))
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        self.epoch_end
            .as_mut()
            .map_or(Ok(()), |f| f(epoch, logs, ctx))
    }

    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut Context) -> Result<()> {
        self.batch_begin.as_mut().map_or(Ok(()), |f| f(batch, ctx))
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        self.batch_end
            .as_mut()
            .map_or(Ok(()), |f| f(batch, logs, ctx))
    }

    fn on_validation_begin(&mut self, ctx: &mut Context) -> Result<()> {
        self.validation_begin.as_mut().map_or(Ok(()), |f| f(ctx))
    }

    fn on_validation_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        self.validation_batch_end
            .as_mut()
            .map_or(Ok(()), |f| f(batch, logs, ctx))
    }

    fn on_validation_end(&mut self, logs: &Logs, ctx: &mut Context) -> Result<()> {
        self.validation_end
            .as_mut()
            .map_or(Ok(()), |f| f(logs, ctx))
    }

    fn wants_batch_logs(&self) -> bool {
        self.wants_batch_logs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Script, ScriptedControl, drive};
    use crate::{CallbackError, CallbackList};

    #[test]
    fn closures_may_return_results_and_stop_training() {
        let callback = LambdaCallback::new()
            .on_epoch_begin(|epoch, _ctx| {
                if epoch == 2 {
                    return Err(CallbackError::Unsupported("epoch 2".into()));
                }
                Ok(())
            })
            .on_epoch_end(|_epoch, logs, _ctx| logs.insert("extra", 1.0))
            .on_validation_end(|_logs, _ctx| Ok(()))
            .on_train_batch_end(|batch, _logs, ctx| {
                if batch == 0 {
                    ctx.stop_training("lambda");
                }
            });
        assert!(callback.wants_batch_logs());
        let mut list = CallbackList::new();
        list.push(callback);
        let script = Script::from_epochs([Logs::new(), Logs::new()])
            .with_batches(vec![vec![Logs::new(), Logs::new()]]);
        let trace = drive(&mut list, &mut ScriptedControl::new(0.1), &script);
        assert_eq!(trace.stop_epoch, Some(0));
        assert_eq!(trace.epochs[0].batches_run, 1);
        assert_eq!(trace.epochs[0].logs.get("extra"), Some(1.0));

        let mut list = CallbackList::new();
        list.push(LambdaCallback::new().on_epoch_begin(|epoch, _ctx| {
            if epoch == 1 {
                Err(CallbackError::Unsupported("epoch 1".into()))
            } else {
                Ok(())
            }
        }));
        let trace = drive(
            &mut list,
            &mut ScriptedControl::new(0.1),
            &Script::from_epochs([Logs::new(), Logs::new()]),
        );
        assert!(trace.error.is_some());
        assert_eq!(trace.epochs_run, 1);
    }

    #[test]
    fn every_hook_runs() {
        use std::sync::{Arc, Mutex};
        let calls = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let c = |name: &'static str| {
            let calls = calls.clone();
            move || calls.lock().unwrap().push(name)
        };
        let (a, b, d, e, f, g, h, i, j) = (
            c("train_begin"),
            c("train_end"),
            c("epoch_begin"),
            c("epoch_end"),
            c("batch_begin"),
            c("batch_end"),
            c("validation_begin"),
            c("validation_batch_end"),
            c("validation_end"),
        );
        let mut cb = LambdaCallback::new()
            .on_train_begin(move |_| a())
            .on_train_end(move |_, _| b())
            .on_epoch_begin(move |_, _| d())
            .on_epoch_end(move |_, _, _| e())
            .on_train_batch_begin(move |_, _| f())
            .on_train_batch_end(move |_, _, _| g())
            .on_validation_begin(move |_| h())
            .on_validation_batch_end(move |_, _, _| i())
            .on_validation_end(move |_, _| j());
        let mut ctl = ScriptedControl::new(0.1);
        let mut ctx = Context::new(&mut ctl);
        let mut logs = Logs::new();
        // The builder methods share the hooks' names: call the hooks through the trait.
        Callback::on_train_begin(&mut cb, &mut ctx).unwrap();
        Callback::on_epoch_begin(&mut cb, 0, &mut ctx).unwrap();
        Callback::on_train_batch_begin(&mut cb, 0, &mut ctx).unwrap();
        Callback::on_train_batch_end(&mut cb, 0, &mut logs, &mut ctx).unwrap();
        Callback::on_validation_begin(&mut cb, &mut ctx).unwrap();
        Callback::on_validation_batch_end(&mut cb, 0, &logs, &mut ctx).unwrap();
        Callback::on_validation_end(&mut cb, &logs, &mut ctx).unwrap();
        Callback::on_epoch_end(&mut cb, 0, &mut logs, &mut ctx).unwrap();
        Callback::on_train_end(&mut cb, &logs, &mut ctx).unwrap();
        assert_eq!(calls.lock().unwrap().len(), 9);
    }
}
