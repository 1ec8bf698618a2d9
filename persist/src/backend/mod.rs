//! The byte-level seam under [`Collection`](crate::Collection): a store of named entries. A
//! backend moves bytes only: the envelope, the layers (checksum, zstd, encryption) and the
//! migration chain are the collection's, so an entry holds exactly what a file would, byte for
//! byte, on every backend.
//!
//! Entry names are made by the collection from its keys ([FORMAT.md], section 5): non-empty,
//! at most 200 bytes of `[a-z0-9_~-]`, never a name a file system treats specially. A backend
//! may use them as file names, object names or row keys as they are.
//!
//! Implement [`Backend`] to put a collection on another store; [`Memory`] is the in-process one
//! (with injectable faults, for tests), [`Local`] a directory of files, and with the
//! `postgres` feature `Postgres` a table, with the `s3` feature `S3` an object store prefix.
//!
//! [FORMAT.md]: https://github.com/persist-rs/persist/blob/main/FORMAT.md

mod feed;
mod lent;
mod local;
mod local_feed;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redb")]
mod redb;
#[cfg(any(feature = "postgres", feature = "s3"))]
mod runtime;
#[cfg(feature = "s3")]
mod s3;

use std::fmt;
use std::path::PathBuf;

pub use self::feed::{Feed, Notice};
pub(crate) use self::feed::{Poller, Popped, Queue};
pub use self::lent::Lent;
pub use self::local::Local;
pub use self::memory::{Fault, Memory};
#[cfg(feature = "postgres")]
pub use self::postgres::{DEFAULT_CONNECTIONS, Postgres};
#[cfg(feature = "redb")]
pub use self::redb::Redb;
#[cfg(feature = "s3")]
pub use self::s3::S3;
use crate::Error;
/// The `object_store` crate the [`S3`] backend takes its stores from (feature `s3`).
#[cfg(feature = "s3")]
pub use object_store;

/// The version of a stored entry as the store tells it (a file's identity, a row version, an
/// ETag): equal tags mean an unchanged entry. Opaque to the collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// A tag from the store's own version text.
    pub fn new(tag: impl Into<String>) -> Self {
        Tag(tag.into())
    }

    /// The store's version text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry as read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Exactly the bytes that were put.
    pub bytes: Vec<u8>,
    /// Its version in the store.
    pub tag: Tag,
}

/// An entry to write.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The key the entry is stored under: the name is its spelling for the store (a store
    /// that can hold the key itself, such as a database's text column, may keep it too).
    pub key: &'a str,
    /// The bytes to store: a persist file's bytes.
    pub bytes: &'a [u8],
    /// The schema version they hold, for stores that keep a backup of an entry of another
    /// version before replacing it (the local directory does, as [`Options::save`] does).
    ///
    /// [`Options::save`]: crate::Options::save
    pub version: u32,
}

/// When a [`Backend::put`] or [`Backend::delete`] may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Whatever is stored.
    Always,
    /// Only if nothing is stored under the name.
    Absent,
    /// Only if the stored entry still has this tag.
    Matches(Tag),
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored; the entry's new tag.
    Done(Tag),
    /// The condition did not hold: nothing was written.
    Conflict,
}

/// A store of named byte entries: what a [`Collection`](crate::Collection) runs on.
///
/// Every method may block (the collection's `_async` methods call them on persist's worker
/// threads). Reads never see a partial entry: a put replaces an entry whole or not at all.
/// Errors are [`Error`]s naming where the entry lives ([`Backend::locate`]).
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Where the collection is (a directory, a table, a bucket prefix), for errors about it
    /// as a whole, such as a refused key.
    fn root(&self) -> PathBuf;

    /// Where the entry `name` lives, for error messages and [`Error`]'s path: a file path, or a
    /// URL-like `postgres://…/table/name`.
    fn locate(&self, name: &str) -> PathBuf;

    /// The entry stored under `name`, with its tag; `None` if there is none.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn get(&self, name: &str) -> Result<Option<Stored>, Error>;

    /// The bytes of the entry `name`, without its tag: what a read that writes nothing after
    /// needs ([`Collection::get`](crate::Collection::get)), for a store whose tag costs
    /// something to make. The default is [`get`](Backend::get) without the tag.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get(name)?.map(|stored| stored.bytes))
    }

    /// The tag of the entry `name` now, `None` when there is none: what a feed that polls the
    /// store compares. The default reads the entry ([`get`](Backend::get)); a store that can
    /// tell a tag without the bytes (a file's metadata) should.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn tag(&self, name: &str) -> Result<Option<Tag>, Error> {
        Ok(self.get(name)?.map(|stored| stored.tag))
    }

    /// A feed of the changes of the entries whose names begin with one of `prefixes` (`[""]`
    /// for every entry), from now on: each put and delete as a [`Notice`], in the order of the
    /// writes of each entry, and [`Notice::Resync`] where changes may have been missed.
    ///
    /// `poll` is the interval of a feed that can only poll the store (list it and compare
    /// each listing with the one before); `None` asks for a feed only where the store tells
    /// its changes itself (what a cache follows). `None`, the default, is a store without a
    /// feed of its own: the collection then lists its names and [`tag`](Backend::tag)s every
    /// `poll` and compares.
    ///
    /// # Errors
    ///
    /// The store could not be watched.
    fn watch(
        &self,
        prefixes: &[String],
        poll: Option<std::time::Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        let _ = (prefixes, poll);
        Ok(None)
    }

    /// Lends the entry `name` to `visit` and returns `true`, or returns `false` when there is
    /// none: a [`read`](Backend::read) for a store that can show an entry where it lies (in a
    /// page of a read transaction, say) without copying it. The default lends what
    /// [`read`](Backend::read) returns.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn read_with(&self, name: &str, visit: &mut dyn FnMut(Lent<'_>)) -> Result<bool, Error> {
        Ok(match self.read(name)? {
            Some(bytes) => {
                visit(Lent::whole(&bytes));
                true
            }
            None => false,
        })
    }

    /// Stores `entry` under `name` if `condition` holds, atomically: a reader sees the old
    /// entry or the new one.
    ///
    /// # Errors
    ///
    /// The store could not be written (a failed condition is [`Written::Conflict`], not an
    /// error).
    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error>;

    /// Removes the entry `name` if `condition` holds; `Ok(false)` if there was none or the
    /// condition did not hold.
    ///
    /// # Errors
    ///
    /// The store could not be written.
    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error>;

    /// The names of every entry, in no particular order.
    ///
    /// # Errors
    ///
    /// The store could not be listed.
    fn list(&self) -> Result<Vec<String>, Error>;

    /// The names that begin with `prefix` (`""` for every name), read from the store as they
    /// are consumed (a page, a shard, a cursor at a time), so that a store of any size is never
    /// listed into memory whole. Each name comes once. The store documents its order: name
    /// order (bytewise) where it keeps one, as [`Memory`] does.
    ///
    /// The default lists every name with [`list`](Backend::list), keeps those with the prefix
    /// and sorts them: right for any store, bounded by its size.
    ///
    /// # Errors
    ///
    /// The store could not be listed: when the scan starts, or as an item of the iterator
    /// (after which it ends).
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        let mut names = self.list()?;
        names.retain(|name| name.starts_with(prefix));
        names.sort_unstable();
        Ok(Box::new(names.into_iter().map(Ok)))
    }

    /// Stores every entry, durably, as one batch where the store can (the local directory
    /// syncs each touched directory once; a database commits one transaction). The default
    /// puts them one by one.
    ///
    /// # Errors
    ///
    /// The first write that failed; entries before it may be stored.
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        for (name, entry) in entries {
            self.put(name, *entry, &Condition::Always)?;
        }
        Ok(())
    }

    /// [`get`](Backend::get) as a future that runs on the caller's executor, for a store whose
    /// client is async by nature (a database driver): the collection's `get_async` then
    /// awaits it instead of blocking a worker thread. `None`, the default, means the store has
    /// no such form, and `get_async` runs [`get`](Backend::get) on persist's worker threads.
    fn get_native(&self, name: &str) -> Option<BackendFuture<Option<Stored>>> {
        let _ = name;
        None
    }

    /// [`put`](Backend::put) as a future on the caller's executor; see
    /// [`get_native`](Backend::get_native).
    fn put_native(
        &self,
        name: &str,
        key: String,
        bytes: Vec<u8>,
        version: u32,
        condition: Condition,
    ) -> Option<BackendFuture<Written>> {
        let _ = (name, key, bytes, version, condition);
        None
    }

    /// Puts back the newest earlier copy of the entry `name` that `accepts` (the collection's
    /// decode of its bytes), after a read found the entry damaged: what a collection does under
    /// [`OnCorrupt::LastGood`](crate::OnCorrupt::LastGood). The store keeps the damaged bytes
    /// aside, under the entry's lock, confined to its own storage. The default keeps no copies:
    /// [`EntryRecovery::Nothing`]. The local directory falls back to the entry's generations
    /// ([`Options::generations`](crate::Options::generations)), newest first.
    ///
    /// # Errors
    ///
    /// The store could not be read or written (the entry is then left as it was).
    fn recover(&self, name: &str, accepts: &dyn Fn(&[u8]) -> bool) -> Result<EntryRecovery, Error> {
        let _ = (name, accepts);
        Ok(EntryRecovery::Nothing)
    }

    /// Removes every entry. The default deletes what [`list`](Backend::list) returns, one by
    /// one; the local directory removes its shard directories whole (lock files, backups and
    /// temporary files included). Entries written while it runs may remain.
    ///
    /// # Errors
    ///
    /// The first removal that failed; entries before it are gone.
    fn clear(&self) -> Result<(), Error> {
        for name in self.list()? {
            self.delete(&name, &Condition::Always)?;
        }
        Ok(())
    }

    /// Reads the entry `name`, lets `change` compute what replaces it, and stores that if no
    /// other write landed in between: [`Written::Conflict`] (nothing stored) when one did.
    ///
    /// The default is one optimistic attempt: read with the tag, put if the tag still matches
    /// (or the entry is still absent). The collection calls it again on a conflict, with a
    /// random backoff, until [`Options::lock_timeout`](crate::Options::lock_timeout) has
    /// passed. A store with locks may hold one instead and never conflict (the local
    /// directory holds the entry's lock file).
    ///
    /// # Errors
    ///
    /// `change`'s error (nothing is written) and the store's.
    fn modify(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<&Stored>) -> Result<Change, Error>,
    ) -> Result<Written, Error> {
        let stored = self.get(name)?;
        let condition = match &stored {
            Some(stored) => Condition::Matches(stored.tag.clone()),
            None => Condition::Absent,
        };
        match change(stored.as_ref())? {
            Change::Keep => Ok(kept(stored)),
            Change::Put {
                key,
                bytes,
                version,
            } => {
                let entry = Entry {
                    key: &key,
                    bytes: &bytes,
                    version,
                };
                self.put(name, entry, &condition)
            }
        }
    }
}

/// The names a [`Backend::scan`] yields: an iterator that reads the store as it goes, owning
/// what it needs (it may outlive the borrow of the backend and move to another thread).
pub type Names = Box<dyn Iterator<Item = Result<String, Error>> + Send + 'static>;

/// How many names a store's scan reads at a time.
pub(crate) const PAGE: usize = 1000;

/// A scan that reads a page of names at a time with `next_page(after)`, which returns the
/// names after `after` (the last name of the previous page; `None` for the first page) in
/// order, at most [`PAGE`] of them: the scan ends after a page that is not full, or at the first
/// error. The first page is read now, so that a store that cannot be read is an error at once.
pub(crate) fn paged(
    mut next_page: impl FnMut(Option<&str>) -> Result<Vec<String>, Error> + Send + 'static,
) -> Result<Names, Error> {
    let first = next_page(None)?;
    let mut done = first.len() < PAGE;
    let mut page = first.into_iter();
    // The last name of the page read last, where the next one starts after.
    let mut last: Option<String> = None;
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(name) = page.next() {
                if page.len() == 0 && !done {
                    // The only name of a page that is copied.
                    last = Some(name.clone());
                }
                return Some(Ok(name));
            }
            if done {
                return None;
            }
            match next_page(last.as_deref()) {
                Ok(names) => {
                    done = names.len() < PAGE;
                    page = names.into_iter();
                }
                Err(error) => {
                    done = true;
                    return Some(Err(error));
                }
            }
        }
    })))
}

/// What [`Backend::recover`] did with a damaged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryRecovery {
    /// No earlier copy is accepted (or the store keeps none): the entry is left as it was.
    Nothing,
    /// The entry reads as whole now (another writer replaced it meanwhile): nothing was done.
    Intact,
    /// An earlier copy's bytes are in the entry's place now.
    Restored {
        /// The copy put back (a generation).
        from: PathBuf,
        /// Where the damaged entry is kept (`<name>.corrupt-<unix ms>`).
        damaged: PathBuf,
    },
}

/// What a [`Backend::modify`] whose change kept the entry reports: done, with the entry's tag
/// (an empty one when there is no entry).
pub(crate) fn kept(stored: Option<Stored>) -> Written {
    Written::Done(stored.map_or_else(|| Tag::new(""), |stored| stored.tag))
}

/// The future of a backend's native async operation ([`Backend::get_native`],
/// [`Backend::put_native`]).
pub type BackendFuture<R> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, Error>> + Send>>;

/// What replaces an entry in [`Backend::modify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store these bytes, which hold this schema version.
    Put {
        /// The key of the entry (see [`Entry::key`]).
        key: String,
        /// The new entry.
        bytes: Vec<u8>,
        /// Its schema version.
        version: u32,
    },
    /// Leave the entry as it is.
    Keep,
}
