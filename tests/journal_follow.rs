//! Readers that follow a journal: every record from an index on, exactly once and in order,
//! across checkpoints, in this process and in another one, sync and async.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use persist::{Error, Journal, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Event {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Count {
    events: u64,
}

/// Appends `count` events from `first` on in batches of `batch`, checkpointing after each
/// `every` events.
fn append(journal: &Journal<Event, Count>, first: u64, count: u64, batch: u64, every: u64) {
    let mut id = first;
    while id < first + count {
        let events: Vec<Event> = (id..(id + batch).min(first + count))
            .map(|id| Event { id })
            .collect();
        journal.append_many(&events).unwrap();
        id += events.len() as u64;
        if id.is_multiple_of(every) {
            journal.checkpoint(&Count { events: id }).unwrap();
        }
    }
}

/// Takes `count` records from `follow`, checking that each is the next index with its event.
fn take_in_order(follow: &mut persist::Follow<Event>, from: u64, count: u64) {
    for expected in from..from + count {
        let (index, event) = follow
            .next_timeout(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no record {expected} within 30 s"))
            .unwrap();
        assert_eq!(index, expected);
        assert_eq!(event.id, expected);
    }
}

#[test]
fn a_follower_sees_every_record_once_in_order_across_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 100, 7, 50);
    let mut follow = Options::new()
        .journal_follow::<Event>(&path, 0)
        .unwrap_err_or_checkpointed();
    // Records 0..100 were checkpointed at 50 and 100: the log starts at 100.
    let writer = std::thread::spawn(move || {
        append(&journal, 100, 2000, 13, 500);
        journal
    });
    take_in_order(&mut follow, 100, 2000);
    let journal = writer.join().unwrap();
    assert!(follow.try_next().is_none(), "nothing after the last record");
    journal.append(&Event { id: 2100 }).unwrap();
    take_in_order(&mut follow, 2100, 1);
}

/// A follower asked for records a checkpoint covered gets `Checkpointed` once, then the rest.
trait Checkpointed {
    fn unwrap_err_or_checkpointed(self) -> persist::Follow<Event>;
}

impl Checkpointed for Result<persist::Follow<Event>, Error> {
    fn unwrap_err_or_checkpointed(self) -> persist::Follow<Event> {
        let mut follow = self.unwrap();
        match follow.next_timeout(Duration::from_secs(5)) {
            Some(Err(Error::Checkpointed { from, to, .. })) => {
                assert_eq!((from, to), (0, 100));
            }
            other => panic!("expected Checkpointed, got {other:?}"),
        }
        assert_eq!(follow.position(), 100);
        follow
    }
}

#[test]
fn a_follower_waits_for_a_journal_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    assert!(follow.try_next().is_none());
    assert!(follow.next_timeout(Duration::from_millis(50)).is_none());
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 10, 3, 1000);
    take_in_order(&mut follow, 0, 10);
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    std::fs::write(&path, br#"{"version":1,"data":{}}"#).unwrap();
    assert!(matches!(
        Options::new().journal_follow::<Event>(&path, 0),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_torn_tail_cut_by_the_next_writer_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    {
        let journal = Journal::<Event, Count>::open(&path).unwrap();
        append(&journal, 0, 3, 1, 1000);
    }
    // A crash during an append: half a record after the mark of the clean close.
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end);
    bytes.extend_from_slice(&[0x2A, 0, 0, 0, 1, 0, 0, 0, 9, 9, 9]);
    std::fs::write(&path, &bytes).unwrap();
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    take_in_order(&mut follow, 0, 3);
    assert!(follow.next_timeout(Duration::from_millis(100)).is_none());
    // The writer opens the journal (cutting the tail) and appends.
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    assert!(journal.recovered().is_some());
    append(&journal, 3, 5, 2, 1000);
    take_in_order(&mut follow, 3, 5);
}

#[test]
fn damage_before_a_later_flush_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 2, 1, 1000);
    drop(journal);
    let records: Vec<_> = Options::new()
        .journal_records(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[records[0].offset as usize + 30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    match follow.next_timeout(Duration::from_secs(10)) {
        Some(Err(Error::DamagedJournal { offset, .. })) => assert_eq!(offset, records[0].offset),
        other => panic!("expected DamagedJournal, got {other:?}"),
    }
}

#[test]
fn records_follow_untyped_for_tools() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 4, 2, 1000);
    let mut follow = Options::new().journal_follow_records(&path, 1).unwrap();
    let (index, record) = follow.next().unwrap().unwrap();
    assert_eq!((index, record.index, record.version), (1, 1, 1));
    assert_eq!(record.data, r#"{"id":1}"#);
}

#[test]
fn an_async_follower_gets_records_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    let mut follow = Options::new()
        .journal_follow::<Event>(&path, 0)
        .unwrap()
        .into_async()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let writer = std::thread::spawn(move || append(&journal, 0, 500, 9, 200));
    runtime.block_on(async {
        for expected in 0..500 {
            let (index, event) = tokio::time::timeout(Duration::from_secs(30), follow.next())
                .await
                .expect("a record within 30 s")
                .unwrap();
            assert_eq!((index, event.id), (expected, expected));
        }
    });
    writer.join().unwrap();
}

const FOLLOW_LOG: &str = "PERSIST_TEST_FOLLOW_LOG";
const FOLLOW_COUNT: u64 = 10_000;

/// The child: follows the journal from 0 and prints each record's index and event id.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn follower_child() {
    let Ok(path) = std::env::var(FOLLOW_LOG) else {
        return;
    };
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    println!("ready");
    for _ in 0..FOLLOW_COUNT {
        match follow.next_timeout(Duration::from_secs(60)) {
            Some(Ok((index, event))) => println!("{index} {}", event.id),
            Some(Err(error)) => println!("error {error}"),
            None => {
                println!("timeout");
                return;
            }
        }
    }
}

#[test]
fn a_follower_in_another_process_sees_ten_thousand_records_across_three_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    let mut child = common::child("follower_child", &[(FOLLOW_LOG, &path)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Appends start once the child follows (it starts at 0 whatever it finds).
    loop {
        let line = lines.next().expect("the child's output").unwrap();
        if line == "ready" {
            break;
        }
    }
    // The child's output is read while the records are appended: a follower blocked on a
    // full pipe would fall behind by more than one checkpoint.
    let output = std::thread::spawn(move || lines.collect::<Vec<_>>());
    // 10,000 records in batches of 37, a checkpoint after 2,500, 5,000 and 7,500.
    append(&journal, 0, FOLLOW_COUNT, 37, 2500);
    let mut seen = 0;
    for line in output.join().unwrap() {
        let line = line.unwrap();
        assert!(
            !line.starts_with("error") && line != "timeout",
            "the follower: {line}"
        );
        // Other lines are the test harness's own.
        let Some((Ok(index), Ok(id))) = line
            .split_once(' ')
            .map(|(index, id)| (index.parse::<u64>(), id.parse::<u64>()))
        else {
            continue;
        };
        assert_eq!((index, id), (seen, seen), "{line}");
        seen += 1;
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(seen, FOLLOW_COUNT);
    let names = common::names(Path::new(dir.path()));
    assert!(
        names.contains(&"events.log.snapshot.10000".to_owned()),
        "{names:?}"
    );
}

#[test]
fn a_journal_deleted_and_created_again_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 10, 1, 1_000);
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    take_in_order(&mut follow, 0, 10);
    drop(journal);
    std::fs::remove_file(&path).unwrap();
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 15, 1, 1_000);
    match follow.next_timeout(Duration::from_secs(30)) {
        Some(Err(Error::Rewound { from, to, .. })) => assert_eq!((from, to), (10, 0)),
        other => panic!("{other:?}"),
    }
    // The new journal's records, every one from its first.
    take_in_order(&mut follow, 0, 15);
}

#[test]
fn a_full_disk_never_shows_a_follower_records_that_were_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("mnt");
    let Some(_mounted) = common::small_ext4(dir.path(), &point, 2048) else {
        return;
    };
    let path = point.join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    let mut acknowledged = 0;
    let error = loop {
        let events: Vec<Event> = (acknowledged..acknowledged + 200)
            .map(|id| Event { id })
            .collect();
        match journal.append_many(&events) {
            Ok(_) => acknowledged += 200,
            Err(error) => break error,
        }
    };
    assert!(
        error.to_string().contains("No space left"),
        "the disk's own error: {error}"
    );
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    // Everything the follower delivers was acknowledged, and nothing else comes.
    take_in_order(&mut follow, 0, acknowledged);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        follow.try_next().is_none(),
        "nothing past the acknowledged records"
    );
}

#[cfg(feature = "encryption")]
#[test]
fn a_writer_without_the_key_is_refused_on_an_encrypted_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let key = persist::Key::from_bytes([7; 32]);
    let journal = Options::new()
        .encrypt(key)
        .journal::<Event, Count>(&path)
        .unwrap();
    journal.append(&Event { id: 1 }).unwrap();
    drop(journal);
    let bytes = std::fs::read(&path).unwrap();
    match Journal::<Event, Count>::open(&path) {
        Err(Error::KeyRequired { path: named }) => assert_eq!(named, path),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let wrong = Options::new()
        .encrypt(persist::Key::from_bytes([8; 32]))
        .journal::<Event, Count>(&path);
    assert!(
        matches!(wrong, Err(Error::Decrypt { .. })),
        "{:?}",
        wrong.map(|_| ())
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");
}

#[test]
fn a_follower_started_before_the_directory_exists_keeps_up_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later").join("events.log");
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    assert!(follow.try_next().is_none());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            let journal = Journal::<Event, Count>::open(&path).unwrap();
            for id in 0..40 {
                journal.append(&Event { id }).unwrap();
                if (id + 1) % 5 == 0 {
                    journal.checkpoint(&Count { events: id + 1 }).unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Every record, none only in a snapshot: the directory is watched once it exists.
        take_in_order(&mut follow, 0, 40);
    });
}

#[test]
fn records_cut_after_a_follower_read_them_are_reported_and_the_next_ones_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 0, 5, 1, 1_000);
    drop(journal);
    let mut follow = Options::new().journal_follow::<Event>(&path, 0).unwrap();
    take_in_order(&mut follow, 0, 5);
    // What a writer does when the sync of its last flush fails: the records it wrote are cut
    // off (here the last two, by hand).
    let cut = Options::new()
        .journal_records(&path)
        .unwrap()
        .map(Result::unwrap)
        .nth(3)
        .unwrap()
        .offset;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    match follow.next_timeout(Duration::from_secs(30)) {
        Some(Err(Error::Rewound { from, to, .. })) => assert_eq!((from, to), (5, 3)),
        other => panic!("{other:?}"),
    }
    // The records appended after the cut get those numbers, and are delivered.
    let journal = Journal::<Event, Count>::open(&path).unwrap();
    append(&journal, 3, 3, 1, 1_000);
    take_in_order(&mut follow, 3, 3);
}
