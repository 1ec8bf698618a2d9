//! Scans of a collection: `keys`, `keys_with_prefix`, `iter_prefix` and their async streams, on
//! the local directory and in memory, with keys chosen to trip a scan over escaped names.
//! (PostgreSQL and S3 run the same checks in `tests/collection_postgres.rs` and
//! `tests/collection_s3.rs`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use persist::{Collection, Options, Persisted};
use serde::{Deserialize, Serialize};

/// Counts the bytes live on the heap and the peak since the last reset, to show that a
/// streaming scan does not hold every key.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Note {
    text: String,
}

/// Keys whose names are escapes of one another's, device names, long (hashed) keys, and bytes
/// that sort differently escaped.
fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "a",
        "a~",
        "a~b",
        "a~7e",
        "~",
        "~7e",
        "~7",
        "~~",
        "A",
        "Ab",
        "aB",
        "ab",
        "a b",
        "a/b",
        "a.b",
        "con",
        "con1",
        "co",
        "cons",
        "CON",
        "aux",
        "com1",
        "com10",
        "caf\u{e9}",
        "café2",
        "日本",
        "日本語",
        "\u{0}",
        "\u{0}a",
        "-",
        "_",
        "0",
        "z",
        "~61",
    ]
    .iter()
    .map(|key| key.to_string())
    .collect();
    // Names over 200 bytes are hashed: the key is read from the entry.
    keys.push(format!("a{}", "Z".repeat(300)));
    keys.push(format!("co{}", "n".repeat(300)));
    keys.push(format!("~{}", "~".repeat(100)));
    keys.push("k".repeat(1024));
    keys
}

/// The prefixes every scan is checked with.
fn prefixes() -> Vec<String> {
    let mut prefixes: Vec<String> = [
        "", "a", "a~", "a~7", "~", "~7", "~7e", "~~", "A", "c", "co", "con", "con1", "CO", "日",
        "日本", "caf", "\u{0}", "k", "zz", "-", "a ", "com1",
    ]
    .iter()
    .map(|prefix| prefix.to_string())
    .collect();
    prefixes.push(format!("a{}", "Z".repeat(250)));
    prefixes.push("k".repeat(1024));
    prefixes
}

/// Every key of `collection` under every prefix is exactly the keys with that prefix, each
/// once, through the sync iterator and the async stream, and `iter_prefix` reads their values.
fn scans_find_exactly(collection: &Collection<Note>, what: &str) {
    let keys = hostile_keys();
    let notes: Vec<Note> = keys.iter().map(|key| Note { text: key.clone() }).collect();
    collection.put_many(keys.iter().zip(&notes)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for prefix in prefixes() {
        let expected: BTreeSet<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
        let listed: Vec<String> = collection
            .keys_with_prefix(&prefix)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "{what} {prefix:?}: a key twice");
        assert_eq!(unique, expected, "{what} {prefix:?}");

        let entries: Vec<(String, Note)> = collection
            .iter_prefix(&prefix)
            .unwrap()
            .map(|(key, note)| (key, note.unwrap()))
            .collect();
        assert_eq!(entries.len(), expected.len(), "{what} {prefix:?}");
        for (key, note) in &entries {
            assert_eq!(&note.text, key, "{what}");
        }

        let streamed: BTreeSet<String> = runtime.block_on(async {
            let mut stream = collection.keys_with_prefix_async(prefix.clone());
            let mut streamed = BTreeSet::new();
            while let Some(key) = stream.next().await {
                assert!(streamed.insert(key.unwrap()), "{what} {prefix:?}: twice");
            }
            streamed
        });
        assert_eq!(streamed.iter().collect::<BTreeSet<_>>(), expected, "{what}");
    }
    let all = collection.keys().unwrap().sorted().unwrap();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(all, sorted, "{what}");
    let values = runtime.block_on(async {
        let mut stream = collection.iter_prefix_async("a~");
        let mut values = Vec::new();
        while let Some((key, note)) = stream.next().await {
            values.push((key, note.unwrap().text));
        }
        values
    });
    let mut values: Vec<String> = values
        .into_iter()
        .map(|(key, text)| {
            assert_eq!(key, text);
            key
        })
        .collect();
    values.sort();
    assert_eq!(values, ["a~", "a~7e", "a~b"], "{what}");
}

#[test]
fn prefix_scans_with_hostile_keys_on_the_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    scans_find_exactly(&notes, "local");
    // Files persist keeps beside an entry are never listed as keys: an entry of another
    // version leaves a backup, every write a lock file.
    notes.update("a", |note| note.text.push('!')).unwrap();
    assert_eq!(
        notes.keys_with_prefix("a").unwrap().count(),
        hostile_keys().iter().filter(|k| k.starts_with('a')).count()
    );
}

#[test]
fn prefix_scans_with_hostile_keys_in_memory() {
    let notes: Collection<Note> = Collection::memory();
    scans_find_exactly(&notes, "memory");
    // Memory lists in name order: keys of plain letters come in key order.
    let plain: Collection<Note> = Collection::memory();
    for key in ["pear", "apple", "fig", "apricot"] {
        plain.put(key, &Note::default()).unwrap();
    }
    let listed: Vec<String> = plain.keys().unwrap().map(Result::unwrap).collect();
    assert_eq!(listed, ["apple", "apricot", "fig", "pear"]);
}

#[test]
fn a_scan_reads_the_store_as_it_goes() {
    // Keys put after the scan started, past where it is, are found: the scan is no snapshot
    // taken at the start (memory reads a page of 1,000 names at a time).
    let notes: Collection<Note> = Collection::memory();
    for n in 0..1500 {
        notes.put(&format!("k{n:05}"), &Note::default()).unwrap();
    }
    let mut keys = notes.keys().unwrap();
    assert_eq!(keys.next().unwrap().unwrap(), "k00000");
    notes.put("k99999", &Note::default()).unwrap();
    notes.delete("k00001").unwrap();
    let rest: Vec<String> = keys.map(Result::unwrap).collect();
    assert_eq!(rest.last().unwrap(), "k99999");
    assert_eq!(rest.len(), 1500);
}

#[test]
fn a_cleared_collection_scans_empty() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path().join("notes")).unwrap();
    notes.put("a", &Note::default()).unwrap();
    // The collection's directory is held open: removing its entries leaves an empty scan.
    notes.clear().unwrap();
    assert_eq!(notes.keys().unwrap().count(), 0);
    assert_eq!(notes.keys_with_prefix("a").unwrap().count(), 0);
}

#[test]
fn streaming_100_000_keys_holds_a_shard_not_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().durability(persist::Durability::None);
    let notes: Collection<Note> = options.collection(dir.path()).unwrap();
    let note = Note::default();
    let total: usize = 100_000;
    for chunk in (0..total).collect::<Vec<usize>>().chunks(10_000) {
        let keys: Vec<String> = chunk.iter().map(|n| format!("note-{n:06}")).collect();
        notes.put_many(keys.iter().map(|key| (key, &note))).unwrap();
    }
    // Measured from here: the keys as a Vec would be 100,000 Strings (24 bytes each plus their
    // 11 bytes, over 3 MB with the allocator's rounding); a scan holds one shard's names.
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut count = 0;
    let mut last_shard_total = 0usize;
    for key in notes.keys().unwrap() {
        let key = key.unwrap();
        assert!(key.starts_with("note-"));
        last_shard_total += key.len();
        count += 1;
    }
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(count, total);
    assert!(last_shard_total > 1_000_000);
    eprintln!("streaming {total} keys: peak {peak} bytes above the start");
    assert!(
        peak < 500_000,
        "a scan of {total} keys held {peak} bytes at its peak"
    );
    // Sorted needs them all: the same listing collected holds every key.
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let before = LIVE.load(Ordering::Relaxed);
    let sorted = notes.keys().unwrap().sorted().unwrap();
    assert_eq!(sorted.len(), total);
    assert!(PEAK.load(Ordering::Relaxed) - before > 2_000_000);
}
