use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(accept_unversioned)]
struct Settings {
    theme: String,
}

fn main() {}
