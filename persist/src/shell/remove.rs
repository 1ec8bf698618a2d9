//! Removals: a state file with every file persist keeps beside it, a directory tree under a
//! root (never followed through a link or across a mount), a single file.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::commit::escape;
use super::dir::{Dir, Escape, Kind, Lookup};
use super::faults::fault;
use super::lock::{self, Scope};
use super::names::{self, Sibling};
use super::{AuditEntry, AuditOp, Disk, io_error, parent_dir, version_of};
use crate::error::{Error, FileKind, IoOp};

/// Removes the file `name` in `dir`; `false` if there was none. Errors name `named`.
pub(crate) fn remove_file(dir: &Dir, name: &OsStr, named: &Path) -> Result<bool, Error> {
    match fault(IoOp::Remove, dir.path()).and_then(|()| dir.remove_file(name)) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error(named, IoOp::Remove)(error)),
    }
}

/// Syncs `dir` when `disk` syncs directories; errors name `named`.
pub(crate) fn sync_dir(disk: &Disk, dir: &Dir, named: &Path) -> Result<(), Error> {
    if !disk.syncs() {
        return Ok(());
    }
    fault(IoOp::SyncDir, dir.path())
        .and_then(|()| dir.sync())
        .map_err(io_error(named, IoOp::SyncDir))
}

/// Deletes the state file at `path` and every file persist keeps beside it (see
/// [`names`]), under the file's lock, the lock file last; syncs the directory; records the
/// removal. Returns what it removed, sorted.
pub(crate) fn remove_state_file(disk: &Disk, path: &Path) -> Result<Vec<PathBuf>, Error> {
    let is_file = match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => true,
        Ok(metadata) if metadata.file_type().is_symlink() => false,
        Ok(metadata) => {
            return Err(Error::NotRegularFile {
                path: path.to_owned(),
                kind: FileKind::of(metadata.file_type()),
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(io_error(path, IoOp::Metadata)(error)),
    };
    let Some(name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let dir = match Dir::open(parent_dir(path)) {
        Ok(dir) => Arc::new(dir),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path, IoOp::Open)(error)),
    };
    let lock_name = names::name_for(name, Sibling::Lock);
    // Only a regular file has updates to wait for (a symlinked file's lock lives beside its
    // target, which is left alone).
    let lock = match is_file {
        true => Some(lock::exclusive_in(
            &dir,
            &lock_name,
            path,
            disk.lock_timeout,
            Scope::Shared,
        )?),
        false => None,
    };
    let from_version = match disk.audited() && is_file {
        true => dir
            .open_file(name, false)
            .ok()
            .and_then(|file| super::read::head(&file, 64).ok())
            .and_then(|head| version_of(&head)),
        false => None,
    };
    let entries = dir.list().map_err(io_error(path, IoOp::Read))?;
    let mut removed = Vec::new();
    // The copies first, then the file itself (then its lock): a removal that fails half-way
    // never leaves copies of a file that is gone. Only files and links are persist's: a
    // directory with a look-alike name is someone else's and stays.
    let mut siblings: Vec<OsString> = entries
        .into_iter()
        .filter(|(entry, kind)| {
            *kind != Kind::Dir
                && names::classify(entry, name).is_some_and(|kind| kind != Sibling::Lock)
        })
        .map(|(entry, _)| entry)
        .collect();
    siblings.sort();
    let mut removed_file = false;
    for entry in siblings.iter().map(OsString::as_os_str).chain([name]) {
        let entry_path = dir.join(entry);
        if remove_file(&dir, entry, &entry_path)? {
            removed_file |= entry == name;
            removed.push(entry_path);
        }
    }
    // The lock file last, while it is held: an update waiting for it starts again on a new one.
    match lock {
        Some(lock) => {
            if dir.stat(&lock_name).ok().flatten().is_some() {
                removed.push(lock.path());
            }
            lock.remove(super::Durability::None)?;
        }
        None => {
            if remove_file(&dir, &lock_name, &dir.join(&lock_name))? {
                removed.push(dir.join(&lock_name));
            }
        }
    }
    removed.sort();
    if !removed.is_empty() {
        sync_dir(disk, &dir, path)?;
    }
    if removed_file {
        disk.audit(&[AuditEntry {
            operation: AuditOp::Remove,
            path,
            key: None,
            from_version,
            to_version: None,
            written: None,
        }])?;
    }
    Ok(removed)
}

/// Deletes the directory `dir` and everything in it, then syncs its parent. Symbolic links
/// inside are removed as links, never followed; a mount inside is not crossed (an error names
/// it, and what it holds stays). `dir` itself must be a directory, not a link to one.
pub(crate) fn remove_dir(disk: &Disk, dir: &Path) -> Result<(), Error> {
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
    let opened = Dir::open_root(dir).map_err(io_error(dir, IoOp::Open))?;
    empty_dir(&opened)?;
    let parent = Dir::open(parent_dir(dir)).map_err(io_error(dir, IoOp::Open))?;
    let name = dir.file_name().unwrap_or(dir.as_os_str());
    fault(IoOp::Remove, parent.path())
        .and_then(|()| parent.remove_empty_dir(name))
        .map_err(io_error(dir, IoOp::Remove))?;
    sync_dir(disk, &parent, dir)
}

/// Removes `name` in `parent` (a directory under a root) and, for a directory, everything in
/// it: links are removed as links and mounts are not crossed.
pub(crate) fn remove_tree(parent: &Dir, name: &OsStr) -> Result<(), Error> {
    let path = parent.join(name);
    match parent.child(name).map_err(io_error(&path, IoOp::Open))? {
        Lookup::Missing => Ok(()),
        Lookup::Found(dir) => {
            empty_dir(&dir)?;
            match fault(IoOp::Remove, parent.path()).and_then(|()| parent.remove_empty_dir(name)) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(io_error(&path, IoOp::Remove)(error)),
            }
        }
        Lookup::Escape(Escape::Mount(path)) => Err(escape(Escape::Mount(path))),
        // A link, or a file where a directory was expected: removed as it is.
        Lookup::Escape(_) => remove_file(parent, name, &path).map(drop),
    }
}

/// Removes everything in `dir`.
fn empty_dir(dir: &Dir) -> Result<(), Error> {
    for (entry, kind) in dir.list().map_err(io_error(dir.path(), IoOp::Read))? {
        match kind {
            Kind::Dir => remove_tree(dir, &entry)?,
            _ => {
                remove_file(dir, &entry, &dir.join(&entry))?;
            }
        }
    }
    Ok(())
}
