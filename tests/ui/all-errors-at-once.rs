use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 0, colour = "blue", version = 2, accept_unversioned = true)]
struct Settings {
    theme: String,
}

fn main() {}
