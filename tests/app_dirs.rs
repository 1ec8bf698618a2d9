//! `AppDirs`: the platform's directories (XDG here), the environment overrides, and private
//! creation. One test, because it changes the process environment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use persist::{AppDirs, AppDirsError, Persisted};

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, Persisted)]
#[persist(version = 1)]
struct Settings {
    theme: String,
}

fn set(name: &str, value: Option<&Path>) {
    // SAFETY: this binary's only test runs these calls one after another; no other thread reads
    // or writes the environment meanwhile.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

#[test]
fn directories_follow_the_platform_and_the_overrides_and_are_created_private() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let xdg_config = root.path().join("xdg-config");
    set("HOME", Some(&home));
    set("XDG_CONFIG_HOME", Some(&xdg_config));
    for name in ["XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"] {
        set(name, None);
    }

    // The platform's: XDG variables where set, else the defaults under HOME.
    let dirs = AppDirs::new("com", "Example", "Editor").unwrap();
    assert_eq!(dirs.config(), xdg_config.join("editor"));
    assert_eq!(dirs.data(), home.join(".local/share/editor"));
    assert_eq!(dirs.state(), home.join(".local/state/editor"));
    assert_eq!(dirs.cache(), home.join(".cache/editor"));
    assert!(!home.exists(), "nothing is created before create()");

    // The overrides: <APP>_<WHICH>_DIR, the application name upper-cased with `_`.
    let elsewhere = root.path().join("portable/state");
    set("MY_APP_STATE_DIR", Some(&elsewhere));
    let dirs = AppDirs::new("org", "Example", "my-app").unwrap();
    assert_eq!(dirs.state(), elsewhere);
    assert_eq!(dirs.config(), xdg_config.join("my-app"));
    set("MY_APP_STATE_DIR", None);

    // Created 0700, and a state file saves and loads there.
    dirs.create().unwrap();
    for dir in [dirs.config(), dirs.data(), dirs.state(), dirs.cache()] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let path = dirs.config().join("settings.json");
    Settings {
        theme: "dark".into(),
    }
    .save(&path)
    .unwrap();
    assert_eq!(Settings::load(&path).unwrap().theme, "dark");
    // Existing directories are left as they are.
    std::fs::set_permissions(dirs.cache(), std::fs::Permissions::from_mode(0o750)).unwrap();
    dirs.create().unwrap();
    let mode = std::fs::metadata(dirs.cache())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);

    // A directory that cannot be created is a typed error naming it.
    let blocker = root.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    set("BLOCKED_CACHE_DIR", Some(&blocker.join("cache")));
    let error = AppDirs::new("org", "Example", "blocked")
        .unwrap()
        .create()
        .unwrap_err();
    assert!(
        matches!(&error, persist::Error::Io { op: persist::IoOp::CreateDir, path, .. } if path == &blocker.join("cache")),
        "{error:?}"
    );
    set("BLOCKED_CACHE_DIR", None);

    // No home and no override: a clear error naming the variable to set.
    set("HOME", None);
    set("XDG_CONFIG_HOME", None);
    match AppDirs::new("com", "Example", "Editor") {
        // getpwuid may still know root's home; then the directories are found from it.
        Ok(dirs) => assert!(dirs.config().ends_with(".config/editor")),
        Err(AppDirsError::NoHome { variable, .. }) => assert_eq!(variable, "EDITOR_CONFIG_DIR"),
        Err(other) => panic!("{other:?}"),
    }
}
