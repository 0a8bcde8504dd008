//! The text of a caught panic, for the error that reports it.

/// The text of a panic's payload (`&str` or `String`; anything else is
/// reported as a panic without a message). Shared by the training thread,
/// the device workers and the CLI.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
