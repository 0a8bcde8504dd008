//! The CLI's error: one line for the user and an exit code.
//!
//! A message that arrives with several lines (an error chain from a library,
//! a panic message caught in training) is joined into one.

/// An error the CLI reports as a single `error: …` line.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: i32,
    plain: bool,
    /// The config key the error is about, and the message without it
    /// ([`CliError::at_key`]).
    key: Option<(String, String)>,
}

impl CliError {
    /// Bad input from the user (config, flag, dataset file): exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: one_line(&message.into()),
            code: 2,
            plain: false,
            key: None,
        }
    }

    /// Training or I/O failed after the input was accepted: exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: one_line(&message.into()),
            code: 1,
            plain: false,
            key: None,
        }
    }

    /// Training was interrupted by a signal and can be resumed: `message`
    /// is printed as is (no `error:`), with the signal's exit code.
    pub fn interrupted(message: impl Into<String>, code: i32) -> Self {
        Self {
            message: message.into(),
            code,
            plain: true,
            key: None,
        }
    }

    /// Bad input at a config key (`data.path`), found where the config is
    /// not at hand (reading the data): exit code 2, the line names the key,
    /// and burnfit puts where its value came from (the config file and
    /// line, or the flag that set it) before it when the config is read.
    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        let (key, message) = (key.into(), one_line(&message.into()));
        Self {
            message: format!("{key}: {message}"),
            code: 2,
            plain: false,
            key: Some((key, message)),
        }
    }

    /// The key and the message without it, of an error made by
    /// [`CliError::at_key`].
    pub(crate) fn key(&self) -> Option<(&str, &str)> {
        self.key.as_ref().map(|(k, m)| (k.as_str(), m.as_str()))
    }

    /// The line printed for the user.
    pub fn line(&self) -> String {
        if self.plain {
            self.message.clone()
        } else {
            format!("error: {}", self.message)
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

/// `message`'s lines, trimmed, joined by spaces (empty lines dropped).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<burnfit_callbacks::CallbackError> for CliError {
    fn from(e: burnfit_callbacks::CallbackError) -> Self {
        CliError::usage(e.to_string())
    }
}

/// Shorthand result type.
pub type CliResult<T> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_several_lines_is_printed_as_one() {
        let error = CliError::failed("training failed: lost\nCaused by:\n\n  closed; resume");
        assert_eq!(
            error.line(),
            "error: training failed: lost Caused by: closed; resume"
        );
    }
}
