//! Graceful interrupts: the first Ctrl-C (SIGINT) or SIGTERM asks Burn's
//! `Interrupter` to stop after the current batch (BackupAndRestore then backs
//! up at that batch, the logs are flushed, and `train` prints how to
//! resume); a second one exits at once. Files are only ever replaced by
//! atomic renames, so even that leaves every file already written intact.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use burn::train::Interrupter;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The first signal received (0 = none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The interrupter of the training in progress.
static TARGET: OnceLock<std::sync::Mutex<Option<Interrupter>>> = OnceLock::new();

fn target() -> &'static std::sync::Mutex<Option<Interrupter>> {
    TARGET.get_or_init(|| std::sync::Mutex::new(None))
}

/// Which signal stopped training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill` / a scheduler's stop.
    Terminate,
}

impl Signal {
    /// The exit code a shell expects after this signal (128 + its number).
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// What the second signal prints before the process ends.
const AT_ONCE: &[u8] =
    b"burnfit: stopped at once (second signal); every file already written is intact\n";

/// Runs inside the signal handler, for every SIGINT and SIGTERM the process
/// receives: the first is recorded (the `burnfit-signals` thread then stops
/// training gracefully), a second one ends the process here and now. Done
/// in the handler itself, because signals that arrive before a thread
/// looks at them are merged into one: a second Ctrl-C must not wait for
/// the first to be handled. Only async-signal-safe calls: an atomic
/// exchange, `write(2)` and `_exit(2)`.
fn on_signal(signal: i32) {
    let first = RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if !first {
        // SAFETY: write(2) on the standard error descriptor, of a static
        // buffer; its result is deliberately ignored.
        let _ = unsafe { libc::write(libc::STDERR_FILENO, AT_ONCE.as_ptr().cast(), AT_ONCE.len()) };
        signal_hook::low_level::exit(128 + signal);
    }
}

/// Routes SIGINT and SIGTERM to `interrupter` from now on (the handlers and
/// their thread are installed once per process).
pub fn watch(interrupter: Interrupter) {
    *target().lock().expect("interrupt target") = Some(interrupter);
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        for signal in [SIGINT, SIGTERM] {
            // SAFETY: `on_signal` is async-signal-safe (see there).
            let installed =
                unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) };
            if installed.is_err() {
                log::warn!("cannot watch SIGINT/SIGTERM: Ctrl-C will stop without a backup");
                return;
            }
        }
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
            log::warn!("cannot watch SIGINT/SIGTERM: Ctrl-C will stop without a backup");
            return;
        };
        let _ = std::thread::Builder::new()
            .name("burnfit-signals".into())
            .spawn(move || {
                // The first signal only: the handler ends the process at
                // the second.
                if let Some(signal) = signals.forever().next() {
                    stop_gracefully(signal);
                }
            });
    });
}

/// Asks the training in progress to stop after its current batch (or, with
/// none in progress, exits).
fn stop_gracefully(signal: i32) {
    let name = if signal == SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    match target().lock().expect("interrupt target").as_ref() {
        Some(interrupter) => {
            interrupter.stop(Some(&format!("interrupted by {name}")));
            eprintln!("burnfit: stopping after this batch ({name}; Ctrl-C again quits at once)");
        }
        None => std::process::exit(128 + signal),
    }
}

/// The signal that stopped training, if one did.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        SIGTERM => Some(Signal::Terminate),
        _ => Some(Signal::Interrupt),
    }
}
