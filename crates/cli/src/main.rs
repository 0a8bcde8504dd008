//! `burnfit`: config-driven Burn training with Keras-style callbacks, for
//! burnfit's own networks and data. It is the runner any task gets
//! (`burnfit_cli::run`), over the built-in tasks.

use std::process::ExitCode;

fn main() -> ExitCode {
    burnfit_cli::run(burnfit_cli::builtin::tasks())
}
