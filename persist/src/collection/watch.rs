//! Change feeds of a collection: [`Collection::watch`] and [`Watch`].
//!
//! A watch reads its store's feed ([`Backend::watch`](crate::backend::Backend::watch), or a
//! poll of the store's names and tags where the store has none) on a thread of its own, turns
//! entry names into keys (and, when asked, entries into values), and hands the events over
//! through a bounded queue: to a blocking reader ([`Iterator`], [`Watch::next_timeout`]) or to
//! an async one (a `Stream`, with the `tokio` feature).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Collection, key};
use crate::backend::{Feed, Notice, Poller, Popped, Queue, Tag};
use crate::{Error, Persisted};

/// How long the watch's thread waits on its feed before it looks whether the watch is gone.
const TICK: Duration = Duration::from_millis(100);

/// How many times a resync is begun again when the store fails while the state is read, before
/// `Synced` follows the state as far as it could be read.
const RESYNC_TRIES: u32 = 5;

/// Where a name stands after a resync (see `Watcher::settling`).
enum Settle {
    /// Its notices may be behind the state told, which was this (`None`: no value).
    Told(Option<Tag>),
    /// A notice of it was the store's state: the notices after it are of later writes.
    CaughtUp,
}

/// What [`Watcher::tell_state`] told.
enum Told {
    /// The state told, by name, and whether it is whole (`false`: the store failed while it
    /// was read, told as errors, and keys may be missing).
    State(HashMap<String, Settle>, bool),
    /// The store could not be listed (told as an error): nothing was told.
    Unlisted,
    /// The watch is gone.
    Gone,
}

/// How many events a watch holds for a reader that has not taken them; past that, its thread
/// waits (and the store's feed holds, or tells a [`WatchEvent::Resync`] later).
const HELD: usize = 1024;

/// How a [`Collection::watch_with`] watches.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    values: bool,
    current: bool,
    poll: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            values: false,
            current: false,
            poll: Duration::from_secs(1),
        }
    }
}

impl WatchOptions {
    /// Changes only, without values, a store without a feed of its own polled every second.
    pub fn new() -> Self {
        WatchOptions::default()
    }

    /// Whether each [`WatchEvent::Put`] carries the entry's value, read and migrated as
    /// [`Collection::get`] would (at the time the event is delivered: the newest value, whose
    /// tag the event then carries). Off by default.
    #[must_use]
    pub fn values(mut self, values: bool) -> Self {
        self.values = values;
        self
    }

    /// Whether the watch begins with the current state: [`WatchEvent::Resync`], a
    /// [`WatchEvent::Put`] for every key watched, then [`WatchEvent::Synced`], and the changes
    /// after. Off by default (changes from now on).
    #[must_use]
    pub fn current(mut self, current: bool) -> Self {
        self.current = current;
        self
    }

    /// How often a store without a feed of its own (S3, a redb file, a custom backend) has its
    /// names and tags listed and compared with the listing before: the feed's lag. One second
    /// by default. A store that takes longer than a fifth of that to list is listed less
    /// often (four times as long as a listing takes). The local directory, memory and
    /// PostgreSQL stores tell their changes themselves and do not poll.
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }
}

/// One event of a [`Watch`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchEvent<T> {
    /// A value was put under `key`.
    Put {
        /// The key.
        key: String,
        /// The entry's version in the store after that put (the same [`Tag`] a store's
        /// conditional write compares).
        tag: Tag,
        /// The value, when the watch reads values ([`WatchOptions::values`]).
        value: Option<T>,
    },
    /// The value under `key` was deleted.
    Deleted {
        /// The key.
        key: String,
    },
    /// Changes may have been missed (a lost connection, a reader too far behind, a store's
    /// lost file events): forget what you know of the keys watched. The state of every key
    /// watched follows as [`Put`](WatchEvent::Put) events, then [`Synced`](WatchEvent::Synced).
    /// The writes made while that state was read are told after it only where they change it
    /// (each is checked against the store first): a key is never taken back to an older state
    /// than the one told. While the store cannot be reached, each attempt is an `Err` item
    /// and a `Resync` again: only `Synced` ends a resync.
    Resync,
    /// The state that followed the last [`Resync`](WatchEvent::Resync) is complete: a key
    /// without a `Put` since then has no value.
    Synced,
}

/// A subscription to the changes of a collection's keys (or those under a prefix), made by
/// [`Collection::watch`]: every put and delete, after it is stored, in the order of the
/// writes of each key, at least once (a key written several times between two looks of the
/// feed may be told once, with its newest state; on a store that is polled, writes between two
/// listings that leave a key as it was may be told as nothing).
///
/// `Watch` is both an [`Iterator`] and (feature `tokio`) a `Stream`: with
/// `futures::StreamExt` in scope, `watch.next()` is ambiguous; write
/// `StreamExt::next(&mut watch)` or [`next_async`](Watch::next_async).
///
/// Read it as an [`Iterator`] (each `next` waits for the next event), with a timeout
/// ([`next_timeout`](Watch::next_timeout), [`timeout`](Watch::timeout)), or with the `tokio`
/// feature as a `Stream` ([`next_async`](Watch::next_async)). Nothing is dropped silently: a
/// watch that may have missed changes says [`WatchEvent::Resync`] and gives the current state
/// again. Dropping it ends the subscription.
///
/// An `Err` item is an error of the store's feed or of a read (a value that does not decode,
/// naming its entry); the watch goes on after it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use persist::{Collection, Persisted, WatchEvent, WatchOptions};
///
/// #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Prefs { theme: String }
///
/// # fn main() -> Result<(), persist::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let prefs: Collection<Prefs> = Collection::open(dir.path().join("prefs"))?;
/// let mut changes = prefs.watch_with("user/", WatchOptions::new().values(true))?;
/// prefs.put("other", &Prefs::default())?; // not under the prefix
/// prefs.put("user/alice", &Prefs { theme: "dark".into() })?;
/// let told = changes.next_timeout(Duration::from_secs(5)).expect("the put is told")?;
/// let WatchEvent::Put { key, value, .. } = told else { panic!("not a put") };
/// assert_eq!((key.as_str(), value.unwrap().theme.as_str()), ("user/alice", "dark"));
///
/// prefs.delete("user/alice")?;
/// let told = changes.next_timeout(Duration::from_secs(5)).expect("the delete is told")?;
/// assert_eq!(told, WatchEvent::Deleted { key: "user/alice".into() });
/// # Ok(())
/// # }
/// ```
pub struct Watch<T> {
    events: Arc<Queue<Result<WatchEvent<T>, Error>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T> fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl<T> Watch<T> {
    /// The next event, waiting at most `wait` for it: `None` when none came in that time.
    pub fn next_timeout(&mut self, wait: Duration) -> Option<Result<WatchEvent<T>, Error>> {
        match self.events.pop(wait) {
            Popped::Item(event) => Some(event),
            Popped::Lagged | Popped::Empty | Popped::Closed => None,
        }
    }

    /// The events as they come, until none has come for `wait`.
    pub fn timeout(
        &mut self,
        wait: Duration,
    ) -> impl Iterator<Item = Result<WatchEvent<T>, Error>> {
        std::iter::from_fn(move || self.next_timeout(wait))
    }
}

impl<T> Iterator for Watch<T> {
    type Item = Result<WatchEvent<T>, Error>;

    /// The next event, waiting as long as it takes (`None` only if the watch's thread ended,
    /// which it does not while the watch is held).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.events.pop(Duration::from_secs(3600)) {
                Popped::Item(event) => return Some(event),
                Popped::Closed => return None,
                Popped::Lagged | Popped::Empty => {}
            }
        }
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        self.events.close();
        // The thread sees the queue closed within a tick; it is not waited for.
        drop(self.thread.take());
    }
}

#[cfg(feature = "tokio")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::{Watch, WatchEvent};
    use crate::Error;
    use crate::backend::Popped;

    impl<T> Unpin for Watch<T> {}

    impl<T> Watch<T> {
        /// The next event, awaited: [`Stream::poll_next`](futures_core::Stream) as a method.
        pub async fn next_async(&mut self) -> Option<Result<WatchEvent<T>, Error>> {
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx))
                .await
        }
    }

    impl<T> futures_core::Stream for Watch<T> {
        type Item = Result<WatchEvent<T>, Error>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            loop {
                return match self.events.poll_pop(cx) {
                    Poll::Ready(Popped::Item(event)) => Poll::Ready(Some(event)),
                    Poll::Ready(Popped::Closed) => Poll::Ready(None),
                    Poll::Ready(Popped::Lagged | Popped::Empty) => continue,
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    }
}

/// The entry-name prefixes under which the keys that begin with `prefix` are stored: its
/// escape, and, for a non-empty prefix, the hashed names and the device names it begins.
pub(super) fn name_prefixes(prefix: &str) -> Vec<String> {
    let mut prefixes = vec![key::escape(prefix)];
    if !prefix.is_empty() {
        prefixes.push(key::HASHED.to_owned());
        prefixes.extend(
            key::RESERVED
                .iter()
                .filter(|reserved| reserved.starts_with(prefix))
                .map(|reserved| key::name_of(reserved)),
        );
    }
    prefixes
}

/// The feed of `collection`'s store for the names under `prefixes`: the store's own, or a
/// poll every `poll`.
pub(super) fn feed<T>(
    collection: &Collection<T>,
    prefixes: Vec<String>,
    poll: Duration,
) -> Result<Box<dyn Feed>, Error> {
    let backend = &collection.inner.backend;
    match backend.watch(&prefixes, Some(poll))? {
        Some(feed) => Ok(feed),
        None => Ok(Box::new(Poller::new(Arc::clone(backend), prefixes, poll)?)),
    }
}

impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// Watches the keys that begin with `prefix` (`""` for every key): each put and delete
    /// from now on, without values. See [`Watch`] and [`watch_with`](Collection::watch_with).
    ///
    /// # Errors
    ///
    /// The store could not be watched (or, for a store that is polled, listed).
    pub fn watch(&self, prefix: &str) -> Result<Watch<T>, Error> {
        self.watch_with(prefix, WatchOptions::new())
    }

    /// Watches the keys that begin with `prefix` as `options` say.
    ///
    /// How each store tells its changes, and the lag of a change seen from another handle:
    ///
    /// | store | feed |
    /// |---|---|
    /// | local directory | file events on its shard directories (another process's writes included), a listing after lost events; where file events cannot be had, a listing every half second |
    /// | memory | each write, as it is made |
    /// | PostgreSQL | the table's trigger publishes each change with `NOTIFY`; one connection of the backend listens for all its feeds (asking the server every 5 seconds whether it still works), and a lost one is a [`WatchEvent::Resync`] once it listens again |
    /// | S3 | a listing of the prefix with ETags every [`poll_every`](WatchOptions::poll_every); the watch begins with [`WatchEvent::Resync`] and the current state (an object store keeps no record of what changed before) |
    /// | any other store | a listing of names and tags every [`poll_every`](WatchOptions::poll_every) |
    ///
    /// # Errors
    ///
    /// The store could not be watched (or, for a store that is polled, listed).
    pub fn watch_with(&self, prefix: &str, options: WatchOptions) -> Result<Watch<T>, Error> {
        let feed = feed(self, name_prefixes(prefix), options.poll)?;
        let events = Arc::new(Queue::new(HELD));
        let mut watcher = Watcher {
            feed,
            collection: self.clone(),
            prefix: prefix.to_owned(),
            values: options.values,
            events: Arc::clone(&events),
            hashed: HashMap::new(),
            settling: HashMap::new(),
            settle_all: false,
        };
        // The keys of hashed names must be known before their deletes come.
        watcher.learn_hashed()?;
        let thread = std::thread::Builder::new()
            .name("persist-watch".into())
            .spawn(move || watcher.run(options.current))
            .map_err(|source| Error::Io {
                path: self.inner.location.clone(),
                op: crate::error::IoOp::BlockingTask,
                source,
            })?;
        Ok(Watch {
            events,
            thread: Some(thread),
        })
    }
}

/// The watch's thread.
struct Watcher<T> {
    feed: Box<dyn Feed>,
    collection: Collection<T>,
    prefix: String,
    values: bool,
    events: Arc<Queue<Result<WatchEvent<T>, Error>>>,
    /// The keys of the hashed names seen (a hashed name's key is in its entry, which is gone
    /// once it is deleted).
    hashed: HashMap<String, String>,
    /// After a resync: what the watch last told of each name whose notices may still be
    /// behind the state told (the tag, or `None` for no value). The notices of writes made
    /// while the state was read come after it; each is checked against the store before it is
    /// told, so that a key is never taken back to an older state than the one told. A name
    /// is trusted again once a notice of it is the store's state when read (the feed has
    /// caught up with it: the notices after that one are of later writes).
    settling: HashMap<String, Settle>,
    /// After a resync, until the feed is quiet for a tick: names not in `settling` are checked
    /// too (as told absent: a name the state did not show may still have notices behind).
    settle_all: bool,
}

impl<T: Persisted + Clone + Send + Sync + 'static> Watcher<T> {
    fn run(mut self, current: bool) {
        if current && !self.resync() {
            return;
        }
        loop {
            if self.events.is_closed() {
                return;
            }
            let delivered = match self.feed.next(TICK) {
                Ok(None) => {
                    // Quiet for a tick: names the state did not show are trusted again (those
                    // it showed, once each has caught up).
                    if self.settle_all {
                        self.settle_all = false;
                        self.settling
                            .retain(|_, settle| matches!(settle, Settle::Told(_)));
                    }
                    true
                }
                Ok(Some(Notice::Put { name, tag, key })) => self.put(name, tag, key),
                Ok(Some(Notice::Deleted { name })) => self.deleted(name),
                Ok(Some(Notice::Resync)) => self.resync(),
                Err(error) => {
                    // The feed may have missed changes while it failed.
                    let told = self.events.push_waiting(Err(error));
                    std::thread::sleep(TICK);
                    told && self.resync()
                }
            };
            if !delivered {
                return;
            }
        }
    }

    /// Reads the keys of every hashed name of the collection: a hashed name tells neither its
    /// key nor whether that is under the prefix (one read per key too long to spell, once).
    fn learn_hashed(&mut self) -> Result<(), Error> {
        let backend = Arc::clone(&self.collection.inner.backend);
        for name in backend.scan(key::HASHED)? {
            let name = name?;
            if let Some(key) = self.collection.key_of_name(name.clone())? {
                self.hashed.insert(name, key);
            }
        }
        Ok(())
    }

    /// Hands `event` over; `false` when the watch is gone.
    fn send(&self, event: Result<WatchEvent<T>, Error>) -> bool {
        self.events.push_waiting(event)
    }

    /// The key of the name `name` (`told` by the feed, or read), if it is one under the
    /// prefix.
    fn key_of(&mut self, name: String, told: Option<String>) -> Result<Option<String>, Error> {
        let hashed = key::is_hashed(&name);
        let key = match told {
            Some(key) if key::name_of(&key) == name => key,
            _ => match self.collection.key_of_name(name.clone())? {
                Some(key) => key,
                None => return Ok(None),
            },
        };
        if hashed {
            self.hashed.insert(name, key.clone());
        }
        Ok(key.starts_with(&self.prefix).then_some(key))
    }

    /// Whether a notice of `name` is checked against the store before it is told (see
    /// `settling`).
    fn settles(&self, name: &str) -> bool {
        match self.settling.get(name) {
            Some(Settle::Told(_)) => true,
            Some(Settle::CaughtUp) => false,
            None => self.settle_all,
        }
    }

    fn put(&mut self, name: String, tag: Tag, told: Option<String>) -> bool {
        let key = match self.key_of(name.clone(), told) {
            Ok(Some(key)) => key,
            Ok(None) => return true,
            Err(error) => return self.send(Err(error)),
        };
        if self.settles(&name) {
            return self.settle(key, name, Some(tag));
        }
        match self.read(key, &name, tag) {
            Ok(Some(event)) => self.send(Ok(event)),
            Ok(None) => true,
            Err(error) => self.send(Err(error)),
        }
    }

    /// The put event of `key` (stored as `name`, told with `tag`): with its value read now
    /// when the watch reads values (`None` when the entry is gone meanwhile: its delete is
    /// told next).
    fn read(&self, key: String, name: &str, tag: Tag) -> Result<Option<WatchEvent<T>>, Error> {
        if !self.values {
            return Ok(Some(WatchEvent::Put {
                key,
                tag,
                value: None,
            }));
        }
        let Some(stored) = self.collection.inner.backend.get(name)? else {
            return Ok(None);
        };
        let value = self.collection.decode(&key, name, &stored.bytes)?;
        Ok(Some(WatchEvent::Put {
            key,
            tag: stored.tag,
            value: Some(value),
        }))
    }

    fn deleted(&mut self, name: String) -> bool {
        let key = if key::is_hashed(&name) {
            match self.hashed.remove(&name) {
                Some(key) => Some(key),
                // A hashed name whose key was never read (its entry was gone before): which
                // key went is unknown, so the watcher is told to read the state again.
                None => return self.resync(),
            }
        } else {
            key::into_key(name.clone())
        };
        match key {
            Some(key) if key.starts_with(&self.prefix) => {
                if self.settles(&name) {
                    return self.settle(key, name, None);
                }
                self.send(Ok(WatchEvent::Deleted { key }))
            }
            _ => true,
        }
    }

    /// A notice of `key` (stored as `name`) while a resync settles: the entry's state is read
    /// now and told only when it differs from the one told last (so never an older one).
    /// `noticed` is the notice's tag (`None` for a delete).
    fn settle(&mut self, key: String, name: String, noticed: Option<Tag>) -> bool {
        let event = match self.collection.inner.backend.tag(&name) {
            Ok(Some(tag)) => match self.read(key.clone(), &name, tag) {
                Ok(event) => event,
                Err(error) => return self.send(Err(error)),
            },
            Ok(None) => None,
            Err(error) => return self.send(Err(error)),
        };
        let now = match &event {
            Some(WatchEvent::Put { tag, .. }) => Some(tag.clone()),
            _ => None,
        };
        let told = match self.settling.get(&name) {
            Some(Settle::Told(told)) => told.clone(),
            // Not in the state told (or caught up, which `settles` does not hand here).
            _ => None,
        };
        // The notice is of the store's state now: the feed has caught up with this name.
        let settled = match noticed == now {
            true => Settle::CaughtUp,
            false => Settle::Told(now.clone()),
        };
        self.settling.insert(name.clone(), settled);
        if told == now {
            return true;
        }
        match event {
            Some(event) => {
                if key::is_hashed(&name) {
                    self.hashed.insert(name, key);
                }
                self.send(Ok(event))
            }
            None => self.send(Ok(WatchEvent::Deleted { key })),
        }
    }

    /// Tells [`WatchEvent::Resync`], then the state of every key watched, then
    /// [`WatchEvent::Synced`]; `false` when the watch is gone. What the feed holds is dropped
    /// first: it happened before the listing, which shows its outcome (told after it, a
    /// notice would take a key back to an older state). A store that cannot be listed, or
    /// that fails while the state is read, is told as an error and the resync begun again, so
    /// that `Synced` follows a whole state (a store that cannot be listed, until it can; one
    /// that fails after its listing, [`RESYNC_TRIES`] times, then `Synced` follows the state as
    /// far as it could be read; an entry that does not decode is told as its error and
    /// skipped).
    fn resync(&mut self) -> bool {
        let mut attempt = 0;
        loop {
            while let Ok(Some(_)) = self.feed.next(Duration::ZERO) {}
            if !self.send(Ok(WatchEvent::Resync)) {
                return false;
            }
            match self.tell_state() {
                Told::Gone => return false,
                Told::State(settling, whole) => {
                    attempt += 1;
                    if whole || attempt >= RESYNC_TRIES {
                        self.settling = settling;
                        self.settle_all = true;
                        break;
                    }
                    std::thread::sleep(10 * TICK);
                }
                // Nothing is known until the store can be listed: tried until it can.
                Told::Unlisted => std::thread::sleep(10 * TICK),
            }
        }
        self.send(Ok(WatchEvent::Synced))
    }

    /// The state of every key watched, as [`WatchEvent::Put`] events (errors told as they
    /// come), for [`resync`](Watcher::resync).
    fn tell_state(&mut self) -> Told {
        let keys = match self.collection.keys_with_prefix(&self.prefix) {
            Ok(keys) => keys,
            Err(error) => {
                return match self.send(Err(error)) {
                    true => Told::Unlisted,
                    false => Told::Gone,
                };
            }
        };
        // (The hashed names known are kept: those outside the prefix are not listed here,
        // and their deletes are still recognised.)
        let backend = Arc::clone(&self.collection.inner.backend);
        let mut settling = HashMap::new();
        let mut store_failed = false;
        for key in keys {
            let key = match key {
                Ok(key) => key,
                Err(error) => {
                    // A page of the listing could not be read: keys may be missing.
                    store_failed = true;
                    if !self.send(Err(error)) {
                        return Told::Gone;
                    }
                    continue;
                }
            };
            let name = key::name_of(&key);
            if key::is_hashed(&name) {
                self.hashed.insert(name.clone(), key.clone());
            }
            let event = match backend.tag(&name) {
                Ok(Some(tag)) => self.read(key, &name, tag),
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            };
            let sent = match event {
                Ok(Some(event)) => {
                    if let WatchEvent::Put { tag, .. } = &event {
                        settling.insert(name, Settle::Told(Some(tag.clone())));
                    }
                    self.send(Ok(event))
                }
                Ok(None) => true,
                Err(error) => {
                    // The store's failure, not the entry's (which is told, and skipped).
                    store_failed |= matches!(error, Error::Remote { .. } | Error::Io { .. });
                    self.send(Err(error))
                }
            };
            if !sent {
                return Told::Gone;
            }
        }
        Told::State(settling, !store_failed)
    }
}
