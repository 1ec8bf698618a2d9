//! [`Collection::live`]: a [`Live`] value kept in one entry of a collection, saved with the
//! Live policies (each save a compare-and-swap on the entry's tag, retried on the newer value)
//! and reloaded when the collection's feed tells the entry changed.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Collection, WatchEvent};
use crate::backend::{Condition, Tag, Written};
use crate::live::watcher::Watched;
use crate::live::{EntryPlace, LiveSettings};
use crate::{Error, Live, Persisted, SavePolicy};

/// The entry `key` of a collection, as a live value's place.
struct EntryOf<T> {
    collection: Collection<T>,
    key: String,
    name: String,
}

impl<T: Persisted + Clone + Send + Sync + 'static> EntryPlace<T> for EntryOf<T> {
    fn location(&self) -> PathBuf {
        self.collection.inner.backend.locate(&self.name)
    }

    fn tag(&self) -> Result<Option<String>, Error> {
        Ok(self
            .collection
            .inner
            .backend
            .tag(&self.name)?
            .map(|tag| tag.as_str().to_owned()))
    }

    fn load(&self) -> Result<Option<(T, String)>, Error> {
        let Some(stored) = self.collection.inner.backend.get(&self.name)? else {
            return Ok(None);
        };
        let value = self
            .collection
            .decode(&self.key, &self.name, &stored.bytes)?;
        Ok(Some((value, stored.tag.as_str().to_owned())))
    }

    fn save(&self, value: &T, expected: Option<&str>) -> Result<Option<String>, Error> {
        let collection = &self.collection;
        let (key, name) = (self.key.as_str(), self.name.as_str());
        let bytes = collection.encode(key, name, value)?;
        let condition = match expected {
            Some(tag) => Condition::Matches(Tag::new(tag)),
            None => Condition::Absent,
        };
        Ok(match collection.store(key, name, &bytes, &condition)? {
            Written::Done(tag) => Some(tag.as_str().to_owned()),
            Written::Conflict => None,
        })
    }
}

impl<T: Persisted + Clone + Default + Send + Sync + 'static> Collection<T> {
    /// The entry `key` as a [`Live`] value, saved with [`SavePolicy::Immediate`]: see
    /// [`live_with`](Collection::live_with).
    ///
    /// # Errors
    ///
    /// See [`live_with`](Collection::live_with).
    pub fn live(&self, key: &str) -> Result<Live<T>, Error> {
        self.live_with(key, SavePolicy::Immediate)
    }

    /// The entry `key` as a [`Live`] value: loaded now (`T::default()` when there is none,
    /// not stored until the first update), kept in memory, saved with `policy`, and reloaded
    /// when the collection's feed ([`watch`](Collection::watch)) tells the entry changed, by
    /// another handle, process or machine. Every [`Live`] method works as on a file:
    ///
    /// - [`SavePolicy::Immediate`]: each update is a compare-and-swap on the entry's tag;
    ///   when another writer got there first, the newer entry is loaded and the update
    ///   applied to it again (with a random wait, for as long as
    ///   [`Options::lock_timeout`](crate::Options::lock_timeout) allows), as
    ///   [`update`](Collection::update) does. No update is lost.
    /// - [`SavePolicy::Coalesce`]: updates are published at once and saved together later;
    ///   a newer entry from elsewhere is loaded and the pending updates replayed on it before
    ///   the save.
    ///
    /// On PostgreSQL, another machine's change reaches the value within the feed's lag and
    /// a reload (milliseconds); on S3 within the polling interval (one second). When the last
    /// handle is dropped, what is pending is saved; an entry has no place beside it for an
    /// unsaved copy, so a save that then fails is reported to the observers as
    /// [`Error::Unsaved`] without one.
    ///
    /// As with a [`Live`] file deleted by another program, an entry deleted elsewhere is not a
    /// change: the value is kept, and the next save writes the entry again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], the entry's load errors, the store's errors, and an error when
    /// the collection cannot be watched.
    ///
    /// # Examples
    ///
    /// ```
    /// use persist::{Collection, Persisted};
    ///
    /// #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
    /// #[persist(version = 1)]
    /// struct Counter { hits: u64 }
    ///
    /// # fn main() -> Result<(), persist::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let counters: Collection<Counter> = Collection::open(dir.path().join("counters"))?;
    /// let home = counters.live("home")?;
    /// home.update(|counter| counter.hits += 1)?; // stored when it returns
    /// assert_eq!(counters.get("home")?.unwrap().hits, 1);
    ///
    /// counters.put("home", &Counter { hits: 41 })?; // another writer
    /// home.update(|counter| counter.hits += 1)?; // applied to the newest entry
    /// assert_eq!(home.get().hits, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn live_with(&self, key: &str, policy: SavePolicy) -> Result<Live<T>, Error> {
        let name = self.name(key)?.into_owned();
        let entry = Arc::new(EntryOf {
            collection: self.clone(),
            key: key.to_owned(),
            name,
        });
        let settings = LiveSettings {
            policy,
            watch: true,
            refresh_every: None,
        };
        crate::live::open_entry(self.inner.settings.clone(), settings, entry, |watched| {
            self.follow(key, watched)
        })
    }

    /// Calls `watched` on every change of the entry `key` the collection's feed tells (and on
    /// a resync), from a thread of its own, until `watched` is gone.
    fn follow(&self, key: &str, watched: Weak<dyn Watched>) -> Result<(), Error> {
        let mut watch = self.watch(key)?;
        let key = key.to_owned();
        std::thread::Builder::new()
            .name("persist-live-entry".into())
            .spawn(move || {
                loop {
                    let event = watch.next_timeout(Duration::from_millis(100));
                    let Some(watched) = watched.upgrade() else {
                        return;
                    };
                    let concerns = match &event {
                        None => false,
                        Some(Ok(WatchEvent::Put { key: changed, .. }))
                        | Some(Ok(WatchEvent::Deleted { key: changed })) => *changed == key,
                        // A resync, or an error of the feed: the entry may have changed.
                        Some(_) => true,
                    };
                    if concerns {
                        watched.changed(None);
                    }
                }
            })
            .map(drop)
            .map_err(|source| Error::Io {
                path: self.inner.location.clone(),
                op: crate::error::IoOp::BlockingTask,
                source,
            })
    }
}
