//! The inter-process lock of a read-modify-write: an exclusive `flock` on a separate, permanent
//! `<name>.lock` file beside the state file.
//!
//! Not the state file itself: a save replaces that file's inode, so a lock held on it would
//! protect a file that is no longer there (RELIABILITY.md has the concurrency test and its
//! figures). The lock file is never deleted, for the same reason: a process could be waiting on
//! the inode being removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, FileKind, IoOp};
use crate::fs::{create_parents, io_error, parent_dir, resolve_target};

/// Longest pause between two attempts while waiting for the lock.
const MAX_BACKOFF: Duration = Duration::from_millis(8);

/// Holds the lock until dropped (closing the descriptor releases it, also when the process dies).
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

/// The lock file of the state file at `path`: beside the file a symbolic link at `path` points
/// to, so that every path to the same file shares one lock.
pub(crate) fn lock_path(path: &Path) -> Result<PathBuf, Error> {
    let target = resolve_target(path)?;
    let mut name = target.file_name().unwrap_or(target.as_os_str()).to_owned();
    name.push(".lock");
    Ok(parent_dir(&target).join(name))
}

/// Takes the exclusive lock of the state file at `path`, waiting at most `timeout` (forever if
/// `None`).
pub(crate) fn exclusive(path: &Path, timeout: Option<Duration>) -> Result<LockGuard, Error> {
    exclusive_file(path, lock_path(path)?, timeout)
}

/// Takes the exclusive lock held in the file `lock_path` on behalf of `path` (errors name
/// both), waiting at most `timeout`.
pub(crate) fn exclusive_file(
    path: &Path,
    lock_path: PathBuf,
    timeout: Option<Duration>,
) -> Result<LockGuard, Error> {
    create_parents(path, parent_dir(&lock_path))?;
    let file = open_lock_file(&lock_path)?;
    let started = Instant::now();
    let mut backoff = Duration::from_micros(100);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(io_error(&lock_path, IoOp::Lock)(source));
            }
        }
        let Some(timeout) = timeout else {
            file.lock().map_err(io_error(&lock_path, IoOp::Lock))?;
            return Ok(LockGuard { _file: file });
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::LockTimeout {
                path: path.to_owned(),
                lock_path,
                waited,
            });
        }
        std::thread::sleep(backoff.min(timeout - waited));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn open_lock_file(lock_path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // 0600 from creation; never follow a symbolic link planted at the lock path.
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options
        .open(lock_path)
        .map_err(io_error(lock_path, IoOp::OpenLock))?;
    let metadata = file
        .metadata()
        .map_err(io_error(lock_path, IoOp::Metadata))?;
    if !metadata.is_file() {
        return Err(Error::NotRegularFile {
            path: lock_path.to_owned(),
            kind: FileKind::of(metadata.file_type()),
        });
    }
    Ok(file)
}
