//! One invalidation path for every handle of this process on one store: a write through any
//! [`Collection`](super::Collection) handle drops the values it touches from the cache of every
//! other handle on the same store (opened separately, with or without a cache of its own), so a
//! cached handle never answers with a value another handle of this process replaced or
//! deleted.
//!
//! Writes of other processes (and machines) reach the caches through the store's feed
//! ([`Backend::watch`]): the first cache on a store starts one thread that reads it and drops
//! each changed key from every cache, and every value after a [`Notice::Resync`]. A store whose
//! feed polls (S3) is listed every second for it; one without a feed (redb, a custom backend)
//! is not polled: its caches rely on their time to live.
//!
//! Handles are on the same store when their backends have the same root (a directory, a
//! database file, a table's or a bucket prefix's label), resolved to its canonical path where it
//! is one. Two stores that share a root by accident (two memory backends, say) only drop each
//! other's cached values more often than needed: never a stale one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use super::key;
use crate::backend::{Backend, Feed, Notice, Tag};

/// What a write asks of a cache.
pub(crate) trait Invalidate: Send + Sync {
    /// Drops `key`'s value.
    fn invalidate(&self, key: &str);
    /// Drops every value.
    fn invalidate_all(&self);
}

/// The caches of the handles on one store.
#[derive(Default)]
pub(crate) struct Peers {
    caches: RwLock<Vec<Weak<dyn Invalidate>>>,
    /// Whether the store's feed is read (or was found missing).
    following: AtomicBool,
    /// The tag of this process's last write of each entry, until the feed tells it: that
    /// notice is this process's own write, whose values the write dropped already.
    own: Mutex<HashMap<String, Tag>>,
}

/// How many of this process's writes wait for their notice at most (past that, they are
/// forgotten: their notices then drop the keys once more, which is only a miss).
const OWN_WRITES: usize = 10_000;

/// How often a cache's store whose feed polls (S3) is listed for changes.
const CACHE_POLL: Duration = Duration::from_secs(1);

/// The stores with handles in this process, by root.
static STORES: Mutex<Option<HashMap<PathBuf, Weak<Peers>>>> = Mutex::new(None);

impl Peers {
    /// The peers of the store at `root`, shared with every live handle on it.
    pub(crate) fn of(root: &Path) -> Arc<Peers> {
        let id = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        let mut stores = STORES.lock().unwrap_or_else(PoisonError::into_inner);
        let stores = stores.get_or_insert_with(HashMap::new);
        if let Some(peers) = stores.get(&id).and_then(Weak::upgrade) {
            return peers;
        }
        // Stores whose handles are all gone are forgotten as new ones come.
        stores.retain(|_, peers| peers.strong_count() > 0);
        let peers = Arc::new(Peers::default());
        stores.insert(id, Arc::downgrade(&peers));
        peers
    }

    /// Adds a handle's cache: from now on every write on the store drops its values too.
    pub(crate) fn join(&self, cache: Weak<dyn Invalidate>) {
        let mut caches = self.caches.write().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(cache);
    }

    /// Drops `key`'s value from every cache on the store.
    pub(crate) fn invalidate(&self, key: &str) {
        self.each(|cache| cache.invalidate(key));
    }

    /// Drops every value from every cache on the store.
    pub(crate) fn invalidate_all(&self) {
        self.each(|cache| cache.invalidate_all());
    }

    /// Reads the store's feed, if it has one and no handle of this process reads it yet: each
    /// change another process (or this one) makes drops the key from every cache.
    pub(crate) fn follow(self: &Arc<Self>, backend: &Arc<dyn Backend>) {
        if self.following.swap(true, Ordering::AcqRel) {
            return;
        }
        let feed = match backend.watch(&[String::new()], Some(CACHE_POLL)) {
            Ok(Some(feed)) => Ok(feed),
            // No feed of its own: the caches rely on their time to live.
            Ok(None) => return,
            // Not now (a server out of connections, a first listing that failed): tried again
            // by the thread, which meanwhile keeps the caches from serving stale values.
            Err(_) => Err(Arc::clone(backend)),
        };
        let peers = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("persist-cache-feed".into())
            .spawn(move || {
                let feed = match feed {
                    Ok(feed) => feed,
                    Err(backend) => match feed_when_it_comes(&backend, &peers) {
                        Some(feed) => feed,
                        None => return,
                    },
                };
                invalidate_from(feed, &peers);
            });
        if started.is_err() {
            // No thread: the caches rely on their time to live, as on a store without a feed.
            self.following.store(false, Ordering::Release);
        }
    }

    /// Notes that this process wrote the entry `name`, now at `tag`: its notice from the feed
    /// drops nothing (the write dropped the key from every cache already).
    pub(crate) fn wrote(&self, name: &str, tag: &Tag) {
        if !self.following.load(Ordering::Acquire) {
            return;
        }
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        if own.len() >= OWN_WRITES {
            own.clear();
        }
        own.insert(name.to_owned(), tag.clone());
    }

    /// Whether a put of `name` at `tag` is this process's own write (forgotten once told).
    fn own_write(&self, name: &str, tag: &Tag) -> bool {
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        if own.get(name) == Some(tag) {
            own.remove(name);
            return true;
        }
        false
    }

    /// The entry `name` is gone: a write of it this process made is no longer to be told.
    fn removed(&self, name: &str) {
        self.own
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn each(&self, mut run: impl FnMut(&dyn Invalidate)) {
        let caches = self.caches.read().unwrap_or_else(PoisonError::into_inner);
        for cache in caches.iter().filter_map(Weak::upgrade) {
            run(&*cache);
        }
    }
}

/// The store's feed, asked for every [`RETRY`] until it comes (`None` if every handle on the
/// store is gone first, or the store says it has none). Until then every cache on the store is
/// emptied at each attempt: a cached value is never older than that.
fn feed_when_it_comes(backend: &Arc<dyn Backend>, peers: &Weak<Peers>) -> Option<Box<dyn Feed>> {
    loop {
        peers.upgrade()?.invalidate_all();
        std::thread::sleep(RETRY);
        peers.upgrade()?;
        match backend.watch(&[String::new()], Some(CACHE_POLL)) {
            Ok(feed) => {
                // What was cached since the last emptying may be older than the feed's first
                // notice: dropped, now that the feed tells every change after it.
                peers.upgrade()?.invalidate_all();
                return feed;
            }
            Err(_) => continue,
        }
    }
}

/// How often a feed that could not be had is asked for again.
const RETRY: Duration = Duration::from_secs(1);

/// Drops from the caches of `peers` what `feed` tells changed, until every handle on the store
/// is gone.
fn invalidate_from(mut feed: Box<dyn Feed>, peers: &Weak<Peers>) {
    loop {
        let next = feed.next(Duration::from_millis(100));
        let Some(peers) = peers.upgrade() else {
            return;
        };
        match next {
            Ok(None) => {}
            Ok(Some(Notice::Put { name, tag, .. })) if peers.own_write(&name, &tag) => {}
            Ok(Some(Notice::Put { name, .. } | Notice::Deleted { name })) => {
                peers.removed(&name);
                match key::into_key(name) {
                    Some(key) => peers.invalidate(&key),
                    // A hashed name's key is in the entry, which may be gone.
                    None => peers.invalidate_all(),
                }
            }
            Ok(Some(Notice::Resync)) => peers.invalidate_all(),
            Err(_) => {
                peers.invalidate_all();
                drop(peers);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
