use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, validate = "check")]
struct Settings {
    port: u16,
}

fn main() {}
