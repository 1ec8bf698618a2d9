//! A damaged state file, opened once, and what a recovery does with it: the earlier copies
//! beside it read from its directory (held open, no link followed), the damaged file kept
//! aside, and a copy put in its place. Everything acts on the file that was checked: the name
//! is resolved once, the file opened once, and each step that replaces or moves it first
//! checks that the name still holds that file, so that another program swapping the name
//! (a link to another file, a save racing the recovery) never makes it keep or replace
//! something it did not check.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::commit::{Precondition, Target, Write, bytes, replace};
use super::dir::{Dir, Kind, Stat};
use super::faults::fault;
use super::names::{self, Sibling};
use super::{AuditOp, Disk, backup, io_error};
use crate::error::{Error, IoOp};

/// The file at a path, as a save would write it (a link at the path followed once), open.
pub(crate) struct Damaged {
    target: Target,
    file: File,
    stat: Stat,
}

/// An earlier copy of a damaged file, in its directory.
pub(crate) struct Copy {
    /// Its name in the directory.
    pub(crate) name: OsString,
    /// Its path, for reports.
    pub(crate) path: PathBuf,
    /// A generation (not a backup of another version).
    pub(crate) generation: bool,
}

impl Damaged {
    /// The file at `path`, opened; `None` if there is none. Refuses what is not a regular file.
    pub(crate) fn open(disk: &Disk, path: &Path) -> Result<Option<Damaged>, Error> {
        let target = Target::resolve(path, disk.durability)?;
        let Some((file, _)) = target.current()? else {
            return Ok(None);
        };
        let stat = Dir::stat_file(&file).map_err(io_error(path, IoOp::Metadata))?;
        if stat.kind != Kind::File {
            return Err(Error::NotRegularFile {
                path: path.to_owned(),
                kind: stat.kind.file_kind(),
            });
        }
        Ok(Some(Damaged { target, file, stat }))
    }

    /// The bytes of the file opened, at most `disk.max_size`.
    pub(crate) fn bytes(&self, disk: &Disk) -> Result<Vec<u8>, Error> {
        if self.stat.size > disk.max_size {
            return Err(super::read::too_large(
                &self.target.named,
                self.stat.size,
                disk.max_size,
            ));
        }
        backup::read_opened(&self.file, self.stat.size, &self.target.named)
    }

    /// The earlier copies beside it, in the order a recovery tries them: its generations,
    /// newest first, then its backups of other versions, newest version first.
    pub(crate) fn copies(&self) -> Result<Vec<Copy>, Error> {
        let dir = &self.target.dir;
        let name = &self.target.name;
        let named = &self.target.named;
        let generations =
            super::generations::list_in(dir, name).map_err(io_error(named, IoOp::Read))?;
        let backups = backup::versions_in(dir, name).map_err(io_error(named, IoOp::Read))?;
        let copy = |sibling: Sibling, generation: bool| {
            let name = names::name_for(name, sibling);
            Copy {
                path: dir.join(&name),
                name,
                generation,
            }
        };
        Ok(generations
            .into_iter()
            .map(|(number, _)| copy(Sibling::Generation(number), true))
            .chain(
                backups
                    .into_iter()
                    .map(|version| copy(Sibling::Backup(version), false)),
            )
            .collect())
    }

    /// The bytes of `copy`, if it is a plain file persist could have made: a regular file
    /// with that one name (never a link, nor a second name of a file elsewhere), on the same
    /// file system, at most `disk.max_size` bytes. `None` otherwise.
    pub(crate) fn read_copy(&self, disk: &Disk, copy: &Copy) -> Option<Vec<u8>> {
        let dir = &self.target.dir;
        let file = fault(IoOp::Open, &copy.path)
            .and_then(|()| dir.open_file(&copy.name, false))
            .ok()?;
        let stat = Dir::stat_file(&file).ok()?;
        let plain = stat.kind == Kind::File
            && stat.nlink == 1
            && stat.dev == self.stat.dev
            && stat.size <= disk.max_size;
        if !plain {
            return None;
        }
        backup::read_opened(&file, stat.size, &copy.path).ok()
    }

    /// Whether the name still holds the file opened.
    fn unchanged(&self) -> bool {
        self.target
            .dir
            .stat(&self.target.name)
            .ok()
            .flatten()
            .is_some_and(|now| now.ino == self.stat.ino && now.dev == self.stat.dev)
    }

    /// Keeps the damaged file as `<name>.corrupt-<ms>` (its bytes, 0600, durably) and puts
    /// `data`, an earlier copy's bytes, in its place, durably and atomically; returns where the
    /// damaged file is kept. [`Error::Contended`] (and nothing changed) when the name no longer
    /// holds the file opened: another program replaced it meanwhile.
    pub(crate) fn put_back(&self, disk: &Disk, data: &[u8]) -> Result<PathBuf, Error> {
        if !self.unchanged() {
            return Err(self.contended());
        }
        let damaged = backup::keep_damaged_at(disk, &self.target, &self.file)?;
        let unchanged = || self.unchanged();
        let write = Write {
            version: super::version_of(data).and_then(|version| u32::try_from(version).ok()),
            audit: Some(AuditOp::Restore),
            // The damaged file is kept already, and is no generation.
            kept: true,
            unless_changed: Some(Precondition(&unchanged)),
            ..Write::default()
        };
        match replace(disk, &self.target, &write, bytes(data)) {
            Ok(_) => Ok(damaged),
            Err(error) => {
                // The copy of a file that was not replaced is no record of anything.
                if let Some(name) = damaged.file_name() {
                    let _ = self.target.dir.remove_file(name);
                }
                Err(error)
            }
        }
    }

    /// Moves the damaged file aside as `<name>.corrupt-<ms>` (renamed, made private, durably),
    /// leaving its name free; returns where. Where the path is a symbolic link, the file is
    /// copied aside instead and left in place: moved, it would leave the link dangling, and
    /// saves never write through a dangling link; the next save replaces it. [`Error::Contended`]
    /// when the name no longer holds the file opened.
    pub(crate) fn move_aside(&self, disk: &Disk) -> Result<PathBuf, Error> {
        if self.target.through_link {
            if !self.unchanged() {
                return Err(self.contended());
            }
            return backup::keep_damaged_at(disk, &self.target, &self.file);
        }
        let dir = &self.target.dir;
        let name = backup::free_name(dir, &self.target.name, Sibling::Corrupt);
        let moved = dir.join(&name);
        if !self.unchanged() {
            return Err(self.contended());
        }
        fault(IoOp::Rename, dir.path())
            .and_then(|()| dir.rename(&self.target.name, dir, &name))
            .map_err(io_error(&moved, IoOp::Rename))?;
        if self.stat.nlink == 1 {
            let _ = super::dir::set_mode(&self.file, 0o600);
        }
        if disk.syncs() {
            fault(IoOp::SyncDir, dir.path())
                .and_then(|()| dir.sync())
                .map_err(io_error(&moved, IoOp::SyncDir))?;
        }
        Ok(moved)
    }

    /// Removes the copy put back (a generation: it is the file now).
    pub(crate) fn remove_copy(&self, copy: &Copy) {
        let _ =
            fault(IoOp::Remove, &copy.path).and_then(|()| self.target.dir.remove_file(&copy.name));
    }

    fn contended(&self) -> Error {
        Error::Contended {
            path: self.target.named.clone(),
            attempts: 1,
        }
    }
}
