//! A collection in the process's memory, with faults to inject: for tests of code that uses a
//! collection, including its failure paths.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::feed::Subscribers;
use super::{Backend, Condition, Entry, Feed, Names, Notice, Stored, Tag, Written};
use crate::Error;
use crate::error::IoOp;

/// A fault for [`Memory::inject`] to cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The `nth` write from now (1 is the next; puts, batch entries and deletes count) fails
    /// with [`Error::Io`] (`IoOp::Write`, an `Other` error) and writes nothing.
    FailWrite {
        /// Which write.
        nth: u64,
    },
    /// The `nth` read from now fails with [`Error::Io`] (`IoOp::Read`).
    FailRead {
        /// Which read.
        nth: u64,
    },
    /// The `nth` conditional write from now finds its condition broken, as if another writer
    /// had just changed the entry: [`Written::Conflict`], nothing written.
    Conflict {
        /// Which conditional write.
        nth: u64,
    },
}

#[derive(Debug, Default)]
struct Store {
    /// In name order, for scans.
    entries: BTreeMap<String, (Vec<u8>, u64)>,
    /// The tag of the next write.
    next_tag: u64,
    faults: Vec<Fault>,
    writes: u64,
    reads: u64,
}

impl Store {
    /// Counts one operation of the kind `matches` selects, firing a fault that was due.
    fn strike(&mut self, matches: impl Fn(&Fault) -> Option<u64>) -> bool {
        let mut fired = false;
        self.faults.retain_mut(|fault| {
            let Some(nth) = matches(fault) else {
                return true;
            };
            let left = nth - 1;
            match fault {
                Fault::FailWrite { nth } | Fault::FailRead { nth } | Fault::Conflict { nth } => {
                    *nth = left;
                }
            }
            if left == 0 {
                fired = true;
                return false;
            }
            true
        });
        fired
    }

    fn write_fails(&mut self) -> bool {
        self.writes += 1;
        self.strike(|fault| match fault {
            Fault::FailWrite { nth } => Some(*nth),
            _ => None,
        })
    }
}

/// Entries in memory, gone with the value. Tags count writes. Its feed
/// ([`Backend::watch`]) is told each write as it is made. Faults are injected with
/// [`inject`](Memory::inject); [`Collection::memory`](crate::Collection::memory) opens a
/// collection on a new one.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use persist::backend::{Fault, Memory};
/// use persist::{Collection, Options, Persisted};
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Account { balance: i64 }
///
/// let store = Arc::new(Memory::new());
/// let accounts = Collection::<Account>::with_backend(store.clone(), Options::new());
/// store.inject(Fault::FailWrite { nth: 1 });
/// assert!(accounts.put("a", &Account { balance: 5 }).is_err()); // the injected failure
/// accounts.put("a", &Account { balance: 5 })?;
/// assert_eq!(accounts.get("a")?.unwrap().balance, 5);
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Memory {
    /// Shared with the scans in progress.
    store: Arc<Mutex<Store>>,
    /// Told each write, under the store's lock (so in the order of the writes).
    subscribers: Subscribers,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Self {
        Memory::default()
    }

    /// Arms `fault`; several may be armed at once.
    pub fn inject(&self, fault: Fault) {
        let nth = match fault {
            Fault::FailWrite { nth } | Fault::FailRead { nth } | Fault::Conflict { nth } => nth,
        };
        if nth > 0 {
            self.lock().faults.push(fault);
        }
    }

    /// Writes attempted so far (failed ones included).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Reads attempted so far.
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Tells the subscribers of the put of `name` (called under the store's lock).
    fn told_put(&self, name: &str, key: &str, tag: u64) {
        if self.subscribers.any() {
            self.subscribers.tell(&Notice::Put {
                name: name.to_owned(),
                tag: Tag::new(tag.to_string()),
                key: Some(key.to_owned()),
            });
        }
    }

    fn injected(&self, name: &str, op: IoOp) -> Error {
        Error::Io {
            path: self.locate(name),
            op,
            source: io::Error::other("fault injected by persist::backend::Memory"),
        }
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for Memory {
    fn root(&self) -> PathBuf {
        PathBuf::from("memory:")
    }

    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("memory:{name}"))
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        let mut store = self.lock();
        store.reads += 1;
        if store.strike(|fault| match fault {
            Fault::FailRead { nth } => Some(*nth),
            _ => None,
        }) {
            return Err(self.injected(name, IoOp::Read));
        }
        Ok(store.entries.get(name).map(|(bytes, tag)| Stored {
            bytes: bytes.clone(),
            tag: Tag::new(tag.to_string()),
        }))
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let mut store = self.lock();
        if store.write_fails() {
            return Err(self.injected(name, IoOp::Write));
        }
        let current = store.entries.get(name).map(|(_, tag)| tag.to_string());
        let holds = match condition {
            Condition::Always => true,
            Condition::Absent => current.is_none(),
            Condition::Matches(tag) => current.as_deref() == Some(tag.as_str()),
        };
        let forced = *condition != Condition::Always
            && store.strike(|fault| match fault {
                Fault::Conflict { nth } => Some(*nth),
                _ => None,
            });
        if !holds || forced {
            return Ok(Written::Conflict);
        }
        store.next_tag += 1;
        let tag = store.next_tag;
        store
            .entries
            .insert(name.to_owned(), (entry.bytes.to_vec(), tag));
        self.told_put(name, entry.key, tag);
        Ok(Written::Done(Tag::new(tag.to_string())))
    }

    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let mut store = self.lock();
        if store.write_fails() {
            return Err(self.injected(name, IoOp::Remove));
        }
        let holds = match (condition, store.entries.get(name)) {
            (_, None) => false,
            (Condition::Always, Some(_)) => true,
            (Condition::Absent, Some(_)) => false,
            (Condition::Matches(tag), Some((_, current))) => tag.as_str() == current.to_string(),
        };
        if holds {
            store.entries.remove(name);
            if self.subscribers.any() {
                self.subscribers.tell(&Notice::Deleted {
                    name: name.to_owned(),
                });
            }
        }
        Ok(holds)
    }

    fn list(&self) -> Result<Vec<String>, Error> {
        Ok(self.lock().entries.keys().cloned().collect())
    }

    /// Each write, told as it is made; a reader more than 4,096 notices behind gets
    /// [`Notice::Resync`] in place of what it missed.
    fn watch(
        &self,
        prefixes: &[String],
        _poll: Option<std::time::Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        // Under the store's lock: no write is between the subscription and the next.
        let _store = self.lock();
        Ok(Some(self.subscribers.subscribe(prefixes)))
    }

    /// In name order, a page of names at a time (the store is not held between pages: a
    /// name put meanwhile after the last one read is seen, like a database cursor's).
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        let store = Arc::clone(&self.store);
        let prefix = prefix.to_owned();
        super::paged(move |after| {
            let store = lock(&store);
            let from = match after {
                Some(last) => std::ops::Bound::Excluded(last),
                None => std::ops::Bound::Included(prefix.as_str()),
            };
            Ok(store
                .entries
                .range::<str, _>((from, std::ops::Bound::Unbounded))
                .map(|(name, _)| name)
                .take_while(|name| name.starts_with(&prefix))
                .take(super::PAGE)
                .cloned()
                .collect())
        })
    }

    /// All or nothing: a fault on any entry of the batch leaves the store as it was.
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        let mut store = self.lock();
        for (name, _) in entries {
            if store.write_fails() {
                return Err(self.injected(name, IoOp::Write));
            }
        }
        for (name, entry) in entries {
            store.next_tag += 1;
            let tag = store.next_tag;
            store
                .entries
                .insert((*name).to_owned(), (entry.bytes.to_vec(), tag));
            self.told_put(name, entry.key, tag);
        }
        Ok(())
    }
}
