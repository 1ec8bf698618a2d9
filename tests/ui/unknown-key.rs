use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1, migrate_form = SettingsV0)]
struct Settings {
    theme: String,
}

fn main() {}
