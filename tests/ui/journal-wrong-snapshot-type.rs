use persist::{Journal, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Event {
    id: u64,
}

#[derive(Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Todo {
    ids: Vec<u64>,
}

#[derive(Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Typo {
    ids: Vec<u64>,
}

fn main() -> Result<(), persist::Error> {
    let journal: Journal<Event, Todo> = Journal::open("events.log")?;
    journal.checkpoint(&Typo::default())?;
    let (snapshot, _tail): (Option<Typo>, _) = journal.recover()?;
    Ok(())
}
