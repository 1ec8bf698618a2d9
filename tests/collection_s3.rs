//! `Collection<T>` on a real S3 server: moto's, which `.ci/s3` starts, named by
//! `PERSIST_TEST_S3`. Outside CI, without the variable, every test says loudly that it skipped;
//! under CI (`CI` set) a missing server fails them.
#![cfg(feature = "s3")]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Arc;

use persist::backend::object_store::aws::AmazonS3Builder;
use persist::backend::{Backend, S3};
use persist::{Collection, Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct CounterV1 {
    label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = CounterV1)]
struct Counter {
    label: String,
    hits: u64,
}

impl From<CounterV1> for Counter {
    fn from(old: CounterV1) -> Self {
        Counter {
            label: old.label,
            hits: 0,
        }
    }
}

const SERVER: &str = "PERSIST_TEST_S3";

/// The server's connection string, or `None` (with a loud message) when there is none here.
fn server() -> Option<String> {
    match std::env::var(SERVER) {
        Ok(config) => Some(config),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{SERVER} is not set under CI: .ci/run starts the server with .ci/s3")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: no S3 server ({SERVER} is not set); run \
                 `export {SERVER}=\"$(bash .ci/s3)\"` to run this test"
            );
            None
        }
    }
}

/// A prefix of its own for each test and process.
fn table(test: &str) -> String {
    format!("{test}-{}/", std::process::id())
}

fn store(endpoint: &str) -> Arc<dyn persist::backend::object_store::ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name("persist-test")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    )
}

fn backend(endpoint: &str, prefix: &str) -> S3 {
    S3::new(store(endpoint), prefix).unwrap()
}

fn open<T: Persisted + Clone + Send + Sync + 'static>(
    endpoint: &str,
    prefix: &str,
) -> Collection<T> {
    Collection::with_backend(Arc::new(backend(endpoint, prefix)), Options::new())
}

#[test]
fn get_put_update_delete_and_keys() {
    let Some(config) = server() else { return };
    let counters: Collection<Counter> = open(&config, &table("basics"));
    assert_eq!(counters.get("a").unwrap(), None);
    let a = Counter {
        label: "A".into(),
        hits: 1,
    };
    counters.put("a", &a).unwrap();
    assert_eq!(counters.get("a").unwrap(), Some(a));
    assert_eq!(counters.update("a", |c| c.hits += 1).unwrap().hits, 2);
    assert_eq!(counters.update("b", |c| c.hits += 1).unwrap().hits, 1);
    // Keys a file system or an object name could not hold are entries like any other.
    let hostile = ["\0", "a/b", "..", "CON", "Ä", "A\u{308}", &"k".repeat(1024)];
    for key in hostile {
        counters.put(key, &Counter::default()).unwrap();
    }
    let mut expected: Vec<String> = ["a", "b"]
        .into_iter()
        .chain(hostile)
        .map(Into::into)
        .collect();
    expected.sort();
    assert_eq!(counters.keys().unwrap(), expected);
    assert!(counters.delete("a").unwrap());
    assert!(!counters.contains("a").unwrap());
    let batch = Counter {
        label: "batch".into(),
        hits: 0,
    };
    let keys: Vec<String> = (0..100).map(|n| format!("batch-{n}")).collect();
    counters
        .put_many(keys.iter().map(|key| (key, &batch)))
        .unwrap();
    assert_eq!(counters.keys().unwrap().len(), expected.len() - 1 + 100);
}

#[test]
fn conditional_writes_are_compare_and_swap() {
    let Some(config) = server() else { return };
    let backend = backend(&config, &table("cas"));
    // An ETag is a hash of the content: each write stores other bytes.
    let entry = persist::backend::Entry {
        bytes: br#"{"version":1,"data":1}"#,
        version: 1,
    };
    let changed = persist::backend::Entry {
        bytes: br#"{"version":1,"data":2}"#,
        version: 1,
    };
    use persist::backend::{Condition, Written};
    let Written::Done(first) = backend.put("k", entry, &Condition::Absent).unwrap() else {
        panic!("absent");
    };
    assert_eq!(
        backend.put("k", entry, &Condition::Absent).unwrap(),
        Written::Conflict
    );
    let Written::Done(second) = backend
        .put("k", changed, &Condition::Matches(first.clone()))
        .unwrap()
    else {
        panic!("matches");
    };
    assert_eq!(
        backend
            .put("k", entry, &Condition::Matches(first.clone()))
            .unwrap(),
        Written::Conflict
    );
    assert!(!backend.delete("k", &Condition::Matches(first)).unwrap());
    assert!(backend.delete("k", &Condition::Matches(second)).unwrap());
}

#[test]
fn an_unreachable_server_is_a_typed_error() {
    // A closed port on this machine: refused at once (after the client's own retries).
    let counters: Collection<Counter> = Collection::with_backend(
        Arc::new(backend("http://127.0.0.1:1", "x/")),
        Options::new(),
    );
    let error = counters.get("a").unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(error.to_string().contains("x/a"), "{error}");
}

const CHILD_TABLE: &str = "PERSIST_TEST_S3_PREFIX";

/// The body of the child processes; does nothing when run directly by `cargo test`.
#[test]
fn child() {
    let (Ok(config), Ok(table)) = (std::env::var(SERVER), std::env::var(CHILD_TABLE)) else {
        return;
    };
    let counters: Collection<Counter> = open(&config, &table);
    for _ in 0..250 {
        counters.update("shared", |c| c.hits += 1).unwrap();
    }
}

#[test]
fn processes_updating_one_key_lose_nothing() {
    let Some(config) = server() else { return };
    let table = table("processes");
    // The table exists before the children race to use it.
    let counters: Collection<Counter> = open(&config, &table);
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child", "--test-threads=1", "--quiet"])
                .env(SERVER, &config)
                .env(CHILD_TABLE, &table)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(counters.get("shared").unwrap().unwrap().hits, 1_000);
}

#[test]
fn a_migration_racing_a_newer_writer_loses_nothing() {
    let Some(config) = server() else { return };
    let table = table("race");
    let old: Collection<CounterV1> = open(&config, &table);
    let keys: Vec<String> = (0..200).map(|n| format!("k{n}")).collect();
    let v1 = CounterV1 {
        label: "old".into(),
    };
    old.put_many(keys.iter().map(|key| (key, &v1))).unwrap();

    let counters: Collection<Counter> = open(&config, &table);
    let writer: Collection<Counter> = open(&config, &table);
    let done = AtomicBool::new(false);
    let rounds = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            // The newer program: raises every counter, again and again, while the migration
            // runs.
            let mut rounds = 0_u64;
            while !done.load(Ordering::Relaxed) || rounds < 2 {
                for key in &keys {
                    writer.update(key, |c| c.hits += 1).unwrap();
                }
                rounds += 1;
            }
            rounds
        });
        let report = counters.migrate_all().unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.total, keys.len());
        done.store(true, Ordering::Relaxed);
        writer.join().unwrap()
    });
    // Every raise is there: the migration never wrote over an entry the writer had changed.
    for key in &keys {
        let counter = counters.get(key).unwrap().unwrap();
        assert_eq!(counter.hits, rounds, "{key}");
        assert_eq!(counter.label, "old");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_constructor_and_twins() {
    let Some(config) = server() else { return };
    let counters: Collection<Counter> = Collection::s3(store(&config), &table("async"))
        .await
        .unwrap();
    counters
        .put_async(
            "x",
            Counter {
                label: "x".into(),
                hits: 3,
            },
        )
        .await
        .unwrap();
    let updated = counters.update_async("x", |c| c.hits += 1).await.unwrap();
    assert_eq!(updated.hits, 4);
    assert_eq!(counters.keys_async().await.unwrap(), ["x"]);
    // The sync API works inside a runtime too (it waits on the backend's own threads).
    assert_eq!(counters.get("x").unwrap().unwrap().hits, 4);
}
