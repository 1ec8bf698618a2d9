//! An event-sourced todo list: every change is an event appended to a journal, a snapshot of
//! the list is checkpointed every few events, and on start the list is rebuilt from the last
//! snapshot and the events after it.
//!
//! ```sh
//! cargo run --example journal                  # a journal in a temporary folder
//! cargo run --example journal -- todo.log      # that journal: run it again, the list is back
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use persist::{Journal, Persisted};
use serde::{Deserialize, Serialize};

/// One change of the list.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
enum Event {
    Added { id: u64, title: String },
    Done { id: u64 },
    Removed { id: u64 },
}

/// The list, as the events build it; what a checkpoint stores.
#[derive(Debug, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Todo {
    next_id: u64,
    items: BTreeMap<u64, Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    title: String,
    done: bool,
}

impl Todo {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Added { id, title } => {
                self.items.insert(
                    *id,
                    Item {
                        title: title.clone(),
                        done: false,
                    },
                );
                self.next_id = self.next_id.max(id + 1);
            }
            Event::Done { id } => {
                if let Some(item) = self.items.get_mut(id) {
                    item.done = true;
                }
            }
            Event::Removed { id } => {
                self.items.remove(id);
            }
        }
    }
}

/// A snapshot every this many events.
const CHECKPOINT_EVERY: u64 = 4;

fn main() -> Result<(), persist::Error> {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let path = std::env::args()
        .nth(1)
        .map_or_else(|| temporary.path().join("todo.log"), PathBuf::from);

    // Recover: the last snapshot, then every event after it (migrated if an older program
    // wrote them). A crash in the middle of an append left at most a torn last record, which
    // opening the journal cut off: it was never acknowledged.
    let journal: Journal<Event, Todo> = Journal::open(&path)?;
    let (snapshot, tail) = journal.recover()?;
    let mut todo = snapshot.unwrap_or_default();
    let mut replayed = 0;
    for event in tail {
        todo.apply(&event?);
        replayed += 1;
    }
    println!(
        "recovered {} items ({replayed} events after the last snapshot)",
        todo.items.len()
    );

    // Change the list: each change is durable when `append` returns.
    let first = todo.next_id;
    let events = [
        Event::Added {
            id: first,
            title: "water the plants".into(),
        },
        Event::Added {
            id: first + 1,
            title: "write the report".into(),
        },
        Event::Done { id: first },
        Event::Added {
            id: first + 2,
            title: "call the plumber".into(),
        },
        Event::Removed { id: first + 1 },
    ];
    for event in &events {
        journal.append(event)?;
        todo.apply(event);
        if journal.len().is_multiple_of(CHECKPOINT_EVERY) {
            // The snapshot is saved durably, then the log restarts after it: a crash at any
            // moment leaves the old snapshot and the whole log, or the new one and what follows.
            journal.checkpoint(&todo)?;
            println!("checkpoint at {} events", journal.len());
        }
    }
    for (id, item) in &todo.items {
        let mark = if item.done { "x" } else { " " };
        println!("[{mark}] {id}: {}", item.title);
    }
    println!("journal: {}", path.display());
    Ok(())
}
