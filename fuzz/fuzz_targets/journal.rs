//! Journals from arbitrary bytes: opening (which cuts a torn tail), replaying and reading them
//! without their type must return records or typed errors, never panic or allocate without
//! bound; a journal that opened must open again unchanged, and take an append.
//!
//! The input is put after a valid journal header half of the time, so that the fuzzer works
//! on records rather than on the magic. `RUSTC_BOOTSTRAP=1 cargo fuzz run journal`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persist::{NoSnapshot, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EntryV1 {
    id: u64,
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = EntryV1)]
struct Entry {
    id: u64,
    tags: Vec<String>,
}

impl From<EntryV1> for Entry {
    fn from(old: EntryV1) -> Entry {
        Entry {
            id: old.id,
            tags: Vec::new(),
        }
    }
}

const HEADER: [u8; 24] = [
    0x89, b'p', b'j', b'l', 0x0D, 0x0A, 0x1A, 0x0A, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fuzz_target!(|input: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entries.log");
    let mut bytes = Vec::new();
    if input.first().is_some_and(|first| first % 2 == 0) {
        bytes.extend_from_slice(&HEADER);
        bytes.extend_from_slice(&input[1..]);
    } else {
        bytes.extend_from_slice(input);
    }
    std::fs::write(&path, &bytes).unwrap();
    // A small cap, so that no record length makes the reader allocate much.
    let options = Options::new()
        .max_size(1 << 16)
        .durability(persist::Durability::None);
    if let Ok(records) = options.journal_records(&path) {
        for record in records {
            let _ = record;
        }
    }
    let Ok(journal) = options.journal::<Entry, NoSnapshot>(&path) else {
        return;
    };
    let count = journal.replay().unwrap().count() as u64;
    assert!(count <= journal.len());
    // Opening only cuts a torn tail, except that a log of the previous format (2) is upgraded
    // in place by its first writer.
    let format_2 = bytes.len() > 8 && bytes[..8] == HEADER[..8] && bytes[8] == 2;
    let cut = std::fs::read(&path).unwrap();
    assert!(format_2 || (cut.len() <= bytes.len() && bytes.starts_with(&cut)));
    journal
        .append(&Entry {
            id: 1,
            tags: vec!["t".into()],
        })
        .unwrap();
    drop(journal);
    let again = options.journal::<Entry, NoSnapshot>(&path).unwrap();
    assert_eq!(again.replay().unwrap().count() as u64, count + 1);
});
