//! `put_many` is all or nothing on the local directory and in memory: a fault at any step
//! before its commit point leaves none of its entries, a SIGKILL at any moment leaves none or
//! all (the next open finishes a committed batch), and a batch holds no descriptor per entry.
//! (PostgreSQL's, one transaction, is checked in `tests/collection_postgres.rs`.)

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;

use persist::backend::{Fault, Memory};
use persist::{Collection, Error, IoOp, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Item {
    batch: u32,
    text: String,
}

const CHILD_DIR: &str = "PERSIST_TEST_BATCH_DIR";
const CHILD_MODE: &str = "PERSIST_TEST_BATCH_MODE";

/// Batch `n`: 300 keys of its own (`b<n>-<i>`), and the key `shared` every batch writes.
fn batch(n: u32) -> Vec<(String, Item)> {
    let item = |i: u32| Item {
        batch: n,
        text: format!("{n}-{i}"),
    };
    let mut entries: Vec<(String, Item)> =
        (0..300).map(|i| (format!("b{n}-{i}"), item(i))).collect();
    entries.push(("shared".into(), item(300)));
    entries
}

fn put_batch(items: &Collection<Item>, n: u32) -> Result<(), Error> {
    let entries = batch(n);
    items.put_many(entries.iter().map(|(key, item)| (key, item)))
}

/// How many entries of batch `n` are stored.
fn stored(items: &Collection<Item>, n: u32) -> usize {
    items
        .keys_with_prefix(&format!("b{n}-"))
        .unwrap()
        .map(Result::unwrap)
        .count()
}

#[test]
#[ignore = "the body of a child process, run by the tests that spawn it"]
fn child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let items: Collection<Item> = Collection::open(&dir).unwrap();
    match mode.as_str() {
        // Batches until killed, each announced once stored.
        "batches" => {
            for n in 0.. {
                put_batch(&items, n).unwrap();
                println!("{n}");
            }
        }
        // A batch far larger than the descriptors this process may hold.
        "few-descriptors" => {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: setrlimit reads the struct it is given.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
            let entries: Vec<(String, Item)> = (0..2000)
                .map(|i| (format!("many-{i}"), Item::default()))
                .collect();
            items
                .put_many(entries.iter().map(|(key, item)| (key, item)))
                .unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}

fn spawn_child(mode: &str, dir: &Path) -> std::process::Child {
    common::child(
        "child",
        &[(CHILD_DIR, dir.as_os_str()), (CHILD_MODE, mode.as_ref())],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap()
}

#[test]
fn a_sigkill_leaves_every_batch_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6u64 {
        let mut child = spawn_child("batches", dir.path());
        // Killed at a different moment each round: after some batches, mid-way through one.
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // The first number (the test harness prints its own lines too).
        let done: u32 = lines
            .find_map(|line| line.unwrap().trim().parse().ok())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3 + round * 7));
        child.kill().unwrap();
        child.wait().unwrap();
        // The next open finishes a batch killed past its commit point.
        let items: Collection<Item> = Collection::open(dir.path()).unwrap();
        let shared = items.get("shared").unwrap().unwrap();
        assert!(shared.batch >= done, "round {round}");
        for n in 0..=shared.batch + 1 {
            let count = stored(&items, n);
            let expected = if n <= shared.batch { 300 } else { 0 };
            assert_eq!(
                count, expected,
                "round {round}: batch {n} of {}",
                shared.batch
            );
        }
        assert!(
            !dir.path().join(".persist-txn/commit").exists(),
            "round {round}: the record is cleared"
        );
        items.clear().unwrap();
    }
}

#[test]
fn a_fault_before_the_commit_point_leaves_none_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let items: Collection<Item> = Collection::open(dir.path()).unwrap();
    put_batch(&items, 0).unwrap();
    // Every step before the commit point: staging a file (its creation, its bytes), the sync
    // of the staged files, the commit record's creation and sync, the directory sync that
    // makes the record durable.
    let steps = [
        (IoOp::CreateTemp, 0),
        (IoOp::CreateTemp, 150),
        (IoOp::Write, 0),
        (IoOp::Write, 299),
        (IoOp::SyncFile, 0),
        (IoOp::SyncDir, 0),
    ];
    for (op, skip) in steps {
        let fault = persist::testing::inject_fault_after(dir.path(), op, libc::EIO, skip, 1);
        let error = put_batch(&items, 1).unwrap_err();
        assert_eq!(fault.hits(), 1, "{op:?} after {skip}");
        drop(fault);
        assert!(matches!(error, Error::Io { .. }), "{op:?}: {error}");
        assert_eq!(stored(&items, 1), 0, "{op:?} after {skip}");
        assert_eq!(stored(&items, 0), 300, "{op:?} after {skip}");
        assert_eq!(items.get("shared").unwrap().unwrap().batch, 0, "{op:?}");
        // Nothing is left staged.
        assert_eq!(
            common::names(&dir.path().join(".persist-txn")),
            Vec::<String>::new()
        );
    }
    put_batch(&items, 1).unwrap();
    assert_eq!(stored(&items, 1), 300);
    assert_eq!(items.get("shared").unwrap().unwrap().batch, 1);
}

#[test]
fn a_batch_is_all_or_nothing_in_memory() {
    let store = std::sync::Arc::new(Memory::new());
    let items = Collection::<Item>::with_backend(store.clone(), Options::new());
    put_batch(&items, 0).unwrap();
    store.inject(Fault::FailWrite { nth: 200 });
    assert!(put_batch(&items, 1).is_err());
    assert_eq!(stored(&items, 1), 0);
    assert_eq!(items.get("shared").unwrap().unwrap().batch, 0);
}

#[test]
fn a_batch_holds_no_descriptor_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child("few-descriptors", dir.path());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let items: Collection<Item> = Collection::open(dir.path()).unwrap();
    assert_eq!(items.keys_with_prefix("many-").unwrap().count(), 2000);
}

#[test]
fn batches_of_threads_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().durability(persist::Durability::None);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let items: Collection<Item> = options.collection(dir.path()).unwrap();
            std::thread::spawn(move || {
                for round in 0..5 {
                    put_batch(&items, n * 10 + round).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let items: Collection<Item> = Collection::open(dir.path()).unwrap();
    for n in 0..4 {
        for round in 0..5 {
            assert_eq!(stored(&items, n * 10 + round), 300);
        }
    }
}

#[test]
fn a_batch_refuses_a_link_at_an_entry_and_writes_nothing_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("notes.txt");
    std::fs::write(&outside, b"the user's notes").unwrap();
    let root = dir.path().join("items");
    let items: Collection<Item> = Collection::open(&root).unwrap();
    put_batch(&items, 0).unwrap();
    // The entry `b1-7` of the next batch is a link to a file beside the collection.
    let entry = items.backend().locate("b1-7");
    std::os::unix::fs::symlink(&outside, &entry).unwrap();
    let error = put_batch(&items, 1).unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotRegularFile {
                kind: persist::FileKind::Symlink,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"the user's notes");
    assert_eq!(stored(&items, 1), 0);
    assert!(
        std::fs::symlink_metadata(&entry)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_batch_whose_record_the_size_cap_would_refuse_is_refused_before_its_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    // Entries of about 200 bytes fit; the record of 301 of them (about 30 KB) does not.
    let items: Collection<Item> = Options::new()
        .max_size(16 * 1024)
        .collection(dir.path())
        .unwrap();
    let error = put_batch(&items, 0).unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    assert_eq!(stored(&items, 0), 0);
    // Nothing is left to recover, and smaller batches go through.
    assert!(!dir.path().join(".persist-txn/commit").exists());
    let small: Vec<(String, Item)> = (0..10)
        .map(|i| (format!("s{i}"), Item::default()))
        .collect();
    items
        .put_many(small.iter().map(|(key, item)| (key, item)))
        .unwrap();
    assert_eq!(items.keys_with_prefix("s").unwrap().count(), 10);
}

#[test]
fn a_batch_and_single_writes_wait_for_each_other_and_a_batch_gives_up_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let items: Collection<Item> = Options::new()
        .lock_timeout(Some(std::time::Duration::from_millis(200)))
        .collection(dir.path())
        .unwrap();
    items.put("shared", &Item::default()).unwrap();
    // An update of one entry in progress: a batch of other entries waits for it (the batch
    // takes no entry's lock, but holds the directory's batch lock alone), up to the lock
    // timeout, then fails before anything is staged.
    let (loaded, wait) = std::sync::mpsc::channel();
    let (done, finish) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let items = &items;
        let updater = scope.spawn(move || {
            items
                .update("shared", |item| {
                    loaded.send(()).unwrap();
                    finish.recv().unwrap();
                    item.batch = 7;
                })
                .unwrap();
        });
        wait.recv().unwrap();
        let refused = put_batch(items, 1).unwrap_err();
        assert!(
            matches!(refused, Error::LockTimeout { .. }),
            "a batch that could not start: {refused:?}"
        );
        assert_eq!(stored(items, 1), 0, "a batch that gave up wrote nothing");
        done.send(()).unwrap();
        updater.join().unwrap();
    });
    assert_eq!(items.get("shared").unwrap().unwrap().batch, 7);
    // Once the update is done, the batch runs, and a single write after it comes after it.
    put_batch(&items, 2).unwrap();
    items
        .put(
            "shared",
            &Item {
                batch: 9,
                text: String::new(),
            },
        )
        .unwrap();
    assert_eq!(stored(&items, 2), 300);
    assert_eq!(items.get("shared").unwrap().unwrap().batch, 9);
    // No lock file is left in any shard: the batch took none, the single writes removed theirs.
    let locks: Vec<_> = walkdir(dir.path())
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "lock"))
        // The directory's own batch lock stays, as a transaction root's does.
        .filter(|path| path.parent() != Some(dir.path()))
        .collect();
    assert!(locks.is_empty(), "lock files left: {locks:?}");
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        } else {
            found.push(path);
        }
    }
    found
}
