//! [`Journal`]: a growing history kept as appended records instead of a file replaced whole,
//! with checkpoints (a snapshot after which the log starts again). Each record is a persist
//! envelope of a [`Persisted`] value, framed with its length, version and CRC-32C (FORMAT.md,
//! "Journal"), so old records migrate on replay exactly as old files do on load.
//!
//! Crash safety: appends are flushed in groups — every record queued since the last flush
//! (one append, an `append_many`, or the appends of several threads and tasks) is written with
//! one `write`, then synced with one `fdatasync` (per [`Options::durability`](crate::Options::durability)),
//! and the next flush starts only after that. The file is preallocated with zeros ahead of the
//! records, so the sync has only data to write. A crash in the middle of a flush leaves a torn
//! tail (any of its pages on disk, in any order), which the next open cuts off: never replayed,
//! never an error. Damage before the last flush is [`Error::DamagedJournal`] with its offset,
//! never skipped: every record header holds the start of its flush, and a whole record of a
//! later flush after a failing one proves the failing one was synced (FORMAT.md, "Journals").
//!
//! Checkpoints: the snapshot is saved durably as `<log>.snapshot.<n>` (an ordinary persist
//! file; `n` is how many records it covers), then the log is replaced atomically by an empty one
//! that starts at record `n`, then older snapshots are removed. A crash between any two steps
//! leaves a snapshot and a log that together hold every record exactly once.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::codec::{self, Style};
use crate::error::{Error, IoOp};
use crate::settings::Settings;
use crate::shell::commit::{Target, Write, bytes, replace_keeping, replace_path};
use crate::shell::dir::Dir;
use crate::shell::lock::{self, FileHold, LockGuard, Scope};
use crate::shell::names::{self, Sibling};
use crate::shell::read::open_regular_file;
use crate::shell::{self, AuditOp, Disk, Durability, io_error, parent_dir, read_exact_at};
use crate::telemetry::{Facts, Operation};
use crate::{Persisted, file};

/// The first bytes of a journal: `\x89pjl\r\n\x1a\n`, in the manner of PNG and persist's frame
/// (a byte over 0x7F, line-ending and end-of-file bytes that transfers would mangle).
const MAGIC: [u8; 8] = [0x89, b'p', b'j', b'l', 0x0D, 0x0A, 0x1A, 0x0A];

/// The journal format this version writes and reads.
const FORMAT_VERSION: u8 = 2;

/// Magic, format, 7 reserved zero bytes, the index of the first record (u64 LE).
const FILE_HEADER: usize = 24;

/// Each record's header: data length (u32 LE), schema version (u32 LE), the offset of the
/// first record of the same flush (u64 LE), CRC-32C of the data, CRC-32C of the first twenty
/// header bytes (u32 LE each).
const RECORD_HEADER: usize = 24;

/// How much zeroed space a flush that reaches the end of the file adds beyond its records, at
/// least: overwriting blocks that are allocated and written already leaves `fdatasync` nothing
/// but the data to write (no size or extent change to commit in the file system's journal).
const MIN_PREALLOCATION: u64 = 64 << 10;

/// At most this much zeroed space is added at once (a quarter of the file otherwise).
const MAX_PREALLOCATION: u64 = 16 << 20;

/// An append-only log of `E` values with checkpoints. One process writes a journal at a time
/// (its lock file is held while the `Journal` lives); `Journal` is `Send + Sync`, and appends
/// from several threads are serialized.
///
/// # Examples
///
/// ```no_run
/// use persist::{Journal, Persisted};
///
/// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Event { id: u64, text: String }
///
/// #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Todo { items: Vec<String> }
///
/// let journal: Journal<Event> = Journal::open("events.log")?;
/// journal.append(&Event { id: 1, text: "buy milk".into() })?;
/// let (snapshot, tail) = journal.recover::<Todo>()?;
/// let mut todo = snapshot.unwrap_or_default();
/// for event in tail {
///     todo.items.push(event?.text);
/// }
/// journal.checkpoint(&todo)?;
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug)]
pub struct Journal<E> {
    path: PathBuf,
    /// The log's file itself (`path`, or what a link at it points to): its snapshots are
    /// beside it, as its lock file is.
    real: PathBuf,
    settings: Settings,
    shared: Arc<Shared>,
    marker: PhantomData<fn() -> E>,
}

/// What appenders share, also with a flush running on persist's worker threads for an async
/// append (which finishes even if the append's future is dropped).
#[derive(Debug)]
struct Shared {
    /// The journal's file, for errors and the fault seam.
    path: PathBuf,
    state: Mutex<State>,
    /// Signalled when a flush ends (and when a checkpoint replaced the log).
    synced: Condvar,
    /// The same, for async appends.
    #[cfg(feature = "tokio")]
    notify: ::tokio::sync::Notify,
    /// The journal's lock file, held until the journal and any flush still running end.
    _lock: LockGuard,
}

#[derive(Debug)]
struct State {
    file: Arc<File>,
    /// The `flock` of `file` itself, registered in this process: one writer per journal file,
    /// whatever name (a hard link) opened it.
    _hold: FileHold,
    /// The index of the log's first record.
    base: u64,
    /// Records in the file.
    records: u64,
    /// Where the next record goes: the end of the last whole record.
    end: u64,
    /// The file's size: past `end` it holds zeros (preallocated space).
    allocated: u64,
    /// How many records (base included) are durable: what an append waits for.
    durable: u64,
    /// Records encoded by appenders and not yet written: the next flush writes them all with
    /// one `write` and syncs them with one `fdatasync` (group commit).
    pending: Vec<u8>,
    pending_records: u64,
    /// Records the running flush took from `pending` and is writing.
    flushing: u64,
    /// A flush is running (without the lock); only a flush writes to the file.
    syncing: bool,
    /// Why the journal refuses to write: a write or an fsync failed, after which what the
    /// file holds is unknown (the kernel may have dropped the dirty pages); it must be opened
    /// again.
    failed: Option<String>,
}

impl State {
    fn new(
        (file, hold): (File, FileHold),
        base: u64,
        records: u64,
        end: u64,
        allocated: u64,
    ) -> State {
        State {
            file: Arc::new(file),
            _hold: hold,
            base,
            records,
            end,
            allocated,
            durable: base + records,
            pending: Vec::new(),
            pending_records: 0,
            flushing: 0,
            syncing: false,
            failed: None,
        }
    }

    /// The index the next record appended gets.
    fn next_index(&self) -> u64 {
        self.base + self.records + self.flushing + self.pending_records
    }

    /// Writes what is pending at the end of the file, under the lock, without a sync (for a
    /// checkpoint, whose snapshot makes them durable).
    fn write_pending(&mut self, path: &Path) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        seal_flush(&mut self.pending, self.end);
        shell::write_all_at(&self.file, path, &self.pending, self.end).inspect_err(|_| {
            let _ = self.file.set_len(self.end);
        })?;
        self.end += self.pending.len() as u64;
        self.allocated = self.allocated.max(self.end);
        self.records += self.pending_records;
        self.pending.clear();
        self.pending_records = 0;
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the state half-updated: every field is
        // written after the fallible steps.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Waits until a flush ends (the lock is released meanwhile).
    fn wait<'s>(&'s self, state: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        self.synced
            .wait(state)
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Wakes every appender waiting for a flush, sync or async.
    fn wake(&self) {
        self.synced.notify_all();
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
    }

    /// A flush, run by the appender that found none running (the leader): waits `window` for
    /// others to add their records, takes every pending record, writes them at the end with
    /// one `write`, syncs (per `durability`), and publishes the result to every appender. With
    /// `until_idle` (on a worker thread, for async appends) it goes on flushing what arrived
    /// meanwhile until nothing is pending, instead of handing the next flush to another
    /// appender.
    fn flush(&self, window: Duration, durability: Durability, until_idle: bool) {
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
            // Past the preallocated space: zeros after the records, in the same write, so
            // that the next appends overwrite written blocks and their fdatasync has no
            // metadata to commit.
            let end = offset + written;
            let allocated = match end > allocated {
                true => {
                    let grown = end + (end / 4).clamp(MIN_PREALLOCATION, MAX_PREALLOCATION);
                    bytes.resize((grown - offset) as usize, 0);
                    grown
                }
                false => allocated,
            };
            let result = if written == 0 {
                Ok(())
            } else {
                shell::write_all_at(&file, &self.path, &bytes, offset)
                    .map_err(|error| ("a write", error))
                    .and_then(|()| match durability {
                        Durability::None => Ok(()),
                        _ => {
                            shell::sync_data(&file, &self.path).map_err(|error| ("an fsync", error))
                        }
                    })
            };
            let mut state = self.lock();
            state.flushing = 0;
            match result {
                Ok(()) => {
                    state.end += written;
                    state.allocated = state.allocated.max(allocated);
                    state.records += records;
                    state.durable = state.base + state.records;
                }
                Err((step, source)) => {
                    // What is not durable may be lost, and a retried fsync could report
                    // success for pages the kernel already dropped: cut back to what is
                    // durable and refuse to write until the journal is opened again.
                    let _ = state.file.set_len(state.end);
                    state.pending.clear();
                    state.pending_records = 0;
                    state.allocated = state.end;
                    state.failed = Some(format!(
                        "{step} of {written} appended bytes failed ({source})"
                    ));
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
}

/// What an appender does next.
enum Turn {
    /// Its records are durable.
    Done,
    /// A flush is running: wait for it to end.
    Wait,
    /// No flush is running: run one.
    Lead,
}

impl<E: Persisted> Journal<E> {
    /// Opens the journal at `path`, creating it (and missing parent directories) if there is
    /// none, with the default [`Options`](crate::Options). A torn last record, left by a crash during an
    /// append, is cut off.
    ///
    /// # Errors
    ///
    /// [`Error::DamagedJournal`] for damage before the last record, [`Error::Corrupt`] when
    /// the file is not a journal, [`Error::Unsupported`] for a later journal format,
    /// [`Error::LockTimeout`] while another process has it open, [`Error::Io`].
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn open(path: impl AsRef<Path>) -> Result<Journal<E>, Error> {
        Journal::open_with(&Settings::DEFAULT, path.as_ref())
    }

    pub(crate) fn open_with(settings: &Settings, path: &Path) -> Result<Journal<E>, Error> {
        let operation = Operation::start("journal_open", path);
        let mut facts = Facts::default();
        let result = operation.in_span(|| Journal::open_now(settings, path, &mut facts));
        operation.finish(&result, facts);
        result
    }

    fn open_now(settings: &Settings, path: &Path, facts: &mut Facts) -> Result<Journal<E>, Error> {
        let disk = &settings.disk;
        let lock = lock::exclusive_with(path, disk.lock_timeout, Scope::Process)?;
        let (mut file, _) = open_or_create(disk, path)?;
        let hold = lock::hold_file(&file, path, &lock.path(), disk.lock_timeout)?;
        let base = read_file_header(path, &mut file)?;
        let scan = scan(path, &file, disk.max_size)?;
        facts.read = Some(scan.end);
        if let Some(torn_at) = scan.torn_at {
            // A crash during an append: the records were never acknowledged.
            shell::set_len(&file, path, torn_at).map_err(io_error(path, IoOp::Write))?;
            if disk.syncs() {
                shell::sync_all(&file, path).map_err(io_error(path, IoOp::SyncFile))?;
            }
        }
        let allocated = file
            .metadata()
            .map_err(io_error(path, IoOp::Metadata))?
            .len();
        let located = Target::locate(path)?;
        Ok(Journal {
            path: path.to_owned(),
            real: located.dir_path().join(&located.name),
            settings: settings.clone(),
            shared: Arc::new(Shared {
                path: path.to_owned(),
                state: Mutex::new(State::new(
                    (file, hold),
                    base,
                    scan.records,
                    scan.end,
                    allocated,
                )),
                synced: Condvar::new(),
                #[cfg(feature = "tokio")]
                notify: ::tokio::sync::Notify::new(),
                _lock: lock,
            }),
            marker: PhantomData,
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records were ever appended (those before the last checkpoint included): the
    /// index the next record gets.
    pub fn len(&self) -> u64 {
        self.shared.lock().next_index()
    }

    /// Whether no record was ever appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `record`; durable when this returns (unless
    /// [`Durability::None`]). Returns the record's index.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] for a value that cannot be saved (nothing is written),
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn append(&self, record: &E) -> Result<u64, Error> {
        self.append_many(std::iter::once(record))
    }

    /// Appends `records` with one write and one fsync for all of them. Returns the index of
    /// the first (the journal's length when there are none).
    ///
    /// # Errors
    ///
    /// As [`append`](Journal::append). A value that cannot be serialized fails the whole
    /// batch before anything is written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// let journal = persist::Journal::<Event>::open("events.log")?;
    /// let events: Vec<Event> = (0..100).map(|id| Event { id }).collect();
    /// journal.append_many(&events)?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn append_many<'r>(&self, records: impl IntoIterator<Item = &'r E>) -> Result<u64, Error>
    where
        E: 'r,
    {
        let operation = Operation::start("journal_append", &self.path);
        let mut facts = Facts {
            to: Some(E::VERSION),
            ..Facts::default()
        };
        let result = operation.in_span(|| self.append_batch(records, &mut facts));
        operation.finish(&result, facts);
        result
    }

    fn append_batch<'r>(
        &self,
        records: impl IntoIterator<Item = &'r E>,
        facts: &mut Facts,
    ) -> Result<u64, Error>
    where
        E: 'r,
    {
        let (first, mine) = self.enqueue(records, facts)?;
        let mut state = self.shared.lock();
        loop {
            match self.turn(&mut state, mine)? {
                Turn::Done => return Ok(first),
                Turn::Wait => state = self.shared.wait(state),
                Turn::Lead => {
                    drop(state);
                    self.shared
                        .flush(self.window(), self.settings.disk.durability, false);
                    state = self.shared.lock();
                }
            }
        }
    }

    /// Encodes `records` (failing before anything is queued if one cannot be) and queues them
    /// for the next flush. Returns the index of the first and the index after the last.
    fn enqueue<'r>(
        &self,
        records: impl IntoIterator<Item = &'r E>,
        facts: &mut Facts,
    ) -> Result<(u64, u64), Error>
    where
        E: 'r,
    {
        let mut batch = Vec::new();
        let mut count = 0;
        for record in records {
            encode_record(&mut batch, record).map_err(|error| error.at(&self.path))?;
            count += 1;
        }
        facts.written = Some(batch.len() as u64);
        let mut state = self.shared.lock();
        self.refuse_if_failed(&state)?;
        let first = state.next_index();
        if state.pending.is_empty() {
            state.pending = batch;
        } else {
            state.pending.extend_from_slice(&batch);
        }
        state.pending_records += count;
        Ok((first, first + count))
    }

    /// What an appender whose records end at index `mine` does next; takes the lead (marks a
    /// flush as running) when that is it.
    fn turn(&self, state: &mut State, mine: u64) -> Result<Turn, Error> {
        if state.durable >= mine {
            return Ok(Turn::Done);
        }
        self.refuse_if_failed(state)?;
        if state.syncing {
            return Ok(Turn::Wait);
        }
        state.syncing = true;
        Ok(Turn::Lead)
    }

    /// An error when an earlier write or fsync failed (see [`State::failed`]).
    fn refuse_if_failed(&self, state: &State) -> Result<(), Error> {
        match &state.failed {
            Some(reason) => Err(Error::Io {
                path: self.path.clone(),
                op: IoOp::SyncFile,
                source: io::Error::other(format!(
                    "{reason}; appends after it may not be durable, so the journal refuses \
                     to write until it is opened again"
                )),
            }),
            None => Ok(()),
        }
    }

    /// How long a flush waits for more appends: [`Options::group_commit`](crate::Options::group_commit).
    fn window(&self) -> Duration {
        self.settings.group_commit.unwrap_or_default()
    }

    /// [`append`](Journal::append) for async code: the write and the fsync run on persist's
    /// worker threads, so the runtime is never blocked, and concurrent appends (tasks or
    /// threads) share one fsync. Durable when the future completes (unless
    /// [`Durability::None`]); dropping the future does not stop the record from being
    /// appended.
    ///
    /// # Errors
    ///
    /// As [`append`](Journal::append).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let journal = persist::Journal::<Event>::open("events.log")?;
    /// journal.append_async(&Event { id: 1 }).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn append_async(
        &self,
        record: &E,
    ) -> impl std::future::Future<Output = Result<u64, Error>> + Send + '_ {
        self.append_many_async(std::iter::once(record))
    }

    /// [`append_many`](Journal::append_many) for async code: see
    /// [`append_async`](Journal::append_async).
    ///
    /// # Errors
    ///
    /// As [`append`](Journal::append).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let journal = persist::Journal::<Event>::open("events.log")?;
    /// let events: Vec<Event> = (0..100).map(|id| Event { id }).collect();
    /// journal.append_many_async(&events).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn append_many_async<'r>(
        &self,
        records: impl IntoIterator<Item = &'r E>,
    ) -> impl std::future::Future<Output = Result<u64, Error>> + Send + '_
    where
        E: 'r,
    {
        let operation = Operation::start("journal_append", &self.path);
        let mut facts = Facts {
            to: Some(E::VERSION),
            ..Facts::default()
        };
        let enqueued = operation.in_span(|| self.enqueue(records, &mut facts));
        async move {
            let result = match enqueued {
                Ok((first, mine)) => self.durable_async(mine).await.map(|()| first),
                Err(error) => Err(error),
            };
            operation.finish(&result, facts);
            result
        }
    }

    /// Waits until the records up to index `mine` are durable, leading flushes (on the
    /// worker threads) when none runs.
    #[cfg(feature = "tokio")]
    async fn durable_async(&self, mine: u64) -> Result<(), Error> {
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is looked at: a flush ending in between wakes it.
            notified.as_mut().enable();
            let turn = self.turn(&mut self.shared.lock(), mine)?;
            match turn {
                Turn::Done => return Ok(()),
                Turn::Wait => notified.await,
                Turn::Lead => {
                    let shared = Arc::clone(&self.shared);
                    let (window, durability) = (self.window(), self.settings.disk.durability);
                    // Runs to the end even if this future is dropped: the flush owns what it
                    // needs, and wakes the others when it ends.
                    crate::Pending::<(), Error>::new(self.path.clone(), move |_| {
                        shared.flush(window, durability, true);
                        Ok(())
                    })
                    .await?;
                }
            }
        }
    }

    /// The records after the last checkpoint, oldest first, each migrated to `E`; read as they
    /// are needed (memory stays at one record). Records appended after this call are not
    /// included.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened again for reading. Each item is a record or
    /// the error decoding it ([`Error::Corrupt`], [`Error::FutureVersion`],
    /// [`Error::Migration`], ...).
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn replay(&self) -> Result<Replay<E>, Error> {
        let state = self.shared.lock();
        Replay::new(&self.path, state.end, self.settings.disk.max_size)
    }

    /// Saves `snapshot` as the state after every record so far, then starts the log again
    /// empty. The snapshot must hold the effect of every record appended before this call: a
    /// record another thread appends while it runs is covered by it too, so build the snapshot
    /// and checkpoint without appends in between. Atomic: after a crash at any moment,
    /// [`recover`](Journal::recover) returns either the previous snapshot and every record
    /// after it, or this snapshot and none. The snapshot is an ordinary persist file
    /// (`<log>.snapshot.<n>`), saved with this journal's options (layers included).
    ///
    /// # Errors
    ///
    /// What [`Options::save`](crate::Options::save) returns; [`Error::Io`] for the log's replacement.
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn checkpoint<S: Persisted>(&self, snapshot: &S) -> Result<(), Error> {
        let operation = Operation::start("journal_checkpoint", &self.path);
        let result = operation.in_span(|| self.checkpoint_now(snapshot));
        let facts = Facts {
            to: Some(S::VERSION),
            ..Facts::default()
        };
        operation.finish(&result, facts);
        result
    }

    fn checkpoint_now<S: Persisted>(&self, snapshot: &S) -> Result<(), Error> {
        let mut state = self.shared.lock();
        // A flush of the current log must end before it is replaced.
        while state.syncing {
            state = self.shared.wait(state);
        }
        self.refuse_if_failed(&state)?;
        // Records appended before this call and still waiting for a flush are covered by the
        // snapshot: written to the old log now, durable with the snapshot.
        if let Err(source) = state.write_pending(&self.path) {
            state.failed = Some(format!("a write failed ({source})"));
            drop(state);
            self.shared.wake();
            return Err(io_error(&self.path, IoOp::Write)(source));
        }
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
        let header = file_header(covered);
        let (file, installed) = replace_keeping(disk, &target, &Write::default(), bytes(&header));
        // A failure after the rename (the directory fsync) still replaced the log.
        if let Some(file) = file {
            // The new log is ours alone: it was created exclusively, and its flock is taken
            // before another process could find it by name (no wait).
            let hold = lock::hold_file(&file, &self.path, &self.path, Some(Duration::ZERO));
            let hold = match hold {
                Ok(hold) => hold,
                Err(error) => {
                    // The log was replaced, but this handle cannot hold the new one: it
                    // refuses to write until the journal is opened again.
                    state.failed = Some(format!("the new log could not be locked ({error})"));
                    drop(state);
                    self.shared.wake();
                    return Err(error);
                }
            };
            // Appends still waiting for a flush are durable now: in the snapshot.
            *state = State::new(
                (file, hold),
                covered,
                0,
                FILE_HEADER as u64,
                FILE_HEADER as u64,
            );
            drop(state);
            self.shared.wake();
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

    /// The last checkpoint's snapshot (`None` before the first) and the records after it.
    ///
    /// # Errors
    ///
    /// What [`Options::load`](crate::Options::load) returns for the snapshot; [`Error::Corrupt`] when the snapshot
    /// and the log do not fit together (the log starts after records the snapshot lacks).
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn recover<S: Persisted>(&self) -> Result<(Option<S>, Replay<E>), Error> {
        let state = self.shared.lock();
        let (dir, name) = snapshot_dir(&self.real)?;
        // A snapshot covers at most every record the log has had: a higher number is not one
        // of this journal's checkpoints (planted, or left from another log), and is ignored.
        let newest = snapshots_in(&dir, name)?
            .into_iter()
            .filter(|(covered, _)| *covered <= state.base + state.records)
            .max_by_key(|(covered, _)| *covered);
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
        let mut tail = Replay::new(&self.path, state.end, self.settings.disk.max_size)?;
        // After a crash between the snapshot and the log's replacement, the log still holds
        // the records the snapshot covers.
        for _ in state.base..covered.min(state.base + state.records) {
            tail.skip_record()?;
        }
        Ok((snapshot, tail))
    }
}

/// A journal's records read without their type, for tools (the `persist journal` command):
/// see [`Options::journal_records`](crate::Options::journal_records). Reading takes no lock
/// and changes nothing; a torn last record is not cut off but reported by
/// [`torn_tail`](JournalRecords::torn_tail).
#[derive(Debug)]
pub struct JournalRecords {
    records: Replay<()>,
    index: u64,
    torn_at: Option<u64>,
}

/// One record of a journal, as [`JournalRecords`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawRecord {
    /// The record's index: its position among all records ever appended.
    pub index: u64,
    /// Where the record starts in the file, in bytes.
    pub offset: u64,
    /// The schema version the record was written at.
    pub version: u64,
    /// The record's value as JSON text, exactly as stored.
    pub data: String,
}

impl JournalRecords {
    pub(crate) fn open(path: &Path, limit: u64) -> Result<JournalRecords, Error> {
        let (records, base, torn_at) = read_only(path, limit)?;
        Ok(JournalRecords {
            records,
            index: base,
            torn_at,
        })
    }

    /// Where a torn last record starts (a crash during an append), which the next
    /// [`Journal::open`] cuts off; `None` when the journal ends with a whole record.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn_at
    }
}

impl Iterator for JournalRecords {
    type Item = Result<RawRecord, Error>;

    fn next(&mut self) -> Option<Result<RawRecord, Error>> {
        let offset = self.records.offset;
        if let Err(error) = self.records.next_bytes()? {
            return Some(Err(error));
        }
        let index = self.index;
        self.index += 1;
        let scanned =
            codec::scan(&self.records.data).and_then(|scan| Some((scan.version?, scan.data?)));
        Some(match scanned {
            Some((version, data)) => Ok(RawRecord {
                index,
                offset,
                version,
                data: String::from_utf8_lossy(data).into_owned(),
            }),
            None => Err(Error::DamagedJournal {
                path: self.records.path.clone(),
                offset,
                reason: "the record is not a persist envelope".to_owned(),
            }),
        })
    }
}

/// The whole records of the journal at `path`, read without its lock and changing nothing,
/// with the index of the first and where a torn tail starts, if there is one.
pub(crate) fn read_only<E>(
    path: &Path,
    limit: u64,
) -> Result<(Replay<E>, u64, Option<u64>), Error> {
    let (mut file, _) = open_regular_file(path, false)?;
    let base = read_file_header(path, &mut file)?;
    let scan = scan(path, &file, limit)?;
    Ok((Replay::new(path, scan.end, limit)?, base, scan.torn_at))
}

/// The records of a journal, read one at a time: see [`Journal::replay`].
#[derive(Debug)]
pub struct Replay<E> {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    end: u64,
    limit: u64,
    /// The last record's envelope (one buffer for all of them).
    data: Vec<u8>,
    marker: PhantomData<fn() -> E>,
}

impl<E> Replay<E> {
    fn new(path: &Path, end: u64, limit: u64) -> Result<Replay<E>, Error> {
        let mut file = File::open(path).map_err(io_error(path, IoOp::Open))?;
        file.seek(SeekFrom::Start(FILE_HEADER as u64))
            .map_err(io_error(path, IoOp::Read))?;
        Ok(Replay {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 << 10, file),
            offset: FILE_HEADER as u64,
            end,
            limit,
            data: Vec::new(),
            marker: PhantomData,
        })
    }

    /// Reads the next record's envelope into `data`, checked against its checksums.
    fn next_bytes(&mut self) -> Option<Result<(), Error>> {
        if self.offset >= self.end {
            return None;
        }
        let mut header = [0; RECORD_HEADER];
        if let Err(source) = self.reader.read_exact(&mut header) {
            self.offset = self.end;
            return Some(Err(io_error(&self.path, IoOp::Read)(source)));
        }
        let data = &mut self.data;
        let reader = &mut self.reader;
        let result = RecordHeader::parse(&header, self.limit)
            .map_err(HeaderError::reason)
            .and_then(|record| {
                data.resize(record.len as usize, 0);
                reader.read_exact(data).map_err(|error| error.to_string())?;
                (crc32c::crc32c(data) == record.data_crc)
                    .then_some(())
                    .ok_or_else(|| "the record's data does not match its checksum".to_owned())
            });
        match result {
            Ok(()) => {
                self.offset += (RECORD_HEADER + self.data.len()) as u64;
                Some(Ok(()))
            }
            Err(reason) => {
                // The file changed under the journal since it was opened.
                let offset = self.offset;
                self.offset = self.end;
                Some(Err(Error::DamagedJournal {
                    path: self.path.clone(),
                    offset,
                    reason,
                }))
            }
        }
    }

    fn skip_record(&mut self) -> Result<(), Error> {
        self.next_bytes().unwrap_or(Ok(()))
    }
}

impl<E: Persisted> Iterator for Replay<E> {
    type Item = Result<E, Error>;

    fn next(&mut self) -> Option<Result<E, Error>> {
        let start = self.offset;
        Some(self.next_bytes()?.and_then(|()| {
            codec::decode::<E>(&self.data).map_err(|error| {
                let mut error = error.at::<E>(&self.path);
                if let Error::Corrupt { reason, .. } = &mut error {
                    *reason = format!("record at byte {start}: {reason}");
                }
                error
            })
        }))
    }
}

fn file_header(base: u64) -> [u8; FILE_HEADER] {
    let mut header = [0; FILE_HEADER];
    header[..8].copy_from_slice(&MAGIC);
    header[8] = FORMAT_VERSION;
    header[16..].copy_from_slice(&base.to_le_bytes());
    header
}

/// Checks the file header and returns the index of the log's first record.
fn read_file_header(path: &Path, file: &mut File) -> Result<u64, Error> {
    let mut header = [0; FILE_HEADER];
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        line: 0,
        column: 0,
        field: None,
        reason: reason.to_owned(),
    };
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(corrupt(
                "not a persist journal: shorter than a journal's header",
            ));
        }
        Err(error) => return Err(io_error(path, IoOp::Read)(error)),
    }
    if header[..8] != MAGIC {
        return Err(corrupt("not a persist journal: it does not start as one"));
    }
    if header[8] != FORMAT_VERSION {
        let written_by = if header[8] < FORMAT_VERSION {
            "a pre-release of persist"
        } else {
            "a later version of persist"
        };
        return Err(Error::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "journal format {}, written by {written_by} (this version reads format \
                 {FORMAT_VERSION})",
                header[8]
            ),
        });
    }
    let base = u64::from_le_bytes(header[16..].try_into().unwrap_or_default());
    // A count of records ever appended; past 2^62 only a damaged header says so, and indexes
    // computed from it could overflow.
    if base > MAX_BASE {
        return Err(corrupt(
            "the journal's header holds an impossible record index",
        ));
    }
    Ok(base)
}

/// The largest base index a header may hold (see [`read_file_header`]).
const MAX_BASE: u64 = 1 << 62;

/// A record's header, checked.
struct RecordHeader {
    len: u32,
    flush_start: u64,
    data_crc: u32,
}

/// Why a record's header is refused.
enum HeaderError {
    /// It does not match its checksum: torn or damaged.
    Checksum,
    /// It is genuine and claims more bytes than the reader's limit.
    OverLimit(String),
}

impl RecordHeader {
    fn parse(header: &[u8; RECORD_HEADER], limit: u64) -> Result<RecordHeader, HeaderError> {
        let word =
            |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or_default());
        if crc32c::crc32c(&header[..20]) != word(20) {
            return Err(HeaderError::Checksum);
        }
        if u64::from(word(0)) > limit {
            return Err(HeaderError::OverLimit(format!(
                "the record claims {} bytes, more than the {limit}-byte limit",
                word(0)
            )));
        }
        Ok(RecordHeader {
            len: word(0),
            flush_start: u64::from_le_bytes(header[8..16].try_into().unwrap_or_default()),
            data_crc: word(16),
        })
    }
}

impl HeaderError {
    fn reason(self) -> String {
        match self {
            HeaderError::Checksum => "the record's header does not match its checksum".to_owned(),
            HeaderError::OverLimit(reason) => reason,
        }
    }
}

/// Appends `record`, framed, to `out`; its flush's start is set by [`seal_flush`].
fn encode_record<E: Persisted>(out: &mut Vec<u8>, record: &E) -> Result<(), codec::EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    codec::encode(record, &mut *out, Style::default())?;
    let data = &out[start + RECORD_HEADER..];
    let len = u32::try_from(data.len()).map_err(|_| {
        codec::EncodeError::Io(io::Error::other("a journal record is limited to 4 GiB"))
    })?;
    let data_crc = crc32c::crc32c(data);
    let header = &mut out[start..start + RECORD_HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&E::VERSION.to_le_bytes());
    header[16..20].copy_from_slice(&data_crc.to_le_bytes());
    Ok(())
}

/// Sets the flush start of every record in `batch` (records built by [`encode_record`], to be
/// written with one `write` at `start`) and seals each header with its checksum.
fn seal_flush(batch: &mut [u8], start: u64) {
    let mut at = 0;
    while at + RECORD_HEADER <= batch.len() {
        let header = &mut batch[at..at + RECORD_HEADER];
        let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        header[8..16].copy_from_slice(&start.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[..20]);
        header[20..].copy_from_slice(&header_crc.to_le_bytes());
        at += RECORD_HEADER + len;
    }
}

/// What [`scan`] found.
struct Scan {
    records: u64,
    /// The end of the last whole record.
    end: u64,
    /// Where a torn last record starts, if there is one.
    torn_at: Option<u64>,
}

/// Reads every record once to find where the whole ones end (FORMAT.md, "Journals"). At the
/// first record that fails a check: zeros from there to the end are the end (space a writer
/// preallocated, or a tail a crash left zero-filled); otherwise, if a whole record of a later
/// flush follows, that flush began after this one was synced, so this is damage (an error);
/// if none does, it is the torn last flush of a crash, to be cut off.
fn scan(path: &Path, file: &File, limit: u64) -> Result<Scan, Error> {
    scan_from(path, file, limit, FILE_HEADER as u64)
}

/// [`scan`] from `start`, the end of a whole record (or the file header); `records` counts
/// those after it.
fn scan_from(path: &Path, file: &File, limit: u64, start: u64) -> Result<Scan, Error> {
    let size = file
        .metadata()
        .map_err(io_error(path, IoOp::Metadata))?
        .len();
    let mut reader = BufReader::with_capacity(64 << 10, file);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(io_error(path, IoOp::Read))?;
    let mut offset = start;
    let mut records = 0;
    let mut data = Vec::new();
    while offset < size {
        let failed = |reason: &str| failed_at(path, file, offset, size, limit, records, reason);
        if size - offset < RECORD_HEADER as u64 {
            return failed("a record's header is cut short by the end of the file");
        }
        let mut header = [0; RECORD_HEADER];
        reader
            .read_exact(&mut header)
            .map_err(io_error(path, IoOp::Read))?;
        let record = match RecordHeader::parse(&header, limit) {
            Ok(record) => record,
            // A genuine header: the record is too large for this reader, not torn.
            Err(HeaderError::OverLimit(reason)) => {
                return Err(Error::DamagedJournal {
                    path: path.to_owned(),
                    offset,
                    reason,
                });
            }
            Err(error) => return failed(&error.reason()),
        };
        let record_end = offset + RECORD_HEADER as u64 + u64::from(record.len);
        if record_end > size {
            return failed("the record reaches past the end of the file");
        }
        data.resize(record.len as usize, 0);
        reader
            .read_exact(&mut data)
            .map_err(io_error(path, IoOp::Read))?;
        if crc32c::crc32c(&data) != record.data_crc {
            return failed("the record's data does not match its checksum");
        }
        offset = record_end;
        records += 1;
    }
    Ok(Scan {
        records,
        end: offset,
        torn_at: None,
    })
}

/// What [`scan`] concludes when the record at `offset` fails a check for `reason`.
fn failed_at(
    path: &Path,
    file: &File,
    offset: u64,
    size: u64,
    limit: u64,
    records: u64,
    reason: &str,
) -> Result<Scan, Error> {
    if zeros_from(file, offset, size).map_err(io_error(path, IoOp::Read))? {
        return Ok(Scan {
            records,
            end: offset,
            torn_at: None,
        });
    }
    if later_flush(file, offset, size, limit).map_err(io_error(path, IoOp::Read))? {
        return Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset,
            reason: reason.to_owned(),
        });
    }
    Ok(Scan {
        records,
        end: offset,
        torn_at: Some(offset),
    })
}

/// Whether the bytes of `file` from `offset` to `size` are all zero.
fn zeros_from(file: &File, mut offset: u64, size: u64) -> io::Result<bool> {
    let mut buffer = vec![0; (size - offset).min(1 << 20) as usize];
    while offset < size {
        let chunk = &mut buffer[..(size - offset).min(1 << 20) as usize];
        read_exact_at(file, chunk, offset)?;
        if chunk.iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        offset += chunk.len() as u64;
    }
    Ok(true)
}

/// Whether a whole record written by a flush that started after `failed` lies somewhere
/// between `failed` and `size`: looked for at every byte (a failed header tells nothing of
/// where the next record starts), skipping the whole records of the same flush. A record's
/// header holds bytes JSON text cannot (a length's zero bytes), so one is never found inside
/// another record's data.
fn later_flush(file: &File, failed: u64, size: u64, limit: u64) -> io::Result<bool> {
    const WINDOW: u64 = 1 << 20;
    let header_len = RECORD_HEADER as u64;
    let mut window = Vec::new();
    let mut window_start = 0;
    let mut data = Vec::new();
    let mut at = failed + 1;
    while at + header_len <= size {
        if at < window_start || at + header_len > window_start + window.len() as u64 {
            window_start = at;
            window.resize((size - at).min(WINDOW) as usize, 0);
            read_exact_at(file, &mut window, at)?;
        }
        let from = (at - window_start) as usize;
        let header: &[u8; RECORD_HEADER] = window[from..from + RECORD_HEADER]
            .try_into()
            .unwrap_or(&[0; RECORD_HEADER]);
        if let Ok(record) = RecordHeader::parse(header, limit) {
            let end = at + header_len + u64::from(record.len);
            if end <= size {
                data.resize(record.len as usize, 0);
                read_exact_at(file, &mut data, at + header_len)?;
                if crc32c::crc32c(&data) == record.data_crc {
                    if record.flush_start > failed {
                        return Ok(true);
                    }
                    at = end;
                    continue;
                }
            }
        }
        at += 1;
    }
    Ok(false)
}

/// Where the whole records of a journal written by [`append_shared`] end, as this process last
/// saw it, with the file's identity (device, inode), so that a file replaced meanwhile is
/// scanned again from its start.
#[derive(Debug, Default)]
pub(crate) struct SharedEnd {
    seen: Option<((u64, u64), u64)>,
}

/// Opens the journal at `path` for reading and writing, creating it (an empty journal,
/// durably, through the shell) if there is none.
fn open_or_create(disk: &Disk, path: &Path) -> Result<(File, std::fs::Metadata), Error> {
    match open_regular_file(path, true) {
        Err(Error::NotFound { .. }) => {
            replace_path(disk, path, &Write::default(), bytes(&file_header(0)))?;
            open_regular_file(path, true)
        }
        opened => opened,
    }
}

/// Appends `records` to the journal at `path` without keeping the journal open, for logs many
/// processes append to, each now and then (the audit log): takes the journal's lock (waiting as
/// [`Options::lock_timeout`](crate::Options::lock_timeout) says), creates the journal if there
/// is none, finds where its whole records end (reading only what others appended since
/// `known`), cuts a torn tail off, then appends and syncs (per
/// [`Options::durability`](crate::Options::durability)).
pub(crate) fn append_shared<E: Persisted>(
    disk: &Disk,
    path: &Path,
    known: &mut SharedEnd,
    records: &[E],
) -> Result<(), Error> {
    let mut bytes = Vec::new();
    for record in records {
        encode_record(&mut bytes, record).map_err(|error| error.at(path))?;
    }
    let _lock = lock::exclusive(path, disk.lock_timeout)?;
    let (mut file, metadata) = open_or_create(disk, path)?;
    let identity = file_identity(&file);
    let start = match known.seen {
        // The same file, no shorter than when this process last appended to it.
        Some((seen, end)) if Some(seen) == identity && end <= metadata.len() => end,
        _ => {
            read_file_header(path, &mut file)?;
            FILE_HEADER as u64
        }
    };
    let scan = scan_from(path, &file, disk.max_size, start)?;
    seal_flush(&mut bytes, scan.end);
    if let Some(torn_at) = scan.torn_at {
        // A crash during someone's append: never acknowledged.
        shell::set_len(&file, path, torn_at).map_err(io_error(path, IoOp::Write))?;
    }
    let appended = shell::write_all_at(&file, path, &bytes, scan.end)
        .map_err(io_error(path, IoOp::Write))
        .and_then(|()| match disk.syncs() {
            true => shell::sync_data(&file, path).map_err(io_error(path, IoOp::SyncFile)),
            false => Ok(()),
        });
    if let Err(error) = appended {
        // Cut what may have reached the file (the torn tail before it too), so that nothing
        // unacknowledged can be read as a record later.
        known.seen = None;
        let _ = file.set_len(scan.end);
        return Err(error);
    }
    known.seen = identity.map(|identity| (identity, scan.end + bytes.len() as u64));
    Ok(())
}

/// The device and inode of `file`, where the platform tells them.
fn file_identity(file: &File) -> Option<(u64, u64)> {
    Dir::stat_file(file).ok().map(|stat| (stat.dev, stat.ino))
}

/// Where the snapshot covering the first `covered` records of the log at `log` is kept.
fn snapshot_path(log: &Path, covered: u64) -> PathBuf {
    let name = log.file_name().unwrap_or(log.as_os_str());
    shell::sibling_path(log, names::name_for(name, Sibling::Snapshot(covered)))
}

/// The directory of the log at `log` (where its snapshots are), open as the root of the
/// journal's files (what is in it must be on its mount), and the log's name.
fn snapshot_dir(log: &Path) -> Result<(Dir, &std::ffi::OsStr), Error> {
    let dir = parent_dir(log);
    let opened = Dir::open_root(dir).map_err(io_error(dir, IoOp::Open))?;
    Ok((opened, log.file_name().unwrap_or(log.as_os_str())))
}

/// The snapshots of the log `name` in `dir`, with the records each covers: regular files of
/// the directory's own mount (a link, a mount or anything else under a snapshot's name is not
/// one, and is never read).
fn snapshots_in(
    dir: &Dir,
    name: &std::ffi::OsStr,
) -> Result<Vec<(u64, std::ffi::OsString)>, Error> {
    let entries = dir.list().map_err(io_error(dir.path(), IoOp::Read))?;
    let mut found = Vec::new();
    for (entry, kind) in entries {
        let Some(Sibling::Snapshot(covered)) = names::classify(&entry, name) else {
            continue;
        };
        let ours = kind == crate::shell::dir::Kind::File
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
