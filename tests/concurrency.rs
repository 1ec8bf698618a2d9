//! `update` under contention: processes and tokio tasks incrementing one counter lose nothing,
//! and a lock held too long is a typed error.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use persist::{Error, Options, Persisted};
use serde::{Deserialize, Serialize};

const PROCESSES: u64 = 4;
const INCREMENTS: u64 = 500;
const WORKER_FILE: &str = "PERSIST_TEST_WORKER_FILE";
const WORKER_ID: &str = "PERSIST_TEST_WORKER_ID";
/// `update`, or `plain` for the control: a load and a save without the file's lock.
const WORKER_MODE: &str = "PERSIST_TEST_WORKER_MODE";

#[derive(Debug, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Counter {
    total: u64,
    by_worker: BTreeMap<String, u64>,
}

fn increment(counter: &mut Counter, worker: &str) {
    counter.total += 1;
    *counter.by_worker.entry(worker.to_owned()).or_default() += 1;
}

/// The body of each child process of `processes_lose_no_update`; does nothing when run
/// directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn worker() {
    let (Ok(path), Ok(id)) = (std::env::var(WORKER_FILE), std::env::var(WORKER_ID)) else {
        return;
    };
    let plain = std::env::var(WORKER_MODE).is_ok_and(|mode| mode == "plain");
    for _ in 0..INCREMENTS {
        if plain {
            let mut counter = Counter::load(&path).unwrap_or_default();
            increment(&mut counter, &id);
            counter.save(&path).unwrap();
        } else {
            Counter::update(&path, |counter| increment(counter, &id)).unwrap();
        }
    }
}

/// Runs the workers (`mode`: `update` or `plain`) on one counter file; returns the counter.
fn run_workers(path: &Path, mode: &str) -> Counter {
    let children: Vec<_> = (0..PROCESSES)
        .map(|id| {
            common::child(
                "worker",
                &[
                    (WORKER_FILE, path.as_os_str()),
                    (WORKER_ID, id.to_string().as_ref()),
                    (WORKER_MODE, mode.as_ref()),
                ],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    Counter::load(path).unwrap()
}

#[test]
fn processes_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    let counter = run_workers(&path, "update");
    println!(
        "{PROCESSES} processes x {INCREMENTS} updates: the counter is at {}",
        counter.total
    );
    assert_eq!(counter.total, PROCESSES * INCREMENTS, "{counter:?}");
    for id in 0..PROCESSES {
        assert_eq!(counter.by_worker[&id.to_string()], INCREMENTS);
    }
    assert_lock_file_and_nothing_else(dir.path());
}

/// The control: the same workers with a plain load and save lose increments, so the test above
/// would see a lost update.
#[test]
fn the_control_without_the_lock_loses_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    let counter = run_workers(&path, "plain");
    println!(
        "{PROCESSES} processes x {INCREMENTS} plain load + save: the counter is at {} of {}",
        counter.total,
        PROCESSES * INCREMENTS
    );
    assert!(counter.total < PROCESSES * INCREMENTS, "{counter:?}");
}

fn assert_lock_file_and_nothing_else(dir: &Path) {
    assert_eq!(common::names(dir), ["counter.json", "counter.json.lock"]);
    let mode = fs::metadata(dir.join("counter.json.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tasks_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    let tasks: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|id| {
            let path = path.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    Counter::update_async(&path, move |counter| increment(counter, id))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counter = Counter::load(&path).unwrap();
    assert_eq!(counter.total, 400);
    assert_eq!((counter.by_worker["a"], counter.by_worker["b"]), (200, 200));
    assert_lock_file_and_nothing_else(dir.path());
}

#[test]
fn update_starts_from_default_and_returns_the_saved_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    let saved = Counter::update(&path, |counter| increment(counter, "x")).unwrap();
    assert_eq!(saved.total, 1);
    assert_eq!(Counter::load(&path).unwrap().total, 1);
}

#[test]
fn a_held_lock_times_out_with_a_typed_error_and_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    Counter::update(&path, |counter| increment(counter, "x")).unwrap();
    let before = fs::read(&path).unwrap();

    let held = fs::File::open(dir.path().join("counter.json.lock")).unwrap();
    held.lock().unwrap();
    let options = Options::new().lock_timeout(Some(Duration::from_millis(50)));
    let error = options
        .update(&path, |counter: &mut Counter| increment(counter, "y"))
        .unwrap_err();
    match &error {
        Error::LockTimeout {
            path: state,
            lock_path,
            waited,
        } => {
            assert_eq!(state, &path);
            assert_eq!(lock_path, &dir.path().join("counter.json.lock"));
            assert!(*waited >= Duration::from_millis(50));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);

    held.unlock().unwrap();
    let saved = options
        .update(&path, |counter: &mut Counter| increment(counter, "y"))
        .unwrap();
    assert_eq!(saved.total, 2);
}

#[test]
fn a_failed_load_inside_update_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    fs::write(&path, b"{\"version\":2,\"data\":{}}").unwrap();
    let error = Counter::update(&path, |counter| increment(counter, "x")).unwrap_err();
    assert!(matches!(error, Error::FutureVersion { .. }), "{error:?}");
    assert_eq!(fs::read(&path).unwrap(), b"{\"version\":2,\"data\":{}}");
}
