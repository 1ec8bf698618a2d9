//! `persist::testing` and `Options::inspect` on the shared app-state chain (versions 1, 2, 4).

mod common;

use std::fs;

use common::{AppState, AppStateV1, AppStateV2, copy_of_fixture, listing};
use persist::testing::{Fixtures, describe};
use persist::{Options, Persisted};

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
    // Nested types are part of the shape, named by where they are used.
    let v4 = describe::<AppState>().unwrap();
    assert!(
        v4.starts_with("$ = struct {\n  user: string,\n  theme: $.theme,\n")
            && v4.contains("$.theme = enum {")
            && v4.contains("$.window = struct {"),
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

/// A schema whose saved files do not load back: `skip_serializing_if` without `default`.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 1)]
struct Skipped {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

/// Version 1 of [`Contact`]: a nickname that may have been cleared.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 1)]
struct ContactV1 {
    nickname: String,
    cleared: bool,
}

/// `Option<Option<T>>` that skips `None`: `Some(None)` ("cleared") saves as `null`, which loads
/// back as `None` ("never set") and then saves as nothing.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 2, migrate_from = ContactV1)]
struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<Option<String>>,
}

impl From<ContactV1> for Contact {
    fn from(old: ContactV1) -> Self {
        let nickname = if old.cleared {
            Some(None)
        } else {
            Some(Some(old.nickname))
        };
        Contact { nickname }
    }
}

/// Version 1 of [`Measure`]: a count.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 1)]
struct MeasureV1 {
    count: u64,
}

/// Untagged variants that overlap: a count saves as `3`, which loads back as the float
/// variant (tried first) and then saves as `3.0`.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 2, migrate_from = MeasureV1)]
struct Measure {
    value: Amount,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Amount {
    Ratio(f64),
    Count(u64),
}

impl From<MeasureV1> for Measure {
    fn from(old: MeasureV1) -> Self {
        Measure {
            value: Amount::Count(old.count),
        }
    }
}

fn fixtures_of<T: persist::Persisted>(
    files: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    Fixtures<T>,
    Vec<persist::testing::Fixture<T>>,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
    }
    let fixtures = Fixtures::<T>::new(dir.path());
    let loaded = fixtures.load_all().unwrap();
    (dir, fixtures, loaded)
}

/// The message of the panic `check` must raise.
fn panic_message(check: impl FnOnce()) -> String {
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
        .expect_err("the check passed");
    panic.downcast_ref::<String>().unwrap().clone()
}

#[test]
fn a_field_skipped_on_save_but_required_on_load_fails_the_round_trip() {
    let (_dir, fixtures, loaded) = fixtures_of::<Skipped>(&[(
        "v1/basic.json",
        r#"{"version":1,"data":{"name":"a","tags":[]}}"#,
    )]);
    // The fixture itself loads: only saving it again shows the problem.
    assert!(loaded[0].loaded.is_ok());
    let problem = loaded[0].round_trip_problem().unwrap();
    assert!(
        problem.contains("does not load back") && problem.contains("missing field `tags`"),
        "{problem}"
    );
    let message = panic_message(|| fixtures.assert_round_trips(&loaded));
    assert!(message.contains("fixture v1/basic.json"), "{message}");
    assert!(
        message.contains("`Skipped` do not survive a save and a load"),
        "{message}"
    );
}

#[test]
fn a_double_option_that_skips_none_fails_the_round_trip() {
    let (_dir, fixtures, loaded) = fixtures_of::<Contact>(&[
        (
            "v1/cleared.json",
            r#"{"version":1,"data":{"nickname":"","cleared":true}}"#,
        ),
        (
            "v1/set.json",
            r#"{"version":1,"data":{"nickname":"Ada","cleared":false}}"#,
        ),
    ]);
    let problem = loaded[0].round_trip_problem().unwrap();
    assert!(problem.contains("the value changes"), "{problem}");
    assert!(problem.contains(r#"{"nickname":null}"#), "{problem}");
    // A nickname that is set survives; only the cleared one is lost.
    assert_eq!(loaded[1].round_trip_problem(), None);
    let message = panic_message(|| fixtures.assert_round_trips(&loaded));
    assert!(message.contains("fixture v1/cleared.json"), "{message}");
    assert!(!message.contains("fixture v1/set.json"), "{message}");
}

#[test]
fn overlapping_untagged_variants_fail_the_round_trip() {
    let (_dir, fixtures, loaded) =
        fixtures_of::<Measure>(&[("v1/count.json", r#"{"version":1,"data":{"count":3}}"#)]);
    let problem = loaded[0].round_trip_problem().unwrap();
    assert!(problem.contains("the value changes"), "{problem}");
    assert!(problem.contains(r#"{"value":3}"#), "{problem}");
    assert!(problem.contains(r#"{"value":3.0}"#), "{problem}");
    panic_message(|| fixtures.assert_round_trips(&loaded));
}

#[test]
fn fixtures_of_a_symmetric_schema_round_trip() {
    let (_dir, path) = copy_of_fixture("v1.json");
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir.join("v1")).unwrap();
    fs::rename(&path, dir.join("v1/basic.json")).unwrap();
    let fixtures = Fixtures::<AppState>::new(dir);
    let loaded = fixtures.load_all().unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].round_trip_problem(), None);
    fixtures.assert_round_trips(&loaded);
}

#[test]
fn writing_never_replaces_an_existing_fixture_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<AppState>::new(dir.path());
    let v1 = AppStateV1 {
        user: "first".into(),
        dark_mode: true,
    };
    let path = fixtures.write("basic", &v1).unwrap();
    let before = fs::read(&path).unwrap();
    let other = AppStateV1 {
        user: "second".into(),
        dark_mode: false,
    };
    match fixtures.write("basic", &other) {
        Err(persist::testing::FixtureError::Exists { path: existing }) => {
            assert_eq!(existing, path)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    fixtures.overwrite("basic", &other).unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("\"second\""));
}

#[test]
fn a_fixture_that_should_load_fails_the_test_when_it_does_not_and_the_reverse() {
    let good = r#"{"version":1,"data":{"user":"u","dark_mode":true}}"#;
    let bad = r#"{"version":1,"data":{"user":"u"}}"#;
    // A fixture that no longer loads fails, whatever its snapshot says.
    let (_dir, fixtures, loaded) = fixtures_of::<AppState>(&[("v1/basic.json", bad)]);
    let message = panic_message(|| fixtures.assert_outcomes(&loaded));
    assert!(
        message.contains("fixture v1/basic.json does not load"),
        "{message}"
    );
    assert!(message.contains("missing field `dark_mode`"), "{message}");
    assert!(message.contains("`basic.fails.json`"), "{message}");

    // Declared to fail and failing: fine. Declared to fail and loading: fails.
    let (_dir, fixtures, loaded) =
        fixtures_of::<AppState>(&[("v1/missing-mode.fails.json", bad), ("v1/basic.json", good)]);
    assert!(loaded.iter().any(|fixture| fixture.expect_failure));
    fixtures.assert_outcomes(&loaded);
    let (_dir, fixtures, loaded) = fixtures_of::<AppState>(&[("v1/now-loads.fails.json", good)]);
    let message = panic_message(|| fixtures.assert_outcomes(&loaded));
    assert!(
        message.contains("v1/now-loads.fails.json is declared to fail"),
        "{message}"
    );
}

#[test]
fn the_snapshot_header_lists_the_steps_that_ran_and_the_one_that_failed() {
    let (_dir, _fixtures, loaded) = fixtures_of::<AppState>(&[
        (
            "v1/ok.json",
            r#"{"version":1,"data":{"user":"u","dark_mode":true}}"#,
        ),
        (
            "v2/unknown-theme.fails.json",
            r#"{"version":2,"data":{"user":"u","theme":"sepia","window":null}}"#,
        ),
        ("v4/broken.fails.json", r#"{"version":4,"data":{"user":1}}"#),
    ]);
    let headers: Vec<String> = loaded
        .iter()
        .map(|fixture| fixture.snapshot().lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        headers,
        [
            "fixture v1/ok.json, migrated 1 -> 2 -> 4",
            "fixture v2/unknown-theme.fails.json, migration 2 -> 4 failed",
            "fixture v4/broken.fails.json, not loaded",
        ]
    );
}

#[test]
fn a_missing_fixtures_folder_gets_one_clear_message_from_either_test() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("fixtures/app_state");
    let fixtures = Fixtures::<AppState>::new(&missing);
    for check in [
        Box::new(|| fixtures.assert_folder_exists()) as Box<dyn Fn()>,
        Box::new(|| fixtures.assert_schemas()),
    ] {
        let message = panic_message(check);
        assert!(message.starts_with("no fixtures folder at"), "{message}");
        assert!(message.contains("(v1/, v2/, v4/ ...)"), "{message}");
    }
    // Nothing was written on the way.
    assert!(!missing.exists());
}

mod free_form {
    use persist::Persisted;
    use serde::{Deserialize, Serialize};

    /// One free-form field, marked.
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct Marked {
        pub theme: String,
        #[serde(with = "persist::any")]
        pub plugins: serde_json::Value,
    }

    /// The same, unmarked.
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct Unmarked {
        pub theme: String,
        pub plugins: serde_json::Value,
    }

    /// `Marked` with one more field.
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct MarkedChanged {
        pub theme: String,
        #[serde(with = "persist::any")]
        pub plugins: serde_json::Value,
        pub tab_width: u8,
    }
}

#[test]
fn a_free_form_field_is_described_as_any_and_the_rest_stays_locked() {
    let error = describe::<free_form::Unmarked>().unwrap_err().to_string();
    assert!(
        error.contains("#[serde(with = \"persist::any\")]"),
        "{error}"
    );

    let marked = describe::<free_form::Marked>().unwrap();
    assert_eq!(
        marked,
        "$ = struct {\n  theme: string,\n  plugins: any,\n}\n"
    );

    // Locked, then changed elsewhere: the change is still caught.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("v1")).unwrap();
    fs::write(dir.path().join("v1/schema.txt"), &marked).unwrap();
    assert!(
        Fixtures::<free_form::Marked>::new(dir.path())
            .schema_changes()
            .unwrap()
            .is_empty()
    );
    let changes = Fixtures::<free_form::MarkedChanged>::new(dir.path())
        .schema_changes()
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].to_string().contains("+  tab_width: u8,"));

    // Saving and loading are untouched by the attribute.
    let path = dir.path().join("state.json");
    free_form::Marked {
        theme: "dark".into(),
        plugins: serde_json::json!({"vim": {"relative": true}, "count": [1, 2]}),
    }
    .save(&path)
    .unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        r#"{"version":1,"data":{"theme":"dark","plugins":{"count":[1,2],"vim":{"relative":true}}}}"#
    );
    let loaded = free_form::Marked::load(&path).unwrap();
    assert_eq!(loaded.plugins["count"][1], 2);
}
