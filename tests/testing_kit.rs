//! `persist::testing` and `Options::inspect` on the shared app-state chain (versions 1, 2, 4).

mod common;

use std::fs;

use common::{AppState, AppStateV1, AppStateV2, copy_of_fixture, listing};
use persist::Options;
use persist::testing::{Fixtures, describe};

#[test]
fn inspect_reports_the_steps_and_the_outcome_without_writing() {
    for (fixture, stored, unversioned, steps, loads) in [
        ("v1.json", Some(1), false, vec![(1, 2), (2, 4)], true),
        (
            "v1-unversioned.json",
            None,
            true,
            vec![(1, 2), (2, 4)],
            true,
        ),
        ("v2.json", Some(2), false, vec![(2, 4)], true),
        ("v2-unknown-theme.json", Some(2), false, vec![(2, 4)], false),
        ("v4.json", Some(4), false, vec![], true),
        ("v5-future.json", Some(5), false, vec![], false),
        ("v3-unknown.json", Some(3), false, vec![], false),
    ] {
        let (dir, path) = copy_of_fixture(fixture);
        let before = listing(dir.path());
        let report = Options::new().inspect::<AppState>(&path).unwrap();
        assert_eq!(listing(dir.path()), before, "{fixture}");
        assert_eq!(report.stored_version, stored, "{fixture}");
        assert_eq!(report.unversioned, unversioned, "{fixture}");
        assert_eq!(report.steps, steps, "{fixture}");
        assert_eq!(report.would_load(), loads, "{fixture}: {report}");
        assert_eq!(report.current_version, 4);
    }
    let (_dir, path) = copy_of_fixture("v1.json");
    let text = Options::new()
        .inspect::<AppState>(&path)
        .unwrap()
        .to_string();
    assert!(
        text.contains("stored at version 1; this program reads version 4"),
        "{text}"
    );
    assert!(text.contains("migration: 1 -> 2 -> 4"), "{text}");
    assert!(text.ends_with("a load would succeed"), "{text}");
}

#[test]
fn inspecting_a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Options::new().inspect::<AppState>(dir.path().join("absent.json")),
        Err(persist::Error::NotFound { .. })
    ));
}

#[test]
fn written_fixtures_are_real_files_of_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<AppState>::new(dir.path());
    let v1 = AppStateV1 {
        user: "u".into(),
        dark_mode: true,
    };
    let path = fixtures.write("first", &v1).unwrap();
    assert_eq!(path, dir.path().join("v1/first.json"));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        r#"{"version":1,"data":{"user":"u","dark_mode":true}}"#
    );
    fixtures
        .write("second", &AppStateV2::from(v1.clone()))
        .unwrap();
    let loaded = fixtures.load_all().unwrap();
    let names: Vec<_> = loaded
        .iter()
        .map(|fixture| fixture.snapshot_name())
        .collect();
    assert_eq!(names, ["v1_first", "v2_second"]);
    assert_eq!(loaded[0].steps, [(1, 2), (2, 4)]);
    assert!(
        loaded[0]
            .snapshot()
            .starts_with("fixture v1/first.json, migrated 1 -> 2 -> 4\n{")
    );
}

#[test]
#[should_panic(expected = "no fixture for version 4 of the `AppState` chain")]
fn every_version_needs_a_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<AppState>::new(dir.path());
    let v1 = AppStateV1 {
        user: "u".into(),
        dark_mode: false,
    };
    fixtures.write("old", &v1).unwrap();
    fixtures.write("older", &AppStateV2::from(v1)).unwrap();
    let loaded = fixtures.load_all().unwrap();
    fixtures.assert_every_version_has_a_fixture(&loaded);
}

#[test]
fn schema_locks_are_compared_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<AppState>::new(dir.path());
    let missing = fixtures.schema_changes().unwrap();
    let versions: Vec<u32> = missing.iter().map(|change| change.version).collect();
    assert_eq!(versions, [1, 2, 4]);
    assert!(missing.iter().all(|change| change.locked.is_none()));
    assert!(
        missing[0]
            .to_string()
            .starts_with("no schema lock for `AppStateV1` version 1")
    );

    for change in &missing {
        fs::create_dir_all(change.lock.parent().unwrap()).unwrap();
        fs::write(&change.lock, &change.current).unwrap();
    }
    assert!(fixtures.schema_changes().unwrap().is_empty());
    // Nested types are part of the shape.
    let v4 = describe::<AppState>().unwrap();
    assert!(
        v4.contains("Theme = enum {") && v4.contains("Window = struct {"),
        "{v4}"
    );

    let lock = dir.path().join("v2/schema.txt");
    fs::write(
        &lock,
        fs::read_to_string(&lock)
            .unwrap()
            .replace("theme", "colour"),
    )
    .unwrap();
    let changed = fixtures.schema_changes().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].type_name, "AppStateV2");
    let message = changed[0].to_string();
    assert!(
        message.contains("-  colour: string,\n+  theme: string,"),
        "{message}"
    );
}

#[test]
fn types_that_cannot_be_traced_get_a_clear_error() {
    #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    #[persist(version = 1)]
    struct Tagged {
        mode: Mode,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(tag = "kind")]
    enum Mode {
        On,
    }
    let error = describe::<Tagged>().unwrap_err().to_string();
    assert!(
        error.starts_with("cannot describe the serialized shape of `Tagged`"),
        "{error}"
    );
    assert!(error.contains("internally tagged enums"), "{error}");
}
