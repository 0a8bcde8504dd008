//! [`OnExceptionCheckpoint`]: save the whole training state when training
//! fails (Lightning's `OnExceptionCheckpoint`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, SaveContent};
use crate::error::Result;

const NAME: &str = "OnExceptionCheckpoint";

/// The parameters of [`OnExceptionCheckpoint`], with Lightning's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnExceptionCheckpointConfig {
    /// The directory of the checkpoint.
    pub dirpath: PathBuf,
    /// Its name without extension (default `on_exception`).
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_filename() -> String {
    "on_exception".into()
}

/// When training ends with an error (a callback's, a device's, a failed
/// read of the data, a panic), writes a full checkpoint (model, optimizer,
/// scheduler, every callback's state) to `dirpath/filename.ckpt`, in the
/// backup format, before the error reaches the caller. The file is written
/// atomically, so it is whole or absent.
#[derive(Clone, Debug)]
pub struct OnExceptionCheckpoint {
    config: OnExceptionCheckpointConfig,
}

impl OnExceptionCheckpoint {
    /// The callback.
    pub fn new(config: OnExceptionCheckpointConfig) -> Self {
        Self { config }
    }

    /// Where the checkpoint goes.
    pub fn path(&self) -> PathBuf {
        self.config
            .dirpath
            .join(format!("{}.ckpt", self.config.filename))
    }
}

impl Callback for OnExceptionCheckpoint {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_exception(&mut self, error: &str, ctx: &mut Context) -> Result<()> {
        let path = self.path();
        ctx.save_model(&path, SaveContent::Full)?;
        ctx.warn(format!(
            "{NAME}: training failed ({error}); its state is saved to {}",
            path.display()
        ));
        Ok(())
    }
}
