use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 3)]
struct SettingsV3 {
    theme: String,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV3)]
struct Settings {
    theme: String,
}

impl From<SettingsV3> for Settings {
    fn from(old: SettingsV3) -> Self {
        Settings { theme: old.theme }
    }
}

fn main() {}
