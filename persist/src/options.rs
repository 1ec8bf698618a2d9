//! [`Options`]: the settings of a load or save, and the functions behind every `Persisted`
//! method.

#[cfg(feature = "tokio")]
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

#[cfg(feature = "tokio")]
use crate::Pending;
use crate::{Error, Persisted, codec, fs, lock};

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
}

/// How much a save waits for the disk. Every level replaces the file atomically (a reader, or
/// a process that crashes, sees the old file or the new one); they differ in what survives a
/// power cut or a kernel crash.
///
/// Measured with the power-cut harness (`tests/powercut.rs`): only [`Full`](Durability::Full)
/// never lost an acknowledged save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// fsync the file, rename, fsync the directory: a save that returned survives a power cut.
    /// The default.
    #[default]
    Full,
    /// fsync the file, rename, but skip the directory fsync: after a power cut the file holds
    /// the new value or the previous one, never a mix, but a save that returned may be rolled
    /// back. Skips one of the two fsyncs of a save.
    FileSync,
    /// No fsync at all: for caches and tests. After a power cut the file may be empty or
    /// zero-filled; after a process crash it is still intact.
    None,
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

    /// The default settings.
    pub const fn new() -> Self {
        Options {
            max_size: Self::DEFAULT_MAX_SIZE,
            lock_timeout: Some(Self::DEFAULT_LOCK_TIMEOUT),
            durability: Durability::Full,
        }
    }

    /// Sets the largest file a load reads, in bytes. A larger file is refused with
    /// [`Error::TooLarge`] before it is read, so a wrong path (a disk image, a log) cannot
    /// exhaust memory. The default is [`DEFAULT_MAX_SIZE`](Options::DEFAULT_MAX_SIZE).
    pub const fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
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
        let bytes = fs::read(path, self.max_size)?;
        codec::decode(&bytes).map_err(|error| error.at::<T>(path))
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
        fs::write_atomic(path.as_ref(), self.durability, |writer| {
            codec::encode(value, writer)
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
        let path = path.as_ref();
        let _lock = lock::exclusive(path, self.lock_timeout)?;
        let mut value: T = self.load_or_default(path)?;
        change(&mut value);
        self.save(&value, path)?;
        Ok(value)
    }

    /// [`update`](Options::update) on tokio's blocking thread pool, so that waiting for the lock
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

    /// [`load`](Options::load) on tokio's blocking thread pool.
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

    /// [`load_or_default`](Options::load_or_default) on tokio's blocking thread pool.
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

    /// [`save`](Options::save) with the file work on tokio's blocking thread pool. `value` is
    /// serialized into memory when this is called, so the future does not borrow it; the bytes
    /// written are those [`save`](Options::save) writes.
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
        let mut bytes = Vec::new();
        if let Err(source) = codec::encode(value, &mut bytes) {
            return Pending::failed(Error::Serialize { path, source });
        }
        let durability = self.durability;
        Pending::new(path, move |path| {
            fs::write_atomic(path, durability, |writer| {
                writer.write_all(&bytes).map_err(serde_json::Error::io)
            })
        })
    }
}
