use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml", renamed = "old -> new")]
struct Settings {
    theme: String,
}

fn main() {}
