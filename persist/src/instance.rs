//! [`InstanceLock`]: one running instance of an application per directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoOp};
use crate::shell::commit::create_dirs;
use crate::shell::dir::{Dir, Kind};
use crate::shell::lock::refused_or;
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
    /// [`Error::AlreadyRunning`] with the other process's id while another process holds it,
    /// [`Error::AlreadyOpen`] while another guard of this process does; [`Error::Io`] naming
    /// the lock file when it cannot be created or locked (a file system without locks: an
    /// `Unsupported` source); [`Error::InvalidPath`] when the lock file is another mount or has
    /// other names (a hard link: the process id is never written into someone else's file);
    /// [`Error::NotRegularFile`] if something else is at the lock file's path.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<InstanceLock, Error> {
        let dir = dir.as_ref();
        let path = dir.join(INSTANCE_LOCK_FILE);
        if !dir.is_dir() {
            create_dirs(&path, dir, Durability::Full)?;
        }
        let opened = Dir::open_root(dir).map_err(io_error(&path, IoOp::Open))?;
        let name = OsStr::new(INSTANCE_LOCK_FILE);
        // Never through a link, and only persist's own file: the process id is written into
        // it, so a file of another mount or one with other names (a hard link) is refused.
        let mut file = opened
            .open_or_create(name)
            .map_err(|error| refused_or(&opened, name, &path, IoOp::OpenLock, error))?;
        let stat = Dir::stat_file(&file).map_err(io_error(&path, IoOp::Metadata))?;
        if stat.kind != Kind::File {
            return Err(Error::NotRegularFile {
                path,
                kind: stat.kind.file_kind(),
            });
        }
        if !opened.same_mount(&stat) || stat.nlink != 1 {
            return Err(Error::InvalidPath {
                path,
                reason: "it is not persist's own lock file (another mount, or a file with \
                         other names): it is left alone"
                    .to_owned(),
            });
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.trim().parse().ok();
                if pid == Some(std::process::id()) {
                    return Err(Error::AlreadyOpen {
                        path: dir.to_owned(),
                        lock_path: path,
                    });
                }
                return Err(Error::AlreadyRunning { pid, path });
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
