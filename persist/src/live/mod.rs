//! [`Live<T>`]: one state file kept in memory. Reads are lock-free snapshots, changes are saved
//! through the core's durable write (at once, or coalesced by a background saver), and edits
//! other programs make to the file are reloaded through the migration chain and announced.
//!
//! The pieces: `core` holds the value and the rules (what an update, a save, a reload and a
//! rebase do), `worker` a handle's background job (settling file events, polling, the
//! coalescing saver) and its watches, `runtime` the few threads every handle's jobs share,
//! `watcher` the process's one directory watcher, `events` the delivery to `on_change`
//! callbacks and tokio subscribers.

mod core;
mod events;
mod runtime;
pub(crate) mod watcher;
mod worker;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "collection")]
pub(crate) use self::core::EntryPlace;
use self::core::Shared;
pub use self::events::Subscription;
#[cfg(feature = "tokio")]
use crate::Pending;
use crate::settings::Settings;
use crate::{Error, Persisted};

/// When [`Live::update`] writes the file.
///
/// # Examples
///
/// ```no_run
/// # use persist::{Options, Persisted, SavePolicy};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
/// # #[persist(version = 1)]
/// # struct Cursor { line: u64 }
/// use std::time::Duration;
///
/// let live = Options::new()
///     .save_policy(SavePolicy::Coalesce {
///         debounce: Duration::from_millis(50),
///         max_wait: Duration::from_millis(250),
///     })
///     .live::<Cursor>("cursor.json")?;
/// for line in 0..10_000 {
///     live.update(move |cursor| cursor.line = line)?; // published at once, saved a few times
/// }
/// live.flush()?; // the last line is on disk
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SavePolicy {
    /// Every [`update`](Live::update) returns once its change is durable. It runs under the
    /// file's lock (the lock of [`Options::update`](crate::Options::update)) and first reloads the file if another
    /// program changed it, so handles in several processes lose no update. The default.
    #[default]
    Immediate,
    /// [`update`](Live::update) publishes the new value at once and a background saver writes
    /// it: `debounce` after the last change, and never later than `max_wait` after the first
    /// change not yet saved, so a steady stream of changes is still saved once per `max_wait`.
    /// [`flush`](Live::flush) and dropping the last handle save what is pending.
    ///
    /// The pending changes are kept as the closures that made them. When another program
    /// changed the file before they were saved, the handle loads that program's value (at
    /// once, when it sees the change; and again under the file's lock when it saves) and
    /// applies the pending closures to it again, in order, then publishes the result (origin
    /// [`Rebased`](ChangeOrigin::Rebased)) and saves it when due: two processes with
    /// coalesced handles on one file lose no change. A closure may therefore run more than
    /// once, on a newer value each time. A closure that panics on the newer value is dropped
    /// and reported as [`Error::Conflict`], to [`on_change`](Live::on_change) and by the next
    /// [`flush`](Live::flush). [`try_update`](Live::try_update), whose result depends on the
    /// value, is never replayed: it saves at once.
    ///
    /// Pending changes are saved to the file they were made against: when a symbolic link
    /// at the path is pointed at another file, they are saved to the one it pointed to, and
    /// then the new one is loaded (origin [`External`](ChangeOrigin::External)).
    ///
    /// A handle that is never dropped (kept in a `static`, or a process that ends with
    /// [`std::process::exit`]) saves nothing at the end: call [`flush`](Live::flush) before
    /// exiting.
    Coalesce {
        /// How long the saver waits after a change for the next one.
        debounce: Duration,
        /// The longest a change waits to be saved (the loss window on a crash, plus one
        /// save).
        max_wait: Duration,
    },
}

/// The settings of [`Options::live`](crate::Options::live), kept in [`Options`](crate::Options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveSettings {
    pub(crate) policy: SavePolicy,
    pub(crate) watch: bool,
    pub(crate) refresh_every: Option<Duration>,
}

impl LiveSettings {
    pub(crate) const DEFAULT: LiveSettings = LiveSettings {
        policy: SavePolicy::Immediate,
        watch: true,
        refresh_every: None,
    };
}

/// Where a [`LiveEvent`]'s value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeOrigin {
    /// An [`update`](Live::update) through this handle (or a clone of it).
    Local,
    /// Another program (or another handle) changed the file and it was reloaded.
    External,
    /// Another program changed the file while changes of this handle waited to be saved
    /// ([`SavePolicy::Coalesce`]): the value is that program's, with this handle's pending
    /// changes applied to it again.
    Rebased,
}

/// A change of a [`Live`] value, or a failure to follow the file, as delivered to
/// [`Live::on_change`] callbacks and [`Live::subscribe_events`] receivers.
pub struct LiveEvent<T> {
    value: Arc<T>,
    origin: ChangeOrigin,
    error: Option<Arc<Error>>,
}

impl<T> LiveEvent<T> {
    /// The value after the event: the new one, or after an error the value the handle keeps
    /// (the last good one).
    pub fn value(&self) -> &Arc<T> {
        &self.value
    }

    /// Whether this handle or another program made the change (for an error: whose operation
    /// failed, a background save or a reload).
    pub fn origin(&self) -> ChangeOrigin {
        self.origin
    }

    /// What went wrong, if anything: a reload that failed (the file no longer parses, holds a
    /// newer version, fails a migration: the value is unchanged and saves are refused until
    /// the file is readable again), a background save that failed (retried), or an
    /// [`Error::Conflict`].
    pub fn error(&self) -> Option<&Error> {
        self.error.as_deref()
    }
}

impl<T> Clone for LiveEvent<T> {
    fn clone(&self) -> Self {
        LiveEvent {
            value: Arc::clone(&self.value),
            origin: self.origin,
            error: self.error.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for LiveEvent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveEvent")
            .field("value", &self.value)
            .field("origin", &self.origin)
            .field("error", &self.error)
            .finish()
    }
}

/// Counters of what a [`Live`] handle did since it was opened ([`Live::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LiveStats {
    /// Saves that completed.
    pub saves: u64,
    /// Saves that failed.
    pub failed_saves: u64,
    /// Changes of the file by another program that were loaded and published (with pending
    /// changes rebased on them, under [`SavePolicy::Coalesce`]).
    pub reloads: u64,
    /// Reloads that failed (each state of the file is counted once).
    pub failed_reloads: u64,
    /// Changes of the file that left the value as it was (a `chmod`, a rewrite with the same
    /// content): loaded, not published.
    pub unchanged_reloads: u64,
    /// Reads of the file: the load at open, reloads, and the reads of a file that does not
    /// load (once per state of the file in the background; once per call that needs it).
    pub loads: u64,
    /// Pending changes dropped because they failed on another program's newer value
    /// ([`Error::Conflict`]).
    pub conflicts: u64,
    /// Pending values lost: neither the file nor a copy beside it (`<name>.unsaved-<ms>`)
    /// could be written when the last handle was dropped. That happens after the last
    /// `stats()` can be called, so each loss is also reported to
    /// [`on_change`](Live::on_change), as a `tracing` error and by the
    /// `persist_live_lost_total` metric (features `tracing`, `metrics`).
    pub lost: u64,
    /// The slowest save that completed, from its first look at the file to the new file
    /// durable in place. Under [`SavePolicy::Coalesce`] a save is started early by the length
    /// of the save before it, so that changes are on disk `max_wait` after the first one; a
    /// save slower than the one before lands later by the difference.
    pub longest_save: Duration,
}

/// One state file kept in memory: [`get`](Live::get) returns the current value without
/// blocking, [`update`](Live::update) changes it and saves it (see [`SavePolicy`]), and edits
/// other programs make to the file are reloaded through the migration chain.
///
/// Open one with [`Persisted::live`] or [`Options::live`](crate::Options::live). A handle is `Send + Sync`, and
/// cloning it is cheap: clones share the value, the saver and the watcher. Dropping the last
/// one stops watching and saves what is pending. It needs no async runtime; the `_async`
/// methods and [`subscribe`](Live::subscribe) (feature `tokio`) work under any executor.
///
/// # Watching
///
/// The file's directory is watched (inotify, FSEvents, ReadDirectoryChangesW), so that an
/// editor's atomic replace, a `sed -i` or an in-place rewrite are all seen; the reload waits
/// for the writes to settle. This handle's own saves are recognized (by device, inode, size and
/// modification time) and never reloaded. Where file events do not work (network file systems,
/// some containers), [`Options::refresh_every`](crate::Options::refresh_every) polls the file's metadata instead or as well.
///
/// A file that no longer loads (broken JSON, a newer schema version, a failed migration) does
/// not replace the value: the last good value stays, the error is reported to
/// [`on_change`](Live::on_change), and [`update`](Live::update) returns the load error instead
/// of saving over the file, until the file is readable again.
///
/// A file deleted by another program is not a change: the value stays, and the next save
/// writes the file again.
///
/// # Examples
///
/// ```
/// use persist::Persisted;
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Settings {
///     font_size: u32,
/// }
///
/// # fn main() -> Result<(), persist::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("settings.json");
/// let live = Settings::live(&path)?;
/// let _guard = live.on_change(|event| println!("font size {}", event.value().font_size));
/// let after = live.update(|settings| settings.font_size += 1)?; // durable when it returns
/// assert_eq!(after.font_size, 1);
/// assert_eq!(live.get().font_size, 1);
/// assert_eq!(Settings::load(&path)?.font_size, 1);
/// # Ok(())
/// # }
/// ```
pub struct Live<T: Persisted + Send + Sync + 'static> {
    handle: Arc<worker::Handle<T>>,
}

impl<T: Persisted + Send + Sync + 'static> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<T: Persisted + Send + Sync + 'static> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("path", &self.shared().path())
            .field("policy", &self.shared().policy())
            .finish_non_exhaustive()
    }
}

impl<T: Persisted + Default + Send + Sync + 'static> Live<T> {
    /// Opens `path` as a live value with the default [`Options`](crate::Options): loads it (or
    /// `T::default()` if there is no file, which is not written until the first update)
    /// through the migration chain, and starts watching it. The same as
    /// [`Persisted::live`](crate::Persisted::live); [`Options::live`](crate::Options::live)
    /// takes options.
    ///
    /// # Errors
    ///
    /// See [`Options::live`](crate::Options::live).
    pub fn open(path: impl AsRef<Path>) -> Result<Live<T>, Error> {
        crate::Options::new().live(path)
    }
}

impl<T: Persisted + Send + Sync + 'static> Live<T> {
    fn shared(&self) -> &Arc<Shared<T>> {
        &self.handle.shared
    }

    /// The current value: a snapshot that later changes do not affect. Never blocks and never
    /// touches the file.
    pub fn get(&self) -> Arc<T> {
        self.shared().get()
    }

    /// Applies `change` to a copy of the current value and publishes the result. With
    /// [`SavePolicy::Immediate`] it is saved first (under the file's lock, after reloading
    /// the file if another program changed it) and returned once durable; with
    /// [`SavePolicy::Coalesce`] it is published at once and saved by the background saver,
    /// and `change` is kept until then: if another program changes the file first, `change`
    /// runs again on that program's value (see [`SavePolicy::Coalesce`]). So `change` should
    /// say what to do (`count += 1`), not carry a value computed from an older one; to act on
    /// what a change found, use [`try_update`](Live::try_update), which saves at once.
    ///
    /// `T: Clone`: the change is made to a copy, while readers keep the value they hold.
    ///
    /// If `change` panics, the panic goes on to the caller and the published value is
    /// unchanged.
    ///
    /// # Panics
    ///
    /// When called from inside an update closure of the same handle (it would wait for
    /// itself).
    ///
    /// # Errors
    ///
    /// The errors of [`Options::update`](crate::Options::update) (lock, load, save) with `Immediate`; with either
    /// policy, the load error while the file holds something it cannot read (nothing is
    /// published or saved then). A value that failed to save is not published.
    pub fn update(&self, change: impl FnMut(&mut T) + Send + 'static) -> Result<Arc<T>, Error>
    where
        T: Clone,
    {
        self.shared().update(change)
    }

    /// [`update`](Live::update) with a change that may fail or decide not to save, as
    /// [`Persisted::try_update`]: an `Err` writes and publishes nothing and is returned as it
    /// is; `Ok(r)` returns `r` once the change is saved.
    ///
    /// It saves at once under either policy, under the file's lock and after reloading what
    /// another program saved, together with what [`SavePolicy::Coalesce`] has pending: `r` is
    /// computed from the value saved, so it is never stale (a coalesced change could run again
    /// on a newer value and do something else than what `r` says). `change` runs once, or
    /// again if another program replaced the file while the value was written.
    ///
    /// # Panics
    ///
    /// When called from inside an update closure of the same handle.
    ///
    /// # Errors
    ///
    /// The closure's error; persist's errors (those of [`update`](Live::update) with
    /// `Immediate`) converted into it (`E: From<persist::Error>`, as
    /// [`BoxError`](crate::BoxError) and `persist::Error` are).
    ///
    /// # Examples
    ///
    /// ```
    /// # use persist::{Options, Persisted, SavePolicy};
    /// # use std::time::Duration;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Queue { jobs: Vec<String> }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("queue.json");
    /// let queue = Options::new()
    ///     .save_policy(SavePolicy::Coalesce {
    ///         debounce: Duration::from_millis(50),
    ///         max_wait: Duration::from_millis(250),
    ///     })
    ///     .live::<Queue>(&path)?;
    /// queue.update(|queue| queue.jobs.push("a".into()))?; // published, saved later
    /// // Saved now, with the push: the job taken is the one the file no longer holds.
    /// let next: Result<String, persist::BoxError> =
    ///     queue.try_update(|queue| queue.jobs.pop().ok_or_else(|| "no job waits".into()));
    /// assert_eq!(next.unwrap(), "a");
    /// assert!(Queue::load(&path)?.jobs.is_empty());
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn try_update<R, E>(&self, change: impl FnMut(&mut T) -> Result<R, E>) -> Result<R, E>
    where
        T: Clone,
        E: From<Error>,
    {
        self.shared().try_update(change).map(|(result, _)| result)
    }

    /// Saves what is pending ([`SavePolicy::Coalesce`]) and returns once it is durable. With
    /// `Immediate` there is never anything pending.
    ///
    /// # Errors
    ///
    /// The save's error, or the load error when another program left the file unreadable (the
    /// changes stay pending and are retried); or, once the rest is saved, an
    /// [`Error::Conflict`] for a change a rebase dropped since the last flush.
    ///
    /// # Panics
    ///
    /// When called from inside an update closure of the same handle.
    pub fn flush(&self) -> Result<(), Error> {
        self.shared().flush()
    }

    /// [`update`](Live::update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`update`](Live::update).
    #[cfg(feature = "tokio")]
    pub fn update_async(&self, change: impl FnMut(&mut T) + Send + 'static) -> Pending<Arc<T>>
    where
        T: Clone,
    {
        let live = self.clone();
        Pending::new(self.shared().path().to_owned(), move |_| {
            live.update(change)
        })
    }

    /// [`try_update`](Live::try_update) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`try_update`](Live::try_update).
    #[cfg(feature = "tokio")]
    pub fn try_update_async<R, E>(
        &self,
        change: impl FnMut(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Pending<R, E>
    where
        T: Clone,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let live = self.clone();
        Pending::new(self.shared().path().to_owned(), move |_| {
            live.try_update(change)
        })
    }

    /// [`flush`](Live::flush) on persist's worker threads.
    ///
    /// # Errors
    ///
    /// See [`flush`](Live::flush).
    #[cfg(feature = "tokio")]
    pub fn flush_async(&self) -> Pending<()> {
        let live = self.clone();
        Pending::new(self.shared().path().to_owned(), move |_| live.flush())
    }

    /// Calls `callback` with every change of the value and every failure to follow the file
    /// (a reload, a background save, a conflict), until the returned guard is dropped.
    ///
    /// Callbacks run one after another on persist's shared background threads, never on the
    /// thread that called [`update`](Live::update), so a slow one delays only later callbacks
    /// (of this handle: the pool adds a thread when all are busy). Each event
    /// is delivered once, in order; when callbacks fall more than 1,024 events behind,
    /// intermediate values are skipped (never an error, never the newest value). A panic in a
    /// callback is caught and the callback stays registered.
    pub fn on_change(
        &self,
        callback: impl Fn(&LiveEvent<T>) + Send + Sync + 'static,
    ) -> Subscription {
        self.shared().events().on_change(callback)
    }

    /// A tokio watch receiver of the value: `changed().await` wakes on each new value (a slow
    /// receiver sees the newest and skips the ones in between). Errors are not values: see
    /// [`subscribe_events`](Live::subscribe_events) or [`on_change`](Live::on_change).
    #[cfg(feature = "tokio")]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<T>> {
        self.shared().events().subscribe()
    }

    /// A tokio watch receiver of [`LiveEvent`]s, errors included; it starts at the current
    /// value (origin [`Local`](ChangeOrigin::Local), no error).
    #[cfg(feature = "tokio")]
    pub fn subscribe_events(&self) -> tokio::sync::watch::Receiver<LiveEvent<T>> {
        self.shared().events().subscribe_events()
    }

    /// What this handle did so far.
    pub fn stats(&self) -> LiveStats {
        self.shared().stats()
    }

    /// The path of the file, as given. (The handle made it absolute when it opened, so a
    /// later change of the working directory does not move the file.)
    pub fn path(&self) -> &Path {
        self.shared().given()
    }
}

/// Opens the collection entry `entry` as a [`Live`] value (`Collection::live`): `follow` is
/// given the handle as the feed of the entry's collection is to call it on each change.
#[cfg(feature = "collection")]
pub(crate) fn open_entry<T: Persisted + Default + Send + Sync + 'static>(
    settings: Settings,
    live: LiveSettings,
    entry: Arc<dyn core::EntryPlace<T>>,
    follow: impl FnOnce(std::sync::Weak<dyn watcher::Watched>) -> Result<(), Error>,
) -> Result<Live<T>, Error> {
    let shared = Shared::open_entry(settings, live, entry)?;
    let handle = worker::Handle::start(shared, true)?;
    let watched: Arc<dyn watcher::Watched> = Arc::clone(&handle.shared) as _;
    follow(Arc::downgrade(&watched))?;
    // A change made between the load and the start of the feed has no event: compare.
    if handle.shared.looks_changed() {
        handle.shared.note_event();
    }
    Ok(Live {
        handle: Arc::new(handle),
    })
}

/// Opens `path` as a [`Live`] value with these settings ([`Options::live`](crate::Options::live)).
pub(crate) fn open<T: Persisted + Default + Send + Sync + 'static>(
    settings: Settings,
    live: LiveSettings,
    path: &Path,
) -> Result<Live<T>, Error> {
    let shared = Shared::open(settings, live, path)?;
    let handle = worker::Handle::start(shared, live.watch)?;
    Ok(Live {
        handle: Arc::new(handle),
    })
}
