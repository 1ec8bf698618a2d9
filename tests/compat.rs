//! The schema lock's compatibility classes: a table of schema changes, each an old and a new
//! version of a type, classified as Confluent's schema registry and buf would; the level that
//! decides what fails; breaking changes that no flag accepts; old locks without annotations;
//! and the JSON Schema export, checked against real saved files with the `jsonschema` crate.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use persist::testing::{
    ChangeClass, ChangeKind, Compatibility, Fixtures, ShapeChange, compare_locks,
    compare_with_lock, describe, json_schema,
};
use persist::{Options, Persisted};
use serde::{Deserialize, Serialize};

/// An old and a new version of one type, in a module of their own: `Old` and `New` (version 1
/// both, as a change made without a bump), with any nested types the bodies name.
macro_rules! pair {
    (
        $name:ident,
        old $(#[$old_attr:meta])* { $($old:tt)* },
        new $(#[$new_attr:meta])* { $($new:tt)* }
        $(, $($extra:item)*)?
    ) => {
        #[allow(dead_code)]
        mod $name {
            use super::*;

            #[derive(Debug, Serialize, Deserialize, Persisted)]
            #[persist(version = 1)]
            $(#[$old_attr])*
            pub struct Old { $($old)* }

            #[derive(Debug, Serialize, Deserialize, Persisted)]
            #[persist(version = 1)]
            $(#[$new_attr])*
            pub struct New { $($new)* }

            $($($extra)*)?
        }
    };
}

pair!(added_with_default,
    old { pub theme: String },
    new { pub theme: String, #[serde(default)] pub size: u32 });
pair!(added_without_default,
    old { pub theme: String },
    new { pub theme: String, pub size: u32 });
pair!(added_option,
    old { pub theme: String },
    new { pub theme: String, pub nickname: Option<String> });
pair!(added_to_a_strict_struct,
    old #[serde(deny_unknown_fields)] { pub theme: String },
    new #[serde(deny_unknown_fields)] { pub theme: String, #[serde(default)] pub size: u32 });
pair!(removed_optional,
    old { pub theme: String, #[serde(default)] pub size: u32 },
    new { pub theme: String });
pair!(removed_required,
    old { pub theme: String, pub size: u32 },
    new { pub theme: String });
pair!(removed_from_a_struct_that_now_refuses_unknown_fields,
    old { pub theme: String, pub size: u32 },
    new #[serde(deny_unknown_fields)] { pub theme: String });
pair!(renamed_with_alias,
    old { pub colour: String },
    new { #[serde(alias = "colour")] pub theme: String });
pair!(renamed_with_alias_from_an_optional_field,
    old { #[serde(default)] pub colour: String },
    new { #[serde(alias = "colour", default)] pub theme: String });
pair!(renamed_without_alias,
    old { pub colour: String },
    new { pub theme: String });
pair!(renamed_without_alias_to_an_optional_field,
    old { pub colour: String },
    new { #[serde(default)] pub theme: String });
pair!(widened_unsigned,
    old { pub size: u8 },
    new { pub size: u32 });
pair!(widened_to_signed,
    old { pub size: u32 },
    new { pub size: i64 });
pair!(widened_float,
    old { pub ratio: f32 },
    new { pub ratio: f64 });
pair!(widened_integer_to_float,
    old { pub ratio: i32 },
    new { pub ratio: f64 });
pair!(narrowed,
    old { pub size: u64 },
    new { pub size: u16 });
pair!(narrowed_float_to_integer,
    old { pub ratio: f64 },
    new { pub ratio: i32 });
pair!(signedness_changed,
    old { pub size: u32 },
    new { pub size: i32 });
pair!(unrelated_type,
    old { pub size: String },
    new { pub size: u32 });
pair!(option_wrapped,
    old { pub size: u32 },
    new { pub size: Option<u32> });
pair!(option_unwrapped,
    old { pub size: Option<u32> },
    new { pub size: u32 });
pair!(variant_added,
    old { pub theme: ThemeOld },
    new { pub theme: ThemeNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeOld { Light, Dark }
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeNew { Light, Dark, HighContrast }
);
pair!(variant_removed,
    old { pub theme: ThemeOld },
    new { pub theme: ThemeNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeOld { Light, Dark, HighContrast }
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeNew { Light, Dark }
);
pair!(variant_renamed,
    old { pub theme: ThemeOld },
    new { pub theme: ThemeNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeOld { Light, Dark }
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeNew { Light, Night }
);
pair!(variant_payload_widened,
    old { pub mode: ModeOld },
    new { pub mode: ModeNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ModeOld { Simple, Level(u8) }
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ModeNew { Simple, Level(u16) }
);
pair!(struct_variant_field_added_without_default,
    old { pub theme: ThemeOld },
    new { pub theme: ThemeNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeOld { Light, Custom { accent: String } }
    #[derive(Debug, Serialize, Deserialize)]
    pub enum ThemeNew { Light, Custom { accent: String, contrast: u8 } }
);
pair!(nested_field_added_without_default,
    old { pub window: WindowOld },
    new { pub window: WindowNew },
    #[derive(Debug, Serialize, Deserialize)]
    pub struct WindowOld { pub width: u32 }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct WindowNew { pub width: u32, pub maximized: bool }
);
pair!(nested_field_added_with_default_inside_an_option,
    old { pub window: Option<WindowOld> },
    new { pub window: Option<WindowNew> },
    #[derive(Debug, Serialize, Deserialize)]
    pub struct WindowOld { pub width: u32 }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct WindowNew { pub width: u32, #[serde(default)] pub maximized: bool }
);
pair!(newly_skipped_when_empty,
    old { pub tags: Vec<String> },
    new { #[serde(default, skip_serializing_if = "Vec::is_empty")] pub tags: Vec<String> });
pair!(newly_skipped_when_none,
    old { pub nickname: Option<String> },
    new { #[serde(skip_serializing_if = "Option::is_none")] pub nickname: Option<String> });
pair!(now_refuses_unknown_fields,
    old { pub theme: String },
    new #[serde(deny_unknown_fields)] { pub theme: String });
pair!(char_to_string,
    old { pub initial: char },
    new { pub initial: String });
pair!(tuple_to_sequence,
    old { pub pair: (u8, u8) },
    new { pub pair: Vec<u8> });
pair!(wrapped_in_a_newtype,
    old { pub size: u32 },
    new { pub size: Size },
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Size(pub u32);
);
pair!(fields_reordered,
    old { pub a: u8, pub b: String },
    new { pub b: String, pub a: u8 });

/// The changes from `Old` to `New`, through the lock `Old` would have written.
fn changes<Old: Persisted, New: Persisted>() -> Vec<ShapeChange> {
    let locked = describe::<Old>().unwrap();
    compare_with_lock::<New>(&locked).unwrap()
}

fn class_of(changes: &[ShapeChange]) -> ChangeClass {
    changes
        .iter()
        .fold(ChangeClass::Both, |class, change| class.meet(change.class))
}

#[test]
fn schema_changes_are_classified_as_schema_registries_classify_them() {
    use ChangeClass::{Backward, Both, Breaking, Forward};
    type Row = (
        &'static str,
        fn() -> Vec<ShapeChange>,
        ChangeClass,
        &'static str,
    );
    let table: Vec<Row> = vec![
        (
            "field added with a default",
            changes::<added_with_default::Old, added_with_default::New>,
            Both,
            "$.size",
        ),
        (
            "field added without a default",
            changes::<added_without_default::Old, added_without_default::New>,
            Forward,
            "$.size",
        ),
        (
            "Option field added",
            changes::<added_option::Old, added_option::New>,
            Both,
            "$.nickname",
        ),
        (
            "field added to a struct that refuses unknown fields",
            changes::<added_to_a_strict_struct::Old, added_to_a_strict_struct::New>,
            Backward,
            "$.size",
        ),
        (
            "optional field removed",
            changes::<removed_optional::Old, removed_optional::New>,
            Both,
            "$.size",
        ),
        (
            "required field removed",
            changes::<removed_required::Old, removed_required::New>,
            Backward,
            "$.size",
        ),
        (
            "field removed, struct now refuses unknown fields",
            changes::<
                removed_from_a_struct_that_now_refuses_unknown_fields::Old,
                removed_from_a_struct_that_now_refuses_unknown_fields::New,
            >,
            Breaking,
            "$.size",
        ),
        (
            "renamed with an alias",
            changes::<renamed_with_alias::Old, renamed_with_alias::New>,
            Backward,
            "$.theme",
        ),
        (
            "optional field renamed with an alias",
            changes::<
                renamed_with_alias_from_an_optional_field::Old,
                renamed_with_alias_from_an_optional_field::New,
            >,
            Both,
            "$.theme",
        ),
        (
            "renamed without an alias",
            changes::<renamed_without_alias::Old, renamed_without_alias::New>,
            Breaking,
            "$.theme",
        ),
        (
            "renamed without an alias to an optional field",
            changes::<
                renamed_without_alias_to_an_optional_field::Old,
                renamed_without_alias_to_an_optional_field::New,
            >,
            Breaking,
            "$.theme",
        ),
        (
            "u8 widened to u32",
            changes::<widened_unsigned::Old, widened_unsigned::New>,
            Backward,
            "$.size",
        ),
        (
            "u32 widened to i64",
            changes::<widened_to_signed::Old, widened_to_signed::New>,
            Backward,
            "$.size",
        ),
        (
            "f32 widened to f64",
            changes::<widened_float::Old, widened_float::New>,
            Backward,
            "$.ratio",
        ),
        (
            "i32 widened to f64",
            changes::<widened_integer_to_float::Old, widened_integer_to_float::New>,
            Backward,
            "$.ratio",
        ),
        (
            "u64 narrowed to u16",
            changes::<narrowed::Old, narrowed::New>,
            Forward,
            "$.size",
        ),
        (
            "f64 narrowed to i32",
            changes::<narrowed_float_to_integer::Old, narrowed_float_to_integer::New>,
            Forward,
            "$.ratio",
        ),
        (
            "u32 to i32",
            changes::<signedness_changed::Old, signedness_changed::New>,
            Breaking,
            "$.size",
        ),
        (
            "string to u32",
            changes::<unrelated_type::Old, unrelated_type::New>,
            Breaking,
            "$.size",
        ),
        (
            "wrapped in an Option",
            changes::<option_wrapped::Old, option_wrapped::New>,
            Backward,
            "$.size",
        ),
        (
            "Option unwrapped",
            changes::<option_unwrapped::Old, option_unwrapped::New>,
            Forward,
            "$.size",
        ),
        (
            "enum variant added",
            changes::<variant_added::Old, variant_added::New>,
            Backward,
            "$.theme::HighContrast",
        ),
        (
            "enum variant removed",
            changes::<variant_removed::Old, variant_removed::New>,
            Forward,
            "$.theme::HighContrast",
        ),
        (
            "enum variant renamed",
            changes::<variant_renamed::Old, variant_renamed::New>,
            Breaking,
            "$.theme::Night",
        ),
        (
            "variant payload widened",
            changes::<variant_payload_widened::Old, variant_payload_widened::New>,
            Backward,
            "$.mode::Level",
        ),
        (
            "struct variant gained a required field",
            changes::<
                struct_variant_field_added_without_default::Old,
                struct_variant_field_added_without_default::New,
            >,
            Forward,
            "$.theme::Custom.contrast",
        ),
        (
            "nested struct gained a required field",
            changes::<
                nested_field_added_without_default::Old,
                nested_field_added_without_default::New,
            >,
            Forward,
            "$.window.maximized",
        ),
        (
            "nested struct in an Option gained a defaulted field",
            changes::<
                nested_field_added_with_default_inside_an_option::Old,
                nested_field_added_with_default_inside_an_option::New,
            >,
            Both,
            "$.window.maximized",
        ),
        (
            "required field now skipped when empty",
            changes::<newly_skipped_when_empty::Old, newly_skipped_when_empty::New>,
            Backward,
            "$.tags",
        ),
        (
            "Option field now skipped when None",
            changes::<newly_skipped_when_none::Old, newly_skipped_when_none::New>,
            Both,
            "$.nickname",
        ),
        (
            "deny_unknown_fields added",
            changes::<now_refuses_unknown_fields::Old, now_refuses_unknown_fields::New>,
            Both,
            "$",
        ),
        (
            "char to string",
            changes::<char_to_string::Old, char_to_string::New>,
            Backward,
            "$.initial",
        ),
        (
            "tuple to sequence",
            changes::<tuple_to_sequence::Old, tuple_to_sequence::New>,
            Backward,
            "$.pair",
        ),
        (
            "wrapped in a newtype struct",
            changes::<wrapped_in_a_newtype::Old, wrapped_in_a_newtype::New>,
            Both,
            "$",
        ),
        (
            "fields reordered",
            changes::<fields_reordered::Old, fields_reordered::New>,
            Both,
            "$",
        ),
    ];
    assert!(table.len() >= 15);
    let mut wrong = Vec::new();
    for (what, changes, expected, path) in table {
        let changes = changes();
        let class = class_of(&changes);
        let listed: Vec<String> = changes.iter().map(ToString::to_string).collect();
        if class != expected || !changes.iter().any(|change| change.path == path) {
            wrong.push(format!(
                "{what}: expected {expected:?} at {path}, got {class:?}:\n  {}",
                listed.join("\n  ")
            ));
        }
        // Every change that breaks a direction says what would mend it; the others do not.
        for change in &changes {
            assert_eq!(
                change.fix.is_some(),
                change.class != ChangeClass::Both,
                "{what}: {change}"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn each_change_names_what_changed_and_the_fix() {
    let added = changes::<added_without_default::Old, added_without_default::New>();
    assert_eq!(
        added[0].kind,
        ChangeKind::FieldAdded {
            name: "size".into(),
            optional: false
        }
    );
    let text = added[0].to_string();
    assert!(
        text.starts_with("$.size: field `size` added, required on read: forward compatible only."),
        "{text}"
    );
    assert!(text.contains("Give `size` `#[serde(default)]`"), "{text}");

    let renamed = changes::<
        renamed_without_alias_to_an_optional_field::Old,
        renamed_without_alias_to_an_optional_field::New,
    >();
    assert_eq!(renamed.len(), 1, "{renamed:?}");
    let text = renamed[0].to_string();
    assert!(
        text.contains("dropped silently if `theme` is optional"),
        "{text}"
    );
    assert!(
        text.contains("Add `#[serde(alias = \"colour\")]` to `theme`"),
        "{text}"
    );
    assert!(text.contains("Otherwise, bump the version"), "{text}");

    let unwrapped = changes::<option_unwrapped::Old, option_unwrapped::New>();
    assert!(
        unwrapped[0].to_string().contains("Keep the `Option`"),
        "{unwrapped:?}"
    );
    let removed = changes::<variant_removed::Old, variant_removed::New>();
    assert!(
        removed[0].to_string().contains("keep the variant"),
        "{removed:?}"
    );
    let skipped = changes::<newly_skipped_when_empty::Old, newly_skipped_when_empty::New>();
    assert!(
        skipped.iter().any(
            |change| matches!(change.kind, ChangeKind::FieldNowSkipped { .. })
                && change.to_string().contains("drop `skip_serializing_if`")
        ),
        "{skipped:?}"
    );
}

#[test]
fn the_lock_records_defaults_skips_aliases_and_strict_structs() {
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    #[serde(deny_unknown_fields)]
    struct Annotated {
        plain: String,
        #[serde(default)]
        size: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
        nickname: Option<String>,
        #[serde(alias = "colour", alias = "color")]
        theme: String,
        stats: Stats,
        window: Window,
    }

    #[derive(Serialize, Deserialize)]
    struct Stats {
        #[serde(default, skip_serializing_if = "is_zero")]
        count: u64,
    }

    #[derive(Serialize, Deserialize)]
    struct Window {
        #[serde(rename = "w", alias = "width")]
        width: u32,
        #[serde(alias = "depth")]
        height: u32,
        #[serde(default)]
        maximized: bool,
    }

    fn is_zero(n: &u64) -> bool {
        *n == 0
    }

    assert_eq!(
        describe::<Annotated>().unwrap(),
        "\
$ = struct deny_unknown_fields {
  plain: string,
  size: u32 = default,
  tags: seq<string> = default, skipped when empty,
  nickname: option<string>,
  theme: string = alias color, alias colour,
  stats: $.stats,
  window: $.window,
}
$.stats = struct {
  count: u64 = default, skipped when empty,
}
$.window = struct {
  w: u32 = alias width,
  height: u32 = alias depth,
  maximized: bool = default,
}
"
    );
}

#[test]
fn aliases_beside_a_field_a_traced_save_leaves_out_get_a_clear_error() {
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    struct Mixed {
        #[serde(alias = "colour")]
        theme: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    }
    let error = describe::<Mixed>().unwrap_err().to_string();
    assert!(
        error.contains("`Mixed` has `#[serde(alias = ...)]` fields"),
        "{error}"
    );
    assert!(
        error.contains("keep aliases and such fields in separate structs"),
        "{error}"
    );
}

#[test]
fn locks_of_plain_types_read_as_before() {
    // The committed locks of the example chain have no annotations, and still match.
    let locked = fs::read_to_string("tests/fixtures/editor/v4/schema.txt").unwrap();
    assert!(!locked.contains(" = default"), "{locked}");
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    struct Plain {
        theme: String,
        window: Option<(u32, u32)>,
        recent: Vec<String>,
        shortcuts: BTreeMap<String, String>,
    }
    assert_eq!(
        describe::<Plain>().unwrap(),
        "$ = struct {\n  theme: string,\n  window: option<[u32; 2]>,\n  recent: seq<string>,\n  \
         shortcuts: map<string, string>,\n}\n"
    );
}

/// A fixtures folder whose version-1 lock is `locked`, checked as `T`.
fn folder_with_lock(locked: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("v1")).unwrap();
    fs::write(dir.path().join("v1/schema.txt"), locked).unwrap();
    dir
}

fn lock_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("v1/schema.txt")).unwrap()
}

/// The message of the panic `check` raises, or `None` if it passes.
fn outcome(check: impl FnOnce()) -> Option<String> {
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).err()?;
    Some(
        panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".to_owned()),
    )
}

/// Runs `assert_schemas` on `New` against the lock `Old` writes, at `level`, as a developer's
/// machine would and without `PERSIST_ACCEPT_SCHEMA`; `Ok` with whether the lock was rewritten,
/// or the failure message.
fn run_at<Old: Persisted, New: Persisted>(level: Compatibility) -> Result<bool, String> {
    let locked = describe::<Old>().unwrap();
    let dir = folder_with_lock(&locked);
    let fixtures = Fixtures::<New>::new(dir.path())
        .compatibility(level)
        .accept_schema_changes(false)
        .ci(false);
    match outcome(|| fixtures.assert_schemas()) {
        Some(message) => {
            assert_eq!(
                lock_of(dir.path()),
                locked,
                "a failing check wrote the lock"
            );
            Err(message)
        }
        None => Ok(lock_of(dir.path()) == describe::<New>().unwrap()),
    }
}

#[test]
fn the_level_decides_which_changes_pass() {
    use Compatibility::{Backward, Forward, Full, None};
    type Run = fn(Compatibility) -> Result<bool, String>;
    let both: Run = run_at::<added_with_default::Old, added_with_default::New>;
    let forward_only: Run = run_at::<added_without_default::Old, added_without_default::New>;
    let backward_only: Run = run_at::<removed_required::Old, removed_required::New>;
    let breaking: Run = run_at::<renamed_without_alias::Old, renamed_without_alias::New>;
    for (what, run, passes_at) in [
        (
            "an added defaulted field",
            both,
            vec![Backward, Forward, Full, None],
        ),
        ("an added required field", forward_only, vec![Forward, None]),
        (
            "a removed required field",
            backward_only,
            vec![Backward, None],
        ),
        ("a rename without an alias", breaking, vec![]),
    ] {
        for level in [Backward, Forward, Full, None] {
            let outcome = run(level);
            if passes_at.contains(&level) {
                // A change the level accepts passes, and the lock now holds the new shape.
                assert_eq!(outcome, Ok(true), "{what} at {level}");
            } else {
                let message = outcome.expect_err(&format!("{what} passed at {level}"));
                assert!(
                    message.contains(&format!("which the `{level}` level does not accept")),
                    "{what} at {level}: {message}"
                );
            }
        }
    }
    // The default level is backward.
    let dir = folder_with_lock(&describe::<removed_required::Old>().unwrap());
    Fixtures::<removed_required::New>::new(dir.path())
        .ci(false)
        .assert_schemas();
    let dir = folder_with_lock(&describe::<added_without_default::Old>().unwrap());
    let fixtures = Fixtures::<added_without_default::New>::new(dir.path())
        .accept_schema_changes(false)
        .ci(false);
    assert!(outcome(|| fixtures.assert_schemas()).is_some());
}

#[test]
fn the_failure_message_names_each_change_its_class_and_the_fix() {
    let message =
        run_at::<added_without_default::Old, added_without_default::New>(Compatibility::Backward)
            .unwrap_err();
    for expected in [
        "the serialized shape of `New` version 1 changed, but its version did not",
        "+  size: u32,",
        "- $.size: field `size` added, required on read: forward compatible only. Give `size` \
         `#[serde(default)]` (or make it an `Option`), so that files saved without it load",
        "Files saved at version 1 may no longer load",
        "Together they are forward compatible only, which the `backward` level does not accept \
         (files saved before a change must load after it)",
        "#[persist(version = 2, migrate_from = <the old type>)]",
        "PERSIST_ACCEPT_SCHEMA=1 cargo test",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn a_breaking_change_fails_even_when_changes_are_accepted() {
    let locked = describe::<renamed_without_alias::Old>().unwrap();
    let dir = folder_with_lock(&locked);
    let fixtures = Fixtures::<renamed_without_alias::New>::new(dir.path())
        .compatibility(Compatibility::None)
        .accept_schema_changes(true)
        .ci(false);
    let message = outcome(|| fixtures.assert_schemas()).expect("a breaking change passed");
    assert_eq!(lock_of(dir.path()), locked);
    for expected in [
        "field `colour` renamed to `theme`, without an alias",
        ": breaking.",
        "A breaking change always needs a version bump",
        "PERSIST_ACCEPT_SCHEMA=1 does not accept it",
        "delete the lock",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    // Deleting the lock starts over: it is written again.
    fs::remove_file(dir.path().join("v1/schema.txt")).unwrap();
    fixtures.assert_schemas();
    assert_eq!(
        lock_of(dir.path()),
        describe::<renamed_without_alias::New>().unwrap()
    );

    // A change that is not breaking is accepted with the flag, and the lock rewritten.
    let dir = folder_with_lock(&describe::<added_without_default::Old>().unwrap());
    Fixtures::<added_without_default::New>::new(dir.path())
        .compatibility(Compatibility::Full)
        .accept_schema_changes(true)
        .ci(true)
        .assert_schemas();
    assert_eq!(
        lock_of(dir.path()),
        describe::<added_without_default::New>().unwrap()
    );
}

#[test]
fn an_accepted_change_leaves_the_lock_alone_under_ci_and_a_missing_lock_fails_there() {
    let locked = describe::<added_with_default::Old>().unwrap();
    let dir = folder_with_lock(&locked);
    Fixtures::<added_with_default::New>::new(dir.path())
        .ci(true)
        .assert_schemas();
    assert_eq!(lock_of(dir.path()), locked);

    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("v1")).unwrap();
    let fixtures = Fixtures::<added_with_default::New>::new(dir.path()).ci(true);
    let message = outcome(|| fixtures.assert_schemas()).expect("a missing lock passed under CI");
    assert!(
        message.starts_with("no schema lock for `New` version 1"),
        "{message}"
    );
    assert!(!dir.path().join("v1/schema.txt").exists());
}

/// A type with attributes, and the lock the previous persist wrote for it (no annotations).
mod before_annotations {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct Settings {
        pub theme: String,
        #[serde(default)]
        pub size: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub tags: Vec<String>,
    }

    pub const OLD_LOCK: &str =
        "$ = struct {\n  theme: string,\n  size: u32,\n  tags: seq<string>,\n}\n";

    /// The same, with a defaulted field more.
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    pub struct Grown {
        pub theme: String,
        #[serde(default)]
        pub size: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub tags: Vec<String>,
        #[serde(default)]
        pub font: String,
    }
}

#[test]
fn an_old_lock_without_annotations_keeps_passing() {
    use before_annotations::{Grown, OLD_LOCK, Settings};
    let dir = folder_with_lock(OLD_LOCK);
    let fixtures = Fixtures::<Settings>::new(dir.path())
        .compatibility(Compatibility::Full)
        .accept_schema_changes(false);
    let changes = fixtures.schema_changes().unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].annotations_only() && changes[0].accepted());
    // The annotations themselves are classified: a field newly skipped is not forward
    // compatible, but a lock without any annotation may predate them, so it passes.
    assert_eq!(changes[0].class(), Some(ChangeClass::Backward));
    // Under CI it passes and is left as it is; on a developer's machine it is rewritten.
    let at_full = |ci: bool| {
        Fixtures::<Settings>::new(dir.path())
            .compatibility(Compatibility::Full)
            .accept_schema_changes(false)
            .ci(ci)
    };
    at_full(true).assert_schemas();
    assert_eq!(lock_of(dir.path()), OLD_LOCK);
    at_full(false).assert_schemas();
    assert_eq!(lock_of(dir.path()), describe::<Settings>().unwrap());
    assert!(lock_of(dir.path()).contains("  size: u32 = default,\n"));

    // A real change next to the missing annotations is classified as usual, and the message
    // says the lock may predate them.
    let dir = folder_with_lock(OLD_LOCK);
    let fixtures = Fixtures::<Grown>::new(dir.path())
        .compatibility(Compatibility::Full)
        .accept_schema_changes(false)
        .ci(false);
    let changes = fixtures.schema_changes().unwrap();
    assert!(!changes[0].annotations_only());
    assert_eq!(changes[0].class(), Some(ChangeClass::Backward));
    assert!(!changes[0].accepted());
    let message = outcome(|| fixtures.assert_schemas()).expect("a refused change passed");
    assert!(
        message.contains("$.font: field `font` added, optional on read: full"),
        "{message}"
    );
    assert!(message.contains("The lock has no annotations"), "{message}");
    assert_eq!(lock_of(dir.path()), OLD_LOCK);
}

#[test]
fn unreadable_locks_get_a_clear_error() {
    let error = compare_locks("$ = struct {\n  theme string,\n}\n", "$ = unit struct\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("the lock cannot be read as a schema lock: line 2"),
        "{error}"
    );
    let dir = folder_with_lock("$ = struct {\n  theme: string = sometimes,\n}\n");
    let error = Fixtures::<added_with_default::Old>::new(dir.path())
        .schema_changes()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("v1/schema.txt cannot be read: line 2"),
        "{error}"
    );
    assert!(error.contains("delete it and run the tests"), "{error}");
}

#[test]
fn the_macro_spells_the_levels_as_confluent_does() {
    // `migration_tests!(name: T, dir, compatibility = full)` checks its `schemas` test at the
    // level these arms give (the two-argument form is `compatibility = backward`).
    use persist::testing::migration_tests;
    assert_eq!(migration_tests!(@level backward), Compatibility::Backward);
    assert_eq!(migration_tests!(@level forward), Compatibility::Forward);
    assert_eq!(migration_tests!(@level full), Compatibility::Full);
    assert_eq!(migration_tests!(@level none), Compatibility::None);
    for level in [
        Compatibility::Backward,
        Compatibility::Forward,
        Compatibility::Full,
        Compatibility::None,
    ] {
        assert_eq!(level.to_string(), level.name());
    }
}

mod exported {
    use super::*;

    /// A file with every kind of value the JSON Schema export writes.
    #[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
    #[persist(version = 3)]
    pub struct Settings {
        pub theme: Theme,
        #[serde(default)]
        pub font_size: u8,
        pub window: Option<Window>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub recent: Vec<String>,
        pub counts: BTreeMap<String, u32>,
        pub by_id: BTreeMap<u16, bool>,
        pub pair: (i64, String),
        pub scale: f64,
        pub initial: char,
        pub id: Id,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Theme {
        Light,
        Level(u8),
        Custom { accent: String },
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Window {
        pub width: u32,
        pub height: u32,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Id(pub u64);

    pub fn sample(theme: Theme) -> Settings {
        Settings {
            theme,
            font_size: 14,
            window: Some(Window {
                width: 800,
                height: 600,
            }),
            recent: vec!["notes.md".into()],
            counts: BTreeMap::from([("saves".to_owned(), 3)]),
            by_id: BTreeMap::from([(7, true)]),
            pair: (-5, "five".into()),
            scale: 1.5,
            initial: 'é',
            id: Id(u64::MAX),
        }
    }
}

#[test]
fn the_json_schema_of_a_version_validates_its_saved_files() {
    use exported::{Settings, Theme, sample};
    let schema = json_schema::<Settings>().unwrap();
    assert!(jsonschema::meta::is_valid(&schema), "{schema:#}");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    };
    for (i, theme) in [
        Theme::Light,
        Theme::Level(3),
        Theme::Custom {
            accent: "teal".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut value = sample(theme);
        if i == 1 {
            value.window = None;
            value.recent.clear();
        }
        value.save(&path).unwrap();
        let file = read(&path);
        let errors: Vec<String> = validator
            .iter_errors(&file)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
    // A checksummed file carries one more member.
    Options::new()
        .checksum(true)
        .save(&sample(Theme::Light), &path)
        .unwrap();
    let file = read(&path);
    assert!(file.get("crc32c").is_some());
    assert!(validator.is_valid(&file), "{file}");

    // What a load refuses, the schema refuses; what it accepts, the schema accepts.
    let valid = serde_json::json!({"version": 3, "data": serde_json::to_value(sample(Theme::Light)).unwrap()});
    assert!(validator.is_valid(&valid));
    let altered = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut file = valid.clone();
        change(&mut file);
        let loads = serde_json::from_value::<Settings>(file["data"].clone()).is_ok()
            && file["version"] == 3;
        (validator.is_valid(&file), loads)
    };
    for (what, change, accepted) in [
        (
            "another version",
            Box::new(|f: &mut serde_json::Value| f["version"] = 4.into())
                as Box<dyn Fn(&mut serde_json::Value)>,
            false,
        ),
        (
            "a u8 out of range",
            Box::new(|f: &mut serde_json::Value| f["data"]["font_size"] = 300.into()),
            false,
        ),
        (
            "a defaulted field missing",
            Box::new(|f: &mut serde_json::Value| {
                f["data"].as_object_mut().unwrap().remove("font_size");
            }),
            true,
        ),
        (
            "a required field missing",
            Box::new(|f: &mut serde_json::Value| {
                f["data"].as_object_mut().unwrap().remove("scale");
            }),
            false,
        ),
        (
            "an option that is null",
            Box::new(|f: &mut serde_json::Value| f["data"]["window"] = serde_json::Value::Null),
            true,
        ),
        (
            "an unknown member of a strict struct",
            Box::new(|f: &mut serde_json::Value| f["data"]["window"]["depth"] = 1.into()),
            false,
        ),
        (
            "an unknown member of a lenient struct",
            Box::new(|f: &mut serde_json::Value| f["data"]["extra"] = 1.into()),
            true,
        ),
        (
            "an unknown variant",
            Box::new(|f: &mut serde_json::Value| f["data"]["theme"] = "sepia".into()),
            false,
        ),
        (
            "a struct variant",
            Box::new(|f: &mut serde_json::Value| {
                f["data"]["theme"] = serde_json::json!({"custom": {"accent": "red"}})
            }),
            true,
        ),
        (
            "a struct variant missing a field",
            Box::new(|f: &mut serde_json::Value| {
                f["data"]["theme"] = serde_json::json!({"custom": {}})
            }),
            false,
        ),
        (
            "a map value of the wrong type",
            Box::new(|f: &mut serde_json::Value| f["data"]["counts"]["saves"] = "3".into()),
            false,
        ),
        (
            "a map key that is not a number",
            Box::new(|f: &mut serde_json::Value| {
                f["data"]["by_id"] = serde_json::json!({"seven": true})
            }),
            false,
        ),
        (
            "a tuple too long",
            Box::new(|f: &mut serde_json::Value| {
                f["data"]["pair"] = serde_json::json!([1, "a", 2])
            }),
            false,
        ),
        (
            "a negative u64",
            Box::new(|f: &mut serde_json::Value| f["data"]["id"] = (-1).into()),
            false,
        ),
        (
            "two characters for a char",
            Box::new(|f: &mut serde_json::Value| f["data"]["initial"] = "ab".into()),
            false,
        ),
    ] {
        assert_eq!(altered(&*change), (accepted, accepted), "{what}");
    }

    // The structure, by hand.
    let defs = &schema["$defs"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["properties"]["data"]["$ref"], "#/$defs/root");
    let root = &defs["root"];
    assert!(root.get("additionalProperties").is_none());
    assert!(
        !root["required"]
            .as_array()
            .unwrap()
            .contains(&"font_size".into())
    );
    assert!(
        !root["required"]
            .as_array()
            .unwrap()
            .contains(&"window".into())
    );
    assert_eq!(root["properties"]["window"]["anyOf"][1]["type"], "null");
    assert_eq!(defs["root.window"]["additionalProperties"], false);
    assert_eq!(defs["root.theme"]["oneOf"][0]["const"], "light");
    assert_eq!(root["properties"]["font_size"]["maximum"], 255);
    assert_eq!(defs["root.id"]["maximum"], u64::MAX);
    assert_eq!(
        root["properties"]["counts"]["additionalProperties"]["type"],
        "integer"
    );
}
