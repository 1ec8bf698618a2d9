//! [`Options`]: the settings of a load or save, and the functions behind every `Persisted`
//! method.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "tokio")]
use crate::Pending;
use crate::audit::{self, AuditOp, Written};
use crate::codec::EncodeError;
use crate::error::IoOp;
use crate::fs::{Durability, FileWriter, io_error};
use crate::key::Key;
use crate::retry::Retry;
use crate::telemetry::{Facts, Operation};
use crate::{
    Backup, Error, FileInfo, Inspection, Journal, JournalRecords, Persisted, backup, codec,
    file_info, frame, fs, inspect,
};

/// Settings for loading and saving, for when the defaults of the [`Persisted`] methods do not
/// fit. `Persisted::load(path)` is `Options::new().load(path)`.
///
/// # Examples
///
/// ```no_run
/// # use persist::{Options, Persisted};
/// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// # #[persist(version = 1)]
/// # struct Library { books: Vec<String> }
/// let options = Options::new().max_size(2 << 30);
/// let library: Library = options.load("library.json")?;
/// options.save(&library, "library.json")?;
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Options {
    max_size: u64,
    lock_timeout: Option<Duration>,
    durability: Durability,
    backups: usize,
    checksum: bool,
    compression: Option<i32>,
    key: Option<Key>,
    retry: Retry,
    pretty: bool,
    group_commit: Option<Duration>,
    pub(crate) audit: Option<std::sync::Arc<crate::audit::AuditLog>>,
    pub(crate) actor: Option<std::sync::Arc<str>>,
    #[cfg(feature = "live")]
    pub(crate) live: crate::live::LiveSettings,
    #[cfg(feature = "cache")]
    pub(crate) cache: Option<crate::collection::cache::CacheSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The default cap on the size of a file [`load`](Options::load) reads: 256 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;

    /// How long [`update`](Options::update) waits for another process's lock by default: 30 s.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

    /// How many backups of older (or newer) versions a save keeps by default: 3.
    pub const DEFAULT_BACKUPS: usize = 3;

    /// The default settings.
    pub const fn new() -> Self {
        Options {
            max_size: Self::DEFAULT_MAX_SIZE,
            lock_timeout: Some(Self::DEFAULT_LOCK_TIMEOUT),
            durability: Durability::Full,
            backups: Self::DEFAULT_BACKUPS,
            checksum: false,
            compression: None,
            key: None,
            retry: Retry::NONE,
            pretty: false,
            group_commit: None,
            audit: None,
            actor: None,
            #[cfg(feature = "live")]
            live: crate::live::LiveSettings::DEFAULT,
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// Sets the largest file a load reads, in bytes. A larger file is refused with
    /// [`Error::TooLarge`] before it is read, so a wrong path (a disk image, a log) cannot
    /// exhaust memory. The default is [`DEFAULT_MAX_SIZE`](Options::DEFAULT_MAX_SIZE).
    pub const fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// How long the appender that starts a [`Journal`] flush waits for others to add their
    /// records first (group commit). Concurrent appends (threads, or tasks with
    /// [`Journal::append_async`]) always share flushes: records that arrive while one flush
    /// writes and syncs are written together by the next, with one `write` and one
    /// `fdatasync`, and every append returns once its record is durable. A window lets more
    /// of them join a flush, at the cost of that much latency per flush; without one (the
    /// default, as with a zero window) a lone appender never waits.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// use std::time::Duration;
    ///
    /// let journal = persist::Options::new()
    ///     .group_commit(Duration::from_micros(200))
    ///     .journal::<Event>("events.log")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn group_commit(mut self, window: Duration) -> Self {
        self.group_commit = Some(window);
        self
    }

    /// Records every successful [`save`](Options::save), [`update`](Options::update),
    /// [`remove`](Options::remove), [`restore_backup`](Options::restore_backup) and
    /// [`Transaction`](crate::Transaction) commit made with these options in the audit log at
    /// `path`: an append-only [`Journal`] of [`AuditRecord`](crate::AuditRecord)s (time,
    /// operation, file, from and to version, bytes written and their CRC-32C, process id,
    /// [`actor`](Options::actor)), never the data itself. Read it with
    /// [`read_audit`](crate::read_audit) (or `persist journal <log>`).
    ///
    /// The record is appended (and synced, per [`durability`](Options::durability)) after the
    /// operation succeeded, under the log's lock for the append alone, so any number of
    /// processes can audit to the same log. If it cannot be appended the operation returns
    /// [`Error::Audit`]: the file was written all the same. A crash between the operation
    /// and its record loses the record, never the operation. Loads are not recorded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let options = persist::Options::new().audit("audit.log").actor("alice");
    /// options.save(&Settings { theme: "dark".into() }, "settings.json")?;
    /// let last = persist::read_audit("audit.log")?.last().unwrap()?;
    /// assert_eq!(last.actor.as_deref(), Some("alice"));
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn audit(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit = Some(crate::audit::AuditLog::new(path.into()));
        self
    }

    /// Names who acts through these options (a user, a service) in the
    /// [audit log](Options::audit)'s records.
    ///
    /// # Examples
    ///
    /// See [`audit`](Options::audit).
    pub fn actor(mut self, name: impl Into<String>) -> Self {
        self.actor = Some(std::sync::Arc::from(name.into()));
        self
    }

    /// The audit log these options record to, if any.
    pub fn audit_log(&self) -> Option<&Path> {
        self.audit.as_deref().map(crate::audit::AuditLog::path)
    }

    /// The group-commit window of journal appends, if any.
    pub(crate) fn group_commit_window(&self) -> Option<Duration> {
        self.group_commit
    }

    /// Sets how long [`update`](Options::update) waits for the lock another process holds before
    /// it gives up with [`Error::LockTimeout`]; `None` waits as long as it takes. The default is
    /// [`DEFAULT_LOCK_TIMEOUT`](Options::DEFAULT_LOCK_TIMEOUT).
    pub const fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets how much a save waits for the disk; see [`Durability`]. The default is
    /// [`Durability::Full`].
    pub const fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how many backups a save keeps beside the file. Before a save replaces a file that
    /// holds another version than the one being written (the first save after a migration, or
    /// an older program saving over a newer file), the old file is copied, durably and
    /// atomically, to `<name>.v<version>.bak`, and all but the `keep` newest versions are
    /// removed. `0` turns backups off. The default is
    /// [`DEFAULT_BACKUPS`](Options::DEFAULT_BACKUPS). A save over a file of the same version
    /// makes no backup and costs one read of the file's first 34 bytes.
    pub const fn backups(mut self, keep: usize) -> Self {
        self.backups = keep;
        self
    }

    /// Makes saves store a CRC-32C checksum of the data bytes as the envelope's last member
    /// (`{"version":3,"data":{...},"crc32c":"1a2b3c4d"}`), so that a load reports damage done
    /// to the file after it was written (a flipped bit inside a string is still valid JSON) as
    /// [`Error::Corrupt`] instead of returning the damaged value. The file stays plain,
    /// readable JSON; editing it by hand makes the checksum fail, so remove the `crc32c` member
    /// after an edit. A type with `#[persist(checksum)]` always has one, whatever this says.
    ///
    /// Loads need no option: a file that has a checksum is always verified, and a file without
    /// one loads as before. Costs one CRC pass over the data (hardware-accelerated) on save and
    /// load.
    pub const fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Makes saves write indented JSON (two spaces per level, a final newline), for files people
    /// read and edit by hand. Loads need no option: both layouts load. A checksum covers the
    /// data bytes exactly as written, indentation included. A type with `#[persist(pretty)]`
    /// is always saved indented, whatever this says. The price is a larger file and a slower
    /// save (BENCHMARKS.md, "The layers", measures it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// # let settings = Settings { theme: "dark".into() };
    /// Options::new().pretty(true).save(&settings, "settings.json")?;
    /// // {
    /// //   "version": 1,
    /// //   "data": {
    /// //     "theme": "dark"
    /// //   }
    /// // }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn pretty(mut self, on: bool) -> Self {
        self.pretty = on;
        self
    }

    /// The layout of a save of `T`.
    pub(crate) fn style<T: Persisted>(&self) -> codec::Style {
        codec::Style {
            checksum: self.checksum || T::CHECKSUM,
            pretty: self.pretty || T::PRETTY,
        }
    }

    /// Makes saves compress the file with zstd at `level` (1 fastest … 22 smallest; 3 is
    /// zstd's default; negative levels trade size for more speed). The file becomes binary:
    /// a small header (FORMAT.md) followed by a zstd frame of the JSON envelope. Loads need no
    /// option: compression is recognised from the file's first bytes, not its name, and an
    /// older version's compressed file migrates like any other. The decompressed size is held
    /// to [`max_size`](Options::max_size), so a small hostile file cannot expand into gigabytes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Index { entries: Vec<String> }
    /// # let index = Index { entries: Vec::new() };
    /// Options::new().compress(3).save(&index, "index.bin")?;
    /// let index: Index = Options::new().load("index.bin")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    #[cfg(feature = "zstd")]
    pub const fn compress(mut self, level: i32) -> Self {
        self.compression = Some(level);
        self
    }

    /// Encrypts saves with `key` (XChaCha20-Poly1305) and decrypts loads with it. An encrypted
    /// file's header tells the schema version and the layers, nothing else; the data, its
    /// field names and its size before compression stay secret, and any change to the file
    /// makes the load fail with [`Error::Decrypt`] rather than return altered data. A load of
    /// an encrypted file without a key is [`Error::KeyRequired`]; files that are not encrypted
    /// still load with a key set (so turning encryption on migrates existing files at their
    /// next save).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Key, Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Session { token: String }
    /// # let session = Session { token: String::new() };
    /// let options = Options::new().encrypt(Key::from_env("APP_STATE_KEY")?);
    /// options.save(&session, "session.bin")?;
    /// let session: Session = options.load("session.bin")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "encryption")]
    pub fn encrypt(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// Makes loads, saves, updates and restores try up to `attempts` times in all when they
    /// fail with a transient error ([`Error::is_transient`]: EINTR, EAGAIN, EBUSY, ETXTBSY,
    /// ESTALE, a time-out, a lock held too long), waiting `backoff` before the second try and
    /// twice as long before each next one (at most 32x), each wait jittered to 50-150 %. Errors
    /// a retry cannot change (a corrupt, newer or missing file, a refused migration, a full disk)
    /// are returned at once. The default is one attempt: no retry.
    ///
    /// An update retries taking the lock and loading, and retries its save, but runs the change
    /// once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64 }
    /// use std::time::Duration;
    /// let options = Options::new().retry(4, Duration::from_millis(20)); // on NFS, say
    /// let stats: Stats = options.update("stats.json", |stats: &mut Stats| stats.launches += 1)?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn retry(mut self, attempts: u32, backoff: Duration) -> Self {
        self.retry = Retry {
            attempts: if attempts == 0 { 1 } else { attempts },
            backoff,
        };
        self
    }

    /// How much saves wait for the disk.
    pub(crate) fn sync_level(&self) -> Durability {
        self.durability
    }

    /// How long an update waits for the lock.
    pub(crate) fn lock_wait(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// The size cap of a load ([`max_size`](Options::max_size)).
    pub(crate) fn max_size_limit(&self) -> u64 {
        self.max_size
    }

    /// How many backups a save keeps ([`backups`](Options::backups)).
    pub(crate) fn backups_kept(&self) -> usize {
        self.backups
    }

    /// The retry policy of this call.
    pub(crate) fn retries(&self) -> Retry {
        self.retry
    }

    pub(crate) fn layers(&self) -> frame::Layers<'_> {
        frame::Layers {
            zstd_level: self.compression,
            key: self.key.as_ref(),
        }
    }

    /// [`open`](Options::open) without a path: the caller names the file only on an error
    /// (`FrameError::at`), so the hot path of a collection read builds no path.
    #[cfg(feature = "collection")]
    pub(crate) fn unframe<'b>(
        &self,
        bytes: &'b [u8],
    ) -> Result<std::borrow::Cow<'b, [u8]>, frame::FrameError> {
        codec::unframe(bytes, self.key.as_ref(), self.max_size)
    }

    /// The JSON envelope of a file's bytes: the bytes themselves, or what a frame holds.
    pub(crate) fn open<'b>(
        &self,
        path: &Path,
        bytes: &'b [u8],
    ) -> Result<std::borrow::Cow<'b, [u8]>, Error> {
        codec::unframe(bytes, self.key.as_ref(), self.max_size).map_err(|error| error.at(path))
    }

    /// The backups kept beside the file at `path`, newest version first.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let backups = persist::Options::new().backups_of("settings.json")?;
    /// for backup in &backups {
    ///     println!("version {} at {}", backup.version, backup.path.display());
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn backups_of(&self, path: impl AsRef<Path>) -> Result<Vec<Backup>, Error> {
        backup::list(path.as_ref())
    }

    /// Puts the backup of `version` back in place of the file at `path`, durably and
    /// atomically. The file it replaces is first kept as a backup of its own version, so a
    /// restore can be undone. Loading the restored file then migrates it again, so fix what made
    /// you restore (usually a migration) first.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming the backup if there is none of `version`; the errors of a
    /// save otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// persist::Options::new().restore_backup("settings.json", 2)?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn restore_backup(&self, path: impl AsRef<Path>, version: u64) -> Result<(), Error> {
        let path = path.as_ref();
        let operation = Operation::start("restore", path);
        let result = operation.in_span(|| {
            let from_version = self
                .audited()
                .then(|| audit::stored_version(path))
                .flatten();
            self.retry
                .run(|| backup::restore(path, version, self.max_size, self.durability))?;
            if !self.audited() {
                return Ok(());
            }
            let written = std::fs::File::open(path)
                .and_then(|file| Written::of_file(&file))
                .map_err(io_error(path, IoOp::Read))?;
            self.audit_entry(audit::Entry {
                operation: AuditOp::Restore,
                path,
                key: None,
                from_version,
                to_version: Some(version),
                written: Some(written),
            })
        });
        let facts = Facts {
            from: Some(version),
            ..Facts::default()
        };
        operation.finish(&result, facts);
        result
    }

    /// A dry run of [`load`](Options::load): reports the version the file holds, the migration
    /// steps a load would run, and whether it would succeed (running the migrations in memory),
    /// without writing anything.
    ///
    /// # Errors
    ///
    /// Only when the file cannot be read at all ([`Error::NotFound`], [`Error::Io`],
    /// [`Error::NotRegularFile`], [`Error::TooLarge`]); a file that would fail to load is
    /// reported in [`Inspection::outcome`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let report = Options::new().inspect::<Settings>("settings.json")?;
    /// println!("{report}");
    /// if !report.would_load() { /* ... */ }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn inspect<T: Persisted>(&self, path: impl AsRef<Path>) -> Result<Inspection, Error> {
        inspect::inspect::<T>(path.as_ref(), self.max_size, self.key.as_ref())
    }

    /// What the file at `path` holds, read without the program's types: its layout and layers,
    /// schema version, checksum and data as JSON text (with the key of
    /// [`encrypt`](Options::encrypt), if the file is encrypted). Makes every check a load makes
    /// before decoding: a file that comes back `Ok` is intact; what a load of a given type would
    /// make of it is [`inspect`](Options::inspect)'s question. Never writes.
    ///
    /// # Errors
    ///
    /// What [`load`](Options::load) returns for a file it cannot open or whose bytes are
    /// damaged: [`Error::NotFound`], [`Error::NotRegularFile`], [`Error::TooLarge`],
    /// [`Error::Io`], [`Error::Corrupt`] (broken JSON or frame, checksum mismatch),
    /// [`Error::Unsupported`], [`Error::KeyRequired`], [`Error::Decrypt`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let info = persist::Options::new().file_info("settings.json")?;
    /// println!("version {:?}, {} bytes, layout {:?}", info.version, info.size, info.layout);
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn file_info(&self, path: impl AsRef<Path>) -> Result<FileInfo, Error> {
        file_info::file_info(path.as_ref(), self.max_size, self.key.as_ref())
    }

    /// Opens the [`Journal`] at `path` with these options: its appends sync per
    /// [`durability`](Options::durability), its snapshots are saved with these layers, its
    /// records may be up to [`max_size`](Options::max_size) bytes, and opening waits up to
    /// [`lock_timeout`](Options::lock_timeout) for another process that has it open.
    ///
    /// # Errors
    ///
    /// See [`Journal::open`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// let journal = persist::Options::new()
    ///     .checksum(true)
    ///     .journal::<Event>("events.log")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn journal<E: Persisted>(&self, path: impl AsRef<Path>) -> Result<Journal<E>, Error> {
        Journal::open_with(self, path.as_ref())
    }

    /// The records of the journal at `path` read without their type (their version and JSON
    /// text), for tools: no lock is taken and nothing is changed, so a writer may have it open.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::NotRegularFile`], [`Error::Corrupt`] for a file that is
    /// not a journal, [`Error::DamagedJournal`] for damage before the last record,
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// for record in persist::Options::new().journal_records("events.log")? {
    ///     let record = record?;
    ///     println!("#{} (version {}): {}", record.index, record.version, record.data);
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn journal_records(&self, path: impl AsRef<Path>) -> Result<JournalRecords, Error> {
        JournalRecords::open(path.as_ref(), self.max_size)
    }

    /// The whole file of `value` in memory: the envelope, framed when layers are configured
    /// (the layers work on the complete envelope). A `Vec` is the fastest thing serde_json
    /// writes into; growing a large one costs no copies on Linux (glibc moves its pages with
    /// mremap).
    pub(crate) fn file_bytes<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
    ) -> Result<Vec<u8>, Error> {
        let plain =
            codec::encode_to_vec(value, self.style::<T>()).map_err(|error| error.at(path))?;
        let layers = self.layers();
        if !layers.any() {
            return Ok(plain);
        }
        frame::seal(plain, T::VERSION, &layers).map_err(|source| Error::Seal {
            path: path.to_owned(),
            source,
        })
    }

    /// Replaces the file at `path` with what `contents` writes: stages the new file (written
    /// and synced beside the target), then keeps a backup of the old one if it holds another
    /// version, then renames the new file into place. A save that fails before the rename
    /// leaves neither a new file nor a backup.
    /// With an [audit log](Options::audit), `operation` is recorded once the file is in place.
    fn commit(
        &self,
        path: &Path,
        version: u32,
        unversioned_as: Option<u32>,
        operation: AuditOp,
        contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
    ) -> Result<(), Error> {
        let target = fs::resolve_target(path)?;
        let staged = fs::stage(path, &target, self.durability, contents)?;
        let audited = match self.audited() {
            true => Some((
                audit::stored_version(&target),
                Written::of_file(staged.file()).map_err(io_error(path, IoOp::Read))?,
            )),
            false => None,
        };
        backup::preserve(
            path,
            &target,
            u64::from(version),
            unversioned_as,
            self.backups,
            self.max_size,
            self.durability,
        )?;
        staged.install()?;
        match audited {
            Some((from_version, written)) => self.audit_entry(audit::Entry {
                operation,
                path,
                key: None,
                from_version,
                to_version: Some(u64::from(version)),
                written: Some(written),
            }),
            None => Ok(()),
        }
    }

    /// [`save`](Options::save) of `value`, serialized straight into the temporary file when no
    /// layer is configured. Errors are the value's first (a float JSON cannot hold, a map key
    /// that is not a string), then the file's.
    fn save_value<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
        operation: AuditOp,
    ) -> Result<(), Error> {
        let unversioned_as = codec::unversioned_root::<T>();
        if self.layers().any() {
            let bytes = self.file_bytes(value, path)?;
            return self.commit(
                path,
                T::VERSION,
                unversioned_as,
                operation,
                fs::bytes(&bytes),
            );
        }
        // Streams into the temporary file: no copy of the file in memory. A value serde refuses
        // half-way leaves a partial temporary file, which the failed commit removes.
        let style = self.style::<T>();
        let mut refused = None;
        let result = self.commit(path, T::VERSION, unversioned_as, operation, |writer| {
            codec::encode(value, writer, style).map_err(|error| match error {
                EncodeError::Io(error) => error,
                refusal @ EncodeError::Value { .. } => {
                    refused = Some(refusal);
                    io::Error::other("the value could not be serialized")
                }
            })
        });
        match refused {
            Some(refusal) => Err(refusal.at(path)),
            None => result,
        }
    }

    /// Loads `path` as `T`, migrating from whatever version the file holds. Never writes.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load`].
    ///
    /// # Examples
    ///
    /// See [`Options`].
    pub fn load<T: Persisted>(&self, path: impl AsRef<Path>) -> Result<T, Error> {
        let path = path.as_ref();
        let operation = Operation::start("load", path);
        let mut facts = Facts {
            to: Some(T::VERSION),
            ..Facts::default()
        };
        let result = operation.in_span(|| {
            let bytes = self.retry.run(|| fs::read_for_load(path, self.max_size))?;
            facts.read = Some(bytes.len() as u64);
            facts.from = codec::leading_version(&bytes);
            let decoded = self
                .open(path, &bytes)
                .and_then(|envelope| codec::decode(&envelope).map_err(|error| error.at::<T>(path)));
            // A truncation by another program during the read is the error to report, not
            // what the parser made of the zeros that replaced the lost bytes.
            bytes.intact(path)?;
            decoded
        });
        operation.finish(&result, facts);
        result
    }

    /// Loads `path` as `T`, or returns `T::default()` if there is no file. Never writes.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load_or_default`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// let library: Library = Options::new().max_size(1 << 20).load_or_default("library.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn load_or_default<T: Persisted + Default>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<T, Error> {
        match self.load(path) {
            Err(Error::NotFound { .. }) => Ok(T::default()),
            result => result,
        }
    }

    /// Saves `value` at `path` durably and atomically, serializing straight into the
    /// temporary file.
    ///
    /// # Errors
    ///
    /// See [`Persisted::save`].
    ///
    /// # Examples
    ///
    /// See [`Options`].
    pub fn save<T: Persisted>(&self, value: &T, path: impl AsRef<Path>) -> Result<(), Error> {
        self.save_as(value, path.as_ref(), AuditOp::Save)
    }

    /// [`save`](Options::save), recorded in the audit log as `operation`.
    pub(crate) fn save_as<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
        operation: AuditOp,
    ) -> Result<(), Error> {
        measured_save(path, T::VERSION, || {
            self.retry.run(|| self.save_value(value, path, operation))
        })
    }

    /// [`load`](Options::load) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let library: Library = Options::new().load_async("library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn load_async<T: Persisted + Send + 'static>(&self, path: impl AsRef<Path>) -> Pending<T> {
        let options = self.clone();
        Pending::new(path.as_ref().to_owned(), move |path| options.load(path))
    }

    /// [`load_or_default`](Options::load_or_default) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load_or_default`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let library: Library = Options::new().load_or_default_async("library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn load_or_default_async<T: Persisted + Default + Send + 'static>(
        &self,
        path: impl AsRef<Path>,
    ) -> Pending<T> {
        let options = self.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            options.load_or_default(path)
        })
    }

    /// [`save`](Options::save) with the file work on persist's worker threads, for a value
    /// the caller keeps. `value` is serialized into memory when this is called, on the
    /// caller's thread, so the future does not borrow it; the bytes written are those
    /// [`save`](Options::save) writes.
    ///
    /// Serializing takes the caller's thread for as long as serde_json needs (BENCHMARKS.md
    /// measures how long a large save stalls a runtime this way) and holds the whole file in
    /// memory: fine for settings-sized values. For large values, prefer
    /// [`save_owned_async`](Options::save_owned_async) (or
    /// [`save_shared_async`](Options::save_shared_async) with an `Arc`), which serialize on a
    /// worker thread and stream into the file like `save`, so the runtime's threads never stall.
    ///
    /// # Errors
    ///
    /// See [`Persisted::save`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run(library: Library) -> Result<(), persist::Error> {
    /// Options::new().save_async(&library, "library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn save_async<T: Persisted>(&self, value: &T, path: impl AsRef<Path>) -> Pending<()> {
        let path = path.as_ref().to_owned();
        let bytes = match self.file_bytes(value, &path) {
            Ok(bytes) => bytes,
            Err(error) => return Pending::failed(error),
        };
        let options = self.clone();
        let (version, unversioned_as) = (T::VERSION, codec::unversioned_root::<T>());
        Pending::new(path, move |path| {
            measured_save(path, version, || {
                options.retry.run(|| {
                    options.commit(
                        path,
                        version,
                        unversioned_as,
                        AuditOp::Save,
                        fs::bytes(&bytes),
                    )
                })
            })
        })
    }

    /// [`save`](Options::save) of a value the future owns, entirely on persist's worker threads:
    /// serializing streams into the temporary file there, exactly as `save` does, so no thread
    /// of the runtime is held up and no copy of the file is kept in memory.
    /// Prefer it to [`save_async`](Options::save_async) for large values, or whenever the
    /// value can be moved or was going to be dropped anyway.
    ///
    /// # Errors
    ///
    /// See [`Persisted::save`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run(library: Library) -> Result<(), persist::Error> {
    /// Options::new().save_owned_async(library, "library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn save_owned_async<T: Persisted + Send + 'static>(
        &self,
        value: T,
        path: impl AsRef<Path>,
    ) -> Pending<()> {
        self.save_in_background::<T, T>(value, path.as_ref())
    }

    /// [`save_owned_async`](Options::save_owned_async) for a value shared through an
    /// [`Arc`](std::sync::Arc): the future holds one more reference while it runs, and the
    /// value is serialized on a worker thread.
    ///
    /// # Errors
    ///
    /// See [`Persisted::save`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run(library: Arc<Library>) -> Result<(), persist::Error> {
    /// Options::new().save_shared_async(Arc::clone(&library), "library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn save_shared_async<T: Persisted + Send + Sync + 'static>(
        &self,
        value: std::sync::Arc<T>,
        path: impl AsRef<Path>,
    ) -> Pending<()> {
        self.save_in_background::<T, _>(value, path.as_ref())
    }

    #[cfg(feature = "tokio")]
    fn save_in_background<T: Persisted, V: std::borrow::Borrow<T> + Send + 'static>(
        &self,
        value: V,
        path: &Path,
    ) -> Pending<()> {
        let options = self.clone();
        Pending::new(path.to_owned(), move |path| {
            options.save(value.borrow(), path)
        })
    }
}

/// Runs a save as one measured operation: its span, and its outcome, version and size.
fn measured_save(
    path: &Path,
    version: u32,
    save: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    let operation = Operation::start("save", path);
    let result = operation.in_span(save);
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    let written = result
        .is_ok()
        .then(|| std::fs::metadata(path).ok().map(|metadata| metadata.len()))
        .flatten();
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let written = None;
    let facts = Facts {
        to: Some(version),
        written,
        ..Facts::default()
    };
    operation.finish(&result, facts);
    result
}
