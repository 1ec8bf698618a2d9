//! The inter-process locks: an exclusive `flock` on a separate `<name>.lock` file beside the
//! state file (and `.persist-txn.lock` for a transaction root).
//!
//! Not the state file itself: a save replaces that file's inode, so a lock held on it would
//! protect a file that is no longer there (RELIABILITY.md has the concurrency test and its
//! figures). A lock file may be removed (when its state file is removed, or a collection entry
//! deleted) only by the process holding it; every locker checks, once it holds the lock, that
//! the path still names the file it locked, and starts again on the new file if not. So a
//! waiter that was queued on a removed lock file never believes it holds the lock.
//!
//! A lock has a scope: the lock of a state file is shared by threads as by processes (a second
//! thread waits, as another process would), while a journal or a transaction root is open once
//! per process, and a second open in the same process fails at once with
//! [`Error::AlreadyOpen`] instead of waiting for itself.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::commit::{Target, open_parent};
use super::dir::{Dir, Kind, Stat};
use super::faults::fault;
use super::names::{self, Sibling};
use super::{Durability, io_error};
use crate::error::{Error, IoOp};

/// Longest pause between two attempts while waiting for the lock.
const MAX_BACKOFF: Duration = Duration::from_millis(8);

/// Who waits for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Threads of this process wait for each other as processes do.
    Shared,
    /// One holder per process: a second attempt in this process fails at once.
    Process,
}

/// The lock files this process holds with [`Scope::Process`] (device, inode).
static HELD: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

fn held() -> std::sync::MutexGuard<'static, Option<HashSet<(u64, u64)>>> {
    HELD.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Holds the lock until dropped (closing the descriptor releases it, also when the process
/// dies).
#[derive(Debug)]
pub(crate) struct LockGuard {
    file: File,
    dir: Arc<Dir>,
    name: OsString,
    /// The key in [`HELD`], for a [`Scope::Process`] lock.
    owned: Option<(u64, u64)>,
}

impl LockGuard {
    /// Removes the lock file while holding it: whoever waits on it finds, once it holds it,
    /// that the path no longer names it, and starts again on a new one.
    pub(crate) fn remove(self, durability: Durability) -> Result<(), Error> {
        let path = self.dir.join(&self.name);
        fault(IoOp::Remove, &path)
            .and_then(|()| self.dir.remove_file(&self.name))
            .or_else(|error| match error.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(error),
            })
            .map_err(io_error(&path, IoOp::Remove))?;
        if durability == Durability::Full {
            self.dir.sync().map_err(io_error(&path, IoOp::SyncDir))?;
        }
        Ok(())
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(key) = self.owned
            && let Some(held) = held().as_mut()
        {
            held.remove(&key);
        }
    }
}

/// Takes the exclusive lock of the state file at `path`, waiting at most `timeout` (forever if
/// `None`); the directory is created if missing.
pub(crate) fn exclusive(path: &Path, timeout: Option<Duration>) -> Result<LockGuard, Error> {
    exclusive_with(path, timeout, Scope::Shared)
}

/// [`exclusive`] with the given [`Scope`].
pub(crate) fn exclusive_with(
    path: &Path,
    timeout: Option<Duration>,
    scope: Scope,
) -> Result<LockGuard, Error> {
    let target = Target::locate(path)?;
    let dir = Arc::new(open_parent(path, &target.dir_path(), Durability::Full)?);
    let name = names::name_for(&target.name, Sibling::Lock);
    exclusive_in(&dir, &name, path, timeout, scope)
}

/// Takes the exclusive lock held in the file `name` of `dir` on behalf of `named` (errors name
/// both), waiting at most `timeout`.
pub(crate) fn exclusive_in(
    dir: &Arc<Dir>,
    name: &OsStr,
    named: &Path,
    timeout: Option<Duration>,
    scope: Scope,
) -> Result<LockGuard, Error> {
    take_in(dir, name, named, timeout, scope, Access::Exclusive)
}

/// Takes the lock held in the file `name` of `dir` shared with other shared holders (threads
/// of this process as other processes), on behalf of `named`, waiting at most `timeout` for an
/// exclusive holder: how a collection's single writes keep out of its batches.
#[cfg_attr(not(feature = "collection"), allow(dead_code))]
pub(crate) fn shared_in(
    dir: &Arc<Dir>,
    name: &OsStr,
    named: &Path,
    timeout: Option<Duration>,
) -> Result<LockGuard, Error> {
    take_in(dir, name, named, timeout, Scope::Shared, Access::Shared)
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// One holder.
    Exclusive,
    /// Any number of shared holders, and no exclusive one.
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    Shared,
}

/// [`exclusive_in`] or [`shared_in`].
fn take_in(
    dir: &Arc<Dir>,
    name: &OsStr,
    named: &Path,
    timeout: Option<Duration>,
    scope: Scope,
    access: Access,
) -> Result<LockGuard, Error> {
    let lock_path = dir.join(name);
    let started = Instant::now();
    loop {
        let (file, stat) = open_lock_file(dir, name, &lock_path)?;
        let key = (stat.dev, stat.ino);
        let owned = match scope {
            Scope::Shared => None,
            Scope::Process => {
                if !held().get_or_insert_with(HashSet::new).insert(key) {
                    return Err(Error::AlreadyOpen {
                        path: named.to_owned(),
                        lock_path,
                    });
                }
                Some(key)
            }
        };
        let guard = LockGuard {
            file,
            dir: Arc::clone(dir),
            name: name.to_owned(),
            owned,
        };
        wait_for(&guard.file, named, &lock_path, started, timeout, access)?;
        // Held: but the file may have been removed (or replaced) by its holder meanwhile.
        match dir.stat(name) {
            Ok(Some(now)) if now.same_file(&stat) => return Ok(guard),
            Ok(_) => continue,
            Err(error) => return Err(io_error(&lock_path, IoOp::OpenLock)(error)),
        }
    }
}

/// A file or directory (device, inode) this process holds for one user at a time (a journal's
/// file, a transaction's root): a second holder here fails at once with
/// [`Error::AlreadyOpen`], whatever name it came by (a hard link, another spelling) and even if
/// the lock file was removed by another program. Dropping it withdraws the registration.
#[derive(Debug)]
pub(crate) struct Registration {
    key: (u64, u64),
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(held) = held().as_mut() {
            held.remove(&self.key);
        }
    }
}

/// Registers `key` (a device and inode) for `named`, whose lock file is `lock_path`.
pub(crate) fn register(
    key: (u64, u64),
    named: &Path,
    lock_path: &Path,
) -> Result<Registration, Error> {
    match held().get_or_insert_with(HashSet::new).insert(key) {
        true => Ok(Registration { key }),
        false => Err(Error::AlreadyOpen {
            path: named.to_owned(),
            lock_path: lock_path.to_owned(),
        }),
    }
}

/// The exclusive `flock` of an open file itself (a journal's: one writer, whatever name opened
/// it), with its [`Registration`]. The `flock` lasts as long as the file's descriptor.
pub(crate) type FileHold = Registration;

/// Takes the exclusive `flock` of `file` (named `named`, whose lock file is `lock_path`, for
/// errors), waiting at most `timeout` for another process.
pub(crate) fn hold_file(
    file: &File,
    named: &Path,
    lock_path: &Path,
    timeout: Option<Duration>,
) -> Result<FileHold, Error> {
    let stat = Dir::stat_file(file).map_err(io_error(named, IoOp::Metadata))?;
    let hold = register((stat.dev, stat.ino), named, lock_path)?;
    wait_for(
        file,
        named,
        named,
        Instant::now(),
        timeout,
        Access::Exclusive,
    )?;
    Ok(hold)
}

/// Takes the lock on `file`, waiting at most what is left of `timeout` since `started`.
fn wait_for(
    file: &File,
    named: &Path,
    lock_path: &Path,
    started: Instant,
    timeout: Option<Duration>,
    access: Access,
) -> Result<(), Error> {
    let mut backoff = Duration::from_micros(100);
    loop {
        match fault(IoOp::Lock, lock_path)
            .map_err(TryLockError::Error)
            .and_then(|()| match access {
                Access::Exclusive => file.try_lock(),
                Access::Shared => file.try_lock_shared(),
            }) {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(io_error(lock_path, IoOp::Lock)(source));
            }
        }
        let Some(timeout) = timeout else {
            let waited = match access {
                Access::Exclusive => file.lock(),
                Access::Shared => file.lock_shared(),
            };
            return waited.map_err(io_error(lock_path, IoOp::Lock));
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::LockTimeout {
                path: named.to_owned(),
                lock_path: lock_path.to_owned(),
                waited,
            });
        }
        std::thread::sleep(backoff.min(timeout - waited));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens (creating, mode 0600) the lock file `name` in `dir`, never following a symbolic link
/// at it, and refusing anything but a regular file on the directory's own mount.
fn open_lock_file(dir: &Dir, name: &OsStr, lock_path: &Path) -> Result<(File, Stat), Error> {
    let file = fault(IoOp::OpenLock, lock_path)
        .and_then(|()| dir.open_or_create(name))
        .map_err(|error| refused_or(dir, name, lock_path, IoOp::OpenLock, error))?;
    let stat = Dir::stat_file(&file).map_err(io_error(lock_path, IoOp::Metadata))?;
    if stat.kind != Kind::File {
        return Err(Error::NotRegularFile {
            path: lock_path.to_owned(),
            kind: stat.kind.file_kind(),
        });
    }
    if !dir.same_mount(&stat) {
        return Err(Error::InvalidPath {
            path: lock_path.to_owned(),
            reason: super::dir::Escape::Mount(lock_path.to_owned()).reason(),
        });
    }
    Ok((file, stat))
}

/// The error of an open that failed on `name` in `dir`: a symbolic link there is named as
/// such, anything else is an [`Error::Io`] with `op`.
pub(crate) fn refused_or(
    dir: &Dir,
    name: &OsStr,
    path: &Path,
    op: IoOp,
    error: std::io::Error,
) -> Error {
    if error.raw_os_error() == Some(libc::ELOOP)
        && let Ok(Some(stat)) = dir.stat(name)
        && stat.kind == Kind::Symlink
    {
        return Error::NotRegularFile {
            path: path.to_owned(),
            kind: crate::FileKind::Symlink,
        };
    }
    io_error(path, op)(error)
}
