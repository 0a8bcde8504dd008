//! Running a model over a dataset, for `eval`, `predict` and the task's
//! own predictions: loading weights, every batch in order, nothing skipped.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;

use crate::error::{CliError, CliResult};

/// `model` with the weights in the checkpoint at `path`.
pub(crate) fn load_weights<M: Module>(model: M, path: &Path) -> CliResult<M> {
    let record = ModuleRecord::load(path).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot read the checkpoint: {e}",
            path.display()
        ))
    })?;
    model.try_load_record(record).map_err(|e| {
        CliError::usage(format!(
            "{}: the checkpoint does not fit this run's model: {}",
            path.display(),
            shorten_lists(&e.to_string())
        ))
    })
}

/// `text` with each bracketed list of more than [`LISTED`] entries cut to
/// its first ones and a count (Burn names every missing tensor: a whole
/// model's worth on one error line).
fn shorten_lists(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..=open]);
        let entries: Vec<&str> = rest[open + 1..close].split(", ").collect();
        if entries.len() > LISTED {
            out.push_str(&entries[..LISTED].join(", "));
            out.push_str(&format!(", … {} in all", entries.len()));
        } else {
            out.push_str(&rest[open + 1..close]);
        }
        out.push(']');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// How many entries of a list an error line shows.
const LISTED: usize = 3;

/// Runs `each` on every batch, in order. A batch that failed to load is an
/// error naming it: never skipped, since a result over fewer items would
/// look complete.
pub(crate) fn for_each_batch<B, E: std::fmt::Display>(
    batches: impl Iterator<Item = Result<B, E>>,
    what: &str,
    mut each: impl FnMut(B) -> CliResult<()>,
) -> CliResult<()> {
    for (index, batch) in batches.enumerate() {
        let batch = batch.map_err(|e| {
            CliError::failed(format!(
                "{what}: batch {} could not be loaded ({e}); nothing was reported for a part of \
                 the data",
                index + 1
            ))
        })?;
        each(batch)?;
    }
    Ok(())
}

/// Fails unless every one of the `expected` items was evaluated.
pub(crate) fn check_count(count: usize, expected: usize, what: &str) -> CliResult<()> {
    if count == expected {
        return Ok(());
    }
    Err(CliError::failed(format!(
        "{what}: {count} of {expected} items were evaluated; the result would be incomplete"
    )))
}

/// The values of a model's output, as `f32` (whatever its float type).
pub(crate) fn output_values(data: burn::tensor::TensorData) -> CliResult<Vec<f32>> {
    data.try_into_vec_as::<f32>()
        .map_err(|e| CliError::failed(format!("cannot read the model's output: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_to_their_first_entries_and_a_count() {
        let text = r#"Missing tensors: ["a", "b", "c", "d", "e"]; Unused: ["x"] [1, 2, 3]"#;
        assert_eq!(
            super::shorten_lists(text),
            r#"Missing tensors: ["a", "b", "c", … 5 in all]; Unused: ["x"] [1, 2, 3]"#
        );
        assert_eq!(super::shorten_lists("no list ["), "no list [");
    }

    #[test]
    fn a_batch_that_fails_to_load_is_an_error_not_a_smaller_result() {
        let batches = vec![Ok(1), Err("bad item 7"), Ok(3)];
        let mut seen = Vec::new();
        let result = for_each_batch(batches.into_iter(), "the test set", |b| {
            seen.push(b);
            Ok(())
        });
        let error = result.expect_err("a failed batch fails the command");
        assert!(error.message().contains("batch 2"), "{}", error.message());
        assert!(
            error.message().contains("bad item 7"),
            "{}",
            error.message()
        );
        assert_eq!(seen, [1], "nothing after the failed batch");
    }

    #[test]
    fn fewer_items_than_the_data_has_is_an_error() {
        assert!(check_count(200, 200, "the test set").is_ok());
        let error = check_count(150, 200, "the test set").expect_err("incomplete");
        assert!(
            error.message().contains("150 of 200"),
            "{}",
            error.message()
        );
    }
}
