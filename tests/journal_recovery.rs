//! A journal's recovery you can see: what an open cuts is reported (or refused in the strict
//! mode), damage to the last record of a cleanly closed journal is an error, a log created
//! again beside its snapshots goes on after them, records are sealed with the options' layers,
//! crafted files cost one pass, and a full disk or a failed sync is reported as a journal's.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use persist::testing::inject_fault;
use persist::{Error, IoOp, Journal, JournalRecovery, Key, Options, Persisted, Recovered};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Event {
    id: u64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Snapshot {
    ids: Vec<u64>,
}

fn event(id: u64) -> Event {
    Event {
        id,
        text: format!("event number {id}"),
    }
}

fn log_in(dir: &Path) -> PathBuf {
    dir.join("events.log")
}

fn ids(journal: &Journal<Event, Snapshot>) -> Vec<u64> {
    journal
        .replay()
        .unwrap()
        .map(|event| event.unwrap().id)
        .collect()
}

/// The offsets of the journal's records and where the last one ends.
fn layout(path: &Path) -> (Vec<u64>, usize) {
    let records: Vec<_> = Options::new()
        .journal_records(path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let bytes = fs::read(path).unwrap();
    let last = records.last().unwrap().offset as usize;
    let len = u32::from_le_bytes(bytes[last..last + 4].try_into().unwrap()) as usize;
    (records.iter().map(|r| r.offset).collect(), last + 24 + len)
}

fn strict() -> Options {
    Options::new().journal_recovery(JournalRecovery::AbsoluteConsistency)
}

/// A journal of `count` events as a writer that stopped without closing it (a crash after its
/// last append returned) leaves it: no mark of a clean close after the records.
fn crashed(path: &Path, count: u64) {
    let journal = Journal::<Event, Snapshot>::open(path).unwrap();
    for id in 0..count {
        journal.append(&event(id)).unwrap();
    }
    drop(journal);
    unmark(path);
}

/// Cuts the mark of a clean close (and the zeros) after the journal's last record.
fn unmark(path: &Path) {
    let (_, end) = layout(path);
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(end as u64).unwrap();
}

#[test]
fn a_flipped_bit_anywhere_in_the_last_record_of_a_closed_journal_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        for id in 0..3 {
            journal.append(&event(id)).unwrap();
        }
    }
    let (offsets, end) = layout(&path);
    let last = offsets[2];
    let whole = fs::read(&path).unwrap();
    for at in last as usize..end {
        let mut flipped = whole.clone();
        flipped[at] ^= 0x08;
        fs::write(&path, &flipped).unwrap();
        for options in [Options::new(), strict()] {
            match options.journal::<Event, Snapshot>(&path) {
                Err(Error::DamagedJournal { offset, .. }) => assert_eq!(offset, last, "byte {at}"),
                other => panic!("byte {at}: expected DamagedJournal, got {other:?}"),
            }
            assert_eq!(
                fs::read(&path).unwrap(),
                flipped,
                "byte {at}: the file changed"
            );
        }
    }
}

#[test]
fn after_a_crash_a_damaged_last_record_is_cut_and_reported_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    crashed(&path, 3);
    let (offsets, end) = layout(&path);
    let last = offsets[2];
    let whole = fs::read(&path).unwrap();
    for at in last as usize..end {
        let mut flipped = whole.clone();
        flipped[at] ^= 0x40;
        fs::write(&path, &flipped).unwrap();
        // Strict: refused, naming where the tail starts, nothing changed.
        match strict().journal::<Event, Snapshot>(&path) {
            Err(Error::DamagedJournal { offset, .. }) => assert_eq!(offset, last, "byte {at}"),
            other => panic!("byte {at}: expected DamagedJournal, got {other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), flipped);
        // What a tool sees before anything is cut.
        let records = Options::new().journal_records(&path).unwrap();
        let ahead = records.recovered().expect("a tail to cut");
        assert_eq!(records.count(), 2);
        // The default: cut, and said.
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        let cut: Recovered = journal.recovered().expect("the cut is reported");
        assert_eq!(cut, ahead, "byte {at}");
        assert_eq!(cut.offset, last);
        assert_eq!(cut.bytes, (end as u64) - last);
        assert!(cut.records <= 1);
        assert_eq!(ids(&journal), vec![0, 1]);
        drop(journal);
        // Opened again: nothing more to cut.
        assert_eq!(
            Journal::<Event, Snapshot>::open(&path).unwrap().recovered(),
            None
        );
    }
}

#[test]
fn a_clean_journal_reports_no_cut_and_a_torn_append_reports_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    crashed(&path, 2);
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.recovered(), None);
    journal
        .append_many(&[event(2), event(3), event(4)])
        .unwrap();
    drop(journal);
    unmark(&path);
    let (offsets, end) = layout(&path);
    // The flush's last record lost its data: two whole records before it and its header
    // are in the tail of the flush, which starts at its first record.
    let mut torn = fs::read(&path).unwrap();
    torn[offsets[4] as usize + 24..end].fill(0);
    fs::write(&path, &torn).unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    let cut = journal.recovered().unwrap();
    assert_eq!(cut.offset, offsets[4]);
    assert_eq!(cut.records, 1);
    assert_eq!(ids(&journal), vec![0, 1, 2, 3]);
}

#[test]
fn a_log_created_again_beside_its_snapshots_goes_on_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        let events: Vec<Event> = (0..100).map(event).collect();
        journal.append_many(&events).unwrap();
        journal
            .checkpoint(&Snapshot {
                ids: (0..100).collect(),
            })
            .unwrap();
    }
    fs::remove_file(&path).unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.len(), 100);
    for id in 100..103 {
        assert_eq!(journal.append(&event(id)).unwrap(), id);
    }
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids.len(), 100);
    assert_eq!(
        tail.map(|e| e.unwrap().id).collect::<Vec<_>>(),
        vec![100, 101, 102],
        "acknowledged records must never be taken as covered by the snapshot"
    );
}

#[test]
fn a_snapshot_claiming_records_the_log_never_had_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        for id in 0..3 {
            journal.append(&event(id)).unwrap();
        }
        journal
            .checkpoint(&Snapshot { ids: vec![0, 1, 2] })
            .unwrap();
        journal.append(&event(3)).unwrap();
    }
    // A snapshot from a later log that is gone (or the log restored from an old copy).
    fs::copy(
        dir.path().join("events.log.snapshot.3"),
        dir.path().join("events.log.snapshot.100"),
    )
    .unwrap();
    let before = fs::read(&path).unwrap();
    match Journal::<Event, Snapshot>::open(&path) {
        Err(Error::DamagedJournal { reason, .. }) => {
            assert!(reason.contains("events.log.snapshot.100"), "{reason}");
        }
        other => panic!("expected DamagedJournal, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    fs::remove_file(dir.path().join("events.log.snapshot.100")).unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids.len(), 3);
    assert_eq!(tail.map(|e| e.unwrap().id).collect::<Vec<_>>(), vec![3]);
}

const SECRET: &str = "the launch code is 0000";

fn secret_event(id: u64) -> Event {
    Event {
        id,
        text: SECRET.to_owned(),
    }
}

#[test]
fn records_are_sealed_with_the_options_layers() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::from_bytes([7; 32]);
    for (name, options) in [
        ("raw.log", Options::new().encrypt(key.clone())),
        (
            "passphrase.log",
            Options::new().encrypt(Key::from_passphrase("correct horse")),
        ),
        (
            "all.log",
            Options::new()
                .encrypt(key.clone())
                .compress(3)
                .checksum(true),
        ),
    ] {
        let path = dir.path().join(name);
        {
            let journal = options.journal::<Event, Snapshot>(&path).unwrap();
            for id in 0..50 {
                journal.append(&secret_event(id)).unwrap();
            }
            journal
                .append_many(&(50..100).map(secret_event).collect::<Vec<_>>())
                .unwrap();
        }
        let bytes = fs::read(&path).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{name}: a record is in clear"
        );
        // Read back with the key: every record, in order.
        let journal = options.journal::<Event, Snapshot>(&path).unwrap();
        let replayed: Vec<Event> = journal.replay().unwrap().map(Result::unwrap).collect();
        assert_eq!(replayed, (0..100).map(secret_event).collect::<Vec<_>>());
        drop(journal);
        let raw: Vec<_> = options
            .journal_records(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(raw.len(), 100);
        assert!(raw[7].data.contains(SECRET), "{}", raw[7].data);
        // Without the key: no writer (it would add records in clear), and the records are
        // refused one by one, never shown.
        assert!(matches!(
            Journal::<Event, Snapshot>::open(&path),
            Err(Error::KeyRequired { .. })
        ));
        for record in Options::new().journal_records(&path).unwrap() {
            assert!(matches!(record, Err(Error::KeyRequired { .. })));
        }
    }
    // The wrong key: refused, not garbage.
    let path = dir.path().join("raw.log");
    let wrong = Options::new().encrypt(Key::from_bytes([8; 32]));
    assert!(matches!(
        wrong.journal::<Event, Snapshot>(&path),
        Err(Error::Decrypt { .. })
    ));
    assert!(matches!(
        wrong.journal_records(&path).unwrap().next(),
        Some(Err(Error::Decrypt { .. }))
    ));
}

#[test]
fn a_record_in_clear_after_encrypted_ones_is_refused_and_never_sealed_by_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let keyed = Options::new().encrypt(Key::from_bytes([4; 32]));
    // Started in clear (a journal encrypted later), then a record with the key, then one
    // by a writer without it (the first record is in clear, so its open is not refused).
    Journal::<Event, Snapshot>::open(&path)
        .unwrap()
        .append(&secret_event(0))
        .unwrap();
    keyed
        .journal::<Event, Snapshot>(&path)
        .unwrap()
        .append(&secret_event(1))
        .unwrap();
    Journal::<Event, Snapshot>::open(&path)
        .unwrap()
        .append(&secret_event(2))
        .unwrap();
    let bytes = fs::read(&path).unwrap();
    let journal = keyed.journal::<Event, Snapshot>(&path).unwrap();
    let replayed: Vec<_> = journal.replay().unwrap().collect();
    assert!(matches!(
        replayed[..],
        [Ok(_), Ok(_), Err(Error::DamagedJournal { .. })]
    ));
    assert!(matches!(
        journal.rewrite(),
        Err(Error::DamagedJournal { .. })
    ));
    drop(journal);
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing rewritten");
}

#[test]
fn checkpoints_of_an_encrypted_journal_are_sealed_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let options = Options::new().encrypt(Key::from_bytes([9; 32]));
    let journal = options.journal::<Event, Snapshot>(&path).unwrap();
    journal.append(&secret_event(0)).unwrap();
    journal.checkpoint(&Snapshot { ids: vec![0] }).unwrap();
    journal.append(&secret_event(1)).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids, vec![0]);
    assert_eq!(tail.map(|e| e.unwrap().id).collect::<Vec<_>>(), vec![1]);
    let snapshot_bytes = fs::read(dir.path().join("events.log.snapshot.1")).unwrap();
    assert_eq!(snapshot_bytes[0], 0x89, "the snapshot is framed");
}

/// Headers that each claim most of a large file, and a sparse file of zeros after a damaged
/// header: each is read about once (the old scan read every claimed length).
#[test]
fn crafted_and_sparse_files_are_scanned_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    drop(Journal::<Event, Snapshot>::open(&path).unwrap());
    let header = fs::read(&path).unwrap()[..24].to_vec();
    let mut crafted = header.clone();
    crafted.extend([0xAB; 24]);
    for _ in 0..4000 {
        let at = crafted.len() as u64;
        let mut record = Vec::new();
        record.extend_from_slice(&(200u32 << 20).to_le_bytes());
        record.extend_from_slice(&1u32.to_le_bytes());
        record.extend_from_slice(&at.to_le_bytes());
        record.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&record);
        record.extend_from_slice(&crc.to_le_bytes());
        crafted.extend(record);
    }
    fs::write(&path, &crafted).unwrap();
    let records = Options::new().journal_records(&path).unwrap();
    assert_eq!(records.recovered().map(|cut| cut.offset), Some(24));
    assert!(persist::AuditLog::read(&path).unwrap().next().is_none());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.recovered().map(|cut| cut.offset), Some(24));
    assert_eq!(journal.len(), 0);
    drop(journal);
    // 64 MiB of holes after one damaged header.
    let mut sparse = header.clone();
    sparse.extend([0xCD; 24]);
    fs::write(&path, &sparse).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(
        journal.recovered().map(|cut| (cut.offset, cut.bytes)),
        Some((24, 24))
    );
}

#[test]
fn a_failed_sync_is_reported_as_the_journals_and_the_journal_refuses_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    journal.append(&event(0)).unwrap();
    let fault = inject_fault(dir.path(), IoOp::SyncFile, libc::EIO, 1);
    let error = journal.append(&event(1)).unwrap_err();
    assert_eq!(fault.hits(), 1);
    assert!(
        matches!(
            error,
            Error::Io {
                op: IoOp::SyncAppend,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(!message.contains("temporary"), "{message}");
    assert!(message.contains("journal"), "{message}");
    drop(fault);
    // Refused until opened again (a retried fsync can lie about dropped pages).
    let again = journal.append(&event(2)).unwrap_err();
    assert!(
        matches!(
            again,
            Error::Io {
                op: IoOp::SyncAppend,
                ..
            }
        ),
        "{again:?}"
    );
    drop(journal);
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(ids(&journal), vec![0]);
    journal.append(&event(1)).unwrap();
    assert_eq!(ids(&journal), vec![0, 1]);
}

#[test]
fn a_full_disk_for_the_preallocation_still_appends_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    // The first flush grows the file: its write with the zeros fails, the records alone fit.
    let fault = inject_fault(dir.path(), IoOp::Write, libc::ENOSPC, 1);
    journal.append(&event(0)).unwrap();
    assert_eq!(fault.hits(), 1);
    drop(fault);
    journal.append(&event(1)).unwrap();
    assert_eq!(ids(&journal), vec![0, 1]);
    // When the records do not fit either: ENOSPC, worded for a journal.
    let fault = inject_fault(dir.path(), IoOp::Write, libc::ENOSPC, 2);
    let error = journal.append(&event(2)).unwrap_err();
    drop(fault);
    assert!(
        matches!(
            error,
            Error::Io {
                op: IoOp::Append,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("temporary"), "{error}");
}

/// On a real file system with 40 KiB free, less than a flush's preallocation (64 KiB): a small
/// append succeeds, as a plain save of the same size does.
#[test]
fn a_nearly_full_ext4_takes_appends_smaller_than_the_preallocation() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("mnt");
    let Some(_mounted) = common::small_ext4(dir.path(), &point, 2048) else {
        return;
    };
    let filler = point.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let mut chunk = vec![0xEE; 64 << 10];
    let mut written = 0u64;
    while chunk.len() >= 1024 {
        match file.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(_) => {
                let half = chunk.len() / 2;
                chunk.truncate(half);
            }
        }
    }
    file.set_len(written - (40 << 10)).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let path = point.join("events.log");
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    journal.append(&event(0)).unwrap();
    journal.append(&event(1)).unwrap();
    assert_eq!(ids(&journal), vec![0, 1]);
    drop(journal);
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.recovered(), None);
    assert_eq!(ids(&journal), vec![0, 1]);
}
