//! What the weight-averaging callbacks share: mixing two snapshots, and
//! finding a saved model by name.

use crate::context::ModelSnapshot;
use crate::error::{CallbackError, Result};

/// `average · (1 − weight) + current · weight`, or the error `callback`
/// gives when the two cannot be mixed.
pub(super) fn blend(
    callback: &'static str,
    average: &ModelSnapshot,
    current: &ModelSnapshot,
    weight: f64,
) -> Result<ModelSnapshot> {
    average
        .blend(current, weight)
        .ok_or_else(|| CallbackError::Runtime {
            callback,
            message: "the model cannot be averaged: its snapshots cannot blend (the Burn glue's \
                      can), or it is not the type of the average"
                .into(),
        })
}

/// `model` saved under `name`, for
/// [`Callback::state_models`](crate::Callback::state_models) (nothing
/// while there is none).
pub(super) fn saved(name: &str, model: &Option<ModelSnapshot>) -> Vec<(String, ModelSnapshot)> {
    model
        .iter()
        .map(|model| (name.to_string(), model.clone()))
        .collect()
}

/// The model saved under `name` by
/// [`Callback::state_models`](crate::Callback::state_models).
pub(super) fn named(models: Vec<(String, ModelSnapshot)>, name: &str) -> Option<ModelSnapshot> {
    models
        .into_iter()
        .find(|(saved, _)| saved == name)
        .map(|(_, model)| model)
}

/// The three averaging callbacks, Burn-free: over a "model" of two `f64`
/// weights whose snapshots blend, driven through a [`CallbackList`] as the
/// engine drives them.
#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::path::Path;

    use super::super::{CallbackConfig, EmaConfig, ExponentialMovingAverage};
    use crate::context::{Message, Progress, SaveContent, TrainEnd, TrainingControl};
    use crate::{Callback, CallbackList, Context, Logs, ModelSnapshot, Result};

    type Weights = [f64; 2];

    fn mix(a: &(dyn Any + Send), b: &(dyn Any + Send), w: f64) -> Option<Box<dyn Any + Send>> {
        let (a, b) = (a.downcast_ref::<Weights>()?, b.downcast_ref::<Weights>()?);
        Some(Box::new([0, 1].map(|i| a[i] * (1.0 - w) + b[i] * w)))
    }

    /// A loop over [`Weights`]: what the engine is to a Burn model.
    #[derive(Default)]
    struct WeightsLoop {
        weights: Weights,
        progress: Progress,
        lr: f64,
        batch_norm_updates: usize,
        end: Option<TrainEnd>,
        /// Snapshots without a blend function (a loop other than the Burn glue).
        plain: bool,
    }

    impl TrainingControl for WeightsLoop {
        fn request_stop(&mut self, _reason: String) {}
        fn stop_requested(&self) -> bool {
            false
        }
        fn cancel_stop(&mut self) {}
        fn learning_rate(&self) -> Option<f64> {
            Some(self.lr)
        }
        fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
            self.lr = lr;
            Ok(())
        }
        fn snapshot_model(&self) -> ModelSnapshot {
            let snapshot = ModelSnapshot::of(self.weights);
            if self.plain {
                snapshot
            } else {
                snapshot.with_blend(mix)
            }
        }
        fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()> {
            self.weights = snapshot.downcast::<Weights>().expect("weights");
            Ok(())
        }
        fn save_model(&mut self, _path: &Path, _content: SaveContent) -> Result<()> {
            Ok(())
        }
        fn progress(&self) -> Progress {
            self.progress
        }
        fn emit(&mut self, _message: Message) {}
        fn train_end(&self) -> Option<TrainEnd> {
            self.end.clone()
        }
        fn update_batch_norm(&mut self) -> Result<()> {
            self.batch_norm_updates += 1;
            Ok(())
        }
    }

    /// Records the weights the model holds at validation and at epoch end,
    /// and the moving average it sees.
    #[derive(Default)]
    struct Probe {
        in_validation: Vec<Weights>,
        at_epoch_end: Vec<Weights>,
        published: Vec<Option<Weights>>,
    }

    fn weights_of(ctx: &Context) -> Weights {
        *ctx.current_model().downcast_ref::<Weights>().unwrap()
    }

    impl Callback for std::sync::Arc<std::sync::Mutex<Probe>> {
        fn on_validation_begin(&mut self, ctx: &mut Context) -> Result<()> {
            self.lock().unwrap().in_validation.push(weights_of(ctx));
            Ok(())
        }
        fn on_epoch_end(&mut self, _e: usize, _l: &mut Logs, ctx: &mut Context) -> Result<()> {
            let average = ctx
                .moving_average()
                .map(|m| *m.downcast_ref::<Weights>().unwrap());
            let mut probe = self.lock().unwrap();
            probe.at_epoch_end.push(weights_of(ctx));
            probe.published.push(average);
            Ok(())
        }
    }

    /// Runs `epochs` epochs of `steps` steps; step `k` (from 1) sets the
    /// weights to `[k, -k]`. Returns the final weights.
    fn run(list: &mut CallbackList, ctl: &mut WeightsLoop, epochs: usize, steps: usize) -> Weights {
        ctl.progress.total_epochs = epochs;
        list.on_train_begin(ctl).unwrap();
        for epoch in 0..epochs {
            ctl.progress.epoch = epoch;
            list.on_epoch_begin(epoch, ctl).unwrap();
            for batch in 0..steps {
                list.on_train_batch_begin(batch, ctl).unwrap();
                ctl.progress.global_step += 1;
                let k = ctl.progress.global_step as f64;
                ctl.weights = [k, -k];
                list.on_train_batch_end(batch, &mut Logs::new(), ctl)
                    .unwrap();
            }
            list.on_validation_begin(ctl).unwrap();
            list.on_validation_end(&Logs::new(), ctl).unwrap();
            list.on_epoch_end(epoch, &mut Logs::new(), ctl).unwrap();
        }
        ctl.end = Some(TrainEnd::Completed);
        list.on_train_end(&Logs::new(), ctl).unwrap();
        ctl.weights
    }

    fn build(config: &str) -> Box<dyn Callback> {
        serde_json::from_str::<CallbackConfig>(config)
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn ema_publishes_its_average_and_swap_ema_weights_validates_with_it() {
        let probe = std::sync::Arc::new(std::sync::Mutex::new(Probe::default()));
        let mut list = CallbackList::new();
        // The swap before the average in the list: it finds the average
        // through the context, wherever the averaging callback sits.
        list.push_boxed(build(r#"{"type": "SwapEMAWeights"}"#));
        list.push(
            ExponentialMovingAverage::new(EmaConfig {
                momentum: 0.75,
                overwrite_frequency: None,
            })
            .unwrap(),
        );
        list.push(probe.clone());
        let mut ctl = WeightsLoop::default();
        let end = run(&mut list, &mut ctl, 2, 2);
        // Steps 1, 2 | 3, 4 with momentum 0.75: 1 -> 1.25 | 1.6875 -> 2.265625.
        let probe = probe.lock().unwrap();
        assert_eq!(probe.in_validation, [[1.25, -1.25], [2.265625, -2.265625]]);
        assert_eq!(probe.at_epoch_end, [[2.0, -2.0], [4.0, -4.0]]);
        assert_eq!(
            probe.published,
            [Some([1.25, -1.25]), Some([2.265625, -2.265625])]
        );
        assert_eq!(end, [2.265625, -2.265625]);
    }

    #[test]
    fn swap_ema_weights_without_a_moving_average_fails_at_validation() {
        let mut list = CallbackList::new();
        list.push_boxed(build(
            r#"{"type": "SwapEMAWeights", "swap_on_epoch": true}"#,
        ));
        let mut ctl = WeightsLoop::default();
        list.on_train_begin(&mut ctl).unwrap();
        // No step yet: nothing to swap, no error.
        list.on_validation_begin(&mut ctl).unwrap();
        ctl.progress.global_step = 1;
        let error = list.on_validation_begin(&mut ctl).unwrap_err().to_string();
        assert!(error.contains("ExponentialMovingAverage"), "{error}");
    }

    #[test]
    fn swa_from_config_averages_the_epochs_from_its_start_and_anneals() {
        let mut list = CallbackList::new();
        list.push_boxed(build(
            r#"{"type": "StochasticWeightAveraging", "swa_lrs": 0.5, "swa_epoch_start": 1,
                "annealing_epochs": 2, "annealing_strategy": "linear"}"#,
        ));
        let mut ctl = WeightsLoop {
            lr: 1.0,
            ..Default::default()
        };
        let end = run(&mut list, &mut ctl, 4, 1);
        // Epochs 1, 2, 3 end with weights 2, 3, 4: their mean is 3.
        assert_eq!(end, [3.0, -3.0]);
        assert_eq!(ctl.batch_norm_updates, 1);
        // The rate moved linearly from 1.0 to 0.5 over two epochs.
        assert_eq!(ctl.lr, 0.5);
    }

    #[test]
    fn a_model_whose_snapshots_cannot_blend_is_an_error_naming_the_callback() {
        let mut list = CallbackList::new();
        list.push(ExponentialMovingAverage::new(EmaConfig::default()).unwrap());
        let mut ctl = WeightsLoop {
            plain: true,
            ..Default::default()
        };
        // The first step copies; the second has to mix.
        list.on_train_batch_end(0, &mut Logs::new(), &mut ctl)
            .unwrap();
        let error = list
            .on_train_batch_end(1, &mut Logs::new(), &mut ctl)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ExponentialMovingAverage"), "{error}");
        assert!(error.contains("cannot blend"), "{error}");
    }
}
