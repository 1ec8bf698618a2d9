//! The background of a [`Live`](super::Live) value: its watches (the directory of the file and
//! of every symbolic link on the way to it) and its job on the shared threads, which waits for
//! file events to settle, polls, and runs the coalescing saver.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::SavePolicy;
use super::core::{MAX_SETTLE, SETTLE, Shared, lock};
use super::runtime::{self, Job, Kind, Next};
use super::watcher::{self, Watched};
use crate::error::IoOp;
use crate::shell::commit::create_dirs;
use crate::shell::{Durability, io_error, parent_dir};
use crate::{Error, Persisted};

/// The most symbolic links followed on the way to the file (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// What the last [`Live`](super::Live) handle owns: dropping it stops the watches and the
/// job, then saves what is pending.
pub(super) struct Handle<T: Persisted + Send + Sync + 'static> {
    pub(super) shared: Arc<Shared<T>>,
}

impl<T: Persisted + Send + Sync + 'static> Handle<T> {
    pub(super) fn start(shared: Arc<Shared<T>>, watch: bool) -> Result<Self, Error> {
        let needs_job = watch
            || shared.refresh_every.is_some()
            || matches!(shared.policy(), SavePolicy::Coalesce { .. });
        if needs_job {
            let job: Arc<dyn Job> = Arc::clone(&shared) as Arc<dyn Job>;
            let id = runtime::register(Kind::Background, job)
                .map_err(io_error(shared.path(), IoOp::BlockingTask))?;
            let _ = shared.job.set(id);
        }
        // From here on, dropping the handle unregisters what was registered.
        let handle = Handle { shared };
        // An entry's changes come from its collection's feed (`live::open_entry`).
        if watch && !handle.shared.is_entry() {
            let path = handle.shared.path();
            create_dirs(path, parent_dir(path), Durability::Full)?;
            let weak: Weak<dyn Watched> = Arc::downgrade(&handle.shared) as Weak<dyn Watched>;
            let _ = handle.shared.watched.set(weak);
            rewatch(&handle.shared)?;
        }
        if handle.shared.refresh_every.is_some()
            && let Some(job) = handle.shared.job.get()
        {
            runtime::wake(*job);
        }
        // A change made between the load and the start of the watch has no event: compare.
        if handle.shared.looks_changed() {
            handle.shared.note_event();
        }
        Ok(handle)
    }
}

impl<T: Persisted + Send + Sync + 'static> Drop for Handle<T> {
    fn drop(&mut self) {
        // No more events, then no more background work, then the last save.
        let watches = std::mem::take(&mut *lock(&self.shared.watches));
        drop(watches);
        self.shared.lock_state().closing = true;
        if let Some(job) = self.shared.job.get() {
            runtime::cancel(*job);
        }
        self.shared.close();
        self.shared.events().close();
    }
}

/// The directories to watch for the file at `path`, with the name to look for in each: the
/// path's own, then, while the name is a symbolic link, where it points (canonical, so that
/// one directory reached by two paths is one watch).
fn chain(path: &Path) -> Vec<(PathBuf, OsString)> {
    let mut hops = Vec::new();
    let mut at = path.to_owned();
    for _ in 0..MAX_LINKS {
        let Some(name) = at.file_name().map(ToOwned::to_owned) else {
            break;
        };
        let Ok(directory) = std::fs::canonicalize(parent_dir(&at)) else {
            break;
        };
        hops.push((directory.clone(), name.clone()));
        let Ok(link) = std::fs::read_link(directory.join(&name)) else {
            break;
        };
        at = directory.join(link);
    }
    hops
}

/// Watches the directories of [`chain`] as it is now, keeping the watches that stay and
/// dropping the others. A link pointed elsewhere moves the watch to its new target's
/// directory.
fn rewatch<T: Persisted + Send + Sync + 'static>(shared: &Shared<T>) -> Result<(), Error> {
    let Some(watched) = shared.watched.get() else {
        return Ok(());
    };
    if shared.is_entry() {
        return Ok(());
    }
    let wanted = chain(shared.path());
    let mut watches = lock(&shared.watches);
    let same = watches.len() == wanted.len()
        && watches
            .iter()
            .zip(&wanted)
            .all(|((directory, name, _), hop)| (directory, name) == (&hop.0, &hop.1));
    if same {
        return Ok(());
    }
    let mut old = std::mem::take(&mut *watches);
    for (directory, name) in wanted {
        if let Some(at) = old
            .iter()
            .position(|(kept, kept_name, _)| *kept == directory && *kept_name == name)
        {
            watches.push(old.swap_remove(at));
            continue;
        }
        let registration = watcher::register(&directory, name.clone(), Weak::clone(watched))
            .map_err(|error| {
                let source = match error.kind {
                    notify::ErrorKind::Io(source) => source,
                    other => std::io::Error::other(format!("{other:?}")),
                };
                io_error(shared.path(), IoOp::Watch)(source)
            })?;
        watches.push((directory, name, registration));
    }
    Ok(())
}

impl<T: Persisted + Send + Sync + 'static> Watched for Shared<T> {
    fn changed(&self, _name: Option<&std::ffi::OsStr>) {
        self.note_event();
    }
}

impl<T: Persisted + Send + Sync + 'static> Job for Shared<T> {
    /// Does what is due (a settled file event, a poll, a coalesced save) and says when the
    /// next thing is.
    fn run(&self) -> Next {
        let now = Instant::now();
        // An entry is read whole, never torn by a write in progress: no wait for it to settle.
        let settle = if self.is_entry() {
            std::time::Duration::ZERO
        } else {
            SETTLE
        };
        let mut state = self.lock_state();
        if state.closing {
            return Next::Done;
        }
        let reload_due = state.event_at.map(|last| {
            let first = state.event_first.unwrap_or(last);
            (last + settle).min(first + MAX_SETTLE)
        });
        let reload = reload_due.is_some_and(|due| due <= now);
        if reload {
            state.event_at = None;
            state.event_first = None;
        }
        let save = self.save_deadline(&state).is_some_and(|due| due <= now);
        let poll = state.next_poll.is_some_and(|due| due <= now);
        if poll {
            state.next_poll = self.refresh_every.map(|period| now + period);
        }
        drop(state);
        // A change already noted is being settled: noting it again at every poll would put
        // the reload off until the longest settle.
        if poll && self.lock_state().event_at.is_none() && self.looks_changed() {
            self.note_event();
        }
        if reload {
            // A link pointed elsewhere: watch where it points now, before loading it, so that
            // an edit made right after the load has an event. A directory that cannot be
            // watched any more leaves the watches there are (and polling, if any).
            let _ = rewatch(self);
            self.reload_in_background();
        }
        if save {
            self.save_in_background();
        }
        let state = self.lock_state();
        let reload_due = state.event_at.map(|last| {
            let first = state.event_first.unwrap_or(last);
            (last + settle).min(first + MAX_SETTLE)
        });
        match [reload_due, self.save_deadline(&state), state.next_poll]
            .into_iter()
            .flatten()
            .min()
        {
            Some(at) => Next::At(at),
            None => Next::Idle,
        }
    }
}
