//! Checkpoints: a snapshot saved as `<log>.snapshot.<n>`, then the log replaced by an empty
//! one that starts at record `n`, then older snapshots removed; and recovery, which reads
//! them back together.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Journal;
use super::format::{FILE_HEADER, FileHeader, MAX_BASE};
use super::records::Replay;
use crate::error::{Error, IoOp};
use crate::shell::commit::{Target, Write, bytes, replace_keeping};
use crate::shell::dir::{Dir, Kind};
use crate::shell::names::{self, Sibling};
use crate::shell::{self, AuditOp, io_error, parent_dir};
use crate::{Persisted, file};

impl<E: Persisted, S: Persisted> Journal<E, S> {
    pub(super) fn checkpoint_now(&self, snapshot: &S) -> Result<(), Error> {
        // Records appended before this call and still waiting for a flush are covered by the
        // snapshot: written to the old log now and synced, so that a crash before the new log
        // is in place leaves an old log that holds every record the snapshot covers.
        let mut state = self.shared.settle()?;
        let covered = state.base + state.records;
        // A name persist makes: a link or anything but a file planted there is refused, never
        // followed.
        let snapshot_path = snapshot_path(&self.real, covered);
        let (dir, _) = snapshot_dir(&self.real)?;
        let name = snapshot_path.file_name().unwrap_or_default();
        let target = Target::beneath(&Arc::new(dir), name, snapshot_path.clone())?;
        file::save_to(&self.settings, snapshot, &target, AuditOp::Save)?;
        // The commit point: the log replaced by one that starts after the snapshot. The new
        // log's handle is kept from before its rename, so that appends can never go on in the
        // old, unlinked file.
        let disk = &self.settings.disk;
        let target = Target::resolve(&self.path, disk.durability)?;
        let header = FileHeader::new(covered).to_bytes();
        let (file, installed) = replace_keeping(disk, &target, &Write::default(), bytes(&header));
        // A failure after the rename (the directory fsync) still replaced the log.
        if let Some(file) = file {
            // Appends still waiting for a flush are durable now: in the snapshot.
            let held = state.install(
                &self.path,
                file,
                (covered, 0, FILE_HEADER as u64),
                "new log",
            );
            drop(state);
            self.shared.wake();
            held?;
        } else {
            drop(state);
        }
        installed?;
        // Older snapshots are now redundant; one left behind by a failure here is ignored by
        // recover (it takes the newest) and removed by the next checkpoint.
        let (dir, name) = snapshot_dir(&self.real)?;
        for (older, snapshot) in snapshots_in(&dir, name)? {
            if older < covered {
                shell::remove::remove_file(&dir, &snapshot, &dir.join(&snapshot))?;
            }
        }
        Ok(())
    }

    pub(super) fn recover_now(&self) -> Result<(Option<S>, Replay<E>), Error> {
        let state = self.shared.lock();
        let (dir, name) = snapshot_dir(&self.real)?;
        // A snapshot covers at most every record the log has had (a higher one was refused
        // when the journal was opened): one planted since is not one of its checkpoints. A
        // journal without a snapshot type reads none.
        let newest = match S::VERSION {
            0 => None,
            _ => snapshots_in(&dir, name)?
                .into_iter()
                .filter(|(covered, _)| *covered <= state.base + state.records)
                .max_by_key(|(covered, _)| *covered),
        };
        let (snapshot, covered) = match newest {
            Some((covered, snapshot)) => {
                let path = dir.join(&snapshot);
                let bytes =
                    crate::shell::backup::read_in(&self.settings.disk, &dir, &snapshot, &path)?
                        .ok_or_else(|| Error::NotFound {
                            path: path.clone(),
                            source: io::ErrorKind::NotFound.into(),
                        })?;
                (
                    Some(file::decode::<S>(&self.settings, &path, &bytes)?),
                    covered,
                )
            }
            None => (None, 0),
        };
        if covered < state.base {
            return Err(Error::Corrupt {
                path: self.path.clone(),
                line: 0,
                column: 0,
                field: None,
                reason: format!(
                    "the log starts at record {} but the newest snapshot covers only {covered} \
                     records: records in between are missing",
                    state.base
                ),
            });
        }
        let mut tail = Replay::new(&self.settings, &self.path, state.end)?;
        // After a crash between the snapshot and the log's replacement, the log still holds
        // the records the snapshot covers.
        for _ in state.base..covered.min(state.base + state.records) {
            tail.skip_record()?;
        }
        Ok((snapshot, tail))
    }
}

/// Checks, when a journal opens, that no snapshot beside the log claims records the log never
/// had: a checkpoint syncs every record its snapshot covers before saving it, so a higher
/// snapshot means the log was replaced or cut after it (or the snapshot belongs to another
/// log), and recovering would skip records the log acknowledged. An error naming both.
pub(super) fn check_snapshots(
    log: &Path,
    path: &Path,
    base: u64,
    records: u64,
) -> Result<(), Error> {
    let (dir, name) = snapshot_dir(log)?;
    let has = base + records;
    match newest_snapshot(&dir, name)? {
        Some((covered, snapshot)) if covered > has => Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset: 0,
            reason: format!(
                "the snapshot {} covers {covered} records, but the log holds only records {base} \
                 to {has} (the log was replaced or cut after that checkpoint, or the snapshot \
                 belongs to another log); recovering would skip records the log acknowledged. \
                 Move the snapshot or the log away to choose",
                dir.join(&snapshot).display(),
            ),
        }),
        _ => Ok(()),
    }
}

/// The index a new log at `log` starts at: the records its newest snapshot covers (a log
/// deleted and created again goes on after its checkpoints), 0 without one.
pub(super) fn new_log_base(log: &Path) -> Result<u64, Error> {
    let (dir, name) = snapshot_dir(log)?;
    Ok(newest_snapshot(&dir, name)?.map_or(0, |(covered, _)| covered))
}

/// The snapshot with the most records in `dir` for the log `name` (an impossible count is not
/// one).
fn newest_snapshot(dir: &Dir, name: &OsStr) -> Result<Option<(u64, OsString)>, Error> {
    Ok(snapshots_in(dir, name)?
        .into_iter()
        .filter(|(covered, _)| *covered <= MAX_BASE)
        .max_by_key(|(covered, _)| *covered))
}

/// Where the snapshot covering the first `covered` records of the log at `log` is kept.
fn snapshot_path(log: &Path, covered: u64) -> PathBuf {
    let name = log.file_name().unwrap_or(log.as_os_str());
    shell::sibling_path(log, names::name_for(name, Sibling::Snapshot(covered)))
}

/// The directory of the log at `log` (where its snapshots are), open as the root of the
/// journal's files (what is in it must be on its mount), and the log's name.
fn snapshot_dir(log: &Path) -> Result<(Dir, &OsStr), Error> {
    let dir = parent_dir(log);
    let opened = Dir::open_root(dir).map_err(io_error(dir, IoOp::Open))?;
    Ok((opened, log.file_name().unwrap_or(log.as_os_str())))
}

/// The snapshots of the log `name` in `dir`, with the records each covers: regular files of
/// the directory's own mount (a link, a mount or anything else under a snapshot's name is not
/// one, and is never read).
fn snapshots_in(dir: &Dir, name: &OsStr) -> Result<Vec<(u64, OsString)>, Error> {
    let entries = dir.list().map_err(io_error(dir.path(), IoOp::Read))?;
    let mut found = Vec::new();
    for (entry, kind) in entries {
        let Some(Sibling::Snapshot(covered)) = names::classify(&entry, name) else {
            continue;
        };
        let ours = kind == Kind::File
            && dir
                .stat(&entry)
                .map_err(io_error(&dir.join(&entry), IoOp::Metadata))?
                .is_some_and(|stat| dir.same_mount(&stat));
        if ours {
            found.push((covered, entry));
        }
    }
    Ok(found)
}
