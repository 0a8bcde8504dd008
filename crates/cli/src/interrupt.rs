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

/// Routes SIGINT and SIGTERM to `interrupter` from now on (the handler
/// thread is started once per process).
pub fn watch(interrupter: Interrupter) {
    *target().lock().expect("interrupt target") = Some(interrupter);
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
            log::warn!("cannot watch SIGINT/SIGTERM: Ctrl-C will stop without a backup");
            return;
        };
        let _ = std::thread::Builder::new()
            .name("burnfit-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let first = RECEIVED
                        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    let code = 128 + signal;
                    if !first {
                        eprintln!("burnfit: stopped at once (second signal); every file already written is intact");
                        std::process::exit(code);
                    }
                    let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
                    match target().lock().expect("interrupt target").as_ref() {
                        Some(interrupter) => {
                            interrupter.stop(Some(&format!("interrupted by {name}")));
                        }
                        None => std::process::exit(code),
                    }
                }
            });
    });
}

/// The signal that stopped training, if one did.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        SIGTERM => Some(Signal::Terminate),
        _ => Some(Signal::Interrupt),
    }
}
