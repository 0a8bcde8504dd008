//! Crash-safe file writes: temporary file in the same directory, fsync,
//! rename over the target, fsync the directory.
//!
//! The file ends up with the permissions a plain write would give it: an
//! existing file keeps its mode, a new one gets `0o666` less the umask (a
//! temporary file alone would be `0o600`, unreadable to the group).

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
/// burnfit_core::atomic::write_atomic(&path, b"weights").unwrap();
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
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Created with 0o666 & !umask, as `File::create` would.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| CallbackError::io(&dir, without_temp_path(e)))?;
    if let Ok(existing) = std::fs::metadata(path) {
        // Overwriting keeps the file's mode, as a plain write would.
        let _ = tmp.as_file().set_permissions(existing.permissions());
    }
    write(tmp.as_file_mut()).map_err(|e| CallbackError::io(path, without_temp_path(e)))?;
    #[cfg(feature = "fault-injection")]
    faults::in_write(path, tmp.as_file_mut()).map_err(|e| CallbackError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CallbackError::io(path, without_temp_path(e)))?;
    tmp.persist(path)
        .map_err(|e| CallbackError::io(path, without_temp_path(e.error)))?;
    sync_dir(&dir);
    Ok(())
}

/// The error without the name of the temporary file (`… at path
/// "/run/.tmp-x1y2"`): messages name the file the user asked for.
fn without_temp_path(error: std::io::Error) -> std::io::Error {
    let text = error.to_string();
    match text.find(" at path ") {
        Some(cut) => std::io::Error::new(error.kind(), text[..cut].to_string()),
        None => error,
    }
}

/// fsyncs a directory so a rename inside it is durable (best effort: some
/// file systems do not support it).
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Fault injection for the crash-safety tests (cargo feature
/// `fault-injection`, off by default: without it no environment variable
/// is read and no write can abort). With it, in the environment:
///
/// * `BURNFIT_ABORT_IN_WRITE=N`: the process aborts (as a SIGKILL would
///   stop it) in the middle of the N-th atomic write, after half of the
///   temporary file was written and before the rename;
/// * `BURNFIT_ABORT_IN_WRITE_TO=NAME`: the same, in the first write of a
///   file named `NAME` (`summary.json`);
/// * `BURNFIT_FAIL_WRITE_TO=PREFIX`: every write of a file whose name
///   starts with `PREFIX` fails as on a full disk (`ENOSPC`).
#[cfg(feature = "fault-injection")]
mod faults {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs the faults the environment asks for on the write of `path`,
    /// whose temporary file is `file`.
    pub fn in_write(path: &Path, file: &mut std::fs::File) -> std::io::Result<()> {
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let count = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let var = |key: &str| std::env::var(key).ok();
        if let Some(prefix) = var("BURNFIT_FAIL_WRITE_TO")
            && name.starts_with(&prefix)
        {
            log::error!("BURNFIT_FAIL_WRITE_TO: the write of {name} fails as on a full disk");
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let nth = var("BURNFIT_ABORT_IN_WRITE").and_then(|v| v.parse::<usize>().ok());
        if nth == Some(count) {
            abort(
                file,
                &format!("BURNFIT_ABORT_IN_WRITE: aborting inside atomic write #{count}"),
            );
        }
        if var("BURNFIT_ABORT_IN_WRITE_TO").as_deref() == Some(name.as_str()) {
            abort(
                file,
                &format!("BURNFIT_ABORT_IN_WRITE_TO: aborting inside the write of {name}"),
            );
        }
        Ok(())
    }

    /// Leaves half of the temporary file on disk and aborts.
    fn abort(file: &mut std::fs::File, message: &str) -> ! {
        if let Ok(len) = file.metadata().map(|m| m.len()) {
            let _ = file.set_len(len / 2);
            let _ = file.sync_all();
        }
        log::error!("{message}");
        std::process::abort();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::write_atomic;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_gets_the_mode_a_plain_write_would() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.bin");
        std::fs::write(&plain, b"x").unwrap();
        let atomic = dir.path().join("atomic.bin");
        write_atomic(&atomic, b"x").unwrap();
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[test]
    fn an_overwritten_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.bin");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
