//! Delivery of [`LiveEvent`]s: to `on_change` callbacks by a job of the shared pool (so a slow
//! callback never blocks an update, and a handle costs no thread), and to tokio watch
//! channels.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, Weak};

#[cfg(feature = "tokio")]
use super::ChangeOrigin;
use super::LiveEvent;
use super::core::lock;
use super::runtime::{self, Job, JobId, Kind, Next};

/// How many events may wait for slow callbacks before intermediate values are skipped.
const BACKLOG: usize = 1024;

type Callback<T> = Arc<dyn Fn(&LiveEvent<T>) + Send + Sync>;

/// The observers of one [`Live`](super::Live) value.
pub(super) struct Events<T> {
    dispatch: Arc<Dispatch<T>>,
    #[cfg(feature = "tokio")]
    values: tokio::sync::watch::Sender<Arc<T>>,
    #[cfg(feature = "tokio")]
    events: tokio::sync::watch::Sender<LiveEvent<T>>,
}

struct Dispatch<T> {
    queue: Mutex<Queue<T>>,
}

/// How many events one run of the dispatch job delivers before it lets other jobs run.
const BATCH: usize = 64;

struct Queue<T> {
    callbacks: Vec<(u64, Callback<T>)>,
    events: VecDeque<LiveEvent<T>>,
    next_id: u64,
    /// The dispatch job, once registered with the pool.
    job: Option<JobId>,
    /// The handle is gone: the dispatcher delivers what is queued and stops.
    closed: bool,
}

impl<T: Send + Sync + 'static> Events<T> {
    #[cfg_attr(not(feature = "tokio"), allow(unused_variables))]
    pub(super) fn new(value: Arc<T>) -> Self {
        Events {
            dispatch: Arc::new(Dispatch {
                queue: Mutex::new(Queue {
                    callbacks: Vec::new(),
                    events: VecDeque::new(),
                    next_id: 0,
                    job: None,
                    closed: false,
                }),
            }),
            #[cfg(feature = "tokio")]
            values: tokio::sync::watch::Sender::new(Arc::clone(&value)),
            #[cfg(feature = "tokio")]
            events: tokio::sync::watch::Sender::new(LiveEvent {
                value,
                origin: ChangeOrigin::Local,
                error: None,
            }),
        }
    }

    /// Queues `event` for the callbacks and sends it to the watch channels. Never blocks on
    /// an observer.
    pub(super) fn send(&self, event: LiveEvent<T>) {
        #[cfg(feature = "tokio")]
        {
            if event.error.is_none() {
                self.values.send_replace(Arc::clone(&event.value));
            }
            self.events.send_replace(event.clone());
        }
        let mut queue = lock(&self.dispatch.queue);
        if queue.callbacks.is_empty() || queue.closed {
            return;
        }
        let skippable = |event: &LiveEvent<T>| event.error.is_none();
        if queue.events.len() >= BACKLOG
            && skippable(&event)
            && queue.events.back().is_some_and(skippable)
        {
            // The callbacks are far behind: the newest value replaces the one before it.
            queue.events.pop_back();
        }
        queue.events.push_back(event);
        let job = Dispatch::job(&self.dispatch, &mut queue);
        drop(queue);
        if let Some(job) = job {
            runtime::wake(job);
        }
    }

    pub(super) fn on_change(
        &self,
        callback: impl Fn(&LiveEvent<T>) + Send + Sync + 'static,
    ) -> Subscription {
        let mut queue = lock(&self.dispatch.queue);
        let id = queue.next_id;
        queue.next_id += 1;
        queue.callbacks.push((id, Arc::new(callback)));
        Dispatch::job(&self.dispatch, &mut queue);
        drop(queue);
        let dispatch: Weak<Dispatch<T>> = Arc::downgrade(&self.dispatch);
        Subscription {
            remove: Some(Box::new(move || {
                if let Some(dispatch) = dispatch.upgrade() {
                    let removed: Vec<(u64, Callback<T>)> = {
                        let mut queue = lock(&dispatch.queue);
                        let (removed, kept) = std::mem::take(&mut queue.callbacks)
                            .into_iter()
                            .partition(|(other, _)| *other == id);
                        queue.callbacks = kept;
                        removed
                    };
                    // Dropped without the lock: the callback may hold the last handle, whose
                    // drop takes it.
                    drop(removed);
                }
            })),
        }
    }

    #[cfg(feature = "tokio")]
    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<T>> {
        self.values.subscribe()
    }

    #[cfg(feature = "tokio")]
    pub(super) fn subscribe_events(&self) -> tokio::sync::watch::Receiver<LiveEvent<T>> {
        self.events.subscribe()
    }

    /// The handle is gone: the dispatcher delivers what is queued, then stops.
    pub(super) fn close(&self) {
        let mut queue = lock(&self.dispatch.queue);
        queue.closed = true;
        let job = queue.job;
        drop(queue);
        if let Some(job) = job {
            runtime::wake(job);
        }
    }
}

impl<T: Send + Sync + 'static> Dispatch<T> {
    /// The dispatch job, registered on first use; `None` if the pool could not start a thread
    /// (the next event tries again).
    fn job(dispatch: &Arc<Self>, queue: &mut Queue<T>) -> Option<JobId> {
        if queue.job.is_none() {
            let job: Arc<dyn Job> = Arc::clone(dispatch) as Arc<dyn Job>;
            queue.job = runtime::register(Kind::Callbacks, job).ok();
        }
        queue.job
    }
}

impl<T: Send + Sync + 'static> Job for Dispatch<T> {
    fn run(&self) -> Next {
        for _ in 0..BATCH {
            let mut queue = lock(&self.queue);
            let Some(event) = queue.events.pop_front() else {
                if queue.closed {
                    queue.job = None;
                    return Next::Done;
                }
                return Next::Idle;
            };
            let callbacks: Vec<Callback<T>> = queue
                .callbacks
                .iter()
                .map(|(_, callback)| Arc::clone(callback))
                .collect();
            drop(queue);
            for callback in callbacks {
                // A panicking callback loses this event, not the others, nor its place.
                let _ = catch_unwind(AssertUnwindSafe(|| callback(&event)));
            }
        }
        // More may wait: after the other jobs that are ready.
        Next::At(std::time::Instant::now())
    }
}

/// Keeps an [`on_change`](super::Live::on_change) callback registered; dropping it removes
/// the callback (an event being delivered at that moment may still reach it).
#[must_use = "the callback is removed when the Subscription is dropped"]
pub struct Subscription {
    remove: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Subscription {
    /// Keeps the callback registered for as long as the [`Live`](super::Live) value exists.
    pub fn keep(mut self) {
        self.remove = None;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(remove) = self.remove.take() {
            remove();
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("active", &self.remove.is_some())
            .finish()
    }
}
