//! Change feeds: `Collection::watch` on memory and on the local directory (writers in other
//! processes, hostile keys, a reader that falls behind, the async stream), and the cache kept
//! coherent across processes by the local directory's feed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use persist::{Collection, Options, Persisted, WatchEvent, WatchOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Note {
    writer: u32,
    seq: u32,
}

type Mirror = common::watch::Mirror<Note>;

fn mirror() -> Mirror {
    Mirror::new(|note| (u64::from(note.writer), u64::from(note.seq)))
}

/// Every value of `notes`, read now.
fn state(notes: &Collection<Note>) -> BTreeMap<String, Note> {
    common::watch::state(notes)
}

fn values() -> WatchOptions {
    WatchOptions::new().values(true)
}

#[test]
fn memory_tells_every_put_and_delete_in_order() {
    let notes: Collection<Note> = Collection::memory();
    let mut watch = notes.watch("").unwrap();
    let mut expected = Vec::new();
    for seq in 0..500_u32 {
        let key = format!("k{}", seq % 7);
        if seq % 5 == 4 {
            if notes.delete(&key).unwrap() {
                expected.push(format!("delete {key}"));
            }
        } else {
            notes.put(&key, &Note { writer: 0, seq }).unwrap();
            expected.push(format!("put {key}"));
        }
    }
    let told: Vec<String> = watch
        .timeout(Duration::from_secs(2))
        .take(expected.len())
        .map(|event| match event.unwrap() {
            WatchEvent::Put { key, value, .. } => {
                assert!(value.is_none(), "a watch without values");
                format!("put {key}")
            }
            WatchEvent::Deleted { key } => format!("delete {key}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(told, expected);
}

#[test]
fn a_watch_on_a_prefix_tells_only_its_keys_hostile_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    let local: Collection<Note> = Collection::open(dir.path()).unwrap();
    for notes in [Collection::memory(), local] {
        let mut watch = notes.watch_with("a", values()).unwrap();
        let long = format!("a{}", "é".repeat(150)); // too long to spell: a hashed name
        let keys = ["a", "a~", "ab/c", "a b", long.as_str(), "aux"];
        let others = ["b", "~a", "Aa", "AUX", "con", "~61"];
        for (n, key) in keys.iter().chain(others.iter()).enumerate() {
            notes
                .put(
                    key,
                    &Note {
                        writer: 0,
                        seq: n as u32,
                    },
                )
                .unwrap();
        }
        for key in keys.iter().chain(others.iter()) {
            notes.delete(key).unwrap();
        }
        // Read until the events stop: a hashed name's delete may come as a resync on the
        // local directory (its key is read from the entry, which may be gone before).
        let mut told = Vec::new();
        let mut present = std::collections::BTreeSet::new();
        for event in watch.timeout(Duration::from_secs(2)) {
            match event.unwrap() {
                WatchEvent::Put { key, .. } => {
                    told.push(format!("put {key}"));
                    present.insert(key);
                }
                WatchEvent::Deleted { key } => {
                    told.push(format!("delete {key}"));
                    present.remove(&key);
                }
                WatchEvent::Resync => {
                    told.push("resync".into());
                    present.clear();
                }
                WatchEvent::Synced => told.push("synced".into()),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            present.is_empty(),
            "{present:?} left after every delete: {told:?}"
        );
        let memory = format!("{notes:?}").contains("Memory");
        for key in keys {
            let deleted = told.contains(&format!("delete {key}"));
            assert!(
                deleted || (!memory && key == long && told.contains(&"resync".to_owned())),
                "{key}'s delete is not told on {notes:?}: {told:?}"
            );
        }
        if memory {
            assert!(!told.contains(&"resync".to_owned()), "{told:?}");
        }
        for key in others {
            assert!(
                !told
                    .iter()
                    .any(|t| *t == format!("put {key}") || *t == format!("delete {key}")),
                "{key} is told under the prefix a: {told:?}"
            );
        }
        // A put is told before the delete of its key.
        for key in keys {
            if let Some(put) = told.iter().position(|t| *t == format!("put {key}")) {
                let delete = told.iter().position(|t| *t == format!("delete {key}"));
                assert!(delete.is_none_or(|delete| put < delete), "{key}: {told:?}");
            }
        }
    }
}

#[test]
fn a_watch_from_the_current_state_begins_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    for n in 0..20 {
        notes
            .put(&format!("n{n}"), &Note { writer: 0, seq: n })
            .unwrap();
    }
    let mut watch = notes.watch_with("", values().current(true)).unwrap();
    let mut mirror = mirror();
    mirror.follow_until(&mut watch, &state(&notes), Duration::from_secs(5));
    assert_eq!(mirror.events[0], "resync");
    assert_eq!(mirror.events.len(), 21);
    assert_eq!(
        watch.next_timeout(Duration::from_secs(2)).unwrap().unwrap(),
        WatchEvent::Synced
    );
    notes.delete("n3").unwrap();
    assert_eq!(
        watch.next_timeout(Duration::from_secs(5)).unwrap().unwrap(),
        WatchEvent::Deleted { key: "n3".into() }
    );
}

#[test]
fn a_reader_too_far_behind_is_told_to_resync_and_gets_the_exact_state() {
    let notes: Collection<Note> = Collection::memory();
    let mut watch = notes.watch_with("", values()).unwrap();
    // More writes than the store's feed and the watch hold, none read meanwhile.
    for seq in 0..12_000_u32 {
        let key = format!("k{}", seq % 300);
        if seq % 11 == 0 {
            notes.delete(&key).unwrap();
        } else {
            notes.put(&key, &Note { writer: 0, seq }).unwrap();
        }
    }
    let mut mirror = mirror();
    mirror.follow_until(&mut watch, &state(&notes), Duration::from_secs(20));
    assert!(mirror.resyncs >= 1, "no resync: {:?}", &mirror.events[..5]);
    // Nothing else is pending that would change the state.
    while let Some(event) = watch.next_timeout(Duration::from_millis(300)) {
        mirror.apply(event.unwrap());
    }
    assert_eq!(mirror.values, state(&notes));
}

#[test]
fn a_link_planted_among_the_entries_is_never_told() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    notes.put("real", &Note::default()).unwrap();
    let mut watch = notes.watch("").unwrap();
    // A link named as an entry, in the shard of "real"'s neighbour.
    let shard = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(secret.path(), shard.join("planted")).unwrap();
    notes.put("after", &Note::default()).unwrap();
    let mut told = Vec::new();
    for event in watch.timeout(Duration::from_secs(2)) {
        if let WatchEvent::Put { key, .. } = event.unwrap() {
            told.push(key);
        }
    }
    assert_eq!(told, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_is_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    let mut watch = notes.watch_with("", values()).unwrap();
    notes
        .put_async("a", Note { writer: 2, seq: 7 })
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next_async())
        .await
        .expect("the put is told within 5 s")
        .unwrap()
        .unwrap();
    let WatchEvent::Put { key, value, tag } = event else {
        panic!("{event:?}");
    };
    assert_eq!(
        (key.as_str(), value),
        ("a", Some(Note { writer: 2, seq: 7 }))
    );
    assert_eq!(
        Some(tag),
        notes.backend().get("a").unwrap().map(|stored| stored.tag)
    );
}

const CHILD_DIR: &str = "PERSIST_TEST_WATCH_DIR";
const CHILD_MODE: &str = "PERSIST_TEST_WATCH_MODE";
const CHILD_WRITER: &str = "PERSIST_TEST_WATCH_WRITER";

/// The body of the child processes; does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let writer: u32 = std::env::var(CHILD_WRITER).unwrap().parse().unwrap();
    let notes: Collection<Note> = Collection::open(&dir).unwrap();
    match mode.as_str() {
        "random" => {
            let (mut rng, _) = common::Rng::from_env();
            for seq in 0..500 {
                let key = format!("key-{}", rng.below(40));
                if rng.below(4) == 0 {
                    notes.delete(&key).unwrap();
                } else {
                    notes.put(&key, &Note { writer, seq }).unwrap();
                }
            }
        }
        "one" => {
            notes.put("shared", &Note { writer, seq: 1 }).unwrap();
        }
        "gone" => {
            notes.delete("shared").unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}

fn run_child(mode: &str, dir: &Path, writer: u32) -> std::process::Child {
    common::child(
        "child",
        &[
            (CHILD_DIR, dir.as_os_str()),
            (CHILD_MODE, mode.as_ref()),
            (CHILD_WRITER, writer.to_string().as_ref()),
        ],
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
fn a_local_watch_sees_the_writes_of_two_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    let mut watch = notes.watch_with("", values()).unwrap();
    let writers: Vec<_> = (1..=2)
        .map(|w| run_child("random", dir.path(), w))
        .collect();
    let mut mirror = mirror();
    for mut writer in writers {
        // Read while they write: the mirror checks the order of each key's events.
        while writer.try_wait().unwrap().is_none() {
            if let Some(event) = watch.next_timeout(Duration::from_millis(50)) {
                mirror.apply(event.unwrap());
            }
        }
        assert!(writer.wait().unwrap().success());
    }
    mirror.follow_until(&mut watch, &state(&notes), Duration::from_secs(10));
    assert_eq!(mirror.resyncs, 0);
}

#[cfg(feature = "cache")]
#[test]
fn a_cached_handle_sees_another_process_put_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cached: Collection<Note> = Options::new()
        .cache(100, Duration::from_secs(3600))
        .collection(dir.path())
        .unwrap();
    cached.put("shared", &Note { writer: 0, seq: 0 }).unwrap();
    assert_eq!(cached.get("shared").unwrap().unwrap().writer, 0);
    assert_eq!(cached.get("shared").unwrap().unwrap().writer, 0);
    assert!(cached.cache_stats().hits >= 1, "the value is cached");

    let until = common::watch::seen_within_5_s;
    assert!(run_child("one", dir.path(), 9).wait().unwrap().success());
    until("put", &|| {
        cached.get("shared").unwrap().unwrap().writer == 9
    });
    assert!(run_child("gone", dir.path(), 9).wait().unwrap().success());
    until("delete", &|| cached.get("shared").unwrap().is_none());
}

/// Two live handles on one entry of a local directory (two collections opened on it, as two
/// processes would), each making 200 increments from its own thread under each policy: exactly
/// 400, and each handle ends showing the other's last increment.
#[test]
fn live_entries_on_a_local_directory_lose_no_increment() {
    for policy in [
        persist::SavePolicy::Immediate,
        persist::SavePolicy::Coalesce {
            debounce: Duration::from_millis(5),
            max_wait: Duration::from_millis(50),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
                std::thread::spawn(move || {
                    let live = notes.live_with("shared", policy).unwrap();
                    for _ in 0..200 {
                        live.update(|note| note.seq += 1).unwrap();
                    }
                    live.flush().unwrap();
                    let started = Instant::now();
                    while live.get().seq < 400 {
                        assert!(
                            started.elapsed() < Duration::from_secs(10),
                            "{policy:?}: the handle shows {} of 400",
                            live.get().seq
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
        assert_eq!(notes.get("shared").unwrap().unwrap().seq, 400, "{policy:?}");
    }
}

/// A reader that fell behind on memory (values off: each event carries the tag it was told
/// with): after the resync's state, no event takes a key back to an older write.
#[test]
fn a_resync_never_takes_a_key_back() {
    let notes: Collection<Note> = Collection::memory();
    let mut watch = notes.watch("").unwrap();
    for seq in 0..6_000_u32 {
        notes
            .put(&format!("k{}", seq % 100), &Note { writer: 0, seq })
            .unwrap();
    }
    // Memory's tags count its writes: a key's tags only grow.
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let mut resyncs = 0;
    for event in watch.timeout(Duration::from_secs(1)) {
        match event.unwrap() {
            WatchEvent::Put { key, tag, .. } => {
                let tag: u64 = tag.as_str().parse().unwrap();
                let before = newest.insert(key.clone(), tag).unwrap_or(0);
                assert!(
                    tag >= before,
                    "{key} went back from write {before} to {tag}"
                );
            }
            WatchEvent::Resync => resyncs += 1,
            WatchEvent::Synced => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(resyncs >= 1);
    assert_eq!(newest.len(), 100);
    assert!(newest.values().all(|tag| *tag > 5_900), "{newest:?}");
}

/// A `clear` removes the shard directories; the next writes make them again, and both a
/// watch and a cached handle still hear of changes in them (a removed directory's watch
/// goes with it and is asked for again).
#[cfg(feature = "cache")]
#[test]
fn changes_after_a_clear_are_still_told() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    let cached: Collection<Note> = Options::new()
        .cache(100, Duration::from_secs(3600))
        .collection(dir.path())
        .unwrap();
    for round in 0..3_u32 {
        let mut watch = notes.watch("").unwrap();
        notes
            .put(
                "k",
                &Note {
                    writer: round,
                    seq: 0,
                },
            )
            .unwrap();
        cached.clear().unwrap();
        cached
            .put(
                "k",
                &Note {
                    writer: round,
                    seq: 1,
                },
            )
            .unwrap();
        assert_eq!(cached.get("k").unwrap().unwrap().seq, 1);
        // Another process's write, as a file replaced by hand.
        let other_dir = tempfile::tempdir().unwrap();
        let other: Collection<Note> = Collection::open(other_dir.path()).unwrap();
        other
            .put(
                "k",
                &Note {
                    writer: round,
                    seq: 2,
                },
            )
            .unwrap();
        let staged = dir.path().join("k.staged");
        std::fs::copy(other.backend().locate("k"), &staged).unwrap();
        std::fs::rename(&staged, cached.backend().locate("k")).unwrap();
        let started = Instant::now();
        while cached.get("k").unwrap().unwrap().seq != 2 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "round {round}: the cache did not see the replaced file after a clear"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The watch tells the last state (writes faster than it reads may be told once).
        let last = notes.backend().get("k").unwrap().unwrap().tag;
        let mut told = Vec::new();
        for event in watch.timeout(Duration::from_secs(5)) {
            let event = event.unwrap();
            let done = matches!(&event, WatchEvent::Put { tag, .. } if *tag == last);
            told.push(format!("{event:?}"));
            if done {
                break;
            }
        }
        assert!(
            told.last().is_some_and(|t| t.contains(last.as_str())),
            "round {round}: the last write ({last}) is not told: {told:?}"
        );
    }
}

/// A symbolic link planted where a shard belongs, then removed, never takes the real shard's
/// events away (a link is never watched).
#[test]
fn a_link_planted_as_a_shard_never_blinds_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    notes.put("victim", &Note::default()).unwrap();
    let real = notes.backend().locate("victim");
    let shard = real.parent().unwrap().to_owned();
    // A free shard name beside it, linked to the real shard.
    let planted = (0..256)
        .map(|index| dir.path().join(format!("{index:02x}")))
        .find(|path| !path.exists())
        .unwrap();
    std::os::unix::fs::symlink(&shard, &planted).unwrap();
    let watch = notes.watch("").unwrap();
    drop(watch);
    std::fs::remove_file(&planted).unwrap();
    let mut watch = notes.watch("").unwrap();
    notes.put("victim", &Note { writer: 1, seq: 1 }).unwrap();
    let event = watch.next_timeout(Duration::from_secs(5));
    assert!(
        matches!(event, Some(Ok(WatchEvent::Put { ref key, .. })) if key == "victim"),
        "{event:?}"
    );
}

/// An entry planted under the hashed name of one key but holding another key is no key's: a
/// watch never tells it (nor does a listing).
#[test]
fn an_entry_planted_under_another_keys_hash_is_never_told() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Collection<Note> = Collection::open(dir.path()).unwrap();
    let long = format!("a/{}", "x".repeat(300));
    notes.put("a/victim", &Note { writer: 0, seq: 1 }).unwrap();
    let mut watch = notes.watch("a/").unwrap();
    // The bytes of "a/victim"'s entry, put where the long key's hashed entry goes.
    notes.put(&long, &Note::default()).unwrap();
    let hashed = notes.backend().locate(&format!("~~{}", "0".repeat(64)));
    let target = std::fs::read_dir(hashed.parent().unwrap().parent().unwrap())
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("~~")
        })
        .unwrap();
    let forged = std::fs::read(notes.backend().locate("a~2fvictim")).unwrap();
    let staged = dir.path().join("forged.staged");
    std::fs::write(&staged, &forged).unwrap();
    std::fs::rename(&staged, &target).unwrap();
    let mut told = Vec::new();
    for event in watch.timeout(Duration::from_secs(2)) {
        if let Ok(WatchEvent::Put { key, .. } | WatchEvent::Deleted { key }) = event {
            told.push(key);
        }
    }
    assert!(!told.iter().any(|key| key == "a/victim"), "{told:?}");
    let keys = notes.keys().unwrap().sorted().unwrap();
    assert_eq!(keys, ["a/victim"], "the planted entry is no key's");
}

/// A watch that begins with the state while writes go on: the writes made during its listing
/// are told again after it, and a key must never be told at a tag older than the one the
/// state gave (the tags of a key's puts, without deletes, never come back once replaced).
#[test]
fn the_writes_made_during_a_resync_never_take_a_key_back() {
    let notes: Collection<Note> = Collection::memory();
    for seq in 0..200_u32 {
        notes.put(&format!("k{seq}"), &Note::default()).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (notes, stop) = (notes.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seq = 0_u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                notes
                    .put(&format!("k{}", seq % 200), &Note { writer: 1, seq })
                    .unwrap();
                seq += 1;
            }
        })
    };
    let mut backward = Vec::new();
    for round in 0..20 {
        let mut watch = notes
            .watch_with("", WatchOptions::new().current(true))
            .unwrap();
        // Per key: the tags told since the resync, in order.
        let mut told: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(150) {
            match watch.next_timeout(Duration::from_millis(50)) {
                Some(Ok(WatchEvent::Put { key, tag, .. })) => {
                    let tags = told.entry(key.clone()).or_default();
                    let tag = tag.as_str().to_owned();
                    if tags.last() != Some(&tag) && tags.contains(&tag) {
                        backward.push(format!("round {round}: {key} back to {tag} after {tags:?}"));
                    }
                    tags.push(tag);
                }
                Some(Ok(WatchEvent::Resync)) => told.clear(),
                Some(Ok(_)) | None => {}
                Some(Err(error)) => panic!("{error}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        backward.is_empty(),
        "{} keys went back: {:?}",
        backward.len(),
        &backward[..backward.len().min(5)]
    );
}

/// A store that fails while a resync reads its state (one read, here) has the resync begun
/// again: `Synced` follows the state of every key, never a state with a key missing.
#[test]
fn a_store_failing_during_a_resync_is_read_again_before_synced() {
    let memory = std::sync::Arc::new(persist::backend::Memory::new());
    let notes: Collection<Note> = Collection::with_backend(memory.clone(), Options::new());
    for seq in 0..10_u32 {
        notes
            .put(&format!("k{seq}"), &Note { writer: 0, seq })
            .unwrap();
    }
    memory.inject(persist::backend::Fault::FailRead { nth: 4 });
    let mut watch = notes
        .watch_with("", WatchOptions::new().values(true).current(true))
        .unwrap();
    let (mut state, mut errors) = (BTreeMap::new(), 0);
    loop {
        match watch
            .next_timeout(Duration::from_secs(10))
            .expect("synced in time")
        {
            Ok(WatchEvent::Resync) => state.clear(),
            Ok(WatchEvent::Put { key, value, .. }) => {
                state.insert(key, value.unwrap());
            }
            Ok(WatchEvent::Synced) => break,
            Ok(other) => panic!("{other:?}"),
            Err(error) => {
                assert!(error.to_string().contains("fault injected"), "{error}");
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 1, "the injected failure is told");
    assert_eq!(state, common::watch::state(&notes));
}

/// A feed that tells what a test scripts (`None`: a quiet tick).
#[derive(Debug)]
struct ScriptedFeed(
    std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Option<persist::backend::Notice>>>>,
);

impl persist::backend::Feed for ScriptedFeed {
    fn next(&mut self, wait: Duration) -> Result<Option<persist::backend::Notice>, persist::Error> {
        let next = self.0.lock().unwrap().pop_front();
        match next {
            Some(notice) => Ok(notice),
            None => {
                std::thread::sleep(wait);
                Ok(None)
            }
        }
    }
}

/// Notices of writes older than the state a resync told, still coming after a quiet moment of
/// the feed (a listener that fell behind, then paused): none takes a key back. A name's
/// notices are checked against the store until one of them is the store's state.
#[test]
fn notices_behind_the_state_after_a_quiet_moment_never_take_a_key_back() {
    use persist::backend::Notice;
    let script = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let scripted = std::sync::Arc::clone(&script);
    let store = std::sync::Arc::new(common::around::Around {
        memory: std::sync::Arc::new(persist::backend::Memory::new()),
        root: "scripted:",
        watch: Box::new(move |_, _, _| {
            let feed = ScriptedFeed(std::sync::Arc::clone(&scripted));
            Ok(Some(Box::new(feed) as Box<dyn persist::backend::Feed>))
        }),
    });
    let notes: Collection<Note> = Collection::with_backend(store.clone(), Options::new());
    let mut tags = Vec::new();
    for seq in 0..3 {
        notes.put("k", &Note { writer: 0, seq }).unwrap();
        let stored = persist::backend::Backend::get(&*store, "k")
            .unwrap()
            .unwrap();
        tags.push(stored.tag);
    }
    let put = |tag: &persist::backend::Tag| {
        Some(Notice::Put {
            name: "k".into(),
            tag: tag.clone(),
            key: Some("k".into()),
        })
    };
    // The state is told at the newest write; then the feed is quiet a while, and the notices
    // of the two older writes come, then the newest's, then a new write's.
    script.lock().unwrap().extend([
        Some(Notice::Resync),
        None,
        None,
        put(&tags[0]),
        put(&tags[1]),
        put(&tags[2]),
    ]);
    let mut watch = notes.watch("").unwrap();
    let mut told = Vec::new();
    while let Some(event) = watch.next_timeout(Duration::from_secs(1)) {
        told.push(match event.unwrap() {
            WatchEvent::Put { tag, .. } => format!("put {}", tag.as_str()),
            other => format!("{other:?}"),
        });
    }
    let newest = format!("put {}", tags[2].as_str());
    assert_eq!(told, ["Resync".to_owned(), newest, "Synced".to_owned()]);
    // Caught up: the next write is told as it comes.
    notes.put("k", &Note { writer: 0, seq: 3 }).unwrap();
    let next = persist::backend::Backend::get(&*store, "k")
        .unwrap()
        .unwrap()
        .tag;
    script.lock().unwrap().push_back(put(&next));
    let event = watch.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(
        matches!(event, WatchEvent::Put { ref tag, .. } if *tag == next),
        "{event:?}"
    );
}
