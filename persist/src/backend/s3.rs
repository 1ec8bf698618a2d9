//! A collection in object storage (feature `s3`): S3 and the stores compatible with it, or any
//! other `object_store` implementation, through the `object_store` crate.
//!
//! One object per entry, `<prefix><name>` (object_store writes the name's `~` as `%7E`). The object's ETag is the entry's [`Tag`]: a
//! conditional write is a PUT with `If-None-Match: *` (absent) or `If-Match: <etag>` (the
//! store's compare-and-swap; on S3 set `S3ConditionalPut::ETagMatch`, the default of
//! `AmazonS3Builder`), so update and migrate_all need no lock. The backend runs the requests on
//! a small runtime of its own (two threads), so it works from sync code and from any executor.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::runtime::Runtime;
use super::{Backend, BackendFuture, Condition, Entry, Stored, Tag, Written};
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
    runtime: Runtime,
}

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

impl S3 {
    /// The entries under `prefix` (such as `users/`; empty for the whole bucket) of `store`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`IoOp::BlockingTask`] if the backend's threads could not start.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<S3, Error> {
        let label = format!("{store}/{prefix}");
        let server = server_of(&store.to_string());
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
                runtime,
            }),
        })
    }

    fn object(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{name}", self.inner.prefix))
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

    fn list(&self) -> Result<Vec<String>, Error> {
        let store = Arc::clone(&self.inner.store);
        let prefix = self.inner.prefix.clone();
        let path = self.root();
        let server = self.inner.server.clone();
        self.inner.runtime.block(async move {
            let under = ObjectPath::from(prefix.trim_end_matches('/'));
            let under = (!prefix.is_empty()).then_some(&under);
            let listing = store.list_with_delimiter(under).await.map_err(store_error(
                path,
                RemoteOp::List,
                server,
            ))?;
            Ok(listing
                .objects
                .into_iter()
                // object_store writes `~` as `%7E` in object names; no other character of an
                // entry name is encoded.
                .filter_map(|meta| {
                    meta.location
                        .filename()
                        .map(|name| name.replace("%7E", "~"))
                })
                // Entry names never hold a dot (FORMAT.md, section 5).
                .filter(|name| !name.contains('.'))
                .collect())
        })
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
