//! `Collection<T>` on a real S3 server: moto's, which `.ci/s3` starts, named by
//! `PERSIST_TEST_S3` (the shared suite is `tests/remote/mod.rs`).
#![cfg(feature = "s3")]

mod common;
// Some of the suite is for other stores (an embedded database's).
#[allow(dead_code)]
mod remote;

use std::sync::Arc;

use persist::backend::object_store::aws::AmazonS3Builder;
use persist::backend::object_store::memory::InMemory;
use persist::backend::object_store::path::Path as ObjectPath;
use persist::backend::object_store::prefix::PrefixStore;
use persist::backend::object_store::{ObjectStore, PutPayload};
use persist::backend::{Backend, S3};
use persist::{Collection, Error, ErrorKind, Options, RemoteOp};
use remote::{Counter, Store};

struct Moto;

fn store(endpoint: &str) -> Arc<dyn ObjectStore> {
    store_in(endpoint, "persist-test")
}

fn store_in(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    )
}

impl Store for Moto {
    const VARIABLE: &'static str = "PERSIST_TEST_S3";
    const SCRIPT: &'static str = ".ci/s3";
    type Backend = S3;

    fn place(test: &str) -> String {
        format!("{test}-{}/", std::process::id())
    }

    fn backend(server: &str, place: &str) -> S3 {
        S3::new(store(server), place).unwrap()
    }
}

#[test]
fn get_put_update_delete_and_keys() {
    remote::basics::<Moto>();
}

#[test]
fn conditional_writes_are_compare_and_swap() {
    remote::conditional_writes::<Moto>();
}

#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    remote::child::<Moto>();
}

#[test]
fn processes_updating_one_key_lose_nothing() {
    remote::processes_lose_nothing::<Moto>();
}

#[test]
fn a_migration_racing_a_newer_writer_loses_nothing() {
    remote::migration_racing_a_newer_writer::<Moto>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_constructor_and_twins() {
    let Some(server) = Moto::server() else { return };
    let counters: Collection<Counter> = Collection::s3(store(&server), Moto::place("async"))
        .await
        .unwrap();
    remote::async_twins(counters).await;
}

#[test]
fn an_unreachable_server_is_a_typed_error() {
    // A closed port on this machine: refused at once (after the client's own retries).
    let counters: Collection<Counter> = Collection::with_backend(
        Arc::new(Moto::backend("http://127.0.0.1:1", "x/")),
        Options::new(),
    );
    let error = counters.get("a").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Read,
                transient: true,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::RemoteUnavailable);
    let message = error.to_string();
    assert!(message.contains("x/a"), "{message}");
    assert!(message.contains("S3 bucket persist-test"), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!message.contains("file"), "{message}");
}

#[test]
fn a_missing_bucket_is_named_as_such_and_not_retried() {
    let Some(server) = Moto::server() else {
        return;
    };
    let counters: Collection<Counter> = Collection::with_backend(
        Arc::new(S3::new(store_in(&server, "no-such-bucket-persist"), "x/").unwrap()),
        Options::new(),
    );
    let error = counters.put("a", &Counter::default()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Write,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_transient(), "{error}");
    let message = error.to_string();
    assert!(message.contains("no-such-bucket-persist"), "{message}");
    assert!(!message.contains("temporary file"), "{message}");
}

#[test]
fn scans_are_in_name_order_with_hostile_prefixes() {
    remote::scans::<Moto>();
}

#[test]
fn scans_read_pages_as_they_go() {
    remote::scans_read_pages_as_they_go::<Moto>();
}

#[test]
fn scans_on_other_object_stores() {
    // object_store's in-memory store lists in order; a wrapper's order is not known, so its
    // listing is read whole and sorted.
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(InMemory::new()),
        Arc::new(PrefixStore::new(InMemory::new(), "root")),
    ];
    for store in stores {
        let backend = S3::new(store, "c/").unwrap();
        let counters: Collection<Counter> =
            Collection::with_backend(Arc::new(backend.clone()), Options::new());
        remote::scans_on(&backend, &counters);
    }
}

/// The names of the objects under `place`, as the store lists them.
async fn objects(store: &Arc<dyn ObjectStore>, place: &str) -> Vec<String> {
    let under = ObjectPath::parse(place).unwrap();
    let listed = store.list_with_delimiter(Some(&under)).await.unwrap();
    let mut names: Vec<String> = listed
        .objects
        .into_iter()
        .map(|object| object.location.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_names_are_entry_names() {
    let Some(server) = Moto::server() else { return };
    let place = Moto::place("names");
    let store = store(&server);
    let counters: Collection<Counter> =
        Options::new().s3(Arc::clone(&store), &place).await.unwrap();
    let hello = Counter {
        label: "hello".into(),
        hits: 1,
    };
    counters
        .put_async("Hello World/1", hello.clone())
        .await
        .unwrap();
    counters.put("con", &Counter::default()).unwrap();
    // One escaping, readable in a console: the entry names as they are.
    assert_eq!(
        objects(&store, &place).await,
        [
            format!("{place}~48ello~20~57orld~2f1"),
            format!("{place}~63on")
        ]
    );
    let object = ObjectPath::parse(format!("{place}~48ello~20~57orld~2f1")).unwrap();
    let bytes = store.get(&object).await.unwrap().bytes().await.unwrap();
    assert!(
        String::from_utf8_lossy(&bytes).contains(r#""key":"Hello World/1""#),
        "{bytes:?}"
    );
    assert_eq!(
        counters.get_async("Hello World/1").await.unwrap(),
        Some(hello)
    );
    // An object of the earlier layout (`~` written `%7E`) is neither read nor listed.
    let legacy = ObjectPath::parse(format!("{place}%7E41")).unwrap();
    store
        .put(
            &legacy,
            PutPayload::from_static(br#"{"version":2,"key":"A","data":{"label":"","hits":0}}"#),
        )
        .await
        .unwrap();
    assert_eq!(objects(&store, &place).await.len(), 3);
    assert_eq!(counters.get_async("A").await.unwrap(), None);
    let backend = Moto::backend(&server, &place);
    let mut names = backend.list().unwrap();
    names.sort();
    assert_eq!(names, ["~48ello~20~57orld~2f1", "~63on"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_refused_at_open() {
    let Some(server) = Moto::server() else { return };
    let error = Options::new()
        .s3::<Counter>(store_in(&server, "no-such-bucket-persist"), "x/")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Setup,
                transient: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Remote);
    let message = error.to_string();
    assert!(
        message.contains("S3 bucket no-such-bucket-persist"),
        "{message}"
    );
    assert!(
        error
            .path()
            .to_string_lossy()
            .ends_with("(no-such-bucket-persist)/x/"),
        "{error:?}"
    );
    let backend = S3::new(store_in(&server, "no-such-bucket-persist"), "x/").unwrap();
    let error = backend.check().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Setup,
                ..
            }
        ),
        "{error:?}"
    );
    // The bucket that is there opens, empty or not.
    let place = Moto::place("opens");
    let counters: Collection<Counter> = Options::new().s3(store(&server), &place).await.unwrap();
    counters.put("a", &Counter::default()).unwrap();
    Options::new()
        .s3::<Counter>(store(&server), &place)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_apply_to_an_s3_collection() {
    let Some(server) = Moto::server() else { return };
    let place = Moto::place("options");
    let store = store(&server);
    let counters: Collection<Counter> = Options::new()
        .checksum(true)
        .s3(Arc::clone(&store), &place)
        .await
        .unwrap();
    let alice = Counter {
        label: "A".into(),
        hits: 1,
    };
    counters.put_async("alice", alice.clone()).await.unwrap();
    let object = ObjectPath::parse(format!("{place}alice")).unwrap();
    let bytes = store.get(&object).await.unwrap().bytes().await.unwrap();
    assert!(
        String::from_utf8_lossy(&bytes).contains(r#","crc32c":""#),
        "{bytes:?}"
    );
    assert_eq!(counters.get_async("alice").await.unwrap(), Some(alice));
}

#[test]
fn a_prefix_that_begins_no_object_name_is_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for prefix in ["a//b/", "../", "a/./", "x\ny/"] {
        let error = S3::new(Arc::clone(&store), prefix).unwrap_err();
        assert!(
            matches!(error, Error::InvalidPath { .. }),
            "{prefix:?}: {error}"
        );
    }
    // Object names have no leading `/`: it is dropped.
    let backend = S3::new(Arc::clone(&store), "/users/").unwrap();
    let counters: Collection<Counter> =
        Collection::with_backend(Arc::new(backend.clone()), Options::new());
    counters.put("a", &Counter::default()).unwrap();
    assert_eq!(backend.list().unwrap(), ["a"]);
    let other = S3::new(store, "users/").unwrap();
    assert_eq!(other.list().unwrap(), ["a"]);
}

#[test]
fn a_watch_sees_the_writes_of_two_other_processes() {
    // A listing of the prefix with its ETags every 200 ms.
    let resyncs = remote::watch_sees_two_writers::<Moto>(
        "watch",
        std::time::Duration::from_millis(200),
        |_| {},
    );
    // The one resync an S3 watch begins with, and no other.
    assert!(resyncs.unwrap_or(1) == 1, "{resyncs:?}");
}

#[cfg(feature = "cache")]
#[test]
fn a_cached_handle_sees_another_process_put_and_delete() {
    remote::cached_handle_sees_another_process::<Moto>();
}

/// An S3 ETag is a hash of the content: a key written back to the bytes it had (X, then Y, then
/// X again) between two listings shows its old ETag. A cached handle that read Y in between
/// still drops it: the feed compares each object's time of last modification too.
#[cfg(feature = "cache")]
#[test]
fn a_key_written_back_to_its_old_bytes_still_reaches_a_cached_handle() {
    let Some(server) = Moto::server() else { return };
    let place = Moto::place("written-back");
    let raw = store(&server);
    let object = ObjectPath::from(format!("{place}k"));
    // The bytes persist writes for X and for Y, made on another prefix.
    let maker: Collection<Counter> = Collection::with_backend(
        Arc::new(Moto::backend(&server, &format!("{place}maker/"))),
        Options::new(),
    );
    let bytes_of = |label: &str| {
        let value = Counter {
            label: label.into(),
            hits: 1,
        };
        maker.put("k", &value).unwrap();
        let path = ObjectPath::from(format!("{place}maker/k"));
        let bytes = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { raw.get(&path).await.unwrap().bytes().await.unwrap() });
        (value, bytes)
    };
    let (x, x_bytes) = bytes_of("X");
    let (y, y_bytes) = bytes_of("Y");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let put_raw = |bytes: &[u8]| {
        runtime
            .block_on(raw.put(&object, PutPayload::from(bytes.to_vec())))
            .unwrap();
    };
    let cached: Collection<Counter> = Collection::with_backend(
        Arc::new(Moto::backend(&server, &place)),
        Options::new().cache(100, std::time::Duration::from_secs(3600)),
    );
    put_raw(&x_bytes);
    // The cache's feed lists the prefix every second: one listing sees X.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    put_raw(&y_bytes);
    assert_eq!(cached.get("k").unwrap(), Some(y.clone()));
    put_raw(&x_bytes);
    common::watch::seen_within_5_s("write back to X", &|| {
        cached.get("k").unwrap() == Some(x.clone())
    });
}
