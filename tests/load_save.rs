//! Loading and saving through the public API: round trips, migrations, load_or_default, and the
//! properties of a save on disk (mode, no temp files left, parents created, symlinks kept).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{AppState, AppStateV1, copy_of_fixture, listing, sample};
use persist::{Options, Persisted};

#[test]
fn save_then_load_is_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let state = sample();
    state.save(&path).unwrap();
    assert_eq!(AppState::load(&path).unwrap(), state);
}

#[test]
fn save_replaces_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let mut changed = sample();
    changed.user = "grace".into();
    changed.save(&path).unwrap();
    assert_eq!(AppState::load(&path).unwrap(), changed);
}

#[test]
fn loads_never_write() {
    for fixture in [
        "v1-unversioned.json",
        "v1.json",
        "v2.json",
        "v2-unknown-theme.json",
        "v5-future.json",
    ] {
        let (dir, path) = copy_of_fixture(fixture);
        let before = listing(dir.path());
        let _ = AppState::load(&path);
        let _ = AppState::load_or_default(&path);
        let _ = AppStateV1::load(&path);
        assert_eq!(listing(dir.path()), before, "{fixture}");
    }
}

#[test]
fn load_or_default_returns_the_default_only_for_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(
        AppState::load_or_default(&path).unwrap(),
        AppState::default()
    );
    assert!(!path.exists(), "load_or_default must not write the default");

    let (_dir, path) = copy_of_fixture("v2.json");
    assert_eq!(AppState::load_or_default(&path).unwrap().user, "linus");
}

#[test]
fn a_new_file_is_private_and_no_temporary_file_remains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    sample().save(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.json"]);
}

#[test]
fn save_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/state.json");
    sample().save(&path).unwrap();
    assert_eq!(AppState::load(&path).unwrap(), sample());
}

#[test]
fn save_through_a_symlink_updates_the_linked_file_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("dotfiles/state.json");
    fs::create_dir(dir.path().join("dotfiles")).unwrap();
    sample().save(&real).unwrap();
    let link = dir.path().join("state.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let mut changed = sample();
    changed.user = "linked".into();
    changed.save(&link).unwrap();

    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(AppState::load(&real).unwrap().user, "linked");
}

#[test]
fn a_relative_path_in_the_current_directory_works() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    sample().save("relative.json").unwrap();
    assert_eq!(AppState::load("relative.json").unwrap(), sample());
}

#[test]
fn the_first_save_after_a_migration_writes_the_current_version() {
    let (_dir, path) = copy_of_fixture("v1-unversioned.json");
    let state = AppState::load(&path).unwrap();
    state.save(&path).unwrap();
    let saved = fs::read_to_string(&path).unwrap();
    assert!(saved.starts_with(r#"{"version":4,"data":"#), "{saved}");
}

#[test]
fn options_apply_the_size_cap() {
    let (_dir, path) = copy_of_fixture("v4.json");
    let size = fs::metadata(&path).unwrap().len();
    assert!(
        Options::new()
            .max_size(size)
            .load::<AppState>(&path)
            .is_ok()
    );
    assert!(matches!(
        Options::new().max_size(size - 1).load::<AppState>(&path),
        Err(persist::Error::TooLarge { .. })
    ));
}
