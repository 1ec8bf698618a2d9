//! One invalidation path for every handle of this process on one store: a write through any
//! [`Collection`](super::Collection) handle drops the values it touches from the cache of every
//! other handle on the same store (opened separately, with or without a cache of its own), so a
//! cached handle never answers with a value another handle of this process replaced or
//! deleted.
//!
//! Handles are on the same store when their backends have the same root (a directory, a
//! database file, a table's or a bucket prefix's label), resolved to its canonical path where it
//! is one. Two stores that share a root by accident (two memory backends, say) only drop each
//! other's cached values more often than needed: never a stale one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

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
}

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

    fn each(&self, mut run: impl FnMut(&dyn Invalidate)) {
        let caches = self.caches.read().unwrap_or_else(PoisonError::into_inner);
        for cache in caches.iter().filter_map(Weak::upgrade) {
            run(&*cache);
        }
    }
}
