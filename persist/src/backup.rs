//! Backups: before a save replaces a file that holds another version (the first save after a
//! migration, or an older program writing over a newer file), the old bytes are kept beside it
//! as `<name>.v<version>.bak`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;

use crate::Durability;
use crate::codec::{leading_version, stored_version};
use crate::error::{Error, IoOp};
use crate::fs::{bytes, io_error, parent_dir, read, resolve_target, write_atomic};

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

/// Enough to see `{"version":<up to 19 digits>,` after a byte-order mark, or the same indented
/// as a pretty save writes it (`{\n  "version": N,`).
const HEAD: usize = 3 + 17 + 19 + 1;

/// The name a backup of `target` at `version` gets.
pub(crate) fn backup_path(target: &Path, version: u64) -> PathBuf {
    let mut name = file_name(target);
    name.push(format!(".v{version}.bak"));
    parent_dir(target).join(name)
}

fn file_name(target: &Path) -> OsString {
    target.file_name().unwrap_or(target.as_os_str()).to_owned()
}

/// The version stored in the file at `target` and its bytes, when it differs from `version`.
/// `None` if there is no file, it holds `version`, or its version cannot be told (a corrupt
/// file: nothing a backup could name).
fn other_version(
    path: &Path,
    target: &Path,
    version: u64,
    unversioned_as: Option<u32>,
    max_size: u64,
) -> Result<Option<(u64, Vec<u8>)>, Error> {
    let mut file = match File::open(target) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path, IoOp::Open)(error)),
    };
    // The common case, a file this version wrote, costs one small read.
    let mut head = Vec::with_capacity(HEAD);
    (&mut file)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(io_error(path, IoOp::Read))?;
    if leading_version(&head) == Some(version) {
        return Ok(None);
    }
    drop(file);
    let bytes = read(target, max_size)?;
    let stored = match stored_version(&bytes) {
        Some(stored) => stored,
        None => match unversioned_as {
            Some(root) if serde_json::from_slice::<IgnoredAny>(&bytes).is_ok() => u64::from(root),
            _ => return Ok(None),
        },
    };
    Ok((stored != version).then_some((stored, bytes)))
}

/// Before `target` (the resolved target of `path`) is replaced by a file at `version`: keeps the current file as a backup if it
/// holds another version, then removes all but the `keep` newest backups.
pub(crate) fn preserve(
    path: &Path,
    target: &Path,
    version: u64,
    unversioned_as: Option<u32>,
    keep: usize,
    max_size: u64,
    durability: Durability,
) -> Result<(), Error> {
    if keep == 0 {
        return Ok(());
    }
    let Some((stored, bytes)) = other_version(path, target, version, unversioned_as, max_size)?
    else {
        return Ok(());
    };
    write_copy(&backup_path(target, stored), &bytes, durability)?;
    // Best effort: the backup that matters is written; an old one left over is harmless.
    if let Ok(backups) = list(path) {
        for stale in backups.into_iter().skip(keep) {
            let _ = std::fs::remove_file(stale.path);
        }
    }
    Ok(())
}

fn write_copy(destination: &Path, data: &[u8], durability: Durability) -> Result<(), Error> {
    write_atomic(destination, durability, bytes(data))
}

/// The backups of the state file at `path`, newest version first.
pub(crate) fn list(path: &Path) -> Result<Vec<Backup>, Error> {
    let target = resolve_target(path)?;
    let dir = parent_dir(&target);
    let name = file_name(&target);
    let Some(name) = name.to_str() else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path, IoOp::Read)(error)),
    };
    let mut backups: Vec<Backup> = entries
        .flatten()
        .filter_map(|entry| {
            let candidate = entry.file_name();
            let version = candidate
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix(".v")?
                .strip_suffix(".bak")?
                .parse()
                .ok()?;
            Some(Backup {
                version,
                path: entry.path(),
            })
        })
        .collect();
    backups.sort_by_key(|backup| std::cmp::Reverse(backup.version));
    Ok(backups)
}

/// Puts the backup of `version` back in place of the state file at `path`, durably and
/// atomically, after keeping the current file as a backup of its own version.
pub(crate) fn restore(
    path: &Path,
    version: u64,
    max_size: u64,
    durability: Durability,
) -> Result<(), Error> {
    let target = resolve_target(path)?;
    let backup = backup_path(&target, version);
    let bytes = read(&backup, max_size)?;
    if let Some((stored, current)) = other_version(path, &target, version, None, max_size)? {
        write_copy(&backup_path(&target, stored), &current, durability)?;
    }
    write_copy(&target, &bytes, durability)
}
