//! `save_top_k` (Lightning's): which checkpoints are among the k best, and
//! which one leaves when a better one comes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::monitor::{Direction, special_float};

/// A checkpoint kept by `save_top_k`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKEntry {
    /// The file.
    pub path: PathBuf,
    /// The monitored value it was saved with.
    #[serde(with = "special_float")]
    pub score: f64,
    /// The epoch (0-based).
    pub epoch: usize,
    /// The batch (0-based) of a batch-level save.
    pub batch: Option<usize>,
}

/// `a` is strictly worse than `b` (NaN ranks last; f32 comparison).
fn worse(direction: Direction, a: f64, b: f64) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (true, false) => true,
        (_, true) => false,
        _ => direction.better(b as f32, a as f32),
    }
}

/// Best first by `direction`, as `save_top_k` ranks: NaN last, values
/// compared as f32; a tie is `Equal` (a stable sort keeps save order).
pub fn top_k_order(direction: Direction, a: f64, b: f64) -> std::cmp::Ordering {
    if worse(direction, a, b) {
        std::cmp::Ordering::Greater
    } else if worse(direction, b, a) {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Equal
    }
}

/// What to do with a candidate checkpoint.
#[derive(Debug, PartialEq)]
pub(super) enum Ranking {
    /// It is not among the k best: do not save it.
    Rejected,
    /// Save it, then delete this one (if any), which left the k best.
    Kept {
        /// The checkpoint pushed out, to delete after the save.
        evicted: Option<PathBuf>,
    },
}

/// Ranks `score` for `path` among `kept` (save order); on a `Kept`, the
/// candidate is added to `kept` and the evicted one removed. A file about
/// to be overwritten leaves the ranking first.
pub(super) fn rank(
    kept: &mut Vec<TopKEntry>,
    k: usize,
    direction: Direction,
    candidate: TopKEntry,
) -> Ranking {
    kept.retain(|e| e.path != candidate.path);
    let worst = (0..kept.len()).reduce(|w, i| {
        if worse(direction, kept[w].score, kept[i].score) {
            w
        } else {
            i
        }
    });
    let qualifies = k > 0
        && (kept.len() < k
            || worst.is_some_and(|w| worse(direction, kept[w].score, candidate.score)));
    if !qualifies {
        return Ranking::Rejected;
    }
    kept.push(candidate);
    let evicted = match worst {
        Some(w) if kept.len() > k => Some(kept.remove(w).path),
        _ => None,
    };
    Ranking::Kept { evicted }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_order_is_best_first_with_nan_last() {
        let mut scores = [0.5, f64::NAN, 0.2, 0.9, 0.2];
        scores.sort_by(|a, b| top_k_order(Direction::Min, *a, *b));
        assert_eq!(&scores[..4], &[0.2, 0.2, 0.5, 0.9]);
        assert!(scores[4].is_nan());
        scores.sort_by(|a, b| top_k_order(Direction::Max, *a, *b));
        assert_eq!(&scores[..4], &[0.9, 0.5, 0.2, 0.2]);
    }
}
