use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    theme: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
struct Settings {
    theme: String,
    font_size: u32,
}

fn main() {}
