//! The on-disk contract, pinned: the bytes a save writes, and what every committed fixture of
//! every version loads as. A change in either shows up as a snapshot diff.

mod common;

use common::{AppState, AppStateV1, AppStateV2, copy_of_fixture, sample};
use persist::Persisted;

#[test]
fn bytes_of_each_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");

    AppStateV1 {
        user: "grace".into(),
        dark_mode: true,
    }
    .save(&path)
    .unwrap();
    insta::assert_snapshot!("v1_bytes", std::fs::read_to_string(&path).unwrap());

    AppStateV2 {
        user: "linus".into(),
        theme: "dark".into(),
        window: Some((800, 600)),
    }
    .save(&path)
    .unwrap();
    insta::assert_snapshot!("v2_bytes", std::fs::read_to_string(&path).unwrap());

    sample().save(&path).unwrap();
    insta::assert_snapshot!("v4_bytes", std::fs::read_to_string(&path).unwrap());
}

/// Each fixture is loaded through the real load path, then saved again: the snapshot holds the
/// migrated value and the bytes the first save after the migration writes.
#[test]
fn fixtures_of_every_version_migrate_to_the_current_one() {
    for fixture in [
        "v1-unversioned.json",
        "v1.json",
        "v2.json",
        "v4.json",
        "v4-pretty.json",
    ] {
        let (_dir, path) = copy_of_fixture(fixture);
        let state = AppState::load(&path).unwrap();
        state.save(&path).unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        insta::assert_snapshot!(
            format!("migrated_{fixture}"),
            format!("{state:#?}\n\nsaved as:\n{saved}")
        );
    }
}

#[test]
fn intermediate_versions_read_older_files_too() {
    let (_dir, path) = copy_of_fixture("v1.json");
    let v2 = AppStateV2::load(&path).unwrap();
    assert_eq!(
        v2,
        AppStateV2 {
            user: "grace".into(),
            theme: "light".into(),
            window: None,
        }
    );
}
