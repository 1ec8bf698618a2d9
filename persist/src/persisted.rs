//! The [`Persisted`] trait: one schema version of a state file, and the way back to the one before.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg(feature = "tokio")]
use crate::Pending;
use crate::error::BoxError;
use crate::{Error, Format, Options};

/// One schema version of a persisted value.
///
/// Implement it with `#[derive(Persisted)]` and `#[persist(version = N)]`, naming the
/// previous version with `migrate_from = OlderType`. The derive checks at compile time that the
/// older type is `Persisted`, has a lower version, and converts into this one with `From` or
/// `TryFrom`. The chain ends at [`Origin`], which no file can hold. Journal events whose old
/// versions split into several (or none) name it with `upcast_from = OlderType` and convert
/// with `From<OlderType> for Vec<Self>` (see [`Journal`](crate::Journal)).
///
/// The provided methods are the whole user-facing API: [`load`](Persisted::load),
/// [`load_or_default`](Persisted::load_or_default), [`save`](Persisted::save), and with the
/// `tokio` feature their `_async` twins. Each is a shortcut for the same method of
/// [`Options::new()`](Options::new); use [`Options`] to change a limit.
///
/// # Examples
///
/// ```
/// use persist::Persisted;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct ConfigV1 {
///     name: String,
/// }
///
/// #[derive(Debug, Serialize, Deserialize, Persisted)]
/// #[persist(version = 2, migrate_from = ConfigV1)]
/// struct Config {
///     name: String,
///     retries: u32,
/// }
///
/// impl From<ConfigV1> for Config {
///     fn from(old: ConfigV1) -> Self {
///         Config { name: old.name, retries: 3 }
///     }
/// }
///
/// # fn main() -> Result<(), persist::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("config.json");
/// ConfigV1 { name: "demo".into() }.save(&path)?;
/// let config = Config::load(&path)?; // read as version 1, migrated to version 2
/// assert_eq!(config.retries, 3);
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a persisted schema version",
    label = "`{Self}` does not implement `Persisted`",
    note = "add `#[derive(Persisted)]` and `#[persist(version = N)]` to `{Self}`"
)]
pub trait Persisted: Serialize + DeserializeOwned {
    /// The schema version this type reads and writes. Positive, and higher than
    /// `Previous::VERSION`.
    const VERSION: u32;

    /// `true` on the oldest version when a file without the `{"version", "data"}` envelope (plain
    /// JSON written before the application adopted persist) must load as this version.
    /// Set with `#[persist(accept_unversioned)]`; only the oldest version's setting is read.
    const ACCEPTS_UNVERSIONED: bool = false;

    /// `true` when every save of this type stores a CRC-32C checksum of its data in the file,
    /// so that a load detects damage done after the save (a flipped bit inside a string is
    /// still valid JSON). Set with `#[persist(checksum)]`; [`Options::checksum`] turns it on for
    /// one call. Loads verify a checksum whenever a file has one, whatever this says.
    const CHECKSUM: bool = false;

    /// `true` when saves of this type write indented JSON, for files people read and edit by
    /// hand. Set with `#[persist(pretty)]`; [`Options::pretty`] turns it on for one call. Loads
    /// read both layouts.
    const PRETTY: bool = false;

    /// The format saves of this type write: [`Format::Json`] unless `#[persist(format = "toml")]`
    /// says `Format::Toml` (feature `toml`); [`Options::format`] chooses it for one call. Loads
    /// read either, whatever this says.
    const FORMAT: Format = Format::Json;

    /// Fields renamed since an older version, as `(old name, new name)`: the derive reads them
    /// from `#[serde(alias = "old")]` on this type's own fields. A save over a TOML file writes
    /// a renamed field where its old key stood, keeping that key's comments (a save over a file
    /// of the version before a rename, a migration, is where it matters).
    const RENAMED: &'static [(&'static str, &'static str)] = &[];

    /// The version this one migrates from, or [`Origin`] for the oldest.
    type Previous: Persisted;

    /// Converts a value of the previous version into this one. The derive implements it with
    /// `TryFrom<Self::Previous>` (which every `From` provides).
    ///
    /// # Errors
    ///
    /// Whatever the conversion returns; a load reports it as [`Error::Migration`].
    fn migrate(previous: Self::Previous) -> Result<Self, BoxError>;

    /// `true` when the step from `Previous` to this version is an upcast
    /// (`#[persist(upcast_from = Older)]`): one value of the older version becomes any number
    /// of this one — an event split in two, or dropped. [`Journal`](crate::Journal) replays
    /// each of them; a single-value load refuses a value that does not become exactly one.
    const UPCASTS: bool = false;

    /// Converts a value of the previous version into any number of values of this one (zero,
    /// one or many): what a [`Journal`](crate::Journal) replays in place of an old record. The
    /// derive implements it with `TryFrom<Self::Previous> for Vec<Self>` under `upcast_from`;
    /// otherwise it is [`migrate`](Persisted::migrate)'s one value.
    ///
    /// # Errors
    ///
    /// Whatever the conversion returns; a replay reports it as [`Error::Migration`].
    fn upcast(previous: Self::Previous) -> Result<Vec<Self>, BoxError> {
        Self::migrate(previous).map(|value| vec![value])
    }

    /// `true` when a value of this version converts back into `Previous`
    /// (`#[persist(downgrade)]`, with `From<Self> for Previous` or `TryFrom`): what
    /// [`Options::save_as_version`](crate::Options::save_as_version) walks down to write a file
    /// an older release of the program reads.
    const DOWNGRADES: bool = false;

    /// Converts this value into the previous version, for a file written at an older version.
    /// The derive implements it with `TryFrom<Self> for Self::Previous` under
    /// `#[persist(downgrade)]`.
    ///
    /// # Errors
    ///
    /// Whatever the conversion returns; without `#[persist(downgrade)]`, an error saying that
    /// this version declares no step down.
    fn downgrade(self) -> Result<Self::Previous, BoxError> {
        Err(format!(
            "version {} (`{}`) declares no step down to version {} (`#[persist(downgrade)]`)",
            Self::VERSION,
            std::any::type_name::<Self>(),
            Self::Previous::VERSION,
        )
        .into())
    }

    /// Checks a value a load produced, after the last migration step (a file already at this
    /// version has none): an `Err` refuses the load with [`Error::Migration`] (from the file's
    /// version to this one) and the file is left as it was. Set with
    /// `#[persist(validate = path::to::check)]`, a `fn(&Self) -> Result<(), E>` whose error
    /// converts into [`BoxError`]. The migration kit runs it on every fixture. Saves do not
    /// call it.
    ///
    /// # Errors
    ///
    /// The reason the value is refused.
    fn validate(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Loads the file at `path`, whatever version in the chain it was saved at, and migrates
    /// it to this version. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no file, [`Error::FutureVersion`] if a newer program
    /// wrote it, and any other [`Error`] variant for a file that cannot be read or migrated.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let settings = Settings::load("settings.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        Options::new().load(path)
    }

    /// Like [`load`](Persisted::load), but returns `Self::default()` when the file does not
    /// exist. Any other failure (a corrupt or newer file) is still an error, never a silent
    /// default, and the default is not written to disk.
    ///
    /// # Errors
    ///
    /// Every [`Error`] of [`load`](Persisted::load) except [`Error::NotFound`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// let settings = Settings::load_or_default("settings.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    fn load_or_default(path: impl AsRef<Path>) -> Result<Self, Error>
    where
        Self: Default,
    {
        Options::new().load_or_default(path)
    }

    /// Saves `self` at `path` as this version: written to a temporary file in the same
    /// directory, flushed to disk, renamed over the old file, and the directory flushed. A
    /// crash at any moment leaves either the old file or the new one, never a mix.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegularFile`] if something other than a file is at `path`,
    /// [`Error::Serialize`] if serde cannot encode the value, [`Error::Io`] for a failed step.
    /// The previous file is untouched after every error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// Settings { theme: "dark".into() }.save("settings.json")?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        Options::new().save(self, path)
    }

    /// Opens the file at `path` as a [`Live`](crate::Live) value kept in memory: loaded (or
    /// `Self::default()` when there is no file) through the migration chain, saved on each
    /// [`update`](crate::Live::update), reloaded when another program changes it.
    /// `Options::new().live(path)`; see [`Options::live`] for the settings.
    ///
    /// # Errors
    ///
    /// See [`Options::live`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { font_size: u32 }
    /// let live = Settings::live("settings.json")?;
    /// live.update(|settings| settings.font_size += 1)?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    #[cfg(feature = "live")]
    fn live(path: impl AsRef<Path>) -> Result<crate::Live<Self>, Error>
    where
        Self: Default + Send + Sync + 'static,
    {
        Options::new().live(path)
    }

    /// Read-modify-write under an inter-process lock: loads the file (or starts from
    /// `Self::default()` if there is none), applies `change`, saves, and returns the saved value.
    /// Concurrent updates from other processes or threads are serialized, none is lost. See
    /// [`Options::update`] for the lock and its limits.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] after 30 s of waiting for another process, and every error of
    /// [`load_or_default`](Persisted::load_or_default) and [`save`](Persisted::save).
    ///
    /// # Examples
    ///
    /// ```
    /// # use persist::Persisted;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64 }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("stats.json");
    /// let stats = Stats::update(&path, |stats| stats.launches += 1)?;
    /// assert_eq!(stats.launches, 1);
    /// # Ok::<(), persist::Error>(())
    /// ```
    fn update(path: impl AsRef<Path>, change: impl FnOnce(&mut Self)) -> Result<Self, Error>
    where
        Self: Default,
    {
        Options::new().update(path, change)
    }

    /// [`update`](Persisted::update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// As [`update`](Persisted::update).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Stats { launches: u64 }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let stats = Stats::update_async("stats.json", |stats| stats.launches += 1).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    fn update_async(
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut Self) + Send + 'static,
    ) -> Pending<Self>
    where
        Self: Default + Send + 'static,
    {
        Options::new().update_async(path, change)
    }

    /// [`update`](Persisted::update) with a change that may fail or decide not to save: `Err`
    /// writes nothing and is returned; `Ok(r)` saves and returns `r`. See
    /// [`Options::try_update`].
    ///
    /// # Errors
    ///
    /// The closure's error; persist's errors converted into it (`E: From<persist::Error>`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Queue { jobs: Vec<String> }
    /// let next = Queue::try_update("queue.json", |queue| Ok::<_, persist::Error>(queue.jobs.pop()))?;
    /// # Ok::<(), persist::Error>(())
    /// ```
    fn try_update<R, E: From<Error>>(
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, E>
    where
        Self: Default,
    {
        Options::new().try_update(path, change)
    }

    /// [`try_update`](Persisted::try_update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Persisted::try_update).
    #[cfg(feature = "tokio")]
    fn try_update_async<R, E>(
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut Self) -> Result<R, E> + Send + 'static,
    ) -> Pending<R, E>
    where
        Self: Default + 'static,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        Options::new().try_update_async(path, change)
    }

    /// [`load`](Persisted::load) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// As [`load`](Persisted::load).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let settings = Settings::load_async("settings.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    fn load_async(path: impl AsRef<Path>) -> Pending<Self>
    where
        Self: Send + 'static,
    {
        Options::new().load_async(path)
    }

    /// [`load_or_default`](Persisted::load_or_default) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// As [`load_or_default`](Persisted::load_or_default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// # async fn run() -> Result<(), persist::Error> {
    /// let settings = Settings::load_or_default_async("settings.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    fn load_or_default_async(path: impl AsRef<Path>) -> Pending<Self>
    where
        Self: Default + Send + 'static,
    {
        Options::new().load_or_default_async(path)
    }

    /// [`save`](Persisted::save) on persist's worker threads, of the value handed over:
    /// serialized and written there (see [`Options::save_async`]), so no thread of the runtime
    /// is held up. Async calls own their values, sync ones borrow them: to keep the value,
    /// save a clone (or share it: [`Options::save_shared_async`]).
    ///
    /// # Errors
    ///
    /// See [`save`](Persisted::save).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use persist::Persisted;
    /// # #[derive(serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Library { books: Vec<String> }
    /// # async fn run(library: Library) -> Result<(), persist::Error> {
    /// library.save_async("library.json").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    fn save_async(self, path: impl AsRef<Path>) -> Pending<()>
    where
        Self: Send + 'static,
    {
        Options::new().save_async(self, path)
    }
}

/// The start of every migration chain: the `Previous` of the oldest version.
///
/// It has no values, so no file can be decoded as it and no migration from it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {}

impl fmt::Display for Origin {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "no value is stored at version 0 (the origin of every chain)",
        ))
    }
}

impl Persisted for Origin {
    const VERSION: u32 = 0;
    type Previous = Origin;

    fn migrate(previous: Origin) -> Result<Self, BoxError> {
        match previous {}
    }
}
