use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, checksum = true)]
struct Settings {
    theme: String,
}

fn main() {}
