use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    text: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, upcast_from = EventV1)]
enum Event {
    Added(String),
}

fn main() {}
