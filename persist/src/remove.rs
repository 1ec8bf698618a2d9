//! Cleanup: a state file with everything persist keeps beside it, or a whole directory of them
//! (a user logging out), removed durably.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::audit::{self, AuditOp};
use crate::error::{Error, FileKind, IoOp};
use crate::fs::{Durability, io_error, is_temp_of, parent_dir, sync_dir};
use crate::{Options, lock};

impl Options {
    /// Deletes the state file at `path` and everything persist keeps beside it: its backups
    /// (`<name>.v<N>.bak`), its lock file (`<name>.lock`) and temporary files a crashed save
    /// left (`.<name>.<random>.tmp`). Takes the file's lock first, so no
    /// [`update`](Options::update) is half-way; one that was waiting then starts from nothing.
    /// Removing the lock file is what a cleanup must do, and what updates never do: an update
    /// that was already waiting for the removed lock file and one that starts after the removal
    /// (on a new lock file) are not serialized against each other, so remove state files when
    /// nothing else is updating them (at logout, at uninstall).
    /// Then syncs the directory (unless [`Durability::None`]), so the removal survives a power
    /// cut. Returns the paths it removed; a missing file is no error.
    ///
    /// A symbolic link at `path` is removed as a link: the file it points to, which may be in
    /// another directory, and that file's backups are left alone. Anything else at `path` that
    /// is not a regular file (a directory, a FIFO) is refused untouched.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegularFile`] for a directory, FIFO or device at `path`; [`Error::Io`] when an
    /// entry cannot be removed or the directory not synced; the lock's errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let removed = persist::Options::new().remove("session.json")?;
    /// println!("removed {} files", removed.len());
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn remove(&self, path: impl AsRef<Path>) -> Result<Vec<PathBuf>, Error> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if !metadata.is_file() && !metadata.file_type().is_symlink() => {
                return Err(Error::NotRegularFile {
                    path: path.to_owned(),
                    kind: FileKind::of(metadata.file_type()),
                });
            }
            _ => {}
        }
        let dir = parent_dir(path);
        let Some(name) = path.file_name() else {
            return Ok(Vec::new());
        };
        // Only a regular file has updates to wait for (a symlinked file's lock lives beside its
        // target, which is left alone); this path's own lock file, if any, is one of the
        // entries below either way.
        let _lock = if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            Some(lock::exclusive(path, self.lock_wait())?)
        } else {
            None
        };
        let from_version = self
            .audited()
            .then(|| audit::stored_version(path))
            .flatten();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(dir, IoOp::Read)(error)),
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            if belongs_to(&entry.file_name(), name) {
                let entry = entry.path();
                std::fs::remove_file(&entry).map_err(io_error(&entry, IoOp::Remove))?;
                removed.push(entry);
            }
        }
        removed.sort();
        if !removed.is_empty() && self.sync_level() != Durability::None {
            sync_dir(dir).map_err(io_error(dir, IoOp::SyncDir))?;
        }
        if removed.iter().any(|entry| entry.file_name() == Some(name)) {
            self.audit_entry(audit::Entry {
                operation: AuditOp::Remove,
                path,
                key: None,
                from_version,
                to_version: None,
                written: None,
            })?;
        }
        Ok(removed)
    }

    /// Deletes the directory `dir` and everything in it (an application's or one user's state
    /// directory, at logout), then syncs its parent (unless [`Durability::None`]). Symbolic
    /// links inside are removed as links and never followed, so nothing outside `dir` is
    /// touched; `dir` itself must be a real directory, not a link to one. A missing `dir` is no
    /// error.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegularFile`] with [`FileKind::Symlink`] when `dir` is a symbolic link (or
    /// the kind found when it is not a directory); [`Error::Io`] naming the entry that could
    /// not be removed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let dirs = persist::AppDirs::new("com", "Example", "Editor")?;
    /// let options = persist::Options::new();
    /// for dir in [dirs.config(), dirs.data(), dirs.state(), dirs.cache()] {
    ///     options.remove_dir(dir)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_dir(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        let dir = dir.as_ref();
        let metadata = match std::fs::symlink_metadata(dir) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error(dir, IoOp::Metadata)(error)),
        };
        if !metadata.is_dir() {
            return Err(Error::NotRegularFile {
                path: dir.to_owned(),
                kind: FileKind::of(metadata.file_type()),
            });
        }
        // std's remove_dir_all never follows a symbolic link inside the tree: it unlinks it.
        std::fs::remove_dir_all(dir).map_err(io_error(dir, IoOp::Remove))?;
        if self.sync_level() != Durability::None {
            sync_dir(parent_dir(dir)).map_err(io_error(dir, IoOp::SyncDir))?;
        }
        Ok(())
    }
}

/// Whether the directory entry `candidate` is the state file `name` or one of its companions.
fn belongs_to(candidate: &OsStr, name: &OsStr) -> bool {
    if candidate == name || is_temp_of(candidate, name) {
        return true;
    }
    let (Some(candidate), Some(name)) = (candidate.to_str(), name.to_str()) else {
        return false;
    };
    candidate.strip_prefix(name).is_some_and(|rest| {
        rest == ".lock"
            || rest
                .strip_prefix(".v")
                .and_then(|rest| rest.strip_suffix(".bak"))
                .is_some_and(|version| {
                    !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
                })
    })
}
