//! `Collection<T>` on a real S3 server: moto's, which `.ci/s3` starts, named by
//! `PERSIST_TEST_S3` (the shared suite is `tests/remote/mod.rs`).
#![cfg(feature = "s3")]

mod common;
mod remote;

use std::sync::Arc;

use persist::backend::S3;
use persist::backend::object_store::ObjectStore;
use persist::backend::object_store::aws::AmazonS3Builder;
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
    let counters: Collection<Counter> = Collection::s3(store(&server), &Moto::place("async"))
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
