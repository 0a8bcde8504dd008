//! Checkpoint writes off the training thread.
//!
//! The training thread only takes a snapshot (the model's record, which
//! shares its tensors with the model, and for full checkpoints the optimizer
//! and scheduler records) and queues it; one writer thread encodes it,
//! writes it atomically (temporary file, fsync, rename, fsync of the
//! directory) and deletes the files callbacks asked to delete, in the order
//! asked. So:
//!
//! * a deletion (an older backup, a checkpoint pushed out of the top k) is
//!   only carried out after every write queued before it has landed, so the
//!   newest backup is on disk before the previous one goes;
//! * after a failed write no deletion is carried out at all: nothing the
//!   user already has is lost (a full disk keeps the older checkpoints);
//! * the queue is bounded ([`QUEUE_LEN`]): when the disk is slower than the
//!   checkpoints come, the training thread waits instead of holding ever
//!   more snapshots in memory;
//! * the first error is reported by the next call, by [`BackgroundWriter::flush`]
//!   (which the loop calls before `on_train_end`, so callbacks there see
//!   every file), and dropping the writer waits for the queue to drain;
//! * a write that fails while an earlier failure is still unreported (a full
//!   disk fails the snapshots queued behind the first too) is only a warning:
//!   the run ends on the first, and its user reads one error, not one per
//!   snapshot that happened to be in the queue.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{CallbackError, Result};

/// Snapshots that may wait in the queue before the training thread waits.
pub const QUEUE_LEN: usize = 2;

/// Encodes a snapshot into the bytes of the file (run on the writer thread).
pub type Encode = Box<dyn FnOnce() -> std::result::Result<Vec<u8>, String> + Send>;

enum Job {
    Write { path: PathBuf, encode: Encode },
    Remove(PathBuf),
    Flush(SyncSender<()>),
}

/// A writer thread with a bounded queue of writes and deletions.
pub struct BackgroundWriter {
    sender: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<CallbackError>>>,
}

impl Default for BackgroundWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundWriter {
    /// Starts the writer thread.
    pub fn new() -> Self {
        let (sender, receiver) = sync_channel(QUEUE_LEN);
        let error = Arc::new(Mutex::new(None));
        let thread_error = Arc::clone(&error);
        let thread = std::thread::Builder::new()
            .name("burnfit-checkpoint-writer".into())
            .spawn(move || work(receiver, thread_error))
            .expect("spawn the checkpoint writer thread");
        Self {
            sender: Some(sender),
            thread: Some(thread),
            error,
        }
    }

    /// Queues an atomic write of `encode()`'s bytes to `path`. Returns the
    /// error of an earlier write, if one failed.
    pub fn write(&mut self, path: &Path, encode: Encode) -> Result<()> {
        self.check()?;
        self.send(Job::Write {
            path: path.to_path_buf(),
            encode,
        })
    }

    /// Queues the deletion of `path`, carried out after every write queued
    /// so far has landed (and not at all if one of them failed).
    pub fn remove(&mut self, path: &Path) -> Result<()> {
        self.check()?;
        self.send(Job::Remove(path.to_path_buf()))
    }

    /// Waits until everything queued is done; returns the first error.
    pub fn flush(&mut self) -> Result<()> {
        let (done, wait) = sync_channel(1);
        self.send(Job::Flush(done))?;
        let _ = wait.recv();
        self.check()
    }

    /// The first error of the writer thread, once.
    fn check(&self) -> Result<()> {
        match self.error.lock().expect("writer error lock").take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.sender
            .as_ref()
            .and_then(|s| s.send(job).ok())
            .ok_or_else(|| CallbackError::Runtime {
                callback: "checkpoint writer",
                message: "the writer thread has stopped".into(),
            })
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queue and exit.
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(error) = self.error.lock().ok().and_then(|mut e| e.take()) {
            log::error!("checkpoint writer: {error}");
        }
    }
}

fn work(jobs: Receiver<Job>, error: Arc<Mutex<Option<CallbackError>>>) {
    let mut failed = false;
    for job in jobs {
        match job {
            Job::Write { path, encode } => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode))
                    .unwrap_or_else(|_| Err("encoding the checkpoint panicked".into()))
                    .map_err(|message| CallbackError::Runtime {
                        callback: "checkpoint writer",
                        message: format!("{}: {message}", path.display()),
                    })
                    .and_then(|bytes| crate::atomic::write_atomic(&path, &bytes));
                if let Err(e) = result {
                    failed = true;
                    let mut slot = error.lock().expect("writer error lock");
                    match &*slot {
                        None => *slot = Some(e),
                        Some(_) => log::warn!("checkpoint writer: {e} (after an earlier failure)"),
                    }
                }
            }
            Job::Remove(path) => {
                if failed {
                    continue;
                }
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    log::warn!("could not delete {}: {e}", path.display());
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(content: &'static [u8]) -> Encode {
        Box::new(move || Ok(content.to_vec()))
    }

    #[test]
    fn writes_and_deletions_land_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        let mut writer = BackgroundWriter::new();
        writer.write(&a, bytes(b"first")).unwrap();
        writer.write(&b, bytes(b"second")).unwrap();
        writer.remove(&a).unwrap();
        writer.write(&a, bytes(b"third")).unwrap();
        writer.flush().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"third");
        assert_eq!(std::fs::read(&b).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_failed_write_is_reported_and_cancels_later_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("older.bin");
        std::fs::write(&keep, b"the user's").unwrap();
        // A directory where the file should go: the rename fails.
        let blocked = dir.path().join("newer.bin");
        std::fs::create_dir_all(blocked.join("occupied")).unwrap();
        let mut writer = BackgroundWriter::new();
        writer.write(&blocked, bytes(b"new")).unwrap();
        writer.remove(&keep).unwrap();
        let error = writer.flush().unwrap_err().to_string();
        assert!(error.contains("newer.bin"), "{error}");
        assert_eq!(std::fs::read(&keep).unwrap(), b"the user's");
        // Reported once; the writer goes on.
        writer
            .write(&dir.path().join("c.bin"), bytes(b"c"))
            .unwrap();
        writer.flush().unwrap();
    }

    /// Captures the records the writer logs, for the test below.
    mod captured {
        use std::sync::Mutex;

        pub static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

        struct Capture;

        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, record: &log::Record) {
                let line = record.args().to_string();
                RECORDS.lock().unwrap().push((record.level(), line));
            }
            fn flush(&self) {}
        }

        pub fn install() {
            static CAPTURE: Capture = Capture;
            let _ = log::set_logger(&CAPTURE);
            log::set_max_level(log::LevelFilter::Trace);
        }
    }

    #[test]
    fn a_failure_behind_an_unreported_one_is_a_warning_not_a_second_error() {
        captured::install();
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BackgroundWriter::new();
        let (first, second) = (dir.path().join("first.bin"), dir.path().join("second.bin"));
        // The first write fails only once the second is queued, so the
        // writer thread runs the second with the first error still pending.
        let (queued, wait) = sync_channel::<()>(1);
        let first_fails: Encode = Box::new(move || {
            let _ = wait.recv();
            Err("disk full".into())
        });
        writer.write(&first, first_fails).unwrap();
        writer
            .write(&second, Box::new(|| Err("disk full".into())))
            .unwrap();
        queued.send(()).unwrap();
        let error = writer.flush().unwrap_err().to_string();
        assert!(error.contains("first.bin"), "{error}");
        writer.flush().unwrap();
        let records = captured::RECORDS.lock().unwrap();
        let about = |path: &Path| -> Vec<log::Level> {
            let name = path.display().to_string();
            records
                .iter()
                .filter(|(_, line)| line.contains(&name))
                .map(|(level, _)| *level)
                .collect()
        };
        assert!(
            about(&first).is_empty(),
            "returned, not logged: {records:?}"
        );
        assert_eq!(about(&second), [log::Level::Warn], "{records:?}");
    }

    #[test]
    fn an_encoding_error_names_the_file_and_dropping_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BackgroundWriter::new();
        let path = dir.path().join("bad.bin");
        writer
            .write(&path, Box::new(|| Err("no bytes".to_string())))
            .unwrap();
        let error = writer.flush().unwrap_err().to_string();
        assert!(
            error.contains("bad.bin") && error.contains("no bytes"),
            "{error}"
        );
        assert!(!path.exists());
        let later = dir.path().join("later.bin");
        writer.write(&later, bytes(b"done")).unwrap();
        drop(writer);
        assert_eq!(std::fs::read(&later).unwrap(), b"done");
    }
}
