//! The README's version-bump workflow, step by step, on a real fixtures folder: rename the old
//! struct (and a nested type with it), add the new version, write its fixture, run the kit. The
//! locks of the old versions must not change, and nothing needs `PERSIST_ACCEPT_SCHEMA`.

mod common;

use common::kit::run_the_kit;
use persist::Persisted;
use persist::testing::Fixtures;
use serde::{Deserialize, Serialize};

/// The application at version 3, before the bump.
mod before {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct SettingsV1 {
        pub dark: bool,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 2, migrate_from = SettingsV1)]
    pub struct SettingsV2 {
        pub theme: String,
    }

    impl From<SettingsV1> for SettingsV2 {
        fn from(old: SettingsV1) -> Self {
            SettingsV2 {
                theme: if old.dark { "dark" } else { "light" }.into(),
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 3, migrate_from = SettingsV2)]
    pub struct Settings {
        pub theme: String,
        pub font_size: u32,
        pub window: Window,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Window {
        pub width: u32,
        pub height: u32,
    }

    impl From<SettingsV2> for Settings {
        fn from(old: SettingsV2) -> Self {
            Settings {
                theme: old.theme,
                font_size: 12,
                window: Window {
                    width: 800,
                    height: 600,
                },
            }
        }
    }
}

/// Step 1: `Settings` renamed to `SettingsV3` (its `Window` to `WindowV3` too), same shape, same
/// version; the new `Settings` is version 4.
mod after {
    pub use super::before::SettingsV2;
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 3, migrate_from = SettingsV2)]
    pub struct SettingsV3 {
        pub theme: String,
        pub font_size: u32,
        pub window: WindowV3,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct WindowV3 {
        pub width: u32,
        pub height: u32,
    }

    impl From<SettingsV2> for SettingsV3 {
        fn from(old: SettingsV2) -> Self {
            let before = super::before::Settings::from(old);
            SettingsV3 {
                theme: before.theme,
                font_size: before.font_size,
                window: WindowV3 {
                    width: before.window.width,
                    height: before.window.height,
                },
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 4, migrate_from = SettingsV3)]
    pub struct Settings {
        pub theme: String,
        pub font_size: u32,
        pub tab_width: u8,
        pub window: Window,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Window {
        pub width: u32,
        pub height: u32,
        pub maximized: bool,
    }

    impl From<SettingsV3> for Settings {
        fn from(old: SettingsV3) -> Self {
            Settings {
                theme: old.theme,
                font_size: old.font_size,
                tab_width: 4,
                window: Window {
                    width: old.window.width,
                    height: old.window.height,
                    maximized: false,
                },
            }
        }
    }
}

#[test]
fn the_readme_bump_workflow_passes_without_accepting_any_schema_change() {
    assert!(
        std::env::var_os(persist::testing::ACCEPT_SCHEMA).is_none(),
        "run this test without {}",
        persist::testing::ACCEPT_SCHEMA
    );
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tests/fixtures/settings");

    // The state before the bump: a fixture of each version, locks written by a first run.
    let v3_fixtures = Fixtures::<before::Settings>::new(&folder);
    v3_fixtures
        .write("basic", &before::SettingsV1 { dark: true })
        .unwrap();
    v3_fixtures
        .write(
            "basic",
            &before::SettingsV2 {
                theme: "light".into(),
            },
        )
        .unwrap();
    v3_fixtures
        .write(
            "basic",
            &before::Settings {
                theme: "dark".into(),
                font_size: 14,
                window: before::Window {
                    width: 1024,
                    height: 768,
                },
            },
        )
        .unwrap();
    run_the_kit(&v3_fixtures);
    let v3_lock = std::fs::read_to_string(folder.join("v3/schema.txt")).unwrap();

    // Step 1 is the code change of `mod after`. Step 2: a fixture of the new version.
    let v4_fixtures = Fixtures::<after::Settings>::new(&folder);
    v4_fixtures
        .write(
            "basic",
            &after::Settings {
                theme: "dark".into(),
                font_size: 14,
                tab_width: 2,
                window: after::Window {
                    width: 1024,
                    height: 768,
                    maximized: true,
                },
            },
        )
        .unwrap();
    // Step 3: the kit passes; only the new version's lock is new.
    let changes = v4_fixtures.schema_changes().unwrap();
    let versions: Vec<u32> = changes.iter().map(|change| change.version).collect();
    assert_eq!(versions, [4], "{changes:?}");
    run_the_kit(&v4_fixtures);
    assert_eq!(
        std::fs::read_to_string(folder.join("v3/schema.txt")).unwrap(),
        v3_lock
    );
    // The old fixtures still load, migrated to version 4.
    let loaded = v4_fixtures.load_all().unwrap();
    assert_eq!(loaded.len(), 4);
    assert!(loaded.iter().all(|fixture| fixture.loaded.is_ok()));
}
