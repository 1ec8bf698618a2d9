//! `Collection<T>` on a real PostgreSQL server: the one `.ci/postgres` starts, named by
//! `PERSIST_TEST_POSTGRES` (the shared suite is `tests/remote/mod.rs`).
#![cfg(feature = "postgres")]

mod common;
// Some of the suite is for other stores (an embedded database's).
#[allow(dead_code)]
mod remote;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persist::backend::{Backend, Condition, Entry, Postgres};
use persist::{Collection, Error, Options, RemoteOp};
use remote::{Counter, CounterV1, Store};

struct Pg;

impl Store for Pg {
    const VARIABLE: &'static str = "PERSIST_TEST_POSTGRES";
    const SCRIPT: &'static str = ".ci/postgres";
    type Backend = Postgres;

    fn place(test: &str) -> String {
        format!("persist_test_{test}_{}", std::process::id())
    }

    fn backend(server: &str, place: &str) -> Postgres {
        Postgres::connect(server, place).unwrap()
    }
}

#[test]
fn get_put_update_delete_and_keys() {
    remote::basics::<Pg>();
}

#[test]
fn conditional_writes_are_compare_and_swap() {
    remote::conditional_writes::<Pg>();
}

#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    remote::child::<Pg>();
}

#[test]
fn processes_updating_one_key_lose_nothing() {
    remote::processes_lose_nothing::<Pg>();
}

#[test]
fn a_migration_racing_a_newer_writer_loses_nothing() {
    remote::migration_racing_a_newer_writer::<Pg>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_constructor_and_twins() {
    let Some(server) = Pg::server() else { return };
    let counters: Collection<Counter> = Collection::postgres(&server, Pg::place("async"))
        .await
        .unwrap();
    remote::async_twins(counters).await;
}

#[test]
fn an_unreachable_server_is_a_typed_error() {
    // A closed port on this machine: refused at once.
    let error = Postgres::connect("host=127.0.0.1 port=1 user=nobody", "t").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Connect,
                transient: true,
                ref server,
                ..
            } if server.contains("127.0.0.1:1")
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("postgres://127.0.0.1"), "{message}");
    // The server with its port, and the operating system's cause.
    assert!(
        message.contains("PostgreSQL server at 127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!message.contains("file"), "{message}");
    let error = Postgres::connect("not a = connection = string", "t").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                transient: false,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains("file"), "{error}");
}

#[test]
fn scans_are_in_name_order_with_hostile_prefixes() {
    remote::scans::<Pg>();
}

#[test]
fn scans_read_pages_as_they_go() {
    remote::scans_read_pages_as_they_go::<Pg>();
}

/// The server and psql (PostgreSQL's client, installed with the server) for a test that looks
/// at the table with SQL, or `None` (with a loud message).
fn server_and_psql() -> Option<String> {
    let server = Pg::server()?;
    let psql = Command::new("psql").arg("--version").output().is_ok();
    common::needs("psql (PostgreSQL's client)", psql).then_some(server)
}

/// The rows `sql` returns, run by psql on `server`: their fields as text, NULL as `NULL`.
fn psql(server: &str, sql: &str) -> Vec<Vec<String>> {
    let output = Command::new("psql")
        .args([
            server,
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-P",
            "null=NULL",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{sql}: {stderr}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// `rows` as psql prints them.
fn rows<const N: usize>(rows: &[[&str; N]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|field| field.to_string()).collect())
        .collect()
}

#[test]
fn rows_hold_the_key_and_the_data_as_jsonb() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let table = Pg::place("rows");
    let counters: Collection<Counter> = Pg::open(&server, &table);
    let backend = Pg::backend(&server, &table);
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT column_name, data_type, coalesce(collation_name, '-') \
                 FROM information_schema.columns WHERE table_name = '{table}' \
                 ORDER BY ordinal_position"
            )
        ),
        rows(&[
            ["name", "text", "C"],
            ["data", "bytea", "-"],
            ["schema_version", "integer", "-"],
            ["version", "bigint", "-"],
            ["key", "text", "-"],
            ["value", "jsonb", "-"],
        ])
    );
    let hello = Counter {
        label: "x".into(),
        hits: 3,
    };
    counters.put("Hello World/1", &hello).unwrap();
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT name, value->>'label', value->'hits' FROM \"{table}\" \
                 WHERE key = 'Hello World/1'"
            )
        ),
        rows(&[["~48ello~20~57orld~2f1", "x", "3"]])
    );
    // Text cannot hold NUL: such keys have no `key`, and a string with NUL in the data no
    // `value`; the entries are whole all the same.
    for (key, label) in [("\0", "\0"), ("a\0b", "ab")] {
        let counter = Counter {
            label: label.into(),
            hits: 1,
        };
        counters.put(key, &counter).unwrap();
        assert_eq!(counters.get(key).unwrap(), Some(counter));
    }
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT name, value->>'label' FROM \"{table}\" WHERE key IS NULL ORDER BY name"
            )
        ),
        rows(&[["a~00b", "ab"], ["~00", "NULL"]])
    );
    // A long key: a hashed name, the key in its column.
    counters.put(&"k".repeat(300), &hello).unwrap();
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT left(name, 2), length(name), value->>'label' FROM \"{table}\" \
                 WHERE key = repeat('k', 300)"
            )
        ),
        rows(&[["~~", "66", "x"]])
    );

    // Bytes come back exactly as put, whatever jsonb makes of them (it sorts members, keeps
    // the last of two, and spells numbers its way).
    let odd: &[u8] = br#"{ "version" : 1 , "key" : "odd" , "data" : {"b": 1, "a": [1, 2.50], "b": 2, "n": 123456789012345678901234567890} }"#;
    backend
        .put(
            "odd",
            Entry {
                key: "odd",
                bytes: odd,
                version: 1,
            },
            &Condition::Always,
        )
        .unwrap();
    assert_eq!(backend.get("odd").unwrap().unwrap().bytes, odd);
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT value->>'b', value->'a'->>1, value->>'n', schema_version \
                 FROM \"{table}\" WHERE key = 'odd'"
            )
        ),
        rows(&[["2", "2.50", "123456789012345678901234567890", "1"]])
    );
    // Bytes that are no plain envelope, or whose data jsonb cannot hold: stored, without a
    // `value`.
    let unshown: [(&str, &[u8]); 7] = [
        (
            "framed",
            b"\x89pst\r\n\x1a\n\x01\x00\x00\x00\x01\x00\x00\x00",
        ),
        ("zero", br#"{"version":1,"data":"a\u0000b"}"#),
        ("tiny", br#"{"version":1,"data":[1e-20000]}"#),
        ("surrogate", br#"{"version":1,"data":"\ud800"}"#),
        ("array", b"[1,2]"),
        ("unversioned", br#"{"data":1}"#),
        ("twice", br#"{"version":1,"data":1,"data":2}"#),
    ];
    for (name, bytes) in unshown {
        let entry = Entry {
            key: name,
            bytes,
            version: 1,
        };
        backend.put(name, entry, &Condition::Always).unwrap();
        assert_eq!(backend.get(name).unwrap().unwrap().bytes, bytes, "{name}");
    }
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT key, value IS NULL FROM \"{table}\" \
                 WHERE name IN ('framed', 'zero', 'tiny', 'surrogate', 'array', 'unversioned', \
                 'twice') ORDER BY name"
            )
        ),
        rows(&[
            ["array", "t"],
            ["framed", "t"],
            ["surrogate", "t"],
            ["tiny", "t"],
            ["twice", "t"],
            ["unversioned", "t"],
            ["zero", "t"],
        ])
    );
    // A rewrite rewrites the columns.
    counters.update("Hello World/1", |c| c.hits += 1).unwrap();
    assert_eq!(
        psql(
            &server,
            &format!("SELECT value->'hits' FROM \"{table}\" WHERE key = 'Hello World/1'")
        ),
        rows(&[["4"]])
    );
}

#[test]
fn a_table_of_the_earlier_layout_is_upgraded_on_open() {
    let Some(server) = server_and_psql() else {
        return;
    };
    // Entries as persist writes them, copied into a table of the earlier layout.
    let source = Pg::place("upgrade_source");
    let old = Pg::place("upgrade");
    let counters: Collection<Counter> = Pg::open(&server, &source);
    let long = Counter {
        label: "long".into(),
        hits: 1,
    };
    counters.put(&"K".repeat(300), &long).unwrap();
    counters.put("a\0b", &Counter::default()).unwrap();
    let v1: Collection<CounterV1> = Pg::open(&server, &source);
    v1.put(
        "v1",
        &CounterV1 {
            label: "one".into(),
        },
    )
    .unwrap();
    let summed: Collection<Counter> = Collection::with_backend(
        Arc::new(Pg::backend(&server, &source)),
        Options::new().checksum(true),
    );
    let sum = Counter {
        label: "sum".into(),
        hits: 2,
    };
    summed.put("sum", &sum).unwrap();
    let hello = r#"{"version": 2, "key": "Hello World", "data": {"label": "old", "hits": 7}}"#;
    psql(
        &server,
        &format!(
            "CREATE TABLE \"{old}\" (name TEXT PRIMARY KEY, data BYTEA NOT NULL, \
             schema_version INTEGER NOT NULL, version BIGINT NOT NULL); \
             INSERT INTO \"{old}\" SELECT name, data, schema_version, version FROM \"{source}\"; \
             INSERT INTO \"{old}\" VALUES ('~48ello~20~57orld', convert_to('{hello}', 'UTF8'), 2, 5), \
             ('NotAName', '\\x89707374'::bytea, 1, 1)"
        ),
    );

    // Three processes' worth of opens at once: one upgrades, the others wait and find it done.
    let opened: Vec<Postgres> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| Postgres::connect(&server, &old)))
            .collect();
        opens
            .into_iter()
            .map(|open| open.join().unwrap().unwrap())
            .collect()
    });
    let sql = |sql: &str| psql(&server, &sql.replace("{old}", &format!("\"{old}\"")));
    assert_eq!(
        sql(
            "SELECT name, key, value->>'label', value->'hits', version FROM {old} \
             WHERE key = 'Hello World'"
        ),
        rows(&[["~48ello~20~57orld", "Hello World", "old", "7", "5"]])
    );
    // A hashed name's key, from the envelope.
    assert_eq!(
        sql("SELECT value->>'label' FROM {old} WHERE key = repeat('K', 300)"),
        rows(&[["long"]])
    );
    assert_eq!(
        sql(
            "SELECT key, value->>'label', value->'hits', schema_version FROM {old} \
             WHERE key IN ('v1', 'sum') ORDER BY key"
        ),
        rows(&[["sum", "sum", "2", "2"], ["v1", "one", "NULL", "1"]])
    );
    assert_eq!(
        sql("SELECT name, value IS NULL FROM {old} WHERE key IS NULL ORDER BY name"),
        rows(&[["NotAName", "t"], ["a~00b", "f"]])
    );
    assert_eq!(
        sql(&format!(
            "SELECT collation_name FROM information_schema.columns \
             WHERE table_name = '{old}' AND column_name = 'name'"
        )),
        rows(&[["C"]])
    );
    // The rows read as they did: the same bytes, the same tags.
    let stored = opened[0].get("~48ello~20~57orld").unwrap().unwrap();
    assert_eq!(stored.bytes, hello.as_bytes());
    assert_eq!(stored.tag.as_str(), "5");
    let upgraded: Collection<Counter> =
        Collection::with_backend(Arc::new(opened[1].clone()), Options::new());
    assert_eq!(
        upgraded.get("Hello World").unwrap(),
        Some(Counter {
            label: "old".into(),
            hits: 7,
        })
    );
    assert_eq!(upgraded.get("v1").unwrap().unwrap().label, "one");
    assert_eq!(upgraded.get(&"K".repeat(300)).unwrap(), Some(long));
    assert_eq!(upgraded.get("sum").unwrap(), Some(sum));
    upgraded.update("Hello World", |c| c.hits += 1).unwrap();
    assert_eq!(
        // (The row's version was 5: the tag grows, to the server's clock.)
        sql("SELECT value->'hits', version > 1000000 FROM {old} WHERE key = 'Hello World'"),
        rows(&[["8", "t"]])
    );
    let mut names = opened[2].list().unwrap();
    names.sort();
    let scanned: Vec<String> = opened[2]
        .scan("")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(scanned, names);
    assert_eq!(names.len(), 6);
    // Opening it again finds nothing to do.
    drop(Postgres::connect(&server, &old).unwrap());
    assert_eq!(
        sql("SELECT count(*) FROM {old} WHERE key IS NOT NULL"),
        rows(&[["4"]])
    );
}

/// Handles on their own connections putting the same new keys at the same moment all succeed,
/// on a table made by persist and on one whose `key` column an earlier persist made unique (the
/// constraint made the loser of each race fail: `ON CONFLICT (name)` settles `name` only).
#[test]
fn writers_putting_one_new_key_at_once_all_succeed() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let made = Pg::place("racing_keys");
    let unique = Pg::place("racing_keys_unique");
    psql(
        &server,
        &format!(
            "CREATE TABLE \"{unique}\" (name TEXT COLLATE \"C\" PRIMARY KEY, \
             data BYTEA NOT NULL, schema_version INTEGER NOT NULL, version BIGINT NOT NULL, \
             key TEXT UNIQUE, value JSONB)"
        ),
    );
    for place in [&made, &unique] {
        let handles: Vec<Collection<Counter>> = (0..4).map(|_| Pg::open(&server, place)).collect();
        let constraints = psql(
            &server,
            &format!(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = '\"{place}\"'::regclass \
                 AND contype = 'u'"
            ),
        );
        assert_eq!(constraints, rows(&[["0"]]), "{place}");
        let indexed = psql(
            &server,
            &format!(
                "SELECT count(*) FROM pg_indexes WHERE tablename = '{place}' \
                 AND indexdef LIKE '%(key)'"
            ),
        );
        assert_eq!(indexed, rows(&[["1"]]), "{place}");
        // Each writer goes on after a failed put (one stopped would leave the others waiting).
        let start = std::sync::Barrier::new(handles.len());
        let failed: Vec<String> = std::thread::scope(|scope| {
            let writers: Vec<_> = handles
                .iter()
                .enumerate()
                .map(|(writer, handle)| {
                    let start = &start;
                    scope.spawn(move || {
                        let mut failed = Vec::new();
                        for key in 0..200 {
                            start.wait();
                            let value = Counter {
                                label: format!("writer {writer}"),
                                hits: key,
                            };
                            if let Err(error) = handle.put(&format!("key-{key}"), &value) {
                                failed.push(error.to_string());
                            }
                        }
                        failed
                    })
                })
                .collect();
            writers
                .into_iter()
                .flat_map(|writer| writer.join().unwrap())
                .collect()
        });
        assert!(
            failed.is_empty(),
            "{place}: {} failed puts: {failed:?}",
            failed.len()
        );
        assert_eq!(
            psql(
                &server,
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE version > 4) FROM \"{place}\" \
                     WHERE key LIKE 'key-%'"
                )
            ),
            // (Tags are the server's clock in microseconds, not counts of the row's writes.)
            rows(&[["200", "200"]])
        );
    }
}

/// The entry `name` holding `data`.
fn entry(name: &str, data: u32) -> (String, Vec<u8>) {
    let bytes = format!(r#"{{"version":1,"key":"{name}","data":{data}}}"#);
    (name.to_owned(), bytes.into_bytes())
}

/// `bytes` to put under the key `key`.
fn put<'a>(key: &'a str, bytes: &'a [u8]) -> Entry<'a> {
    Entry {
        key,
        bytes,
        version: 1,
    }
}

#[test]
fn a_batch_that_fails_writes_none_of_its_entries() {
    let Some(server) = Pg::server() else { return };
    let backend = Pg::backend(&server, &Pg::place("batch"));
    let (kept, before) = entry("ok-1", 1);
    backend
        .put(&kept, put(&kept, &before), &Condition::Always)
        .unwrap();
    // Text cannot hold NUL: the server refuses the third row.
    let batch: Vec<(String, Vec<u8>)> = ["ok-1", "ok-2", "bad\0", "ok-3"]
        .into_iter()
        .map(|name| entry(name, 2))
        .collect();
    let entries: Vec<(&str, Entry<'_>)> = batch
        .iter()
        .map(|(name, bytes)| (name.as_str(), put(name, bytes)))
        .collect();
    let error = backend.put_many(&entries).unwrap_err();
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
    assert_eq!(backend.list().unwrap(), ["ok-1"]);
    assert_eq!(backend.get("ok-1").unwrap().unwrap().bytes, before);
}

/// The batch's connection is killed (`pg_terminate_backend`) while its transaction runs: the
/// batch is stored whole or not at all (a kill during the commit may leave the client without
/// the outcome), and at least one batch is cut off before its end and leaves nothing.
#[test]
fn a_batch_cut_off_by_a_lost_connection_is_all_or_nothing() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let table = Pg::place("cut");
    let backend = Postgres::connect_with(&server, &table, 1).unwrap();
    let batch: Vec<(String, Vec<u8>)> = (0..4000).map(|n| entry(&format!("e{n:05}"), n)).collect();
    let entries: Vec<(&str, Entry<'_>)> = batch
        .iter()
        .map(|(name, bytes)| (name.as_str(), put(name, bytes)))
        .collect();
    let kill = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL \
         AND query LIKE 'INSERT INTO \"{table}\"%'"
    );
    for attempt in 0..10 {
        let done = AtomicBool::new(false);
        let (result, killed) = std::thread::scope(|scope| {
            let killer = scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if psql(&server, &kill)[0][0] != "0" {
                        return true;
                    }
                }
                false
            });
            let result = backend.put_many(&entries);
            done.store(true, Ordering::Relaxed);
            (result, killer.join().unwrap())
        });
        let stored: usize = psql(&server, &format!("SELECT count(*) FROM \"{table}\""))[0][0]
            .parse()
            .unwrap();
        eprintln!("attempt {attempt}: killed {killed}, {result:?}, {stored} stored");
        assert!(
            stored == 0 || stored == batch.len(),
            "{stored} of {}",
            batch.len()
        );
        if killed && result.is_err() && stored == 0 {
            return;
        }
        psql(&server, &format!("TRUNCATE \"{table}\""));
    }
    panic!("ten batches ran and none was cut off: the test proves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_apply_to_a_postgres_collection() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let table = Pg::place("options");
    let counters: Collection<Counter> = Options::new()
        .checksum(true)
        .postgres(&server, &table)
        .await
        .unwrap();
    let alice = Counter {
        label: "A".into(),
        hits: 1,
    };
    // The async put runs on the caller's executor (the backend's native put), the sync one on
    // the backend's threads: both write the key and the value.
    counters.put_async("alice", alice.clone()).await.unwrap();
    counters.put("bob", &Counter::default()).unwrap();
    assert_eq!(counters.get_async("alice").await.unwrap(), Some(alice));
    assert_eq!(
        psql(
            &server,
            &format!(
                "SELECT key, position('\"crc32c\":\"' in convert_from(data, 'UTF8')) > 0, \
                 value->>'label' FROM \"{table}\" ORDER BY key"
            )
        ),
        rows(&[["alice", "t", "A"], ["bob", "t", ""]])
    );
}

#[test]
fn async_calls_work_under_an_executor_without_tokio() {
    let Some(server) = Pg::server() else { return };
    let place = Pg::place("no_tokio");
    let counters: Collection<Counter> =
        common::block_on(Options::new().postgres(&server, &place)).unwrap();
    let counter = Counter {
        label: "x".into(),
        hits: 3,
    };
    // Native operations: their connection's I/O runs on the backend's own runtime.
    common::block_on(counters.put_async("x", counter.clone())).unwrap();
    assert_eq!(
        common::block_on(counters.get_async("x")).unwrap(),
        Some(counter)
    );
}

#[test]
fn a_watch_sees_the_writes_of_two_other_processes() {
    let resyncs = remote::watch_sees_two_writers::<Pg>("watch", Duration::from_secs(1), |_| {});
    assert_eq!(resyncs.unwrap_or(0), 0, "no connection was lost");
}

/// The listener's connection killed by the server in the middle of a stream of writes: the
/// watch says Resync, listens again, and ends on the exact state.
#[test]
fn a_killed_listener_connection_is_a_resync_and_loses_nothing() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let place = Pg::place("killed");
    let channel = Pg::backend(&server, &place).channel().to_owned();
    let killed = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&killed);
    let resyncs =
        remote::watch_sees_two_writers::<Pg>("killed", Duration::from_secs(1), move |server| {
            let rows = psql(
                server,
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE query = 'LISTEN {channel}'"
                ),
            );
            assert_eq!(rows, [["t"]], "one listener of {channel} is terminated");
            seen.store(true, Ordering::SeqCst);
        });
    assert!(killed.load(Ordering::SeqCst));
    assert!(resyncs.unwrap() >= 1, "the lost connection is told");
}

#[test]
fn live_handles_in_two_processes_lose_no_increment_immediate() {
    remote::live_increments::<Pg>("immediate");
}

#[test]
fn live_handles_in_two_processes_lose_no_increment_coalesce() {
    remote::live_increments::<Pg>("coalesce");
}

#[cfg(feature = "cache")]
#[test]
fn a_cached_handle_sees_another_process_put_and_delete() {
    remote::cached_handle_sees_another_process::<Pg>();
}

/// The connections listening on `channel`, as the server counts them.
fn listeners(server: &str, channel: &str) -> usize {
    let rows = psql(
        server,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN {channel}'"),
    );
    rows[0][0].parse().unwrap()
}

/// Every feed of a table in one backend (watches, live entries, a cache) shares one listening
/// connection, made with the first and closed with the last: a live value per user does not
/// take a connection per user (the server's 100 would run out).
#[test]
fn the_feeds_of_a_table_share_one_listening_connection() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let place = Pg::place("one_listener");
    let backend = Arc::new(Pg::backend(&server, &place));
    let channel = backend.channel().to_owned();
    let counters: Collection<Counter> =
        Collection::with_backend(backend, Options::new().cache(1000, Duration::from_secs(60)));
    let watches: Vec<_> = (0..150)
        .map(|n| counters.watch(&format!("user-{n}/")).unwrap())
        .collect();
    let lives: Vec<_> = (0..150)
        .map(|n| counters.live(&format!("user-{n}")).unwrap())
        .collect();
    assert_eq!(listeners(&server, &channel), 1);
    // Each still hears its own keys.
    lives[7].update(|counter| counter.hits = 7).unwrap();
    counters.put("user-9/x", &Counter::default()).unwrap();
    let mut watch = counters.watch("user-9/").unwrap();
    counters.put("user-9/y", &Counter::default()).unwrap();
    let told = watch.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(
        matches!(told, persist::WatchEvent::Put { ref key, .. } if key == "user-9/y"),
        "{told:?}"
    );
    drop((watches, lives, watch, counters));
    let started = std::time::Instant::now();
    while listeners(&server, &channel) != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the listener outlived its feeds"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy to `to` that can go silent: the server's side of every connection is closed,
/// the client's is kept open and told nothing (a route dropped, a load balancer that forgot
/// the connection). Returns its port and the switch.
fn proxy(to: std::net::SocketAddr) -> (u16, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&silent);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(upstream) = std::net::TcpStream::connect(to) else {
                continue;
            };
            for (from, into) in [
                (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                (upstream.try_clone().unwrap(), client),
            ] {
                let (silent, upstream) = (Arc::clone(&switch), upstream.try_clone().unwrap());
                std::thread::spawn(move || copy_until_silent(from, into, &upstream, &silent));
            }
        }
    });
    (port, silent)
}

fn copy_until_silent(
    mut from: std::net::TcpStream,
    mut into: std::net::TcpStream,
    upstream: &std::net::TcpStream,
    silent: &AtomicBool,
) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buffer = [0_u8; 16 * 1024];
    loop {
        if silent.load(Ordering::SeqCst) {
            // The server's side is shut; the client's stays open and is told nothing, as a
            // dropped route would leave it (held by this thread until the process ends).
            let _ = upstream.shutdown(std::net::Shutdown::Both);
            let _kept = (from, into);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        match from.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => {
                if into.write_all(&buffer[..read]).is_err() {
                    return;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The listener's connection lost without a word (through a proxy that goes silent): the
/// heartbeat finds it, the watch is told an error and `Resync`, and a put made meanwhile is in
/// the state that follows. (TCP keepalive would take two hours to notice.)
#[test]
fn a_silently_lost_listener_connection_is_found_and_told() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let port = server
        .split_whitespace()
        .find_map(|part| part.strip_prefix("port="))
        .unwrap_or("5432")
        .parse::<u16>()
        .unwrap();
    let (proxied, silent) = proxy(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let through = server.replace(&format!("port={port}"), &format!("port={proxied}"));
    let place = Pg::place("silent");
    let watched: Collection<Counter> =
        Collection::with_backend(Arc::new(Pg::backend(&through, &place)), Options::new());
    let direct: Collection<Counter> =
        Collection::with_backend(Arc::new(Pg::backend(&server, &place)), Options::new());
    let mut watch = watched
        .watch_with("", persist::WatchOptions::new().values(true))
        .unwrap();
    silent.store(true, Ordering::SeqCst);
    // (The proxy's threads look at the switch between reads of at most 50 ms.)
    std::thread::sleep(Duration::from_millis(300));
    let value = Counter {
        label: "meanwhile".into(),
        hits: 1,
    };
    direct.put("k", &value).unwrap();
    // Found within the heartbeat (5 s) and its wait (5 s), and told once connecting again
    // has failed (10 s): an error, not a silent gap.
    let started = std::time::Instant::now();
    let mut errors = 0;
    while errors == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing told of the lost connection in 60 s"
        );
        match watch.next_timeout(Duration::from_secs(1)) {
            Some(Err(error)) => {
                eprintln!("told after {:?}: {error}", started.elapsed());
                errors += 1;
            }
            Some(Ok(event)) => panic!("an event through a silent connection: {event:?}"),
            None => {}
        }
    }
}

/// The usual deployment: a migration role owns the table, and the application's role has the
/// table's rights alone (no `CREATE` on the schema, no ownership). It opens the table as it is
/// and reads, writes, updates (compare-and-swap), deletes and watches.
#[test]
fn a_role_with_the_tables_rights_alone_opens_writes_and_watches() {
    let Some(server) = server_and_psql() else {
        return;
    };
    let place = Pg::place("granted");
    let role = format!("app_{}", std::process::id());
    // Made by the owner, with its trigger.
    drop(Pg::backend(&server, &place));
    psql(
        &server,
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON \"{place}\" TO {role}"
        ),
    );
    let as_app = server.replace("user=postgres", &format!("user={role}"));
    let counters: Collection<Counter> =
        Collection::with_backend(Arc::new(Pg::backend(&as_app, &place)), Options::new());
    let mut watch = counters.watch("").unwrap();
    counters.put("k", &Counter::default()).unwrap();
    counters.update("k", |counter| counter.hits += 1).unwrap();
    assert_eq!(counters.get("k").unwrap().unwrap().hits, 1);
    let told = watch.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(
        matches!(told, persist::WatchEvent::Put { ref key, .. } if key == "k"),
        "{told:?}"
    );
    assert!(counters.delete("k").unwrap());
    psql(&server, &format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}
