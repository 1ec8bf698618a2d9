//! Backups: before a save replaces a file that holds another version (the first save after a
//! migration, or an older program writing over a newer file), the old bytes are kept beside it
//! as `<name>.v<version>.bak`.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;

use super::commit::{Target, Write, bytes, replace};
use super::dir::{Dir, Kind};
use super::faults::fault;
use super::names::{self, Sibling};
use super::read::{read_open, too_large};
use super::{AuditEntry, AuditOp, Disk, Written, io_error, version_of};
use crate::codec::{leading_version, stored_version};
use crate::error::{Error, IoOp};

/// A backup of a state file at an older (or newer) version, as listed by
/// [`Options::backups_of`](crate::Options::backups_of).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Backup {
    /// The schema version the backed-up file holds.
    pub version: u64,
    /// Where the backup is: `<name>.v<version>.bak` beside the state file.
    pub path: PathBuf,
}

/// The version stored in the file `target` replaces and its bytes, when it differs from
/// `version`. `None` if it holds `version`, or its version cannot be told (a corrupt file:
/// nothing a backup could name). `head` is the file's first bytes.
fn other_version(
    disk: &Disk,
    target: &Target,
    version: u64,
    unversioned_as: Option<u32>,
    head: &[u8],
) -> Result<Option<(u64, Vec<u8>)>, Error> {
    // The common case, a file this version wrote, costs the one small read of `head`.
    if leading_version(head) == Some(version) {
        return Ok(None);
    }
    let Some(bytes) = read_in(disk, &target.dir, &target.name, &target.named)? else {
        return Ok(None);
    };
    let stored = match stored_version(&bytes) {
        Some(stored) => stored,
        None => match unversioned_as {
            Some(root) if serde_json::from_slice::<IgnoredAny>(&bytes).is_ok() => u64::from(root),
            _ => return Ok(None),
        },
    };
    Ok((stored != version).then_some((stored, bytes)))
}

/// The whole regular file `name` in `dir` (never through a link), at most `disk.max_size`
/// bytes; `None` if there is none.
pub(crate) fn read_in(
    disk: &Disk,
    dir: &Dir,
    name: &std::ffi::OsStr,
    named: &Path,
) -> Result<Option<Vec<u8>>, Error> {
    let path = dir.join(name);
    let file = match fault(IoOp::Open, &path).and_then(|()| dir.open_file(name, false)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(super::lock::refused_or(dir, name, named, IoOp::Open, error)),
    };
    let stat = Dir::stat_file(&file).map_err(io_error(named, IoOp::Metadata))?;
    if stat.kind != Kind::File {
        return Err(Error::NotRegularFile {
            path: named.to_owned(),
            kind: stat.kind.file_kind(),
        });
    }
    if stat.size > disk.max_size {
        return Err(too_large(named, stat.size, disk.max_size));
    }
    read_open(named, &file, stat.size, disk.max_size).map(Some)
}

/// Before `target` is replaced by a file at `version`: keeps the current file (whose first
/// bytes are `head`) as a backup if it holds another version, then removes all but the
/// `disk.backups` newest backups.
pub(crate) fn preserve(
    disk: &Disk,
    target: &Target,
    version: u64,
    unversioned_as: Option<u32>,
    head: &[u8],
) -> Result<(), Error> {
    if disk.backups == 0 {
        return Ok(());
    }
    let Some((stored, bytes)) = other_version(disk, target, version, unversioned_as, head)? else {
        return Ok(());
    };
    write_copy(disk, target, stored, &bytes)?;
    // Best effort: the backup that matters is written; an old one left over is harmless.
    if let Ok(backups) = list_in(&target.dir) {
        for stale in backups
            .iter()
            .filter(|b| b.0 == target.name)
            .skip(disk.backups)
        {
            let name = names::name_for(&target.name, Sibling::Backup(stale.1));
            let _ =
                fault(IoOp::Remove, target.dir.path()).and_then(|()| target.dir.remove_file(&name));
        }
    }
    Ok(())
}

/// Writes `data` (a file of `version`) as the backup of `target` of that version.
pub(crate) fn write_copy(
    disk: &Disk,
    target: &Target,
    version: u64,
    data: &[u8],
) -> Result<(), Error> {
    let name = names::name_for(&target.name, Sibling::Backup(version));
    let copy = Target::beneath(&target.dir, &name, target.dir.join(&name))?;
    // A copy: private (0600) whatever the file's mode, and not a state file of its own.
    let copy = Target { mode: None, ..copy };
    replace(disk, &copy, &Write::default(), bytes(data)).map(drop)
}

/// The file now at a target, under a second, temporary name (a hard link): what a journal's
/// rewrite keeps as its backup without copying it. [`keep`](Linked::keep) makes it the backup
/// of a version once the file was replaced; dropped unkept, the name is removed.
pub(crate) struct Linked<'t> {
    target: &'t Target,
    temp: Option<std::ffi::OsString>,
}

/// Links the file at `target` under a temporary name (see [`Linked`]). Fails where the file
/// system has no hard links; the caller copies instead.
pub(crate) fn link_current(target: &Target) -> Result<Linked<'_>, Error> {
    let temp = fault(IoOp::CreateTemp, target.dir.path())
        .and_then(|()| super::commit::link_temp(&target.dir, &target.name))
        .map_err(io_error(&target.named, IoOp::CreateTemp))?;
    Ok(Linked {
        target,
        temp: Some(temp),
    })
}

impl Linked<'_> {
    /// Makes the linked file the backup of `version` of the target (replacing one there),
    /// durably per `disk`. Returns its path.
    pub(crate) fn keep(mut self, disk: &Disk, version: u64) -> Result<PathBuf, Error> {
        let target = self.target;
        let name = names::name_for(&target.name, Sibling::Backup(version));
        let path = target.dir.join(&name);
        let temp = self.temp.take().unwrap_or_default();
        fault(IoOp::Rename, target.dir.path())
            .and_then(|()| target.dir.rename(&temp, &target.dir, &name))
            .map_err(|error| {
                let _ = target.dir.remove_file(&temp);
                io_error(&path, IoOp::Rename)(error)
            })?;
        if disk.syncs_dirs() {
            fault(IoOp::SyncDir, target.dir.path())
                .and_then(|()| target.dir.sync())
                .map_err(io_error(&path, IoOp::SyncDir))?;
        }
        Ok(path)
    }
}

impl Drop for Linked<'_> {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = self.target.dir.remove_file(&temp);
        }
    }
}

/// The backups in `dir`, as (state file name, version), newest version first.
fn list_in(dir: &Dir) -> std::io::Result<Vec<(std::ffi::OsString, u64)>> {
    let mut backups: Vec<_> = dir
        .list()?
        .into_iter()
        .filter(|(_, kind)| *kind == Kind::File)
        .filter_map(|(name, _)| match names::classify_any(&name)? {
            (file, Sibling::Backup(version)) => Some((file, version)),
            _ => None,
        })
        .collect();
    backups.sort_by_key(|backup| std::cmp::Reverse(backup.1));
    Ok(backups)
}

/// The backups of the state file at `path`, newest version first.
pub(crate) fn list(path: &Path) -> Result<Vec<Backup>, Error> {
    let located = Target::locate(path)?;
    let dir = match Dir::open(&located.dir_path()) {
        Ok(dir) => dir,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path, IoOp::Read)(error)),
    };
    let backups = list_in(&dir).map_err(io_error(path, IoOp::Read))?;
    Ok(backups
        .into_iter()
        .filter(|(name, _)| *name == located.name)
        .map(|(name, version)| Backup {
            version,
            path: dir.join(names::name_for(&name, Sibling::Backup(version))),
        })
        .collect())
}

/// Puts the backup of `version` back in place of the state file at `path`, durably and
/// atomically, after keeping the current file as a backup of its own version; records it in
/// the audit log. Under the file's lock, as an update: neither lands inside the other.
pub(crate) fn restore(disk: &Disk, path: &Path, version: u64) -> Result<(), Error> {
    let target = Target::resolve(path, disk.durability)?;
    let name = names::name_for(&target.name, Sibling::Backup(version));
    let backup_path = target.dir.join(&name);
    let missing = || Error::NotFound {
        path: backup_path.clone(),
        source: std::io::ErrorKind::NotFound.into(),
    };
    // Looked for before the lock is taken (which creates the lock file): a restore of a
    // backup that is not there changes nothing.
    if target.dir.stat(&name).ok().flatten().is_none() {
        return Err(missing());
    }
    let _lock = super::lock::exclusive(path, disk.lock_timeout)?;
    let Some(data) = read_in(disk, &target.dir, &name, &backup_path)? else {
        return Err(missing());
    };
    let head = target.head()?;
    if let Some(head) = &head
        && let Some((stored, current)) = other_version(disk, &target, version, None, head)?
    {
        write_copy(disk, &target, stored, &current)?;
    }
    replace(disk, &target, &Write::default(), bytes(&data))?;
    disk.audit(&[AuditEntry {
        operation: AuditOp::Restore,
        path,
        key: None,
        from_version: head.as_deref().and_then(version_of),
        to_version: Some(version),
        written: disk.audited().then(|| Written::of(&data)),
    }])
}
