//! The suite every network backend of `Collection<T>` passes, on a real server: what
//! `tests/collection_postgres.rs` and `tests/collection_s3.rs` run, each with its [`Store`].
//! Outside CI, without the server's variable, every test says loudly that it skipped; under CI
//! (`CI` set) a missing server fails them.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use persist::backend::{Backend, Condition, Entry, Written};
use persist::{Collection, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct CounterV1 {
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = CounterV1)]
pub struct Counter {
    pub label: String,
    pub hits: u64,
}

impl From<CounterV1> for Counter {
    fn from(old: CounterV1) -> Self {
        Counter {
            label: old.label,
            hits: 0,
        }
    }
}

/// One kind of server, and how a test opens a collection on it.
pub trait Store {
    /// The variable naming the server (`PERSIST_TEST_POSTGRES`, `PERSIST_TEST_S3`).
    const VARIABLE: &'static str;
    /// The script that starts one (`.ci/postgres`).
    const SCRIPT: &'static str;
    /// The backend the test's collections run on, in a place (a table, a prefix) of its own.
    type Backend: Backend;

    /// A place of its own for `test` in this process.
    fn place(test: &str) -> String;

    /// The backend at `place` on the server `server`.
    fn backend(server: &str, place: &str) -> Self::Backend;

    /// A collection at `place` on the server `server`.
    fn open<T: Persisted + Clone + Send + Sync + 'static>(
        server: &str,
        place: &str,
    ) -> Collection<T> {
        let backend = std::sync::Arc::new(Self::backend(server, place));
        Collection::with_backend(backend, persist::Options::new())
    }

    /// The server, or `None` (with a loud message) when there is none here.
    fn server() -> Option<String> {
        let variable = Self::VARIABLE;
        let server = std::env::var(variable).ok();
        let what = format!(
            "a server ({variable}: `export {variable}=\"$(bash {})\"` starts one)",
            Self::SCRIPT
        );
        match crate::common::needs(&what, server.is_some()) {
            true => server,
            false => None,
        }
    }
}

/// The variable that tells a child process its place.
const CHILD_PLACE: &str = "PERSIST_TEST_REMOTE_PLACE";

pub fn basics<S: Store>() {
    let Some(server) = S::server() else { return };
    let counters: Collection<Counter> = S::open(&server, &S::place("basics"));
    assert_eq!(counters.get("a").unwrap(), None);
    let a = Counter {
        label: "A".into(),
        hits: 1,
    };
    counters.put("a", &a).unwrap();
    assert_eq!(counters.get("a").unwrap(), Some(a));
    assert_eq!(counters.update("a", |c| c.hits += 1).unwrap().hits, 2);
    assert_eq!(counters.update("b", |c| c.hits += 1).unwrap().hits, 1);
    // Keys a file system, a text column or an object name could not hold are entries like any
    // other.
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
    assert_eq!(counters.keys().unwrap().sorted().unwrap(), expected);
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
    assert_eq!(
        counters.keys().unwrap().sorted().unwrap().len(),
        expected.len() - 1 + 100
    );
    counters.clear().unwrap();
    assert!(counters.keys().unwrap().sorted().unwrap().is_empty());
}

pub fn conditional_writes<S: Store>() {
    let Some(server) = S::server() else { return };
    let backend = S::backend(&server, &S::place("cas"));
    // Two contents: a tag may be a hash of the content (an ETag).
    let entry_of = |bytes: &'static [u8]| Entry {
        key: "k",
        bytes,
        version: 1,
    };
    let entry = entry_of(br#"{"version":1,"data":1}"#);
    let changed = entry_of(br#"{"version":1,"data":2}"#);
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
    assert!(
        !backend
            .delete("k", &Condition::Matches(first.clone()))
            .unwrap()
    );
    assert!(
        backend
            .delete("k", &Condition::Matches(second.clone()))
            .unwrap()
    );
    // Deleted and written again (with a third content): a tag read before the delete is not
    // the new entry's, so a write conditioned on it would not land on the newer entry.
    let third = entry_of(br#"{"version":1,"data":3}"#);
    let Written::Done(again) = backend.put("k", third, &Condition::Absent).unwrap() else {
        panic!("absent after the delete");
    };
    assert!(
        again != first && again != second,
        "a tag given twice: {again:?} (before: {first:?}, {second:?})"
    );
    for old in [first, second] {
        assert_eq!(
            backend
                .put("k", changed, &Condition::Matches(old.clone()))
                .unwrap(),
            Written::Conflict,
            "a write conditioned on {old:?} landed on the entry written after a delete"
        );
        assert!(!backend.delete("k", &Condition::Matches(old)).unwrap());
    }
    assert_eq!(backend.get("k").unwrap().unwrap().bytes, third.bytes);
}

/// The body of the child processes of [`processes_lose_nothing`]; does nothing when run
/// directly by `cargo test`.
pub fn child<S: Store>() {
    let (Ok(server), Ok(place)) = (std::env::var(S::VARIABLE), std::env::var(CHILD_PLACE)) else {
        return;
    };
    let counters: Collection<Counter> = S::open(&server, &place);
    if let Ok(policy) = std::env::var(CHILD_LIVE) {
        live_child(&counters, &policy);
        return;
    }
    match std::env::var(CHILD_SET).as_deref() {
        Ok("delete") => {
            counters.delete("shared").unwrap();
            return;
        }
        Ok(hits) if !hits.is_empty() => {
            let value = Counter {
                label: "elsewhere".into(),
                hits: hits.parse().unwrap(),
            };
            counters.put("shared", &value).unwrap();
            return;
        }
        _ => {}
    }
    if let Ok(writer) = std::env::var(CHILD_WRITER) {
        // A writer of [`watch_sees_two_writers`]: random puts and deletes of 40 keys, each
        // value labelled with the writer and counting its writes.
        let (mut rng, _) = crate::common::Rng::from_env();
        for seq in 0..500 {
            let key = format!("key-{}", rng.below(40));
            if rng.below(4) == 0 {
                counters.delete(&key).unwrap();
            } else {
                let value = Counter {
                    label: writer.clone(),
                    hits: seq,
                };
                counters.put(&key, &value).unwrap();
            }
        }
        return;
    }
    for _ in 0..250 {
        counters.update("shared", |c| c.hits += 1).unwrap();
    }
}

/// The variable that makes a child process put `shared` with these hits, or delete it.
const CHILD_SET: &str = "PERSIST_TEST_REMOTE_SET";

/// A cached handle (entries kept for an hour) while another process puts and deletes its
/// cached entry: each change is seen through the store's feed within a few seconds.
pub fn cached_handle_sees_another_process<S: Store>() {
    use std::time::{Duration, Instant};
    let Some(server) = S::server() else { return };
    let place = S::place("cached");
    let cached: Collection<Counter> = Collection::with_backend(
        std::sync::Arc::new(S::backend(&server, &place)),
        persist::Options::new().cache(100, Duration::from_secs(3600)),
    );
    cached.put("shared", &Counter::default()).unwrap();
    // The store's feed tells this process's own put too, which drops the key once more, a
    // moment later: read until a read is answered by the cache.
    let started = Instant::now();
    while cached.cache_stats().hits == 0 {
        assert_eq!(cached.get("shared").unwrap().unwrap().hits, 0);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the value is never cached"
        );
    }
    let elsewhere = |what: &str| {
        let status = crate::common::child(
            "child",
            &[
                (S::VARIABLE, server.as_str()),
                (CHILD_PLACE, place.as_str()),
                (CHILD_SET, what),
            ],
        )
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success());
    };
    let until = crate::common::watch::seen_within_5_s;
    elsewhere("9");
    until("put", &|| cached.get("shared").unwrap().unwrap().hits == 9);
    elsewhere("delete");
    until("delete", &|| cached.get("shared").unwrap().is_none());
}

/// The variable that makes a child process one of [`live_increments`]'s, with its policy.
const CHILD_LIVE: &str = "PERSIST_TEST_REMOTE_LIVE";

/// How many increments each process of [`live_increments`] makes.
const INCREMENTS: u64 = 200;

/// The save policy a child's live handle uses.
fn policy(name: &str) -> persist::SavePolicy {
    match name {
        "coalesce" => persist::SavePolicy::Coalesce {
            debounce: std::time::Duration::from_millis(5),
            max_wait: std::time::Duration::from_millis(50),
        },
        _ => persist::SavePolicy::Immediate,
    }
}

/// The body of one process of [`live_increments`]: [`INCREMENTS`] increments of the entry
/// `live` through a live handle, then a wait until the handle shows the other process's last
/// increment too (the total of both).
fn live_child(counters: &Collection<Counter>, policy_name: &str) {
    let live = counters.live_with("live", policy(policy_name)).unwrap();
    for _ in 0..INCREMENTS {
        live.update(|counter| counter.hits += 1).unwrap();
    }
    live.flush().unwrap();
    let started = std::time::Instant::now();
    while live.get().hits < 2 * INCREMENTS {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the live handle shows {} of {} after 20 s",
            live.get().hits,
            2 * INCREMENTS
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!("saw {}", live.get().hits);
}

/// Two processes, each with a live handle on one entry under `policy` (`immediate` or
/// `coalesce`), each making [`INCREMENTS`] increments: the entry ends at exactly twice that,
/// and each handle shows the other's last increment.
pub fn live_increments<S: Store>(policy_name: &str) {
    let Some(server) = S::server() else { return };
    let place = S::place(&format!("live_{policy_name}"));
    let counters: Collection<Counter> = S::open(&server, &place);
    let children: Vec<_> = (0..2)
        .map(|_| {
            crate::common::child(
                "child",
                &[
                    (S::VARIABLE, server.as_str()),
                    (CHILD_PLACE, place.as_str()),
                    (CHILD_LIVE, policy_name),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(said.contains(&format!("saw {}", 2 * INCREMENTS)), "{said}");
    }
    assert_eq!(counters.get("live").unwrap().unwrap().hits, 2 * INCREMENTS);
}

/// The variable that makes a child process a random writer, and names it.
const CHILD_WRITER: &str = "PERSIST_TEST_REMOTE_WRITER";

/// A writer process of random puts and deletes on `place` (see [`child`]).
pub fn spawn_writer<S: Store>(server: &str, place: &str, writer: u32) -> std::process::Child {
    crate::common::child(
        "child",
        &[
            (S::VARIABLE, server),
            (CHILD_PLACE, place),
            (CHILD_WRITER, &writer.to_string()),
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap()
}

/// What a watch of counters knows: values checked in each writer's order.
pub fn counter_mirror() -> crate::common::watch::Mirror<Counter> {
    crate::common::watch::Mirror::new(|counter| (counter.label.parse().unwrap_or(0), counter.hits))
}

/// Every value of `counters`, read now.
pub fn counter_state(
    counters: &Collection<Counter>,
) -> std::collections::BTreeMap<String, Counter> {
    crate::common::watch::state(counters)
}

/// A watch of the whole collection while two other processes make 1,000 random puts and
/// deletes: each key's events in order, and the watch ends on the state a fresh read finds.
/// `during` runs once while the writers write (after the first events), with the server.
/// The collection is at the place `test`; returns how many resyncs the watch told (`None`
/// without a server).
pub fn watch_sees_two_writers<S: Store>(
    test: &str,
    poll: std::time::Duration,
    during: impl FnOnce(&str),
) -> Option<usize> {
    use std::time::Duration;
    let server = S::server()?;
    let place = S::place(test);
    let counters: Collection<Counter> = S::open(&server, &place);
    let mut watch = counters
        .watch_with(
            "",
            persist::WatchOptions::new().values(true).poll_every(poll),
        )
        .unwrap();
    let writers: Vec<_> = (1..=2)
        .map(|w| spawn_writer::<S>(&server, &place, w))
        .collect();
    let mut mirror = counter_mirror();
    let mut during = Some(during);
    for mut writer in writers {
        while writer.try_wait().unwrap().is_none() {
            if let Some(event) = watch.next_timeout(Duration::from_millis(50)) {
                mirror.apply(event.unwrap());
                if mirror.events.len() >= 20
                    && let Some(during) = during.take()
                {
                    during(&server);
                }
            }
        }
        assert!(writer.wait().unwrap().success());
    }
    mirror.follow_until(
        &mut watch,
        &counter_state(&counters),
        Duration::from_secs(20),
    );
    eprintln!("{} events, {} resyncs", mirror.events.len(), mirror.resyncs);
    Some(mirror.resyncs)
}

/// 4 processes x 250 updates of one key: exactly 1,000. The test binary runs itself; its
/// `child` test must call [`child`].
pub fn processes_lose_nothing<S: Store>() {
    let Some(server) = S::server() else { return };
    let place = S::place("processes");
    // The place exists before the children race to use it.
    let counters: Collection<Counter> = S::open(&server, &place);
    let children: Vec<_> = (0..4)
        .map(|_| {
            crate::common::child("child", &[(S::VARIABLE, &server), (CHILD_PLACE, &place)])
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

/// `migrate_all` while a newer program raises every counter again and again: no raise lost,
/// no newer entry overwritten, and the race did happen (the migration's report counts the
/// entries whose conditional write the server refused because the writer got there first; a
/// run without one is tried again, up to five times).
pub fn migration_racing_a_newer_writer<S: Store>() {
    let Some(server) = S::server() else { return };
    for attempt in 0..5 {
        let raced = migration_race::<S>(&server, &S::place(&format!("race_{attempt}")));
        eprintln!("migration race, attempt {attempt}: {raced} entries raced");
        if raced > 0 {
            return;
        }
    }
    panic!("five migrations ran beside the writer and none raced it: the test proves nothing");
}

/// One run of [`migration_racing_a_newer_writer`] in `place`: how many entries raced.
fn migration_race<S: Store>(server: &str, place: &str) -> usize {
    let old: Collection<CounterV1> = S::open(server, place);
    let keys: Vec<String> = (0..200).map(|n| format!("k{n}")).collect();
    let v1 = CounterV1 {
        label: "old".into(),
    };
    old.put_many(keys.iter().map(|key| (key, &v1))).unwrap();

    let counters: Collection<Counter> = S::open(server, place);
    let done = AtomicBool::new(false);
    // Four writers, each raising its quarter of the keys round after round.
    const WRITERS: usize = 4;
    let (rounds, report) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (keys, done) = (&keys, &done);
                scope.spawn(move || {
                    let writer: Collection<Counter> = S::open(server, place);
                    let mine: Vec<&String> = keys.iter().skip(w).step_by(WRITERS).collect();
                    let mut rounds = 0_u64;
                    while !done.load(Ordering::Relaxed) || rounds < 2 {
                        for key in &mine {
                            writer.update(key, |c| c.hits += 1).unwrap();
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let report = counters.migrate_all().unwrap();
        done.store(true, Ordering::Relaxed);
        let rounds: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        (rounds, report)
    });
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.total, keys.len());
    assert_eq!(report.migrated + report.current, keys.len());
    for (n, key) in keys.iter().enumerate() {
        let counter = counters.get(key).unwrap().unwrap();
        assert_eq!(counter.hits, rounds[n % WRITERS], "{key}");
        assert_eq!(counter.label, "old");
    }
    report.raced
}

/// The async twins on a collection opened by the backend's async constructor.
pub async fn async_twins(counters: Collection<Counter>) {
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
    assert_eq!(counters.get_async("x").await.unwrap().unwrap().hits, 4);
    let mut keys = counters.keys_async();
    assert_eq!(keys.next().await.unwrap().unwrap(), "x");
    assert!(keys.next().await.is_none());
    // The sync API works inside a runtime too (it waits on the backend's own threads).
    assert_eq!(counters.get("x").unwrap().unwrap().hits, 4);
}

/// [`processes_lose_nothing`] for a store one process opens at a time (an embedded database,
/// which locks its file, and whose open waits for another process to close it): nothing is
/// held open here while 4 processes x 250 updates of one key take turns; exactly 1,000 after.
pub fn processes_take_turns<S: Store>() {
    let Some(server) = S::server() else { return };
    let place = S::place("turns");
    // The place exists before the children race to open it; closed again at once.
    drop(S::open::<Counter>(&server, &place));
    let children: Vec<_> = (0..4)
        .map(|_| {
            crate::common::child("child", &[(S::VARIABLE, &server), (CHILD_PLACE, &place)])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let counters: Collection<Counter> = S::open(&server, &place);
    assert_eq!(counters.get("shared").unwrap().unwrap().hits, 1_000);
}

/// [`migration_racing_a_newer_writer`] for a store whose `modify` never conflicts (it runs the
/// change inside the store's write transaction, or under a lock): the same writers and checks,
/// no raise lost and no newer entry overwritten, but no race to count (writers wait for each
/// other instead).
pub fn migration_beside_a_newer_writer<S: Store>() {
    let Some(server) = S::server() else { return };
    let raced = migration_race::<S>(&server, &S::place("beside"));
    eprintln!("migration beside a writer: {raced} entries raced");
}

/// Keys of [`scans`] with their entry names: prefixes that are escapes of others (`a` and `a~`,
/// `~` and `~7e`, `A` and `~41`), a Windows device name (`con`, spelled `~63on`), bytes outside
/// ASCII, NUL and `/` (two keys over 200 bytes, with hashed names, come beside them).
pub const SCANNED: [(&str, &str); 14] = [
    ("a", "a"),
    ("a-", "a-"),
    ("a~", "a~7e"),
    ("a~b", "a~7eb"),
    ("~", "~7e"),
    ("~7e", "~7e7e"),
    ("~41", "~7e41"),
    ("A", "~41"),
    ("co", "co"),
    ("con", "~63on"),
    ("con1", "con1"),
    ("é", "~c3~a9"),
    ("\0", "~00"),
    ("b/c", "b~2fc"),
];

/// [`Backend::scan`] on `backend`, where `counters` writes (the same place): each prefix's
/// names, each once, in bytewise order, the same as [`Backend::list`] filtered and sorted.
pub fn scans_on(backend: &dyn Backend, counters: &Collection<Counter>) {
    let long = ["k".repeat(300), "K".repeat(300)];
    for (key, _) in SCANNED {
        counters.put(key, &Counter::default()).unwrap();
    }
    for key in &long {
        counters.put(key, &Counter::default()).unwrap();
    }
    let scan = |prefix: &str| -> Vec<String> {
        backend
            .scan(prefix)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut all = backend.list().unwrap();
    all.sort();
    assert_eq!(all.len(), SCANNED.len() + long.len(), "{all:?}");
    for (_, name) in SCANNED {
        assert!(all.contains(&name.to_string()), "{name} in {all:?}");
    }
    let hashed: Vec<String> = all
        .iter()
        .filter(|name| name.starts_with("~~"))
        .cloned()
        .collect();
    assert_eq!(hashed.len(), 2, "{all:?}");
    assert!(hashed.iter().all(|name| name.len() == 66), "{hashed:?}");
    assert_eq!(scan(""), all);
    assert_eq!(scan("a"), ["a", "a-", "a~7e", "a~7eb"]);
    assert_eq!(scan("a~"), ["a~7e", "a~7eb"]);
    assert_eq!(scan("a~7e"), ["a~7e", "a~7eb"]);
    assert_eq!(scan("a~7eb"), ["a~7eb"]);
    assert_eq!(scan("~7e"), ["~7e", "~7e41", "~7e7e"]);
    assert_eq!(scan("~7e7"), ["~7e7e"]);
    assert_eq!(scan("~4"), ["~41"]);
    assert_eq!(scan("~41"), ["~41"]);
    assert_eq!(scan("co"), ["co", "con1"]);
    assert_eq!(scan("con"), ["con1"]);
    assert_eq!(scan("~6"), ["~63on"]);
    assert_eq!(scan("~c3"), ["~c3~a9"]);
    assert_eq!(scan("~0"), ["~00"]);
    assert_eq!(scan("~~"), hashed);
    assert_eq!(scan(&hashed[1]), &hashed[1..]);
    for prefix in [
        "",
        "~",
        "a",
        "a-",
        "b",
        "b~2",
        "c",
        "k",
        "~~",
        "~~0",
        "z",
        "~7f",
        "-",
        "_",
        "é",
        "\0",
        "A",
        "~7E",
        "\u{10FFFF}",
    ] {
        let expected: Vec<&String> = all.iter().filter(|name| name.starts_with(prefix)).collect();
        assert_eq!(
            scan(prefix).iter().collect::<Vec<_>>(),
            expected,
            "{prefix:?}"
        );
    }
    assert!(scan("b").len() == 1 && scan("zz").is_empty() && scan("é").is_empty());
}

/// [`scans_on`] on a place of its own.
pub fn scans<S: Store>() {
    let Some(server) = S::server() else { return };
    let place = S::place("scan");
    let counters: Collection<Counter> = S::open(&server, &place);
    scans_on(&S::backend(&server, &place), &counters);
}

/// A scan over more than one page (1,000 names): every name once, in order; and pages are read
/// as the names are consumed: the entries deleted after the first name was read are not seen
/// past the first page.
pub fn scans_read_pages_as_they_go<S: Store>() {
    let Some(server) = S::server() else { return };
    let place = S::place("pages");
    let backend = S::backend(&server, &place);
    let counters: Collection<Counter> = S::open(&server, &place);
    let keys: Vec<String> = (0..1100).map(|n| format!("p-{n:04}")).collect();
    let entry = Counter::default();
    counters
        .put_many(
            keys.iter()
                .chain(&["o".to_owned(), "q".to_owned()])
                .map(|key| (key, &entry)),
        )
        .unwrap();
    let names: Vec<String> = backend
        .scan("p-")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, keys);
    assert_eq!(backend.scan("").unwrap().count(), keys.len() + 2);
    let mut scan = backend.scan("p-").unwrap();
    assert_eq!(scan.next().unwrap().unwrap(), "p-0000");
    counters.clear().unwrap();
    let rest: Vec<String> = scan.collect::<Result<_, _>>().unwrap();
    // The first page, read before the entries went; nothing after it.
    assert_eq!(rest, keys[1..1000]);
    assert_eq!(backend.scan("").unwrap().count(), 0);
}
