//! The value of a [`Live`](super::Live) handle and its rules: what an update, a save, a reload
//! and a conflict do. Every byte goes through [`Options::load`](crate::Options::load) and
//! [`Options::save`](crate::Options::save): the
//! migration chain, the layers and the durable write are the core's.
//!
//! Two locks, never held the other way round:
//! - `io` serializes this handle's file work (saves, reloads) inside the process; the
//!   inter-process lock file is taken under it where a save needs it;
//! - `state` guards the bookkeeping and publishing, held for short moments (and while a
//!   `Coalesce` update's closure runs), never across file work.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::events::Events;
use super::merge::{self, Merge};
use super::{ChangeOrigin, LiveEvent, LiveStats, SavePolicy};
use crate::error::IoOp;
use crate::settings::Settings;
use crate::shell::commit::{Target, Write, bytes, replace};
use crate::shell::dir::Dir;
use crate::shell::lock;
use crate::shell::names::{self, Sibling};
use crate::shell::{AuditOp, io_error, parent_dir, read};
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
/// them) and the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

/// The identity of the file at `target` now, `None` when there is none.
fn file_id(target: &Path, path: &Path) -> Result<Option<FileId>, Error> {
    match std::fs::metadata(target) {
        Ok(metadata) => Ok(Some(FileId::of(&metadata))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, IoOp::Metadata)(error)),
    }
}

impl FileId {
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

/// The bookkeeping under the `state` lock.
pub(super) struct State<T> {
    /// The value of the file as this handle last loaded or saved it: the base of a merge.
    base: Arc<T>,
    /// The file as this handle last loaded or saved it (`None`: there was none).
    seen: Option<FileId>,
    /// The state of the file whose load failed, while it is there.
    broken: Option<FileId>,
    /// The broken state whose error was delivered to the observers.
    reported: Option<FileId>,
    /// Counts the values published by `update`; `saved` is the last one saved. They differ
    /// while a `Coalesce` change is pending.
    generation: u64,
    saved: u64,
    /// When the oldest unsaved change was made, and the newest.
    dirty_since: Option<Instant>,
    last_change: Option<Instant>,
    /// After a failed background save: not before then.
    pub(super) retry_at: Option<Instant>,
    /// How long the last save took: a save due by `max_wait` starts that much earlier.
    save_took: Duration,
    /// The last file event not handled yet, and the first of its burst.
    pub(super) event_at: Option<Instant>,
    pub(super) event_first: Option<Instant>,
    /// The last handle is gone: the worker stops.
    pub(super) closing: bool,
}

impl<T> State<T> {
    fn pending(&self) -> bool {
        self.generation != self.saved
    }
}

/// Counters behind [`LiveStats`].
#[derive(Default)]
struct Counters {
    saves: AtomicU64,
    failed_saves: AtomicU64,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    conflicts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What [`Shared::refresh_locked`] found on disk.
enum Refresh<T> {
    /// The file is as this handle last saw it, or is the broken state already reported.
    Unchanged,
    /// There is no file (any more).
    Missing,
    /// Another program changed the file: its value, and its identity.
    Changed(T, Option<FileId>),
}

/// Why a save of pending changes did not happen.
pub(super) enum SaveFailure {
    /// The file on disk does not load: nothing was written over it.
    Load(Error),
    /// The save itself failed.
    Save(Error),
}

impl From<SaveFailure> for Error {
    fn from(failure: SaveFailure) -> Error {
        match failure {
            SaveFailure::Load(error) | SaveFailure::Save(error) => error,
        }
    }
}

/// Everything the handles of one [`Live`](super::Live) and its worker share.
pub(super) struct Shared<T> {
    path: PathBuf,
    /// `path` with symbolic links followed: the file that is watched and compared.
    target: PathBuf,
    settings: Settings,
    policy: SavePolicy,
    current: ArcSwap<T>,
    state: Mutex<State<T>>,
    /// Wakes the worker (with `state`): a change to save, a file event, closing.
    pub(super) wake: Condvar,
    io: Mutex<()>,
    events: Events<T>,
    counters: Counters,
}

impl<T: Persisted + Clone + Send + Sync + 'static> Shared<T> {
    /// Loads the file (or starts from the default) and sets up the bookkeeping.
    pub(super) fn open(
        settings: Settings,
        policy: SavePolicy,
        path: &Path,
    ) -> Result<Arc<Self>, Error>
    where
        T: Default,
    {
        let target = Target::locate(path)?;
        let target = target.dir_path().join(&target.name);
        let mut attempts = 0;
        let (value, seen) = loop {
            let before = file_id(&target, path)?;
            let loaded = file::load_or_default::<T>(&settings, path);
            let after = file_id(&target, path)?;
            match loaded {
                // A complete document, even if it is being replaced: the replacement is a
                // change the worker will see (the identity kept is the one read).
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
        let value = Arc::new(value);
        Ok(Arc::new(Shared {
            path: path.to_owned(),
            target,
            settings,
            policy,
            current: ArcSwap::new(Arc::clone(&value)),
            state: Mutex::new(State {
                base: Arc::clone(&value),
                seen,
                broken: None,
                reported: None,
                generation: 0,
                saved: 0,
                dirty_since: None,
                last_change: None,
                retry_at: None,
                save_took: Duration::ZERO,
                event_at: None,
                event_first: None,
                closing: false,
            }),
            wake: Condvar::new(),
            io: Mutex::new(()),
            events: Events::new(value),
            counters: Counters::default(),
        }))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn target(&self) -> &Path {
        &self.target
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
            conflicts: read(&self.counters.conflicts),
        }
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

    /// A file event arrived (or a poll saw a change): the worker reloads once the file has
    /// been quiet for [`SETTLE`].
    pub(super) fn note_event(&self) {
        let now = Instant::now();
        let mut state = self.lock_state();
        state.event_at = Some(now);
        state.event_first.get_or_insert(now);
        drop(state);
        self.wake.notify_one();
    }

    /// When the pending changes are due to be saved, if any are ([`SavePolicy::Coalesce`]).
    pub(super) fn save_deadline(&self, state: &State<T>) -> Option<Instant> {
        let SavePolicy::Coalesce { debounce, max_wait } = self.policy else {
            return None;
        };
        if !state.pending() {
            return None;
        }
        let quiet = state.last_change? + debounce;
        // Started early by the length of a save, so that it is on disk by `max_wait`.
        let latest = state.dirty_since? + max_wait.saturating_sub(state.save_took);
        let due = quiet.min(latest);
        Some(state.retry_at.map_or(due, |retry| due.max(retry)))
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut T)) -> Result<Arc<T>, Error> {
        match self.policy {
            SavePolicy::Immediate => self.update_now(change),
            SavePolicy::Coalesce { .. } => self.update_later(change),
        }
    }

    /// [`SavePolicy::Immediate`]: under the file's lock, reload what another program saved,
    /// change, save, publish.
    fn update_now(&self, change: impl FnOnce(&mut T)) -> Result<Arc<T>, Error> {
        let _io = lock(&self.io);
        let _lock = lock::exclusive(&self.path, self.settings.disk.lock_timeout)?;
        self.reload_locked(false)?;
        let mut value = T::clone(&self.current.load());
        change(&mut value);
        if let Err(error) = file::save(&self.settings, &value, &self.path, AuditOp::Save) {
            bump(&self.counters.failed_saves);
            return Err(error);
        }
        bump(&self.counters.saves);
        let seen = file_id(&self.target, &self.path).ok().flatten();
        let value = Arc::new(value);
        let mut state = self.lock_state();
        state.seen = seen;
        state.base = Arc::clone(&value);
        state.generation += 1;
        state.saved = state.generation;
        self.publish(&mut state, Arc::clone(&value), ChangeOrigin::Local);
        Ok(value)
    }

    /// [`SavePolicy::Coalesce`]: change and publish now, let the worker save.
    fn update_later(&self, change: impl FnOnce(&mut T)) -> Result<Arc<T>, Error> {
        if self.lock_state().broken.is_some() {
            // The file did not load when last looked at: look again, refuse while it still
            // does not.
            let _io = lock(&self.io);
            self.reload_locked(false)?;
        }
        let mut state = self.lock_state();
        let mut value = T::clone(&self.current.load());
        change(&mut value);
        let value = Arc::new(value);
        let now = Instant::now();
        state.generation += 1;
        state.last_change = Some(now);
        state.dirty_since.get_or_insert(now);
        self.publish(&mut state, Arc::clone(&value), ChangeOrigin::Local);
        drop(state);
        self.wake.notify_one();
        Ok(value)
    }

    /// Saves the pending changes now, if there are any.
    pub(super) fn flush(&self) -> Result<(), Error> {
        if !self.lock_state().pending() {
            return Ok(());
        }
        let _io = lock(&self.io);
        self.save_locked().map_err(Error::from)
    }

    /// The worker's save of pending changes: a failure is reported (a load failure is
    /// reported by the reload the failure schedules) and retried after `max_wait`.
    pub(super) fn save_in_background(&self) {
        let _io = lock(&self.io);
        let failure = match self.save_locked() {
            Ok(()) => return,
            Err(failure) => failure,
        };
        let mut state = self.lock_state();
        let retry = match self.policy {
            SavePolicy::Coalesce { max_wait, .. } => max_wait.max(SETTLE),
            SavePolicy::Immediate => SETTLE,
        };
        state.retry_at = Some(Instant::now() + retry);
        if let SaveFailure::Save(error) = failure {
            self.report(&mut state, ChangeOrigin::Local, error);
        }
    }

    /// The worker's look at the file after an event or a poll: publishes another program's
    /// change, or saves over it when changes are pending (a conflict), or reports that it
    /// does not load.
    pub(super) fn reload_in_background(&self) {
        let _io = lock(&self.io);
        if self.lock_state().pending() {
            // This handle's own save (or nothing) is no reason to save early.
            if !self.looks_changed() {
                return;
            }
            if let Err(SaveFailure::Save(error)) = self.save_locked() {
                let mut state = self.lock_state();
                self.report(&mut state, ChangeOrigin::Local, error);
            }
            return;
        }
        // Errors were reported inside.
        let _ = self.reload_locked(true);
    }

    /// Whether the file may have changed since this handle looked (for polling): no load.
    pub(super) fn looks_changed(&self) -> bool {
        let Ok(now) = file_id(&self.target, &self.path) else {
            return false;
        };
        let state = self.lock_state();
        now != state.seen && !(now.is_some() && now == state.reported)
    }

    /// Publishes another program's change of the file, if there is one. Caller holds `io`.
    /// A change that arrives while changes of this handle are pending is left to the merge
    /// of [`save_locked`](Shared::save_locked).
    fn reload_locked(&self, report: bool) -> Result<(), Error> {
        match self.refresh_locked(report)? {
            Refresh::Unchanged | Refresh::Missing => Ok(()),
            Refresh::Changed(value, id) => {
                let mut state = self.lock_state();
                if state.pending() {
                    // Changes of this handle wait to be saved: the worker merges the file's
                    // change into them and saves, now rather than when the save is due.
                    drop(state);
                    self.note_event();
                    return Ok(());
                }
                self.accept(&mut state, id);
                bump(&self.counters.reloads);
                let value = Arc::new(value);
                state.base = Arc::clone(&value);
                self.publish(&mut state, value, ChangeOrigin::External);
                Ok(())
            }
        }
    }

    /// Records `id` as the state of the file this handle knows.
    fn accept(&self, state: &mut State<T>, id: Option<FileId>) {
        state.seen = id;
        state.broken = None;
        state.reported = None;
    }

    /// Looks at the file: unchanged since this handle saw it, gone, or changed (then loaded
    /// through the migration chain, not published). Caller holds `io`.
    ///
    /// A load that fails while the file is still changing is read again after [`SETTLE`]. A
    /// load that fails on a settled file marks it broken: with `report`, the error goes to
    /// the observers (once per state of the file) and `Unchanged` is returned; without, the
    /// error is returned and the worker is asked to report it.
    fn refresh_locked(&self, report: bool) -> Result<Refresh<T>, Error> {
        let mut attempts = 0;
        loop {
            let before = file_id(&self.target, &self.path)?;
            {
                let state = self.lock_state();
                let known_broken = before.is_some() && before == state.broken;
                if before == state.seen || (report && known_broken && before == state.reported) {
                    return Ok(Refresh::Unchanged);
                }
            }
            let Some(id) = before else {
                let mut state = self.lock_state();
                self.accept(&mut state, None);
                return Ok(Refresh::Missing);
            };
            let error = match file::load::<T>(&self.settings, &self.path) {
                Ok(value) => return Ok(Refresh::Changed(value, Some(id))),
                // Deleted between the look and the read: look again.
                Err(Error::NotFound { .. }) if attempts < UNSETTLED_RETRIES => {
                    attempts += 1;
                    continue;
                }
                Err(error) => error,
            };
            let after = file_id(&self.target, &self.path)?;
            if after != before && attempts < UNSETTLED_RETRIES {
                attempts += 1;
                std::thread::sleep(SETTLE);
                continue;
            }
            let mut state = self.lock_state();
            state.broken = Some(id);
            if state.reported == Some(id) {
                return if report {
                    Ok(Refresh::Unchanged)
                } else {
                    Err(error)
                };
            }
            if report {
                state.reported = Some(id);
                bump(&self.counters.failed_reloads);
                self.report(&mut state, ChangeOrigin::External, error);
                return Ok(Refresh::Unchanged);
            }
            state.event_at = Some(Instant::now());
            state.event_first.get_or_insert(Instant::now());
            drop(state);
            self.wake.notify_one();
            return Err(error);
        }
    }

    /// Saves the current value if changes are pending, under the file's lock. A change
    /// another program made in the meantime is merged first (see [`merge`]); a file that does
    /// not load is not written over. Caller holds `io`.
    fn save_locked(&self) -> Result<(), SaveFailure> {
        if !self.lock_state().pending() {
            return Ok(());
        }
        let _lock = lock::exclusive(&self.path, self.settings.disk.lock_timeout)
            .map_err(SaveFailure::Save)?;
        let conflict = match self.refresh_locked(false).map_err(SaveFailure::Load)? {
            Refresh::Unchanged | Refresh::Missing => None,
            Refresh::Changed(theirs, id) => self.merge_locked(theirs, id)?,
        };
        let (value, generation, dirty_since) = {
            let mut state = self.lock_state();
            state.base = self.current.load_full();
            (
                self.current.load_full(),
                state.generation,
                state.dirty_since.take(),
            )
        };
        let started = Instant::now();
        let saved = file::save(&self.settings, &*value, &self.path, AuditOp::Save);
        let mut state = self.lock_state();
        match saved {
            Ok(()) => {
                state.save_took = started.elapsed();
                bump(&self.counters.saves);
                let seen = file_id(&self.target, &self.path).ok().flatten();
                self.accept(&mut state, seen);
                state.saved = generation;
                state.retry_at = None;
                if let Some(kept) = conflict {
                    bump(&self.counters.conflicts);
                    let path = self.path.clone();
                    self.report(
                        &mut state,
                        ChangeOrigin::External,
                        Error::Conflict { path, kept },
                    );
                }
                Ok(())
            }
            Err(error) => {
                bump(&self.counters.failed_saves);
                state.dirty_since = match (dirty_since, state.dirty_since) {
                    (Some(old), Some(new)) => Some(old.min(new)),
                    (old, new) => old.or(new),
                };
                Err(SaveFailure::Save(error))
            }
        }
    }

    /// Merges another program's change of the file (`theirs`, at `id`) with this handle's
    /// pending changes and publishes the result. Where both changed a field, or the values do
    /// not merge, this handle's values win and the other program's file is first copied
    /// aside: its path is returned, for the conflict report once the save is done. Under the
    /// `state` lock throughout (a rare path), so no update slips between the merge and its
    /// publication.
    fn merge_locked(&self, theirs: T, id: Option<FileId>) -> Result<Option<PathBuf>, SaveFailure> {
        let mut state = self.lock_state();
        let ours = self.current.load_full();
        let (merged, overlap) = match merge::three_way(&*state.base, &*ours, &theirs) {
            Merge::Clean(value) => (Some(value), false),
            Merge::Overlap(value) => (Some(value), true),
            Merge::Failed => (None, true),
        };
        // Copied before the change is taken as known: if the copy fails, the next save tries
        // the merge again.
        let kept = if overlap {
            Some(self.keep_aside().map_err(SaveFailure::Save)?)
        } else {
            None
        };
        self.accept(&mut state, id);
        state.base = Arc::new(theirs);
        bump(&self.counters.reloads);
        if let Some(merged) = merged {
            self.publish(&mut state, Arc::new(merged), ChangeOrigin::External);
        }
        Ok(kept)
    }

    /// Copies the file another program wrote to `<name>.conflict-<unix ms>` before this
    /// handle's pending value replaces it.
    fn keep_aside(&self) -> Result<PathBuf, Error> {
        let data = read::read(&self.target, self.settings.disk.max_size)?;
        let kept = self.aside(Sibling::Conflict)?;
        replace(&self.settings.disk, &kept, &Write::default(), bytes(&data))?;
        Ok(kept.named)
    }

    /// A free name beside the file: `<name>.conflict-<unix milliseconds>` or
    /// `<name>.unsaved-<unix milliseconds>` (`kind` says which; its number is replaced), in
    /// the file's directory, held open: a link planted there is refused, never followed.
    fn aside(&self, kind: fn(u64) -> Sibling) -> Result<Target, Error> {
        let name = self.target.file_name().unwrap_or(self.target.as_os_str());
        let dir = parent_dir(&self.target);
        let dir = Arc::new(Dir::open(dir).map_err(io_error(dir, IoOp::Open))?);
        let mut millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        loop {
            let candidate = names::name_for(name, kind(millis));
            if dir.stat(&candidate).ok().flatten().is_none() {
                return Target::beneath(&dir, &candidate, dir.join(&candidate));
            }
            millis += 1;
        }
    }

    /// The last handle is gone: saves what is pending. When that fails (the file does not
    /// load, the disk is full), the pending value is saved beside the file as
    /// `<name>.unsaved-<unix ms>` so that it is not lost.
    pub(super) fn close(&self) {
        let Err(_) = self.flush() else {
            return;
        };
        let value = self.current.load_full();
        if let Ok(aside) = self.aside(Sibling::Unsaved) {
            let _ = file::save_to(&self.settings, &*value, &aside, AuditOp::Save);
        }
    }
}
