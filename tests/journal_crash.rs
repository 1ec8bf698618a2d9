//! SIGKILL at random moments of a process appending to a journal, 200 times: every record whose
//! append returned is there afterwards, no partial record is ever replayed, and the records are
//! exactly 0, 1, 2, ... with no gap or repeat. Records are ~10 KiB, so that a kill can land in
//! the middle of a record's write (Linux stops a write to a regular file between pages for a
//! fatal signal), leaving a torn tail for the next open to cut.
//!
//! SIGKILL cannot show durability (the page cache survives a killed process; the power-cut
//! harness does that for files), but it does show that a torn append is never replayed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Rng;
use persist::{Durability, Journal, Options, Persisted};
use serde::{Deserialize, Serialize};

const KILLS: usize = 200;
const APPENDER_FILE: &str = "PERSIST_TEST_APPENDER_FILE";

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Entry {
    id: u64,
    padding: String,
}

fn options() -> Options {
    // No fsync: a killed process loses nothing from the page cache, and the appends are fast
    // enough for many to be in flight at each kill.
    Options::new().durability(Durability::None)
}

fn entry(id: u64) -> Entry {
    Entry {
        id,
        padding: format!("{id:>20}").repeat(500),
    }
}

/// The body of each child of `kills_never_leave_a_partial_record`: appends ever higher ids (one
/// at a time and in batches of three), printing each id once its append returned. Does
/// nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn appender() {
    let Ok(path) = std::env::var(APPENDER_FILE) else {
        return;
    };
    let journal = options()
        .journal::<Entry, persist::NoSnapshot>(&path)
        .unwrap();
    let mut next = journal.len();
    let stdout = std::io::stdout();
    loop {
        if next.is_multiple_of(2) {
            journal.append(&entry(next)).unwrap();
            writeln!(stdout.lock(), "{next}").unwrap();
            next += 1;
        } else {
            let batch = [entry(next), entry(next + 1), entry(next + 2)];
            journal.append_many(&batch).unwrap();
            writeln!(stdout.lock(), "{}", next + 2).unwrap();
            next += 3;
        }
    }
}

/// The length of the record of `id` as JSON (the padding has the same width for every id).
fn record_len(id: u64) -> usize {
    serde_json::to_string(&entry(id)).unwrap().len()
}

/// The number of whole records, after checking each is the record of its index, whole: read
/// without decoding (the replay of every record after every kill would make the test slow):
/// the id starts the data, and the data's length follows from the id.
fn whole_records(path: &Path, seed: u64) -> (u64, bool) {
    let without_id = record_len(0) - 1;
    let mut records = options().journal_records(path).unwrap();
    let mut count = 0;
    for record in &mut records {
        let record = record.unwrap();
        assert_eq!(record.index, count);
        assert!(
            record.data.starts_with(&format!("{{\"id\":{count},")),
            "record {count} holds another id (seed {seed})"
        );
        assert_eq!(
            record.data.len(),
            without_id + count.to_string().len(),
            "a partial record (seed {seed})"
        );
        count += 1;
    }
    (count, records.torn_tail().is_some())
}

#[test]
fn kills_never_leave_a_partial_record() {
    let (mut rng, seed) = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entries.log");

    let mut acknowledged: Option<u64> = None;
    let mut torn_tails = 0;
    let mut appended_runs = 0;
    for _ in 0..KILLS {
        let mut child = common::child("appender", &[(APPENDER_FILE, &path)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed at a random moment once the child has appended (its first id is printed),
        // so that the kill lands among appends, not in the child's start-up.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let is_id = line.trim().parse::<u64>().is_ok();
            seen.push(line);
            if is_id {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(8_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let before = acknowledged;
        // The harness's own lines (with --quiet, none before the body) are not numbers.
        for line in seen.into_iter().chain(lines.map(Result::unwrap)) {
            if let Ok(id) = line.trim().parse::<u64>() {
                acknowledged = Some(acknowledged.map_or(id, |last| last.max(id)));
            }
        }
        if acknowledged != before {
            appended_runs += 1;
        }
        let (count, torn) = whole_records(&path, seed);
        torn_tails += usize::from(torn);
        if let Some(acknowledged) = acknowledged {
            assert!(
                count > acknowledged,
                "acknowledged record {acknowledged} missing: only {count} (seed {seed})"
            );
        }
    }
    // The last word: a typed replay of everything, through the torn-tail cut of an open.
    let journal = Journal::<Entry>::open(&path).unwrap();
    let total = journal.len();
    for (index, entry) in journal.replay().unwrap().enumerate() {
        let entry = entry.unwrap();
        assert_eq!((entry.id, entry.padding.len()), (index as u64, 10_000));
    }
    println!(
        "{KILLS} kills, {appended_runs} runs appended at least one record, {total} records, \
         {torn_tails} torn tails cut"
    );
    assert_eq!(
        appended_runs, KILLS,
        "every child appends before it is killed"
    );
}
