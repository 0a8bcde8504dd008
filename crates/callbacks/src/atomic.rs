//! Crash-safe file writes: temporary file in the same directory, fsync,
//! rename over the target, fsync the directory.

use std::io::Write;
use std::path::Path;

use crate::error::{CallbackError, Result};

/// Writes `bytes` to `path` so that a crash at any moment leaves either the
/// old file or the complete new one, never a truncated file. Parent
/// directories are created.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("sub/model.bin");
/// burnfit_callbacks::atomic::write_atomic(&path, b"weights").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"weights");
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with a closure that writes the content.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CallbackError::io(&dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .map_err(|e| CallbackError::io(&dir, e))?;
    write(tmp.as_file_mut()).map_err(|e| CallbackError::io(path, e))?;
    crash_test_hook(tmp.as_file_mut());
    tmp.as_file()
        .sync_all()
        .map_err(|e| CallbackError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| CallbackError::io(path, e.error))?;
    sync_dir(&dir);
    Ok(())
}

/// fsyncs a directory so a rename inside it is durable (best effort: some
/// file systems do not support it).
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Fault injection for the crash-safety tests: with
/// `BURNFIT_ABORT_IN_WRITE=N` in the environment, the process aborts (as a
/// SIGKILL would stop it) in the middle of the N-th atomic write, after half
/// of the temporary file was written and before the rename. Unset, this is
/// one environment lookup per write.
fn crash_test_hook(file: &mut std::fs::File) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let Some(n) = std::env::var("BURNFIT_ABORT_IN_WRITE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    if WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n {
        if let Ok(len) = file.metadata().map(|m| m.len()) {
            let _ = file.set_len(len / 2);
            let _ = file.sync_all();
        }
        eprintln!("BURNFIT_ABORT_IN_WRITE: aborting inside atomic write #{n}");
        std::process::abort();
    }
}
