use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
struct Settings {
    theme: String,
}

fn main() {}
