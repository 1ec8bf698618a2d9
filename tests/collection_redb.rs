//! `Collection<T>` on a redb database (`persist::backend::Redb`): the shared backend suite of
//! `tests/remote/mod.rs` (an embedded database needs no server: each test's database is a file
//! of its own), and what is the embedded store's own: batches all or nothing across a SIGKILL,
//! scans by prefix, a second process waiting for the file, the file itself.
#![cfg(feature = "redb")]

mod common;
// `processes_lose_nothing` and `migration_racing_a_newer_writer` need a store that several
// processes have open at once and whose writes can conflict: this one runs their
// `processes_take_turns` and `migration_beside_a_newer_writer`.
#[allow(dead_code)]
mod remote;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use persist::backend::{Backend, Condition, Entry, Redb, Written};
use persist::{Collection, Durability, Error, FileKind, Options};
use remote::{Counter, CounterV1, Store};

struct Embedded;

/// The directory of this test process's databases (a child process is handed its parent's).
fn databases() -> String {
    if let Ok(dir) = std::env::var(Embedded::VARIABLE) {
        return dir;
    }
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("persist-redb-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep()
    })
    .display()
    .to_string()
}

impl Store for Embedded {
    const VARIABLE: &'static str = "PERSIST_TEST_REDB_DIR";
    const SCRIPT: &'static str = "(none: the database is a file)";
    type Backend = Redb;

    fn place(test: &str) -> String {
        format!("{test}-{}.redb", std::process::id())
    }

    fn backend(server: &str, place: &str) -> Redb {
        Redb::open(Path::new(server).join(place)).unwrap()
    }

    /// Always here: the directory the databases go in.
    fn server() -> Option<String> {
        Some(databases())
    }
}

fn entry(bytes: &[u8]) -> Entry<'_> {
    Entry {
        key: "k",
        bytes,
        version: 1,
    }
}

/// A database file of its own for `test`, removed when the value is dropped.
fn fresh(test: &str) -> Fresh {
    Fresh(Path::new(&databases()).join(Embedded::place(test)))
}

struct Fresh(PathBuf);

impl std::ops::Deref for Fresh {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Fresh {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Fresh {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn get_put_update_delete_and_keys() {
    remote::basics::<Embedded>();
}

#[test]
fn conditional_writes_are_compare_and_swap() {
    remote::conditional_writes::<Embedded>();
}

#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    remote::child::<Embedded>();
}

#[test]
fn processes_updating_one_key_lose_nothing() {
    remote::processes_take_turns::<Embedded>();
}

#[test]
fn a_migration_beside_a_newer_writer_loses_nothing() {
    remote::migration_beside_a_newer_writer::<Embedded>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_twins() {
    let counters = Embedded::open(&databases(), &Embedded::place("async"));
    remote::async_twins(counters).await;
}

#[test]
fn entries_come_back_exactly_and_tags_are_never_reused() {
    let db = fresh("exact");
    let backend = Redb::open(&*db).unwrap();
    let bytes: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    let Written::Done(first) = backend.put("a", entry(&bytes), &Condition::Absent).unwrap() else {
        panic!("absent");
    };
    let stored = backend.get("a").unwrap().unwrap();
    assert_eq!(stored.bytes, bytes);
    assert_eq!(stored.tag, first);
    assert_eq!(backend.read("a").unwrap().unwrap(), bytes);
    assert_eq!(backend.get("b").unwrap(), None);
    assert_eq!(backend.read("b").unwrap(), None);
    // Deleted and written again: a new tag, so a writer holding the old one conflicts.
    assert!(backend.delete("a", &Condition::Always).unwrap());
    let Written::Done(again) = backend.put("a", entry(b""), &Condition::Absent).unwrap() else {
        panic!("absent again");
    };
    assert_ne!(again, first);
    assert_eq!(backend.get("a").unwrap().unwrap().bytes, b"");
    assert_eq!(
        backend
            .put("a", entry(b"x"), &Condition::Matches(first.clone()))
            .unwrap(),
        Written::Conflict
    );
    backend.clear().unwrap();
    let Written::Done(after_clear) = backend.put("a", entry(b"y"), &Condition::Absent).unwrap()
    else {
        panic!("after clear");
    };
    assert!(![first, again.clone()].contains(&after_clear));
    assert!(!backend.delete("a", &Condition::Matches(again)).unwrap());
    assert!(!backend.delete("a", &Condition::Absent).unwrap());
    assert!(!backend.delete("missing", &Condition::Always).unwrap());
    assert!(
        backend
            .delete("a", &Condition::Matches(after_clear))
            .unwrap()
    );
}

#[test]
fn reopened_the_database_holds_everything_and_one_process_shares_it() {
    let path = fresh("reopen");
    let first = Redb::open(&path).unwrap();
    // A second open in the same process shares the database (the file lock would refuse a
    // second database on it).
    let second = Redb::open(&path).unwrap();
    first.put("a", entry(b"1"), &Condition::Always).unwrap();
    assert_eq!(second.get("a").unwrap().unwrap().bytes, b"1");
    // Commits without a sync are there at once, and kept when the database closes.
    let unsynced = second.durability(Durability::None);
    unsynced.put("b", entry(b"2"), &Condition::Always).unwrap();
    assert_eq!(first.get("b").unwrap().unwrap().bytes, b"2");
    drop((first, unsynced));
    let reopened = Redb::open(&path).unwrap();
    assert_eq!(reopened.list().unwrap(), ["a", "b"]);
    assert_eq!(reopened.get("b").unwrap().unwrap().bytes, b"2");
}

#[test]
fn the_file_is_private_and_errors_name_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/deeper/db.redb");
    let backend = Redb::open(&path).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600 & !umask());
    assert_eq!(mode(path.parent().unwrap()), 0o700 & !umask());
    assert_eq!(backend.root(), path);
    assert_eq!(backend.locate("k"), path.join("k"));
    assert_eq!(backend.path(), path);
    assert!(format!("{backend:?}").contains("db.redb"));

    // A directory and a FIFO are refused, and left alone.
    let error = Redb::open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, Error::NotRegularFile { path, kind: FileKind::Directory } if path == dir.path()),
        "{error:?}"
    );
    let fifo = dir.path().join("fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let error = Redb::open(&fifo).unwrap_err();
    assert!(
        matches!(&error, Error::NotRegularFile { path, kind: FileKind::Fifo } if *path == fifo),
        "{error:?}"
    );
    assert!(error.to_string().contains("FIFO"), "{error}");

    // A file that is no database is an error naming it, and is not overwritten.
    let other = dir.path().join("state.json");
    std::fs::write(&other, br#"{"version":1,"data":{}}"#.repeat(200)).unwrap();
    let error = Redb::open(&other).unwrap_err();
    assert_eq!(error.path(), other, "{error:?}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        br#"{"version":1,"data":{}}"#.repeat(200)
    );

    // A database file that cannot be created: the error names its creation, not a temporary
    // file's, and leaves nothing.
    let refused = dir.path().join("refused.redb");
    let fault = persist::testing::inject_fault(dir.path(), persist::IoOp::CreateTemp, libc::EIO, 1);
    let error = Redb::open(&refused).unwrap_err();
    assert!(fault.hits() > 0);
    drop(fault);
    assert!(
        matches!(&error, Error::Io { path, op: persist::IoOp::Create, .. } if *path == refused),
        "{error:?}"
    );
    assert!(error.to_string().contains("create the file"), "{error}");
    assert!(!refused.exists());
}

/// This process's umask, as Linux reports it.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("Umask:"))
        .unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn collections_migrate_and_layer_on_the_database() {
    let path = fresh("layers");
    let old = Collection::<CounterV1>::with_backend(
        Arc::new(Redb::open(&path).unwrap()),
        Options::new().checksum(true),
    );
    old.put("a", &CounterV1 { label: "A".into() }).unwrap();
    old.put("b", &CounterV1 { label: "B".into() }).unwrap();
    let counters = Collection::<Counter>::with_backend(
        Arc::new(Redb::open(&path).unwrap()),
        Options::new().checksum(true),
    );
    assert_eq!(
        counters.get("a").unwrap().unwrap(),
        Counter {
            label: "A".into(),
            hits: 0
        }
    );
    let report = counters.migrate_all().unwrap();
    assert_eq!((report.total, report.migrated, report.raced), (2, 2, 0));
    assert!(report.failed.is_empty());
    assert_eq!(counters.migrate_all().unwrap().current, 2);
    // Updates from threads: each runs inside one write transaction, none is lost.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    counters.update("b", |c| c.hits += 1).unwrap();
                }
            });
        }
    });
    assert_eq!(counters.get("b").unwrap().unwrap().hits, 100);
    assert_eq!(
        counters.keys_with_prefix("").unwrap().sorted().unwrap(),
        ["a", "b"]
    );
}

/// The names `scan(prefix)` must give: those of `all` that begin with it, in order.
fn expected<'a>(all: &'a BTreeSet<String>, prefix: &str) -> Vec<&'a str> {
    all.iter()
        .filter(|name| name.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

#[test]
fn prefix_scans_with_hostile_names() {
    let db = fresh("scan");
    let backend = Redb::open(&*db).unwrap().durability(Durability::None);
    let mut all: BTreeSet<String> = [
        "a",
        "a-",
        "a_",
        "a~",
        "a~~",
        "a~2f",
        "ab",
        "a0",
        "b",
        "~",
        "~~",
        "-",
        "_",
        "0",
        "é",
        "é~",
        "\u{7f}",
        "\u{10ffff}",
        "a\u{0}",
        "a\u{0}b",
        "con",
        "~63on",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    all.insert("a".repeat(200));
    all.insert("z".repeat(200));
    all.insert(format!("{}b", "a".repeat(199)));
    // 1,111 names begin with `p1`: a scan of them crosses page boundaries.
    all.extend((0..2_500).map(|n| format!("p{n}")));
    let names: Vec<&String> = all.iter().collect();
    let batch: Vec<(&str, Entry<'_>)> = names
        .iter()
        .map(|name| (name.as_str(), entry(name.as_bytes())))
        .collect();
    backend.put_many(&batch).unwrap();

    let mut prefixes: BTreeSet<String> = all
        .iter()
        .flat_map(|name| {
            name.char_indices()
                .map(|(at, _)| name[..at].to_owned())
                .take(4)
        })
        .collect();
    prefixes.extend(
        [
            "",
            "p1",
            "p19",
            "p2499",
            "p25",
            "q",
            "zz",
            "\u{10ffff}",
            "a\u{0}",
            "a".repeat(200).as_str(),
            "~6",
        ]
        .map(String::from),
    );
    for prefix in &prefixes {
        let scanned: Vec<String> = backend.scan(prefix).unwrap().map(Result::unwrap).collect();
        assert_eq!(scanned, expected(&all, prefix), "prefix {prefix:?}");
    }
    assert_eq!(backend.scan("p1").unwrap().count(), 1_111);
    let mut listed = backend.list().unwrap();
    listed.sort();
    assert_eq!(listed, all.iter().cloned().collect::<Vec<_>>());

    // Written while a scan runs: every name still comes once, in order, and the iterator
    // outlives the backend.
    let mut scan = backend.scan("p").unwrap();
    let first = scan.next().unwrap().unwrap();
    for n in 0..1_500 {
        backend
            .put(&format!("p{n}x"), entry(b"new"), &Condition::Always)
            .unwrap();
    }
    drop(backend);
    let rest: Vec<String> = scan.map(Result::unwrap).collect();
    assert!(rest.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(rest.iter().all(|name| *name > first));
    for name in expected(&all, "p").into_iter().skip(1) {
        assert!(rest.iter().any(|listed| listed == name), "{name} missing");
    }
}

#[test]
fn a_scan_of_100_000_names() {
    let db = fresh("many");
    let backend = Redb::open(&*db).unwrap().durability(Durability::None);
    let names: Vec<String> = (0..100_000).map(|n| format!("k{n:06}")).collect();
    let bytes = [b'x'; 292];
    for chunk in names.chunks(10_000) {
        let batch: Vec<(&str, Entry<'_>)> = chunk
            .iter()
            .map(|name| (name.as_str(), entry(&bytes)))
            .collect();
        backend.put_many(&batch).unwrap();
    }
    let mut count = 0;
    for (name, expected) in backend.scan("").unwrap().zip(&names) {
        assert_eq!(&name.unwrap(), expected);
        count += 1;
    }
    assert_eq!(count, 100_000);
    assert_eq!(
        backend
            .scan("k0999")
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        names[99_900..]
    );
    assert_eq!(backend.list().unwrap().len(), 100_000);
    let counters = Collection::<Counter>::with_backend(Arc::new(backend), Options::new());
    assert_eq!(counters.keys().unwrap().count(), 100_000);
}

/// The variable naming the database of [`batch_child`].
const BATCH_DB: &str = "PERSIST_TEST_REDB_BATCH";
const BATCH: usize = 2_000;

#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn batch_child() {
    use std::io::Write;
    let Ok(path) = std::env::var(BATCH_DB) else {
        return;
    };
    let backend = Redb::open(path).unwrap();
    let bytes = [b'v'; 292];
    let mut stdout = std::io::stdout();
    for batch in 0.. {
        let names: Vec<String> = (0..BATCH).map(|n| format!("b{batch:05}-{n:05}")).collect();
        let entries: Vec<(&str, Entry<'_>)> = names
            .iter()
            .map(|name| (name.as_str(), entry(&bytes)))
            .collect();
        backend.put_many(&entries).unwrap();
        writeln!(stdout, "committed {batch}").unwrap();
        stdout.flush().unwrap();
    }
}

/// A process killed (SIGKILL) while it commits batch after batch: each batch is stored whole or
/// not at all, every batch it was told was stored is there, and meanwhile another process's
/// open waits for the file and then gives up with a lock timeout naming it.
#[test]
fn a_batch_is_all_or_nothing_across_a_sigkill() {
    for round in 0..5 {
        let path = fresh(&format!("killed-{round}"));
        let mut child = common::child("batch_child", &[(BATCH_DB, &path)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The batches the child was told were stored (the test harness writes lines too).
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .filter_map(|line| {
                line.unwrap()
                    .strip_prefix("committed ")
                    .map(|batch| batch.parse::<usize>().unwrap())
            });
        let mut acknowledged = None;
        for _ in 0..2 {
            acknowledged = lines.next();
        }
        if round == 0 {
            let error = Redb::open_waiting(&path, Some(Duration::from_millis(200))).unwrap_err();
            assert!(
                matches!(&error, Error::LockTimeout { path: at, .. } if *at == *path),
                "{error:?}"
            );
            // `Options::redb` waits for the options' lock timeout.
            let started = std::time::Instant::now();
            let error = Options::new()
                .lock_timeout(Some(Duration::from_millis(300)))
                .redb::<Counter>(&path)
                .unwrap_err();
            assert!(
                matches!(&error, Error::LockTimeout { path: at, .. } if *at == *path),
                "{error:?}"
            );
            assert!(started.elapsed() >= Duration::from_millis(300));
        }
        // Somewhere in a later batch (a batch takes some milliseconds).
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 20;
        std::thread::sleep(Duration::from_millis(u64::from(jitter)));
        child.kill().unwrap();
        child.wait().unwrap();
        for batch in lines {
            acknowledged = Some(batch);
        }
        let acknowledged = acknowledged.unwrap();

        let backend = Redb::open(&path).unwrap();
        let mut batches = std::collections::BTreeMap::<usize, usize>::new();
        for name in backend.scan("b").unwrap() {
            let name = name.unwrap();
            *batches.entry(name[1..6].parse().unwrap()).or_default() += 1;
        }
        eprintln!(
            "round {round}: {acknowledged} acknowledged, batches stored: {}",
            batches.len()
        );
        assert!(batches.values().all(|&count| count == BATCH), "{batches:?}");
        assert!(batches.keys().copied().eq(0..batches.len()), "{batches:?}");
        assert!(batches.len() > acknowledged, "{batches:?}");
        assert!(batches.len() <= acknowledged + 2, "{batches:?}");
    }
}

/// The shorthands: `Collection::redb` with the default options, `Options::redb` with others
/// (a checksum layer reaches the database).
#[test]
fn the_shorthands_open_the_database_with_their_options() {
    let path = fresh("shorthands");
    let counters: Collection<Counter> = Collection::redb(&path).unwrap();
    let counter = Counter {
        label: "A".into(),
        hits: 1,
    };
    counters.put("a", &counter).unwrap();
    drop(counters);
    let checked: Collection<Counter> = Options::new()
        .checksum(true)
        .durability(Durability::None)
        .redb(&path)
        .unwrap();
    assert_eq!(checked.get("a").unwrap(), Some(counter.clone()));
    checked.put("b", &counter).unwrap();
    // Written with a checksum: the stored bytes say so.
    let stored = Redb::open(&path).unwrap().get("b").unwrap().unwrap().bytes;
    assert!(
        String::from_utf8_lossy(&stored).contains("crc32c"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
}

/// An entry the database keeps without its head is read where it lies when it is plain and at
/// the type's version, and built whole and read the general way otherwise: both ways give the
/// same values and the same errors, each naming the entry.
#[test]
fn entries_kept_without_their_head_read_as_the_whole_entry_would() {
    let path = fresh("headless");
    let backend = Arc::new(Redb::open(&path).unwrap());
    let counters = Collection::<Counter>::with_backend(backend.clone(), Options::new());
    let put = |key: &str, bytes: &str| {
        let entry = Entry {
            key,
            bytes: bytes.as_bytes(),
            version: 2,
        };
        backend.put(key, entry, &Condition::Always).unwrap();
        // The bytes come back exactly, whichever form the row took.
        assert_eq!(backend.read(key).unwrap().unwrap(), bytes.as_bytes());
    };
    put(
        "now",
        r#"{"version":2,"key":"now","data":{"label":"n","hits":3}}"#,
    );
    assert_eq!(
        counters.get("now").unwrap(),
        Some(Counter {
            label: "n".into(),
            hits: 3
        })
    );
    // An older version is migrated.
    put("old", r#"{"version":1,"key":"old","data":{"label":"o"}}"#);
    assert_eq!(counters.get("old").unwrap().unwrap().label, "o");
    // A checksum member after the data is verified: a wrong one is damage.
    put(
        "sum",
        r#"{"version":2,"key":"sum","data":{"label":"s","hits":1},"crc32c":"00000000"}"#,
    );
    let error = counters.get("sum").unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("sum"), "{error}");
    // Trailing bytes, a value of the wrong type, a cut entry: errors naming the entry.
    for (key, bytes) in [
        (
            "tail",
            r#"{"version":2,"key":"tail","data":{"label":"t","hits":1}} x"#,
        ),
        (
            "type",
            r#"{"version":2,"key":"type","data":{"label":5,"hits":1}}"#,
        ),
        ("cut", r#"{"version":2,"key":"cut","data":{"label":"c","#),
    ] {
        put(key, bytes);
        let error = counters.get(key).unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{key}: {error:?}");
        assert!(
            error
                .to_string()
                .contains(&*backend.locate(key).to_string_lossy()),
            "{key}: {error}"
        );
    }
    // A newer version is refused as such.
    put("new", r#"{"version":9,"key":"new","data":{}}"#);
    assert!(matches!(
        counters.get("new").unwrap_err(),
        Error::FutureVersion { found: 9, .. }
    ));
    // A key the name does not stand for is not kept headless, and is refused.
    put(
        "other",
        r#"{"version":2,"key":"someone else","data":{"label":"x","hits":0}}"#,
    );
    assert!(matches!(
        counters.get("other").unwrap_err(),
        Error::Corrupt { .. }
    ));
    // Nothing stored: nothing lent.
    assert!(
        !backend
            .read_with("missing", &mut |_| panic!("lent"))
            .unwrap()
    );
}
