//! The journal's workload: a small record, and the fixture of the replay rows (a journal and
//! JSON lines of the same envelopes), shared by the suite and `examples/journal_profile.rs`.

use std::path::Path;

use persist::{Durability, Journal, NoSnapshot, Options, Persisted};
use serde::{Deserialize, Serialize};

/// How many bytes one [`Event`] takes in a journal: a 24-byte record header and its 192-byte
/// envelope.
pub const RECORD_BYTES: u64 = 24 + 192;

/// A small record: [`RECORD_BYTES`] framed.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct Event {
    /// A number with six digits, so that every record has the same size.
    pub id: u64,
    /// What happened.
    pub kind: String,
    /// 128 bytes of text.
    pub text: String,
}

impl Event {
    /// The record `id` of the workload.
    pub fn sample(id: u64) -> Event {
        Event {
            id: 100_000 + id % 100_000,
            kind: "item-added".to_owned(),
            text: "x".repeat(128),
        }
    }
}

/// `count` sample records appended to a journal at `log` (without syncs), and the same
/// envelopes written as JSON lines at `lines`: what a replay is compared with. Returns the
/// journal and the size of the lines.
pub fn replay_fixture(log: &Path, lines: &Path, count: u64) -> (Journal<Event>, u64) {
    let journal = Options::new()
        .durability(Durability::None)
        .journal::<Event, NoSnapshot>(log)
        .unwrap();
    let events: Vec<Event> = (0..count).map(Event::sample).collect();
    journal.append_many(&events).unwrap();
    let mut text = Vec::new();
    for event in &events {
        serde_json::to_writer(&mut text, &serde_json::json!({"version": 1, "data": event}))
            .unwrap();
        text.push(b'\n');
    }
    std::fs::write(lines, &text).unwrap();
    (journal, text.len() as u64)
}
