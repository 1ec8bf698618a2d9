use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Settings<'a> {
    theme: &'a str,
}

fn main() {}
