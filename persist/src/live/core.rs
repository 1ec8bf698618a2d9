//! The value of a [`Live`](super::Live) handle and its rules: what an update, a save, a reload
//! and a rebase do. Every byte goes through the single-file load and save: the migration chain,
//! the layers and the durable write are the core's.
//!
//! A [`SavePolicy::Coalesce`] handle keeps its pending changes as the closures that made them,
//! in order. When another program changed the file before they were saved, the handle loads
//! that program's value and applies them again on top (a rebase), so nothing either side did
//! is lost. The path is looked up again (a symbolic link followed as it is now) before every
//! reload and save; pending changes are saved to the file they were made against (the one the
//! handle knew then), and a link pointed elsewhere is then loaded as another program's change.
//!
//! No user value (a closure that holds a handle, say) is dropped while a lock is held: the
//! closures a save or a rebase is done with go to a graveyard emptied once every lock is
//! released, so that a closure holding the last handle can drop it.
//!
//! Two locks, never held the other way round:
//! - `io` serializes this handle's file work (saves, reloads) inside the process; the
//!   inter-process lock file is taken under it where a save needs it;
//! - `state` guards the bookkeeping and publishing, held for short moments (and while an
//!   update's closure runs), never across file work.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::events::Events;
use super::runtime::{self, JobId};
use super::watcher::{Registration, Watched};
use super::{ChangeOrigin, LiveEvent, LiveSettings, LiveStats, SavePolicy};
use crate::error::{BoxError, IoOp};
use crate::settings::Settings;
use crate::shell::backup;
use crate::shell::commit::{Precondition, Target};
use crate::shell::dir::Dir;
use crate::shell::lock;
use crate::shell::names::Sibling;
use crate::shell::{AuditOp, io_error, parent_dir};
use crate::{Error, Persisted, file};

/// How long the file must be quiet after an event before it is reloaded: an editor's write
/// sequence (backup, truncate, write, close) is over by then, and a reload in the middle of an
/// in-place write would read a torn document.
pub(super) const SETTLE: Duration = Duration::from_millis(40);

/// The longest a reload waits for a file that keeps changing.
pub(super) const MAX_SETTLE: Duration = Duration::from_millis(500);

/// How many times a load is read again when the file changed while it was read.
const UNSETTLED_RETRIES: u32 = 10;

/// Takes a lock whatever a panicking holder left: a panic in an update closure leaves nothing
/// half-done in the guarded data (the value is published only after the closure returned).
pub(super) fn lock<D>(mutex: &Mutex<D>) -> MutexGuard<'_, D> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What tells one state of the file from another: a save replaces the inode, an in-place
/// write changes the size or the modification time (nanoseconds where the file system keeps
/// them), a `chmod` the change time. Taken through symbolic links: a link pointed elsewhere
/// is another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

/// The identity of the file at `target` (links followed) now, `None` when there is none.
fn file_id(target: &Path, path: &Path) -> Result<Option<FileId>, Error> {
    match std::fs::metadata(target) {
        Ok(metadata) => Ok(Some(FileId::of(&metadata))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, IoOp::Metadata)(error)),
    }
}

impl FileId {
    /// The identity of the file this handle just wrote, from the file itself: a program that
    /// replaced it since is a change the next look sees (a look at the path could take that
    /// program's file for this handle's).
    fn written(file: &std::fs::File) -> Option<FileId> {
        file.metadata().ok().map(|metadata| FileId::of(&metadata))
    }

    #[cfg(unix)]
    fn of(metadata: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: metadata.modified().ok(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId {
            device: 0,
            inode: 0,
            size: metadata.len(),
            modified: metadata.modified().ok(),
            changed: (0, 0),
        }
    }
}

/// What tells one state of a live value's place from another: a file's identity, or a
/// collection entry's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stamp {
    File(FileId),
    /// The entry's tag, as its store tells it.
    Entry(String),
}

/// A live value kept in a collection's entry instead of a file (made by `Collection::live`):
/// read and written whole, each write a compare-and-swap on the entry's tag (its text).
#[cfg_attr(not(feature = "collection"), allow(dead_code))]
pub(crate) trait EntryPlace<T>: Send + Sync {
    /// Where the entry is: for errors and [`Live::path`](super::Live::path).
    fn location(&self) -> PathBuf;
    /// The entry's tag now; `None` when there is none.
    fn tag(&self) -> Result<Option<String>, Error>;
    /// The entry's value (migrated, as a get reads it) with its tag; `None` when there is none.
    fn load(&self) -> Result<Option<(T, String)>, Error>;
    /// Stores `value` if the entry's tag is still `expected` (`None`: if there is no entry):
    /// the new tag, or `None` when another writer got there first (nothing written).
    fn save(&self, value: &T, expected: Option<&str>) -> Result<Option<String>, Error>;
}

/// Where a live value is kept, as [`Shared::new`] takes it.
struct Place<T> {
    /// The path as given (an entry's location).
    given: PathBuf,
    /// The path made absolute.
    path: PathBuf,
    /// The file the path names (a link followed), or the entry's location.
    target: PathBuf,
    entry: Option<Arc<dyn EntryPlace<T>>>,
}

/// A pending change, as it can be applied again to a newer value (to a copy of it: a panic
/// leaves the value as it was).
type Replay<T> = Box<dyn FnMut(&mut T) + Send>;

/// A change of a [`SavePolicy::Coalesce`] handle not saved yet.
struct Change<T> {
    /// The update's number: a save of the value after it drops it.
    generation: u64,
    replay: Replay<T>,
}

/// The longest a failing background save waits before it is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The bookkeeping under the `state` lock.
pub(super) struct State<T> {
    /// The file as this handle last loaded or saved it (`None`: there was none).
    seen: Option<Stamp>,
    /// Where that file is: the path, or where a link at it pointed then. Pending changes
    /// were made against its value and are saved there.
    target: PathBuf,
    /// The state of the file whose load failed, while it is there.
    broken: Option<Stamp>,
    /// The broken state whose error was delivered to the observers.
    reported: Option<Stamp>,
    /// The changes not saved yet, oldest first ([`SavePolicy::Coalesce`]).
    pending: Vec<Change<T>>,
    /// Counts the updates.
    generation: u64,
    /// When the oldest unsaved change was made, and the newest.
    dirty_since: Option<Instant>,
    last_change: Option<Instant>,
    /// After a failed background save: not before then; and the wait after the next
    /// failure (doubled each time, up to [`MAX_RETRY_DELAY`]).
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// How long the last save took: a save due by `max_wait` starts that much earlier.
    save_took: Duration,
    /// The last file event not handled yet, and the first of its burst.
    pub(super) event_at: Option<Instant>,
    pub(super) event_first: Option<Instant>,
    /// The next look at the file's metadata ([`Options::refresh_every`](crate::Options::refresh_every)).
    pub(super) next_poll: Option<Instant>,
    /// Changes dropped by a rebase, for the next [`flush`](Shared::flush) to return.
    rejected: Vec<Arc<dyn std::error::Error + Send + Sync>>,
    /// The last handle is gone: the background stops.
    pub(super) closing: bool,
}

impl<T> State<T> {
    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Counters behind [`LiveStats`].
#[derive(Default)]
struct Counters {
    saves: AtomicU64,
    failed_saves: AtomicU64,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    unchanged_reloads: AtomicU64,
    loads: AtomicU64,
    conflicts: AtomicU64,
    lost: AtomicU64,
    /// The slowest save, in nanoseconds.
    longest_save: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What [`Shared::look`] found on disk.
enum Look<T> {
    /// The file is as this handle last saw it.
    Unchanged,
    /// There is no file (any more).
    Missing,
    /// Another program changed the file: its value, and its identity.
    Changed(T, Stamp),
    /// The file does not load (read now; the error is the caller's to return).
    Broken(Error),
    /// The file is in the state whose load failed and was reported: not read again.
    KnownBroken,
}

/// Why a save of pending changes did not happen.
pub(super) enum SaveFailure {
    /// The file on disk does not load: nothing was written over it.
    Load(Error),
    /// The file is still in a state that was found not to load and reported (background
    /// saves only: a save a caller asked for reads it again).
    KnownBroken,
    /// The save itself failed.
    Save(Error),
}

/// Whether two values are the same as persist would write them.
fn same<T: Persisted>(one: &T, other: &T) -> bool {
    match (serde_json::to_vec(one), serde_json::to_vec(other)) {
        (Ok(one), Ok(other)) => one == other,
        _ => false,
    }
}

thread_local! {
    /// The handles whose update closures run on this thread now (their addresses).
    static CHANGING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks an update closure of a handle as running on this thread, until dropped.
struct Changing(usize);

impl Drop for Changing {
    fn drop(&mut self) {
        CHANGING.with(|changing| {
            let mut changing = changing.borrow_mut();
            if let Some(at) = changing.iter().rposition(|id| *id == self.0) {
                changing.remove(at);
            }
        });
    }
}

/// Everything the handles of one [`Live`](super::Live) and its background share.
pub(super) struct Shared<T> {
    /// The path as given, for [`Live::path`](super::Live::path).
    given: PathBuf,
    /// The path made absolute at open: a later change of the working directory does not
    /// move the file.
    path: PathBuf,
    settings: Settings,
    policy: SavePolicy,
    pub(super) refresh_every: Option<Duration>,
    current: ArcSwap<T>,
    state: Mutex<State<T>>,
    io: Mutex<()>,
    /// Changes done with, dropped once no lock is held (see the module's documentation).
    graveyard: Mutex<Vec<Change<T>>>,
    events: Events<T>,
    counters: Counters,
    /// The background job, when the handle has one.
    pub(super) job: OnceLock<JobId>,
    /// The directories watched: each link on the way to the file and the file's own, with
    /// the name looked for in it.
    pub(super) watches: Mutex<Vec<(PathBuf, std::ffi::OsString, Registration)>>,
    /// This handle as the watcher calls it, when it watches.
    pub(super) watched: OnceLock<Weak<dyn Watched>>,
    /// The collection entry the value is kept in, when it is not a file.
    entry: Option<Arc<dyn EntryPlace<T>>>,
}

impl<T: Persisted + Send + Sync + 'static> Shared<T> {
    /// Loads the file (or starts from the default) and sets up the bookkeeping.
    pub(super) fn open(
        settings: Settings,
        live: LiveSettings,
        given: &Path,
    ) -> Result<Arc<Self>, Error>
    where
        T: Default,
    {
        let path = std::path::absolute(given).map_err(io_error(given, IoOp::Metadata))?;
        let path = path.as_path();
        // Refuses what is not a regular file (a FIFO, a directory) without opening it.
        let target = Target::locate(path)?.real_path();
        let counters = Counters::default();
        let mut attempts = 0;
        let (value, seen) = loop {
            let before = file_id(path, path)?;
            bump(&counters.loads);
            let loaded = file::load_or_default::<T>(&settings, path);
            let after = file_id(path, path)?;
            match loaded {
                // A complete document, even if it is being replaced: the replacement is a
                // change the background will see (the identity kept is the one read).
                Ok(value) => break (value, before),
                Err(error) if before == after || attempts == UNSETTLED_RETRIES => {
                    return Err(error);
                }
                Err(_) => {
                    attempts += 1;
                    std::thread::sleep(SETTLE);
                }
            }
        };
        let place = Place {
            given: given.to_owned(),
            path: path.to_owned(),
            target,
            entry: None,
        };
        Ok(Shared::new(
            place,
            settings,
            live,
            value,
            seen.map(Stamp::File),
            counters,
        ))
    }

    /// Loads the collection entry `entry` (or starts from the default) and sets up the
    /// bookkeeping.
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    pub(super) fn open_entry(
        settings: Settings,
        live: LiveSettings,
        entry: Arc<dyn EntryPlace<T>>,
    ) -> Result<Arc<Self>, Error>
    where
        T: Default,
    {
        let location = entry.location();
        let counters = Counters::default();
        bump(&counters.loads);
        let (value, seen) = match entry.load()? {
            Some((value, tag)) => (value, Some(Stamp::Entry(tag))),
            None => (T::default(), None),
        };
        let place = Place {
            given: location.clone(),
            path: location.clone(),
            target: location,
            entry: Some(entry),
        };
        Ok(Shared::new(place, settings, live, value, seen, counters))
    }

    /// The handle's shared part, with `value` loaded from `place` (in the state `seen`).
    fn new(
        place: Place<T>,
        settings: Settings,
        live: LiveSettings,
        value: T,
        seen: Option<Stamp>,
        counters: Counters,
    ) -> Arc<Self> {
        let value = Arc::new(value);
        Arc::new(Shared {
            given: place.given,
            path: place.path,
            settings,
            policy: live.policy,
            refresh_every: live.refresh_every,
            current: ArcSwap::new(Arc::clone(&value)),
            state: Mutex::new(State {
                seen,
                target: place.target,
                broken: None,
                reported: None,
                pending: Vec::new(),
                generation: 0,
                dirty_since: None,
                last_change: None,
                retry_at: None,
                retry_delay: Duration::ZERO,
                save_took: Duration::ZERO,
                event_at: None,
                event_first: None,
                next_poll: live.refresh_every.map(|period| Instant::now() + period),
                rejected: Vec::new(),
                closing: false,
            }),
            io: Mutex::new(()),
            graveyard: Mutex::new(Vec::new()),
            events: Events::new(value),
            counters,
            job: OnceLock::new(),
            watches: Mutex::new(Vec::new()),
            watched: OnceLock::new(),
            entry: place.entry,
        })
    }

    /// Whether the value is kept in a collection entry (not a file).
    pub(super) fn is_entry(&self) -> bool {
        self.entry.is_some()
    }

    /// The state of the value's place now (`real`: where the file is), `None` when there is
    /// nothing there.
    fn stamp(&self, real: &Path) -> Result<Option<Stamp>, Error> {
        match &self.entry {
            Some(entry) => Ok(entry.tag()?.map(Stamp::Entry)),
            None => Ok(file_id(real, &self.path)?.map(Stamp::File)),
        }
    }

    /// Loads the value at `real` (the file there, or the entry) through the migration chain,
    /// with the entry's tag as it was read.
    fn load_at(&self, real: &Path) -> Result<(T, Option<Stamp>), Error> {
        match &self.entry {
            Some(entry) => match entry.load()? {
                Some((value, tag)) => Ok((value, Some(Stamp::Entry(tag)))),
                None => Err(Error::NotFound {
                    path: self.path.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                }),
            },
            None => Ok((file::load::<T>(&self.settings, real)?, None)),
        }
    }

    /// The file's lock at `real`, for a save; nothing for an entry, whose writes are
    /// compare-and-swap.
    fn lock_place(&self, real: &Path) -> Result<Option<lock::LockGuard>, Error> {
        match &self.entry {
            Some(_) => Ok(None),
            None => lock::exclusive(real, self.settings.disk.lock_timeout).map(Some),
        }
    }

    /// Whether a save that found the place changed under it is tried again (on the newer
    /// value): a file a few times (its lock keeps persist's writers out; an editor that
    /// does not take it may still race), an entry for as long as the lock timeout allows, as
    /// a collection's update does, after a random wait.
    fn again(&self, attempts: &mut u32, started: Instant) -> bool {
        *attempts += 1;
        if self.entry.is_none() {
            return *attempts <= UNSETTLED_RETRIES;
        }
        let patience = self.settings.disk.lock_timeout;
        if patience.is_some_and(|patience| started.elapsed() >= patience) {
            return false;
        }
        let backoff = Duration::from_millis(1 << (*attempts).min(7));
        std::thread::sleep(crate::retry::full_jitter(backoff));
        true
    }

    /// The path as given.
    pub(super) fn given(&self) -> &Path {
        &self.given
    }

    /// The path made absolute.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn policy(&self) -> SavePolicy {
        self.policy
    }

    pub(super) fn events(&self) -> &Events<T> {
        &self.events
    }

    pub(super) fn lock_state(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    pub(super) fn get(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub(super) fn stats(&self) -> LiveStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LiveStats {
            saves: read(&self.counters.saves),
            failed_saves: read(&self.counters.failed_saves),
            reloads: read(&self.counters.reloads),
            failed_reloads: read(&self.counters.failed_reloads),
            unchanged_reloads: read(&self.counters.unchanged_reloads),
            loads: read(&self.counters.loads),
            conflicts: read(&self.counters.conflicts),
            lost: read(&self.counters.lost),
            longest_save: Duration::from_nanos(read(&self.counters.longest_save)),
        }
    }

    /// Wakes the background job, if the handle has one.
    fn wake(&self) {
        if let Some(job) = self.job.get() {
            runtime::wake(*job);
        }
    }

    /// This handle's number for [`CHANGING`].
    fn id(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }

    /// Panics when an update closure of this handle runs on this thread: the call would wait
    /// for the lock that closure's update holds, for ever.
    fn refuse_reentry(&self, what: &str) {
        let inside = CHANGING.with(|changing| changing.borrow().contains(&self.id()));
        assert!(
            !inside,
            "persist: Live::{what} was called from inside an update closure of the same \
             handle, which would wait for itself; call it after the closure returns"
        );
    }

    /// Marks an update closure of this handle as running on this thread.
    fn changing(&self) -> Changing {
        CHANGING.with(|changing| changing.borrow_mut().push(self.id()));
        Changing(self.id())
    }

    /// Keeps `changes` for [`sweep`](Shared::sweep). Never drops them: a lock may be held.
    fn bury(&self, changes: impl IntoIterator<Item = Change<T>>) {
        lock(&self.graveyard).extend(changes);
    }

    /// Drops the changes done with. Called with no lock held: a closure may hold the last
    /// handle, whose drop saves and takes the locks.
    pub(super) fn sweep(&self) {
        let dead = std::mem::take(&mut *lock(&self.graveyard));
        drop(dead);
    }

    /// Where the file is now: the path, or the file a symbolic link at it points to (looked
    /// up again every time, so a link pointed elsewhere is followed).
    fn resolve(&self) -> Result<PathBuf, Error> {
        if self.entry.is_some() {
            return Ok(self.path.clone());
        }
        Ok(Target::locate(&self.path)?.real_path())
    }

    /// Makes `value` the current value and tells the observers. Called under `state`, so
    /// that observers see values in the order they were published.
    fn publish(&self, _state: &mut State<T>, value: Arc<T>, origin: ChangeOrigin) {
        self.current.store(Arc::clone(&value));
        self.events.send(LiveEvent {
            value,
            origin,
            error: None,
        });
    }

    /// Tells the observers about `error`; the value stays.
    fn report(&self, _state: &mut State<T>, origin: ChangeOrigin, error: Error) {
        self.events.send(LiveEvent {
            value: self.current.load_full(),
            origin,
            error: Some(Arc::new(error)),
        });
    }

    /// A file event arrived (or a poll saw a change): the background reloads once the file
    /// has been quiet for [`SETTLE`].
    pub(super) fn note_event(&self) {
        let now = Instant::now();
        let mut state = self.lock_state();
        let first = state.event_at.is_none();
        state.event_at = Some(now);
        state.event_first.get_or_insert(now);
        drop(state);
        // Otherwise the job already knows when to look.
        if first {
            self.wake();
        }
    }

    /// When the pending changes are due to be saved, if any are ([`SavePolicy::Coalesce`]).
    /// Never while the file is in a state that does not load: a change of the file wakes the
    /// handle again.
    pub(super) fn save_deadline(&self, state: &State<T>) -> Option<Instant> {
        let SavePolicy::Coalesce { debounce, max_wait } = self.policy else {
            return None;
        };
        if !state.pending() || state.broken.is_some() {
            return None;
        }
        let quiet = state.last_change? + debounce;
        // Started early by the length of a save, so that it is on disk by `max_wait`.
        let latest = state.dirty_since? + max_wait.saturating_sub(state.save_took);
        let due = quiet.min(latest);
        Some(state.retry_at.map_or(due, |retry| due.max(retry)))
    }

    /// [`Live::update`](super::Live::update): saved now ([`SavePolicy::Immediate`]), or
    /// published now and kept for the saver ([`SavePolicy::Coalesce`]).
    pub(super) fn update<F>(&self, mut change: F) -> Result<Arc<T>, Error>
    where
        T: Clone,
        F: FnMut(&mut T) + Send + 'static,
    {
        self.refuse_reentry("update");
        let result = match self.policy {
            SavePolicy::Immediate => self
                .update_now(|value: &mut T| {
                    change(value);
                    Ok::<(), Error>(())
                })
                .map(|((), value)| value),
            SavePolicy::Coalesce { .. } => self.update_later(change),
        };
        self.sweep();
        result
    }

    /// [`Live::try_update`](super::Live::try_update): saved now under either policy (with
    /// whatever is pending), so that what the closure returned was computed from the value
    /// saved.
    pub(super) fn try_update<R, E, F>(&self, change: F) -> Result<(R, Arc<T>), E>
    where
        T: Clone,
        F: FnMut(&mut T) -> Result<R, E>,
        E: From<Error>,
    {
        self.refuse_reentry("try_update");
        let result = self.update_now(change);
        self.sweep();
        result
    }

    /// Under the file's lock: reload what another program saved (rebasing pending changes on
    /// it), change, save (with what is pending), publish.
    fn update_now<R, E>(
        &self,
        mut change: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Result<(R, Arc<T>), E>
    where
        T: Clone,
        E: From<Error>,
    {
        let _io = lock(&self.io);
        match self.save_moved(true) {
            Ok(()) => {}
            Err(SaveFailure::Load(error) | SaveFailure::Save(error)) => return Err(error.into()),
            Err(SaveFailure::KnownBroken) => unreachable!("an update reads the file again"),
        }
        let real = self.resolve()?;
        let _lock = self.lock_place(&real).inspect_err(|_| {
            bump(&self.counters.failed_saves);
        })?;
        let (mut attempts, started) = (0, Instant::now());
        loop {
            match self.look(&real, true)? {
                Look::Unchanged | Look::Missing | Look::KnownBroken => {}
                Look::Changed(theirs, id) => self.rebase(theirs, id, &real),
                Look::Broken(error) => return Err(error.into()),
            }
            let (mut value, generation) = {
                let state = self.lock_state();
                (T::clone(&self.current.load()), state.generation)
            };
            let result = {
                let _changing = self.changing();
                change(&mut value)?
            };
            match self.save_unless_changed(&value, &real) {
                Ok(written) => {
                    bump(&self.counters.saves);
                    let value = Arc::new(value);
                    let mut state = self.lock_state();
                    self.accept(&mut state, written, &real);
                    self.saved(&mut state, generation);
                    state.generation += 1;
                    // Changes queued while this one was saved, applied to it again.
                    let (published, rejected) = if state.pending() {
                        let mut published = T::clone(&value);
                        let rejected = self.replay_onto(&mut state, &mut published);
                        (Arc::new(published), rejected)
                    } else {
                        (Arc::clone(&value), Vec::new())
                    };
                    self.publish(&mut state, published, ChangeOrigin::Local);
                    self.reject(&mut state, rejected);
                    return Ok((result, value));
                }
                // Another program replaced the file while this value was written: again,
                // on its value.
                Err(Error::Contended { .. }) if self.again(&mut attempts, started) => {}
                Err(error) => {
                    bump(&self.counters.failed_saves);
                    return Err(error.into());
                }
            }
        }
    }

    /// Saves `value` to `real` unless the file there is no longer the one this handle last
    /// saw: checked once the new file is durable, right before the rename, so that an editor
    /// that does not take the file's lock loses its change only if it lands in that instant.
    /// An entry is written if its tag is still the one this handle saw (compare-and-swap);
    /// [`Error::Contended`] when it is not. Returns the state written.
    fn save_unless_changed(&self, value: &T, real: &Path) -> Result<Option<Stamp>, Error> {
        let expected = self.lock_state().seen.clone();
        if let Some(entry) = &self.entry {
            let tag = match &expected {
                Some(Stamp::Entry(tag)) => Some(tag.as_str()),
                _ => None,
            };
            return match entry.save(value, tag)? {
                Some(tag) => Ok(Some(Stamp::Entry(tag))),
                None => Err(Error::Contended {
                    path: self.path.clone(),
                    attempts: 1,
                }),
            };
        }
        let expected = match expected {
            Some(Stamp::File(id)) => Some(id),
            _ => None,
        };
        let unchanged = || file_id(real, &self.path).ok().flatten() == expected;
        let written = file::save_file(
            &self.settings,
            value,
            real,
            AuditOp::Save,
            Some(Precondition(&unchanged)),
        )?;
        Ok(FileId::written(&written).map(Stamp::File))
    }

    /// [`SavePolicy::Coalesce`]: change and publish now, keep the change for the saver (and
    /// for a rebase).
    fn update_later<F>(&self, mut change: F) -> Result<Arc<T>, Error>
    where
        T: Clone,
        F: FnMut(&mut T) + Send + 'static,
    {
        if self.lock_state().broken.is_some() {
            // The file did not load when last looked at: look again, refuse while it still
            // does not.
            let _io = lock(&self.io);
            let real = self.resolve()?;
            match self.look(&real, true)? {
                Look::Unchanged | Look::Missing | Look::KnownBroken => {}
                Look::Changed(theirs, id) => self.rebase(theirs, id, &real),
                Look::Broken(error) => return Err(error),
            }
        }
        let mut state = self.lock_state();
        let mut value = T::clone(&self.current.load());
        {
            let _changing = self.changing();
            change(&mut value);
        }
        let value = Arc::new(value);
        let now = Instant::now();
        state.generation += 1;
        let generation = state.generation;
        state.pending.push(Change {
            generation,
            replay: Box::new(move |value: &mut T| {
                let mut copy = T::clone(value);
                change(&mut copy);
                *value = copy;
            }),
        });
        state.last_change = Some(now);
        let first = state.dirty_since.is_none();
        state.dirty_since.get_or_insert(now);
        self.publish(&mut state, Arc::clone(&value), ChangeOrigin::Local);
        drop(state);
        // Otherwise the saver already knows when the change is due.
        if first {
            self.wake();
        }
        Ok(value)
    }

    /// Saves the pending changes now, if there are any; then returns the first change a
    /// rebase dropped since the last flush, if any.
    pub(super) fn flush(&self) -> Result<(), Error> {
        self.refuse_reentry("flush");
        let result = self.flush_locked();
        self.sweep();
        result
    }

    fn flush_locked(&self) -> Result<(), Error> {
        {
            let state = self.lock_state();
            if !state.pending() && state.rejected.is_empty() {
                return Ok(());
            }
        }
        let _io = lock(&self.io);
        match self.save_locked(true) {
            Ok(()) => {}
            Err(SaveFailure::Load(error) | SaveFailure::Save(error)) => return Err(error),
            Err(SaveFailure::KnownBroken) => unreachable!("a flush reads the file again"),
        }
        let mut state = self.lock_state();
        match state.rejected.drain(..).next() {
            Some(reason) => Err(Error::Conflict {
                path: self.path.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The background save of pending changes: a failure is reported and tried again later
    /// (after `max_wait`, then twice as long each time, up to a minute); a file that does not
    /// load waits for its next change.
    pub(super) fn save_in_background(&self) {
        {
            let _io = lock(&self.io);
            let error = match self.save_locked(false) {
                Ok(()) | Err(SaveFailure::KnownBroken) => None,
                Err(SaveFailure::Load(error) | SaveFailure::Save(error)) => Some(error),
            };
            if let Some(error) = error {
                let mut state = self.lock_state();
                let first = match self.policy {
                    SavePolicy::Coalesce { max_wait, .. } => max_wait.max(SETTLE),
                    SavePolicy::Immediate => SETTLE,
                };
                state.retry_delay = match state.retry_delay {
                    Duration::ZERO => first,
                    delay => (delay * 2).min(MAX_RETRY_DELAY),
                };
                state.retry_at = Some(Instant::now() + state.retry_delay);
                self.report(&mut state, ChangeOrigin::Local, error);
            }
        }
        self.sweep();
    }

    /// The background look at the file after an event or a poll: publishes another program's
    /// change (with pending changes rebased on it), or reports once that it does not load.
    /// Pending changes are not saved early for it: the save, when it is due, looks again under
    /// the file's lock (saving at once would answer each save of another process with one of
    /// this handle's, and theirs with another). A link pointed elsewhere is the exception:
    /// the pending changes are first saved to the file they were made against.
    pub(super) fn reload_in_background(&self) {
        {
            let _io = lock(&self.io);
            if let Err(SaveFailure::Save(error) | SaveFailure::Load(error)) = self.save_moved(false)
            {
                let mut state = self.lock_state();
                self.report(&mut state, ChangeOrigin::Local, error);
            }
            let looked = self
                .resolve()
                .and_then(|real| Ok((self.look(&real, false)?, real)));
            match looked {
                Ok((Look::Changed(theirs, id), real)) => self.rebase(theirs, id, &real),
                Ok(_) => {}
                Err(error) => {
                    let mut state = self.lock_state();
                    self.report(&mut state, ChangeOrigin::External, error);
                }
            }
        }
        self.sweep();
    }

    /// When the path names another file than the one pending changes were made against (a
    /// link pointed elsewhere), saves them there first. Caller holds `io`.
    fn save_moved(&self, read_broken: bool) -> Result<(), SaveFailure> {
        let known = {
            let state = self.lock_state();
            if !state.pending() {
                return Ok(());
            }
            state.target.clone()
        };
        if self.resolve().ok().as_ref() == Some(&known) {
            return Ok(());
        }
        self.save_locked(read_broken)
    }

    /// Whether the file may have changed since this handle looked (for polling): no load.
    pub(super) fn looks_changed(&self) -> bool {
        let Ok(now) = self.stamp(&self.path) else {
            return false;
        };
        let state = self.lock_state();
        now != state.seen && !(now.is_some() && now == state.reported)
    }

    /// Records `id`, at `target`, as the state of the file this handle knows.
    fn accept(&self, state: &mut State<T>, id: Option<Stamp>, target: &Path) {
        state.seen = id;
        if state.target != target {
            target.clone_into(&mut state.target);
        }
        state.broken = None;
        state.reported = None;
    }

    /// The changes up to `generation` are on disk: they are done with.
    fn saved(&self, state: &mut State<T>, generation: u64) {
        let (done, left): (Vec<Change<T>>, Vec<Change<T>>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|change| change.generation <= generation);
        state.pending = left;
        self.bury(done);
        if !state.pending() {
            state.dirty_since = None;
            state.last_change = None;
        }
        state.retry_at = None;
        state.retry_delay = Duration::ZERO;
    }

    /// Looks at the file at `real` (caller holds `io`): unchanged since this handle saw it,
    /// gone, changed (then loaded through the migration chain, not published), or broken.
    ///
    /// A load that fails while the file is still changing is read again after [`SETTLE`]. A
    /// load that fails on a settled file marks that state of the file broken and is reported
    /// to the observers once; the background does not read that state again
    /// ([`Look::KnownBroken`]), a caller's operation (`read_broken`) does, to return its
    /// error.
    fn look(&self, real: &Path, read_broken: bool) -> Result<Look<T>, Error> {
        let mut attempts = 0;
        loop {
            let before = self.stamp(real)?;
            {
                let state = self.lock_state();
                if before == state.seen {
                    return Ok(Look::Unchanged);
                }
                if !read_broken && before.is_some() && before == state.reported {
                    return Ok(Look::KnownBroken);
                }
            }
            let Some(id) = before.clone() else {
                let mut state = self.lock_state();
                self.accept(&mut state, None, real);
                return Ok(Look::Missing);
            };
            bump(&self.counters.loads);
            let error = match self.load_at(real) {
                Ok((value, read)) => return Ok(Look::Changed(value, read.unwrap_or(id))),
                // Deleted between the look and the read: look again.
                Err(Error::NotFound { .. }) if attempts < UNSETTLED_RETRIES => {
                    attempts += 1;
                    continue;
                }
                Err(error) => error,
            };
            let after = self.stamp(real)?;
            if after != before && attempts < UNSETTLED_RETRIES {
                attempts += 1;
                std::thread::sleep(SETTLE);
                continue;
            }
            let mut state = self.lock_state();
            state.broken = Some(id.clone());
            if state.reported.as_ref() == Some(&id) {
                return Ok(Look::Broken(error));
            }
            if read_broken {
                // The caller gets this error; the background reads the file once more to
                // report it to the observers.
                drop(state);
                self.note_event();
                return Ok(Look::Broken(error));
            }
            state.reported = Some(id);
            bump(&self.counters.failed_reloads);
            self.report(&mut state, ChangeOrigin::External, error);
            return Ok(Look::KnownBroken);
        }
    }

    /// Applies the pending changes to `value` again, in order. A change that panics on it is
    /// dropped (buried); what each said is returned, for [`reject`](Shared::reject).
    fn replay_onto(&self, state: &mut State<T>, value: &mut T) -> Vec<String> {
        let mut rejected = Vec::new();
        let mut kept = Vec::with_capacity(state.pending.len());
        for mut change in std::mem::take(&mut state.pending) {
            let replayed = {
                let _changing = self.changing();
                catch_unwind(AssertUnwindSafe(|| (change.replay)(value)))
            };
            match replayed {
                Ok(()) => kept.push(change),
                Err(panic) => {
                    rejected.push(panic_message(&*panic));
                    self.bury([change]);
                }
            }
        }
        state.pending = kept;
        rejected
    }

    /// Reports the changes a replay dropped, as [`Error::Conflict`]s, and keeps them for the
    /// next flush.
    fn reject(&self, state: &mut State<T>, rejected: Vec<String>) {
        for reason in rejected {
            let reason: Arc<dyn std::error::Error + Send + Sync> =
                Arc::from(BoxError::from(reason));
            bump(&self.counters.conflicts);
            state.rejected.push(Arc::clone(&reason));
            let path = self.path.clone();
            self.report(state, ChangeOrigin::Local, Error::Conflict { path, reason });
        }
    }

    /// Takes another program's value of the file (at `id`, in `target`): this handle's
    /// pending changes are applied to it again in order, and the result is published if it
    /// differs from the current value.
    fn rebase(&self, mut value: T, id: Stamp, target: &Path) {
        let mut state = self.lock_state();
        self.accept(&mut state, Some(id), target);
        let origin = if state.pending() {
            ChangeOrigin::Rebased
        } else {
            ChangeOrigin::External
        };
        let rejected = self.replay_onto(&mut state, &mut value);
        if !state.pending() {
            state.dirty_since = None;
            state.last_change = None;
        }
        if same(&value, &self.current.load()) {
            bump(&self.counters.unchanged_reloads);
        } else {
            bump(&self.counters.reloads);
            self.publish(&mut state, Arc::new(value), origin);
        }
        self.reject(&mut state, rejected);
    }

    /// Saves the current value if changes are pending, under the file's lock, to the file
    /// they were made against (where a link at the path pointed when the handle last looked;
    /// if it points elsewhere now, that file is loaded afterwards). A change another program
    /// made in the meantime is loaded and the pending changes rebased on it first; a file
    /// that does not load is not written over. Caller holds `io`; `read_broken` as for
    /// [`look`](Shared::look).
    fn save_locked(&self, read_broken: bool) -> Result<(), SaveFailure> {
        // How long a save takes, from here: the lock and the look are part of it.
        let started = Instant::now();
        let target = {
            let state = self.lock_state();
            if !state.pending() {
                return Ok(());
            }
            state.target.clone()
        };
        let _lock = self.lock_place(&target).map_err(|error| {
            bump(&self.counters.failed_saves);
            SaveFailure::Save(error)
        })?;
        let mut attempts = 0;
        loop {
            match self.look(&target, read_broken).map_err(SaveFailure::Load)? {
                Look::Unchanged | Look::Missing => {}
                Look::Changed(theirs, id) => {
                    self.rebase(theirs, id, &target);
                    if !self.lock_state().pending() {
                        return Ok(());
                    }
                }
                Look::Broken(error) => return Err(SaveFailure::Load(error)),
                Look::KnownBroken => return Err(SaveFailure::KnownBroken),
            }
            let (value, generation, dirty_since) = {
                let mut state = self.lock_state();
                (
                    self.current.load_full(),
                    state.generation,
                    state.dirty_since.take(),
                )
            };
            let saved = self.save_unless_changed(&value, &target);
            let mut state = self.lock_state();
            match saved {
                Ok(written) => {
                    state.save_took = started.elapsed();
                    let took = u64::try_from(state.save_took.as_nanos()).unwrap_or(u64::MAX);
                    self.counters
                        .longest_save
                        .fetch_max(took, Ordering::Relaxed);
                    bump(&self.counters.saves);
                    self.accept(&mut state, written, &target);
                    self.saved(&mut state, generation);
                    drop(state);
                    if self.resolve().ok().as_ref() != Some(&target) {
                        // The path names another file now: that one is loaded next.
                        self.note_event();
                    }
                    return Ok(());
                }
                Err(error) => {
                    state.dirty_since = match (dirty_since, state.dirty_since) {
                        (Some(old), Some(new)) => Some(old.min(new)),
                        (old, new) => old.or(new),
                    };
                    // Another program replaced the file while this value was written: rebase
                    // on its value, and again.
                    if matches!(error, Error::Contended { .. }) && {
                        drop(state);
                        self.again(&mut attempts, started)
                    } {
                        continue;
                    }
                    bump(&self.counters.failed_saves);
                    return Err(SaveFailure::Save(error));
                }
            }
        }
    }

    /// A free name beside the file pending changes were made against:
    /// `<name>.unsaved-<unix milliseconds>` (`kind` makes it; its number is replaced), in that
    /// file's directory, held open: a link planted there is refused, never followed. Whatever
    /// now stands at the path (a directory, a FIFO, a broken link) does not matter.
    fn aside(&self, kind: fn(u64) -> Sibling) -> Result<Target, Error> {
        if self.entry.is_some() {
            return Err(Error::InvalidPath {
                path: self.path.clone(),
                reason: "a collection entry has no place beside it for an unsaved copy".into(),
            });
        }
        let target = self.lock_state().target.clone();
        let name = target.file_name().unwrap_or(target.as_os_str());
        let dir = parent_dir(&target);
        let dir = Arc::new(Dir::open(dir).map_err(io_error(dir, IoOp::Open))?);
        let candidate = backup::free_name(&dir, name, kind);
        Target::beneath(&dir, &candidate, dir.join(&candidate))
    }

    /// The last handle is gone: saves what is pending. When that fails (the file does not
    /// load, the disk is full), the pending value is saved beside the file as
    /// `<name>.unsaved-<unix ms>`; when that fails too, the value is lost. Either is reported
    /// to the observers as [`Error::Unsaved`] (naming the copy, or none), as a `tracing`
    /// event, and a loss by the `persist_live_lost_total` metric.
    pub(super) fn close(&self) {
        let error = match self.flush() {
            // A dropped change was reported when it was dropped; the rest is saved.
            Ok(()) | Err(Error::Conflict { .. }) => return,
            Err(error) => error,
        };
        let value = self.current.load_full();
        let kept = self.aside(Sibling::Unsaved).and_then(|aside| {
            file::save_to(&self.settings, &*value, &aside, AuditOp::Save).map(|()| aside.named)
        });
        let report = match kept {
            Ok(kept) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    path = %self.path.display(),
                    kept = %kept.display(),
                    %error,
                    "persist: pending changes could not be saved to the file; kept beside it"
                );
                Error::Unsaved {
                    path: self.path.clone(),
                    kept: Some(kept),
                    reason: error.to_string(),
                }
            }
            Err(aside_error) => {
                bump(&self.counters.lost);
                #[cfg(feature = "metrics")]
                metrics::counter!("persist_live_lost_total").increment(1);
                #[cfg(feature = "tracing")]
                tracing::error!(
                    path = %self.path.display(),
                    %error,
                    %aside_error,
                    "persist: pending changes were lost: neither the file nor a copy beside it \
                     could be written"
                );
                Error::Unsaved {
                    path: self.path.clone(),
                    kept: None,
                    reason: format!("{error}; and beside it: {aside_error}"),
                }
            }
        };
        let mut state = self.lock_state();
        self.report(&mut state, ChangeOrigin::Local, report);
    }
}

/// What a caught panic says, for the report of a change dropped because it panicked.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    format!("the change panicked on the newer value: {message}")
}
