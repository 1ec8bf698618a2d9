use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, validate = check)]
struct Settings {
    port: u16,
}

/// Returns a bool, not a `Result<(), E>`.
fn check(settings: &Settings) -> bool {
    settings.port != 0
}

fn main() {}
