//! The background of a [`Live`](super::Live) value: the directory watcher, and one thread
//! that waits for file events to settle, polls, and runs the coalescing saver.

use std::ffi::OsString;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SavePolicy;
use super::core::{MAX_SETTLE, SETTLE, Shared};
use super::watcher::{self, Registration, Watched};
use crate::error::IoOp;
use crate::shell::commit::create_dirs;
use crate::shell::{Durability, io_error, parent_dir};
use crate::{Error, Persisted};

/// What the last [`Live`](super::Live) handle owns: dropping it stops the watcher and the
/// thread, then saves what is pending.
pub(super) struct Handle<T: Persisted + Clone + Send + Sync + 'static> {
    pub(super) shared: Arc<Shared<T>>,
    watcher: Option<Registration>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Persisted + Clone + Send + Sync + 'static> Handle<T> {
    pub(super) fn start(
        shared: Arc<Shared<T>>,
        watch: bool,
        refresh_every: Option<Duration>,
    ) -> Result<Self, Error> {
        let watcher = if watch {
            Some(watch_directory(&shared)?)
        } else {
            None
        };
        let needs_thread = watch
            || refresh_every.is_some()
            || matches!(shared.policy(), SavePolicy::Coalesce { .. });
        let thread = if needs_thread {
            let worker = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name("persist-live".into())
                .spawn(move || run(&worker, refresh_every))
                .map_err(io_error(shared.path(), IoOp::BlockingTask))?;
            Some(thread)
        } else {
            None
        };
        // A change made between the load and the start of the watch has no event: compare.
        if shared.looks_changed() {
            shared.note_event();
        }
        Ok(Handle {
            shared,
            watcher,
            thread,
        })
    }
}

impl<T: Persisted + Clone + Send + Sync + 'static> Drop for Handle<T> {
    fn drop(&mut self) {
        // No more events, then no more background work, then the last save.
        drop(self.watcher.take());
        self.shared.lock_state().closing = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.close();
        self.shared.events().close();
    }
}

/// Registers the file with the process's directory watcher (a watch on the file itself goes
/// deaf after the first rename over it), so that events naming it reach the worker.
fn watch_directory<T: Persisted + Clone + Send + Sync + 'static>(
    shared: &Arc<Shared<T>>,
) -> Result<Registration, Error> {
    let target = shared.target();
    let directory = parent_dir(target);
    create_dirs(shared.path(), directory, Durability::Full)?;
    // Events name the directory as it was watched: canonical, so that one directory reached
    // by two paths is one entry.
    let directory =
        std::fs::canonicalize(directory).map_err(io_error(shared.path(), IoOp::Watch))?;
    let name: OsString = target.file_name().unwrap_or(target.as_os_str()).to_owned();
    let weak: Weak<Shared<T>> = Arc::downgrade(shared);
    watcher::register(&directory, name, weak).map_err(|error| {
        let source = match error.kind {
            notify::ErrorKind::Io(source) => source,
            other => std::io::Error::other(format!("{other:?}")),
        };
        io_error(shared.path(), IoOp::Watch)(source)
    })
}

impl<T: Persisted + Clone + Send + Sync + 'static> Watched for Shared<T> {
    fn changed(&self) {
        self.note_event();
    }
}

/// The worker: sleeps until the next thing is due (a settled file event, a poll, a coalesced
/// save), does it, and stops when the last handle is dropped.
fn run<T: Persisted + Clone + Send + Sync + 'static>(
    shared: &Shared<T>,
    refresh_every: Option<Duration>,
) {
    let mut next_poll = refresh_every.map(|period| Instant::now() + period);
    let mut state = shared.lock_state();
    loop {
        if state.closing {
            return;
        }
        let now = Instant::now();
        let reload_due = state.event_at.map(|last| {
            let first = state.event_first.unwrap_or(last);
            (last + SETTLE).min(first + MAX_SETTLE)
        });
        let save_due = shared.save_deadline(&state);
        let Some(next) = [reload_due, save_due, next_poll]
            .into_iter()
            .flatten()
            .min()
        else {
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            continue;
        };
        if next > now {
            state = shared
                .wake
                .wait_timeout(state, next - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            continue;
        }
        let reload = reload_due.is_some_and(|due| due <= now);
        if reload {
            state.event_at = None;
            state.event_first = None;
        }
        let save = save_due.is_some_and(|due| due <= now);
        let poll = next_poll.is_some_and(|due| due <= now);
        drop(state);
        if let (true, Some(period)) = (poll, refresh_every) {
            next_poll = Some(now + period);
            if shared.looks_changed() {
                shared.note_event();
            }
        }
        if reload {
            shared.reload_in_background();
        }
        if save {
            shared.save_in_background();
        }
        state = shared.lock_state();
    }
}
