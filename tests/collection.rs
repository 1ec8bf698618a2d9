//! `Collection<T>` on the local directory and in memory: hostile keys, processes racing on one
//! key, batches, `migrate_all` at scale (with failures and a SIGKILL), the memory backend's
//! faults, and entries that are exactly state files.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use persist::backend::{Backend, Fault, Memory};
use persist::{Collection, Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct UserV1 {
    name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = UserV1)]
struct UserV2 {
    name: String,
    plan: String,
}

/// The current version: `logins` is new, and a plan called "legacy" cannot be migrated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = UserV2)]
struct User {
    name: String,
    plan: Plan,
    logins: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Plan {
    #[default]
    Free,
    Pro,
}

impl From<UserV1> for UserV2 {
    fn from(old: UserV1) -> Self {
        UserV2 {
            name: old.name,
            plan: "free".into(),
        }
    }
}

impl TryFrom<UserV2> for User {
    type Error = String;
    fn try_from(old: UserV2) -> Result<Self, String> {
        let plan = match old.plan.as_str() {
            "free" => Plan::Free,
            "pro" => Plan::Pro,
            other => return Err(format!("no plan {other:?} any more")),
        };
        Ok(User {
            name: old.name,
            plan,
            logins: 0,
        })
    }
}

fn user(name: &str) -> User {
    User {
        name: name.into(),
        plan: Plan::Pro,
        logins: 1,
    }
}

#[test]
fn get_put_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path().join("users")).unwrap();
    assert_eq!(users.get("alice").unwrap(), None);
    assert!(!users.contains("alice").unwrap());
    users.put("alice", &user("Alice")).unwrap();
    assert_eq!(users.get("alice").unwrap(), Some(user("Alice")));
    assert!(users.contains("alice").unwrap());
    let updated = users.update("alice", |u| u.logins += 1).unwrap();
    assert_eq!(updated.logins, 2);
    let fresh = users.update("bob", |u| u.logins += 1).unwrap();
    assert_eq!(
        fresh,
        User {
            logins: 1,
            ..User::default()
        }
    );
    assert_eq!(users.keys().unwrap().sorted().unwrap(), ["alice", "bob"]);
    assert!(users.delete("alice").unwrap());
    assert!(!users.delete("alice").unwrap());
    assert_eq!(users.keys().unwrap().sorted().unwrap(), ["bob"]);
}

#[test]
fn hostile_keys_are_refused_or_stored_exactly_without_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let long = "L".repeat(300);
    let longest = "x".repeat(1024);
    let stored = [
        ".",
        "..",
        "a/b",
        "a\\b",
        "CON",
        "con",
        "aux.txt",
        "\0",
        "A",
        "a",
        nfc,
        nfd,
        "../../etc",
        "a:b",
        "name.lock",
        "x.v1.bak",
        "~~",
        " ",
        &long,
        &longest,
    ];
    for (n, key) in stored.iter().enumerate() {
        users.put(key, &user(&n.to_string())).unwrap();
    }
    for (n, key) in stored.iter().enumerate() {
        assert_eq!(
            users.get(key).unwrap(),
            Some(user(&n.to_string())),
            "{key:?}"
        );
    }
    let mut expected: Vec<String> = stored.iter().map(|key| (*key).to_owned()).collect();
    expected.sort();
    assert_eq!(
        users.keys().unwrap().sorted().unwrap(),
        expected,
        "listed exactly"
    );

    for key in ["", &"y".repeat(1025)] {
        let error = users.put(key, &user("x")).unwrap_err();
        assert!(matches!(error, Error::InvalidKey { .. }), "{error}");
        assert!(matches!(users.get(key), Err(Error::InvalidKey { .. })));
    }

    // Nothing on disk outside the collection, and only plain ASCII names inside.
    for entry in walk(dir.path()) {
        let relative = entry.strip_prefix(dir.path()).unwrap();
        let name = relative.to_str().unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-~/.".contains(&b)),
            "{name}"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn entries_are_state_files_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().checksum(true);
    let users: Collection<User> = options.collection(dir.path()).unwrap();
    users.put("Ada Lovelace", &user("Ada")).unwrap();
    let files: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|path| path.is_file() && !path.to_string_lossy().ends_with(".lock"))
        .collect();
    assert_eq!(files.len(), 1);
    // The bytes of a state file, checksum and all, with the key beside the version.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.starts_with(r#"{"version":3,"key":"Ada Lovelace","data":{"#),
        "{text}"
    );
    assert!(text.contains(r#""crc32c":""#));
    assert_eq!(User::load(&files[0]).unwrap(), user("Ada"));
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        "~41da~20~4covelace"
    );
}

#[cfg(all(feature = "zstd", feature = "encryption"))]
#[test]
fn layers_work_on_collections() {
    let dir = tempfile::tempdir().unwrap();
    let key = persist::Key::from_bytes([7; 32]);
    let options = Options::new().compress(3).encrypt(key);
    let users: Collection<User> = options.collection(dir.path()).unwrap();
    let long = "k".repeat(400);
    users.put("a", &user("A")).unwrap();
    users.put(&long, &user("B")).unwrap();
    assert_eq!(users.get("a").unwrap(), Some(user("A")));
    // The long key is read back from inside its encrypted entry.
    let mut keys = vec!["a".to_owned(), long];
    keys.sort();
    assert_eq!(users.keys().unwrap().sorted().unwrap(), keys);
    let plain: Collection<User> = Collection::open(dir.path()).unwrap();
    assert!(matches!(plain.get("a"), Err(Error::KeyRequired { .. })));
}

#[test]
fn put_many_is_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    let values: Vec<(String, User)> = (0..100)
        .map(|n| (format!("user-{n}"), user(&n.to_string())))
        .collect();
    users
        .put_many(values.iter().map(|(key, value)| (key, value)))
        .unwrap();
    assert_eq!(users.keys().unwrap().sorted().unwrap().len(), 100);
    assert_eq!(users.get("user-42").unwrap(), Some(user("42")));
    // A bad key refuses the whole batch before anything is written.
    let bad = user("bad");
    let error = users.put_many([("fine", &bad), ("", &bad)]).unwrap_err();
    assert!(matches!(error, Error::InvalidKey { .. }));
    assert!(!users.contains("fine").unwrap());
}

#[test]
fn iteration_reports_a_broken_entry_beside_its_key_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    users.put("a", &user("A")).unwrap();
    users.put("b", &user("B")).unwrap();
    users.put("c", &user("C")).unwrap();
    let b = walk(dir.path())
        .into_iter()
        .find(|path| path.file_name().unwrap() == "b")
        .unwrap();
    std::fs::write(&b, "{broken").unwrap();
    let items: Vec<(String, bool)> = users
        .iter()
        .unwrap()
        .map(|(key, value)| (key, value.is_ok()))
        .collect();
    assert_eq!(
        items,
        [("a".into(), true), ("b".into(), false), ("c".into(), true)]
    );
    // An update never writes over an entry it cannot read.
    assert!(matches!(
        users.update("b", |u| u.logins += 1),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(std::fs::read(&b).unwrap(), b"{broken");
}

const CHILD_DIR: &str = "PERSIST_TEST_COLLECTION_DIR";
const CHILD_MODE: &str = "PERSIST_TEST_COLLECTION_MODE";

/// The body of the child processes; does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let users: Collection<User> = Collection::open(&dir).unwrap();
    match mode.as_str() {
        "updates" => {
            for _ in 0..250 {
                users.update("shared", |u| u.logins += 1).unwrap();
            }
        }
        "migrate" => {
            users
                .migrate_all_with(|progress| {
                    println!("{}", progress.done);
                })
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
fn processes_updating_one_key_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4).map(|_| spawn_child("updates", dir.path())).collect();
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    assert_eq!(users.get("shared").unwrap().unwrap().logins, 1_000);
}

/// 10,000 entries: a third at each version, and every 100th version-2 entry on a plan the
/// migration refuses.
fn mixed_versions(dir: &Path) -> (usize, usize, usize, Vec<String>) {
    let options = Options::new().durability(persist::Durability::None);
    let v1: Vec<(String, UserV1)> = (0..3_334)
        .map(|n| {
            (
                format!("one-{n}"),
                UserV1 {
                    name: n.to_string(),
                },
            )
        })
        .collect();
    let v2: Vec<(String, UserV2)> = (0..3_333)
        .map(|n| {
            let plan = if n % 100 == 0 { "legacy" } else { "pro" };
            (
                format!("two-{n}"),
                UserV2 {
                    name: n.to_string(),
                    plan: plan.into(),
                },
            )
        })
        .collect();
    let v3: Vec<(String, User)> = (0..3_333)
        .map(|n| (format!("three-{n}"), user(&n.to_string())))
        .collect();
    let ones: Collection<UserV1> = options.collection(dir).unwrap();
    ones.put_many(v1.iter().map(|(k, v)| (k, v))).unwrap();
    let twos: Collection<UserV2> = options.collection(dir).unwrap();
    twos.put_many(v2.iter().map(|(k, v)| (k, v))).unwrap();
    let threes: Collection<User> = options.collection(dir).unwrap();
    threes.put_many(v3.iter().map(|(k, v)| (k, v))).unwrap();
    let mut refused: Vec<String> = (0..3_333)
        .filter(|n| n % 100 == 0)
        .map(|n| format!("two-{n}"))
        .collect();
    refused.sort();
    (v1.len(), v2.len() - refused.len(), v3.len(), refused)
}

#[test]
fn migrate_all_rewrites_old_entries_and_reports_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (ones, good_twos, threes, refused) = mixed_versions(dir.path());
    let users: Collection<User> = Options::new()
        .durability(persist::Durability::FileSync)
        .collection(dir.path())
        .unwrap();
    let mut calls = 0;
    let report = users
        .migrate_all_with(|progress| {
            calls += 1;
            assert_eq!(progress.done, calls);
            assert_eq!(progress.total, 10_000);
        })
        .unwrap();
    assert_eq!(calls, 10_000);
    assert_eq!(report.total, 10_000);
    assert_eq!(report.migrated, ones + good_twos);
    assert_eq!(report.current, threes);
    let mut failed: Vec<String> = report.failed.iter().map(|(key, _)| key.clone()).collect();
    failed.sort();
    assert_eq!(failed, refused);
    for (key, error) in &report.failed {
        assert!(
            matches!(error, Error::Migration { from: 2, to: 3, .. }),
            "{key}: {error}"
        );
    }
    // Nothing lost: every entry loads (the refused ones still fail, unchanged), and a second
    // run finds nothing to do.
    assert_eq!(users.keys().unwrap().sorted().unwrap().len(), 10_000);
    for (key, value) in users.iter().unwrap() {
        assert_eq!(value.is_err(), refused.contains(&key), "{key}");
    }
    let again = users.migrate_all().unwrap();
    assert_eq!(
        (again.migrated, again.current),
        (0, ones + good_twos + threes)
    );
    // The old versions were kept as backups, as a save keeps them.
    let backups = walk(dir.path())
        .iter()
        .filter(|path| path.to_string_lossy().ends_with(".bak"))
        .count();
    assert_eq!(backups, ones + good_twos);
}

#[test]
fn sigkill_during_migrate_all_leaves_every_entry_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _, refused) = mixed_versions(dir.path());
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    // What every entry holds, migrated in memory: a kill at any point may leave an entry
    // migrated on disk or not, but never another value.
    let expected: BTreeMap<String, Option<User>> = users
        .keys()
        .unwrap()
        .map(|key| {
            let key = key.unwrap();
            let value = users.get(&key).ok().flatten();
            (key, value)
        })
        .collect();
    assert_eq!(expected.len(), 10_000);
    let check = |when: &str| {
        let users: Collection<User> = Collection::open(dir.path()).unwrap();
        let keys = users.keys().unwrap().sorted().unwrap();
        assert_eq!(keys.len(), 10_000, "{when}");
        for key in keys {
            match users.get(&key) {
                Ok(value) => assert_eq!(value, expected[&key], "{when}: {key}"),
                Err(error) => assert!(refused.contains(&key), "{when}: {key}: {error}"),
            }
        }
    };
    // Killed at three points of successive runs (each run goes over every entry again and
    // migrates what is left), then finished.
    for point in ["300", "2500", "7000"] {
        let mut child = spawn_child("migrate", dir.path());
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut reached = false;
        for line in lines {
            if line.unwrap().trim() == point {
                reached = true;
                break;
            }
        }
        assert!(reached, "the child ended before {point}");
        // SAFETY: kill(2) on the child's pid, which has not been waited for.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
            0
        );
        assert!(!child.wait().unwrap().success(), "killed at {point}");
        check(&format!("killed at {point}"));
    }
    let report = users.migrate_all().unwrap();
    assert_eq!(report.failed.len(), refused.len());
    assert_eq!(users.migrate_all().unwrap().migrated, 0);
    check("after the migration finished");
}

#[test]
fn memory_faults() {
    let store = Arc::new(Memory::new());
    let users: Collection<User> = Collection::with_backend(store.clone(), Options::new());
    users.put("a", &user("A")).unwrap();

    store.inject(Fault::FailWrite { nth: 1 });
    let error = users.put("a", &user("changed")).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert_eq!(users.get("a").unwrap(), Some(user("A")), "nothing written");

    store.inject(Fault::FailRead { nth: 2 });
    users.get("a").unwrap();
    assert!(matches!(users.get("a"), Err(Error::Io { .. })));

    // A conflict on the compare-and-swap: the update reads again and applies the change once
    // to the value it finally writes.
    store.inject(Fault::Conflict { nth: 1 });
    let mut runs = 0;
    let updated = users
        .update("a", |u| {
            runs += 1;
            u.logins += 1;
        })
        .unwrap();
    assert_eq!((runs, updated.logins), (2, 2));
    assert_eq!(users.get("a").unwrap().unwrap().logins, 2);

    // Conflicts on every attempt for the whole lock timeout: a typed error, nothing written.
    let impatient: Collection<User> = Collection::with_backend(
        store.clone(),
        Options::new().lock_timeout(Some(std::time::Duration::from_millis(30))),
    );
    for nth in 1..=1_000 {
        store.inject(Fault::Conflict { nth });
    }
    let error = impatient.update("a", |u| u.logins += 1).unwrap_err();
    assert!(
        matches!(error, Error::Contended { attempts, .. } if attempts > 1),
        "{error}"
    );
    assert_eq!(users.get("a").unwrap().unwrap().logins, 2);

    // A batch fails whole (the leftover conflicts are for conditional writes only).
    store.inject(Fault::FailWrite { nth: 2 });
    let (b, c) = (user("B"), user("C"));
    assert!(users.put_many([("b", &b), ("c", &c)]).is_err());
    assert_eq!(store.list().unwrap().len(), 1);
    users.put_many([("b", &b), ("c", &c)]).unwrap();
    assert_eq!(users.keys().unwrap().sorted().unwrap(), ["a", "b", "c"]);
}

#[test]
fn memory_collections_race_without_losing_updates() {
    let users: Collection<User> = Collection::memory();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..250 {
                    users.update("shared", |u| u.logins += 1).unwrap();
                }
            });
        }
    });
    assert_eq!(users.get("shared").unwrap().unwrap().logins, 1_000);
}

#[tokio::test]
async fn async_twins() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    users.put_async("a", user("A")).await.unwrap();
    users
        .put_many_async([("b", user("B")), ("c", user("C"))])
        .await
        .unwrap();
    assert_eq!(users.get_async("b").await.unwrap(), Some(user("B")));
    let updated = users.update_async("a", |u| u.logins += 10).await.unwrap();
    assert_eq!(updated.logins, 11);
    assert!(users.delete_async("c").await.unwrap());
    let mut keys = users.keys_async();
    let mut listed = Vec::new();
    while let Some(key) = keys.next().await {
        listed.push(key.unwrap());
    }
    listed.sort();
    assert_eq!(listed, ["a", "b"]);
}

/// A collection of users in `dir` keeping up to 100 values for `ttl`.
#[cfg(feature = "cache")]
fn cached_users(dir: &Path, ttl: std::time::Duration) -> Collection<User> {
    Options::new().cache(100, ttl).collection(dir).unwrap()
}

#[cfg(feature = "cache")]
#[test]
fn the_cache_answers_reads_and_forgets_what_this_process_writes() {
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let cached = cached_users(dir.path(), Duration::from_millis(300));
    cached.put("a", &user("A")).unwrap();
    assert_eq!(cached.get("a").unwrap(), Some(user("A"))); // miss, then kept
    assert_eq!(cached.get("a").unwrap(), Some(user("A"))); // hit
    let stats = cached.cache_stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));

    // This process's writes are seen at once.
    cached.update("a", |u| u.logins = 7).unwrap();
    assert_eq!(cached.get("a").unwrap().unwrap().logins, 7);
    cached.put("a", &user("again")).unwrap();
    assert_eq!(cached.get("a").unwrap(), Some(user("again")));
    cached.delete("a").unwrap();
    assert_eq!(cached.get("a").unwrap(), None);

    // Another program's change (here the entry's file replaced by hand) reaches the cache
    // through the directory's feed, long before the time to live (an hour here).
    drop(cached);
    let cached = cached_users(dir.path(), Duration::from_secs(3600));
    cached.put("b", &user("B")).unwrap();
    cached.get("b").unwrap();
    assert_eq!(cached.get("b").unwrap(), Some(user("B")), "cached");
    let elsewhere = tempfile::tempdir().unwrap();
    let other: Collection<User> = Collection::open(elsewhere.path()).unwrap();
    other.put("b", &user("changed elsewhere")).unwrap();
    let staged = dir.path().join("b.staged");
    std::fs::copy(other.backend().locate("b"), &staged).unwrap();
    std::fs::rename(&staged, cached.backend().locate("b")).unwrap();
    let started = std::time::Instant::now();
    while cached.get("b").unwrap() != Some(user("changed elsewhere")) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replaced file is not seen within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every handle of this process on one store shares one invalidation path: a write through a
/// handle opened on its own (with or without a cache, by another spelling of the path) drops
/// the value from every cache on the store at once, on each backend that can be opened twice.
#[cfg(feature = "cache")]
#[test]
fn a_write_through_any_handle_of_this_process_drops_every_cached_value() {
    use std::time::Duration;

    let ttl = Duration::from_secs(3600);
    let check = |cached: &Collection<User>, plain: &Collection<User>, second: &Collection<User>| {
        cached.put("a", &user("A")).unwrap();
        assert_eq!(cached.get("a").unwrap(), Some(user("A")));
        assert_eq!(second.get("a").unwrap(), Some(user("A")));
        plain.put("a", &user("from the plain handle")).unwrap();
        assert_eq!(
            cached.get("a").unwrap(),
            Some(user("from the plain handle"))
        );
        assert_eq!(
            second.get("a").unwrap(),
            Some(user("from the plain handle"))
        );
        plain.update("a", |u| u.logins = 9).unwrap();
        assert_eq!(cached.get("a").unwrap().unwrap().logins, 9);
        second.put("a", &user("from the second cache")).unwrap();
        assert_eq!(
            cached.get("a").unwrap(),
            Some(user("from the second cache"))
        );
        plain.delete("a").unwrap();
        assert!(!cached.contains("a").unwrap());
        assert_eq!(cached.get("a").unwrap(), None);
        assert_eq!(second.get("a").unwrap(), None);
        plain
            .put_many([("b", &user("B")), ("c", &user("C"))])
            .unwrap();
        cached.get("b").unwrap();
        second.get("c").unwrap();
        plain
            .put_many([("b", &user("B2")), ("c", &user("C2"))])
            .unwrap();
        assert_eq!(cached.get("b").unwrap(), Some(user("B2")));
        assert_eq!(second.get("c").unwrap(), Some(user("C2")));
        plain.clear().unwrap();
        assert_eq!(cached.get("b").unwrap(), None);
        assert_eq!(second.get("c").unwrap(), None);
    };

    // The local directory, the other handles by other spellings of its path (a `.`
    // component, a symbolic link to it).
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("users");
    let link = dir.path().join("link");
    let cached = cached_users(&store, ttl);
    std::os::unix::fs::symlink(&store, &link).unwrap();
    let plain: Collection<User> = Collection::open(store.join(".")).unwrap();
    let second = cached_users(&link, ttl);
    check(&cached, &plain, &second);

    // One memory store behind three handles.
    let memory: Arc<Memory> = Arc::new(Memory::new());
    let cached: Collection<User> =
        Collection::with_backend(memory.clone(), Options::new().cache(100, ttl));
    let plain: Collection<User> = Collection::with_backend(memory.clone(), Options::new());
    let second: Collection<User> = Collection::with_backend(memory, Options::new().cache(100, ttl));
    check(&cached, &plain, &second);

    // One redb database opened three times.
    #[cfg(feature = "redb")]
    {
        let path = dir.path().join("users.redb");
        let cached: Collection<User> = Options::new().cache(100, ttl).redb(&path).unwrap();
        let plain: Collection<User> = Collection::redb(&path).unwrap();
        let second: Collection<User> = Options::new().cache(100, ttl).redb(&path).unwrap();
        check(&cached, &plain, &second);
    }
}

/// A cached handle read in a loop while another handle of the process writes: once the writer
/// is done, the cached handle answers with its last value (a read that raced a write never
/// puts back the value the write replaced).
#[cfg(feature = "cache")]
#[test]
fn a_cached_read_racing_another_handles_writes_ends_on_the_last_write() {
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let cached = cached_users(dir.path(), Duration::from_secs(3600));
    let writer: Collection<User> = Collection::open(dir.path()).unwrap();
    writer.put("a", &user("0")).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                cached.get("a").unwrap();
            }
        });
        for round in 1..=300 {
            writer.put("a", &user(&round.to_string())).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(cached.get("a").unwrap(), Some(user("300")));
}

#[test]
fn clear_removes_the_collection_and_nothing_beside_it() {
    let root = tempfile::tempdir().unwrap();
    let alice = root.path().join("alice");
    let bob = root.path().join("bob");
    let alices: Collection<User> = Collection::open(&alice).unwrap();
    let bobs: Collection<User> = Collection::open(&bob).unwrap();
    for key in ["a", "b", "c"] {
        alices.update(key, |u| u.logins += 1).unwrap(); // lock files too
        bobs.put(key, &user(key)).unwrap();
    }
    // An old version beside, which leaves a backup when rewritten.
    let old: Collection<UserV1> = Collection::open(&alice).unwrap();
    old.put("d", &UserV1 { name: "d".into() }).unwrap();
    alices.migrate_all().unwrap();
    // A link inside the collection to a file outside: removed, never followed.
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let shard = walk(&alice).into_iter().find(|path| path.is_dir()).unwrap();
    std::os::unix::fs::symlink(&outside, shard.join("link")).unwrap();

    alices.clear().unwrap();
    assert_eq!(
        alices.keys().unwrap().sorted().unwrap(),
        Vec::<String>::new()
    );
    // What stays is the directory's batch machinery (clear runs under the batches' lock): an
    // empty staging directory and the lock file.
    let mut left = walk(&alice);
    left.sort();
    assert_eq!(
        left,
        [alice.join(".persist-txn"), alice.join(".persist-txn.lock")]
    );
    assert_eq!(
        std::fs::read_dir(alice.join(".persist-txn"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    assert_eq!(bobs.keys().unwrap().sorted().unwrap(), ["a", "b", "c"]);
    // Usable again.
    alices.put("e", &user("e")).unwrap();
    assert_eq!(alices.keys().unwrap().sorted().unwrap(), ["e"]);

    let memory: Collection<User> = Collection::memory();
    memory.put("x", &user("x")).unwrap();
    memory.clear().unwrap();
    assert!(memory.keys().unwrap().sorted().unwrap().is_empty());
}

#[test]
fn a_deleted_key_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Without fsyncs: what is left behind does not depend on them, and 1,000 rounds are quick.
    let fast = Options::new().durability(persist::Durability::None);
    let users: Collection<User> = fast.collection(dir.path()).unwrap();
    for i in 0..1_000 {
        let key = format!("user-{i}");
        users.put(&key, &user("x")).unwrap();
        assert!(users.delete(&key).unwrap());
    }
    users
        .put_many([("a", &user("a")), ("b", &user("b"))])
        .unwrap();
    users.update("a", |u| u.logins += 1).unwrap();
    // An entry of an older version, replaced: its backup goes with it.
    let old: Collection<UserV2> = fast.collection(dir.path()).unwrap();
    old.put("c", &UserV2::default()).unwrap();
    users.put("c", &user("c")).unwrap();
    assert!(
        walk(dir.path())
            .iter()
            .any(|path| path.ends_with("c.v2.bak"))
    );
    assert!(users.delete("c").unwrap());
    assert!(users.delete("a").unwrap());
    assert!(users.delete("b").unwrap());
    // What stays is the directory's, not an entry's: the lock file batches take (their
    // staging directory is empty between batches).
    let files: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|path| path.is_file())
        .collect();
    assert_eq!(files, [dir.path().join(".persist-txn.lock")]);
}

#[test]
fn an_entry_must_hold_its_own_key_wherever_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    users.put("alice", &user("alice")).unwrap();
    let entry = users.backend().locate("alice");
    let written = std::fs::read_to_string(&entry).unwrap();
    let value: serde_json::Value = serde_json::from_str(&written).unwrap();
    let data = value["data"].to_string();
    // The key written last is still checked; another key, or none, is a mismatch.
    for (text, holds) in [
        (
            format!(r#"{{"version":3,"data":{data},"key":"alice"}}"#),
            true,
        ),
        (
            format!(r#"{{"version":3,"data":{data},"key":"mallory"}}"#),
            false,
        ),
        (format!(r#"{{"version":3,"data":{data}}}"#), false),
        (
            format!(r#"{{"version":3,"key":"alice","data":{data},"key":"mallory"}}"#),
            true,
        ),
    ] {
        std::fs::write(&entry, &text).unwrap();
        match users.get("alice") {
            Ok(Some(found)) => assert!(holds, "{text}: {found:?}"),
            Err(Error::Corrupt { field, .. }) => {
                assert!(!holds, "{text}");
                assert_eq!(field.as_deref(), Some("key"));
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // A migration reports an entry that holds another key (or none) and leaves it alone.
    for text in [
        r#"{"version":2,"key":"mallory","data":{"name":"m","plan":"pro"}}"#.to_owned(),
        r#"{"version":2,"data":{"name":"m","plan":"pro"}}"#.to_owned(),
    ] {
        std::fs::write(&entry, &text).unwrap();
        let report = users.migrate_all().unwrap();
        assert_eq!(report.migrated, 0, "{text}");
        assert_eq!(report.failed.len(), 1, "{text}");
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), text);
    }
}

#[test]
fn a_batch_may_name_a_key_twice_and_the_last_value_wins() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    let (first, last) = (user("first"), user("last"));
    users
        .put_many([("a", &first), ("b", &first), ("a", &last)])
        .unwrap();
    assert_eq!(users.get("a").unwrap(), Some(last));
    assert_eq!(users.get("b").unwrap(), Some(first));
}

#[test]
fn try_update_writes_only_what_it_returns_ok() {
    #[derive(Debug)]
    enum Refused {
        TooMany,
        Store(Error),
    }
    impl From<Error> for Refused {
        fn from(error: Error) -> Self {
            Refused::Store(error)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let local: Collection<User> = Collection::open(dir.path()).unwrap();
    let memory: Collection<User> = Collection::memory();
    for users in [local, memory] {
        let bump = |limit: u64| {
            users.try_update("ada", |u| match u.logins < limit {
                true => {
                    u.logins += 1;
                    Ok(u.logins)
                }
                false => Err(Refused::TooMany),
            })
        };
        // Absent: starts from Default, and a refusal creates nothing.
        assert!(matches!(bump(0), Err(Refused::TooMany)));
        assert!(!users.contains("ada").unwrap());
        assert_eq!(bump(2).unwrap(), 1);
        assert_eq!(bump(2).unwrap(), 2);
        assert!(matches!(bump(2), Err(Refused::TooMany)));
        assert_eq!(users.get("ada").unwrap().unwrap().logins, 2);
        // persist's own errors come through `From`.
        let error = users.try_update("", |_| Ok::<_, Refused>(())).unwrap_err();
        assert!(
            matches!(error, Refused::Store(Error::InvalidKey { .. })),
            "{error:?}"
        );
        // The async twin, with persist's error type.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let logins = runtime
            .block_on(users.try_update_async("ada", |u| {
                u.logins += 10;
                Ok::<_, Error>(u.logins)
            }))
            .unwrap();
        assert_eq!(logins, 12);
        let refused = runtime.block_on(users.try_update_async("ada", |_| {
            Err::<(), _>(Error::Contended {
                path: "nowhere".into(),
                attempts: 0,
            })
        }));
        assert!(matches!(refused, Err(Error::Contended { .. })));
        assert_eq!(users.get("ada").unwrap().unwrap().logins, 12);
    }
}

#[test]
fn try_update_on_a_store_without_locks_keeps_only_the_winning_run() {
    use persist::backend::{Fault, Memory};
    let store = std::sync::Arc::new(Memory::new());
    let users = Collection::<User>::with_backend(store.clone(), Options::new());
    users.put("ada", &user("ada")).unwrap();
    // The first compare-and-swap loses: the change runs again on a fresh value.
    store.inject(Fault::Conflict { nth: 1 });
    let mut runs = 0;
    let logins = users
        .try_update("ada", |u| {
            runs += 1;
            u.logins += 1;
            Ok::<_, Error>(u.logins)
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(logins, 2);
    assert_eq!(users.get("ada").unwrap().unwrap().logins, 2);
}

#[test]
fn a_shard_holds_one_name_per_entry_between_writes() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    let values: Vec<(String, User)> = (0..300)
        .map(|n| (format!("user-{n}"), user(&n.to_string())))
        .collect();
    users
        .put_many(values.iter().map(|(key, value)| (key, value)))
        .unwrap();
    users.put("alice", &user("alice")).unwrap();
    users.update("alice", |u| u.logins += 1).unwrap();
    users.update("bob", |u| u.logins += 1).unwrap();
    assert!(users.delete("user-7").unwrap());
    // Every file in a shard is an entry: no lock file is left once a write is done.
    let files: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|path| path.is_file() && !path.starts_with(dir.path().join(".persist-txn")))
        .filter(|path| path.file_name().unwrap() != ".persist-txn.lock")
        .collect();
    assert_eq!(files.len(), 300 - 1 + 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|path| !path.to_string_lossy().contains('.')
                || !path.file_name().unwrap().to_string_lossy().contains('.')),
        "{files:?}"
    );
}

/// A cache whose store's feed could not be had when it was opened (a server out of
/// connections, say) asks for it again, and follows the other writers once it comes.
#[cfg(feature = "cache")]
#[test]
fn a_cache_whose_feed_failed_at_first_still_follows_other_writers() {
    let memory = Arc::new(Memory::new());
    // The memory store seen through another root (as another process writes it), whose feed
    // cannot be had the first `refused` times it is asked for.
    let on = |root: &'static str, refused: u32| {
        let refused = std::sync::atomic::AtomicU32::new(refused);
        let watch: common::around::Watch = Box::new(move |memory, prefixes, poll| {
            if refused.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                refused.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                return Err(Error::Remote {
                    path: root.into(),
                    op: persist::RemoteOp::Watch,
                    server: "a test's store".into(),
                    transient: true,
                    source: "refused for the test".into(),
                });
            }
            memory.watch(prefixes, poll)
        });
        Arc::new(common::around::Around {
            memory: Arc::clone(&memory),
            root,
            watch,
        })
    };
    let cached: Collection<User> = Collection::with_backend(
        on("memory-cached:", 2),
        Options::new().cache(100, std::time::Duration::from_secs(3600)),
    );
    let other: Collection<User> = Collection::with_backend(on("memory-other:", 0), Options::new());
    other.put("k", &user("first")).unwrap();
    assert_eq!(cached.get("k").unwrap(), Some(user("first")));
    other.put("k", &user("second")).unwrap();
    common::watch::seen_within_5_s("put", &|| cached.get("k").unwrap() == Some(user("second")));
    other.put("k", &user("third")).unwrap();
    common::watch::seen_within_5_s("put", &|| cached.get("k").unwrap() == Some(user("third")));
    // Followed now (the feed came at the third attempt, two seconds in): the cache is no
    // longer emptied every second, and another write reaches it through the feed.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    cached.get("k").unwrap();
    let hits = cached.cache_stats().hits;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(cached.get("k").unwrap(), Some(user("third")));
    assert_eq!(cached.cache_stats().hits, hits + 1, "kept, not emptied");
    other.put("k", &user("fourth")).unwrap();
    common::watch::seen_within_5_s("put", &|| cached.get("k").unwrap() == Some(user("fourth")));
}

/// A `clear` removes the shard directories while other writers run: a put that found its
/// shard before the clear and writes after it makes the shard again, and never fails on the
/// directory the clear removed (it did: "could not open the lock file").
#[test]
fn writes_racing_a_clear_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let users: Collection<User> = Collection::open(dir.path()).unwrap();
    let clearing = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        let clearer = scope.spawn(|| {
            let other: Collection<User> = Collection::open(dir.path()).unwrap();
            while clearing.load(std::sync::atomic::Ordering::Relaxed) {
                other.clear().unwrap();
            }
        });
        let mut failed = Vec::new();
        for round in 0..1500 {
            let key = format!("k{}", round % 40);
            let result = match round % 3 {
                0 => users.delete(&key).map(drop),
                1 => users.update(&key, |user| user.logins += 1).map(drop),
                _ => users.put(&key, &user("x")),
            };
            if let Err(error) = result {
                failed.push(error.to_string());
            }
        }
        clearing.store(false, std::sync::atomic::Ordering::Relaxed);
        clearer.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
    });
}
