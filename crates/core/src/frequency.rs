//! [`Frequency`]: "every epoch" or "every N batches", the one type behind
//! ModelCheckpoint's `save_freq`, TensorBoard's `update_freq` and
//! BackupAndRestore's `save_freq`.

use serde::{Deserialize, Serialize};

/// How often a callback acts: at every epoch end, or every N training
/// batches (counted across epoch boundaries, as Keras counts them).
///
/// In configuration files it is the string `"epoch"`, the string `"batch"`
/// (every batch, Keras's TensorBoard spelling) or an integer >= 1.
///
/// ```
/// use burnfit_core::frequency::Frequency;
///
/// #[derive(serde::Deserialize)]
/// struct C { save_freq: Frequency }
/// let parse = |v: &str| serde_json::from_str::<C>(&format!("{{\"save_freq\": {v}}}")).map(|c| c.save_freq);
/// assert_eq!(parse("\"epoch\"").unwrap(), Frequency::Epoch);
/// assert_eq!(parse("\"batch\"").unwrap(), Frequency::Batches(1));
/// assert_eq!(parse("500").unwrap(), Frequency::Batches(500));
/// assert!(parse("0").is_err());
/// assert!(Frequency::Batches(3).is_due(6) && !Frequency::Batches(3).is_due(7));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub enum Frequency {
    /// At the end of every epoch (the default).
    #[default]
    Epoch,
    /// Every this many training batches (at least 1).
    Batches(u64),
}

impl Frequency {
    /// The batch count, for [`Frequency::Batches`].
    pub fn batches(self) -> Option<u64> {
        match self {
            Frequency::Epoch => None,
            Frequency::Batches(n) => Some(n),
        }
    }

    /// Whether the callback acts at epoch ends.
    pub fn is_epoch(self) -> bool {
        self == Frequency::Epoch
    }

    /// Whether the `batches_seen`-th batch (1-based, counted across epochs)
    /// is one the callback acts on.
    pub fn is_due(self, batches_seen: u64) -> bool {
        match self {
            Frequency::Epoch => false,
            Frequency::Batches(n) => n > 0 && batches_seen.is_multiple_of(n),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected \"epoch\", \"batch\" or a number of batches >= 1"
)]
enum Repr {
    Count(i64),
    Text(String),
}

impl TryFrom<Repr> for Frequency {
    type Error = String;

    fn try_from(repr: Repr) -> Result<Self, String> {
        match repr {
            Repr::Text(s) if s == "epoch" => Ok(Frequency::Epoch),
            Repr::Text(s) if s == "batch" => Ok(Frequency::Batches(1)),
            Repr::Count(n) if n >= 1 => Ok(Frequency::Batches(n as u64)),
            Repr::Text(s) => Err(format!(
                "expected \"epoch\", \"batch\" or a number of batches >= 1, got \"{s}\""
            )),
            Repr::Count(n) => Err(format!(
                "expected \"epoch\", \"batch\" or a number of batches >= 1, got {n}"
            )),
        }
    }
}

impl From<Frequency> for Repr {
    fn from(freq: Frequency) -> Self {
        match freq {
            Frequency::Epoch => Repr::Text("epoch".into()),
            Frequency::Batches(n) => Repr::Count(n as i64),
        }
    }
}
