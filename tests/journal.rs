//! `Journal`: appends, replay with migration, torn tails cut on open, damage reported with its
//! offset, hostile input, checkpoints that survive a crash between their steps, one writer.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use persist::{Error, Journal, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = EventV1)]
struct Event {
    id: u64,
    text: String,
}

impl From<EventV1> for Event {
    fn from(old: EventV1) -> Event {
        Event {
            id: old.id,
            text: format!("event {} (from version 1)", old.id),
        }
    }
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

fn replayed(journal: &Journal<Event, Snapshot>) -> Vec<u64> {
    journal
        .replay()
        .unwrap()
        .map(|event| event.unwrap().id)
        .collect()
}

/// A journal at `path` holding `count` events, closed.
fn written(path: &Path, count: u64) {
    let journal = Journal::<Event, Snapshot>::open(path).unwrap();
    for id in 0..count {
        journal.append(&event(id)).unwrap();
    }
}

#[test]
fn appends_replay_in_order_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir.path().join("nested"));
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        assert!(journal.is_empty());
        assert_eq!(journal.append(&event(0)).unwrap(), 0);
        let batch: Vec<Event> = (1..50).map(event).collect();
        assert_eq!(journal.append_many(&batch).unwrap(), 1);
        assert_eq!(journal.append_many(&[]).unwrap(), 50);
        assert_eq!(journal.len(), 50);
        assert_eq!(replayed(&journal), (0..50).collect::<Vec<_>>());
    }
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.len(), 50);
    journal.append(&event(50)).unwrap();
    let all: Vec<Event> = journal.replay().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 51);
    assert_eq!(all[50], event(50));
}

#[test]
fn old_records_migrate_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    {
        let old = Journal::<EventV1>::open(&path).unwrap();
        old.append(&EventV1 { id: 7 }).unwrap();
    }
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    journal.append(&event(8)).unwrap();
    let all: Vec<Event> = journal.replay().unwrap().map(Result::unwrap).collect();
    assert_eq!(all[0].text, "event 7 (from version 1)");
    assert_eq!(all[1], event(8));
}

/// Where the whole records of the journal at `path` end (the file may go on with zeros: space
/// the journal preallocated).
fn records_end(path: &Path) -> usize {
    let last = Options::new()
        .journal_records(path)
        .unwrap()
        .map(Result::unwrap)
        .last();
    last.map_or(24, |last| {
        // The record's length is the first field of its 24-byte header.
        let bytes = fs::read(path).unwrap();
        let at = last.offset as usize;
        at + 24 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
    })
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 3);
    let three = records_end(&path);
    let whole = fs::read(&path).unwrap()[..three].to_vec();
    fs::write(&path, &whole).unwrap();
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        journal.append(&event(3)).unwrap();
    }
    let four = fs::read(&path).unwrap();
    let four_end = records_end(&path);
    for cut in three + 1..four_end {
        // The file ends in the record, or the rest of it is zeros (preallocated space).
        for zeros in [0, four.len() - cut] {
            let mut torn = four[..cut].to_vec();
            torn.resize(cut + zeros, 0);
            fs::write(&path, &torn).unwrap();
            let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
            assert_eq!(journal.len(), 3, "cut at {cut}");
            assert_eq!(replayed(&journal), vec![0, 1, 2], "cut at {cut}");
            assert_eq!(&fs::read(&path).unwrap()[..three], whole, "cut at {cut}");
            drop(journal);
        }
    }
}

#[test]
fn a_zero_filled_or_checksum_failing_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 4);
    let end = records_end(&path);
    let whole = fs::read(&path).unwrap()[..end].to_vec();
    // What ext4 can leave after a power cut: the size grew, the data never came.
    let mut zeros = whole.clone();
    zeros.extend_from_slice(&[0; 5000]);
    fs::write(&path, &zeros).unwrap();
    assert_eq!(Journal::<Event, Snapshot>::open(&path).unwrap().len(), 4);
    assert_eq!(&fs::read(&path).unwrap()[..end], whole);
    assert!(
        Options::new()
            .journal_records(&path)
            .unwrap()
            .torn_tail()
            .is_none(),
        "zeros after the records are free space, not a torn record"
    );
    // A bit flipped in the last record's data: a torn write of its last sector.
    let mut flipped = whole.clone();
    flipped[end - 3] ^= 0x10;
    fs::write(&path, &flipped).unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(replayed(&journal), vec![0, 1, 2]);
    journal.append(&event(3)).unwrap();
    assert_eq!(replayed(&journal), vec![0, 1, 2, 3]);
}

#[test]
fn damage_before_the_last_record_is_an_error_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 5);
    let whole = fs::read(&path).unwrap();
    // In the first record's data (it starts after the 24-byte file header and its own
    // 24-byte header), and in the second record's header.
    let first_len = u32::from_le_bytes(whole[24..28].try_into().unwrap()) as usize;
    let second = 24 + 24 + first_len;
    for (at, offset) in [(24 + 24 + 5, 24), (second + 1, second)] {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x01;
        fs::write(&path, &damaged).unwrap();
        match Journal::<Event, Snapshot>::open(&path) {
            Err(Error::DamagedJournal {
                path: named,
                offset: found,
                ..
            }) => {
                assert_eq!(named, path);
                assert_eq!(found, offset as u64);
            }
            other => panic!("expected DamagedJournal at {offset}, got {other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), damaged, "the journal was changed");
    }
}

/// A crash in the middle of a flush can leave any of its pages unwritten, in any order (ext4
/// writes the pages of a preallocated file back in place): records of the torn flush after a
/// missing page are cut with it. Damage before the last flush stays an error.
#[test]
fn a_torn_flush_with_pages_out_of_order_is_cut_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 2);
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        journal
            .append_many(&[event(2), event(3), event(4)])
            .unwrap();
    }
    // As a crash during the batch's flush leaves it: without the mark of a clean close.
    let whole = fs::read(&path).unwrap()[..records_end(&path)].to_vec();
    let records: Vec<_> = Options::new()
        .journal_records(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = records[2].offset as usize;
    // The page holding the batch's first record never reached the disk; the later ones did.
    for (from, to) in [(batch, batch + 24), (batch + 30, batch + 40)] {
        let mut torn = whole.clone();
        torn[from..to].fill(0);
        fs::write(&path, &torn).unwrap();
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        assert_eq!(replayed(&journal), vec![0, 1]);
        drop(journal);
        // Cut: the later records of the torn flush are gone too (the file ends where the
        // flush started, after the mark of the earlier clean close).
        assert_eq!(fs::metadata(&path).unwrap().len(), batch as u64);
    }
    // The same damage in a record of an earlier flush: the batch after it proves that flush
    // was synced, so it is damage.
    let mut damaged = whole.clone();
    damaged[records[1].offset as usize + 30] ^= 0x01;
    fs::write(&path, &damaged).unwrap();
    assert!(matches!(
        Journal::<Event, Snapshot>::open(&path),
        Err(Error::DamagedJournal { offset, .. }) if offset == records[1].offset
    ));
}

/// Real torn pages: a flush of several 4 KiB pages interrupted by a crash leaves any subset of
/// them on disk, each page whole (the old bytes or the new), in any order. For every subset of
/// the pages a batch's flush touched, the journal opens without error and replays the records
/// before the batch plus a prefix of the batch, each record whole: never a gap, never damage.
#[test]
fn every_subset_of_a_torn_flush_s_pages_opens_to_a_prefix() {
    const PAGE: usize = 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 3);
    // The file as the crash finds it before the flush: three records, the mark of a clean
    // close, preallocated zeros.
    let old = fs::read(&path).unwrap();
    let start = records_end(&path);
    let big = |id: u64| Event {
        id,
        text: format!("{id:>8}").repeat(400),
    };
    let batch: Vec<Event> = (3..11).map(big).collect();
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        journal.append_many(&batch).unwrap();
    }
    let end = records_end(&path);
    // The file right after the flush: the batch, and no mark of a clean close yet (those bytes
    // were preallocated zeros).
    let mut new = fs::read(&path).unwrap();
    assert_eq!(
        new.len(),
        old.len(),
        "the batch fitted in the preallocated space"
    );
    new[end..end + 24].fill(0);
    let pages: Vec<usize> = (start / PAGE..end.div_ceil(PAGE)).collect();
    assert!(pages.len() >= 6, "{} pages", pages.len());
    let (mut prefixes, mut subsets) = (std::collections::BTreeSet::new(), 0);
    for subset in 0u32..(1 << pages.len()) {
        let mut torn = old.clone();
        for (bit, page) in pages.iter().enumerate() {
            if subset & (1 << bit) != 0 {
                let range = page * PAGE..((page + 1) * PAGE).min(torn.len());
                torn[range.clone()].copy_from_slice(&new[range]);
            }
        }
        fs::write(&path, &torn).unwrap();
        let journal = Journal::<Event, Snapshot>::open(&path)
            .unwrap_or_else(|error| panic!("pages {subset:b}: {error}"));
        let events: Vec<Event> = journal
            .replay()
            .unwrap()
            .map(|event| event.unwrap_or_else(|error| panic!("pages {subset:b}: {error}")))
            .collect();
        let held = events.len();
        assert!((3..=11).contains(&held), "pages {subset:b}: {held} records");
        let expected: Vec<Event> = (0..3).map(event).chain((3..held as u64).map(big)).collect();
        assert_eq!(events, expected, "pages {subset:b}");
        if subset == (1 << pages.len()) - 1 {
            assert_eq!(held, 11, "every page written: the whole batch");
        }
        prefixes.insert(held);
        subsets += 1;
    }
    eprintln!(
        "{subsets} torn states of a {}-page flush: prefixes of {prefixes:?} records",
        pages.len()
    );
    assert!(prefixes.len() > 2, "the torn states left only {prefixes:?}");
}

#[test]
fn appends_preallocate_zeroed_space_and_reopen_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 10);
    let size = fs::metadata(&path).unwrap().len() as usize;
    let end = records_end(&path);
    assert!(size >= 64 * 1024, "{size} bytes for {end} of records");
    // The records, the mark of a clean close (an empty record of version 0), then zeros.
    let bytes = fs::read(&path).unwrap();
    assert_eq!(
        &bytes[end..end + 8],
        &[0; 8],
        "the mark's length and version"
    );
    assert!(bytes[end + 24..].iter().all(|&byte| byte == 0));
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    assert_eq!(journal.len(), 10);
    // Reopening leaves the space in place, and appends go on in it.
    assert_eq!(fs::metadata(&path).unwrap().len() as usize, size);
    journal.append(&event(10)).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len() as usize, size);
    assert_eq!(replayed(&journal), (0..11).collect::<Vec<_>>());
}

#[test]
fn hostile_files_are_typed_errors_or_clean_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 0);
    let header = fs::read(&path).unwrap();
    assert_eq!(header.len(), 24);
    let record_header = |len: u32| {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&24u64.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    };
    // A genuine header whose data never arrived: a torn append, cut.
    let mut past_end = header.clone();
    past_end.extend_from_slice(&record_header(1000));
    past_end.extend_from_slice(b"{\"version\"");
    fs::write(&path, &past_end).unwrap();
    assert_eq!(Journal::<Event, Snapshot>::open(&path).unwrap().len(), 0);
    assert_eq!(fs::read(&path).unwrap(), header);
    // A length past any limit: refused without allocating it.
    let mut huge = header.clone();
    huge.extend_from_slice(&record_header(u32::MAX));
    huge.extend_from_slice(&[b'x'; 64]);
    fs::write(&path, &huge).unwrap();
    assert!(matches!(
        Journal::<Event, Snapshot>::open(&path),
        Err(Error::DamagedJournal { offset: 24, .. })
    ));
    // Not a journal at all, a later or an older (pre-release) format, a file shorter than the
    // header.
    let mut later = header.clone();
    later[8] = 4;
    let mut older = header.clone();
    older[8] = 1;
    for (bytes, expected) in [
        (&b"{\"version\":1,\"data\":{}}"[..], "corrupt"),
        (&later[..], "unsupported"),
        (&older[..], "unsupported"),
        (&header[..10], "corrupt"),
    ] {
        fs::write(&path, bytes).unwrap();
        let outcome = Journal::<Event, Snapshot>::open(&path);
        match (&outcome, expected) {
            (Err(Error::Corrupt { .. }), "corrupt")
            | (Err(Error::Unsupported { .. }), "unsupported") => {}
            _ => panic!("expected {expected}, got {outcome:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_value_that_cannot_be_saved_writes_nothing() {
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    struct Sample {
        value: f64,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Sample>::open(&path).unwrap();
    journal.append(&Sample { value: 1.0 }).unwrap();
    let before = fs::read(&path).unwrap();
    let batch = [Sample { value: 2.0 }, Sample { value: f64::NAN }];
    assert!(matches!(
        journal.append_many(&batch),
        Err(Error::Serialize { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(journal.len(), 1);
}

#[test]
fn checkpoints_restart_the_log_and_recover_returns_the_snapshot_and_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    let (none, empty) = journal.recover().unwrap();
    assert_eq!((none, empty.count()), (None, 0));
    for id in 0..10 {
        journal.append(&event(id)).unwrap();
    }
    journal
        .checkpoint(&Snapshot {
            ids: (0..10).collect(),
        })
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 24);
    assert_eq!(journal.len(), 10);
    journal.append(&event(10)).unwrap();
    journal.append(&event(11)).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids.len(), 10);
    assert_eq!(
        tail.map(|e| e.unwrap().id).collect::<Vec<_>>(),
        vec![10, 11]
    );
    // A second checkpoint removes the first snapshot.
    journal
        .checkpoint(&Snapshot {
            ids: (0..12).collect(),
        })
        .unwrap();
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["events.log", "events.log.lock", "events.log.snapshot.12"]
    );
}

#[test]
fn a_crash_between_the_snapshot_and_the_new_log_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 6);
    let old_log = fs::read(&path).unwrap();
    {
        let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
        journal
            .checkpoint(&Snapshot {
                ids: (0..6).collect(),
            })
            .unwrap();
    }
    // The state after a crash just after the snapshot was saved: the old log is still there.
    fs::write(&path, &old_log).unwrap();
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids, (0..6).collect::<Vec<_>>());
    assert_eq!(tail.count(), 0);
    // Records appended to that old log come after the snapshot.
    journal.append(&event(6)).unwrap();
    let (_, tail) = journal.recover().unwrap();
    assert_eq!(tail.map(|e| e.unwrap().id).collect::<Vec<_>>(), vec![6]);
    // And a crash before the older snapshot was removed: the newest one counts.
    fs::write(
        dir.path().join("events.log.snapshot.2"),
        fs::read(dir.path().join("events.log.snapshot.6")).unwrap(),
    )
    .unwrap();
    let (snapshot, _) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids.len(), 6);
}

#[test]
fn a_log_that_starts_after_its_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    journal.append(&event(0)).unwrap();
    journal.checkpoint(&Snapshot { ids: vec![0] }).unwrap();
    fs::remove_file(dir.path().join("events.log.snapshot.1")).unwrap();
    assert!(matches!(journal.recover(), Err(Error::Corrupt { .. })));
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let first = Journal::<Event, Snapshot>::open(&path).unwrap();
    // A second open in the same process fails at once (not after the 30 s lock timeout) and
    // says why.
    let started = std::time::Instant::now();
    let second = Journal::<Event, Snapshot>::open(&path).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(second, Error::AlreadyOpen { .. }), "{second}");
    assert!(
        second.to_string().contains("already open in this process"),
        "{second}"
    );
    drop(first);
    assert!(Journal::<Event, Snapshot>::open(&path).is_ok());
}

#[test]
fn appends_from_many_threads_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let journal = &journal;
            scope.spawn(move || {
                for i in 0..50 {
                    journal.append(&event(thread * 1000 + i)).unwrap();
                }
            });
        }
    });
    let mut ids = replayed(&journal);
    ids.sort();
    assert_eq!(ids.len(), 200);
    ids.dedup();
    assert_eq!(ids.len(), 200);
    drop(journal);
    assert_eq!(Journal::<Event, Snapshot>::open(&path).unwrap().len(), 200);
}

#[test]
fn group_commit_makes_every_concurrent_append_durable_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    for window in [Duration::ZERO, Duration::from_micros(300)] {
        let _ = fs::remove_file(&path);
        let journal = Options::new()
            .group_commit(window)
            .journal::<Event, Snapshot>(&path)
            .unwrap();
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let journal = &journal;
                scope.spawn(move || {
                    for i in 0..40 {
                        let index = journal.append(&event(thread * 1000 + i)).unwrap();
                        assert!(index < 320);
                    }
                });
            }
        });
        assert_eq!(journal.len(), 320);
        drop(journal);
        let reopened = Journal::<Event, Snapshot>::open(&path).unwrap();
        let mut ids = replayed(&reopened);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 320, "window {window:?}");
    }
}

#[test]
fn a_checkpoint_waits_for_a_group_commit_and_covers_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Options::new()
        .group_commit(Duration::from_millis(20))
        .journal::<Event, Snapshot>(&path)
        .unwrap();
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| journal.append(&event(1)).unwrap());
        while journal.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The appender's record is written and waits for its fsync (20 ms away); the checkpoint
        // waits for that fsync and covers the record.
        journal.checkpoint(&Snapshot { ids: vec![1] }).unwrap();
        assert_eq!(appender.join().unwrap(), 0);
    });
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot.unwrap().ids, vec![1]);
    assert_eq!(tail.count(), 0);
}

#[test]
fn a_fifo_or_a_directory_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.log");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for path in [fifo.as_path(), dir.path()] {
        assert!(
            matches!(
                Journal::<Event, Snapshot>::open(path),
                Err(Error::NotRegularFile { .. })
            ),
            "{}",
            path.display()
        );
        assert!(matches!(
            Options::new().journal_records(path),
            Err(Error::NotRegularFile { .. })
        ));
    }
}

#[test]
fn an_impossible_base_index_is_corrupt_not_an_overflow() {
    // Found by the `journal` fuzz target: a header whose base index is near u64::MAX made the
    // first append overflow.
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    written(&path, 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Journal::<Event, Snapshot>::open(&path),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        Options::new().journal_records(&path),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn async_appends_from_many_tasks_are_all_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for window in [None, Some(Duration::from_micros(200))] {
        let _ = fs::remove_file(&path);
        let options = match window {
            Some(window) => Options::new().group_commit(window),
            None => Options::new(),
        };
        let journal = std::sync::Arc::new(options.journal::<Event, Snapshot>(&path).unwrap());
        runtime.block_on(async {
            let tasks: Vec<_> = (0..100)
                .map(|id| {
                    let journal = std::sync::Arc::clone(&journal);
                    tokio::spawn(async move { journal.append_async(event(id)).await.unwrap() })
                })
                .collect();
            // Threads appending at the same time share the flushes.
            let journal_for_threads = std::sync::Arc::clone(&journal);
            let threads = std::thread::spawn(move || {
                for id in 100..150 {
                    journal_for_threads.append(&event(id)).unwrap();
                }
            });
            let mut indexes = Vec::new();
            for task in tasks {
                indexes.push(task.await.unwrap());
            }
            threads.join().unwrap();
            journal
                .append_many_async([event(150), event(151)])
                .await
                .unwrap();
            indexes.sort();
            indexes.dedup();
            assert_eq!(indexes.len(), 100);
            assert!(indexes.iter().all(|index| *index < 150));
        });
        drop(journal);
        let mut ids = replayed(&Journal::<Event, Snapshot>::open(&path).unwrap());
        ids.sort();
        assert_eq!(ids, (0..152).collect::<Vec<_>>(), "window {window:?}");
    }
}

#[test]
fn an_async_append_is_queued_when_called_even_if_its_future_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let journal = Journal::<Event, Snapshot>::open(&path).unwrap();
    drop(journal.append_async(event(0)));
    // The next append's flush writes it too; nothing waits forever.
    assert_eq!(journal.append(&event(1)).unwrap(), 1);
    // Dropped after its first poll started its flush on the worker threads.
    let mut started = Box::pin(journal.append_async(event(2)));
    let _ = started
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    drop(started);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(journal.append_async(event(3)).await.unwrap(), 3);
    });
    assert_eq!(replayed(&journal), vec![0, 1, 2, 3]);
}

#[test]
fn one_writer_whatever_name_opens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(dir.path());
    let first = Journal::<Event, Snapshot>::open(&path).unwrap();
    first.append(&event(1)).unwrap();
    // A hard link is another name for the same file, with a lock file of its own: the file's
    // own lock still allows one writer.
    let link = dir.path().join("hard.log");
    fs::hard_link(&path, &link).unwrap();
    let error = Journal::<Event, Snapshot>::open(&link).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
    // After a checkpoint the new log is held the same way.
    first.checkpoint(&Snapshot { ids: vec![1] }).unwrap();
    fs::remove_file(&link).unwrap();
    fs::hard_link(&path, &link).unwrap();
    let error = Journal::<Event, Snapshot>::open(&link).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
    drop(first);
    Journal::<Event, Snapshot>::open(&link).unwrap();
}
