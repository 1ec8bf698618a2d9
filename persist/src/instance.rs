//! [`InstanceLock`]: one running instance of an application per directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, FileKind, IoOp};
use crate::shell::commit::create_dirs;
use crate::shell::{Durability, io_error};

/// The lock file an [`InstanceLock`] holds in its directory.
pub const INSTANCE_LOCK_FILE: &str = crate::shell::names::INSTANCE_LOCK;

/// Proof that this process is the one running instance for a directory (usually the app's data
/// or state directory), held until dropped.
///
/// It is an exclusive `flock(2)` on `<dir>/instance.lock`, so it is released when the guard
/// drops and also when the process exits or is killed: there is no stale PID file to clean up
/// after a crash. The file holds the holder's process id, for the message of
/// [`Error::AlreadyRunning`]; it is never deleted (a process may be waiting on its inode).
///
/// # Examples
///
/// ```no_run
/// match persist::InstanceLock::acquire("/home/ada/.local/state/editor") {
///     Ok(_guard) => { /* run the app; keep `_guard` alive until the end of main */ }
///     Err(persist::Error::AlreadyRunning { pid, .. }) => {
///         eprintln!("already running (pid {pid:?}): bringing that window to the front instead");
///     }
///     Err(other) => eprintln!("{other}"),
/// }
/// ```
#[derive(Debug)]
#[must_use = "the instance lock is released when the guard is dropped"]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the instance lock of `dir` (created, mode 0700, if missing), without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] with the other process's id while another process (or another
    /// guard of this one) holds it; [`Error::Io`] naming the lock file when it cannot be
    /// created or locked (a file system without locks: an `Unsupported` source);
    /// [`Error::NotRegularFile`] if something else is at the lock file's path.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<InstanceLock, Error> {
        let dir = dir.as_ref();
        let path = dir.join(INSTANCE_LOCK_FILE);
        if !dir.is_dir() {
            create_dirs(&path, dir, Durability::Full)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut file = options
            .open(&path)
            .map_err(io_error(&path, IoOp::OpenLock))?;
        let metadata = file.metadata().map_err(io_error(&path, IoOp::Metadata))?;
        if !metadata.is_file() {
            return Err(Error::NotRegularFile {
                path,
                kind: FileKind::of(metadata.file_type()),
            });
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::AlreadyRunning {
                    pid: holder.trim().parse().ok(),
                    path,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(io_error(&path, IoOp::Lock)(source));
            }
        }
        // Ours now: say who holds it. Informative only; the lock is what counts.
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{pid}"))
            .map_err(io_error(&path, IoOp::Write))?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
