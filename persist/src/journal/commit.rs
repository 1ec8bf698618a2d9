//! Group commit: appenders queue encoded records, and one of them (the leader) writes
//! everything queued with one `write` and syncs it with one `fdatasync` while the others wait
//! for it; the next flush starts after that one ends.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::format::{RecordHeader, seal_flush};
use crate::error::{Error, IoOp};
use crate::shell::lock::{self, FileHold, LockGuard};
use crate::shell::{self, Durability};

/// How much zeroed space a flush that reaches the end of the file adds beyond its records, at
/// least: overwriting blocks that are allocated and written already leaves `fdatasync` nothing
/// but the data to write (no size or extent change to commit in the file system's journal).
const MIN_PREALLOCATION: u64 = 64 << 10;

/// At most this much zeroed space is added at once (a quarter of the file otherwise).
const MAX_PREALLOCATION: u64 = 16 << 20;

/// What appenders share, also with a flush running on persist's worker threads for an async
/// append (which finishes even if the append's future is dropped).
#[derive(Debug)]
pub(super) struct Shared {
    /// The journal's file, for errors and the fault seam.
    pub(super) path: PathBuf,
    pub(super) durability: Durability,
    pub(super) state: Mutex<State>,
    /// Signalled when a flush ends (and when a checkpoint replaced the log).
    synced: Condvar,
    /// The same, for async appends.
    #[cfg(feature = "tokio")]
    pub(super) notify: ::tokio::sync::Notify,
    /// The journal's lock file, held until the journal and any flush still running end.
    _lock: LockGuard,
}

/// Where the records are and what is queued.
#[derive(Debug)]
pub(super) struct State {
    pub(super) file: Arc<File>,
    /// The `flock` of `file` itself, registered in this process: one writer per journal file,
    /// whatever name (a hard link) opened it.
    _hold: FileHold,
    /// The index of the log's first record.
    pub(super) base: u64,
    /// Records in the file.
    pub(super) records: u64,
    /// Where the next record goes: the end of the last whole record.
    pub(super) end: u64,
    /// The file's size: past `end` it holds zeros (preallocated space).
    allocated: u64,
    /// How many records (base included) are durable: what an append waits for.
    pub(super) durable: u64,
    /// Records encoded by appenders and not yet written: the next flush writes them all with
    /// one `write` and syncs them with one `fdatasync` (group commit).
    pub(super) pending: Vec<u8>,
    pub(super) pending_records: u64,
    /// Records the running flush took from `pending` and is writing.
    flushing: u64,
    /// A flush is running (without the lock); only a flush writes to the file.
    pub(super) syncing: bool,
    /// Whole records follow the file's last close mark (or there is none): closing writes one.
    pub(super) unmarked: bool,
    /// Why the journal refuses to write: a write or an fsync failed, after which what the
    /// file holds is unknown (the kernel may have dropped the dirty pages); it must be opened
    /// again.
    pub(super) failed: Option<(IoOp, io::ErrorKind, String)>,
}

/// The log a [`State`] starts with.
pub(super) struct Log {
    pub(super) file: File,
    pub(super) hold: FileHold,
    pub(super) base: u64,
    pub(super) records: u64,
    pub(super) end: u64,
    pub(super) allocated: u64,
    pub(super) unmarked: bool,
}

impl State {
    pub(super) fn new(log: Log) -> State {
        State {
            file: Arc::new(log.file),
            _hold: log.hold,
            base: log.base,
            records: log.records,
            end: log.end,
            allocated: log.allocated,
            durable: log.base + log.records,
            pending: Vec::new(),
            pending_records: 0,
            flushing: 0,
            syncing: false,
            unmarked: log.unmarked,
            failed: None,
        }
    }

    /// The index the next record appended gets.
    pub(super) fn next_index(&self) -> u64 {
        self.base + self.records + self.flushing + self.pending_records
    }

    /// Writes what is pending at the end of the file and syncs it (per `durability`), under
    /// the lock: for a checkpoint, which must find every record it covers durable in the old
    /// log before its snapshot is saved. A failure makes the journal refuse to write.
    fn write_pending(&mut self, path: &Path, durability: Durability) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        seal_flush(&mut self.pending, self.end);
        let written = self.pending.len() as u64;
        let result = shell::write_all_at(&self.file, path, &self.pending, self.end)
            .map_err(|error| (IoOp::Append, error))
            .and_then(|()| match durability {
                Durability::None => Ok(()),
                _ => shell::sync_data(&self.file, path).map_err(|error| (IoOp::SyncAppend, error)),
            });
        self.pending.clear();
        match result {
            Ok(()) => {
                self.end += written;
                self.allocated = self.allocated.max(self.end);
                self.records += std::mem::take(&mut self.pending_records);
                self.durable = self.base + self.records;
                self.unmarked = true;
                Ok(())
            }
            Err((op, source)) => {
                self.pending_records = 0;
                Err(self.fail(path, op, written, source))
            }
        }
    }

    /// Puts the log `file` (starting at record `base`, holding `records` records up to byte
    /// `end`) in place of this one, for a checkpoint or a rewrite. The file was created
    /// exclusively and renamed in by this handle, so its flock is taken without waiting; when
    /// it cannot be, the journal refuses to write until it is opened again (`what` names the
    /// log in that refusal).
    pub(super) fn install(
        &mut self,
        path: &Path,
        file: File,
        (base, records, end): (u64, u64, u64),
        what: &str,
    ) -> Result<(), Error> {
        match lock::hold_file(&file, path, path, Some(Duration::ZERO)) {
            Ok(hold) => {
                *self = State::new(Log {
                    file,
                    hold,
                    base,
                    records,
                    end,
                    allocated: end,
                    unmarked: records > 0,
                });
                Ok(())
            }
            Err(error) => {
                self.failed = Some((
                    IoOp::Lock,
                    io::ErrorKind::Other,
                    format!("the {what} could not be locked ({error})"),
                ));
                Err(error)
            }
        }
    }

    /// Records that `op` failed on `written` appended bytes: cuts back to what is durable and
    /// refuses to write until the journal is opened again. Returns the error for the caller.
    fn fail(&mut self, path: &Path, op: IoOp, written: u64, source: io::Error) -> Error {
        // What is not durable may be lost, and a retried fsync could report success for
        // pages the kernel already dropped.
        let _ = self.file.set_len(self.end);
        self.allocated = self.end;
        let reason =
            format!("an append of {written} bytes failed ({source}); its records were cut off");
        self.failed = Some((op, source.kind(), reason.clone()));
        Error::Io {
            path: path.to_owned(),
            op,
            source: io::Error::new(source.kind(), reason),
        }
    }

    /// An error when an earlier write or fsync failed (see [`State::failed`]).
    pub(super) fn refuse_if_failed(&self, path: &Path) -> Result<(), Error> {
        match &self.failed {
            Some((op, kind, reason)) => Err(Error::Io {
                path: path.to_owned(),
                op: *op,
                source: io::Error::new(
                    *kind,
                    format!("{reason}; the journal refuses to write until it is opened again"),
                ),
            }),
            None => Ok(()),
        }
    }
}

/// What an appender does next.
pub(super) enum Turn {
    /// Its records are durable.
    Done,
    /// A flush is running: wait for it to end.
    Wait,
    /// No flush is running: run one.
    Lead,
}

impl Shared {
    pub(super) fn new(path: &Path, durability: Durability, log: Log, lock: LockGuard) -> Shared {
        Shared {
            path: path.to_owned(),
            durability,
            state: Mutex::new(State::new(log)),
            synced: Condvar::new(),
            #[cfg(feature = "tokio")]
            notify: ::tokio::sync::Notify::new(),
            _lock: lock,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the state half-updated: every field is
        // written after the fallible steps.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The state with no flush running and nothing pending, for a checkpoint or a rewrite,
    /// which replace the log: the records appended and still waiting are written to the
    /// current log and synced first. A failure there makes the journal refuse to write (and
    /// wakes those records' appenders, which get the error).
    pub(super) fn settle(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut state = self.lock();
        while state.syncing {
            state = self.wait(state);
        }
        state.refuse_if_failed(&self.path)?;
        if let Err(error) = state.write_pending(&self.path, self.durability) {
            drop(state);
            self.wake();
            return Err(error);
        }
        Ok(state)
    }

    /// Waits until a flush ends (the lock is released meanwhile).
    pub(super) fn wait<'s>(&'s self, state: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        self.synced
            .wait(state)
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Wakes every appender waiting for a flush, sync or async.
    pub(super) fn wake(&self) {
        self.synced.notify_all();
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
    }

    /// What an appender whose records end at index `mine` does next; takes the lead (marks a
    /// flush as running) when that is it.
    pub(super) fn turn(&self, state: &mut State, mine: u64) -> Result<Turn, Error> {
        if state.durable >= mine {
            return Ok(Turn::Done);
        }
        state.refuse_if_failed(&self.path)?;
        if state.syncing {
            return Ok(Turn::Wait);
        }
        state.syncing = true;
        Ok(Turn::Lead)
    }

    /// A flush, run by the appender that found none running (the leader): waits `window` for
    /// others to add their records, takes every pending record, writes them at the end with
    /// one `write`, syncs (per the durability), and publishes the result to every appender.
    /// With `until_idle` (on a worker thread, for async appends) it goes on flushing what
    /// arrived meanwhile until nothing is pending, instead of handing the next flush to
    /// another appender.
    pub(super) fn flush(&self, window: Duration, until_idle: bool) {
        if !window.is_zero() {
            std::thread::sleep(window);
        }
        loop {
            let (file, offset, mut bytes, records, allocated) = {
                let mut state = self.lock();
                let records = std::mem::take(&mut state.pending_records);
                state.flushing = records;
                (
                    Arc::clone(&state.file),
                    state.end,
                    std::mem::take(&mut state.pending),
                    records,
                    state.allocated,
                )
            };
            let written = bytes.len() as u64;
            seal_flush(&mut bytes, offset);
            let result = match written {
                0 => Ok(allocated),
                _ => self.write(&file, &bytes, offset, allocated),
            };
            let mut state = self.lock();
            state.flushing = 0;
            match result {
                Ok(allocated) => {
                    state.end += written;
                    state.allocated = state.allocated.max(allocated);
                    state.records += records;
                    state.durable = state.base + state.records;
                    state.unmarked |= written > 0;
                }
                Err((op, source)) => {
                    state.pending.clear();
                    state.pending_records = 0;
                    state.fail(&self.path, op, written, source);
                }
            }
            let again = until_idle && state.failed.is_none() && !state.pending.is_empty();
            state.syncing = again;
            drop(state);
            self.wake();
            if !again {
                return;
            }
        }
    }

    /// Writes the records `bytes` at `offset` and syncs them; returns the file's allocated
    /// size. Past the preallocated space, the space is written first, as zeros (so that the
    /// next appends overwrite written blocks and their fdatasync has no metadata to commit):
    /// a full disk then fails before any record is written, so that a reader following the
    /// journal never sees records that are then cut off. Preallocation is best effort: when
    /// the zeros ahead do not fit, the space of the records alone is.
    fn write(
        &self,
        file: &File,
        bytes: &[u8],
        offset: u64,
        allocated: u64,
    ) -> Result<u64, (IoOp, io::Error)> {
        let end = offset + bytes.len() as u64;
        let mut allocated = allocated;
        if end > allocated {
            let from = allocated.max(offset);
            let grown = end + (end / 4).clamp(MIN_PREALLOCATION, MAX_PREALLOCATION);
            allocated = match self.zeros(file, from, grown) {
                Ok(()) => grown,
                Err(error) => {
                    // What part of the zeros landed is given back.
                    let _ = file.set_len(from);
                    if error.kind() != io::ErrorKind::StorageFull {
                        return Err((IoOp::Append, error));
                    }
                    if let Err(error) = self.zeros(file, from, end) {
                        let _ = file.set_len(from);
                        return Err((IoOp::Append, error));
                    }
                    end
                }
            };
        }
        shell::write_all_at(file, &self.path, bytes, offset)
            .map_err(|error| (IoOp::Append, error))?;
        if self.durability != Durability::None {
            shell::sync_data(file, &self.path).map_err(|error| (IoOp::SyncAppend, error))?;
        }
        Ok(allocated.max(end))
    }

    /// Writes zeros from `from` to `to`.
    fn zeros(&self, file: &File, from: u64, to: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0; (to - from).min(CHUNK) as usize];
        let mut at = from;
        while at < to {
            let len = (to - at).min(CHUNK) as usize;
            shell::write_all_at(file, &self.path, &zeros[..len], at)?;
            at += len as u64;
        }
        Ok(())
    }
}

impl Drop for Shared {
    /// Marks a clean close: a close mark after the last record, synced, so that damage to
    /// that record is later told from a torn write. Best effort (nothing is lost without it),
    /// and only when syncs are on: an unsynced mark could outlive the records it vouches for.
    fn drop(&mut self) {
        let path = self.path.clone();
        let durability = self.durability;
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        if !state.unmarked || state.failed.is_some() || durability == Durability::None {
            return;
        }
        let mark = RecordHeader::mark(state.end).to_bytes();
        let marked = shell::write_all_at(&state.file, &path, &mark, state.end)
            .and_then(|()| shell::sync_data(&state.file, &path));
        if let Err(error) = marked {
            // The records stay whole; only the proof of a clean close is missing, and the
            // next open reads what a torn mark left as a torn tail of zero records.
            let _ = state.file.set_len(state.end);
            #[cfg(feature = "tracing")]
            tracing::debug!(path = %path.display(), %error, "persist: could not mark the journal closed");
            #[cfg(not(feature = "tracing"))]
            drop(error);
        }
    }
}
