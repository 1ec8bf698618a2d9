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
}

/// Has no `std::error::Error` impl.
#[derive(Debug)]
struct NotAnError;

impl TryFrom<SettingsV1> for Settings {
    type Error = NotAnError;

    fn try_from(old: SettingsV1) -> Result<Self, NotAnError> {
        Ok(Settings { theme: old.theme })
    }
}

fn main() {}
