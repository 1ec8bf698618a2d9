//! A collection in object storage (feature `s3`): S3 and the stores compatible with it, or any
//! other `object_store` implementation, through the `object_store` crate.
//!
//! One object per entry, named `<prefix><name>`: the entry name as it is (FORMAT.md, section 5),
//! so `users/~48ello~20~57orld` in a console is the key `Hello World` (`~` is an unreserved URL
//! character and a safe S3 key character; the name is not percent-encoded again). The object's
//! ETag is the entry's [`Tag`]: a conditional write is a PUT with `If-None-Match: *` (absent)
//! or `If-Match: <etag>` (the store's compare-and-swap; on S3 set
//! `S3ConditionalPut::ETagMatch`, the default of `AmazonS3Builder`), so update and migrate_all
//! need no lock. The backend runs the requests on a small runtime of its own (two threads), so
//! it works from sync code and from any executor.
//!
//! Earlier versions wrote the `~` of a name as `%7E` (`users/%7E48ello%7E20%7E57orld`): such
//! objects are neither read nor listed; rename them (`%7E` → `~`) to keep them.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures_core::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::feed::Listed;
use super::runtime::Runtime;
use super::{Backend, BackendFuture, Condition, Entry, Feed, Names, Stored, Tag, Written};
use crate::Error;
use crate::error::{IoOp, RemoteOp};

/// An object store prefix as a [`Backend`]; [`Collection::s3`](crate::Collection::s3) opens a
/// collection on one.
#[derive(Clone)]
pub struct S3 {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// Prepended to each entry name: `users/`, or empty.
    prefix: String,
    /// `<store>/<prefix>`, for errors.
    label: String,
    /// The store as errors name it: `the S3 bucket <bucket>`.
    server: String,
    /// Whether the store lists keys in bytewise order (see [`lists_in_order`]).
    ordered: bool,
    runtime: Runtime,
}

/// The names a scan reads from the store per request to its runtime.
const SCAN_PAGE: usize = 1000;

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3").field("at", &self.inner.label).finish()
    }
}

/// An object store error as persist's: [`Error::Remote`] naming the entry, the operation and
/// the store (its bucket), with the client's error.
fn store_error(
    path: PathBuf,
    op: RemoteOp,
    store: String,
) -> impl FnOnce(object_store::Error) -> Error {
    move |error| {
        // Failures on the way to the server (and its 5xx answers) come as `Generic`; a missing
        // bucket, a refused request or a bad key are answered for good.
        let transient = matches!(error, object_store::Error::Generic { .. })
            && !error.to_string().contains("NoSuchBucket");
        Error::Remote {
            path,
            op,
            server: store,
            transient,
            source: Box::new(error),
        }
    }
}

/// Which listed objects are a scan's names.
#[derive(Clone)]
struct Pick {
    /// The backend's prefix.
    prefix: String,
    /// The backend's prefix and the scan's.
    wanted: String,
    /// Whether the store lists in order: a key past `wanted`'s range ends the scan.
    ordered: bool,
}

/// What a listed object is to a scan.
enum Picked {
    /// One of its names.
    Name(String),
    /// Not one of its names.
    Skip,
    /// Past its names: the scan is over.
    Past,
}

impl Pick {
    fn pick(&self, object: &ObjectMeta) -> Picked {
        let key = object.location.as_ref();
        if key.starts_with(&self.wanted) {
            let name = &key[self.prefix.len()..];
            return match name.is_empty() || name.contains(['/', '.', '%']) {
                true => Picked::Skip,
                false => Picked::Name(name.to_owned()),
            };
        }
        match self.ordered && key > self.wanted.as_str() {
            true => Picked::Past,
            false => Picked::Skip,
        }
    }
}

/// The names of a [`Backend::scan`], read from the store's listing a page at a time.
struct Listing {
    backend: S3,
    /// The store's listing; `None` once over.
    objects: Option<BoxStream<'static, object_store::Result<ObjectMeta>>>,
    pick: Pick,
    /// The names read and not consumed yet, with their ETags and times of last modification.
    page: std::vec::IntoIter<Listed>,
    /// The error that ended the listing, yielded after the names read before it.
    failed: Option<Error>,
}

impl Listing {
    /// Reads up to [`SCAN_PAGE`] more names.
    fn fetch(&mut self) {
        let Some(mut objects) = self.objects.take() else {
            return;
        };
        let pick = self.pick.clone();
        let (objects, names, failed) = self.backend.inner.runtime.block(async move {
            let mut names = Vec::new();
            loop {
                match std::future::poll_fn(|cx| objects.as_mut().poll_next(cx)).await {
                    None => return (None, names, None),
                    Some(Err(error)) => return (None, names, Some(error)),
                    Some(Ok(object)) => match pick.pick(&object) {
                        Picked::Name(name) => {
                            let tag = Tag::new(object.e_tag.clone().unwrap_or_default());
                            let stamp = object.last_modified.to_rfc3339();
                            names.push((name, tag, Some(stamp)));
                            if names.len() >= SCAN_PAGE {
                                return (Some(objects), names, None);
                            }
                        }
                        Picked::Skip => {}
                        Picked::Past => return (None, names, None),
                    },
                }
            }
        });
        self.objects = objects;
        self.page = names.into_iter();
        self.failed = failed.map(|error| {
            let inner = &self.backend.inner;
            store_error(self.backend.root(), RemoteOp::List, inner.server.clone())(error)
        });
    }
}

impl Listing {
    /// The next name with its ETag and time of last modification.
    fn next_tagged(&mut self) -> Option<Result<Listed, Error>> {
        loop {
            if let Some(named) = self.page.next() {
                return Some(Ok(named));
            }
            if let Some(error) = self.failed.take() {
                return Some(Err(error));
            }
            self.objects.as_ref()?;
            self.fetch();
        }
    }
}

impl Iterator for Listing {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Result<String, Error>> {
        self.next_tagged().map(|named| named.map(|(name, ..)| name))
    }
}

/// How errors name a store: its bucket, from object_store's `AmazonS3(<bucket>)`.
fn server_of(store: &str) -> String {
    match store
        .strip_prefix("AmazonS3(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        Some(bucket) => format!("the S3 bucket {bucket}"),
        None => format!("the object store {store}"),
    }
}

/// Whether the store `store` (as it displays itself) lists keys in bytewise (UTF-8 binary)
/// order, so that a scan can stop at the first key past its prefix: S3's general purpose
/// buckets (not S3 Express directory buckets, `--x-s3`), Google Cloud Storage, Azure and
/// object_store's in-memory store. Other stores (a local directory, a wrapper) are listed
/// whole and sorted.
fn lists_in_order(store: &str) -> bool {
    match store
        .strip_prefix("AmazonS3(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        Some(bucket) => !bucket.ends_with("--x-s3"),
        None => {
            store.starts_with("GoogleCloudStorage(")
                || store.starts_with("MicrosoftAzure")
                || store == "InMemory"
        }
    }
}

/// The greatest string below every string that begins with `wanted`, as far as a listing
/// offset (keys after it) needs: `wanted` with its last character lowered by one and
/// U+10FFFF after it; `wanted` without its last character when that has none below it.
fn before(wanted: &str) -> String {
    let mut chars: Vec<char> = wanted.chars().collect();
    if let Some(last) = chars.pop()
        && let Some(lower) = (0..u32::from(last)).rev().find_map(char::from_u32)
    {
        chars.push(lower);
        chars.push(char::MAX);
    }
    chars.into_iter().collect()
}

impl S3 {
    /// The entries under `prefix` (such as `users/`; empty for the whole bucket) of `store`.
    /// Nothing is asked of the store: [`check`](S3::check) tries it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a prefix that is no object name's beginning (an empty
    /// segment, `a//b/`; a `.` or `..` segment; a control character); [`Error::Io`] with
    /// [`IoOp::BlockingTask`] if the backend's threads could not start.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<S3, Error> {
        // Object names have no leading `/`.
        let prefix = prefix.trim_start_matches('/');
        let label = format!("{store}/{prefix}");
        if let Err(error) = ObjectPath::parse(format!("{prefix}x")) {
            return Err(Error::InvalidPath {
                path: PathBuf::from(&label),
                reason: format!("the prefix {prefix:?} cannot begin an object name: {error}"),
            });
        }
        let server = server_of(&store.to_string());
        let ordered = lists_in_order(&store.to_string());
        let runtime = Runtime::start("persist-s3").map_err(|source| Error::Io {
            path: PathBuf::from(&label),
            op: IoOp::BlockingTask,
            source,
        })?;
        Ok(S3 {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.to_owned(),
                label,
                server,
                ordered,
                runtime,
            }),
        })
    }

    /// Lists the store under the prefix once (the first page of its objects), so that a
    /// missing bucket, refused credentials or an unreachable store show now rather than at
    /// the first read or write. [`Collection::s3`](crate::Collection::s3) and
    /// [`Options::s3`](crate::Options::s3) call it.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] with [`RemoteOp::Setup`], naming the bucket and the prefix: not
    /// transient for a missing bucket or a refused request.
    pub fn check(&self) -> Result<(), Error> {
        self.inner.runtime.block(self.check_future())
    }

    /// [`check`](S3::check) as a future on the caller's executor.
    pub(crate) fn check_async(&self) -> BackendFuture<()> {
        self.spawned(self.check_future())
    }

    fn check_future(
        &self,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
        let mut objects = self.inner.store.list(self.directory().as_ref());
        let (path, server) = (self.root(), self.inner.server.clone());
        async move {
            match std::future::poll_fn(|cx| objects.as_mut().poll_next(cx)).await {
                Some(Err(error)) => Err(store_error(path, RemoteOp::Setup, server)(error)),
                _ => Ok(()),
            }
        }
    }

    /// The object of the entry `name`: the prefix and the name, as they are.
    fn object(&self, name: &str) -> ObjectPath {
        let object = format!("{}{name}", self.inner.prefix);
        // Only a name that is no entry name (`.`, a control character) fails; object_store
        // escapes it then.
        ObjectPath::parse(&object).unwrap_or_else(|_| ObjectPath::from(object))
    }

    /// What the backend lists: the prefix up to its last `/` (`None`: the whole bucket).
    fn directory(&self) -> Option<ObjectPath> {
        let prefix = &self.inner.prefix;
        let directory = &prefix[..prefix.rfind('/').map_or(0, |slash| slash + 1)];
        ObjectPath::parse(directory)
            .ok()
            .filter(|directory| !directory.as_ref().is_empty())
    }

    /// The names of the objects whose names begin with the prefix and then `prefix`, as the
    /// store lists them, read as they are consumed.
    fn listing(&self, prefix: &str) -> Listing {
        let pick = Pick {
            prefix: self.inner.prefix.clone(),
            wanted: format!("{}{prefix}", self.inner.prefix),
            ordered: self.inner.ordered,
        };
        let directory = self.directory();
        let listed = directory
            .as_ref()
            .map_or(0, |directory| directory.as_ref().len() + 1);
        // Where the store supports an offset (S3's `start-after`), the listing starts right
        // before the prefix's names.
        let offset = (self.inner.ordered && pick.wanted.len() > listed)
            .then(|| ObjectPath::parse(before(&pick.wanted)).ok())
            .flatten();
        let objects = match &offset {
            Some(offset) => self
                .inner
                .store
                .list_with_offset(directory.as_ref(), offset),
            None => self.inner.store.list(directory.as_ref()),
        };
        Listing {
            backend: self.clone(),
            objects: Some(objects),
            pick,
            page: Vec::new().into_iter(),
            failed: None,
        }
    }

    /// The future of a read, to run on the backend's runtime (the HTTP client needs it).
    fn get_future(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Option<Stored>, Error>> + Send + 'static {
        let (store, object, path, server) = (
            Arc::clone(&self.inner.store),
            self.object(name),
            self.locate(name),
            self.inner.server.clone(),
        );
        async move {
            let result = match store.get(&object).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(store_error(path, RemoteOp::Read, server)(error)),
            };
            let tag = result.meta.e_tag.clone().unwrap_or_default();
            let bytes = result
                .bytes()
                .await
                .map_err(store_error(path, RemoteOp::Read, server))?;
            Ok(Some(Stored {
                bytes: bytes.to_vec(),
                tag: Tag::new(tag),
            }))
        }
    }

    /// The future of a conditional write.
    fn put_future(
        &self,
        name: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> impl std::future::Future<Output = Result<Written, Error>> + Send + 'static {
        let (store, object, path, server) = (
            Arc::clone(&self.inner.store),
            self.object(name),
            self.locate(name),
            self.inner.server.clone(),
        );
        async move {
            let mode = match condition {
                Condition::Always => PutMode::Overwrite,
                Condition::Absent => PutMode::Create,
                Condition::Matches(tag) => PutMode::Update(UpdateVersion {
                    e_tag: Some(tag.as_str().to_owned()),
                    version: None,
                }),
            };
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            match store
                .put_opts(&object, PutPayload::from(bytes), options)
                .await
            {
                Ok(result) => Ok(Written::Done(Tag::new(result.e_tag.unwrap_or_default()))),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(Written::Conflict),
                Err(error) => Err(store_error(path, RemoteOp::Write, server)(error)),
            }
        }
    }

    /// Spawns `future` on the backend's runtime, for a future the caller's executor awaits.
    fn spawned<R: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<R, Error>> + Send + 'static,
    ) -> BackendFuture<R> {
        let task = self.inner.runtime.handle().spawn(future);
        let path = PathBuf::from(&self.inner.label);
        Box::pin(async move {
            task.await.map_err(|error| Error::Io {
                path,
                op: IoOp::BlockingTask,
                source: io::Error::other(error),
            })?
        })
    }
}

impl Backend for S3 {
    fn root(&self) -> PathBuf {
        PathBuf::from(&self.inner.label)
    }

    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}{name}", self.inner.label))
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        self.inner.runtime.block(self.get_future(name))
    }

    fn get_native(&self, name: &str) -> Option<BackendFuture<Option<Stored>>> {
        Some(self.spawned(self.get_future(name)))
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        self.inner
            .runtime
            .block(self.put_future(name, entry.bytes.to_vec(), condition.clone()))
    }

    fn put_native(
        &self,
        name: &str,
        _key: String,
        bytes: Vec<u8>,
        _version: u32,
        condition: Condition,
    ) -> Option<BackendFuture<Written>> {
        Some(self.spawned(self.put_future(name, bytes, condition)))
    }

    /// Object stores have no conditional delete here: the tag is compared with a HEAD first,
    /// so a write landing between the two can be deleted.
    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let (store, object, path, server) = (
            Arc::clone(&self.inner.store),
            self.object(name),
            self.locate(name),
            self.inner.server.clone(),
        );
        let condition = condition.clone();
        self.inner.runtime.block(async move {
            let meta = match store.head(&object).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(error) => return Err(store_error(path, RemoteOp::Delete, server)(error)),
            };
            let holds = match &condition {
                Condition::Always => true,
                Condition::Absent => false,
                Condition::Matches(tag) => meta.e_tag.as_deref() == Some(tag.as_str()),
            };
            if !holds {
                return Ok(false);
            }
            match store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                Err(error) => Err(store_error(path, RemoteOp::Delete, server)(error)),
            }
        })
    }

    /// The names of the objects under the prefix, read as [`scan`](Backend::scan) reads them.
    fn list(&self) -> Result<Vec<String>, Error> {
        self.scan("")?.collect()
    }

    /// A listing of the names under `prefixes` with their ETags every `poll` (one listing
    /// request per 1,000 objects, no read of any entry), each compared with the one before.
    /// Its first notice is [`Notice::Resync`](super::Notice::Resync): an object store keeps no
    /// record of what changed before the feed began. `None` without `poll`: an object store
    /// tells no changes by itself.
    fn watch(
        &self,
        prefixes: &[String],
        poll: Option<std::time::Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        let Some(every) = poll else {
            return Ok(None);
        };
        let (backend, prefixes) = (self.clone(), prefixes.to_vec());
        let list = move || {
            let mut listed = Vec::new();
            for prefix in super::feed::covering(&prefixes) {
                let mut listing = backend.listing(prefix);
                while let Some(named) = listing.next_tagged() {
                    listed.push(named?);
                }
            }
            Ok(listed)
        };
        let mut poller = super::Poller::with(Box::new(list), every)?;
        poller.resync_first();
        Ok(Some(Box::new(poller)))
    }

    /// In the order the store lists keys: bytewise on S3 (general purpose buckets; ListObjectsV2
    /// returns keys in UTF-8 binary order), Google Cloud Storage, Azure and object_store's
    /// in-memory store, a page (1,000 keys on S3) at a time as the names are consumed, from
    /// right before the prefix's names (S3's `start-after`) to the first key past them. Other
    /// stores are listed whole first, then sorted. The first page is read before `scan`
    /// returns. Objects under the prefix whose names are no entry's (with a `/`, a `.` or a
    /// `%`) are left out.
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        let mut listing = self.listing(prefix);
        listing.fetch();
        if let Some(error) = listing.failed.take() {
            return Err(error);
        }
        if self.inner.ordered {
            return Ok(Box::new(listing));
        }
        let mut names = listing.collect::<Result<Vec<_>, Error>>()?;
        names.sort_unstable();
        Ok(Box::new(names.into_iter().map(Ok)))
    }

    /// Every entry written at once (object stores have no transaction: entries before a
    /// failure are stored).
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        let writes: Vec<_> = entries
            .iter()
            .map(|(name, entry)| self.put_future(name, entry.bytes.to_vec(), Condition::Always))
            .collect();
        let handle = self.inner.runtime.handle().clone();
        let path = self.root();
        self.inner.runtime.block(async move {
            let tasks: Vec<_> = writes
                .into_iter()
                .map(|write| handle.spawn(write))
                .collect();
            for task in tasks {
                task.await.map_err(|error| Error::Io {
                    path: path.clone(),
                    op: IoOp::BlockingTask,
                    source: io::Error::other(error),
                })??;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_starts_right_before_the_prefix() {
        assert_eq!(before("users/ab"), "users/aa\u{10ffff}");
        assert_eq!(before("users/a~"), "users/a}\u{10ffff}");
        assert_eq!(before("a\u{e000}"), "a\u{d7ff}\u{10ffff}");
        assert_eq!(before("a\0"), "a");
        assert_eq!(before(""), "");
        for (wanted, below) in [("users/ab", "users/aa~~~"), ("users/ab", "users/a")] {
            assert!(before(wanted).as_str() > below && before(wanted).as_str() < wanted);
        }
    }

    #[test]
    fn stores_that_list_in_order() {
        assert!(lists_in_order("AmazonS3(bucket)"));
        assert!(!lists_in_order("AmazonS3(bucket--use1-az4--x-s3)"));
        assert!(lists_in_order("InMemory"));
        assert!(!lists_in_order("LocalFileSystem(file:///tmp/)"));
        assert!(!lists_in_order("PrefixStore(InMemory)"));
    }
}
