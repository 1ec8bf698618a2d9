//! Typed upcasting of journal records: one old record becomes two current events or none, on
//! replay, on recover and in a rewrite of the log; event types renamed across enums migrate
//! through the same chain; snapshots keep their own chain.

use std::fs;
use std::path::Path;

use persist::{Error, Journal, NoSnapshot, Options, Persisted};
use serde::{Deserialize, Serialize};

/// Version 1: one struct for every change, with optional parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    item: String,
    /// Added and at once renamed to this (version 2 has two events for it).
    renamed_to: Option<String>,
    /// A heartbeat: version 2 does not keep them.
    heartbeat: bool,
}

/// Version 2: an enum; version 1's records split in two or are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, upcast_from = EventV1)]
enum EventV2 {
    Created(String),
    Renamed { from: String, to: String },
}

impl From<EventV1> for Vec<EventV2> {
    fn from(old: EventV1) -> Vec<EventV2> {
        if old.heartbeat {
            return Vec::new();
        }
        let mut events = vec![EventV2::Created(old.item.clone())];
        if let Some(to) = old.renamed_to {
            events.push(EventV2::Renamed { from: old.item, to });
        }
        events
    }
}

/// Version 3: the enum renamed, its variants renamed (a one-to-one step after the upcast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = EventV2)]
enum Event {
    ItemAdded { name: String },
    ItemRenamed { from: String, to: String },
}

impl From<EventV2> for Event {
    fn from(old: EventV2) -> Event {
        match old {
            EventV2::Created(name) => Event::ItemAdded { name },
            EventV2::Renamed { from, to } => Event::ItemRenamed { from, to },
        }
    }
}

/// The snapshot, with a chain of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct ListV1 {
    names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = ListV1)]
struct List {
    names: Vec<String>,
    renames: u64,
}

impl From<ListV1> for List {
    fn from(old: ListV1) -> List {
        List {
            names: old.names,
            renames: 0,
        }
    }
}

fn v1(item: &str, renamed_to: Option<&str>, heartbeat: bool) -> EventV1 {
    EventV1 {
        item: item.to_owned(),
        renamed_to: renamed_to.map(str::to_owned),
        heartbeat,
    }
}

fn added(name: &str) -> Event {
    Event::ItemAdded {
        name: name.to_owned(),
    }
}

fn renamed(from: &str, to: &str) -> Event {
    Event::ItemRenamed {
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

/// A log written by the program's first version: milk, then bread renamed to rye, a heartbeat.
fn old_log(path: &Path) {
    let journal = Journal::<EventV1>::open(path).unwrap();
    journal
        .append_many(&[
            v1("milk", None, false),
            v1("bread", Some("rye"), false),
            v1("", None, true),
        ])
        .unwrap();
}

fn expected() -> Vec<Event> {
    vec![added("milk"), added("bread"), renamed("bread", "rye")]
}

#[test]
fn one_old_record_becomes_two_events_or_none_on_replay_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    old_log(&path);
    let journal = Journal::<Event, List>::open(&path).unwrap();
    assert_eq!(journal.len(), 3, "the log holds three records");
    let replayed: Vec<Event> = journal.replay().unwrap().map(Result::unwrap).collect();
    assert_eq!(replayed, expected());
    // Records appended now are at version 3, after the old ones.
    journal.append(&added("eggs")).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot, None);
    let mut all = expected();
    all.push(added("eggs"));
    assert_eq!(tail.map(Result::unwrap).collect::<Vec<_>>(), all);
}

#[test]
fn a_checkpoint_then_old_records_after_it_recover_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    // A snapshot at version 1 of the list, then old records after it.
    {
        let journal = Journal::<EventV1, ListV1>::open(&path).unwrap();
        journal.append(&v1("tea", None, false)).unwrap();
        journal
            .checkpoint(&ListV1 {
                names: vec!["tea".into()],
            })
            .unwrap();
        journal
            .append(&v1("jam", Some("marmalade"), false))
            .unwrap();
    }
    let journal = Journal::<Event, List>::open(&path).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(
        snapshot.unwrap(),
        List {
            names: vec!["tea".into()],
            renames: 0
        }
    );
    assert_eq!(
        tail.map(Result::unwrap).collect::<Vec<_>>(),
        [added("jam"), renamed("jam", "marmalade")]
    );
}

#[test]
fn a_rewrite_stores_the_upcast_records_at_the_current_version_and_keeps_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    old_log(&path);
    let old_bytes = fs::read(&path).unwrap();
    let journal = Journal::<Event>::open(&path).unwrap();
    let rewritten = journal.rewrite().unwrap();
    assert_eq!((rewritten.before, rewritten.after), (3, 3));
    let backup = rewritten.backup.unwrap();
    assert_eq!(backup, dir.path().join("events.log.v1.bak"));
    // The backup is the old log as it was (its records, whatever followed them).
    let kept = fs::read(&backup).unwrap();
    assert_eq!(kept[..], old_bytes[..kept.len()]);
    assert!(Journal::<EventV1>::open(&backup).unwrap().len() == 3);
    // Every record now at version 3, the same events.
    let versions: Vec<u64> = Options::new()
        .journal_records(&path)
        .unwrap()
        .map(|r| r.unwrap().version)
        .collect();
    assert_eq!(versions, [3, 3, 3]);
    assert_eq!(
        journal
            .replay()
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        expected()
    );
    // Appends go on after them, and survive a reopen.
    journal.append(&added("eggs")).unwrap();
    assert_eq!(journal.len(), 4);
    drop(journal);
    let journal = Journal::<Event>::open(&path).unwrap();
    assert_eq!(journal.recovered(), None);
    assert_eq!(journal.replay().unwrap().count(), 4);
    // Nothing to rewrite any more.
    let again = journal.rewrite().unwrap();
    assert_eq!((again.before, again.after, again.backup), (4, 4, None));
}

#[test]
fn a_rewrite_that_drops_records_renumbers_those_after_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    {
        let journal = Journal::<EventV1>::open(&path).unwrap();
        for _ in 0..5 {
            journal.append(&v1("", None, true)).unwrap();
        }
        journal.append(&v1("last", None, false)).unwrap();
    }
    let journal = Journal::<Event>::open(&path).unwrap();
    assert_eq!(journal.len(), 6);
    // A follower that read the old records.
    let mut follow = Options::new().journal_follow_records(&path, 0).unwrap();
    for expected in 0..6 {
        let (index, _) = follow
            .next_timeout(std::time::Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert_eq!(index, expected);
    }
    let rewritten = journal.rewrite().unwrap();
    assert_eq!((rewritten.before, rewritten.after), (6, 1));
    assert_eq!(journal.len(), 1);
    assert_eq!(journal.append(&added("next")).unwrap(), 1);
    // It is told, and reads the rewritten journal from its first record: never skipped.
    match follow.next_timeout(std::time::Duration::from_secs(30)) {
        Some(Err(Error::Rewound { from, to, .. })) => assert_eq!((from, to), (6, 0)),
        other => panic!("{other:?}"),
    }
    let indexes: Vec<u64> = (0..2)
        .map(|_| {
            follow
                .next_timeout(std::time::Duration::from_secs(30))
                .unwrap()
                .unwrap()
                .0
        })
        .collect();
    assert_eq!(indexes, [0, 1]);
}

#[test]
fn a_record_that_does_not_migrate_fails_the_rewrite_and_changes_nothing() {
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 2, upcast_from = EventV1)]
    struct Picky {
        item: String,
    }

    impl TryFrom<EventV1> for Vec<Picky> {
        type Error = String;
        fn try_from(old: EventV1) -> Result<Vec<Picky>, String> {
            match old.heartbeat {
                true => Err("heartbeats are not events".into()),
                false => Ok(vec![Picky { item: old.item }]),
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    old_log(&path);
    let before = fs::read(&path).unwrap();
    let journal = Journal::<Picky>::open(&path).unwrap();
    let error = journal.rewrite().unwrap_err();
    assert!(matches!(error, Error::Migration { .. }), "{error:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("events.log.v1.bak").exists());
    // Replay reports the same record's error, and goes on after it.
    let items: Vec<_> = journal.replay().unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(items[2].is_err());
}

#[test]
fn a_single_value_load_refuses_an_upcast_that_does_not_make_one_value() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.json");
    let two = dir.path().join("two.json");
    v1("milk", None, false).save(&one).unwrap();
    v1("bread", Some("rye"), false).save(&two).unwrap();
    assert_eq!(Event::load(&one).unwrap(), added("milk"));
    match Event::load(&two) {
        Err(Error::Migration { source, .. }) => {
            assert!(
                source.to_string().contains("upcasts to 2 values"),
                "{source}"
            );
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[test]
fn a_journal_without_a_snapshot_type_recovers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    old_log(&path);
    let journal: Journal<Event, NoSnapshot> = Options::new().journal(&path).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert!(snapshot.is_none());
    assert_eq!(tail.count(), 3);
}

/// Where the file system has no hard links, the backup is a copy of the old log's records.
#[test]
fn without_hard_links_the_backup_is_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    old_log(&path);
    let journal = Journal::<Event>::open(&path).unwrap();
    let records_end = {
        let records: Vec<_> = Options::new()
            .journal_records(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let last = records.last().unwrap();
        let bytes = fs::read(&path).unwrap();
        let at = last.offset as usize;
        at + 24 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
    };
    let old = fs::read(&path).unwrap();
    let fault =
        persist::testing::inject_fault(dir.path(), persist::IoOp::CreateTemp, libc::EPERM, 1);
    let rewritten = journal.rewrite().unwrap();
    assert_eq!(fault.hits(), 1);
    let backup_path = rewritten.backup.unwrap();
    let backup = fs::read(&backup_path).unwrap();
    // The records, and the mark of the clean close that followed them; not the zeros.
    assert_eq!(backup[..records_end], old[..records_end]);
    assert_eq!(backup.len(), records_end + 24);
    assert_eq!(
        Options::new()
            .journal_records(&backup_path)
            .unwrap()
            .count(),
        3
    );
    assert_eq!(journal.replay().unwrap().count(), 3);
}
