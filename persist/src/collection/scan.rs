//! Scans: the keys of a collection (all, or those under a prefix) and its entries, read from
//! the store as they are consumed, and their async twins as streams.
//!
//! A key's entry name is its bytes, each written alone (kept or escaped), so a key begins with
//! a prefix exactly when its name begins with the prefix's escape: a scan of the store by that
//! name prefix finds every such key, except two kinds, scanned after it: a key whose name is
//! hashed (too long to spell: its key is read from the entry) and a Windows device name such as
//! `con`, whose first byte is escaped.

use std::collections::VecDeque;

use super::{Collection, key};
use crate::backend::Names;
use crate::{Error, Persisted};

/// One scan of the store, and which of its names a key scan keeps.
#[derive(Debug)]
enum Part {
    /// The names with this prefix, each spelling its key (hashed ones read).
    Spelled(String),
    /// The name of this device-name key, if it is stored.
    Exact(String),
    /// The hashed names, whose keys are read and kept when they have the prefix.
    Hashed,
}

/// The keys of a [`Collection`]: every key, or those beginning with a prefix, read from the store
/// as the iterator is consumed (a page, a shard or a cursor at a time), so that listing a
/// collection of any size holds only a page of names in memory. Made by
/// [`Collection::keys`] and [`Collection::keys_with_prefix`].
///
/// Each key comes once, in the order of the store's names: bytewise name order on memory,
/// PostgreSQL and S3 (for keys of `a`-`z`, `0`-`9`, `_` and `-` that is key order; a key with
/// another byte sorts as its escape `~xx`), shard by shard on the local directory. With a
/// prefix, keys too long to spell as a name and device names (`con`, `aux`, ...) come last.
/// Collect and sort for key order: [`Keys::sorted`].
///
/// A key put while the scan runs may or may not be listed; one deleted may still be listed
/// (a [`get`](Collection::get) then returns `None`).
///
/// An `Err` item is the store's error (the scan ends after it), or the error of reading the
/// entry whose key had to be read (the scan goes on).
#[must_use = "iterators do nothing unless consumed"]
pub struct Keys<T: Persisted> {
    collection: Collection<T>,
    prefix: String,
    /// The scans still to run, in order.
    parts: VecDeque<Part>,
    /// The scan running, with the part it is.
    running: Option<(Part, Names)>,
}

impl<T: Persisted> std::fmt::Debug for Keys<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("prefix", &self.prefix)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl<T: Persisted> Keys<T> {
    /// The keys of `collection` that begin with `prefix`; its first scan started (so that a
    /// store that cannot be listed is an error at once).
    pub(super) fn new(collection: Collection<T>, prefix: &str) -> Result<Self, Error> {
        let mut keys = Keys::lazy(collection, prefix.to_owned());
        keys.start()?;
        Ok(keys)
    }

    /// The keys of `collection` that begin with `prefix`, nothing read before the first `next`
    /// (whose item is then the error of a store that cannot be listed).
    pub(super) fn lazy(collection: Collection<T>, prefix: String) -> Self {
        let mut parts = VecDeque::new();
        parts.push_back(Part::Spelled(key::escape(&prefix)));
        if !prefix.is_empty() {
            // Every spelled name begins with the escape of an empty prefix: only a prefix
            // leaves keys out of the first scan.
            for reserved in key::RESERVED {
                if reserved.starts_with(&prefix) {
                    parts.push_back(Part::Exact(key::name_of(reserved)));
                }
            }
            parts.push_back(Part::Hashed);
        }
        Keys {
            collection,
            prefix,
            parts,
            running: None,
        }
    }

    /// Starts the next scan; `false` when there is none.
    fn start(&mut self) -> Result<bool, Error> {
        let Some(part) = self.parts.pop_front() else {
            return Ok(false);
        };
        let prefix = match &part {
            Part::Spelled(prefix) | Part::Exact(prefix) => prefix.as_str(),
            Part::Hashed => key::HASHED,
        };
        let names = self.collection.inner.backend.scan(prefix)?;
        self.running = Some((part, names));
        Ok(true)
    }

    /// What the name `name` of the scan `part` gives: a key, nothing, or an error.
    fn key_of(
        collection: &Collection<T>,
        prefix: &str,
        part: &Part,
        name: String,
    ) -> Option<Result<String, Error>> {
        match part {
            Part::Spelled(_) => collection.key_of_name(name).transpose(),
            Part::Exact(exact) => (name == *exact)
                .then(|| collection.key_of_name(name).transpose())
                .flatten(),
            Part::Hashed => match collection.key_of_name(name) {
                Ok(Some(key)) if key.starts_with(prefix) => Some(Ok(key)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            },
        }
    }

    /// Collects the keys and sorts them (bytewise): every key held in memory at once.
    ///
    /// # Errors
    ///
    /// The first error of the scan.
    pub fn sorted(self) -> Result<Vec<String>, Error> {
        let mut keys = self.collect::<Result<Vec<_>, Error>>()?;
        keys.sort_unstable();
        Ok(keys)
    }
}

impl<T: Persisted> Iterator for Keys<T> {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((part, names)) = &mut self.running else {
                match self.start() {
                    Ok(true) => continue,
                    Ok(false) => return None,
                    Err(error) => {
                        self.parts.clear();
                        return Some(Err(error));
                    }
                }
            };
            match names.next() {
                None => self.running = None,
                Some(Err(error)) => {
                    // The store's listing failed: the scan ends here.
                    self.running = None;
                    self.parts.clear();
                    return Some(Err(error));
                }
                // Most names spell their keys: such a name is its key, with nothing to read.
                Some(Ok(name)) if matches!(part, Part::Spelled(_)) && key::spells_itself(&name) => {
                    return Some(Ok(name));
                }
                Some(Ok(name)) => {
                    if let Some(found) = Keys::key_of(&self.collection, &self.prefix, part, name) {
                        return Some(found);
                    }
                }
            }
        }
    }
}

/// The entries of a [`Collection`] as `(key, value)`, read as the iterator is consumed, in the
/// order of [`Keys`]: an entry that does not load is an `Err` beside its key, and the iteration
/// goes on; an entry deleted since its key was listed is skipped. Made by [`Collection::iter`]
/// and [`Collection::iter_prefix`].
///
/// When the store's listing itself fails, the item is that error beside an empty key, and the
/// iteration ends.
#[must_use = "iterators do nothing unless consumed"]
#[derive(Debug)]
pub struct Entries<T: Persisted> {
    keys: Keys<T>,
}

impl<T: Persisted> Entries<T> {
    pub(super) fn new(keys: Keys<T>) -> Self {
        Entries { keys }
    }
}

impl<T: Persisted + Clone + Send + Sync + 'static> Iterator for Entries<T> {
    type Item = (String, Result<T, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let key = match self.keys.next()? {
                Ok(key) => key,
                Err(error) => return Some((String::new(), Err(error))),
            };
            match self.keys.collection.get(&key) {
                Ok(Some(value)) => return Some((key, Ok(value))),
                // Deleted since the listing.
                Ok(None) => continue,
                Err(error) => return Some((key, Err(error))),
            }
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::stream::Streamed;

#[cfg(feature = "tokio")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use crate::tokio::Pending;

    /// How many items one hand-off to a worker thread reads.
    const BATCH: usize = 256;

    /// An iterator that reads from a store ([`Keys`](super::Keys), [`Entries`](super::Entries))
    /// run on persist's worker threads and consumed as a [`Stream`](futures_core::Stream): the
    /// async twin of a scan ([`Collection::keys_async`](crate::Collection::keys_async) and its
    /// siblings). Each hand-off reads up to 256 items; no worker thread is held between them,
    /// and nothing is read before the stream is polled. It needs no particular runtime.
    #[must_use = "streams do nothing unless polled"]
    pub struct Streamed<I: Iterator> {
        state: State<I>,
    }

    enum State<I: Iterator> {
        Idle(I, std::vec::IntoIter<I::Item>),
        Reading(Pending<(Option<I>, Vec<I::Item>)>),
        /// The last items read: the iterator is spent.
        Finishing(std::vec::IntoIter<I::Item>),
        Done,
    }

    impl<I: Iterator> std::fmt::Debug for Streamed<I> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Streamed").finish_non_exhaustive()
        }
    }

    // The state is moved in and out whole, never pinned.
    impl<I: Iterator> Unpin for Streamed<I> {}

    impl<I> Streamed<I>
    where
        I: Iterator + Send + 'static,
        I::Item: Send + 'static,
    {
        pub(crate) fn new(iterator: I) -> Self {
            Streamed {
                state: State::Idle(iterator, Vec::new().into_iter()),
            }
        }

        /// The next item, `None` at the end: [`Stream::poll_next`](futures_core::Stream) as a
        /// future, for a caller without a `StreamExt` at hand.
        pub async fn next(&mut self) -> Option<I::Item> {
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx))
                .await
        }
    }

    impl<I> futures_core::Stream for Streamed<I>
    where
        I: Iterator + Send + 'static,
        I::Item: Send + 'static,
    {
        type Item = I::Item;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
            loop {
                match std::mem::replace(&mut self.state, State::Done) {
                    State::Idle(mut iterator, mut read) => {
                        if let Some(item) = read.next() {
                            self.state = State::Idle(iterator, read);
                            return Poll::Ready(Some(item));
                        }
                        self.state =
                            State::Reading(Pending::new(std::path::PathBuf::new(), move |_| {
                                let items: Vec<I::Item> = iterator.by_ref().take(BATCH).collect();
                                let more = items.len() == BATCH;
                                Ok((more.then_some(iterator), items))
                            }));
                    }
                    State::Reading(mut reading) => {
                        match std::future::Future::poll(Pin::new(&mut reading), cx) {
                            Poll::Pending => {
                                self.state = State::Reading(reading);
                                return Poll::Pending;
                            }
                            Poll::Ready(Ok((Some(iterator), items))) => {
                                self.state = State::Idle(iterator, items.into_iter());
                            }
                            Poll::Ready(Ok((None, items))) => {
                                self.state = State::Finishing(items.into_iter());
                            }
                            // The work never fails: its items carry the errors.
                            Poll::Ready(Err(_)) => return Poll::Ready(None),
                        }
                    }
                    State::Finishing(mut items) => {
                        let item = items.next();
                        if item.is_some() {
                            self.state = State::Finishing(items);
                        }
                        return Poll::Ready(item);
                    }
                    State::Done => return Poll::Ready(None),
                }
            }
        }
    }
}
