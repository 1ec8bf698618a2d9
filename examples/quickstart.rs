//! The quickstart: a settings file written by version 1 of an app is loaded by version 3,
//! migrated through both steps, and saved back in the current format.
//!
//! Run it with `cargo run --example quickstart`.

use std::path::PathBuf;

use persist::Persisted;
use serde::{Deserialize, Serialize};

/// What version 1 of the app stored.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    theme: String,
}

/// Version 2 added a font size.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
struct SettingsV2 {
    theme: String,
    font_size: u32,
}

impl From<SettingsV1> for SettingsV2 {
    fn from(old: SettingsV1) -> Self {
        SettingsV2 {
            theme: old.theme,
            font_size: 14,
        }
    }
}

/// Version 3, the current one: the theme is an enum, and the app remembers recent files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = SettingsV2)]
struct Settings {
    theme: Theme,
    font_size: u32,
    recent: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Theme {
    #[default]
    Light,
    Dark,
}

/// A stored theme name that version 3 does not know: the migration refuses it instead of
/// guessing, and the file stays as it was.
#[derive(Debug, thiserror::Error)]
#[error("unknown theme {0:?}: expected \"light\" or \"dark\"")]
struct BadTheme(String);

impl TryFrom<SettingsV2> for Settings {
    type Error = BadTheme;

    fn try_from(old: SettingsV2) -> Result<Self, BadTheme> {
        let theme = match old.theme.as_str() {
            "light" => Theme::Light,
            "dark" => Theme::Dark,
            _ => return Err(BadTheme(old.theme)),
        };
        Ok(Settings {
            theme,
            font_size: old.font_size,
            recent: Vec::new(),
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("persist-quickstart-{}", std::process::id()));
    let path = dir.join("settings.json");

    // What version 1 of the app left on disk.
    SettingsV1 {
        theme: "dark".to_owned(),
    }
    .save(&path)?;
    println!("path:   {}", path.display());
    println!("before: {}", std::fs::read_to_string(&path)?);

    // Version 3 reads it: deserialized as SettingsV1, then V1 -> V2 -> V3.
    let mut settings = Settings::load(&path)?;
    println!(
        "loaded: {settings:?} (stored as version 1, migrated to version {})",
        Settings::VERSION
    );

    settings.recent.push(PathBuf::from("notes.txt"));
    settings.save(&path)?;
    println!("after:  {}", std::fs::read_to_string(&path)?);

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
