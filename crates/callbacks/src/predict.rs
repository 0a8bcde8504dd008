//! [`ContextExt`]: `ctx.predict(loader)` and `ctx.evaluate(loader)` in any
//! hook, with the model being trained.

use burn::train::{InferenceStep, LearnerModel, ValidLoader};
use burnfit_core::{CallbackError, Context, Logs, Result};

use crate::engine::BatchLoss;

/// Inference with the current model from inside a hook. The model is used
/// in inference mode (dropout off, BatchNorm statistics frozen) and not
/// changed; the loader's batches are moved to the model's device.
///
/// A callback that measures held-out accuracy every few epochs:
///
/// ```no_run
/// use burn::train::ValidLoader;
/// use burnfit_callbacks::predict::ContextExt;
/// use burnfit_callbacks::{Callback, Context, Logs, Result};
/// use burnfit_models::Classifier;
///
/// struct HeldOut { loader: ValidLoader<Classifier>, table: Vec<(usize, f64)> }
///
/// impl Callback for HeldOut {
///     fn on_epoch_end(&mut self, epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
///         let (mut correct, mut total) = (0, 0);
///         for out in ctx.predict::<Classifier>(&self.loader)? {
///             let n = out.targets.dims()[0];
///             let hits = out.output.argmax(1).reshape([n]).equal(out.targets).int().sum();
///             correct += hits.into_scalar::<i64>() as usize;
///             total += n;
///         }
///         self.table.push((epoch, correct as f64 / total as f64));
///         Ok(())
///     }
/// }
/// ```
pub trait ContextExt {
    /// The model's outputs on every batch of `loader`, in order.
    fn predict<M>(&self, loader: &ValidLoader<M>) -> Result<Vec<<M as InferenceStep>::Output>>
    where
        M: LearnerModel;

    /// `loss` on `loader`: the mean of the batches' losses weighted by their
    /// items (what validation reports), and `count`, the items seen.
    fn evaluate<M>(&self, loader: &ValidLoader<M>) -> Result<Logs>
    where
        M: LearnerModel,
        <M as InferenceStep>::Output: BatchLoss;
}

impl ContextExt for Context<'_> {
    fn predict<M>(&self, loader: &ValidLoader<M>) -> Result<Vec<<M as InferenceStep>::Output>>
    where
        M: LearnerModel,
    {
        let model: M = self.model::<M>().ok_or_else(|| {
            CallbackError::Unsupported(format!(
                "predict: the model being trained is not a {}",
                std::any::type_name::<M>()
            ))
        })?;
        let model = model.valid();
        let device = model.devices()[0].clone().inner();
        let loader = loader.to_device(&device);
        let mut outputs = Vec::new();
        for item in loader.iter() {
            let item = item.map_err(|e| CallbackError::Runtime {
                callback: "predict",
                message: e.to_string(),
            })?;
            outputs.push(InferenceStep::step(&model, item));
        }
        Ok(outputs)
    }

    fn evaluate<M>(&self, loader: &ValidLoader<M>) -> Result<Logs>
    where
        M: LearnerModel,
        <M as InferenceStep>::Output: BatchLoss,
    {
        let (mut sum, mut items) = (0.0, 0usize);
        for output in self.predict::<M>(loader)? {
            let n = output.batch_size().unwrap_or(1);
            if let Some(loss) = output.batch_loss() {
                sum += loss * n as f64;
                items += n;
            }
        }
        let mut logs = Logs::new();
        if items > 0 {
            logs.insert("loss", sum / items as f64);
        }
        logs.insert("count", items as f64);
        Ok(logs)
    }
}
