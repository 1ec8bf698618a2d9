//! Backups: the first save after a migration keeps the old file as `<name>.v<N>.bak`, with a
//! retention limit, and a backup can be restored.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{AppState, AppStateV1, AppStateV2, copy_of_fixture, names, sample};
use persist::{Error, Options, Persisted};

fn v1() -> AppStateV1 {
    AppStateV1 {
        user: "grace".into(),
        dark_mode: true,
    }
}

#[test]
fn the_first_save_after_a_migration_keeps_the_old_file() {
    let (dir, path) = copy_of_fixture("v2.json");
    let original = fs::read(&path).unwrap();
    let state = AppState::load(&path).unwrap();
    state.save(&path).unwrap();

    let backup = dir.path().join("state.json.v2.bak");
    assert_eq!(fs::read(&backup).unwrap(), original);
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(AppStateV2::load(&backup).unwrap().user, "linus");

    // Later saves of the same version make no further backup.
    state.save(&path).unwrap();
    assert_eq!(names(dir.path()), ["state.json", "state.json.v2.bak"]);
    let backups = Options::new().backups_of(&path).unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!((backups[0].version, &backups[0].path), (2, &backup));
}

#[test]
fn a_file_without_an_envelope_is_kept_as_the_oldest_version() {
    let (dir, path) = copy_of_fixture("v1-unversioned.json");
    let original = fs::read(&path).unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v1.bak")).unwrap(),
        original
    );
}

#[test]
fn an_older_program_saving_over_a_newer_file_keeps_the_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let newer = fs::read(&path).unwrap();
    v1().save(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v4.bak")).unwrap(),
        newer
    );
}

#[test]
fn only_the_newest_backups_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = Options::new().backups(2);
    options.save(&v1(), &path).unwrap();
    options.save(&AppStateV2::from(v1()), &path).unwrap(); // keeps v1
    options.save(&sample(), &path).unwrap(); // keeps v2
    options.save(&v1(), &path).unwrap(); // keeps v4, drops v1 (3 backups > 2)
    assert_eq!(
        names(dir.path()),
        ["state.json", "state.json.v2.bak", "state.json.v4.bak"]
    );
    let versions: Vec<u64> = options
        .backups_of(&path)
        .unwrap()
        .iter()
        .map(|backup| backup.version)
        .collect();
    assert_eq!(versions, [4, 2]);
}

#[test]
fn backups_can_be_turned_off() {
    let (dir, path) = copy_of_fixture("v2.json");
    let state: AppState = Options::new().load(&path).unwrap();
    Options::new().backups(0).save(&state, &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json"]);
}

#[tokio::test]
async fn async_saves_keep_backups_too() {
    let (dir, path) = copy_of_fixture("v1.json");
    let original = fs::read(&path).unwrap();
    let state = AppState::load_async(&path).await.unwrap();
    state.save_async(&path).await.unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v1.bak")).unwrap(),
        original
    );
}

#[test]
fn a_backup_can_be_restored_and_the_restore_undone() {
    let (dir, path) = copy_of_fixture("v2.json");
    let original = fs::read(&path).unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap();
    let migrated = fs::read(&path).unwrap();

    Options::new().restore_backup(&path, 2).unwrap();
    assert_eq!(fs::read(&path).unwrap(), original);
    // The file the restore replaced is itself kept.
    assert_eq!(
        fs::read(dir.path().join("state.json.v4.bak")).unwrap(),
        migrated
    );
    assert_eq!(AppState::load(&path).unwrap().user, "linus");

    Options::new().restore_backup(&path, 4).unwrap();
    assert_eq!(fs::read(&path).unwrap(), migrated);
}

#[test]
fn restoring_a_missing_backup_names_it_and_changes_nothing() {
    let (dir, path) = copy_of_fixture("v4.json");
    let before = fs::read(&path).unwrap();
    let error = Options::new().restore_backup(&path, 3).unwrap_err();
    match &error {
        Error::NotFound { path: missing, .. } => {
            assert_eq!(missing, &dir.path().join("state.json.v3.bak"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(names(dir.path()), ["state.json"]);
}
