//! The journal's writer states, through the shell's fault seam: a failed write or sync makes
//! the journal refuse to write (and to checkpoint, and to mark a clean close) until it is opened
//! again, with the file cut back to what is durable.

use std::path::Path;

use super::Journal;
use super::format::{FILE_HEADER, RECORD_HEADER, RecordHeader};
use crate::error::{Error, IoOp};
use crate::shell::faults::inject_fault;
use crate::{BoxError, Origin, Persisted};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Event {
    id: u64,
}

impl Persisted for Event {
    const VERSION: u32 = 1;
    type Previous = Origin;
    fn migrate(previous: Origin) -> Result<Self, BoxError> {
        match previous {}
    }
}

fn ids<S: Persisted>(journal: &Journal<Event, S>) -> Vec<u64> {
    journal.replay().unwrap().map(|e| e.unwrap().id).collect()
}

/// The last entry of the journal at `path` before its zeros: whether it is a close mark.
fn ends_with_mark(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let mut at = FILE_HEADER;
    let mut last_mark = false;
    while at + RECORD_HEADER <= bytes.len() {
        let Some(header) = RecordHeader::parse(bytes[at..at + RECORD_HEADER].try_into().unwrap())
        else {
            break;
        };
        last_mark = header.is_mark();
        at = header.end(at as u64) as usize;
    }
    last_mark
}

#[test]
fn a_failed_write_or_sync_refuses_appends_until_the_journal_is_opened_again() {
    for op in [IoOp::Write, IoOp::SyncFile] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let journal = Journal::<Event, Event>::open(&path).unwrap();
        journal.append(&Event { id: 0 }).unwrap();
        let end = journal.shared.lock().end;
        let fault = inject_fault(dir.path(), op);
        let error = journal.append(&Event { id: 1 }).unwrap_err();
        assert_eq!(fault.hits(), 1, "{op:?}");
        let expected = match op {
            IoOp::Write => IoOp::Append,
            _ => IoOp::SyncAppend,
        };
        assert!(
            matches!(&error, Error::Io { op, .. } if *op == expected),
            "{error:?}"
        );
        drop(fault);
        {
            let state = journal.shared.lock();
            assert!(state.failed.is_some());
            assert_eq!(state.end, end);
            assert_eq!(state.durable, 1);
        }
        // Cut back to what is durable.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        for refused in [
            journal.append(&Event { id: 2 }).map(drop),
            journal.checkpoint(&Event { id: 9 }),
        ] {
            assert!(matches!(refused, Err(Error::Io { op, .. }) if op == expected));
        }
        assert_eq!(journal.len(), 1);
        drop(journal);
        // No mark after a failure: the records before it were never vouched for again.
        assert!(!ends_with_mark(&path), "{op:?}");
        let journal = Journal::<Event>::open(&path).unwrap();
        assert_eq!(journal.recovered(), None);
        assert_eq!(ids(&journal), vec![0]);
        journal.append(&Event { id: 1 }).unwrap();
        assert_eq!(ids(&journal), vec![0, 1]);
        drop(journal);
        assert!(ends_with_mark(&path), "{op:?}");
    }
}

#[test]
fn a_clean_close_marks_the_end_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    drop(Journal::<Event>::open(&path).unwrap());
    // Nothing to vouch for: no mark.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_HEADER as u64);
    let journal = Journal::<Event>::open(&path).unwrap();
    journal.append(&Event { id: 0 }).unwrap();
    drop(journal);
    assert!(ends_with_mark(&path));
    let size = std::fs::read(&path).unwrap();
    // Opened and closed without appends: the mark stays the last entry, and no other is added.
    drop(Journal::<Event>::open(&path).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), size);
    let journal = Journal::<Event>::open(&path).unwrap();
    assert_eq!(journal.len(), 1);
    journal.append(&Event { id: 1 }).unwrap();
    assert_eq!(ids(&journal), vec![0, 1]);
}
