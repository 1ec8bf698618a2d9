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
use super::{AuditEntry, AuditOp, Disk, io_error, parent_dir};
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
        true => super::version_in(&dir, name),
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
/// it, and what it holds stays). `dir` itself is reached from its parent without following a
/// link at it (a link there is refused) and must be on its parent's mount (a mount point is
/// refused before anything is deleted).
pub(crate) fn remove_dir(disk: &Disk, dir: &Path) -> Result<(), Error> {
    let Some(name) = dir.file_name() else {
        return Err(Error::InvalidPath {
            path: dir.to_owned(),
            reason: "the path names no directory (it ends in `..` or is a root)".to_owned(),
        });
    };
    let parent = match Dir::open_root(parent_dir(dir)) {
        Ok(parent) => parent,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(dir, IoOp::Open)(error)),
    };
    let top = match parent.child(name).map_err(io_error(dir, IoOp::Open))? {
        Lookup::Missing => return Ok(()),
        Lookup::Found(top) => top,
        Lookup::Escape(Escape::Symlink(path)) => {
            return Err(Error::InvalidPath {
                path,
                reason: "it is a symbolic link: remove_dir removes a real directory, and \
                         never through a link"
                    .to_owned(),
            });
        }
        Lookup::Escape(Escape::NotDir(path, kind)) => {
            return Err(Error::InvalidPath {
                path,
                reason: format!("it is a {kind}, not a directory"),
            });
        }
        Lookup::Escape(escaped) => return Err(escape(escaped)),
    };
    empty_tree(top)?;
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
            empty_tree(dir)?;
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

/// One directory of a walk down a tree: where it was, and its subdirectories still to empty.
struct Level {
    identity: Option<(u64, u64)>,
    /// Its name in the directory above (`None` for the top).
    name: Option<OsString>,
    subdirs: Vec<OsString>,
}

/// Removes everything in `top` (a directory reached under a root), depth first, without
/// recursion and with one directory open at a time, so that no depth exhausts the stack or
/// the descriptors: the walk goes down through each subdirectory (never a link, never another
/// mount) and back up through `..`, checking that it is the directory it came from.
fn empty_tree(top: Dir) -> Result<(), Error> {
    let mut current = top;
    let mut levels = vec![enter(&current, None)?];
    loop {
        let level = levels
            .last_mut()
            .expect("the top level stays until the end");
        if let Some(subdir) = level.subdirs.pop() {
            let path = current.join(&subdir);
            match current
                .child(&subdir)
                .map_err(io_error(&path, IoOp::Open))?
            {
                Lookup::Found(child) => {
                    let below = enter(&child, Some(subdir))?;
                    current = child;
                    levels.push(below);
                }
                Lookup::Missing => {}
                Lookup::Escape(Escape::Mount(path)) => return Err(escape(Escape::Mount(path))),
                Lookup::Escape(_) => {
                    remove_file(&current, &subdir, &path)?;
                }
            }
            continue;
        }
        let done = levels.pop().expect("a level was just looked at");
        let Some(name) = done.name else {
            return Ok(());
        };
        let up = current
            .parent()
            .map_err(io_error(current.path(), IoOp::Open))?;
        let expected = levels.last().and_then(|level| level.identity);
        if up.identity() != expected {
            return Err(Error::InvalidPath {
                path: current.path().to_owned(),
                reason: "the directory was moved while it was being removed".to_owned(),
            });
        }
        let path = up.join(&name);
        match fault(IoOp::Remove, up.path()).and_then(|()| up.remove_empty_dir(&name)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&path, IoOp::Remove)(error)),
        }
        current = up;
    }
}

/// Lists `dir`, removes every entry that is not a directory, and returns the level with its
/// subdirectories to walk into.
fn enter(dir: &Dir, name: Option<OsString>) -> Result<Level, Error> {
    let mut subdirs = Vec::new();
    for (entry, kind) in dir.list().map_err(io_error(dir.path(), IoOp::Read))? {
        match kind {
            Kind::Dir => subdirs.push(entry),
            _ => {
                remove_file(dir, &entry, &dir.join(&entry))?;
            }
        }
    }
    Ok(Level {
        identity: dir.identity(),
        name,
        subdirs,
    })
}
