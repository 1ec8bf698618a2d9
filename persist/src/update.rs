//! Read-modify-write of a state file under its lock: [`Options::update`] and its forms (a
//! fallible change, an explicit initial value) and their `_async` twins. One sequence behind all
//! of them: lock, load (or start from the initial value), change, save, unlock.

use std::path::Path;

#[cfg(feature = "tokio")]
use crate::Pending;
use crate::audit::AuditOp;
use crate::telemetry::{Facts, Operation, outcome_of};
use crate::{Error, Options, Persisted, lock};

impl Options {
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
        self.modify(path.as_ref(), initial, |value| {
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
        self.modify(path.as_ref(), initial, change)
            .map(|(_, result)| result)
    }

    /// The one read-modify-write: lock, load or `initial()`, `change`, save unless `change`
    /// failed, unlock (when the guard drops, also on a panic in `change`). With
    /// [`Options::retry`], taking the lock and loading are retried together, and the save by
    /// itself (inside [`save`](Options::save)); `change` runs once.
    fn modify<T: Persisted, R, E: From<Error>>(
        &self,
        path: &Path,
        initial: impl FnOnce() -> T,
        change: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<(T, R), E> {
        let operation = Operation::start("update", path);
        let mut outcome = "ok";
        // The nested load and save are operations of their own, with the versions and sizes.
        let facts = Facts {
            to: Some(T::VERSION),
            ..Facts::default()
        };
        let failed = |outcome: &mut &'static str, error: Error| {
            *outcome = outcome_of(&error);
            E::from(error)
        };
        let result = operation.in_span(|| {
            let (_lock, loaded) = self
                .retries()
                .run(|| {
                    let lock = lock::exclusive(path, self.lock_wait())?;
                    match self.load(path) {
                        Err(Error::NotFound { .. }) => Ok((lock, None)),
                        loaded => Ok((lock, Some(loaded?))),
                    }
                })
                .map_err(|error| failed(&mut outcome, error))?;
            let mut value = match loaded {
                Some(value) => value,
                None => initial(),
            };
            let result = change(&mut value).inspect_err(|_| outcome = "refused")?;
            self.save_as(&value, path, AuditOp::Update)
                .map_err(|error| failed(&mut outcome, error))?;
            Ok((value, result))
        });
        operation.end(outcome, None, facts);
        result
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
}
