use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    theme: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1, accept_unversioned)]
struct Settings {
    theme: String,
}

impl From<SettingsV1> for Settings {
    fn from(old: SettingsV1) -> Self {
        Settings { theme: old.theme }
    }
}

fn main() {}
