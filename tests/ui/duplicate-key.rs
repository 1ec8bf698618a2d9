use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
#[persist(version = 2)]
struct Settings {
    theme: String,
}

fn main() {}
