//! Where the libraries' diagnostics appear: burnfit's own `log` records
//! (callback messages, warnings) go to the terminal, Burn's internal ones
//! are dropped.
//!
//! * `info` (Keras's `verbose` lines, the progress line per epoch) → stdout;
//! * `warn` → stderr as `warning: …`;
//! * `error` → stderr as `error: …` (the CLI's own errors are printed by
//!   `main`, so the engine never logs an error it also returns).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct TerminalLogger;

static LOGGER: TerminalLogger = TerminalLogger;

fn ours(target: &str) -> bool {
    target.starts_with("burnfit")
}

impl Log for TerminalLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        ours(metadata.target()) && metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A closed terminal or pipe (`burnfit train … | head`) must not
        // stop training: what cannot be shown is dropped.
        let _ = match record.level() {
            Level::Error => writeln!(std::io::stderr(), "error: {}", record.args()),
            Level::Warn => writeln!(std::io::stderr(), "warning: {}", record.args()),
            _ => writeln!(std::io::stdout(), "{}", record.args()),
        };
    }

    fn flush(&self) {}
}

/// Installs the terminal logger (once; later calls do nothing).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
