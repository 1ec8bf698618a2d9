use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    text: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = EventV1, upcast_from = EventV1)]
struct Event {
    text: String,
}

impl From<EventV1> for Event {
    fn from(old: EventV1) -> Event {
        Event { text: old.text }
    }
}

fn main() {}
