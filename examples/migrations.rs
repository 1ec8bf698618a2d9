//! The migration test kit on a small editor's state, four versions old.
//!
//! - v1 `EditorV1`: what the first release stored.
//! - v2 `EditorV2`: fields renamed (`font` -> `font_family`, `size` -> `font_size`).
//! - v3 `EditorV3`: an added nested struct (`window`), and the theme became an enum: a stored
//!   theme name it does not know makes the step fail (`TryFrom`), instead of guessing.
//! - v4 `Editor`: the theme enum gained a variant, and the editor remembers recent files.
//!
//! `cargo run --example migrations` shows what a load of each fixture would do (a dry run);
//! `cargo run --example migrations -- write-fixture NAME` writes a fixture of the current
//! version, as you would after bumping it. The tests at the bottom are the whole kit:
//! `cargo test --example migrations`.

use std::path::PathBuf;

use persist::testing::Fixtures;
use persist::{Options, Persisted};
use serde::{Deserialize, Serialize};

/// Where the fixtures and schema locks of this chain live.
const FIXTURES: &str = "tests/fixtures/editor";

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct EditorV1 {
    pub theme: String,
    pub font: String,
    pub size: u32,
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = EditorV1)]
pub struct EditorV2 {
    pub theme: String,
    pub font_family: String,
    pub font_size: u32,
}

impl From<EditorV1> for EditorV2 {
    fn from(old: EditorV1) -> Self {
        EditorV2 {
            theme: old.theme,
            font_family: old.font,
            font_size: old.size,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = EditorV2)]
pub struct EditorV3 {
    pub theme: ThemeV3,
    pub font_family: String,
    pub font_size: u32,
    pub window: Window,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThemeV3 {
    Light,
    Dark,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    pub maximized: bool,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            width: 1024,
            height: 768,
            maximized: false,
        }
    }
}

/// A theme name from before themes were an enum that maps to none of them.
#[derive(Debug, thiserror::Error)]
#[error("unknown theme name (expected \"light\" or \"dark\")")]
pub struct UnknownTheme;

impl TryFrom<EditorV2> for EditorV3 {
    type Error = UnknownTheme;

    fn try_from(old: EditorV2) -> Result<Self, UnknownTheme> {
        let theme = match old.theme.as_str() {
            "light" => ThemeV3::Light,
            "dark" => ThemeV3::Dark,
            _ => return Err(UnknownTheme),
        };
        Ok(EditorV3 {
            theme,
            font_family: old.font_family,
            font_size: old.font_size,
            window: Window::default(),
        })
    }
}

/// The current version.
#[derive(Debug, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 4, migrate_from = EditorV3)]
pub struct Editor {
    pub theme: Theme,
    pub font_family: String,
    pub font_size: u32,
    pub window: Window,
    pub recent_files: Vec<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    #[default]
    Light,
    Dark,
    HighContrast,
}

impl From<EditorV3> for Editor {
    fn from(old: EditorV3) -> Self {
        Editor {
            theme: match old.theme {
                ThemeV3::Light => Theme::Light,
                ThemeV3::Dark => Theme::Dark,
            },
            font_family: old.font_family,
            font_size: old.font_size,
            window: old.window,
            recent_files: Vec::new(),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = Fixtures::<Editor>::new(FIXTURES);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, name] = args.as_slice()
        && command == "write-fixture"
    {
        let editor = Editor {
            theme: Theme::HighContrast,
            font_family: "Iosevka".into(),
            font_size: 15,
            window: Window {
                width: 1600,
                height: 1000,
                maximized: true,
            },
            recent_files: vec!["notes.md".into()],
        };
        let path = fixtures.write(name, &editor)?;
        println!("wrote {}: review it and commit it", path.display());
        return Ok(());
    }
    for fixture in fixtures.load_all()? {
        println!("{}\n", Options::new().inspect::<Editor>(&fixture.path)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kit: every fixture of every version loaded and snapshotted, every version's shape
    // checked against its lock.
    persist::testing::migration_tests!(editor: Editor, FIXTURES);

    /// The project's own proof that the lock fires (you do not need this in your tests): the
    /// current version with a field added and its version left at 4.
    mod changed_without_a_version_bump {
        use super::super::{EditorV3, Theme, Window};
        use persist::Persisted;
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Serialize, Deserialize, Persisted)]
        #[persist(version = 4, migrate_from = EditorV3)]
        pub struct Editor {
            pub theme: Theme,
            pub font_family: String,
            pub font_size: u32,
            pub window: Window,
            pub recent_files: Vec<std::path::PathBuf>,
            pub tab_width: u8,
        }

        impl From<EditorV3> for Editor {
            fn from(_: EditorV3) -> Self {
                unreachable!("only the shape is checked")
            }
        }
    }

    #[test]
    fn the_schema_lock_fires_when_a_struct_changes_without_a_version_bump() {
        let fixtures = Fixtures::<changed_without_a_version_bump::Editor>::new(FIXTURES);
        let changes = fixtures.schema_changes().unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let message = changes[0].to_string();
        for expected in [
            "the serialized shape of `Editor` version 4 changed, but its version did not",
            "+  tab_width: u8,",
            "#[persist(version = 5, migrate_from = <the old type>)]",
            "PERSIST_ACCEPT_SCHEMA=1 cargo test",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in:\n{message}"
            );
        }
    }

    /// A change inside a nested enum counts too. Nested types are named by where they are used
    /// (`$.theme`), not by their Rust names: renaming a type is not a schema change.
    #[test]
    fn the_schema_lock_sees_nested_types() {
        let locked = std::fs::read_to_string(format!("{FIXTURES}/v4/schema.txt")).unwrap();
        assert!(locked.contains("$.theme = enum {\n  light,\n  dark,\n  high_contrast,\n}"));
        assert!(locked.contains("$.window = struct {"));
    }
}
