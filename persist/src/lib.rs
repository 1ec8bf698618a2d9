//! Versioned application state files that survive crashes and schema changes.
//!
//! Write one struct per schema version, derive [`Persisted`], and name the version each one
//! migrates from. persist gives you [`load`](Persisted::load), which reads a file of any version
//! in the chain and migrates it with your `From`/`TryFrom` impls, and [`save`](Persisted::save),
//! which replaces the file durably and atomically. With the `tokio` feature (on by default) each
//! has an `_async` twin.
//!
//! ```
//! use persist::Persisted;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Persisted)]
//! #[persist(version = 1)]
//! struct SettingsV1 {
//!     dark: bool,
//! }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
//! #[persist(version = 2, migrate_from = SettingsV1)]
//! struct Settings {
//!     theme: String,
//! }
//!
//! impl From<SettingsV1> for Settings {
//!     fn from(old: SettingsV1) -> Self {
//!         let theme = if old.dark { "dark" } else { "light" };
//!         Settings { theme: theme.to_owned() }
//!     }
//! }
//!
//! # fn main() -> Result<(), persist::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("settings.json");
//! SettingsV1 { dark: true }.save(&path)?;
//! assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"version":1,"data":{"dark":true}}"#);
//!
//! let settings = Settings::load(&path)?;
//! assert_eq!(settings, Settings { theme: "dark".into() });
//! settings.save(&path)?;
//! assert_eq!(
//!     std::fs::read_to_string(&path).unwrap(),
//!     r#"{"version":2,"data":{"theme":"dark"}}"#
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # The file format
//!
//! A file is a JSON object, version first: `{"version":2,"data":{...}}`, where `data` is what
//! serde makes of the struct of that version. Other top-level fields are ignored, so later
//! releases can add some. A file from a newer version is refused with
//! [`Error::FutureVersion`]; persist never overwrites a file it could not read. With a checksum
//! the envelope ends with `"crc32c"`; compressed or encrypted files are a small binary frame
//! around the envelope. FORMAT.md in the repository specifies every byte, precisely enough for
//! a reader in another language.
//!
//! # Guarantees
//!
//! - **Loads never write.** [`load_or_default`](Persisted::load_or_default) returns the default
//!   only for a missing file; a corrupt or newer file is an error. The one exception is one you
//!   opt into: [`Options::on_corrupt`] puts an earlier copy in the place of a damaged file, and
//!   keeps the damaged file beside it.
//! - **Saves are atomic and durable.** A temporary file in the same directory (mode 0600 from
//!   creation), fsync, rename, fsync of the directory. After a crash the file holds the old value
//!   or the new one. See [`Durability`] for the cheaper levels.
//! - **What saves, loads.** A value JSON cannot hold exactly (NaN or an infinity in an `f32` or
//!   `f64`) is refused with [`Error::Serialize`] naming the field, before the file is replaced;
//!   [`non_finite`] stores such values when they are meant.
//! - **Only regular files.** A directory, FIFO or device at the path is refused, for reading and
//!   for writing, without being touched; a load reads at most [`Options::max_size`] bytes.
//! - **Typed migrations.** The stored data is deserialized straight into the struct of its version
//!   and converted step by step; there is no untyped intermediate value.
//! - **No lost updates.** [`update`](Persisted::update) is a read-modify-write under a lock file
//!   that every process updating the same file shares.
//! - **Several files at once.** A [`Transaction`] saves and removes files under one root all or
//!   nothing, across crashes and power cuts (a staged directory and a commit record;
//!   [`Transaction::recover`] finishes or discards what a crash left).
//! - **Backups.** The first save over a file of another version keeps the old file as
//!   `<name>.v<N>.bak` ([`Options::backups`], [`Options::restore_backup`]).
//!
//! # One grammar
//!
//! - **Handles open with `open`**: [`Collection::open`], [`Journal::open`], [`Live::open`],
//!   [`Transaction::open`] (also [`Transaction::begin`]), [`backend::Local::new`] for a bare
//!   backend; [`Options`] has the same names for a handle with options
//!   (`Options::new().checksum(true).collection(dir)`, `.live(path)`, `.journal(path)`,
//!   `.transaction(root)`; `.postgres(..)` and `.s3(..)` for the network collections, which
//!   connect, so they return a [`Pending`]). A bare backend is a value made by its constructor
//!   (`Local::new`, `Postgres::connect`, `S3::new`, `Redb::open`).
//! - **What is not a handle is an associated function** of the type it is about:
//!   [`Transaction::recover`], [`AuditLog::read`], [`Persisted::load`].
//! - **Sync and async calls**: a sync call borrows the value it writes (`put(key, &value)`,
//!   `save(&self)`, `append(&record)`); its `_async` twin takes it by value (`put_async(key,
//!   value)`, `save_async(self)`, `append_async(record)`), so that every future is `'static`
//!   and can be spawned. Keep the value with a clone, or share it:
//!   [`Options::save_shared_async`] takes an `Arc`. Every `_async` call returns a [`Pending`]
//!   (a future of `Result<T, Error>`, or of the closure's error for the `try_update` family),
//!   and every async scan a [`Streamed`] (a `Stream`).
//! - **Errors**: every public error type converts into [`Error`] with `From`, so `?` works in a
//!   function returning `persist::Error`.
//!
//! # The derive
//!
//! ```text
//! #[persist(version = N)]                          the oldest version
//! #[persist(version = N, migrate_from = Older)]    every later one; needs From<Older> or TryFrom<Older>
//! #[persist(accept_unversioned)]                   the oldest version also reads plain JSON files
//! #[persist(checksum)]                             saves always store a CRC-32C of the data
//! #[persist(pretty)]                               saves write indented JSON
//! #[persist(crate = path::to::persist)]            for crates that re-export persist
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | yes | re-exports `#[derive(Persisted)]` |
//! | `tokio` | yes | the `_async` methods: [`load_async`](Persisted::load_async), [`save_async`](Persisted::save_async), [`update_async`](Persisted::update_async), [`load_or_default_async`](Persisted::load_or_default_async) and their [`Options`] twins; the file work runs on persist's worker threads, so the futures work under any executor. Without it tokio is not a dependency. |
//! | `live` | yes | [`Live`] ([`Persisted::live`], [`Options::live`]): one value kept in memory, saved on change ([`SavePolicy`]), reloaded when another program edits the file, observable with [`Live::on_change`] (and `subscribe` with `tokio`); adds arc-swap and notify |
//! | `collection` | yes | [`Collection`]: many values by key on a local directory, in memory ([`backend::Memory`], with injectable faults) or any [`backend::Backend`]; adds sha2 |
//! | `postgres` | no | `backend::Postgres` and `Collection::postgres`: collections in a PostgreSQL table (tokio-postgres) |
//! | `s3` | no | `backend::S3` and `Collection::s3`: collections in object storage (object_store; conditional PUTs) |
//! | `redb` | no | `backend::Redb`: collections in one redb database file (an embedded copy-on-write B-tree: a durable put is one commit and one sync, not a file of its own), for many small entries |
//! | `cache` | no | [`Options::cache`]: decoded values of a [`Collection`] kept in memory (moka), invalidated by the writes made through that collection handle and its clones |
//! | `zstd` | no | [`Options::compress`]: zstd compression of the file (builds the zstd C library) |
//! | `encryption` | no | [`Options::encrypt`] and [`Key`]: XChaCha20-Poly1305 encryption at rest, keys from bytes, an environment variable or a passphrase (Argon2id) |
//! | `testing` | no | [`testing`]: fixture snapshots and schema locks for a migration chain (for dev-dependencies) |
//! | `tracing` | no | a `tracing` span per load, save, update, restore, removal and journal open, append and checkpoint (path, versions, bytes, duration, outcome; never the data) and an event at its end; retries are logged |
//! | `cli` | no | [`cli::run`]: `inspect` and `migrate [--dry-run]` subcommands for the application's own command line |
//! | `simd` | no | loads parse with sonic-rs, a SIMD JSON parser, wherever it gives exactly serde_json's results (the same values, the same errors, the same float round trip); serde_json decides every other document |
//! | `metrics` | no | `metrics` counters and histograms: `persist_operations_total{op, outcome}`, `persist_operation_seconds{op}`, `persist_bytes_read_total`, `persist_bytes_written_total`, `persist_migrations_total{from, to}`, `persist_retries_total` |
//!
//! Checksums ([`Options::checksum`], `#[persist(checksum)]`) need no feature.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod any;
mod app_dirs;
mod audit;
#[cfg(feature = "collection")]
pub mod backend;
#[cfg(feature = "cli")]
pub mod cli;
mod codec;
#[cfg(feature = "collection")]
mod collection;
mod error;
mod file;
mod file_info;
mod format;
mod frame;
mod inspect;
mod instance;
mod journal;
mod key;
#[cfg(feature = "live")]
mod live;
mod mapped;
pub mod non_finite;
mod options;
mod persisted;
mod retry;
mod rollback;
#[cfg(feature = "testing")]
mod schema;
mod settings;
mod shell;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tokio")]
mod tokio;
mod txn;
#[cfg(feature = "tokio")]
mod worker;

pub use crate::app_dirs::{AppDirs, AppDirsError};
pub use crate::audit::{AuditLog, AuditOp, AuditRecord, AuditRecords};
#[cfg(all(feature = "collection", feature = "tokio"))]
pub use crate::collection::Streamed;
#[cfg(feature = "cache")]
pub use crate::collection::cache::CacheStats;
#[cfg(feature = "collection")]
pub use crate::collection::{
    Collection, Entries, Keys, MAX_KEY_BYTES, MigrationReport, Progress, Watch, WatchEvent,
    WatchOptions,
};
pub use crate::error::{
    BoxError, Error, ErrorKind, FileKind, IoOp, RemoteOp, SealError, ValidationError,
};
pub use crate::file::recover::{Fallback, LoadOutcome, Loaded, OnCorrupt};
pub use crate::file_info::{FileInfo, KeySource, Layout};
pub use crate::format::Format;
pub use crate::inspect::Inspection;
pub use crate::instance::{INSTANCE_LOCK_FILE, InstanceLock};
#[cfg(feature = "tokio")]
pub use crate::journal::AsyncFollow;
pub use crate::journal::{
    Follow, Journal, JournalRecords, JournalRecovery, NoSnapshot, RawRecord, Recovered, Replay,
    Rewritten,
};
#[cfg(feature = "encryption")]
pub use crate::key::{Key, KeyError};
#[cfg(feature = "live")]
pub use crate::live::{ChangeOrigin, Live, LiveEvent, LiveStats, SavePolicy, Subscription};
pub use crate::options::Options;
pub use crate::persisted::{Origin, Persisted};
pub use crate::rollback::{NewerFile, OnNewer};
pub use crate::shell::Durability;
pub use crate::shell::backup::Backup;
pub use crate::shell::names::{FileRole, file_role};
#[cfg(feature = "tokio")]
pub use crate::tokio::Pending;
pub use crate::txn::{Recovery, Transaction};

/// Derives [`Persisted`](trait@Persisted) for one schema version.
///
/// ```text
/// #[persist(version = N)]                          the oldest version
/// #[persist(version = N, migrate_from = Older)]    every later one; needs From<Older> or TryFrom<Older>
/// #[persist(version = N, accept_unversioned)]      the oldest version also reads plain JSON files
/// #[persist(version = N, checksum)]                saves always store a CRC-32C of the data
/// #[persist(version = N, pretty)]                  saves write indented JSON
/// #[persist(crate = path::to::persist)]            for crates that re-export persist
/// ```
///
/// The macro checks at compile time that `Older` is `Persisted`, has a lower version, and
/// converts into the type; each error points at the token to fix.
#[cfg(feature = "derive")]
pub use persist_derive::Persisted;

#[doc(hidden)]
pub mod __private {
    //! What the derive's generated code names. Not public API.

    use crate::BoxError;

    pub use serde;

    /// The load path without the file: decodes `bytes` as a file named `<memory>` would be.
    /// For the fuzz targets.
    pub fn decode<T: crate::Persisted>(bytes: &[u8]) -> Result<T, crate::Error> {
        crate::codec::decode(bytes).map_err(|error| error.at::<T>(std::path::Path::new("<memory>")))
    }

    /// The value sonic-rs alone decodes from `bytes` (one pass over the envelope), `None`
    /// where it declines or the pass ends in anything but a value: what tests/simd.rs and the
    /// `parsers` fuzz target compare with serde_json's value.
    #[cfg(feature = "simd")]
    pub fn decode_simd_only<T: crate::Persisted>(bytes: &[u8]) -> Option<T> {
        crate::codec::decode_simd_only(bytes)
    }

    /// [`decode`] with serde_json alone, whatever the features: what the `simd` feature's
    /// results are compared against (tests/simd.rs, the `parsers` fuzz target).
    #[cfg(feature = "simd")]
    pub fn decode_json<T: crate::Persisted>(bytes: &[u8]) -> Result<T, crate::Error> {
        crate::codec::decode_with(bytes, crate::codec::Parser::Json)
            .map_err(|error| error.at::<T>(std::path::Path::new("<memory>")))
    }

    /// The load path of a framed file without the file: opens the frame (with `key`, and at
    /// most `limit` bytes decompressed) and decodes the envelope. For the fuzz targets.
    #[cfg(feature = "encryption")]
    pub fn decode_framed<T: crate::Persisted>(
        bytes: &[u8],
        key: Option<&crate::Key>,
        limit: u64,
    ) -> Result<T, crate::Error> {
        let path = std::path::Path::new("<memory>");
        let envelope = crate::codec::unframe(bytes, key, limit).map_err(|error| error.at(path))?;
        crate::codec::decode(&envelope).map_err(|error| error.at::<T>(path))
    }

    /// A `TryFrom` step whose error can be boxed.
    #[diagnostic::on_unimplemented(
        message = "no migration from `{Previous}` to `{Self}`",
        label = "`{Self}` needs `impl From<{Previous}>` or `impl TryFrom<{Previous}>`",
        note = "a `TryFrom` error type must convert into `Box<dyn std::error::Error + Send + Sync>`: \
                any `std::error::Error + Send + Sync + 'static` type, `String`, `&'static str`, \
                `anyhow::Error` or a boxed error"
    )]
    pub trait MigrateFrom<Previous>: Sized {
        /// Converts, boxing the error.
        fn migrate_from(previous: Previous) -> Result<Self, BoxError>;
    }

    impl<Previous, Next> MigrateFrom<Previous> for Next
    where
        Next: TryFrom<Previous>,
        Next::Error: Into<BoxError>,
    {
        fn migrate_from(previous: Previous) -> Result<Self, BoxError> {
            Next::try_from(previous).map_err(Into::into)
        }
    }

    /// A `TryFrom` step back to the previous version (`downgrade`), whose error can be boxed.
    #[diagnostic::on_unimplemented(
        message = "no downgrade from `{Next}` to `{Self}`",
        label = "`#[persist(downgrade)]` needs `impl From<{Next}> for {Self}` or `impl TryFrom<{Next}> for {Self}`",
        note = "a `TryFrom` error type must convert into `Box<dyn std::error::Error + Send + Sync>`"
    )]
    pub trait DowngradeFrom<Next>: Sized {
        /// Converts, boxing the error.
        fn downgrade_from(next: Next) -> Result<Self, BoxError>;
    }

    impl<Next, Previous> DowngradeFrom<Next> for Previous
    where
        Previous: TryFrom<Next>,
        Previous::Error: Into<BoxError>,
    {
        fn downgrade_from(next: Next) -> Result<Self, BoxError> {
            Previous::try_from(next).map_err(Into::into)
        }
    }

    /// What a `validate` function returns: `Result<(), E>` with an error that can be boxed.
    #[diagnostic::on_unimplemented(
        message = "a `validate` function must return `Result<(), E>`, not `{Self}`",
        label = "`validate` names a `fn(&Self) -> Result<(), E>`",
        note = "`E` must convert into `Box<dyn std::error::Error + Send + Sync>`: any \
                `std::error::Error + Send + Sync + 'static` type, `String`, `&'static str`, \
                `anyhow::Error` or a boxed error"
    )]
    pub trait Validation {
        /// The result, its error boxed.
        fn validated(self) -> Result<(), BoxError>;
    }

    impl<E: Into<BoxError>> Validation for Result<(), E> {
        fn validated(self) -> Result<(), BoxError> {
            self.map_err(Into::into)
        }
    }

    /// A `TryFrom` step into any number of values (`upcast_from`), whose error can be boxed.
    #[diagnostic::on_unimplemented(
        message = "no upcast from `{Previous}` to `{Self}`",
        label = "`{Self}` needs `impl From<{Previous}> for Vec<{Self}>` or `impl TryFrom<{Previous}> for Vec<{Self}>`",
        note = "an upcast turns one old value into zero, one or many new ones; a `TryFrom` \
                error type must convert into `Box<dyn std::error::Error + Send + Sync>`"
    )]
    pub trait UpcastFrom<Previous>: Sized {
        /// Converts, boxing the error.
        fn upcast_from(previous: Previous) -> Result<Vec<Self>, BoxError>;
    }

    impl<Previous, Next> UpcastFrom<Previous> for Next
    where
        Vec<Next>: TryFrom<Previous>,
        <Vec<Next> as TryFrom<Previous>>::Error: Into<BoxError>,
    {
        fn upcast_from(previous: Previous) -> Result<Vec<Self>, BoxError> {
            Vec::<Next>::try_from(previous).map_err(Into::into)
        }
    }

    /// The one value an upcast made, for a single-value load (`migrate`); an error when it
    /// made none or several.
    pub fn single_upcast<T: crate::Persisted>(
        upcast: Result<Vec<T>, BoxError>,
    ) -> Result<T, BoxError> {
        let mut values = upcast?;
        match values.len() {
            1 => Ok(values.remove(0)),
            n => Err(format!(
                "a value of version {} upcasts to {n} values of version {}: only a journal's \
                 replay can take them",
                <T::Previous as crate::Persisted>::VERSION,
                T::VERSION
            )
            .into()),
        }
    }
}
