//! Event types that changed shape: version 1 of a shopping list's events was one struct with
//! optional parts; version 2 split it into an enum (an "added and renamed" record becomes two
//! events, a heartbeat none); version 3 renamed the enum's variants. A journal written by the
//! first program replays as version 3 events, and `rewrite` stores them at version 3 once,
//! keeping the old log as a backup.
//!
//! ```sh
//! cargo run --example journal_upcast
//! ```

use persist::{Journal, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    item: String,
    renamed_to: Option<String>,
    heartbeat: bool,
}

/// One version 1 record becomes any number of these: `upcast_from`.
#[derive(Debug, Serialize, Deserialize, Persisted)]
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

/// Renamed variants: one value each, `migrate_from`.
#[derive(Debug, Serialize, Deserialize, Persisted)]
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

fn main() -> Result<(), persist::Error> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("list.log");

    // The first program's journal.
    {
        let journal: Journal<EventV1> = Journal::open(&path)?;
        journal.append_many(&[
            EventV1 {
                item: "milk".into(),
                renamed_to: None,
                heartbeat: false,
            },
            EventV1 {
                item: "bread".into(),
                renamed_to: Some("rye".into()),
                heartbeat: false,
            },
            EventV1 {
                item: String::new(),
                renamed_to: None,
                heartbeat: true,
            },
        ])?;
    }

    // Today's program: three old records, replayed as three current events.
    let journal: Journal<Event> = Journal::open(&path)?;
    for event in journal.replay()? {
        println!("replayed: {:?}", event?);
    }

    // Store them at version 3 once; the old log is kept beside it.
    let rewritten = journal.rewrite()?;
    println!(
        "rewrote {} records as {}; the old log is kept as {}",
        rewritten.before,
        rewritten.after,
        rewritten.backup.expect("a backup").display()
    );
    Ok(())
}
