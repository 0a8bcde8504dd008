//! Python's float formatting, as Keras's files show it: `repr()`
//! ([`float_repr`], the CSV logger's and the messages' numbers) and the
//! `str.format` subset of checkpoint file names ([`format_template`]).
//! Both write exponents by one rule, [`exponent_suffix`].

mod format;
mod repr;

pub use format::{TemplateError, Value, format_template, format_value, has_placeholders};
pub use repr::float_repr;

/// Python's exponent (after the `e`): a sign and at least two digits
/// (`-05`, `+16`, `+308`). `repr` and `str.format`'s `e` both write it.
fn exponent_suffix(exponent: i32) -> String {
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{:02}", exponent.unsigned_abs())
}
