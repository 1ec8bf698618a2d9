//! Change feeds: what a store tells of the changes of its entries, as they happen.
//!
//! A store with a channel of its own ([`Memory`](super::Memory) directly, the local directory
//! through file events) returns a [`Feed`] from [`Backend::watch`](super::Backend::watch); the
//! collection polls any other store's names and tags ([`Poller`]). Feeds are read by one thread
//! each (the collection's watch, or the cache's invalidation), one notice at a time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Backend, Tag};
use crate::Error;

/// A change of one entry, or the word that some may have been missed, as a store's [`Feed`]
/// tells it. Names are entry names, as [`Backend`](super::Backend) methods take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The entry `name` was put; `tag` is its tag after that write.
    Put {
        /// The entry's name.
        name: String,
        /// Its tag after the write.
        tag: Tag,
        /// The entry's key, where the store knows it without reading the entry (the
        /// [`Entry::key`](super::Entry::key) it was written with); `None` otherwise. A name
        /// too long to spell its key is a hash whose key is read from the entry, which may be
        /// gone by then: a feed that can tell the key should.
        key: Option<String>,
    },
    /// The entry `name` was removed.
    Deleted {
        /// The entry's name.
        name: String,
    },
    /// Changes may have been missed (a lost connection, a reader that fell too far behind):
    /// whoever reads the feed reads the entries it watches again.
    Resync,
}

/// The changes of a store's entries, read one at a time by a single reader: what
/// [`Backend::watch`](super::Backend::watch) returns. Dropping it ends the subscription.
pub trait Feed: Send + fmt::Debug {
    /// The next notice, waiting at most `wait` for one: `Ok(None)` when none came in that
    /// time. Notices of one entry come in the order of its writes.
    ///
    /// # Errors
    ///
    /// The store could not be watched (the reader then reads what it watches again).
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error>;
}

/// How many notices a [`channel`]'s feed holds for a reader that has not taken them; past that,
/// they are dropped for one [`Notice::Resync`].
pub(crate) const BOUND: usize = 4096;

/// A bounded queue of items between threads, with a waker for an async reader. Past its bound,
/// what it holds is dropped and the reader is told it lagged.
pub(crate) struct Queue<E> {
    state: Mutex<QueueState<E>>,
    ready: Condvar,
    bound: usize,
}

struct QueueState<E> {
    items: VecDeque<E>,
    lagged: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// What a [`Queue`] gave its reader.
pub(crate) enum Popped<E> {
    Item(E),
    /// Items were dropped since the last pop (the queue was full).
    Lagged,
    /// Nothing within the wait.
    Empty,
    /// The queue is closed and empty.
    Closed,
}

impl<E> Queue<E> {
    pub(crate) fn new(bound: usize) -> Self {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                lagged: false,
                closed: false,
                waker: None,
            }),
            ready: Condvar::new(),
            bound,
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item`; `false` when the queue is closed. A full queue drops what it holds and
    /// marks the reader lagged.
    pub(crate) fn push(&self, item: E) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        if state.items.len() >= self.bound {
            state.items.clear();
            state.lagged = true;
        }
        state.items.push_back(item);
        self.wake(state);
        true
    }

    /// Adds `item`, waiting while the queue is full; `false` when the queue is (or gets)
    /// closed.
    pub(crate) fn push_waiting(&self, item: E) -> bool {
        let mut state = self.state();
        while !state.closed && state.items.len() >= self.bound {
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return false;
        }
        state.items.push_back(item);
        self.wake(state);
        true
    }

    fn wake(&self, mut state: MutexGuard<'_, QueueState<E>>) {
        let waker = state.waker.take();
        drop(state);
        self.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the queue: pushes fail from now on, and a reader gets what is held, then
    /// [`Popped::Closed`].
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        self.wake(state);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    fn take(&self, state: &mut QueueState<E>) -> Option<Popped<E>> {
        if std::mem::take(&mut state.lagged) {
            return Some(Popped::Lagged);
        }
        if let Some(item) = state.items.pop_front() {
            // A writer waiting for room.
            self.ready.notify_all();
            return Some(Popped::Item(item));
        }
        state.closed.then_some(Popped::Closed)
    }

    /// The next item, waiting at most `wait`.
    pub(crate) fn pop(&self, wait: Duration) -> Popped<E> {
        let deadline = Instant::now().checked_add(wait);
        let mut state = self.state();
        loop {
            if let Some(popped) = self.take(&mut state) {
                return popped;
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Popped::Empty;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The next item for an async reader: [`Poll::Pending`] (with its waker kept) when there
    /// is none yet.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Popped<E>> {
        let mut state = self.state();
        match self.take(&mut state) {
            Some(popped) => Poll::Ready(popped),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The subscribers of a store that tells its own changes (the [`Memory`](super::Memory) store):
/// each write is told to every subscriber whose prefixes match, in the order of the writes.
#[derive(Default)]
pub(crate) struct Subscribers {
    list: Mutex<Vec<Subscription>>,
}

/// A subscriber's prefixes and queue.
type Subscription = (Vec<String>, Weak<Queue<Notice>>);

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers").finish_non_exhaustive()
    }
}

impl Subscribers {
    /// A new subscriber to the names that begin with one of `prefixes`.
    pub(crate) fn subscribe(&self, prefixes: &[String]) -> Box<dyn Feed> {
        let queue = Arc::new(Queue::new(BOUND));
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|(_, queue)| queue.strong_count() > 0);
        list.push((prefixes.to_vec(), Arc::downgrade(&queue)));
        Box::new(Received { queue })
    }

    /// Whether anyone listens (so a write need not make its notice).
    pub(crate) fn any(&self) -> bool {
        !self
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Tells `notice` to the subscribers it concerns.
    pub(crate) fn tell(&self, notice: &Notice) {
        let name = match notice {
            Notice::Put { name, .. } | Notice::Deleted { name } => Some(name.as_str()),
            Notice::Resync => None,
        };
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|(prefixes, queue)| {
            let Some(queue) = queue.upgrade() else {
                return false;
            };
            if name.is_none_or(|name| matches(prefixes, name)) {
                return queue.push(notice.clone());
            }
            true
        });
    }
}

/// Whether `name` begins with one of `prefixes`.
pub(crate) fn matches(prefixes: &[String], name: &str) -> bool {
    prefixes
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()))
}

/// The reading end of a [`Subscribers`] subscription.
struct Received {
    queue: Arc<Queue<Notice>>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received").finish_non_exhaustive()
    }
}

impl Feed for Received {
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error> {
        Ok(match self.queue.pop(wait) {
            Popped::Item(notice) => Some(notice),
            Popped::Lagged => Some(Notice::Resync),
            Popped::Empty | Popped::Closed => None,
        })
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// An entry as a listing shows it: its name, its tag, and where the store has one, a stamp of
/// its last write (an object's time of last modification). A store whose tag is a hash of the
/// content (an ETag) gives an entry written back to the same bytes its old tag again; the
/// stamp still changes, so a poll still tells that the entry was written.
pub(crate) type Listed = (String, Tag, Option<String>);

/// The tags of the entries a feed watches, as last seen: what a poll compares the store with.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    tags: HashMap<String, (Tag, Option<String>)>,
}

impl Seen {
    /// Notes `name`'s tag now (`None`: no entry), and returns the notice of the change, if it
    /// changed.
    pub(crate) fn note(&mut self, name: &str, now: Option<Tag>) -> Option<Notice> {
        match now {
            Some(tag) => {
                if self.tags.get(name).is_some_and(|(seen, _)| *seen == tag) {
                    return None;
                }
                self.tags.insert(name.to_owned(), (tag.clone(), None));
                Some(Notice::Put {
                    name: name.to_owned(),
                    tag,
                    key: None,
                })
            }
            None => self.tags.remove(name).map(|_| Notice::Deleted {
                name: name.to_owned(),
            }),
        }
    }

    /// Compares every name with `listing` (every entry watched now, with its tag and stamp):
    /// the notices of what changed (its tag or its stamp), in name order for the puts, then
    /// the deletes.
    pub(crate) fn diff(&mut self, listing: Vec<Listed>) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut gone = std::mem::take(&mut self.tags);
        for (name, tag, stamp) in listing {
            let before = gone.remove(&name);
            if before.is_none_or(|(seen, stamped)| seen != tag || stamped != stamp) {
                notices.push(Notice::Put {
                    name: name.clone(),
                    tag: tag.clone(),
                    key: None,
                });
            }
            self.tags.insert(name, (tag, stamp));
        }
        let mut gone: Vec<String> = gone.into_keys().collect();
        gone.sort_unstable();
        notices.extend(gone.into_iter().map(|name| Notice::Deleted { name }));
        notices
    }
}

/// Every entry of `backend` whose name begins with one of `prefixes`, with its tag (and no
/// stamp: a store's tags alone).
pub(crate) fn listing(backend: &dyn Backend, prefixes: &[String]) -> Result<Vec<Listed>, Error> {
    let mut listing = Vec::new();
    for prefix in covering(prefixes) {
        for name in backend.scan(prefix)? {
            let name = name?;
            if let Some(tag) = backend.tag(&name)? {
                listing.push((name, tag, None));
            }
        }
    }
    Ok(listing)
}

/// The prefixes of `prefixes` that no other one covers (each name is scanned once).
pub(crate) fn covering(prefixes: &[String]) -> Vec<&str> {
    let mut kept: Vec<&str> = Vec::new();
    for prefix in prefixes {
        let covered = prefixes
            .iter()
            .any(|other| other != prefix && prefix.starts_with(other.as_str()));
        if !covered && !kept.contains(&prefix.as_str()) {
            kept.push(prefix);
        }
    }
    kept
}

/// What a [`Poller`] lists: every entry it watches, with its tag.
pub(crate) type Lister = Box<dyn FnMut() -> Result<Vec<Listed>, Error> + Send>;

/// A feed for a store without one of its own: its names and tags listed every `every` (or
/// four times as long as a listing takes, if that is longer), each listing compared with the
/// one before.
pub(crate) struct Poller {
    list: Lister,
    every: Duration,
    seen: Seen,
    pending: VecDeque<Notice>,
    next_poll: Instant,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// A poller of `backend`'s names under `prefixes`, its first listing taken now (so that
    /// every change after this returns is told).
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        prefixes: Vec<String>,
        every: Duration,
    ) -> Result<Self, Error> {
        Poller::with(Box::new(move || listing(&*backend, &prefixes)), every)
    }

    /// Makes the first notice a [`Notice::Resync`] (for a store that can tell nothing of what
    /// happened before its feed began).
    #[cfg(feature = "s3")]
    pub(crate) fn resync_first(&mut self) {
        self.pending.push_front(Notice::Resync);
    }

    /// A poller of what `list` lists, its first listing taken now.
    pub(crate) fn with(mut list: Lister, every: Duration) -> Result<Self, Error> {
        let mut seen = Seen::default();
        seen.diff(list()?);
        Ok(Poller {
            list,
            every,
            seen,
            pending: VecDeque::new(),
            next_poll: Instant::now() + every,
        })
    }
}

impl Feed for Poller {
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(notice) = self.pending.pop_front() {
                return Ok(Some(notice));
            }
            let now = Instant::now();
            if now < self.next_poll {
                if deadline <= now {
                    return Ok(None);
                }
                std::thread::sleep(self.next_poll.min(deadline) - now);
                continue;
            }
            let started = Instant::now();
            let listing = (self.list)()?;
            self.pending.extend(self.seen.diff(listing));
            // A store that takes long to list is listed less often: at most a fifth of the
            // time goes to listing it.
            self.next_poll = Instant::now() + self.every.max(started.elapsed() * 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Tag {
        Tag::new(text)
    }

    /// An entry of a listing without a stamp.
    fn listed(name: &str, tag_text: &str) -> Listed {
        (name.to_owned(), tag(tag_text), None)
    }

    #[test]
    fn a_diff_tells_puts_changes_and_deletes_once() {
        let mut seen = Seen::default();
        let first = seen.diff(vec![listed("a", "1"), listed("b", "1")]);
        assert_eq!(first.len(), 2);
        assert!(
            seen.diff(vec![listed("a", "1"), listed("b", "1")])
                .is_empty()
        );
        let second = seen.diff(vec![listed("a", "2"), listed("c", "1")]);
        assert_eq!(
            second,
            [
                Notice::Put {
                    name: "a".into(),
                    tag: tag("2"),
                    key: None,
                },
                Notice::Put {
                    name: "c".into(),
                    tag: tag("1"),
                    key: None,
                },
                Notice::Deleted { name: "b".into() },
            ]
        );
        assert_eq!(seen.note("c", Some(tag("1"))), None);
        assert_eq!(
            seen.note("c", None),
            Some(Notice::Deleted { name: "c".into() })
        );
        assert_eq!(seen.note("c", None), None);
    }

    #[test]
    fn an_entry_written_back_to_its_old_tag_is_told_by_its_stamp() {
        let stamped = |tag_text: &str, stamp: &str| {
            vec![("a".to_owned(), tag(tag_text), Some(stamp.to_owned()))]
        };
        let mut seen = Seen::default();
        assert_eq!(seen.diff(stamped("x", "t1")).len(), 1);
        assert!(seen.diff(stamped("x", "t1")).is_empty());
        // X, then Y, then X again between two listings: the ETag is X's again.
        assert_eq!(
            seen.diff(stamped("x", "t3")),
            vec![Notice::Put {
                name: "a".into(),
                tag: tag("x"),
                key: None
            }]
        );
        assert!(seen.diff(stamped("x", "t3")).is_empty());
    }

    #[test]
    fn a_full_queue_drops_what_it_holds_for_one_lag() {
        let queue = Queue::new(2);
        for n in 0..5 {
            assert!(queue.push(n));
        }
        assert!(matches!(queue.pop(Duration::ZERO), Popped::Lagged));
        assert!(matches!(queue.pop(Duration::ZERO), Popped::Item(4)));
        assert!(matches!(queue.pop(Duration::ZERO), Popped::Empty));
        queue.close();
        assert!(!queue.push(6));
        assert!(matches!(queue.pop(Duration::ZERO), Popped::Closed));
    }

    #[test]
    fn prefixes_covered_by_another_are_scanned_once() {
        let prefixes = [
            "a".to_owned(),
            "ab".to_owned(),
            "b".to_owned(),
            "a".to_owned(),
        ];
        assert_eq!(covering(&prefixes), ["a", "b"]);
        assert_eq!(covering(&["".to_owned(), "x".to_owned()]), [""]);
    }
}
