//! [`Options`]: the settings of a load or save, and every verb persist offers on them. A facade:
//! each method sets a field of the crate-internal [`Settings`] or hands it to the module that
//! does the work (`file`, `journal`, `txn`, `collection`, `live`).

use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "collection")]
use crate::Collection;
#[cfg(feature = "live")]
use crate::Live;
#[cfg(feature = "tokio")]
use crate::Pending;
#[cfg(feature = "encryption")]
use crate::key::Key;
use crate::retry::Retry;
use crate::settings::Settings;
use crate::shell::{AuditOp, Durability};
use crate::{
    Backup, Error, FileInfo, Follow, Format, Inspection, Journal, JournalRecords, JournalRecovery,
    LoadOutcome, Loaded, OnCorrupt, OnNewer, Persisted, RawRecord, Transaction, file, file_info,
    inspect,
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
    settings: Settings,
    #[cfg(feature = "live")]
    live: crate::live::LiveSettings,
    #[cfg(feature = "cache")]
    cache: Option<crate::collection::cache::CacheSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The default cap on the size of a file [`load`](Options::load) reads: 256 MiB.
    pub const DEFAULT_MAX_SIZE: u64 = crate::settings::DEFAULT_MAX_SIZE;

    /// How long [`update`](Options::update) waits for another process's lock by default: 30 s.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = crate::settings::DEFAULT_LOCK_TIMEOUT;

    /// How many backups of older (or newer) versions a save keeps by default: 3.
    pub const DEFAULT_BACKUPS: usize = crate::settings::DEFAULT_BACKUPS;

    /// The default settings.
    pub const fn new() -> Self {
        Options {
            settings: Settings::DEFAULT,
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
        self.settings.disk.max_size = bytes;
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
    ///     .journal::<Event, persist::NoSnapshot>("events.log")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn group_commit(mut self, window: Duration) -> Self {
        self.settings.group_commit = Some(window);
        self
    }

    /// What opening a [`Journal`] does with a torn last flush (a crash during an append):
    /// cut it off and report it ([`JournalRecovery::TolerateTornTail`], the default), or
    /// refuse with [`Error::DamagedJournal`] ([`JournalRecovery::AbsoluteConsistency`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// use persist::JournalRecovery;
    ///
    /// let journal = persist::Options::new()
    ///     .journal_recovery(JournalRecovery::AbsoluteConsistency)
    ///     .journal::<Event, persist::NoSnapshot>("events.log")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn journal_recovery(mut self, recovery: JournalRecovery) -> Self {
        self.settings.journal_recovery = recovery;
        self
    }

    /// Records every successful [`save`](Options::save), [`update`](Options::update),
    /// [`remove`](Options::remove), [`restore_backup`](Options::restore_backup) and
    /// [`Transaction`](crate::Transaction) commit made with these options in the audit log at
    /// `path`: an append-only [`Journal`] of [`AuditRecord`](crate::AuditRecord)s (time,
    /// operation, file, from and to version, bytes written and their CRC-32C, process id,
    /// [`actor`](Options::actor)), never the data itself. Read it with
    /// [`AuditLog::read`](crate::AuditLog::read) (or `persist journal <log>`).
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
    /// let last = persist::AuditLog::read("audit.log")?.last().unwrap()?;
    /// assert_eq!(last.actor.as_deref(), Some("alice"));
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn audit(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.disk.audit = Some(crate::audit::AuditFile::open(path.into()));
        self
    }

    /// Names who acts through these options (a user, a service) in the
    /// [audit log](Options::audit)'s records.
    ///
    /// # Examples
    ///
    /// See [`audit`](Options::audit).
    pub fn actor(mut self, name: impl Into<String>) -> Self {
        self.settings.disk.actor = Some(std::sync::Arc::from(name.into()));
        self
    }

    /// The audit log these options record to, if any.
    pub fn audit_log(&self) -> Option<&Path> {
        self.settings.disk.audit.as_ref().map(|log| log.0.path())
    }

    /// Sets how long [`update`](Options::update) waits for the lock another process holds before
    /// it gives up with [`Error::LockTimeout`]; `None` waits as long as it takes. The default is
    /// [`DEFAULT_LOCK_TIMEOUT`](Options::DEFAULT_LOCK_TIMEOUT).
    pub const fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.disk.lock_timeout = timeout;
        self
    }

    /// Sets how much a save waits for the disk; see [`Durability`]. The default is
    /// [`Durability::Full`].
    pub const fn durability(mut self, durability: Durability) -> Self {
        self.settings.disk.durability = durability;
        self
    }

    /// Sets how many backups a save keeps beside the file. Before a save replaces a file that
    /// holds another version than the one being written (the first save after a migration, or
    /// an older program saving over a newer file), the old file is kept, durably, as
    /// `<name>.v<version>.bak` (under a second name where it has no other, a copy otherwise);
    /// once the new file is in place, `keep` backups stay: the one just made (it holds the
    /// file the save replaced) and the newest other versions (backups of versions newer than
    /// the one written are neither counted nor removed: see
    /// [`keep_unreadable`](Options::keep_unreadable)). A save that fails leaves no backup and
    /// removes none. `0` turns backups of older versions off and removes none. The default is
    /// [`DEFAULT_BACKUPS`](Options::DEFAULT_BACKUPS). A save over a whole compact file of the
    /// same version makes no backup and costs two small reads: the file's first 64 bytes and
    /// its last 16 (a file with line breaks is read whole).
    pub const fn backups(mut self, keep: usize) -> Self {
        self.settings.disk.backups = keep;
        self
    }

    /// Sets what a load does with a file it cannot read (damaged, cut short, or not
    /// decrypting): fail ([`OnCorrupt::Fail`], the default), fall back to the newest earlier
    /// copy that loads ([`OnCorrupt::LastGood`]: keep [`generations`](Options::generations) to
    /// have some), or to the default value as the last resort ([`OnCorrupt::Default`]). The
    /// damaged file is never destroyed: it is kept as `<name>.corrupt-<unix ms>`. Followed by
    /// [`load`](Options::load), [`load_or_default`](Options::load_or_default),
    /// [`update`](Options::update) and the opening of a [`Live`](crate::Live) value; an intact
    /// file costs nothing more to load.
    pub const fn on_corrupt(mut self, policy: OnCorrupt) -> Self {
        self.settings.on_corrupt = policy;
        self
    }

    /// Sets what loads and saves do with a file of a newer schema version than the program's
    /// (a release rolled back): refuse it ([`OnNewer::Refuse`], the default), read its data as
    /// this version and refuse to save over it ([`OnNewer::ReadOnly`]), or read it and, on a
    /// save, write back the members this version does not know, at the file's version
    /// ([`OnNewer::KeepUnknown`]). [`load_reported`](Options::load_reported) says when a load
    /// read a newer file, and which members it did not know ([`LoadOutcome::Newer`]).
    ///
    /// ```
    /// use persist::{Error, LoadOutcome, OnNewer, Options, Persisted};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// #[persist(version = 3)]
    /// struct Settings { theme: String }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// // Written by the next release, version 4, which added a field.
    /// std::fs::write(&path, r#"{"version":4,"data":{"theme":"dark","font":"mono"}}"#)?;
    ///
    /// let read_only = Options::new().on_newer(OnNewer::ReadOnly);
    /// let loaded = read_only.load_reported::<Settings>(&path)?;
    /// assert_eq!(loaded.value.theme, "dark");
    /// let LoadOutcome::Newer(newer) = &loaded.outcome else { unreachable!() };
    /// assert_eq!((newer.found, newer.unknown.clone()), (4, vec!["font".to_owned()]));
    /// assert!(matches!(read_only.save(&loaded.value, &path), Err(Error::ReadOnly { .. })));
    ///
    /// let keep = Options::new().on_newer(OnNewer::KeepUnknown);
    /// keep.save(&Settings { theme: "light".into() }, &path)?;
    /// assert_eq!(
    ///     std::fs::read_to_string(&path)?,
    ///     r#"{"version":4,"data":{"theme":"light","font":"mono"}}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn on_newer(mut self, policy: OnNewer) -> Self {
        self.settings.on_newer = policy;
        self
    }

    /// Makes saves write `version`, an older version of the value's chain, for a release that
    /// is about to be rolled back: the value goes down through each version's downgrade step
    /// (`#[persist(downgrade)]` on a version with `From<Self> for Previous`, or `TryFrom`), and
    /// the file holds exactly what the older release writes. A save at the value's own version
    /// is an ordinary save. The file replaced is kept as a backup when its version differs,
    /// as on every save.
    ///
    /// Followed by the saves of single files (save, update, the async saves, a transaction's
    /// saves, `Live`); a collection writes its entries at their type's version.
    ///
    /// # Errors (of the saves)
    ///
    /// [`Error::Downgrade`] when a step fails or is not declared, or `version` is not an older
    /// version of the chain; nothing is written. [`Error::ReadOnly`] over a file of a newer
    /// version under [`OnNewer::ReadOnly`].
    ///
    /// ```
    /// use persist::{Options, Persisted};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// #[persist(version = 1)]
    /// struct SettingsV1 { theme: String }
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// #[persist(version = 2, migrate_from = SettingsV1, downgrade)]
    /// struct Settings { theme: String, font: String }
    ///
    /// impl From<SettingsV1> for Settings {
    ///     fn from(old: SettingsV1) -> Self {
    ///         Settings { theme: old.theme, font: "mono".into() }
    ///     }
    /// }
    ///
    /// impl From<Settings> for SettingsV1 {
    ///     fn from(new: Settings) -> Self {
    ///         SettingsV1 { theme: new.theme }
    ///     }
    /// }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// let settings = Settings { theme: "dark".into(), font: "serif".into() };
    /// Options::new().save_as_version(1).save(&settings, &path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, r#"{"version":1,"data":{"theme":"dark"}}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn save_as_version(mut self, version: u32) -> Self {
        self.settings.save_as = Some(version);
        self
    }

    /// Sets how many earlier good versions of the file a save keeps: before a save replaces a
    /// file that reads as whole (of any schema version), that file is kept as
    /// `<name>.gen-<N>`, N one more than the newest generation there, and once the new file is
    /// in place the generations past the newest `keep` are removed. They are what
    /// [`OnCorrupt::LastGood`](crate::OnCorrupt::LastGood) falls back to when the file is
    /// damaged. A generation is the replaced file itself under a second name (a hard link:
    /// nothing is copied, and it is made private, 0600, once the new file has its name), a
    /// copy where the file has other names or the file system has no hard links. It is made
    /// in the same directory before the rename, and the directory sync that makes the save
    /// durable makes it durable too. A save that fails removes the generation it made and
    /// none of the others. [`backups_of`](Options::backups_of) lists the generations,
    /// `persist backups` too, and [`remove`](Options::remove) removes them. `0` (the default)
    /// keeps none and removes none.
    ///
    /// A damaged file (see [`keep_unreadable`](Options::keep_unreadable)) is never a
    /// generation, and an empty one is not kept at all.
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// let options = persist::Options::new().generations(2);
    /// for theme in ["light", "dark", "blue", "green"] {
    ///     options.save(&Settings { theme: theme.into() }, &path)?;
    /// }
    /// // The file holds "green"; the two saves before it are kept, newest first.
    /// let kept = options.backups_of(&path)?;
    /// assert_eq!(kept.iter().map(|k| k.generation).collect::<Vec<_>>(), [Some(3), Some(2)]);
    /// let previous: Settings = options.load(&kept[0].path)?;
    /// assert_eq!(previous.theme, "blue");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn generations(mut self, keep: usize) -> Self {
        self.settings.disk.generations = keep;
        self
    }

    /// Sets whether a save keeps a file it could not read before replacing it. On (the
    /// default), a save over a file of a newer schema version keeps it as
    /// `<name>.v<version>.bak` whatever [`backups`](Options::backups) says (and no later save
    /// of an older version removes it), and a save over a file persist cannot read (no schema
    /// version it can tell, or cut short: a crash, a full disk, a program that wrote something
    /// else there) keeps it as `<name>.corrupt-<unix ms>`, byte for byte, 0600. Both are
    /// written durably before the new file takes the name, and removed again if the save
    /// fails. [`backups_of`](Options::backups_of) lists the backups, `persist backups` too,
    /// and [`remove`](Options::remove) removes every copy.
    ///
    /// A save reads a file with line breaks (indented, or edited by hand) whole and parses it;
    /// of a compact file it reads the first and last bytes only: damage inside a compact file
    /// that starts and ends as a whole one (a flipped bit) is not seen, and that file is
    /// replaced without a copy. An empty file is replaced without one.
    ///
    /// `false` lets a save destroy such a file: a newer one is kept only as any other version
    /// is (per [`backups`](Options::backups)), a damaged one not at all.
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// std::fs::write(&path, "{\"version\":1,\"data\":{\"th")?; // cut short
    ///
    /// persist::Options::new().save(&Settings { theme: "dark".into() }, &path)?;
    /// let kept: Vec<_> = std::fs::read_dir(dir.path())?
    ///     .map(|entry| entry.unwrap().file_name().into_string().unwrap())
    ///     .filter(|name| name.starts_with("settings.json.corrupt-"))
    ///     .collect();
    /// assert_eq!(kept.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn keep_unreadable(mut self, keep: bool) -> Self {
        self.settings.disk.keep_unreadable = keep;
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
        self.settings.encoding.checksum = on;
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
        self.settings.encoding.pretty = on;
        self
    }

    /// Makes saves write `format` ([`Format::Json`], or `Format::Toml` with the `toml`
    /// feature), whatever the type's `#[persist(format = ...)]` says. Loads need no option:
    /// they tell the formats apart by the file's bytes. A save in TOML over a TOML file keeps
    /// the file's comments, blank lines, key order and quoting (README, "Files people edit").
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Format, Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// # let settings = Settings { theme: "dark".into() };
    /// Options::new().format(Format::Json).save(&settings, "settings.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub const fn format(mut self, format: Format) -> Self {
        self.settings.encoding.format = Some(format);
        self
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
        self.settings.encoding.compression = Some(level);
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
        self.settings.encoding.key = Some(key);
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
        self.settings.disk.retry = Retry {
            attempts: if attempts == 0 { 1 } else { attempts },
            backoff,
        };
        self
    }

    /// Sets when [`Live::update`] saves: [`SavePolicy::Immediate`](crate::SavePolicy::Immediate) (the default) or
    /// [`SavePolicy::Coalesce`](crate::SavePolicy::Coalesce).
    #[cfg(feature = "live")]
    pub const fn save_policy(mut self, policy: crate::SavePolicy) -> Self {
        self.live.policy = policy;
        self
    }

    /// Turns watching the file's directory for changes by other programs on (the default) or
    /// off, for [`Options::live`].
    #[cfg(feature = "live")]
    pub const fn watch(mut self, watch: bool) -> Self {
        self.live.watch = watch;
        self
    }

    /// Makes [`Live`] handles also check the file's metadata every `period` and reload it
    /// when it changed: for file systems without change events (NFS, SMB, some container
    /// mounts). Off by default.
    #[cfg(feature = "live")]
    pub const fn refresh_every(mut self, period: Duration) -> Self {
        self.live.refresh_every = Some(period);
        self
    }

    /// Makes [`Collection`]s opened with these options keep up to `capacity` decoded values in
    /// memory, each for at most `ttl` after it was read (moka's concurrent cache, shared by
    /// the sync and async methods and by clones of the collection). Every write made in this
    /// process on the same store (put, update, delete, batches, migrations, `clear`), through
    /// this collection or through any other handle on it (opened on its own, with or without a
    /// cache), drops the values it touches from every cache on the store before it returns. A
    /// store is the same when the handles' backends have the same root: the directory (by its
    /// canonical path), the database file, the table or the bucket prefix. Writes by other
    /// processes reach the cache through the store's feed (see [`Collection::watch_with`]):
    /// on a local directory a cached value is never staler than the feed's lag (file events,
    /// milliseconds; on a file system without them, a listing every half second), on
    /// PostgreSQL (the table's `NOTIFY`) and on S3 (a listing of the prefix with ETags and
    /// times of last modification every second, less often for a prefix that takes long to
    /// list), and a value the feed may have missed is dropped with every other. A feed that
    /// cannot be had (a server out of connections) is asked for again every second, and the
    /// caches on the store are emptied each time until it comes. On a store without a feed of
    /// its own (redb, which one process holds, or a custom backend), another process's writes
    /// are seen once `ttl` has passed. Only values are kept: a `get` of an absent key asks
    /// the store each time. Hits and misses: [`Collection::cache_stats`].
    #[cfg(feature = "cache")]
    pub const fn cache(mut self, capacity: u64, ttl: std::time::Duration) -> Self {
        self.cache = Some(crate::collection::cache::CacheSettings { capacity, ttl });
        self
    }

    /// The cache settings of collections, if any.
    #[cfg(feature = "collection")]
    fn cache_settings(&self) -> Option<crate::collection::CacheSettings> {
        #[cfg(feature = "cache")]
        return self.cache;
        #[cfg(not(feature = "cache"))]
        None
    }

    /// Loads `path` as `T`, migrating from whatever version the file holds. Never writes,
    /// unless the file is damaged and [`on_corrupt`](Options::on_corrupt) says to fall back.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load`].
    ///
    /// # Examples
    ///
    /// See [`Options`].
    pub fn load<T: Persisted>(&self, path: impl AsRef<Path>) -> Result<T, Error> {
        file::load_reported(&self.settings, path.as_ref()).map(|loaded| loaded.value)
    }

    /// [`load`](Options::load), saying where the value came from: the file as it was, or
    /// (under [`on_corrupt`](Options::on_corrupt)) an earlier copy put in the place of a
    /// damaged file.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// use persist::{LoadOutcome, OnCorrupt, Options};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// let options = Options::new().generations(3).on_corrupt(OnCorrupt::LastGood);
    /// options.save(&Settings { theme: "light".into() }, &path)?;
    /// options.save(&Settings { theme: "dark".into() }, &path)?;
    /// std::fs::write(&path, "{\"version\":1,\"da")?; // damaged
    ///
    /// let loaded = options.load_reported::<Settings>(&path)?;
    /// assert_eq!(loaded.value.theme, "light");
    /// let LoadOutcome::LastGood(fallback) = &loaded.outcome else { panic!() };
    /// println!("{} did not load ({}); kept as {}", path.display(), fallback.error,
    ///     fallback.damaged.display());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_reported<T: Persisted>(&self, path: impl AsRef<Path>) -> Result<Loaded<T>, Error> {
        file::load_reported(&self.settings, path.as_ref())
    }

    /// [`load_or_default`](Options::load_or_default), saying where the value came from: the
    /// file, the default for a missing file, or (under [`on_corrupt`](Options::on_corrupt)) an
    /// earlier copy or the default in the place of a damaged file.
    ///
    /// # Errors
    ///
    /// See [`Persisted::load_or_default`].
    pub fn load_or_default_reported<T: Persisted + Default>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Loaded<T>, Error> {
        file::load_or_default_reported(&self.settings, path.as_ref())
    }

    /// Loads `path` as `T`, or returns `T::default()` if there is no file. Never writes,
    /// unless the file is damaged and [`on_corrupt`](Options::on_corrupt) says to fall back.
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
        file::load_or_default(&self.settings, path.as_ref())
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
        file::save(&self.settings, value, path.as_ref(), AuditOp::Save)
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
        let settings = self.settings.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            file::load_reported(&settings, path).map(|loaded| loaded.value)
        })
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
        let settings = self.settings.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            file::load_or_default(&settings, path)
        })
    }

    /// [`save`](Options::save) of a value the future owns, entirely on persist's worker threads:
    /// serializing streams into the temporary file there, exactly as `save` does, so no thread
    /// of the runtime is held up and no copy of the file is kept in memory. Async calls own
    /// their values, sync ones borrow them (the crate's documentation, "Sync and async
    /// calls"): to keep the value, save a clone, or share it with
    /// [`save_shared_async`](Options::save_shared_async).
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
    /// Options::new().save_async(library, "library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn save_async<T: Persisted + Send + 'static>(
        &self,
        value: T,
        path: impl AsRef<Path>,
    ) -> Pending<()> {
        self.save_in_background::<T, T>(value, path.as_ref())
    }

    /// [`save_async`](Options::save_async) for a value shared through an
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
        let settings = self.settings.clone();
        Pending::new(path.to_owned(), move |path| {
            file::save(&settings, value.borrow(), path, AuditOp::Save)
        })
    }

    /// Read-modify-write under an exclusive lock shared with every other process that updates
    /// the same file: takes the lock (`<file name>.lock` beside the file), loads the value (or
    /// `T::default()` if there is no file), applies `change`, saves, releases the lock, and
    /// returns the saved value. No concurrent update is lost.
    ///
    /// Plain [`load`](Options::load)s need no lock: a save replaces the file in one rename, so a
    /// reader sees the old contents or the new. A plain [`save`](Options::save) does not take the
    /// lock either: mixing it with concurrent updates of the same file can lose those updates.
    ///
    /// The lock is `flock(2)`: advisory, released when the process exits or dies. On NFS, Linux
    /// emulates it with byte-range locks, which work when the server supports NFSv4 or NLM
    /// locking; where a file system has no locks at all, this returns [`Error::Io`] with
    /// [`IoOp::Lock`](crate::IoOp::Lock) and an `Unsupported` source rather than waiting.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] when another process holds the lock longer than
    /// [`lock_timeout`](Options::lock_timeout); every error of
    /// [`load_or_default`](Options::load_or_default) (the file is then not written) and of
    /// [`save`](Options::save).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64 }
    /// let options = Options::new().lock_timeout(Some(std::time::Duration::from_secs(2)));
    /// let stats: Stats = options.update("stats.json", |stats: &mut Stats| stats.launches += 1)?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn update<T: Persisted + Default>(
        &self,
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut T),
    ) -> Result<T, Error> {
        self.update_or(path, T::default, change)
    }

    /// [`update`](Options::update) starting from `initial()` instead of `T::default()` when
    /// there is no file (for types without a `Default`, or whose first value depends on the
    /// situation). `initial` runs under the lock, only when the file is missing.
    ///
    /// # Errors
    ///
    /// See [`update`](Options::update).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64, first_seen: u64 }
    /// let now = 1_700_000_000;
    /// let stats: Stats = Options::new().update_or(
    ///     "stats.json",
    ///     || Stats { launches: 0, first_seen: now },
    ///     |stats| stats.launches += 1,
    /// )?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn update_or<T: Persisted>(
        &self,
        path: impl AsRef<Path>,
        initial: impl FnOnce() -> T,
        change: impl FnOnce(&mut T),
    ) -> Result<T, Error> {
        file::modify(&self.settings, path.as_ref(), initial, |value| {
            change(value);
            Ok::<_, Error>(())
        })
        .map(|(value, ())| value)
    }

    /// [`update`](Options::update) with a change that may fail or decide not to save: when
    /// `change` returns `Err`, nothing is written and the error is returned; when it returns
    /// `Ok(r)`, the value is saved and `r` is returned. The closure's error type is yours; it
    /// must accept persist's [`Error`] too (`From<persist::Error>`, as `anyhow::Error` does, or
    /// a `#[from]` variant of a thiserror enum), which the lock, the load and the save report.
    ///
    /// # Errors
    ///
    /// The closure's error, untouched; the errors of [`update`](Options::update), converted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Wallet { balance: u64 }
    /// #[derive(Debug, thiserror::Error)]
    /// enum PayError {
    ///     #[error("insufficient funds: {0} left")]
    ///     Insufficient(u64),
    ///     #[error(transparent)]
    ///     State(#[from] persist::Error),
    /// }
    ///
    /// let left: u64 = Options::new().try_update("wallet.json", |wallet: &mut Wallet| {
    ///     if wallet.balance < 30 {
    ///         return Err(PayError::Insufficient(wallet.balance)); // nothing is written
    ///     }
    ///     wallet.balance -= 30;
    ///     Ok(wallet.balance)
    /// })?;
    /// # Ok::<(), PayError>(())
    /// ```
    pub fn try_update<T: Persisted + Default, R, E: From<Error>>(
        &self,
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        self.try_update_or(path, T::default, change)
    }

    /// [`try_update`](Options::try_update) starting from `initial()` when there is no file.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Options::try_update).
    pub fn try_update_or<T: Persisted, R, E: From<Error>>(
        &self,
        path: impl AsRef<Path>,
        initial: impl FnOnce() -> T,
        change: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        file::modify(&self.settings, path.as_ref(), initial, change).map(|(_, result)| result)
    }

    /// [`update`](Options::update) on persist's worker threads, so that waiting for the lock
    /// does not block the runtime.
    ///
    /// # Errors
    ///
    /// See [`update`](Options::update).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64 }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let stats: Stats = Options::new()
    ///     .update_async("stats.json", |stats: &mut Stats| stats.launches += 1)
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn update_async<T: Persisted + Default + Send + 'static>(
        &self,
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut T) + Send + 'static,
    ) -> Pending<T> {
        let options = self.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            options.update(path, change)
        })
    }

    /// [`update_or`](Options::update_or) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`update`](Options::update).
    #[cfg(feature = "tokio")]
    pub fn update_or_async<T: Persisted + Send + 'static>(
        &self,
        path: impl AsRef<Path>,
        initial: impl FnOnce() -> T + Send + 'static,
        change: impl FnOnce(&mut T) + Send + 'static,
    ) -> Pending<T> {
        let options = self.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            options.update_or(path, initial, change)
        })
    }

    /// [`try_update`](Options::try_update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Options::try_update).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Queue { jobs: Vec<String> }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let next: Option<String> = Options::new()
    ///     .try_update_async("queue.json", |queue: &mut Queue| Ok::<_, persist::Error>(queue.jobs.pop()))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn try_update_async<T, R, E>(
        &self,
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Pending<R, E>
    where
        T: Persisted + Default + 'static,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.try_update_or_async(path, T::default, change)
    }

    /// [`try_update_or`](Options::try_update_or) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Options::try_update).
    #[cfg(feature = "tokio")]
    pub fn try_update_or_async<T, R, E>(
        &self,
        path: impl AsRef<Path>,
        initial: impl FnOnce() -> T + Send + 'static,
        change: impl FnOnce(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Pending<R, E>
    where
        T: Persisted + 'static,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let options = self.clone();
        Pending::new(path.as_ref().to_owned(), move |path| {
            options.try_update_or(path, initial, change)
        })
    }

    /// Deletes the state file at `path` and everything persist keeps beside it: its backups
    /// (`<name>.v<N>.bak`), its lock file (`<name>.lock`) and temporary files a crashed save
    /// left (`.<name>.<random>.tmp`). Takes the file's lock first, so no
    /// [`update`](Options::update) is half-way; one that was waiting then starts from nothing.
    /// Removing the lock file is what a cleanup must do, and what updates never do: an update
    /// that was already waiting for the removed lock file and one that starts after the removal
    /// (on a new lock file) are not serialized against each other, so remove state files when
    /// nothing else is updating them (at logout, at uninstall).
    /// Then syncs the directory (unless [`Durability::None`]), so the removal survives a power
    /// cut. Returns the paths it removed; a missing file is no error.
    ///
    /// A symbolic link at `path` is removed as a link: the file it points to, which may be in
    /// another directory, and that file's backups are left alone. Anything else at `path` that
    /// is not a regular file (a directory, a FIFO) is refused untouched.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegularFile`] for a directory, FIFO or device at `path`; [`Error::Io`] when an
    /// entry cannot be removed or the directory not synced; the lock's errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let removed = persist::Options::new().remove("session.json")?;
    /// println!("removed {} files", removed.len());
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn remove(&self, path: impl AsRef<Path>) -> Result<Vec<PathBuf>, Error> {
        file::remove_file(&self.settings, path.as_ref())
    }

    /// Deletes the directory `dir` and everything in it (an application's or one user's state
    /// directory, at logout), then syncs its parent (unless [`Durability::None`]). Symbolic
    /// links inside are removed as links and never followed, and no mount inside is crossed,
    /// so nothing outside `dir` is touched; `dir` itself must be a real directory on its
    /// parent's file system, not a link to one nor a mount point. Any depth is removed with a
    /// few descriptors. A missing `dir` is no error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] when `dir` is a symbolic link, not a directory, or a mount point
    /// (nothing is removed), or when a mount is met inside (what it holds stays);
    /// [`Error::Io`] naming the entry that could not be removed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let dirs = persist::AppDirs::new("com", "Example", "Editor")?;
    /// let options = persist::Options::new();
    /// for dir in [dirs.config(), dirs.data(), dirs.state(), dirs.cache()] {
    ///     options.remove_dir(dir)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_dir(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        file::remove_dir(&self.settings, dir.as_ref())
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
        file::backups_of(path.as_ref())
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
        file::restore(&self.settings, path.as_ref(), version)
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
        inspect::inspect::<T>(
            path.as_ref(),
            self.settings.disk.max_size,
            self.settings.encoding.key.as_ref(),
        )
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
        file_info::file_info(
            path.as_ref(),
            self.settings.disk.max_size,
            self.settings.encoding.key.as_ref(),
        )
    }

    /// Repairs the file at `path` if it does not read as a persist file (without its type:
    /// the envelope, the checksum, the compression and encryption layers, as
    /// [`file_info`](Options::file_info) reads it), as [`OnCorrupt::LastGood`] does: the newest
    /// earlier copy that reads (a generation, then a backup) is put in its place, and the
    /// damaged file is kept as `<name>.corrupt-<unix ms>`. Returns
    /// [`LoadOutcome::Intact`] for a file that reads, [`LoadOutcome::LastGood`] for one
    /// repaired. What `persist verify --repair` does.
    ///
    /// # Errors
    ///
    /// The file's error when it is damaged and no copy reads (the file is left as it is),
    /// and every error that is no damage ([`Error::NotFound`], [`Error::KeyRequired`], I/O).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("settings.json");
    /// let options = persist::Options::new().generations(1);
    /// options.save(&Settings { theme: "light".into() }, &path)?;
    /// options.save(&Settings { theme: "dark".into() }, &path)?;
    /// std::fs::write(&path, b"\0\0\0\0")?;
    ///
    /// let outcome = options.repair(&path)?;
    /// assert!(matches!(outcome, persist::LoadOutcome::LastGood(_)));
    /// assert_eq!(options.load::<Settings>(&path)?.theme, "light");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn repair(&self, path: impl AsRef<Path>) -> Result<LoadOutcome, Error> {
        let (max_size, key) = (
            self.settings.disk.max_size,
            self.settings.encoding.key.as_ref(),
        );
        let check =
            |path: &Path, bytes: &[u8]| file_info::describe(path, bytes, max_size, key).map(drop);
        file::recover::repair(&self.settings, path.as_ref(), &check)
    }

    /// Opens the [`Journal`] at `path` with these options: its appends sync per
    /// [`durability`](Options::durability), its records and snapshots are sealed with these
    /// layers ([`checksum`](Options::checksum), [`compress`](Options::compress),
    /// [`encrypt`](Options::encrypt): reading them back needs the same key), its records may be
    /// up to [`max_size`](Options::max_size) bytes, a torn tail is handled per
    /// [`journal_recovery`](Options::journal_recovery), and opening waits up to
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
    ///     .journal::<Event, persist::NoSnapshot>("events.log")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn journal<E: Persisted, S: Persisted>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Journal<E, S>, Error> {
        Journal::open_with(&self.settings, path.as_ref())
    }

    /// The records of the journal at `path` read without their type (their version and JSON
    /// text), for tools: no lock is taken and nothing is changed, so a writer may have it open.
    /// Records sealed with encryption are opened with these options' key.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::NotRegularFile`], [`Error::Corrupt`] for a file that is
    /// not a journal, [`Error::DamagedJournal`] for damage before the last flush,
    /// [`Error::Io`]. Items: [`Error::KeyRequired`] for an encrypted record when these
    /// options have no key ([`Error::Decrypt`] with the wrong one); the records after it are
    /// still read.
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
        JournalRecords::open(&self.settings, path.as_ref())
    }

    /// Follows the journal at `path` from record `from` on, as another process appends to it:
    /// a blocking iterator of `(index, value)` that yields every record the journal holds from
    /// `from`, then waits for the next ones and yields each soon after its append returned
    /// (woken by file events with the `live` feature, within 10 ms by polling otherwise). A
    /// checkpoint replaces the log: the reader finishes the old one, then goes on by index in
    /// the new one, never repeating or skipping a record. No lock is taken and nothing is
    /// changed; the journal may not exist yet. Records are opened with these options' key
    /// and migrated (upcasts included) to `E`. For async code, [`Follow::into_async`].
    ///
    /// Start from the index [`Journal::len`] had when you recovered (or 0): records before
    /// the last checkpoint are in its snapshot only, and asking for them is
    /// [`Error::Checkpointed`]. After a [`Journal::rewrite`] that changed the number of
    /// records, start again from a recovery.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] / [`Error::Unsupported`] when a file at `path` is not a journal this
    /// version reads, [`Error::NotRegularFile`]. Items: as the iterator of [`Follow`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Event { id: u64 }
    /// for record in persist::Options::new().journal_follow::<Event>("events.log", 0)? {
    ///     let (index, event) = record?;
    ///     println!("#{index}: event {}", event.id);
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn journal_follow<E: Persisted>(
        &self,
        path: impl AsRef<Path>,
        from: u64,
    ) -> Result<Follow<E>, Error> {
        Follow::typed(&self.settings, path.as_ref(), from)
    }

    /// [`journal_follow`](Options::journal_follow) without the records' type: each record as
    /// [`JournalRecords`] gives it (its version and JSON text), for tools
    /// (`persist journal --follow`).
    ///
    /// # Errors
    ///
    /// As [`journal_follow`](Options::journal_follow).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// for record in persist::Options::new().journal_follow_records("events.log", 0)? {
    ///     let (_, record) = record?;
    ///     println!("#{} (version {}): {}", record.index, record.version, record.data);
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn journal_follow_records(
        &self,
        path: impl AsRef<Path>,
        from: u64,
    ) -> Result<Follow<RawRecord>, Error> {
        Follow::raw(&self.settings, path.as_ref(), from)
    }

    /// A [`Transaction`] on the files under `root` (created if missing) with these options
    /// (layers, checksum, durability, backups, lock timeout); recovers a transaction a crash
    /// left unfinished first.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the root cannot be created, [`Error::LockTimeout`] while another
    /// transaction on the root holds its lock longer than the lock timeout, and the errors of
    /// [`Transaction::recover`](crate::Transaction::recover).
    pub fn transaction(&self, root: impl AsRef<Path>) -> Result<Transaction, Error> {
        Transaction::open_with(&self.settings, root.as_ref())
    }

    /// The [`Collection`] in the directory `dir` (created if missing), whose entries are
    /// written with these options: durability, backups, lock timeout, size cap, and the
    /// layers (checksum, compression, encryption).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be created, [`Error::NotRegularFile`] if
    /// something else is there.
    #[cfg(feature = "collection")]
    pub fn collection<T: Persisted + Clone + Send + Sync + 'static>(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<Collection<T>, Error> {
        Collection::open_with(&self.settings, self.cache_settings(), dir.as_ref())
    }

    /// The [`Collection`] in the PostgreSQL table `table` (created if missing, upgraded if of
    /// an earlier layout) of the database `config` describes (`host=db user=app`, or a
    /// `postgresql://` URL), whose entries are written with these options (the layers,
    /// checksum, compression, encryption; the size cap; the cache; the audit log); see
    /// [`backend::Postgres`](crate::backend::Postgres) for the table. The connection is made on
    /// persist's worker threads. [`Collection::postgres`] is this with the default options.
    ///
    /// # Errors
    ///
    /// See [`Postgres::connect`](crate::backend::Postgres::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct User { name: String }
    /// # async fn open() -> Result<(), persist::Error> {
    /// use persist::{Collection, Options};
    ///
    /// let users: Collection<User> = Options::new()
    ///     .checksum(true)
    ///     .postgres("host=db user=app", "users")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres<T: Persisted + Clone + Send + Sync + 'static>(
        &self,
        config: impl Into<String>,
        table: impl Into<String>,
    ) -> crate::Pending<Collection<T>> {
        Collection::postgres_with(
            self.settings.clone(),
            self.cache_settings(),
            config.into(),
            table.into(),
        )
    }

    /// The [`Collection`] in the redb database file `path` (created if missing, mode 0600),
    /// whose entries are written with these options: the durability of each commit
    /// ([`Durability::None`] commits without a sync), the lock timeout (how long the open
    /// waits for another process to close the database), the layers (checksum, compression,
    /// encryption), the size cap, the cache and the audit log; see
    /// [`backend::Redb`](crate::backend::Redb). [`Collection::redb`] is this with the default
    /// options.
    ///
    /// # Errors
    ///
    /// See [`Redb::open`](crate::backend::Redb::open).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct User { name: String }
    /// # fn open() -> Result<(), persist::Error> {
    /// use persist::{Collection, Options};
    ///
    /// let users: Collection<User> = Options::new().checksum(true).redb("users.redb")?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redb")]
    pub fn redb<T: Persisted + Clone + Send + Sync + 'static>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Collection<T>, Error> {
        Collection::redb_with(&self.settings, self.cache_settings(), path.as_ref())
    }

    /// The [`Collection`] in the objects under `prefix` (such as `users/`) of `store` (S3 or
    /// any `object_store` store), whose entries are written with these options (the layers,
    /// checksum, compression, encryption; the size cap; the cache; the audit log); see
    /// [`backend::S3`](crate::backend::S3) for the object names. The store is listed once
    /// first ([`S3::check`](crate::backend::S3::check)), so that a missing bucket shows here.
    /// [`Collection::s3`] is this with the default options.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] with [`RemoteOp::Setup`](crate::RemoteOp::Setup) when the store
    /// cannot be listed (a missing bucket, refused credentials, no connection), and the errors
    /// of [`S3::new`](crate::backend::S3::new).
    #[cfg(feature = "s3")]
    pub fn s3<T: Persisted + Clone + Send + Sync + 'static>(
        &self,
        store: std::sync::Arc<dyn crate::backend::object_store::ObjectStore>,
        prefix: impl Into<String>,
    ) -> crate::Pending<Collection<T>> {
        Collection::s3_with(
            self.settings.clone(),
            self.cache_settings(),
            store,
            prefix.into(),
        )
    }

    /// Opens `path` as a [`Live`] value: loads it (or `T::default()` if there is no file,
    /// which is not written until the first update) through the migration chain, and starts
    /// watching it.
    ///
    /// # Errors
    ///
    /// Every error of [`load_or_default`](Options::load_or_default) (the file is left alone),
    /// and [`Error::Io`] with [`IoOp::Watch`](crate::IoOp::Watch) when the directory cannot
    /// be watched (the system's limit on watches, say), or with
    /// [`IoOp::BlockingTask`](crate::IoOp::BlockingTask) when no thread could be started.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::{Options, Persisted};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let live = Options::new()
    ///     .refresh_every(std::time::Duration::from_secs(2))
    ///     .live::<Settings>("/mnt/nfs/settings.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    #[cfg(feature = "live")]
    pub fn live<T: Persisted + Default + Send + Sync + 'static>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Live<T>, Error> {
        crate::live::open(self.settings.clone(), self.live, path.as_ref())
    }
}

#[cfg(feature = "collection")]
impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// A collection on `backend`, whose entries are encoded with `options` (checksum,
    /// compression, encryption, size cap) and cached per [`Options::cache`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct User { name: String }
    /// use std::sync::Arc;
    /// use persist::{Collection, Options, backend::Memory};
    ///
    /// let users: Collection<User> =
    ///     Collection::with_backend(Arc::new(Memory::new()), Options::new().checksum(true));
    /// users.put("ada", &User { name: "Ada".into() })?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn with_backend(
        backend: std::sync::Arc<dyn crate::backend::Backend>,
        options: Options,
    ) -> Self {
        let cache = options.cache_settings();
        Collection::on(backend, options.settings, cache)
    }
}
