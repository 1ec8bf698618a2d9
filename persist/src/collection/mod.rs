//! [`Collection<T>`]: many values of one type by key, over a [`Backend`]. Each entry holds
//! exactly what a state file would (FORMAT.md, section 5), so the codec, the layers and the
//! migration chain are the core's.

#[cfg(feature = "cache")]
pub(crate) mod cache;
mod embedded;
mod entry;
pub(crate) mod key;
#[cfg(feature = "live")]
mod live;
#[cfg(feature = "cache")]
mod peers;
mod remote;
mod scan;
mod watch;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::key::MAX_KEY_BYTES;
#[cfg(feature = "tokio")]
pub use self::scan::Streamed;
pub use self::scan::{Entries, Keys};
pub use self::watch::{Watch, WatchEvent, WatchOptions};
#[cfg(feature = "tokio")]
use crate::Pending;
use crate::backend::{
    Backend, Change, Condition, Entry, EntryRecovery, Lent, Local, Memory, Written,
};
use crate::file::recover::{OnCorrupt, is_damage};
use crate::settings::Settings;
use crate::shell::{AuditEntry, AuditOp, Written as FileWritten, version_of};
use crate::telemetry::Facts;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use crate::telemetry::Operation;
use crate::{Error, Persisted};

/// The cache settings of a collection ([`Options::cache`](crate::Options::cache)(crate::Options::cache)); nothing
/// without the `cache` feature.
#[cfg(feature = "cache")]
pub(crate) type CacheSettings = cache::CacheSettings;
/// The cache settings of a collection; nothing without the `cache` feature.
#[cfg(not(feature = "cache"))]
pub(crate) type CacheSettings = std::convert::Infallible;

/// Many values of one type, by key: on a local directory ([`open`](Collection::open)), in
/// memory ([`memory`](Collection::memory)), or on any [`Backend`]
/// ([`with_backend`](Collection::with_backend)).
///
/// A key is any non-empty UTF-8 string of at most [`MAX_KEY_BYTES`] bytes; anything else is
/// [`Error::InvalidKey`]. `T` must be `Clone` (a cache hands out copies), `Send` and `Sync`.
/// Entries of older schema versions migrate on read, and
/// [`migrate_all`](Collection::migrate_all) rewrites them. Cloning is cheap: clones share the
/// backend.
///
/// # Examples
///
/// ```
/// use persist::{Collection, Persisted};
///
/// #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct User {
///     name: String,
///     logins: u32,
/// }
///
/// # fn main() -> Result<(), persist::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let users: Collection<User> = Collection::open(dir.path().join("users"))?;
/// users.put("alice", &User { name: "Alice".into(), logins: 0 })?;
/// let alice = users.update("alice", |user| user.logins += 1)?; // absent: starts from Default
/// assert_eq!(alice.logins, 1);
/// assert_eq!(users.get("bob")?, None);
/// assert_eq!(users.keys()?.sorted()?, ["alice"]);
/// users.delete("alice")?;
/// # Ok(())
/// # }
/// ```
pub struct Collection<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    backend: Arc<dyn Backend>,
    settings: Settings,
    /// Where the collection is, for errors about it as a whole (a bad key).
    location: PathBuf,
    /// Decoded values by key ([`Options::cache`](crate::Options::cache)).
    #[cfg(feature = "cache")]
    cache: Option<Arc<dyn cache::ValueCache<T>>>,
    /// The caches of every handle of this process on the same store, this one's included:
    /// what a write drops its keys from.
    #[cfg(feature = "cache")]
    peers: Arc<peers::Peers>,
    /// The length of the entry encoded last: the next one's buffer starts that large.
    encoded: std::sync::atomic::AtomicUsize,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// What [`Collection::migrate_all`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Entries looked at.
    pub total: usize,
    /// Entries rewritten at the current version.
    pub migrated: usize,
    /// Entries already at the current version (or rewritten by another writer meanwhile).
    pub current: usize,
    /// Entries that could not be read, migrated or written, with the error; they were left
    /// as they were.
    pub failed: Vec<(String, Error)>,
    /// Entries another writer changed between this migration's read and its write (counted
    /// in `migrated` or `current` as well): the write was refused by the backend's condition,
    /// the entry read again, and migrated from that writer's value, or left as that writer
    /// wrote it. Never overwritten.
    pub raced: usize,
}

/// How far [`Collection::migrate_all_with`] has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Entries handled so far.
    pub done: usize,
    /// Entries in all.
    pub total: usize,
}

impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// The collection in the directory `dir` (created if missing), with the default
    /// [`Options`](crate::Options). `Options::new().collection(dir)`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be created.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Collection::open_with(&Settings::DEFAULT, None, dir.as_ref())
    }

    /// The collection in the directory `dir`, with these settings
    /// ([`Options::collection`](crate::Options::collection)).
    pub(crate) fn open_with(
        settings: &Settings,
        cache: Option<CacheSettings>,
        dir: &Path,
    ) -> Result<Self, Error> {
        let local = Local::with_disk(dir.to_owned(), settings.disk.clone())?;
        Ok(Collection::on(Arc::new(local), settings.clone(), cache))
    }

    /// A collection in the PostgreSQL table `table` (created if missing) of the database
    /// `config` describes (`host=db user=app`, or a `postgresql://` URL), with the default
    /// [`Options`](crate::Options); see [`backend::Postgres`](crate::backend::Postgres). The connection is
    /// made on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`Postgres::connect`](crate::backend::Postgres::connect).
    #[cfg(feature = "postgres")]
    pub fn postgres(config: impl Into<String>, table: impl Into<String>) -> Pending<Self> {
        Collection::postgres_with(Settings::DEFAULT, None, config.into(), table.into())
    }

    /// A collection in the objects under `prefix` (such as `users/`) of `store` (S3 or any
    /// `object_store` store), with the default [`Options`](crate::Options); see
    /// [`backend::S3`](crate::backend::S3).
    ///
    /// # Errors
    ///
    /// See [`S3::new`](crate::backend::S3::new).
    #[cfg(feature = "s3")]
    pub fn s3(
        store: Arc<dyn crate::backend::object_store::ObjectStore>,
        prefix: impl Into<String>,
    ) -> Pending<Self> {
        Collection::s3_with(Settings::DEFAULT, None, store, prefix.into())
    }

    /// A collection in memory, for tests; see [`Memory`] for injecting faults.
    pub fn memory() -> Self {
        Collection::on(Arc::new(Memory::new()), Settings::DEFAULT, None)
    }

    // `with_backend`, which takes an `Options`, is in options.rs with the facade.

    /// A collection on `backend` with these settings (and a cache of that size, if any).
    pub(crate) fn on(
        backend: Arc<dyn Backend>,
        settings: Settings,
        cache: Option<CacheSettings>,
    ) -> Self {
        let location = backend.root();
        #[cfg(feature = "cache")]
        let cache = cache.map(cache::new::<T>);
        #[cfg(feature = "cache")]
        let peers = peers::Peers::of(&location);
        #[cfg(feature = "cache")]
        if let Some(cache) = &cache {
            let shared: Arc<dyn peers::Invalidate> = cache.clone();
            peers.join(Arc::downgrade(&shared));
            peers.follow(&backend);
        }
        #[cfg(not(feature = "cache"))]
        let _ = cache;
        Collection {
            inner: Arc::new(Inner {
                backend,
                settings,
                location,
                #[cfg(feature = "cache")]
                cache,
                #[cfg(feature = "cache")]
                peers,
                encoded: std::sync::atomic::AtomicUsize::new(0),
                _type: PhantomData,
            }),
        }
    }
}

impl<T: Persisted> Collection<T> {
    /// What this process's cache answered ([`Options::cache`](crate::Options::cache)): zero without a cache.
    #[cfg(feature = "cache")]
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(|cache| cache.stats())
            .unwrap_or_default()
    }

    /// Runs `work` as the operation `op` on the entry `name`: a span and metrics under the
    /// telemetry features (the entry's path, the schema version, bytes, outcome; never the
    /// data), nothing otherwise.
    fn observed<R>(
        &self,
        op: &'static str,
        name: &str,
        work: impl FnOnce(&mut Facts) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut facts = Facts {
            to: Some(T::VERSION),
            ..Facts::default()
        };
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        {
            let operation = Operation::start(op, &self.inner.backend.locate(name));
            let result = operation.in_span(|| work(&mut facts));
            operation.finish(&result, facts);
            result
        }
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        {
            let _ = (op, name);
            work(&mut facts)
        }
    }

    /// [`Backend::modify`] until no other writer gets in between: after a conflict, a random
    /// wait (up to 1 ms, doubling to 100 ms) and another attempt, for as long as
    /// [`Options::lock_timeout`](crate::Options::lock_timeout) allows (a lock timeout of `None` tries forever).
    /// With an audit log, returns what the winning attempt put.
    fn modify(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<&crate::backend::Stored>) -> Result<Change, Error>,
    ) -> Result<Option<Put>, Error> {
        let started = std::time::Instant::now();
        let patience = self.inner.settings.disk.lock_timeout;
        let mut backoff = std::time::Duration::from_millis(1);
        let mut attempts = 0;
        let audited = self.inner.settings.disk.audited();
        let mut put = None;
        let mut change = |stored: Option<&crate::backend::Stored>| {
            let change = change(stored)?;
            if audited {
                put = match &change {
                    Change::Put { bytes, version, .. } => Some(Put {
                        from_version: stored.and_then(|stored| version_of(&stored.bytes)),
                        to_version: *version,
                        written: FileWritten::of(bytes),
                    }),
                    Change::Keep => None,
                };
            }
            Ok(change)
        };
        loop {
            attempts += 1;
            if let Written::Done(tag) = self.inner.backend.modify(name, &mut change)? {
                self.wrote(name, &tag);
                return Ok(put);
            }
            crate::telemetry::conflicted(&self.inner.backend.locate(name));
            if patience.is_some_and(|patience| started.elapsed() >= patience) {
                return Err(Error::Contended {
                    path: self.inner.backend.locate(name),
                    attempts,
                });
            }
            std::thread::sleep(crate::retry::full_jitter(backoff));
            backoff = (backoff * 2).min(std::time::Duration::from_millis(100));
        }
    }

    /// Records an operation on `key` in the audit log, if there is one.
    fn audit(
        &self,
        operation: AuditOp,
        key: &str,
        name: &str,
        put: Option<&Put>,
    ) -> Result<(), Error> {
        if !self.inner.settings.disk.audited() {
            return Ok(());
        }
        let path = self.inner.backend.locate(name);
        self.inner.settings.disk.audit(&[AuditEntry {
            operation,
            path: &path,
            key: Some(key),
            from_version: put.and_then(|put| put.from_version),
            to_version: put.map(|put| u64::from(put.to_version)),
            written: put.map(|put| put.written),
        }])
    }

    /// Drops `key`'s cached value after a write by this process, from the cache of every
    /// handle on the store.
    fn forget(&self, key: &str) {
        #[cfg(feature = "cache")]
        self.inner.peers.invalidate(key);
        #[cfg(not(feature = "cache"))]
        let _ = key;
    }

    /// Notes this process's write of the entry `name`, now at `tag`, so that the store's feed
    /// telling it back does not drop the key from the caches a second time.
    fn wrote(&self, name: &str, tag: &crate::backend::Tag) {
        #[cfg(feature = "cache")]
        self.inner.peers.wrote(name, tag);
        #[cfg(not(feature = "cache"))]
        let _ = (name, tag);
    }

    /// The backend the collection runs on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The entry name of `key`, after checking it.
    fn name<'k>(&self, key: &'k str) -> Result<std::borrow::Cow<'k, str>, Error> {
        key::check(key).map_err(|reason| Error::InvalidKey {
            path: self.inner.location.clone(),
            reason,
        })?;
        Ok(key::name_of_borrowed(key))
    }

    fn encode(&self, key: &str, name: &str, value: &T) -> Result<Vec<u8>, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let capacity = self.inner.encoded.load(Relaxed);
        let bytes = entry::encode(&self.inner.settings, value, key, capacity, || {
            self.inner.backend.locate(name)
        })?;
        self.inner.encoded.store(bytes.len(), Relaxed);
        Ok(bytes)
    }

    /// Runs `read` (a read of the entry `name`, under `key`); when it finds the entry damaged
    /// and the options fall back ([`OnCorrupt::LastGood`], or `Default`, which a collection
    /// follows as `LastGood`: an entry has no default), has the backend put the entry's newest
    /// earlier copy that decodes in its place ([`Backend::recover`]) and reads again.
    fn recovering<R>(
        &self,
        key: &str,
        name: &str,
        mut read: impl FnMut() -> Result<R, Error>,
    ) -> Result<R, Error> {
        let error = match read() {
            Err(error)
                if self.inner.settings.on_corrupt != OnCorrupt::Fail && is_damage(&error) =>
            {
                error
            }
            other => return other,
        };
        let accepts = |bytes: &[u8]| self.decode(key, name, bytes).is_ok();
        match self.inner.backend.recover(name, &accepts)? {
            EntryRecovery::Intact => read(),
            EntryRecovery::Restored { from, damaged } => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    path = %self.inner.backend.locate(name).display(),
                    key,
                    error = %error,
                    damaged = %damaged.display(),
                    from = %from.display(),
                    "the entry did not load: an earlier copy was put in its place"
                );
                let _ = (from, damaged);
                self.forget(key);
                read()
            }
            _ => Err(error),
        }
    }

    /// Decodes an entry read under `key`, checking that it holds that key.
    fn decode(&self, key: &str, name: &str, bytes: &[u8]) -> Result<T, Error> {
        let locate = || self.inner.backend.locate(name);
        match entry::decode::<T>(&self.inner.settings, bytes, key, locate)? {
            (value, true) => Ok(value),
            (_, false) => Err(key_mismatch(locate())),
        }
    }

    /// [`decode`](Collection::decode) of an entry a backend lent: one whose head the store
    /// left out (its name is the key asked for) is read where it lies when it is at `T`'s
    /// version and plain; anything else is built whole and decoded.
    fn decode_lent(&self, key: &str, name: &str, lent: Lent<'_>) -> Result<T, Error> {
        if let Some((version, rest)) = lent.parts()
            && let Some(value) = crate::codec::decode_headless::<T>(version, rest)
        {
            return Ok(value);
        }
        self.decode(key, name, &lent.bytes())
    }

    /// The value under `key`, migrated from the version it was stored at; `None` if there is
    /// none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], the backend's errors, and every load error of a file
    /// ([`Error::Corrupt`], [`Error::FutureVersion`], [`Error::Migration`], ...) naming the
    /// entry.
    pub fn get(&self, key: &str) -> Result<Option<T>, Error> {
        let name = self.name(key)?;
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.inner.cache
            && let Some(value) = cache.get(key)
        {
            return Ok(Some(value));
        }
        self.observed("collection_get", &name, |facts| {
            self.recovering(key, &name, || {
                #[cfg(feature = "cache")]
                let epoch = self.inner.cache.as_ref().map(|cache| cache.epoch());
                let mut decoded = None;
                self.inner.backend.read_with(&name, &mut |lent| {
                    facts.read = Some(lent.len() as u64);
                    decoded = Some(self.decode_lent(key, &name, lent));
                })?;
                let Some(value) = decoded.transpose()? else {
                    return Ok(None);
                };
                #[cfg(feature = "cache")]
                if let (Some(cache), Some(epoch)) = (&self.inner.cache, epoch) {
                    cache.insert(key, &value, epoch);
                }
                Ok(Some(value))
            })
        })
    }

    /// Whether there is a value under `key` (its bytes are read, not decoded).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the backend's errors.
    pub fn contains(&self, key: &str) -> Result<bool, Error> {
        let name = self.name(key)?;
        Ok(self.inner.backend.get(&name)?.is_some())
    }

    /// Stores `value` under `key`, durably and atomically, at the current version.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Serialize`] (nothing written) and the backend's errors.
    pub fn put(&self, key: &str, value: &T) -> Result<(), Error> {
        let name = self.name(key)?;
        self.observed("collection_put", &name, |facts| {
            let bytes = self.encode(key, &name, value)?;
            facts.written = Some(bytes.len() as u64);
            self.store(key, &name, &bytes, &Condition::Always)?;
            Ok(())
        })
    }

    /// Stores `bytes` (`key`'s encoded value, in the entry `name`) if `condition` holds: the
    /// key is dropped from every cache, the store's notice of this write is expected, and the
    /// audit log records it. [`Written::Conflict`] (nothing written, nothing recorded) when
    /// the condition did not hold.
    fn store(
        &self,
        key: &str,
        name: &str,
        bytes: &[u8],
        condition: &Condition,
    ) -> Result<Written, Error> {
        let entry = Entry {
            key,
            bytes,
            version: T::VERSION,
        };
        let written = self.inner.backend.put(name, entry, condition);
        self.forget(key);
        let Written::Done(tag) = written? else {
            return Ok(Written::Conflict);
        };
        self.wrote(name, &tag);
        let put = Put {
            from_version: None,
            to_version: T::VERSION,
            written: FileWritten::of(bytes),
        };
        self.audit(AuditOp::Save, key, name, Some(&put))?;
        Ok(Written::Done(tag))
    }

    /// Stores every `(key, value)` as one durable batch, all or nothing where the store can: on
    /// the local directory a transaction on the collection's directory (every entry staged,
    /// all synced at once, a commit record, then the renames; a crash after the commit point
    /// is finished by the next open, write or batch), in memory and on PostgreSQL (one SQL
    /// transaction) too; on S3 entry by entry. A key named twice is stored once, with its last
    /// value. Nothing is written if a key or a value is refused.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Serialize`] (before anything is written), and the
    /// backend's errors: none of the batch is stored then, except on a store without batches
    /// (S3: the entries before the failing one may be stored).
    pub fn put_many<'v, K: AsRef<str>>(
        &self,
        entries: impl IntoIterator<Item = (K, &'v T)>,
    ) -> Result<(), Error>
    where
        T: 'v,
    {
        use std::sync::atomic::Ordering::Relaxed;
        // The entries in a few blocks: no allocation per entry.
        let mut arena = entry::Arena::default();
        let expected = self.inner.encoded.load(Relaxed);
        let encoded = entries
            .into_iter()
            .map(|(key, value)| {
                let name = self.name(key.as_ref())?;
                let bytes =
                    arena.append(&self.inner.settings, value, key.as_ref(), expected, || {
                        self.inner.backend.locate(&name)
                    })?;
                // Most keys are their own names: no copy is kept of those.
                let name = match name {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(name) => Some(name),
                };
                Ok((key, name, bytes))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if let Some((_, _, last)) = encoded.last() {
            self.inner.encoded.store(last.range.len(), Relaxed);
        }
        let encoded: Vec<_> = encoded
            .into_iter()
            .map(|(key, name, slot)| (key, name, arena.get(&slot)))
            .collect();
        let batch: Vec<(&str, Entry<'_>)> = encoded
            .iter()
            .map(|(key, name, bytes)| {
                let entry = Entry {
                    key: key.as_ref(),
                    bytes,
                    version: T::VERSION,
                };
                (name.as_deref().unwrap_or(key.as_ref()), entry)
            })
            .collect();
        self.observed("collection_put_many", "", |facts| {
            facts.written = Some(arena.len() as u64);
            let written = self.inner.backend.put_many(&batch);
            for (key, _, _) in &encoded {
                self.forget(key.as_ref());
            }
            written?;
            if !self.inner.settings.disk.audited() {
                return Ok(());
            }
            let paths: Vec<PathBuf> = encoded
                .iter()
                .map(|(key, name, _)| {
                    self.inner
                        .backend
                        .locate(name.as_deref().unwrap_or(key.as_ref()))
                })
                .collect();
            let entries: Vec<AuditEntry<'_>> = encoded
                .iter()
                .zip(&paths)
                .map(|((key, _, bytes), path)| AuditEntry {
                    operation: AuditOp::Save,
                    path,
                    key: Some(key.as_ref()),
                    from_version: None,
                    to_version: Some(u64::from(T::VERSION)),
                    written: Some(FileWritten::of(bytes)),
                })
                .collect();
            self.inner.settings.disk.audit(&entries)
        })
    }

    /// Read-modify-write of the value under `key` (`T::default()` if there is none): no
    /// concurrent change is lost. On the local directory it runs under the entry's lock file,
    /// shared with other processes; on a backend without locks it is a compare-and-swap,
    /// retried with a backoff, so `change` may run more than once (on a fresh value each
    /// time) until it wins, for up to [`Options::lock_timeout`](crate::Options::lock_timeout) (30 s by default). Returns the
    /// stored value.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], the errors of [`get`](Collection::get) (nothing is written over
    /// an entry that does not load) and [`put`](Collection::put), and [`Error::Contended`]
    /// when other writers won every attempt for the whole lock timeout.
    pub fn update(&self, key: &str, mut change: impl FnMut(&mut T)) -> Result<T, Error>
    where
        T: Default,
    {
        let changed = self.changed(key, "collection_update", &mut |value| {
            change(value);
            Ok::<_, Error>(())
        })?;
        Ok(changed.0)
    }

    /// [`update`](Collection::update) with a change that may fail or decide not to write:
    /// `Err` writes nothing and is returned as it is; `Ok(r)` stores the changed value and
    /// returns `r`. As with `update`, `change` may run more than once on a backend without
    /// locks (each time on a fresh value): only the run whose write wins counts, and an `Err`
    /// ends the attempts at once. The semantics of [`Persisted::try_update`] for an entry.
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Account { balance: i64 }
    /// #[derive(Debug)]
    /// enum Refused { Overdrawn, Store(persist::Error) }
    /// impl From<persist::Error> for Refused {
    ///     fn from(error: persist::Error) -> Self { Refused::Store(error) }
    /// }
    ///
    /// let accounts = persist::Collection::<Account>::memory();
    /// accounts.put("ada", &Account { balance: 10 })?;
    /// let withdraw = |amount: i64| {
    ///     accounts.try_update("ada", |account| match account.balance >= amount {
    ///         true => { account.balance -= amount; Ok(account.balance) }
    ///         false => Err(Refused::Overdrawn),
    ///     })
    /// };
    /// assert_eq!(withdraw(4).unwrap(), 6);
    /// assert!(matches!(withdraw(7), Err(Refused::Overdrawn))); // nothing written
    /// assert_eq!(accounts.get("ada")?.unwrap().balance, 6);
    /// # Ok::<(), persist::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `change`'s error, and the errors of [`update`](Collection::update) converted into `E`.
    pub fn try_update<R, E: From<Error>>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Result<R, E>
    where
        T: Default,
    {
        self.changed(key, "collection_try_update", &mut change)
            .map(|(_, result)| result)
    }

    /// The read-modify-write of [`update`](Collection::update) and
    /// [`try_update`](Collection::try_update): the stored value and what `change` returned.
    /// A change that returns `Err` keeps the entry as it is.
    fn changed<R, E: From<Error>>(
        &self,
        key: &str,
        operation: &'static str,
        change: &mut dyn FnMut(&mut T) -> Result<R, E>,
    ) -> Result<(T, R), E>
    where
        T: Default,
    {
        let name = self.name(key)?;
        let mut refused = None;
        let changed = self.observed(operation, &name, |facts| {
            let mut result = None;
            let _forget = Forget(self, key);
            let put = self.recovering(key, &name, || {
                self.modify(&name, &mut |stored| {
                    let mut value = match stored {
                        Some(stored) => self.decode(key, &name, &stored.bytes)?,
                        None => T::default(),
                    };
                    let returned = match change(&mut value) {
                        Ok(returned) => returned,
                        Err(error) => {
                            // Nothing is written; the error is the caller's, returned as is.
                            refused = Some(error);
                            return Ok(Change::Keep);
                        }
                    };
                    refused = None;
                    let bytes = self.encode(key, &name, &value)?;
                    facts.written = Some(bytes.len() as u64);
                    result = Some((value, returned));
                    Ok(Change::Put {
                        key: key.to_owned(),
                        bytes,
                        version: T::VERSION,
                    })
                })
            })?;
            if refused.is_none() {
                self.audit(AuditOp::Update, key, &name, put.as_ref())?;
            }
            Ok(result)
        })?;
        match (refused, changed) {
            (Some(error), _) => Err(error),
            (None, Some(changed)) => Ok(changed),
            // `modify` returns Ok only after a `Put` was stored, which set `result`.
            (None, None) => unreachable!("an update that was not refused puts"),
        }
    }

    /// Removes the value under `key`; `false` if there was none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the backend's errors.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        let name = self.name(key)?;
        self.observed("collection_delete", &name, |_| {
            let deleted = self.inner.backend.delete(&name, &Condition::Always);
            self.forget(key);
            if deleted? {
                self.audit(AuditOp::Remove, key, &name, None)?;
                return Ok(true);
            }
            Ok(false)
        })
    }

    /// Removes every entry (on the local directory with its lock files, backups and stray
    /// temporary files; nothing outside the collection's directory is touched, and symbolic
    /// links are removed, never followed). Entries another process writes meanwhile may
    /// remain.
    ///
    /// # Errors
    ///
    /// The backend's errors; entries removed before one are gone.
    pub fn clear(&self) -> Result<(), Error> {
        self.observed("collection_clear", "", |_| {
            // With an audit log, each entry's removal is recorded: the keys are read first.
            let removed = match self.inner.settings.disk.audited() {
                true => self.keys()?.sorted()?,
                false => Vec::new(),
            };
            let cleared = self.inner.backend.clear();
            #[cfg(feature = "cache")]
            self.inner.peers.invalidate_all();
            cleared?;
            let paths: Vec<PathBuf> = removed
                .iter()
                .map(|key| self.inner.backend.locate(&key::name_of(key)))
                .collect();
            let entries: Vec<AuditEntry<'_>> = removed
                .iter()
                .zip(&paths)
                .map(|(key, path)| AuditEntry {
                    operation: AuditOp::Remove,
                    path,
                    key: Some(key),
                    from_version: None,
                    to_version: None,
                    written: None,
                })
                .collect();
            self.inner.settings.disk.audit(&entries)
        })
    }

    /// Every key, read from the store as the iterator is consumed (see [`Keys`] for the order
    /// and what an `Err` item means): listing a collection of any size holds a page of names
    /// in memory, not every key. Keys are read from the entry names; a key longer than its name
    /// can spell (over 200 bytes once escaped) is read from its entry. [`Keys::sorted`]
    /// collects them in key order.
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct User { name: String }
    /// let users = persist::Collection::<User>::memory();
    /// users.put("bob", &User::default())?;
    /// users.put("alice", &User::default())?;
    /// for key in users.keys()? {
    ///     println!("{}", key?);
    /// }
    /// assert_eq!(users.keys()?.sorted()?, ["alice", "bob"]);
    /// # Ok::<(), persist::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The store could not be listed (later failures are items of the iterator).
    pub fn keys(&self) -> Result<Keys<T>, Error> {
        Keys::new(self.clone(), "")
    }

    /// The keys that begin with `prefix` (bytewise, as [`str::starts_with`]), read from the store
    /// as the iterator is consumed: a scan of the names that spell such keys (a range of rows
    /// on PostgreSQL, a listing under the prefix on S3), not of every entry. An empty prefix
    /// gives every key. See [`Keys`] for the order.
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Doc { title: String }
    /// let docs = persist::Collection::<Doc>::memory();
    /// for key in ["2026/01/a", "2026/02/b", "2025/12/c"] {
    ///     docs.put(key, &Doc::default())?;
    /// }
    /// assert_eq!(docs.keys_with_prefix("2026/")?.sorted()?, ["2026/01/a", "2026/02/b"]);
    /// # Ok::<(), persist::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The store could not be listed (later failures are items of the iterator).
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Keys<T>, Error> {
        Keys::new(self.clone(), prefix)
    }

    /// The key an entry name stands for; `None` for a name that is no key's (or an entry gone
    /// meanwhile). A hashed name's key is read from its entry, and kept only when it hashes to
    /// that name: an entry planted under another key's hash stands for nothing.
    fn key_of_name(&self, name: String) -> Result<Option<String>, Error> {
        if !key::is_hashed(&name) {
            return Ok(key::into_key(name));
        }
        let Some(stored) = self.inner.backend.get(&name)? else {
            return Ok(None);
        };
        let path = self.inner.backend.locate(&name);
        let key = entry::key(&self.inner.settings, &stored.bytes, &path)?;
        Ok(key.filter(|key| key::check(key).is_ok() && key::name_of(key) == name))
    }

    /// Every entry as `(key, value)`, in the order of [`keys`](Collection::keys), each read
    /// when the iterator reaches it: an entry that does not load is an `Err` beside its key,
    /// and the iteration goes on (see [`Entries`]).
    ///
    /// # Errors
    ///
    /// The errors of [`keys`](Collection::keys).
    pub fn iter(&self) -> Result<Entries<T>, Error> {
        self.iter_prefix("")
    }

    /// The entries whose keys begin with `prefix`, as `(key, value)`: [`iter`](Collection::iter)
    /// over [`keys_with_prefix`](Collection::keys_with_prefix).
    ///
    /// # Errors
    ///
    /// The errors of [`keys_with_prefix`](Collection::keys_with_prefix).
    pub fn iter_prefix(&self, prefix: &str) -> Result<Entries<T>, Error> {
        Ok(Entries::new(self.keys_with_prefix(prefix)?))
    }

    /// Rewrites every entry stored at an older schema version at the current one (keeping
    /// backups where the backend does, as a save does). Never stops at a failure: each is
    /// reported with its key and the entry is left as it was. Each rewrite is a
    /// compare-and-swap (or runs under the entry's lock), so an entry another writer changes
    /// meanwhile is not overwritten.
    ///
    /// # Errors
    ///
    /// Only the listing's; every entry's own error is in the report.
    pub fn migrate_all(&self) -> Result<MigrationReport, Error> {
        self.migrate_all_with(|_| {})
    }

    /// [`migrate_all`](Collection::migrate_all), calling `progress` after each entry.
    ///
    /// # Errors
    ///
    /// See [`migrate_all`](Collection::migrate_all).
    pub fn migrate_all_with(
        &self,
        mut progress: impl FnMut(Progress),
    ) -> Result<MigrationReport, Error> {
        self.observed("collection_migrate_all", "", |_| {
            self.migrate_names(&mut progress)
        })
    }

    fn migrate_names(&self, progress: &mut impl FnMut(Progress)) -> Result<MigrationReport, Error> {
        let names = self.inner.backend.list()?;
        let mut report = MigrationReport {
            total: names.len(),
            ..MigrationReport::default()
        };
        for (done, name) in names.iter().enumerate() {
            let mut attempts = 0;
            match self.migrate_entry(name, &mut attempts) {
                Ok(true) => report.migrated += 1,
                Ok(false) => report.current += 1,
                Err((key, error)) => report.failed.push((key, error)),
            }
            if attempts > 1 {
                report.raced += 1;
            }
            progress(Progress {
                done: done + 1,
                total: report.total,
            });
        }
        Ok(report)
    }

    /// Rewrites one entry if it is older; `Ok(true)` if it was rewritten. An error comes with
    /// the entry's key (its name when the key could not be read). `attempts` counts the reads
    /// (more than one: another writer changed the entry before this write).
    fn migrate_entry(&self, name: &str, attempts: &mut usize) -> Result<bool, (String, Error)> {
        let options = &self.inner.settings;
        let path = self.inner.backend.locate(name);
        let mut key_seen = key::key_of(name);
        let mut rewritten = false;
        let outcome = self.modify(name, &mut |stored| {
            *attempts += 1;
            rewritten = false;
            let Some(stored) = stored else {
                return Ok(Change::Keep); // removed meanwhile
            };
            let Some((value, key)) = entry::decode_older::<T>(options, &stored.bytes, &path)?
            else {
                return Ok(Change::Keep);
            };
            // The entry must hold the key its name stands for: one that holds another (or
            // none) is reported, never rewritten under this name.
            let key = match key {
                Some(key) if key::name_of(&key) == name => key,
                _ => return Err(key_mismatch(path.clone())),
            };
            key_seen = Some(key.clone());
            let bytes = entry::encode(options, &value, &key, 0, || path.clone())?;
            rewritten = true;
            Ok(Change::Put {
                key,
                bytes,
                version: T::VERSION,
            })
        });
        if let Some(key) = &key_seen {
            self.forget(key);
        }
        let key = || key_seen.clone().unwrap_or_else(|| name.to_owned());
        match outcome {
            Ok(put) => {
                if rewritten && let Some(put) = put {
                    self.audit(AuditOp::Update, &key(), name, Some(&put))
                        .map_err(|error| (key(), error))?;
                }
                Ok(rewritten)
            }
            Err(error) => Err((key(), error)),
        }
    }
}

/// An entry whose key member is not the key its name stands for (or is missing).
fn key_mismatch(path: PathBuf) -> Error {
    Error::Corrupt {
        path,
        line: 0,
        column: 0,
        field: Some("key".into()),
        reason: "the entry holds another key than the one its name stands for, or none".into(),
    }
}

/// What a write of an entry put, for its audit record.
struct Put {
    from_version: Option<u64>,
    to_version: u32,
    written: FileWritten,
}

/// Drops a key's cached value when the write that may have changed it ends, however it ends.
struct Forget<'c, T: Persisted>(&'c Collection<T>, &'c str);

impl<T: Persisted> Drop for Forget<'_, T> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

#[cfg(feature = "tokio")]
impl<T: Persisted + Send + 'static> Collection<T> {
    fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Collection<T>) -> Result<R, Error> + Send + 'static,
    ) -> Pending<R> {
        let collection = self.clone();
        Pending::new(self.inner.location.clone(), move |_| work(&collection))
    }

    /// [`get`](Collection::get) on persist's worker threads, or awaited on the caller's executor
    /// where the store is async by nature ([`Backend::get_native`]; not with a cache).
    ///
    /// # Errors
    ///
    /// See [`get`](Collection::get).
    pub fn get_async(&self, key: impl Into<String>) -> Pending<Option<T>>
    where
        T: Sync,
    {
        let key = key.into();
        let name = match self.name(&key) {
            Ok(name) => name.into_owned(),
            Err(error) => return Pending::failed(error),
        };
        #[cfg(feature = "cache")]
        let cached = self.inner.cache.is_some();
        #[cfg(not(feature = "cache"))]
        let cached = false;
        // A store that is async by nature is awaited here; with a cache, the sync path keeps
        // its bookkeeping in one place.
        if !cached && let Some(stored) = self.inner.backend.get_native(&name) {
            let collection = self.clone();
            return Pending::native(async move {
                match stored.await? {
                    Some(stored) => collection.decode(&key, &name, &stored.bytes).map(Some),
                    None => Ok(None),
                }
            });
        }
        self.run(move |collection| collection.get(&key))
    }

    /// [`put`](Collection::put) on persist's worker threads (awaited on the caller's executor
    /// where the store is async by nature), with the value handed over.
    ///
    /// # Errors
    ///
    /// See [`put`](Collection::put).
    pub fn put_async(&self, key: impl Into<String>, value: T) -> Pending<()>
    where
        T: Sync,
    {
        let key = key.into();
        let name = match self.name(&key) {
            Ok(name) => name,
            Err(error) => return Pending::failed(error),
        };
        let bytes = match self.encode(&key, &name, &value) {
            Ok(bytes) => bytes,
            Err(error) => return Pending::failed(error),
        };
        // The audit log's append is blocking file work: an audited put runs on the worker
        // threads.
        let native = match self.inner.settings.disk.audited() {
            true => None,
            false => self.inner.backend.put_native(
                &name,
                key.clone(),
                bytes.clone(),
                T::VERSION,
                Condition::Always,
            ),
        };
        if let Some(written) = native {
            let collection = self.clone();
            return Pending::native(async move {
                let written = written.await;
                collection.forget(&key);
                written.map(|_| ())
            });
        }
        self.run(move |collection| collection.put(&key, &value))
    }

    /// [`put_many`](Collection::put_many) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`put_many`](Collection::put_many).
    pub fn put_many_async<K: Into<String>>(
        &self,
        entries: impl IntoIterator<Item = (K, T)>,
    ) -> Pending<()> {
        let entries: Vec<(String, T)> = entries
            .into_iter()
            .map(|(key, value)| (key.into(), value))
            .collect();
        self.run(move |collection| {
            collection.put_many(entries.iter().map(|(key, value)| (key, value)))
        })
    }

    /// [`update`](Collection::update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`update`](Collection::update).
    pub fn update_async(
        &self,
        key: impl Into<String>,
        change: impl FnMut(&mut T) + Send + 'static,
    ) -> Pending<T>
    where
        T: Default,
    {
        let key = key.into();
        self.run(move |collection| collection.update(&key, change))
    }

    /// [`try_update`](Collection::try_update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Collection::try_update).
    pub fn try_update_async<R, E>(
        &self,
        key: impl Into<String>,
        change: impl FnMut(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Pending<R, E>
    where
        T: Default,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let key = key.into();
        let collection = self.clone();
        Pending::new(self.inner.location.clone(), move |_| {
            collection.try_update(&key, change)
        })
    }

    /// [`delete`](Collection::delete) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`delete`](Collection::delete).
    pub fn delete_async(&self, key: impl Into<String>) -> Pending<bool> {
        let key = key.into();
        self.run(move |collection| collection.delete(&key))
    }

    /// [`contains`](Collection::contains) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`contains`](Collection::contains).
    pub fn contains_async(&self, key: impl Into<String>) -> Pending<bool> {
        let key = key.into();
        self.run(move |collection| collection.contains(&key))
    }

    /// [`clear`](Collection::clear) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`clear`](Collection::clear).
    pub fn clear_async(&self) -> Pending<()> {
        self.run(|collection| collection.clear())
    }

    /// [`migrate_all`](Collection::migrate_all) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`migrate_all`](Collection::migrate_all).
    pub fn migrate_all_async(&self) -> Pending<MigrationReport> {
        self.run(|collection| collection.migrate_all())
    }

    /// [`keys`](Collection::keys) as a [`Stream`](futures_core::Stream), read on persist's
    /// worker threads a batch at a time (see [`Streamed`]); the store's errors are items.
    pub fn keys_async(&self) -> Streamed<Keys<T>> {
        self.keys_with_prefix_async("")
    }

    /// [`keys_with_prefix`](Collection::keys_with_prefix) as a [`Stream`](futures_core::Stream)
    /// (see [`keys_async`](Collection::keys_async)).
    pub fn keys_with_prefix_async(&self, prefix: impl Into<String>) -> Streamed<Keys<T>> {
        Streamed::new(Keys::lazy(self.clone(), prefix.into()))
    }

    /// [`iter`](Collection::iter) as a [`Stream`](futures_core::Stream) of `(key, value)`, read
    /// and decoded on persist's worker threads a batch at a time (see [`Streamed`]).
    pub fn iter_async(&self) -> Streamed<Entries<T>>
    where
        T: Clone + Sync,
    {
        self.iter_prefix_async("")
    }

    /// [`iter_prefix`](Collection::iter_prefix) as a [`Stream`](futures_core::Stream) (see
    /// [`iter_async`](Collection::iter_async)).
    pub fn iter_prefix_async(&self, prefix: impl Into<String>) -> Streamed<Entries<T>>
    where
        T: Clone + Sync,
    {
        Streamed::new(Entries::new(Keys::lazy(self.clone(), prefix.into())))
    }
}
