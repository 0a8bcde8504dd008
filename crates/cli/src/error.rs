//! The CLI's error: one line for the user and an exit code.

/// An error the CLI reports as a single `error: …` line.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: i32,
}

impl CliError {
    /// Bad input from the user (config, flag, dataset file): exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// Training or I/O failed after the input was accepted: exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// The message (one line).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The process exit code.
    pub fn code(&self) -> i32 {
        self.code
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<burnfit_callbacks::CallbackError> for CliError {
    fn from(e: burnfit_callbacks::CallbackError) -> Self {
        match e {
            burnfit_callbacks::CallbackError::Io { .. } => CliError::usage(e.to_string()),
            _ => CliError::usage(e.to_string()),
        }
    }
}

/// Shorthand result type.
pub type CliResult<T> = Result<T, CliError>;
