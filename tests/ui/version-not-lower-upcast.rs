use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 3)]
struct EventV3 {
    text: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, upcast_from = EventV3)]
struct Event {
    text: String,
}

impl From<EventV3> for Vec<Event> {
    fn from(old: EventV3) -> Vec<Event> {
        vec![Event { text: old.text }]
    }
}

fn main() {}
