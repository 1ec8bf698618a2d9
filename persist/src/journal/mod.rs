//! [`Journal`]: a growing history kept as appended records instead of a file replaced whole,
//! with checkpoints (a snapshot after which the log starts again). Each record is a persist
//! envelope of a [`Persisted`] value (framed with the options' layers when it has any), headed
//! by its length, version and CRC-32C (FORMAT.md, "Journals"), so old records migrate on
//! replay exactly as old files do on load.
//!
//! Crash safety: appends are flushed in groups — every record queued since the last flush
//! (one append, an `append_many`, or the appends of several threads and tasks) is written with
//! one `write`, then synced with one `fdatasync` (per [`Options::durability`](crate::Options::durability)),
//! and the next flush starts only after that. The file is preallocated with zeros ahead of the
//! records, so the sync has only data to write. A crash in the middle of a flush leaves a torn
//! tail (any of its pages on disk, in any order), which the next open cuts off and reports
//! ([`Journal::recovered`]), or refuses to under [`JournalRecovery::AbsoluteConsistency`]. Damage
//! before the last flush is [`Error::DamagedJournal`] with its offset, never skipped: every
//! record header holds the start of its flush, and a whole record of a later flush after a
//! failing one proves the failing one was synced. A writer that closes the journal marks the
//! end with an empty record, so damage to the last record before a clean close is an error too.
//!
//! Checkpoints: the snapshot is saved durably as `<log>.snapshot.<n>` (an ordinary persist
//! file; `n` is how many records it covers), then the log is replaced atomically by an empty one
//! that starts at record `n`, then older snapshots are removed. A crash between any two steps
//! leaves a snapshot and a log that together hold every record exactly once.
//!
//! The parts: [`format`] (the bytes, without I/O), [`reader`] (the one record reader),
//! [`recovery`] (where the whole records end), [`commit`] (group commit), [`checkpoint`],
//! [`records`] (replay and the untyped reader) and [`shared`] (the audit log's append).

mod checkpoint;
mod commit;
mod follow;
mod format;
mod reader;
mod records;
mod recovery;
mod rewrite;
mod shared;
#[cfg(test)]
mod tests;
mod upcast;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::commit::{Log, Shared, Turn};
#[cfg(feature = "tokio")]
pub use self::follow::AsyncFollow;
pub use self::follow::Follow;
pub(crate) use self::format::MAGIC;
use self::format::{FORMAT_VERSION, FileHeader, RecordCodec};
pub(crate) use self::records::read_only;
pub use self::records::{JournalRecords, RawRecord, Replay};
pub use self::recovery::{JournalRecovery, Recovered};
pub use self::rewrite::Rewritten;
pub(crate) use self::shared::{SharedEnd, append_shared};
use crate::Persisted;
use crate::error::{Error, IoOp};
use crate::settings::Settings;
use crate::shell::commit::{Target, Write, bytes, replace_path};
use crate::shell::lock::{self, Scope};
use crate::shell::read::open_regular_file;
use crate::shell::{self, Disk, io_error};
use crate::telemetry::{Facts, Operation};

/// An append-only log of `E` values with checkpoints whose snapshots are `S` values (`Journal<E>`
/// has none: see [`NoSnapshot`]). One process writes a journal at a time (its lock file is held
/// while the `Journal` lives); `Journal` is `Send + Sync`, and appends from several threads are
/// serialized.
///
/// The snapshot type is part of the journal's type, so [`checkpoint`](Journal::checkpoint) and
/// [`Transaction::recover`](Journal::recover) cannot disagree about it. Snapshots keep their own migration
/// chain (they are ordinary persist files); records migrate through `E`'s, where a step may be
/// an upcast that turns one old record into several values or none (`upcast_from`, below).
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
/// let journal: Journal<Event, Todo> = Journal::open("events.log")?;
/// journal.append(&Event { id: 1, text: "buy milk".into() })?;
/// let (snapshot, tail) = journal.recover()?;
/// let mut todo = snapshot.unwrap_or_default();
/// for event in tail {
///     todo.items.push(event?.text);
/// }
/// journal.checkpoint(&todo)?;
/// # Ok::<(), persist::Error>(())
/// ```
///
/// An event type whose old version split into two (or was dropped) upcasts: one old record
/// becomes any number of current values on replay, recover and [`rewrite`](Journal::rewrite).
///
/// ```no_run
/// use persist::{Journal, Persisted};
///
/// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct EventV1 { renamed: Option<(String, String)>, text: String }
///
/// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 2, upcast_from = EventV1)]
/// enum Event { Added(String), Renamed { from: String, to: String } }
///
/// impl From<EventV1> for Vec<Event> {
///     fn from(old: EventV1) -> Vec<Event> {
///         let mut events = vec![Event::Added(old.text)];
///         if let Some((from, to)) = old.renamed {
///             events.push(Event::Renamed { from, to });
///         }
///         events
///     }
/// }
///
/// let journal: Journal<Event> = Journal::open("events.log")?;
/// for event in journal.replay()? {
///     let event: Event = event?; // a version 1 record: one or two of these
/// }
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug)]
pub struct Journal<E, S = NoSnapshot> {
    path: PathBuf,
    /// The log's file itself (`path`, or what a link at it points to): its snapshots are
    /// beside it, as its lock file is.
    real: PathBuf,
    settings: Settings,
    /// How records are encoded and sealed.
    codec: RecordCodec,
    /// What the open cut off.
    recovered: Option<Recovered>,
    shared: Arc<Shared>,
    marker: PhantomData<fn() -> (E, S)>,
}

/// The snapshot type of a [`Journal`] without checkpoints, `Journal<E>`: it has no values, so
/// [`checkpoint`](Journal::checkpoint) cannot be called, and [`Transaction::recover`](Journal::recover)
/// returns `None` and every record. Name a snapshot type to checkpoint: `Journal<E, S>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSnapshot {}

impl serde::Serialize for NoSnapshot {
    fn serialize<T: serde::Serializer>(&self, _: T) -> Result<T::Ok, T::Error> {
        match *self {}
    }
}

impl<'de> serde::Deserialize<'de> for NoSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this journal has no snapshot type (Journal<E, NoSnapshot>)",
        ))
    }
}

impl Persisted for NoSnapshot {
    const VERSION: u32 = 0;
    type Previous = crate::Origin;

    fn migrate(previous: crate::Origin) -> Result<Self, crate::BoxError> {
        match previous {}
    }
}

impl<E: Persisted, S: Persisted> Journal<E, S> {
    /// Opens the journal at `path`, creating it (and missing parent directories) if there is
    /// none, with the default [`Options`](crate::Options). A torn last flush, left by a crash
    /// during an append, is cut off and reported by [`recovered`](Journal::recovered). A new
    /// log beside snapshots of an earlier one starts after the newest of them.
    ///
    /// # Errors
    ///
    /// [`Error::DamagedJournal`] for damage before the last flush (or in the last record of a
    /// journal closed cleanly), and for a snapshot that covers records the log never had;
    /// [`Error::Corrupt`] when the file is not a journal, [`Error::Unsupported`] for a later
    /// journal format, [`Error::LockTimeout`] while another process has it open,
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn open(path: impl AsRef<Path>) -> Result<Journal<E, S>, Error> {
        Journal::open_with(&Settings::DEFAULT, path.as_ref())
    }

    pub(crate) fn open_with(settings: &Settings, path: &Path) -> Result<Journal<E, S>, Error> {
        let operation = Operation::start("journal_open", path);
        let mut facts = Facts::default();
        let result = operation.in_span(|| Journal::open_now(settings, path, &mut facts));
        operation.finish(&result, facts);
        result
    }

    fn open_now(
        settings: &Settings,
        path: &Path,
        facts: &mut Facts,
    ) -> Result<Journal<E, S>, Error> {
        let disk = &settings.disk;
        let lock = lock::exclusive_with(path, disk.lock_timeout, Scope::Process)?;
        let (file, _) = open_or_create(disk, path, || {
            checkpoint::new_log_base(&Target::locate(path)?.real_path())
        })?;
        let hold = lock::hold_file(&file, path, &lock.path(), disk.lock_timeout)?;
        let header = records::read_header(path, &file)?;
        let scan = recovery::scan(path, &file, disk.max_size, format::FILE_HEADER as u64)?;
        facts.read = Some(scan.end);
        let real = Target::locate(path)?.real_path();
        checkpoint::check_snapshots(&real, path, header.base, scan.records)?;
        if scan.records > 0 {
            records::check_key(settings, path, &file, scan.end)?;
        }
        let codec = RecordCodec::new(settings, path)?;
        let mut sync = scan.unmarked > 0;
        if let Some(torn) = &scan.torn {
            // A crash during an append: the records were never acknowledged.
            recovery::allow_cut(path, settings.journal_recovery, torn)?;
            shell::set_len(&file, path, torn.offset).map_err(io_error(path, IoOp::CutTail))?;
            recovery::report_cut(path, torn);
            sync = true;
        }
        if header.format < FORMAT_VERSION {
            // Close marks and framed records may follow: a reader of the old format must not
            // take them for its records.
            let upgraded = FileHeader::new(header.base).to_bytes();
            shell::write_all_at(&file, path, &upgraded, 0).map_err(io_error(path, IoOp::Append))?;
            sync = true;
        }
        // Records after the last close mark may be in the page cache only (their writer
        // stopped before its sync): synced now, so that the mark this journal writes when it
        // closes never vouches for records that are not durable.
        if sync && disk.syncs() {
            shell::sync_all(&file, path).map_err(io_error(path, IoOp::SyncAppend))?;
        }
        let allocated = file
            .metadata()
            .map_err(io_error(path, IoOp::Metadata))?
            .len();
        let log = Log {
            file,
            hold,
            base: header.base,
            records: scan.records,
            end: scan.end,
            allocated,
            unmarked: scan.unmarked > 0,
        };
        Ok(Journal {
            path: path.to_owned(),
            real,
            settings: settings.clone(),
            codec,
            recovered: scan.torn,
            shared: Arc::new(Shared::new(path, disk.durability, log, lock)),
            marker: PhantomData,
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the journal cut off: the torn last flush of a crash during an append
    /// (records that were never acknowledged), where it started, how many bytes and how many
    /// whole record headers it held. `None` when the journal ended with a whole record.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// let journal = persist::Journal::<Event>::open("events.log")?;
    /// if let Some(cut) = journal.recovered() {
    ///     eprintln!("a crash interrupted an append: {} bytes cut at byte {}", cut.bytes, cut.offset);
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn recovered(&self) -> Option<Recovered> {
        self.recovered
    }

    /// How many records the journal holds, those before the last checkpoint included (in its
    /// snapshot): the index the next record gets. It is the number of records appended,
    /// unless a [`rewrite`](Journal::rewrite) changed how many there are.
    pub fn len(&self) -> u64 {
        self.shared.lock().next_index()
    }

    /// Whether no record was ever appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `record`; durable when this returns (unless
    /// [`Durability::None`](crate::Durability::None)). Returns the record's index.
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
            match self.shared.turn(&mut state, mine)? {
                Turn::Done => return Ok(first),
                Turn::Wait => state = self.shared.wait(state),
                Turn::Lead => {
                    drop(state);
                    self.shared.flush(self.window(), false);
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
            self.codec.encode(&mut batch, record, &self.path)?;
            count += 1;
        }
        facts.written = Some(batch.len() as u64);
        let mut state = self.shared.lock();
        state.refuse_if_failed(&self.path)?;
        let first = state.next_index();
        if state.pending.is_empty() {
            state.pending = batch;
        } else {
            state.pending.extend_from_slice(&batch);
        }
        state.pending_records += count;
        Ok((first, first + count))
    }

    /// How long a flush waits for more appends: [`Options::group_commit`](crate::Options::group_commit).
    fn window(&self) -> Duration {
        self.settings.group_commit.unwrap_or_default()
    }

    /// [`append`](Journal::append) for async code: the write and the fsync run on persist's
    /// worker threads, so the runtime is never blocked, and concurrent appends (tasks or
    /// threads) share one fsync. Durable when the future completes (unless
    /// [`Durability::None`](crate::Durability::None)); dropping the future does not stop the record from being
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
    /// journal.append_async(Event { id: 1 }).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The record is handed over (async calls own their values, sync ones borrow them: see the
    /// crate's documentation, "Sync and async calls"); it is encoded before the future is
    /// returned, which is `'static` and can be spawned.
    #[cfg(feature = "tokio")]
    pub fn append_async(&self, record: E) -> crate::Pending<u64> {
        self.append_many_async([record])
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
    /// journal.append_many_async(events).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn append_many_async(&self, records: impl IntoIterator<Item = E>) -> crate::Pending<u64> {
        let operation = Operation::start("journal_append", &self.path);
        let mut facts = Facts {
            to: Some(E::VERSION),
            ..Facts::default()
        };
        let records: Vec<E> = records.into_iter().collect();
        let enqueued = operation.in_span(|| self.enqueue(&records, &mut facts));
        drop(records);
        let (shared, path, window) = (Arc::clone(&self.shared), self.path.clone(), self.window());
        crate::Pending::native(async move {
            let result = match enqueued {
                Ok((first, mine)) => durable_async(&shared, &path, window, mine)
                    .await
                    .map(|()| first),
                Err(error) => Err(error),
            };
            operation.finish(&result, facts);
            result
        })
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
        Replay::new(&self.settings, &self.path, state.end)
    }

    /// Saves `snapshot` as the state after every record so far, then starts the log again
    /// empty. The snapshot must hold the effect of every record appended before this call: a
    /// record another thread appends while it runs is covered by it too, so build the snapshot
    /// and checkpoint without appends in between. Atomic: after a crash at any moment,
    /// [`Transaction::recover`](Journal::recover) returns either the previous snapshot and every record
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
    pub fn checkpoint(&self, snapshot: &S) -> Result<(), Error> {
        let operation = Operation::start("journal_checkpoint", &self.path);
        let result = operation.in_span(|| self.checkpoint_now(snapshot));
        let facts = Facts {
            to: Some(S::VERSION),
            ..Facts::default()
        };
        operation.finish(&result, facts);
        result
    }

    /// Stores every record after the last checkpoint again at the current version `E`: old
    /// records migrate (an upcast may turn one into several or none), the old log is kept as
    /// `<log>.v<N>.bak` (N: the oldest version among its records), then the log is replaced
    /// atomically by one holding the migrated records after the same base (the durable
    /// replace of a save). Nothing changes if a record does not migrate, and nothing is
    /// rewritten when every record is at `E`'s version already. Appends wait meanwhile.
    ///
    /// Records keep their order; when upcasts change their number, the indexes of those after
    /// the first such record move (and [`len`](Journal::len) with them), so readers following
    /// the journal start again from [`Transaction::recover`](Journal::recover): a follower that had read
    /// records of the rewritten log gets [`Error::Rewound`] and reads them again, rewritten.
    /// Replay costs the same after as before, without the migrations.
    ///
    /// # Errors
    ///
    /// What [`replay`](Journal::replay) returns for a record ([`Error::Migration`],
    /// [`Error::Corrupt`], ...); what a save returns for the backup and the new log.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// let journal = persist::Journal::<Event>::open("events.log")?;
    /// let rewritten = journal.rewrite()?;
    /// println!("{} records, now {}; old log kept as {:?}", rewritten.before, rewritten.after, rewritten.backup);
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn rewrite(&self) -> Result<Rewritten, Error> {
        let operation = Operation::start("journal_rewrite", &self.path);
        let result = operation.in_span(|| self.rewrite_now());
        let facts = Facts {
            to: Some(E::VERSION),
            ..Facts::default()
        };
        operation.finish(&result, facts);
        result
    }

    /// The last checkpoint's snapshot (`None` before the first, and always for a journal
    /// without a snapshot type) and the records after it.
    ///
    /// # Errors
    ///
    /// What [`Options::load`](crate::Options::load) returns for the snapshot;
    /// [`Error::Corrupt`] when the snapshot and the log do not fit together (the log starts
    /// after records the snapshot lacks).
    ///
    /// # Examples
    ///
    /// See [`Journal`].
    pub fn recover(&self) -> Result<(Option<S>, Replay<E>), Error> {
        self.recover_now()
    }
}

/// Opens the journal at `path` for reading and writing, creating it (an empty journal whose
/// first record gets the index `base` returns, durably, through the shell) if there is none.
fn open_or_create(
    disk: &Disk,
    path: &Path,
    base: impl FnOnce() -> Result<u64, Error>,
) -> Result<(std::fs::File, std::fs::Metadata), Error> {
    match open_regular_file(path, true) {
        Err(Error::NotFound { .. }) => {
            let header = FileHeader::new(base()?).to_bytes();
            replace_path(disk, path, &Write::default(), bytes(&header))?;
            open_regular_file(path, true)
        }
        opened => opened,
    }
}

/// Waits until the records up to index `mine` of the journal `shared` (at `path`) are durable,
/// leading flushes (on the worker threads, each waiting `window` for more appends) when none
/// runs.
#[cfg(feature = "tokio")]
async fn durable_async(
    shared: &Arc<Shared>,
    path: &Path,
    window: Duration,
    mine: u64,
) -> Result<(), Error> {
    loop {
        let notified = shared.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the state is looked at: a flush ending in between wakes it.
        notified.as_mut().enable();
        let turn = shared.turn(&mut shared.lock(), mine)?;
        match turn {
            Turn::Done => return Ok(()),
            Turn::Wait => notified.await,
            Turn::Lead => {
                let shared = Arc::clone(shared);
                // Runs to the end even if this future is dropped: the flush owns what it
                // needs, and wakes the others when it ends.
                crate::Pending::<(), Error>::new(path.to_owned(), move |_| {
                    shared.flush(window, true);
                    Ok(())
                })
                .await?;
            }
        }
    }
}
