//! [`Error`], the one error type of the crate, and the small enums that describe it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The error a migration step may return: whatever the user's `TryFrom` impl produced.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong loading or saving a state file.
///
/// Every variant names the file, except [`Error::Setup`]: an error of the application's setup
/// (its directories, its key), which `?` converts into this type. After any error the file on
/// disk is exactly as it was: persist never overwrites a file it could not read, and a failed
/// save leaves the previous file in place.
///
/// # Examples
///
/// ```no_run
/// # use persist::{Error, Persisted};
/// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
/// # #[persist(version = 1)]
/// # struct Settings { theme: String }
/// match Settings::load("settings.json") {
///     Ok(settings) => println!("theme: {}", settings.theme),
///     Err(Error::NotFound { .. }) => println!("first run"),
///     Err(Error::FutureVersion { found, supported, .. }) => {
///         eprintln!("written by a newer release (format {found}, we read up to {supported})")
///     }
///     Err(other) => eprintln!("{other}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// There is no file at the path (or one of its parent directories is missing).
    NotFound {
        /// The file that was looked for.
        path: PathBuf,
        /// The error the operating system returned.
        source: io::Error,
    },

    /// An operating-system call failed.
    Io {
        /// The state file being loaded or saved.
        path: PathBuf,
        /// The step that failed.
        op: IoOp,
        /// The error the operating system returned.
        source: io::Error,
    },

    /// Something other than a regular file (a directory, FIFO, device or socket) is at the path.
    /// It was neither read nor replaced.
    NotRegularFile {
        /// The path that holds the non-file.
        path: PathBuf,
        /// What was found there.
        kind: FileKind,
    },

    /// The file is larger than the load size cap ([`Options::max_size`](crate::Options::max_size)).
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The size seen (at least this many bytes).
        size: u64,
        /// The cap in force.
        limit: u64,
    },

    /// The file is not a valid state file: broken JSON, a malformed envelope, or data that does
    /// not match the struct of its version. Values from the file are not repeated in the message.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error, 0 when unknown.
        line: usize,
        /// 1-based column of the error, 0 when unknown.
        column: usize,
        /// Where in the document the error is, such as `data.servers[2].port`, when known.
        field: Option<String>,
        /// What is wrong, with values from the file redacted.
        reason: String,
    },

    /// The file was written by a newer version of the program. It is never overwritten.
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// The version stored in the file.
        found: u64,
        /// The newest version this program knows.
        supported: u32,
    },

    /// A save over a file of a newer version was refused: the options read such files
    /// read-only ([`OnNewer::ReadOnly`](crate::OnNewer::ReadOnly)), or their data no longer
    /// reads as this program's version, so no member of it could be kept
    /// ([`OnNewer::KeepUnknown`](crate::OnNewer::KeepUnknown)). The file is left as it was.
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// The version stored in the file.
        found: u64,
        /// The newest version this program knows.
        supported: u32,
    },

    /// A save at an older version ([`Options::save_as_version`](crate::Options::save_as_version))
    /// could not take the value down: the step from `from` to `to` failed or is not declared
    /// (`#[persist(downgrade)]`), or the version asked for is not an older version of the
    /// chain (`from` is then the value's version, `to` the one asked for). Nothing was written.
    Downgrade {
        /// The file.
        path: PathBuf,
        /// The version the failing step starts from.
        from: u32,
        /// The version it converts to.
        to: u32,
        /// What the step (or the walk) reported.
        source: BoxError,
    },

    /// The stored version is older than the current one but is not in the migration chain (or
    /// is 0).
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version stored in the file.
        found: u64,
        /// The versions of the chain, oldest first.
        known: Vec<u32>,
    },

    /// A migration step (a user's `TryFrom` impl) refused the stored data, or the type's
    /// `#[persist(validate = ...)]` function refused the value the last step made (`from` is
    /// then the file's version, `to` this program's; equal for a file of this version).
    Migration {
        /// The file.
        path: PathBuf,
        /// The version the failing step started from.
        from: u32,
        /// The version the failing step converts to.
        to: u32,
        /// The error the migration returned.
        source: BoxError,
    },

    /// Another process held the lock of the file longer than
    /// [`Options::lock_timeout`](crate::Options::lock_timeout) allows. Unlike the other lock
    /// errors (see [`IoOp::OpenLock`]), `path` is the state file and the lock file is in
    /// `lock_path`.
    LockTimeout {
        /// The state file being updated.
        path: PathBuf,
        /// The lock file beside it.
        lock_path: PathBuf,
        /// How long the call waited.
        waited: std::time::Duration,
    },

    /// This process already has the [`Journal`](crate::Journal) or the
    /// [`Transaction`](crate::Transaction) root at `path` open (one that was not dropped):
    /// a second one in the same process is refused at once rather than waiting for the first.
    /// Use the first, or drop it before opening again.
    AlreadyOpen {
        /// The journal or the transaction root.
        path: PathBuf,
        /// The lock file this process holds for it.
        lock_path: PathBuf,
    },

    /// Another process holds the [`InstanceLock`](crate::InstanceLock) of the directory.
    AlreadyRunning {
        /// The lock file (`instance.lock` in the directory).
        path: PathBuf,
        /// The other process's id, as it wrote it into the lock file (`None` if it had not yet).
        pid: Option<u32>,
    },

    /// A [`Journal`](crate::Journal) is damaged: a record's header or data does not match its
    /// checksum, and a later flush follows it (or the mark its writer leaves when it closes
    /// the journal), so it was synced and cannot be a torn append (which an open cuts off and
    /// reports). Also: a torn tail under
    /// [`JournalRecovery::AbsoluteConsistency`](crate::JournalRecovery::AbsoluteConsistency),
    /// a snapshot beside the log that claims records the log never had, and a record over the
    /// size cap. Nothing was changed.
    DamagedJournal {
        /// The journal file.
        path: PathBuf,
        /// Where the damaged record starts, in bytes from the start of the file.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A reader following a [`Journal`](crate::Journal) ([`Options::journal_follow`](crate::Options::journal_follow))
    /// found the log replaced by a checkpoint before it had read the records `from..to`:
    /// they are in the checkpoint's snapshot only. The reader goes on at record `to`.
    Checkpointed {
        /// The journal.
        path: PathBuf,
        /// The first record the reader missed.
        from: u64,
        /// The first record it can read (the new log's first).
        to: u64,
    },

    /// Changes of a [`Live`](crate::Live) handle could not be saved to the file when its last
    /// handle was dropped (the file does not load, the disk is full, the path no longer names
    /// a file): they were kept beside it as `kept` (`<name>.unsaved-<unix ms>`), or, when that
    /// could not be written either, lost. Delivered to
    /// [`Live::on_change`](crate::Live::on_change) callbacks; no operation returns it.
    Unsaved {
        /// The file.
        path: PathBuf,
        /// Where the value was kept; `None`: it is lost.
        kept: Option<PathBuf>,
        /// Why the file (and the copy) could not be written.
        reason: String,
    },

    /// A reader following a [`Journal`](crate::Journal) ([`Options::journal_follow`](crate::Options::journal_follow))
    /// delivered records `to..from` that the journal no longer holds: their writer cut them
    /// off because their write or sync failed (they were never acknowledged), or the journal
    /// was deleted and created again with new records under those numbers. The reader goes
    /// on at record `to`.
    Rewound {
        /// The journal.
        path: PathBuf,
        /// The record after the last one the reader delivered.
        from: u64,
        /// The next record it reads.
        to: u64,
    },

    /// A change made through a [`Live`](crate::Live) handle with
    /// [`SavePolicy::Coalesce`](crate::SavePolicy::Coalesce) waited to be saved while another
    /// program changed the file; applied again to that program's value, its closure panicked
    /// (the panic's message is the reason), so it was dropped: the file holds the other
    /// program's value with this handle's other pending changes. Delivered to
    /// [`Live::on_change`](crate::Live::on_change) callbacks and returned by the next
    /// [`Live::flush`](crate::Live::flush).
    Conflict {
        /// The file.
        path: PathBuf,
        /// Why the change failed on the newer value.
        reason: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },

    /// A [`Collection`](crate::Collection) key is not valid: empty, or longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES). Nothing was read or written.
    InvalidKey {
        /// The collection.
        path: PathBuf,
        /// What is wrong with the key.
        reason: String,
    },

    /// A [`Transaction`](crate::Transaction) path is absolute, leaves the root (`..`), names
    /// no file, or is the transaction's own. Nothing was staged.
    InvalidPath {
        /// The path, joined to the root.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A compare-and-swap kept failing: other writers changed the entry before each of
    /// `attempts` writes, for the whole [`lock_timeout`](crate::Options::lock_timeout) (a
    /// [`Collection::update`](crate::Collection::update) on a backend without locks). Nothing
    /// was written.
    Contended {
        /// The entry.
        path: PathBuf,
        /// How many writes were tried.
        attempts: u32,
    },

    /// A [`Transaction`](crate::Transaction) is committed, but `waiting` of its files could
    /// not be put in place yet: another writer held a file's lock past
    /// [`lock_timeout`](crate::Options::lock_timeout) (`source`). The other files are in
    /// place; the next [`Transaction::open`](crate::Transaction::open) or
    /// [`Transaction::recover`](crate::Transaction::recover) on the root puts the waiting ones in place too. Transient:
    /// recovering again is the remedy.
    Committed {
        /// The first file still waiting.
        path: PathBuf,
        /// How many files wait.
        waiting: usize,
        /// Why the first one waits.
        source: Box<Error>,
    },

    /// The operation on `path` succeeded (the file is written, replaced or removed), but its
    /// record could not be appended to the [audit log](crate::Options::audit). Retrying a save
    /// is harmless; retrying an [`update`](crate::Options::update) applies its change again.
    Audit {
        /// The file the operation was about.
        path: PathBuf,
        /// The audit log.
        log: PathBuf,
        /// Why the record could not be appended.
        source: Box<Error>,
    },

    /// A remote store (a [`Collection`](crate::Collection) on PostgreSQL or S3) failed: the
    /// server could not be reached, refused the request, or answered with an error.
    Remote {
        /// The entry, as its backend names it
        /// ([`Backend::locate`](crate::backend::Backend::locate)), or the collection.
        path: PathBuf,
        /// What was asked of the server.
        op: RemoteOp,
        /// The server: `host:port` of a database, the bucket of an object store.
        server: String,
        /// Whether the failure may go away by itself (a connection lost or refused, a time-out,
        /// a server shutting down or overloaded): [`Error::is_transient`].
        transient: bool,
        /// The client library's error, with its causes.
        source: BoxError,
    },

    /// serde could not serialize the value (for instance a map with non-string keys).
    /// Nothing was written.
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// Where in the document the value is that could not be written, such as
        /// `data.samples[3]`, when known.
        field: Option<String>,
        /// The error serde_json returned.
        source: serde_json::Error,
    },

    /// Compressing or encrypting the file before writing it failed (the system's random
    /// source, the compressor, the key derivation). Nothing was written.
    Seal {
        /// The file that was to be written.
        path: PathBuf,
        /// What failed.
        source: SealError,
    },

    /// The file is framed in a way this build cannot read: a newer frame format or layer, or a
    /// layer whose cargo feature (`zstd`, `encryption`) is off. The file is left as it is.
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported, and what to do.
        reason: String,
    },

    /// The file is encrypted and the load was given no key
    /// ([`Options::encrypt`](crate::Options)). The file is left as it is.
    KeyRequired {
        /// The file.
        path: PathBuf,
    },

    /// The file did not decrypt: the key is wrong, or the file was changed after it was
    /// written (the two cannot be told apart, by design of authenticated encryption). Nothing
    /// of the file's content was used, and the file is left as it is.
    Decrypt {
        /// The file.
        path: PathBuf,
    },

    /// One of persist's other error types, converted by `?` in a function that returns
    /// `persist::Error` (the `From` impls below): what an application needs before it loads or
    /// saves a file could not be had ([`AppDirs::new`](crate::AppDirs::new) found no home
    /// directory: [`AppDirsError`](crate::AppDirsError); a key could not be made from its text
    /// or environment variable: `persist::KeyError`, feature `encryption`), a value was refused
    /// by its validation ([`ValidationError`]), sealing failed outside a file operation
    /// ([`SealError`]), or the migration kit could not trace a shape or write a fixture
    /// (`testing::ShapeError`, `testing::FixtureError`, feature `testing`). No operation of
    /// persist returns it. It names no file: [`path`](Error::path) is empty, and the message is
    /// the converted error's.
    Setup {
        /// The converted error, to match with `source.downcast_ref::<persist::AppDirsError>()`
        /// (or the type it was).
        source: BoxError,
    },
}

/// The state the file was left in, said the same way by every message.
const LEFT_AS_IT_WAS: &str = "the file was left as it was";

impl Error {
    /// The message without what it says of the file's fate ("the file was left as it was"):
    /// for reports of what was done with it afterwards (a recovery put a copy in its place).
    pub(crate) fn reason(&self) -> String {
        self.to_string()
            .replace(&format!("; {LEFT_AS_IT_WAS}"), "")
            .replace(&format!(" ({LEFT_AS_IT_WAS})"), "")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // No file to name: the converted error's message, as it is.
            Error::Setup { .. } => {}
            _ => write!(f, "{}: ", self.path().display())?,
        }
        match self {
            Error::NotFound { .. } => f.write_str("no such file"),
            Error::Io { op, source, .. } => write!(f, "could not {op}: {source}"),
            Error::NotRegularFile { kind, .. } => write!(
                f,
                "is a {kind}, not a regular file; persist only reads and replaces regular \
                 files, so it was left alone"
            ),
            Error::TooLarge { size, limit, .. } => write!(
                f,
                "file is larger than the {limit}-byte limit ({size} bytes or more); raise the \
                 limit with Options::max_size if the file is expected to be this large"
            ),
            Error::Corrupt {
                line,
                column,
                field,
                reason,
                ..
            } => {
                let position = Position {
                    line: *line,
                    column: *column,
                    field: field.as_deref(),
                };
                write!(f, "corrupt{position}: {reason}; {LEFT_AS_IT_WAS}")
            }
            Error::FutureVersion {
                found, supported, ..
            } => write!(
                f,
                "saved at schema version {found}, but this program reads versions up to \
                 {supported}; upgrade the program to read it ({LEFT_AS_IT_WAS})"
            ),
            Error::ReadOnly {
                found, supported, ..
            } => write!(
                f,
                "holds schema version {found}, newer than this program's {supported}, and is not \
                 saved over: Options::on_newer(OnNewer::ReadOnly) refuses every save over a newer \
                 file, and OnNewer::KeepUnknown one whose data this version cannot read (its \
                 members could not be kept); KeepUnknown writes a readable one back with the \
                 members this program does not know ({LEFT_AS_IT_WAS})"
            ),
            Error::Downgrade {
                from, to, source, ..
            } => write!(
                f,
                "cannot be written at the older version asked for: the step down from version \
                 {from} to version {to} failed: {source}; nothing was written"
            ),
            Error::UnknownVersion { found, known, .. } => write!(
                f,
                "saved at schema version {found}, which is not in this program's migration \
                 chain (known versions: {}); {LEFT_AS_IT_WAS}",
                DisplayList(known)
            ),
            Error::Migration {
                from, to, source, ..
            } if source.is::<ValidationError>() => match from == to {
                true => write!(
                    f,
                    "the value of version {to} was {source}; {LEFT_AS_IT_WAS}"
                ),
                false => write!(
                    f,
                    "the value migrated from version {from} to version {to} was {source}; \
                     {LEFT_AS_IT_WAS}"
                ),
            },
            Error::Migration {
                from, to, source, ..
            } => write!(
                f,
                "migration from version {from} to version {to} failed: {source}; \
                 {LEFT_AS_IT_WAS}"
            ),
            Error::LockTimeout {
                lock_path, waited, ..
            } => write!(
                f,
                "gave up waiting for the lock {} after {waited:.1?}; another process (or another \
                 thread of this one) holds it (raise Options::lock_timeout, or find what holds \
                 the lock)",
                lock_path.display()
            ),
            Error::AlreadyOpen { lock_path, .. } => write!(
                f,
                "is already open in this process (it holds the lock {}): use the journal or \
                 transaction already open, or drop it before opening it again",
                lock_path.display()
            ),
            Error::Checkpointed { from, to, .. } => write!(
                f,
                "records {from} to {} of the journal were covered by a checkpoint before they \
                 were read: they are in its snapshot only; reading goes on at record {to}",
                to.saturating_sub(1)
            ),
            Error::Unsaved {
                kept: Some(kept),
                reason,
                ..
            } => write!(
                f,
                "pending changes could not be saved to the file ({reason}); they were kept \
                 beside it as {}",
                kept.display()
            ),
            Error::Unsaved { reason, .. } => write!(
                f,
                "pending changes could not be saved, neither to the file nor beside it \
                 ({reason}): they are lost"
            ),
            Error::Rewound { from, to, .. } => write!(
                f,
                "records {to} to {} this reader delivered are no longer in the journal (their \
                 append failed and was cut off, or the journal was created again); reading goes \
                 on at record {to}",
                from.saturating_sub(1)
            ),
            Error::AlreadyRunning { pid, .. } => match pid {
                Some(pid) => write!(f, "another instance is running (process {pid})"),
                None => f.write_str("another instance is running"),
            },
            Error::DamagedJournal { offset, reason, .. } => write!(
                f,
                "journal damaged at byte {offset}: {reason}; nothing was cut off and \
                 {LEFT_AS_IT_WAS}"
            ),
            Error::Conflict { reason, .. } => write!(
                f,
                "another program changed the file while a change of this process waited to be \
                 saved, and that change failed on the other program's value ({reason}); it was \
                 dropped, and the other program's value was kept with this process's other \
                 changes"
            ),
            Error::InvalidKey { reason, .. } => write!(f, "invalid key: {reason}"),
            Error::InvalidPath { reason, .. } => write!(f, "invalid path: {reason}"),
            Error::Contended { attempts, .. } => write!(
                f,
                "other writers changed the entry before each of {attempts} attempts to write \
                 it; nothing was written"
            ),
            Error::Committed {
                waiting, source, ..
            } => write!(
                f,
                "the transaction is committed, but {waiting} of its files wait to be put in \
                 place ({source}); the next Transaction::open or persist::recover on the root \
                 finishes it"
            ),
            Error::Audit { log, source, .. } => write!(
                f,
                "the operation succeeded, but its record could not be appended to the audit \
                 log {}: {source}",
                log.display()
            ),
            Error::Remote {
                op, server, source, ..
            } => {
                // The causes too (the OS error of a refused connection), each once: some
                // clients repeat their cause in their own message.
                let mut message = source.to_string();
                let mut cause = source.source();
                while let Some(error) = cause {
                    let text = error.to_string();
                    if !message.contains(&text) {
                        message = format!("{message}: {text}");
                    }
                    cause = error.source();
                }
                write!(f, "could not {op} {server}: {message}")
            }
            Error::Serialize { field, source, .. } => {
                f.write_str("could not serialize the value")?;
                if let Some(field) = field {
                    write!(f, " at `{field}`")?;
                }
                write!(f, ": {source}; nothing was written and {LEFT_AS_IT_WAS}")
            }
            Error::Seal { source, .. } => write!(
                f,
                "could not compress or encrypt the file: {source}; nothing was written and \
                 {LEFT_AS_IT_WAS}"
            ),
            Error::Unsupported { reason, .. } => {
                write!(f, "cannot read this file: {reason}; {LEFT_AS_IT_WAS}")
            }
            Error::KeyRequired { .. } => write!(
                f,
                "the file is encrypted and no key was given; {LEFT_AS_IT_WAS}"
            ),
            Error::Decrypt { .. } => write!(
                f,
                "could not decrypt: wrong key, or the file was changed after it was written; \
                 {LEFT_AS_IT_WAS}"
            ),
            Error::Setup { source } => write!(f, "{source}"),
        }
    }
}

/// Each message is complete: it includes the operating system's, serde's or the migration's own
/// message. So that error-chain reporters (anyhow's `{:#}`, `tracing`'s error fields) do not show
/// it twice, `source()` returns nothing; the underlying error is the variant's `source` field.
impl std::error::Error for Error {}

/// `?` on [`AppDirs::new`](crate::AppDirs::new) in a function that returns `persist::Error`:
/// the error becomes [`Error::Setup`], whose `source` is the `AppDirsError` itself (nothing of
/// it is lost; the message is the same).
impl From<crate::AppDirsError> for Error {
    fn from(error: crate::AppDirsError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// `?` on [`Key::from_hex`](crate::Key::from_hex) or [`Key::from_env`](crate::Key::from_env) in
/// a function that returns `persist::Error`: the error becomes [`Error::Setup`], whose `source`
/// is the `KeyError` itself (nothing of it is lost; the message is the same, and never holds
/// the secret).
#[cfg(feature = "encryption")]
impl From<crate::KeyError> for Error {
    fn from(error: crate::KeyError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// `?` on a [`ValidationError`] (a `validate` function's refusal, reused by the application)
/// in a function that returns `persist::Error`: [`Error::Setup`], its `source` the error
/// itself.
impl From<ValidationError> for Error {
    fn from(error: ValidationError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// `?` on a [`SealError`] in a function that returns `persist::Error`: [`Error::Setup`], its
/// `source` the error itself. (Persist's own operations report one as [`Error::Seal`], with the
/// file.)
impl From<SealError> for Error {
    fn from(error: SealError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// `?` on the migration kit's [`ShapeError`](crate::testing::ShapeError) in a function that
/// returns `persist::Error`: [`Error::Setup`], its `source` the error itself.
#[cfg(feature = "testing")]
impl From<crate::testing::ShapeError> for Error {
    fn from(error: crate::testing::ShapeError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// `?` on the migration kit's [`FixtureError`](crate::testing::FixtureError) in a function that
/// returns `persist::Error`: [`Error::Setup`], its `source` the error itself.
#[cfg(feature = "testing")]
impl From<crate::testing::FixtureError> for Error {
    fn from(error: crate::testing::FixtureError) -> Error {
        Error::Setup {
            source: Box::new(error),
        }
    }
}

/// The `source` of an [`Error::Migration`] when the loaded value was refused by the type's
/// `#[persist(validate = ...)]` function rather than by a migration step.
///
/// ```
/// # fn report(error: &persist::Error) {
/// if let persist::Error::Migration { source, .. } = error
///     && let Some(refused) = source.downcast_ref::<persist::ValidationError>()
/// {
///     eprintln!("the file holds a value this program refuses: {}", refused.reason);
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("refused by its validation: {reason}")]
#[non_exhaustive]
pub struct ValidationError {
    /// What the `validate` function returned (its message is part of this error's).
    pub reason: BoxError,
}

/// Why compressing or encrypting a file failed ([`Error::Seal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The system's random source (for a nonce or a salt) failed.
    #[error("the system's random source failed: {0}")]
    Random(io::Error),
    /// zstd failed.
    #[error("zstd failed: {0}")]
    Compress(io::Error),
    /// Argon2id refused to derive the key from the passphrase.
    #[error("the key derivation failed: {0}")]
    KeyDerivation(String),
    /// The payload is larger than XChaCha20-Poly1305 can encrypt in one piece.
    #[error("the data is too large to encrypt in one piece")]
    TooLarge,
}

/// An optional layer of the file format, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(any(feature = "zstd", feature = "encryption"), allow(dead_code))]
pub(crate) enum Layer {
    Zstd,
    Encryption,
}

#[cfg_attr(any(feature = "zstd", feature = "encryption"), allow(dead_code))]
impl Layer {
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Layer::Zstd => "zstd",
            Layer::Encryption => "encryption",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Zstd => "compressed with zstd",
            Layer::Encryption => "encrypted",
        })
    }
}

impl Error {
    /// The state file the error is about; empty for [`Error::Setup`], which is about none.
    ///
    /// # Examples
    ///
    /// ```
    /// # use persist::Persisted;
    /// # #[derive(Debug, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let error = Settings::load("/nonexistent/settings.json").unwrap_err();
    /// assert_eq!(error.path(), std::path::Path::new("/nonexistent/settings.json"));
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            Error::NotFound { path, .. }
            | Error::Io { path, .. }
            | Error::NotRegularFile { path, .. }
            | Error::TooLarge { path, .. }
            | Error::Corrupt { path, .. }
            | Error::FutureVersion { path, .. }
            | Error::UnknownVersion { path, .. }
            | Error::ReadOnly { path, .. }
            | Error::Downgrade { path, .. }
            | Error::Migration { path, .. }
            | Error::LockTimeout { path, .. }
            | Error::AlreadyOpen { path, .. }
            | Error::AlreadyRunning { path, .. }
            | Error::Checkpointed { path, .. }
            | Error::Rewound { path, .. }
            | Error::Unsaved { path, .. }
            | Error::DamagedJournal { path, .. }
            | Error::Conflict { path, .. }
            | Error::InvalidKey { path, .. }
            | Error::InvalidPath { path, .. }
            | Error::Contended { path, .. }
            | Error::Committed { path, .. }
            | Error::Audit { path, .. }
            | Error::Remote { path, .. }
            | Error::Serialize { path, .. }
            | Error::Seal { path, .. }
            | Error::Unsupported { path, .. }
            | Error::KeyRequired { path }
            | Error::Decrypt { path } => path,
            Error::Setup { .. } => Path::new(""),
        }
    }
}

/// What was asked of a remote store when an [`Error::Remote`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteOp {
    /// Connecting to the server.
    Connect,
    /// Creating the table or checking the bucket.
    Setup,
    /// Reading an entry.
    Read,
    /// Writing an entry (or a batch).
    Write,
    /// Deleting an entry (or all of them).
    Delete,
    /// Listing the entries.
    List,
    /// Listening for changes of the entries (a collection's
    /// [`watch`](crate::Collection::watch)).
    Watch,
}

impl fmt::Display for RemoteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteOp::Connect => "connect to",
            RemoteOp::Setup => "set up the collection on",
            RemoteOp::Read => "read the entry from",
            RemoteOp::Write => "write the entry to",
            RemoteOp::Delete => "delete from",
            RemoteOp::List => "list the entries on",
            RemoteOp::Watch => "listen for changes on",
        })
    }
}

/// What kind of failure an [`Error`] is ([`Error::kind`]): for matching without the fields,
/// for metrics (its [`as_str`](ErrorKind::as_str) is the `outcome` label), and for
/// [`is_transient`](ErrorKind::is_transient), which decides what [`Options::retry`] retries.
///
/// [`Options::retry`]: crate::Options::retry
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::Io`] that a retry cannot change (a full or read-only disk, permissions, EIO).
    Io,
    /// [`Error::Io`] that may go away by itself: an interrupted or busy system call (EINTR,
    /// EAGAIN, EBUSY, ETXTBSY), a stale NFS handle (ESTALE), a time-out.
    Busy,
    /// [`Error::NotRegularFile`].
    NotRegularFile,
    /// [`Error::TooLarge`].
    TooLarge,
    /// [`Error::Corrupt`].
    Corrupt,
    /// [`Error::FutureVersion`].
    FutureVersion,
    /// [`Error::UnknownVersion`].
    UnknownVersion,
    /// [`Error::ReadOnly`].
    ReadOnly,
    /// [`Error::Downgrade`].
    Downgrade,
    /// [`Error::Migration`].
    Migration,
    /// [`Error::LockTimeout`].
    LockTimeout,
    /// [`Error::AlreadyOpen`].
    AlreadyOpen,
    /// [`Error::AlreadyRunning`].
    AlreadyRunning,
    /// [`Error::Checkpointed`].
    Checkpointed,
    /// [`Error::Rewound`].
    Rewound,
    /// [`Error::Unsaved`].
    Unsaved,
    /// [`Error::DamagedJournal`].
    DamagedJournal,
    /// [`Error::Conflict`].
    Conflict,
    /// [`Error::InvalidKey`].
    InvalidKey,
    /// [`Error::InvalidPath`].
    InvalidPath,
    /// [`Error::Contended`].
    Contended,
    /// [`Error::Committed`]: recovering again finishes the transaction.
    Committed,
    /// [`Error::Audit`].
    Audit,
    /// [`Error::Remote`] that a retry cannot change (a refused query, a missing bucket).
    Remote,
    /// [`Error::Remote`] that may go away by itself (no connection, a time-out, a server
    /// shutting down).
    RemoteUnavailable,
    /// [`Error::Serialize`].
    Serialize,
    /// [`Error::Seal`].
    Seal,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::KeyRequired`].
    KeyRequired,
    /// [`Error::Decrypt`].
    Decrypt,
    /// [`Error::Setup`]: no home directory for [`AppDirs`](crate::AppDirs), or a key that could
    /// not be made.
    Setup,
}

impl ErrorKind {
    /// The kind's name in snake case (`not_found`, `io`, `busy`, ...), the `outcome` of
    /// persist's metrics and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
            ErrorKind::Busy => "busy",
            ErrorKind::NotRegularFile => "not_regular_file",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::FutureVersion => "future_version",
            ErrorKind::UnknownVersion => "unknown_version",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Downgrade => "downgrade",
            ErrorKind::Migration => "migration",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::AlreadyOpen => "already_open",
            ErrorKind::AlreadyRunning => "already_running",
            ErrorKind::Checkpointed => "checkpointed",
            ErrorKind::Rewound => "rewound",
            ErrorKind::Unsaved => "unsaved",
            ErrorKind::DamagedJournal => "damaged_journal",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::Contended => "contended",
            ErrorKind::Committed => "committed",
            ErrorKind::Audit => "audit",
            ErrorKind::Remote => "remote",
            ErrorKind::RemoteUnavailable => "remote_unavailable",
            ErrorKind::Serialize => "serialize",
            ErrorKind::Seal => "seal",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::KeyRequired => "key_required",
            ErrorKind::Decrypt => "decrypt",
            ErrorKind::Setup => "setup",
        }
    }

    /// Whether a failure of this kind may go away by itself, so that trying again makes sense:
    /// [`Busy`](ErrorKind::Busy), [`LockTimeout`](ErrorKind::LockTimeout) (a lock held too
    /// long by another process), [`RemoteUnavailable`](ErrorKind::RemoteUnavailable) and
    /// [`Committed`](ErrorKind::Committed).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Busy
                | ErrorKind::LockTimeout
                | ErrorKind::RemoteUnavailable
                | ErrorKind::Committed
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// What kind of failure this is.
    ///
    /// # Examples
    ///
    /// ```
    /// # use persist::{ErrorKind, Persisted};
    /// # #[derive(Debug, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let error = Settings::load("/nonexistent/settings.json").unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::NotFound);
    /// assert!(!error.kind().is_transient());
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::ResourceBusy
                | io::ErrorKind::ExecutableFileBusy
                | io::ErrorKind::StaleNetworkFileHandle => ErrorKind::Busy,
                _ => ErrorKind::Io,
            },
            Error::NotRegularFile { .. } => ErrorKind::NotRegularFile,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::FutureVersion { .. } => ErrorKind::FutureVersion,
            Error::UnknownVersion { .. } => ErrorKind::UnknownVersion,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::Downgrade { .. } => ErrorKind::Downgrade,
            Error::Migration { .. } => ErrorKind::Migration,
            Error::LockTimeout { .. } => ErrorKind::LockTimeout,
            Error::AlreadyOpen { .. } => ErrorKind::AlreadyOpen,
            Error::AlreadyRunning { .. } => ErrorKind::AlreadyRunning,
            Error::Checkpointed { .. } => ErrorKind::Checkpointed,
            Error::Rewound { .. } => ErrorKind::Rewound,
            Error::Unsaved { .. } => ErrorKind::Unsaved,
            Error::DamagedJournal { .. } => ErrorKind::DamagedJournal,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::InvalidKey { .. } => ErrorKind::InvalidKey,
            Error::InvalidPath { .. } => ErrorKind::InvalidPath,
            Error::Contended { .. } => ErrorKind::Contended,
            Error::Committed { .. } => ErrorKind::Committed,
            Error::Audit { .. } => ErrorKind::Audit,
            Error::Remote { transient, .. } => match transient {
                true => ErrorKind::RemoteUnavailable,
                false => ErrorKind::Remote,
            },
            Error::Serialize { .. } => ErrorKind::Serialize,
            Error::Seal { .. } => ErrorKind::Seal,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::KeyRequired { .. } => ErrorKind::KeyRequired,
            Error::Decrypt { .. } => ErrorKind::Decrypt,
            Error::Setup { .. } => ErrorKind::Setup,
        }
    }
}

/// The file-system step an [`Error::Io`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Opening the file for reading.
    Open,
    /// Reading metadata (`stat`).
    Metadata,
    /// Reading the file's bytes.
    Read,
    /// Following a symbolic link at the target path.
    ResolveSymlink,
    /// Creating a missing parent directory.
    CreateDir,
    /// Creating the temporary file beside the target.
    CreateTemp,
    /// Creating a file that is written in place, not renamed over a target (a database file).
    Create,
    /// Writing to the temporary file.
    Write,
    /// `fsync` of the temporary file.
    SyncFile,
    /// Renaming the temporary file over the target.
    Rename,
    /// `fsync` of the directory after the rename (the rename may not survive a power cut).
    SyncDir,
    /// Giving the new file the permission bits of the file it replaces (it is created 0600);
    /// the old file is kept.
    SetPermissions,
    /// Opening or creating the lock file. The error's `path` is the lock file
    /// (`<name>.lock` beside the state file), not the state file.
    OpenLock,
    /// Removing a file or directory ([`Options::remove`](crate::Options::remove),
    /// [`Options::remove_dir`](crate::Options::remove_dir)); the error's `path` is the entry.
    Remove,
    /// Taking the lock. The error's `path` is the lock file, as for
    /// [`OpenLock`](IoOp::OpenLock). On a file system without locks the source's kind is
    /// [`Unsupported`](std::io::ErrorKind::Unsupported).
    Lock,
    /// Starting a thread: the worker of an `_async` method, the background thread of a
    /// [`Live`](crate::Live) handle or of a collection's [`Watch`](crate::Watch) (the system is out of threads or memory). Nothing was
    /// done.
    BlockingTask,
    /// Appending records to a [`Journal`](crate::Journal) (the write). The records
    /// acknowledged before are kept; the journal refuses to write until it is opened again.
    Append,
    /// Syncing appended records of a [`Journal`](crate::Journal) to disk (`fdatasync`). The
    /// records acknowledged before are kept; the journal refuses to write until it is opened
    /// again.
    SyncAppend,
    /// Cutting a torn tail (a crash during an append) off a [`Journal`](crate::Journal) as it
    /// opens.
    CutTail,
    /// Watching the file's directory for changes ([`Options::live`](crate::Options::live)):
    /// the system's limit on watches, or a file system without change events (turn watching
    /// off with [`Options::watch`](crate::Options::watch) and poll with
    /// [`Options::refresh_every`](crate::Options::refresh_every)).
    Watch,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Open => "open the file",
            IoOp::Metadata => "read the file's metadata",
            IoOp::Read => "read the file",
            IoOp::ResolveSymlink => "follow the symbolic link",
            IoOp::CreateDir => "create the parent directory",
            IoOp::CreateTemp => "create a temporary file in the same directory",
            IoOp::Create => "create the file",
            IoOp::Write => "write the temporary file",
            IoOp::SyncFile => "flush the temporary file to disk (fsync); the old file is kept",
            IoOp::Rename => "rename the temporary file over the target; the old file is kept",
            IoOp::SyncDir => {
                "flush the directory to disk (fsync) after replacing the file; the new \
                 contents are in place but may not survive a power cut"
            }
            IoOp::SetPermissions => {
                "give the temporary file the permissions of the file it replaces; the old file \
                 is kept"
            }
            IoOp::OpenLock => "open the lock file",
            IoOp::Remove => "remove it",
            IoOp::Lock => "lock the lock file",
            IoOp::BlockingTask => "start a worker thread",
            IoOp::Watch => "watch the directory for changes",
            IoOp::Append => "append to the journal; the records acknowledged before are kept",
            IoOp::SyncAppend => {
                "flush the journal's appended records to disk (fdatasync); the records \
                 acknowledged before are kept"
            }
            IoOp::CutTail => "cut the torn tail (a crash during an append) off the journal",
        })
    }
}

/// What kind of file an error found where it expected another ([`Error::NotRegularFile`]:
/// anything but a regular file; [`Error::InvalidPath`] messages: a file where a directory was
/// expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file (where a directory was expected).
    File,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device such as `/dev/null`.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// A symbolic link, where persist does not follow one (its own names under a root).
    Symlink,
    /// Anything else the platform reports.
    Other,
}

impl FileKind {
    pub(crate) fn of(file_type: std::fs::FileType) -> FileKind {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return FileKind::Fifo;
            }
            if file_type.is_char_device() {
                return FileKind::CharDevice;
            }
            if file_type.is_block_device() {
                return FileKind::BlockDevice;
            }
            if file_type.is_socket() {
                return FileKind::Socket;
            }
        }
        if file_type.is_file() {
            FileKind::File
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::File => "regular file",
            FileKind::Directory => "directory",
            FileKind::Fifo => "named pipe (FIFO)",
            FileKind::Symlink => "symbolic link",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Socket => "socket",
            FileKind::Other => "special file",
        })
    }
}

/// ` at line L, column C (at `field`)`, leaving out what is unknown.
struct Position<'a> {
    line: usize,
    column: usize,
    field: Option<&'a str>,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, " at line {}, column {}", self.line, self.column)?;
        }
        if let Some(field) = self.field {
            write!(f, " (at `{field}`)")?;
        }
        Ok(())
    }
}

struct DisplayList<'a>(&'a [u32]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, version) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{version}")?;
        }
        Ok(())
    }
}
