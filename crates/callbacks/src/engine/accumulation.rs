//! Gradient accumulation (Burn's `SupervisedTraining::grads_accumulation`)
//! under callbacks: the gradients of an unfinished window, kept in the
//! loop's state so that a backup can carry them.
//!
//! Invariants, each with a test named after it
//! (`crates/callbacks/tests/devices_and_running_stats.rs`):
//!
//! * **The sum is Burn's**: gradients are added in the order Burn's
//!   `GradientsAccumulator` adds them, so a window gives the same update.
//! * **The mean, when asked**: with
//!   [`Callbacks::average_accumulated_gradients`](super::Callbacks::average_accumulated_gradients)
//!   the window's sum is divided by its steps (Lightning's
//!   `accumulate_grad_batches` divides the loss; Keras's
//!   `gradient_accumulation_steps` averages the gradients), so a window of
//!   N batches of B steps as one batch of N·B would.
//! * **A window cut by a backup resumes exactly**: the gradients accumulated
//!   so far, bit for bit, and their count are sections of the backup; the
//!   resumed run finishes the window as the uninterrupted one did.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The gradients of the current accumulation window.
#[derive(Default)]
pub(crate) struct Accumulation {
    grads: Option<GradientsParams>,
    count: usize,
}

/// How the window is described in a backup: its count and, per gradient,
/// the parameter (its position among the model's float parameters, in
/// visiting order: parameter ids are new in every process), shape and
/// element type (the bytes are sections of their own, in this order).
#[derive(Serialize, Deserialize)]
struct Header {
    count: usize,
    grads: Vec<SavedGrad>,
}

#[derive(Serialize, Deserialize)]
struct SavedGrad {
    position: usize,
    shape: Vec<usize>,
    dtype: DType,
}

impl Accumulation {
    /// Adds a step's gradients to the window.
    pub(crate) fn add<M: Module>(&mut self, model: &M, grads: GradientsParams) {
        let mut sum = GradientsAccumulator::<M>::new();
        if let Some(previous) = self.grads.take() {
            sum.accumulate(model, previous);
        }
        sum.accumulate(model, grads);
        self.grads = Some(sum.grads());
        self.count += 1;
    }

    /// Steps accumulated in the window so far.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Ends the window: its gradients, for the optimizer step.
    pub(crate) fn take(&mut self) -> GradientsParams {
        self.count = 0;
        self.grads.take().unwrap_or_default()
    }

    /// Ends the window: the mean of its gradients (their sum divided by the
    /// window's steps).
    pub(crate) fn take_mean<M: Module>(&mut self, model: &M) -> GradientsParams {
        let count = self.count.max(1);
        let mut grads = self.take();
        if count > 1 {
            struct Scale<'a> {
                grads: &'a mut GradientsParams,
                factor: f64,
            }
            impl ModuleVisitor for Scale<'_> {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    if let Some(grad) = self.grads.remove::<D>(param.id) {
                        self.grads.register(param.id, grad.mul_scalar(self.factor));
                    }
                }
            }
            model.visit(&mut Scale {
                grads: &mut grads,
                factor: 1.0 / count as f64,
            });
        }
        grads
    }

    /// The window as a header and one byte buffer per gradient, or `None`
    /// when it is empty.
    pub(crate) fn encode<M: Module>(&self, model: &M) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let grads = self.grads.as_ref().filter(|_| self.count > 0)?;
        struct Read<'a> {
            grads: &'a GradientsParams,
            position: usize,
            header: Vec<SavedGrad>,
            bytes: Vec<Vec<u8>>,
        }
        impl ModuleVisitor for Read<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let position = self.position;
                self.position += 1;
                if let Some(grad) = self.grads.get::<D>(param.id) {
                    let data = grad.into_data();
                    self.header.push(SavedGrad {
                        position,
                        shape: data.shape().to_vec(),
                        dtype: data.dtype(),
                    });
                    self.bytes.push(data.as_bytes().to_vec());
                }
            }
        }
        let mut read = Read {
            grads,
            position: 0,
            header: Vec::new(),
            bytes: Vec::new(),
        };
        model.visit(&mut read);
        let header = Header {
            count: self.count,
            grads: read.header,
        };
        let header = serde_json::to_vec(&header).expect("the accumulation header serialises");
        Some((header, read.bytes))
    }

    /// The window a backup saved, on `model`'s devices; `bytes(i)` is the
    /// `i`-th gradient's buffer.
    pub(crate) fn decode<'a, M: Module>(
        model: &M,
        header: &[u8],
        bytes: impl Fn(usize) -> Option<&'a [u8]>,
    ) -> Result<Self, String> {
        let header: Header = serde_json::from_slice(header).map_err(|e| e.to_string())?;
        let mut saved: BTreeMap<usize, TensorData> = BTreeMap::new();
        for (index, grad) in header.grads.iter().enumerate() {
            let buffer = bytes(index).ok_or_else(|| format!("gradient {index} is missing"))?;
            let data =
                TensorData::try_from_bytes_vec(buffer.to_vec(), grad.shape.clone(), grad.dtype)
                    .map_err(|e| format!("gradient {index}: {e:?}"))?;
            saved.insert(grad.position, data);
        }
        struct Load {
            saved: BTreeMap<usize, TensorData>,
            position: usize,
            grads: GradientsParams,
            wrong: Vec<String>,
        }
        impl ModuleVisitor for Load {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let position = self.position;
                self.position += 1;
                let Some(data) = self.saved.remove(&position) else {
                    return;
                };
                if data.shape().len() != D {
                    self.wrong
                        .push(format!("parameter {position}: rank {}", data.shape().len()));
                    return;
                }
                let device = param.val().device().without_autodiff();
                self.grads
                    .register::<D>(param.id, Tensor::<D>::from_data(data, &device));
            }
        }
        let mut load = Load {
            saved,
            position: 0,
            grads: GradientsParams::new(),
            wrong: Vec::new(),
        };
        model.visit(&mut load);
        if let Some(id) = load.saved.keys().next() {
            load.wrong
                .push(format!("parameter {id} is not in this model"));
        }
        if !load.wrong.is_empty() {
            return Err(format!(
                "the accumulated gradients do not fit this model: {}",
                load.wrong.join("; ")
            ));
        }
        Ok(Self {
            grads: Some(load.grads),
            count: header.count,
        })
    }
}
