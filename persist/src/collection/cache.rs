//! The cache of decoded values of a [`Collection`](super::Collection)
//! ([`Options::cache`](crate::Options::cache), feature `cache`): moka's concurrent cache with a
//! size bound and a time to live, shared by the sync and async methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::peers::Invalidate;

/// Counters of a collection's cache ([`Collection::cache_stats`](super::Collection::cache_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the backend.
    pub misses: u64,
}

/// A cache of values by key; the type-erased face the collection keeps, made where `T` is
/// known to be `Clone`.
///
/// A read that missed notes the [`epoch`](ValueCache::epoch) before it reads the backend and
/// inserts only if no write of this process (through any handle on the store) was forgotten
/// since: otherwise a value read just before a write could be inserted after the write's
/// invalidation, and outlive it.
///
/// Writes invalidate through [`Invalidate`], the face every handle on the store reaches it by
/// ([`Peers`](super::peers::Peers)).
pub(crate) trait ValueCache<T>: Invalidate {
    fn get(&self, key: &str) -> Option<T>;
    fn epoch(&self) -> u64;
    fn insert(&self, key: &str, value: &T, epoch: u64);
    fn stats(&self) -> CacheStats;
}

/// How big and how long: [`Options::cache`](crate::Options::cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheSettings {
    pub(crate) capacity: u64,
    pub(crate) ttl: Duration,
}

struct Moka<T> {
    values: moka::sync::Cache<String, Arc<T>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Counts invalidations.
    epoch: AtomicU64,
}

/// A cache of at most `capacity` values, each kept at most `ttl` after it was read.
pub(crate) fn new<T: Clone + Send + Sync + 'static>(
    settings: CacheSettings,
) -> Arc<dyn ValueCache<T>> {
    Arc::new(Moka {
        values: moka::sync::Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(settings.ttl)
            .build(),
        hits: AtomicU64::new(0),
        misses: AtomicU64::new(0),
        epoch: AtomicU64::new(0),
    })
}

impl<T: Clone + Send + Sync + 'static> ValueCache<T> for Moka<T> {
    fn get(&self, key: &str) -> Option<T> {
        let found = self.values.get(key);
        crate::telemetry::cache_read(found.is_some());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|value| T::clone(&value))
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn insert(&self, key: &str, value: &T, epoch: u64) {
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.values.insert(key.to_owned(), Arc::new(value.clone()));
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl<T: Send + Sync + 'static> Invalidate for Moka<T> {
    fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.values.invalidate(key);
    }

    fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.values.invalidate_all();
    }
}
