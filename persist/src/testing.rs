//! A test kit for migration chains (feature `testing`, for dev-dependencies): golden fixture
//! files of every version, loaded through the real load path and snapshotted with insta, and a
//! schema lock that fails when a versioned type's serialized shape changes, without a version
//! bump, in a way that the configured [compatibility level](Compatibility) does not accept.
//!
//! # Layout
//!
//! ```text
//! tests/fixtures/settings/      the folder given to Fixtures::new or migration_tests!
//!   v1/schema.txt               the locked shape of version 1 (generated, committed)
//!   v1/basic.json               fixtures: real files of version 1 (written by Fixtures::write)
//!   v1/bad-theme.fails.json     a fixture that must fail to load
//!   v2/schema.txt
//!   v2/basic.json
//!   v3/...
//! ```
//!
//! # The workflow
//!
//! ```ignore
//! // tests/migrations.rs
//! persist::testing::migration_tests!(settings: Settings, "tests/fixtures/settings");
//! // or, with a stricter level than the default `backward`:
//! persist::testing::migration_tests!(settings: Settings, "tests/fixtures/settings", compatibility = full);
//! ```
//!
//! generates two tests in a module `settings`:
//!
//! - `fixtures`: every `v<N>/*.json` (and `*.toml`, with the `toml` feature) is loaded as
//!   `Settings` with the real load path and the outcome (the migration steps, then the migrated
//!   value as JSON, or as TOML for a type saved in TOML, or the error) is an insta snapshot
//!   named `v<N>_<fixture>`. Each version of the chain must have at least one fixture.
//!   Every fixture must load, except those named `<name>.fails.json`, which must fail, whatever
//!   the snapshots say.
//!   Every migrated value is also saved, loaded again and saved again, and must give the same
//!   bytes: a schema whose files do not load back to the same value (`skip_serializing_if`
//!   without `default`, overlapping untagged variants, ...) fails here rather than in a user's
//!   file. A type's `#[persist(validate = ...)]` runs on every fixture, as on every load. Each
//!   fixture of a version marked `#[persist(downgrade)]` also goes down one version and up
//!   again; what the round trip lost is a snapshot named `v<N>_<fixture>_down`, and a step that
//!   fails on a fixture fails the test. Review snapshot changes with `cargo insta review`.
//! - `schemas`: the shape of every version of the chain (field names after serde renames, types,
//!   nesting, enum variants, options, maps, every nested type, and what each field allows) is
//!   compared with `v<N>/schema.txt`, and each difference is classified (below). A missing lock
//!   is written (and is an error when `CI` is set: commit it). A change the level accepts
//!   passes with a note, and the lock is rewritten (outside CI) so that the next comparison
//!   starts from it. Any other change fails with the diff, each change's class, and what would
//!   make it compatible; accept a deliberate one with `PERSIST_ACCEPT_SCHEMA=1 cargo test`,
//!   except a breaking change, which always needs a version bump.
//!
//! When you bump a version: keep the old struct (renamed, e.g. `SettingsV3`), give the new one
//! `#[persist(version = 4, migrate_from = SettingsV3)]`, write a fixture of the new version
//! with [`Fixtures::write`], run the tests, review the new snapshots, commit.
//!
//! # What the schema lock checks
//!
//! Shapes are traced through each type's `Deserialize` impl with serde-reflection. It sees what
//! a reader expects: names after renames, types, nesting, variants. What each struct field
//! allows is then probed on the type itself, with sample values built from the traced shape: a
//! field that may be missing on read (`#[serde(default)]`, an `Option`), a field a save may
//! leave out (`skip_serializing_if`, found by giving the field its empty value: `null`, `0`,
//! `false`, `""`, `[]` or `{}`), a struct that refuses unknown members
//! (`deny_unknown_fields`), and the aliases a field is also read under (`alias`). A struct
//! whose sample does not load (a `Deserialize` impl that validates, a type that cannot be
//! empty) keeps the facts of plain fields: required unless an `Option`, always written.
//!
//! The lock text, one block per container:
//!
//! ```text
//! $ = struct {                                the root; `struct deny_unknown_fields {` if it
//!   theme: $.theme,                           refuses unknown members
//!   font_size: u32 = default,                 may be missing on read
//!   tags: seq<string> = default, skipped when empty,
//!   nickname: option<string>,                 an Option may be missing: nothing to say
//!   accent: string = alias colour,            also read as `colour`
//! }
//! $.theme = enum {
//!   light,
//!   custom(string),
//! }
//! ```
//!
//! A field line is `name: type,`, followed, only when there is something to say, by ` = ` and
//! annotations separated by `, `: `default` (may be missing on read; implied for an
//! `option<...>`, so not written there), `required` (an `option<...>` that may not be missing),
//! `skipped when empty` (a save may leave it out), `alias NAME` (one per alias). A plain field
//! reads as it always did, so locks of types without these attributes are unchanged. A lock
//! written before persist recorded annotations, which differs from the current text only by
//! them, passes at every level with a note and is rewritten outside CI (persist cannot tell such
//! a lock from attributes added since; the note names the classes).
//!
//! Each difference between the lock and the current shape is a [`ShapeChange`] with a
//! [`ChangeClass`], as Confluent's schema registry and buf classify changes: *backward*
//! compatible when the new type reads old files, *forward* compatible when a build from before
//! the change reads new files, [`Both`](ChangeClass::Both) (full), or
//! [`Breaking`](ChangeClass::Breaking):
//!
//! | change | class |
//! |---|---|
//! | field added, may be missing on read | both (backward only if the old struct refused unknown fields) |
//! | field added, required | forward |
//! | field removed, was optional | both (forward only if the new struct refuses unknown fields) |
//! | field removed, was required | backward |
//! | field renamed, new name has `alias = "old"` | backward (both if the old field was optional) |
//! | field renamed without an alias | breaking: the old value would be lost, or silently dropped if the new field is optional |
//! | type widened (`u8` to `u32`, `i32` to `i64`, `u32` to `i64`, `f32` to `f64`, an integer to a float, `char` to `string`) | backward |
//! | type narrowed (the reverse) | forward |
//! | type replaced by an unrelated one (`string` to `u32`, `u32` to `i32`) | breaking |
//! | `T` to `Option<T>` | backward |
//! | `Option<T>` to `T` | forward |
//! | enum variant added | backward |
//! | enum variant removed | forward |
//! | field newly skipped when empty, old field required | backward |
//! | field now optional on read, `deny_unknown_fields` added or removed, alias added | both |
//!
//! Nested types are compared where they are used, and their changes named by path
//! (`$.window.maximized`, `$.theme::Custom.accent`); a newtype struct around a type is not a
//! change (JSON does not show it). A diff's class is the meet of its changes' classes. The
//! [`Compatibility`] level (`backward` by default; [`Fixtures::compatibility`], or
//! `compatibility = backward | forward | full | none` in [`migration_tests!`]) decides which
//! classes pass. A breaking change fails at every level and even with
//! `PERSIST_ACCEPT_SCHEMA=1`: bump the version, or, if no file of that version ever left your
//! machine, delete the lock and run the tests again to write it anew.
//! [`compare_with_lock`] and [`compare_locks`] classify without a fixtures folder, and
//! [`json_schema`] exports a version's shape as a JSON Schema.
//!
//! The lock cannot trace untagged or internally tagged enums, `#[serde(flatten)]`,
//! `serde_json::Value` or hand-written impls that call `deserialize_any`: those types get a
//! clear error, not a silent pass. A lock names the root `$` and each nested type by where it is
//! first used (`$.window`, `$.theme::Custom.accent`), not by its Rust name, which JSON never
//! holds: renaming a type (the first step of a bump) changes no lock. Two nested types with the
//! same serde name in different modules are still reported as a conflict, because that is how
//! serde-reflection tells types apart. Homogeneous tuples such as
//! `(u32, u32)` are written `[u32; 2]`.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

#[doc(hidden)]
pub use insta;

use crate::codec::{VisitVersion, walk_chain};
use crate::schema::short_name;
pub use crate::schema::{
    ChangeClass, ChangeKind, Compatibility, ShapeChange, ShapeError, compare_locks,
    compare_with_lock, describe, json_schema,
};
use crate::{Error, Options, Persisted};

/// The environment variable that accepts changed schema locks (`PERSIST_ACCEPT_SCHEMA=1`).
pub const ACCEPT_SCHEMA: &str = "PERSIST_ACCEPT_SCHEMA";

const SCHEMA_FILE: &str = "schema.txt";

/// The fixtures and schema locks of the chain that ends in `T`, kept in one folder (relative
/// paths are relative to the current directory, which `cargo test` sets to the package root).
#[derive(Debug)]
pub struct Fixtures<T> {
    dir: PathBuf,
    compatibility: Compatibility,
    /// `PERSIST_ACCEPT_SCHEMA=1`, set in code; `None` reads the variable.
    accept: Option<bool>,
    /// Whether this is a CI run, set in code; `None` reads the `CI` variable.
    ci: Option<bool>,
    marker: PhantomData<fn() -> T>,
}

/// One fixture file and what loading it as the current version gives.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fixture<T> {
    /// The version folder it is in.
    pub version: u32,
    /// Its file name without `.json` (or `.toml`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// The migration steps a load runs, as `(from, to)` pairs.
    pub steps: Vec<(u32, u32)>,
    /// The loaded value, or the error the load reported.
    pub loaded: Result<T, Error>,
    /// The fixture is declared to fail: its name ends in `.fails` (`v1/bad-theme.fails.json`).
    /// Every other fixture must load.
    pub expect_failure: bool,
}

/// Why [`Fixtures::write`] wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// A fixture of that name exists. Fixtures are the files your users have: they are never
    /// replaced by accident. Use [`Fixtures::overwrite`] to replace one on purpose.
    #[error(
        "{}: the fixture exists and was left as it was; fixtures of old versions are the files \
         your users have, so they are never replaced by accident (Fixtures::overwrite replaces \
         one on purpose)",
        path.display()
    )]
    Exists {
        /// The fixture.
        path: PathBuf,
    },
    /// The save failed.
    #[error(transparent)]
    Save(#[from] Error),
}

impl<T: Persisted> Fixture<T> {
    /// The insta snapshot name: `v<version>_<name>`.
    pub fn snapshot_name(&self) -> String {
        format!("v{}_{}", self.version, self.name)
    }

    /// The snapshot text: the migration steps, then the value as pretty JSON or the error
    /// (with the fixture's path left out, so the text is the same on every machine).
    pub fn snapshot(&self) -> String {
        let mut text = format!("fixture {}, ", shown_path(self.version, &self.path));
        // The steps that ran: all of them after a load, those before the failing one after a
        // refused migration, none when the data could not be read at all.
        let (ran, failed) = match &self.loaded {
            Ok(_) => (&self.steps[..], None),
            // Every step ran, then `validate` refused the value.
            Err(Error::Migration { source, .. }) if source.is::<crate::ValidationError>() => {
                (&self.steps[..], None)
            }
            Err(Error::Migration { from, to, .. }) => {
                let failing = self.steps.iter().position(|step| *step == (*from, *to));
                (&self.steps[..failing.unwrap_or(0)], Some((*from, *to)))
            }
            Err(_) => (&self.steps[..0], None),
        };
        let refused = matches!(&self.loaded, Err(Error::Migration { source, .. })
            if source.is::<crate::ValidationError>());
        if ran.is_empty() && failed.is_none() {
            text.push_str(if self.loaded.is_ok() || refused {
                "no migration"
            } else {
                "not loaded"
            });
        } else if !ran.is_empty() {
            text.push_str("migrated");
            for (i, (from, to)) in ran.iter().enumerate() {
                if i == 0 {
                    text.push_str(&format!(" {from}"));
                }
                text.push_str(&format!(" -> {to}"));
            }
        }
        if let Some((from, to)) = failed {
            if !ran.is_empty() {
                text.push_str(", then ");
            }
            text.push_str(&format!("migration {from} -> {to} failed"));
        }
        if refused {
            text.push_str(", then refused by `validate`");
        }
        text.push('\n');
        match &self.loaded {
            Ok(value) => text.push_str(&shown_value(value)),
            Err(error) => {
                let shown = error.to_string();
                let path = self.path.display().to_string();
                text.push_str("error: ");
                text.push_str(&shown.replace(&path, "<fixture>"));
            }
        }
        text.push('\n');
        text
    }
}

impl<T: Persisted> Fixture<T> {
    /// What goes wrong when the loaded value is saved and loaded again, if anything: the value
    /// cannot be saved, its file does not load back, or the value loaded back saves to other
    /// bytes. Such a schema loses data on its first save, whatever the fixture's snapshot says:
    /// `Option<Option<T>>` with `skip_serializing_if`, `skip_serializing_if` without `default`,
    /// untagged enums whose variants overlap, floats that JSON cannot hold. `None` for a
    /// fixture that did not load (its snapshot shows the error).
    pub fn round_trip_problem(&self) -> Option<String> {
        let value = self.loaded.as_ref().ok()?;
        // In the type's own format: TOML holds what JSON cannot (a NaN), and the reverse.
        let style = crate::codec::Style {
            format: T::FORMAT,
            ..crate::codec::Style::default()
        };
        let first = match crate::codec::encode_to_vec(value, style) {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = error.at(&self.path);
                return Some(format!("the loaded value cannot be saved: {error}"));
            }
        };
        let again: T = match crate::codec::decode(&first) {
            Ok(again) => again,
            Err(error) => {
                let error = error.at::<T>(&self.path);
                return Some(format!(
                    "the loaded value saves, but its file does not load back: {error}"
                ));
            }
        };
        let second = match crate::codec::encode_to_vec(&again, style) {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = error.at(&self.path);
                return Some(format!("the value loaded back cannot be saved: {error}"));
            }
        };
        if first == second {
            return None;
        }
        let at = first
            .iter()
            .zip(&second)
            .position(|(a, b)| a != b)
            .unwrap_or(first.len().min(second.len()));
        let around = |bytes: &[u8]| {
            let start = at.saturating_sub(40);
            let end = (at + 40).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..end]).into_owned()
        };
        Some(format!(
            "saved and loaded again, the value changes: the first save wrote\n  …{}…\nthe second \
             wrote\n  …{}…\n(first difference at byte {at}); a file saved by this version loses \
             or alters data when it is next loaded",
            around(&first),
            around(&second)
        ))
    }
}

impl<T: Persisted> Fixtures<T> {
    /// The fixtures under `dir`, checked at the default [`Compatibility::Backward`] level.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Fixtures {
            dir: dir.into(),
            compatibility: Compatibility::default(),
            accept: None,
            ci: None,
            marker: PhantomData,
        }
    }

    /// Sets the level that decides which schema changes pass [`assert_schemas`] without a
    /// version bump (see [`Compatibility`]). A breaking change fails at every level.
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
    /// # #[persist(version = 1)]
    /// # struct Settings { theme: String }
    /// use persist::testing::{Compatibility, Fixtures};
    ///
    /// let fixtures = Fixtures::<Settings>::new("tests/fixtures/settings")
    ///     .compatibility(Compatibility::Full);
    /// ```
    ///
    /// [`assert_schemas`]: Fixtures::assert_schemas
    #[must_use]
    pub fn compatibility(mut self, level: Compatibility) -> Self {
        self.compatibility = level;
        self
    }

    /// Makes [`assert_schemas`](Fixtures::assert_schemas) accept (`true`) or refuse (`false`)
    /// schema changes the level does not, as `PERSIST_ACCEPT_SCHEMA=1` does, whatever that
    /// variable says. By default the variable decides. A breaking change is never accepted.
    #[must_use]
    pub fn accept_schema_changes(mut self, accept: bool) -> Self {
        self.accept = Some(accept);
        self
    }

    /// Makes [`assert_schemas`](Fixtures::assert_schemas) behave as in CI (`true`: it writes no
    /// lock, and a missing lock fails) or as on a developer's machine (`false`), whatever the
    /// environment says. By default it is CI when the `CI` variable is set, not empty, and not
    /// `false`.
    #[must_use]
    pub fn ci(mut self, ci: bool) -> Self {
        self.ci = Some(ci);
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of version `version`.
    pub fn version_dir(&self, version: u32) -> PathBuf {
        self.dir.join(format!("v{version}"))
    }

    /// Writes `value`, a value of any version `V` of the chain, as the fixture `name` of its
    /// version: `<dir>/v<V::VERSION>/<name>.json` (`.toml` for a type saved in TOML), in the real
    /// on-disk format (a plain save).
    /// Call it once when you add a version, from a test or a small program, and commit the file.
    /// Name a fixture that must fail to load `<name>.fails` (see [`Fixtures::assert_outcomes`]).
    ///
    /// # Errors
    ///
    /// [`FixtureError::Exists`] if the fixture exists: it is left as it is (fixtures of old
    /// versions are the files your users have); [`FixtureError::Save`] with the errors of
    /// [`Persisted::save`].
    pub fn write<V: Persisted>(&self, name: &str, value: &V) -> Result<PathBuf, FixtureError> {
        let path = self.fixture_path::<V>(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(FixtureError::Exists { path });
        }
        Options::new().backups(0).save(value, &path)?;
        Ok(path)
    }

    /// [`write`](Fixtures::write), replacing the fixture if it exists: for when a fixture was
    /// wrong, never to make a failing test pass.
    ///
    /// # Errors
    ///
    /// The errors of [`Persisted::save`].
    pub fn overwrite<V: Persisted>(&self, name: &str, value: &V) -> Result<PathBuf, Error> {
        let path = self.fixture_path::<V>(name);
        Options::new().backups(0).save(value, &path)?;
        Ok(path)
    }

    fn fixture_path<V: Persisted>(&self, name: &str) -> PathBuf {
        self.version_dir(V::VERSION)
            .join(format!("{name}.{}", V::FORMAT.extension()))
    }

    /// Panics with what to create when the fixtures folder does not exist, rather than letting
    /// each test fail its own way.
    pub fn assert_folder_exists(&self) {
        assert!(
            self.dir.is_dir(),
            "no fixtures folder at {} (relative paths start at the package root): create it with \
             one folder per version of the `{}` chain (v{}/ ...), each holding real files of \
             that version, for instance with `persist::testing::Fixtures::write`; the schema \
             locks are written there on the first run",
            self.dir.display(),
            short_name::<T>(),
            crate::codec::chain_versions::<T>()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/, v"),
        );
    }

    /// Loads every fixture of every version folder as `T` through the real load path, sorted by
    /// version and name. Nothing is written.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the folder cannot be listed.
    pub fn load_all(&self) -> Result<Vec<Fixture<T>>, Error> {
        let mut fixtures = Vec::new();
        for version in versions_in(&self.dir)? {
            for (path, name) in fixture_files(&self.version_dir(version))? {
                let inspection = Options::new().inspect::<T>(&path)?;
                fixtures.push(Fixture {
                    version,
                    expect_failure: name.ends_with(".fails"),
                    name,
                    steps: inspection.steps,
                    loaded: T::load(&path),
                    path,
                });
            }
        }
        Ok(fixtures)
    }

    /// Panics unless every fixture loads, except those declared to fail (named `<name>.fails`),
    /// which must fail. Whatever the snapshots say: a snapshot accepted in a hurry can record
    /// an error, and this still fails.
    pub fn assert_outcomes(&self, fixtures: &[Fixture<T>]) {
        let problems: Vec<String> = fixtures
            .iter()
            .filter_map(|fixture| {
                let at = format!("fixture {}", shown_path(fixture.version, &fixture.path));
                let extension = extension_of(&fixture.path);
                match (&fixture.loaded, fixture.expect_failure) {
                    (Err(error), false) => Some(format!(
                        "{at} does not load: {error}\n(files of version {} that your users have \
                         would fail the same way; if this fixture must fail, name it `{}.fails.{extension}`)",
                        fixture.version, fixture.name
                    )),
                    (Ok(_), true) => Some(format!(
                        "{at} is declared to fail (`.fails.{extension}`) but loads; rename it if \
                         that is \
                         now intended"
                    )),
                    _ => None,
                }
            })
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }

    /// Panics unless every fixture that loads survives a save and a load unchanged: saved, loaded
    /// again and saved again, it must give the same bytes (see
    /// [`Fixture::round_trip_problem`]).
    pub fn assert_round_trips(&self, fixtures: &[Fixture<T>]) {
        let problems: Vec<String> = fixtures
            .iter()
            .filter_map(|fixture| {
                let problem = fixture.round_trip_problem()?;
                Some(format!(
                    "fixture {}: {problem}",
                    shown_path(fixture.version, &fixture.path)
                ))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{} of `{}` do not survive a save and a load:\n\n{}\n\nA type whose saved files do \
             not load back to the same value loses data. Make the serde attributes symmetric \
             (`skip_serializing_if` needs `default`; an `Option<Option<T>>` needs \
             `serde_with::rust::double_option`; untagged variants must not overlap)",
            if problems.len() == 1 {
                "a fixture"
            } else {
                "fixtures"
            },
            short_name::<T>(),
            problems.join("\n\n")
        );
    }

    /// Panics unless every version of the chain has at least one fixture.
    pub fn assert_every_version_has_a_fixture(&self, fixtures: &[Fixture<T>]) {
        for version in crate::codec::chain_versions::<T>() {
            assert!(
                fixtures.iter().any(|fixture| fixture.version == version),
                "no fixture for version {version} of the `{}` chain in {}: write one with \
                 `persist::testing::Fixtures::write` (a real file of that version) and commit it",
                short_name::<T>(),
                self.version_dir(version).display(),
            );
        }
    }

    /// Takes every fixture of every version that declares a downgrade (`#[persist(downgrade)]`)
    /// down one version and up again: the fixture is read as its version, converted to the
    /// previous version, written and read back as that version (what the older release
    /// reads), migrated up again, and compared with the fixture's value member by member.
    /// Fixtures declared to fail (`.fails.json`) are left out. Nothing is written to disk.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a folder cannot be listed or a fixture read.
    pub fn downgrade_round_trips(&self) -> Result<Vec<DowngradeTrip>, Error> {
        struct Trips<'a> {
            fixtures: &'a Path,
            trips: Vec<DowngradeTrip>,
            error: Option<Error>,
        }

        impl VisitVersion for Trips<'_> {
            fn visit<V: Persisted>(&mut self) {
                if self.error.is_some() || !V::DOWNGRADES || !crate::codec::has_older::<V>() {
                    return;
                }
                let dir = self.fixtures.join(format!("v{}", V::VERSION));
                if !dir.is_dir() {
                    return;
                }
                let files = match fixture_files(&dir) {
                    Ok(files) => files,
                    Err(error) => return self.error = Some(error),
                };
                for (path, name) in files {
                    if name.ends_with(".fails") {
                        continue;
                    }
                    let bytes = match std::fs::read(&path) {
                        Ok(bytes) => bytes,
                        Err(source) => {
                            return self.error = Some(Error::Io {
                                path,
                                op: crate::IoOp::Read,
                                source,
                            });
                        }
                    };
                    self.trips.push(DowngradeTrip {
                        version: V::VERSION,
                        to: <V::Previous as Persisted>::VERSION,
                        name,
                        outcome: down_and_up::<V>(&bytes, &path),
                        path,
                    });
                }
            }
        }

        let mut trips = Trips {
            fixtures: &self.dir,
            trips: Vec::new(),
            error: None,
        };
        walk_chain::<T, _>(&mut trips);
        match trips.error {
            Some(error) => Err(error),
            None => Ok(trips.trips),
        }
    }

    /// Panics unless every fixture of a version that declares a downgrade goes down one
    /// version and up again without an error (see
    /// [`downgrade_round_trips`](Fixtures::downgrade_round_trips)). What a round trip loses is
    /// not a failure (a downgrade drops what the older version cannot hold): it is in each
    /// trip's snapshot, for review.
    pub fn assert_downgrades(&self, trips: &[DowngradeTrip]) {
        let problems: Vec<String> = trips
            .iter()
            .filter_map(|trip| {
                let error = trip.outcome.as_ref().err()?;
                Some(format!(
                    "fixture {} does not go down to version {} and up again: {error}",
                    shown_path(trip.version, &trip.path),
                    trip.to
                ))
            })
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }

    /// Compares the shape of every version of the chain with its lock, without writing: one
    /// [`SchemaChange`] per version whose shape differs from its lock (or has none), with its
    /// changes classified.
    ///
    /// # Errors
    ///
    /// [`ShapeError`] if a version's shape cannot be traced, or a lock cannot be read.
    pub fn schema_changes(&self) -> Result<Vec<SchemaChange>, ShapeError> {
        struct Compare<'a> {
            dir: &'a Path,
            compatibility: Compatibility,
            changes: Vec<SchemaChange>,
            error: Option<ShapeError>,
        }

        impl VisitVersion for Compare<'_> {
            fn visit<V: Persisted>(&mut self) {
                if self.error.is_some() {
                    return;
                }
                let current = match describe::<V>() {
                    Ok(current) => current,
                    Err(error) => return self.error = Some(error),
                };
                let lock = self.dir.join(format!("v{}", V::VERSION)).join(SCHEMA_FILE);
                let locked = std::fs::read_to_string(&lock).ok();
                if locked.as_deref() == Some(current.as_str()) {
                    return;
                }
                let changes = match &locked {
                    Some(locked) => match compare_locks(locked, &current) {
                        Ok(changes) => changes,
                        Err(error) => return self.error = Some(error.in_lock(&lock)),
                    },
                    None => Vec::new(),
                };
                self.changes.push(SchemaChange {
                    type_name: short_name::<V>(),
                    version: V::VERSION,
                    lock,
                    locked,
                    current,
                    changes,
                    compatibility: self.compatibility,
                });
            }
        }

        let mut compare = Compare {
            dir: &self.dir,
            compatibility: self.compatibility,
            changes: Vec::new(),
            error: None,
        };
        walk_chain::<T, _>(&mut compare);
        match compare.error {
            Some(error) => Err(error),
            None => Ok(compare.changes),
        }
    }

    /// Checks every version's shape against its lock ([`schema_changes`]):
    ///
    /// - a missing lock is written (and fails under CI: commit it);
    /// - a change the [level](Fixtures::compatibility) accepts (or a lock that only lacks the
    ///   annotations of a newer persist) passes with a note on stderr naming each change and
    ///   its class, and the lock is rewritten to the current shape, except under CI;
    /// - any other change panics with the diff, each change's class and fix, and what to do;
    ///   `PERSIST_ACCEPT_SCHEMA=1` (or [`accept_schema_changes`]) rewrites it instead, unless
    ///   it is breaking: a breaking change always needs a version bump (or, if no file of that
    ///   version ever left your machine, the lock deleted to start over).
    ///
    /// [`schema_changes`]: Fixtures::schema_changes
    /// [`accept_schema_changes`]: Fixtures::accept_schema_changes
    pub fn assert_schemas(&self) {
        self.assert_folder_exists();
        let changes = match self.schema_changes() {
            Ok(changes) => changes,
            Err(error) => panic!("{error}"),
        };
        let accept = self
            .accept
            .unwrap_or_else(|| std::env::var_os(ACCEPT_SCHEMA).is_some_and(|value| value == "1"));
        let ci = self.ci.unwrap_or_else(|| {
            std::env::var_os("CI").is_some_and(|value| !value.is_empty() && value != "false")
        });
        let mut failures = Vec::new();
        for change in changes {
            let write = match change.class() {
                None => !ci,
                Some(_) if change.accepted() => {
                    eprintln!("{}", change.note(ci));
                    !ci
                }
                Some(class) => accept && class != ChangeClass::Breaking,
            };
            if write {
                if let Some(dir) = change.lock.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match std::fs::write(&change.lock, &change.current) {
                    Ok(()) => eprintln!("persist: wrote schema lock {}", change.lock.display()),
                    Err(error) => failures.push(format!("{}: {error}", change.lock.display())),
                }
            } else if !change.accepted() {
                failures.push(change.to_string());
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

/// The fixtures in the version folder `dir`, by name: each file's path and its name without
/// `.json`.
fn fixture_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut paths: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|path| {
            let extension = extension_of(path);
            extension == "json" || (cfg!(feature = "toml") && extension == "toml")
        })
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            (path, name)
        })
        .collect())
}

/// A fixture as its snapshots and messages name it: `v1/basic.json`.
fn shown_path(version: u32, path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    format!("v{version}/{file}")
}

/// A fixture's file extension (`json` or `toml`).
fn extension_of(path: &Path) -> String {
    path.extension()
        .map(|extension| extension.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A loaded value as its snapshot shows it: pretty JSON, or TOML for a type saved in TOML.
fn shown_value<T: Persisted>(value: &T) -> String {
    #[cfg(feature = "toml")]
    if T::FORMAT == crate::Format::Toml {
        return match toml::to_string_pretty(value) {
            Ok(text) => format!("(TOML)\n{}", text.trim_end()),
            Err(error) => format!("cannot show the value as TOML: {error}"),
        };
    }
    match serde_json::to_string_pretty(value) {
        Ok(json) => json,
        Err(error) => format!("cannot show the value as JSON: {error}"),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        op: crate::IoOp::Read,
        source,
    })?;
    Ok(entries.flatten().map(|entry| entry.path()).collect())
}

/// The `v<N>` folders under `dir`, by version.
fn versions_in(dir: &Path) -> Result<Vec<u32>, Error> {
    let mut versions: Vec<u32> = read_dir(dir)?
        .iter()
        .filter(|path| path.is_dir())
        .filter_map(|path| path.file_name()?.to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// One fixture taken down one version and up again
/// ([`Fixtures::downgrade_round_trips`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct DowngradeTrip {
    /// The fixture's version, which declares the downgrade.
    pub version: u32,
    /// The version it went down to.
    pub to: u32,
    /// Its file name without `.json` (or `.toml`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// What the round trip lost or changed, member by member (`font: "serif" became "mono"`;
    /// empty when nothing was lost), or the error of the step that failed.
    pub outcome: Result<Vec<String>, String>,
}

impl DowngradeTrip {
    /// The insta snapshot name: `v<version>_<name>_down`.
    pub fn snapshot_name(&self) -> String {
        format!("v{}_{}_down", self.version, self.name)
    }

    /// The snapshot text: the trip, then what it lost, or the error.
    pub fn snapshot(&self) -> String {
        let mut text = format!(
            "fixture {}, down to version {} and up again: ",
            shown_path(self.version, &self.path),
            self.to
        );
        match &self.outcome {
            Ok(lost) if lost.is_empty() => text.push_str("nothing lost\n"),
            Ok(lost) => {
                text.push_str("lost or changed\n");
                for change in lost {
                    text.push_str(&format!("  {change}\n"));
                }
            }
            Err(error) => text.push_str(&format!("failed: {error}\n")),
        }
        text
    }
}

/// A fixture of `V` (its `bytes`) down to `V::Previous`, written and read back at that version,
/// and migrated up again: what changed, or the step that failed.
fn down_and_up<V: Persisted>(bytes: &[u8], path: &Path) -> Result<Vec<String>, String> {
    let value: V = crate::codec::decode(bytes)
        .map_err(|error| format!("it does not load: {}", error.at::<V>(path)))?;
    let before = serde_json::to_value(&value).map_err(|error| error.to_string())?;
    let down = value.downgrade().map_err(|error| {
        format!(
            "the downgrade {} -> {} failed: {error}",
            V::VERSION,
            <V::Previous as Persisted>::VERSION
        )
    })?;
    let written = crate::codec::encode_to_vec(&down, crate::codec::Style::default())
        .map_err(|error| format!("the downgraded value cannot be saved: {}", error.at(path)))?;
    let read: V::Previous = crate::codec::decode(&written).map_err(|error| {
        format!(
            "the file written at version {} does not load as that version: {}",
            <V::Previous as Persisted>::VERSION,
            error.at::<V::Previous>(path)
        )
    })?;
    let up = V::migrate(read).map_err(|error| {
        format!(
            "the migration {} -> {} back up failed: {error}",
            <V::Previous as Persisted>::VERSION,
            V::VERSION
        )
    })?;
    up.validate()
        .map_err(|error| format!("the value back up is refused by `validate`: {error}"))?;
    let after = serde_json::to_value(&up).map_err(|error| error.to_string())?;
    let mut changes = Vec::new();
    json_changes(&before, &after, "", &mut changes);
    Ok(changes)
}

/// The members of `before` that `after` lost or changed, and those it gained, as lines.
fn json_changes(
    before: &serde_json::Value,
    after: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    let here = |name: &str| match at.is_empty() {
        true => name.to_owned(),
        false => format!("{at}.{name}"),
    };
    match (before, after) {
        (Value::Object(before), Value::Object(after)) => {
            for (name, member) in before {
                match after.get(name) {
                    Some(again) => json_changes(member, again, &here(name), out),
                    None => out.push(format!("{}: {member} was lost", here(name))),
                }
            }
            for (name, member) in after {
                if !before.contains_key(name) {
                    out.push(format!("{}: {member} was added", here(name)));
                }
            }
        }
        (Value::Array(before), Value::Array(after)) if before.len() == after.len() => {
            for (i, (item, again)) in before.iter().zip(after).enumerate() {
                json_changes(item, again, &format!("{at}[{i}]"), out);
            }
        }
        _ if before != after => {
            let at = if at.is_empty() { "the value" } else { at };
            out.push(format!("{at}: {before} became {after}"));
        }
        _ => {}
    }
}

/// A version whose serialized shape differs from its lock (or has no lock yet), with the
/// changes classified. Its `Display` is the failure message of
/// [`assert_schemas`](Fixtures::assert_schemas).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaChange {
    /// The Rust type of that version.
    pub type_name: String,
    /// Its version.
    pub version: u32,
    /// The lock file.
    pub lock: PathBuf,
    /// What the lock holds, `None` if there is no lock.
    pub locked: Option<String>,
    /// The shape the type has now.
    pub current: String,
    /// The changes from the lock to the current shape, in the order of the current shape;
    /// empty when there is no lock.
    pub changes: Vec<ShapeChange>,
    /// The level the fixtures check at ([`Fixtures::compatibility`]).
    pub compatibility: Compatibility,
}

impl SchemaChange {
    /// The class of all the changes together (the [meet](ChangeClass::meet) of theirs), or
    /// `None` when there is no lock to compare with.
    pub fn class(&self) -> Option<ChangeClass> {
        self.locked.as_ref()?;
        Some(
            self.changes
                .iter()
                .fold(ChangeClass::Both, |class, change| class.meet(change.class)),
        )
    }

    /// Whether the lock has no annotations and the current shape differs from it only by them:
    /// a lock written before persist recorded what fields allow, or a type that gained
    /// `#[serde(default)]`, `skip_serializing_if`, `deny_unknown_fields` or an alias since (the
    /// two cannot be told apart). [`Fixtures::assert_schemas`] lets it through at every level.
    pub fn annotations_only(&self) -> bool {
        self.locked
            .as_deref()
            .is_some_and(|locked| crate::schema::annotations_only(locked, &self.current))
    }

    /// The lock has no annotations, the current shape has some, and a change is about them:
    /// the lock may predate annotations, and those changes with it.
    fn locked_without_annotations(&self) -> bool {
        let annotated = |text: &str| {
            text.lines().any(|line| {
                (line.contains(": ") && line.contains(" = ") && line.ends_with(','))
                    || line.ends_with(" deny_unknown_fields {")
            })
        };
        self.locked
            .as_deref()
            .is_some_and(|locked| !annotated(locked) && annotated(&self.current))
            && self
                .changes
                .iter()
                .any(|change| change.kind.is_about_attributes())
            && !self.annotations_only()
    }

    /// Whether [`Fixtures::assert_schemas`] lets the change through without
    /// `PERSIST_ACCEPT_SCHEMA`: there is a lock, and the level accepts the changes' class (or
    /// the lock only lacks annotations).
    pub fn accepted(&self) -> bool {
        self.class()
            .is_some_and(|class| self.compatibility.accepts(class) || self.annotations_only())
    }

    /// The note an accepted change prints.
    fn note(&self, ci: bool) -> String {
        let mut note = if self.annotations_only() {
            format!(
                "persist: the schema lock {} has no annotations, and the shape of `{}` version {} \
                 differs from it only by them: the lock predates them, or the attributes are new \
                 (the change passes at every level):",
                self.lock.display(),
                self.type_name,
                self.version
            )
        } else {
            format!(
                "persist: the shape of `{}` version {} changed in ways the `{}` level accepts:",
                self.type_name, self.version, self.compatibility
            )
        };
        for change in &self.changes {
            note.push_str(&format!("\n  - {change}"));
        }
        if ci {
            note.push_str(&format!(
                "\nThe lock {} was left as it is under CI: run the tests locally to rewrite it, \
                 and commit it.",
                self.lock.display()
            ));
        } else {
            note.push_str(&format!(
                "\nThe lock {} now holds the current shape: review it and commit it.",
                self.lock.display()
            ));
        }
        note
    }
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(locked), Some(class)) = (&self.locked, self.class()) else {
            return write!(
                f,
                "no schema lock for `{}` version {} at {}: run the tests once outside CI to \
                 write it, review it, and commit it",
                self.type_name,
                self.version,
                self.lock.display()
            );
        };
        writeln!(
            f,
            "the serialized shape of `{}` version {} changed, but its version did not \
             (lock: {})",
            self.type_name,
            self.version,
            self.lock.display()
        )?;
        let diff = similar::TextDiff::from_lines(locked.as_str(), self.current.as_str());
        write!(
            f,
            "{}",
            diff.unified_diff()
                .context_radius(2)
                .header("locked", "current")
        )?;
        writeln!(
            f,
            "The changes, by compatibility (backward: files saved before a change load after it; \
             forward: files saved after it load in builds from before it):"
        )?;
        for change in &self.changes {
            writeln!(f, "- {change}")?;
        }
        let (version, next, name) = (self.version, self.version + 1, &self.type_name);
        if !class.is_backward() {
            writeln!(
                f,
                "Files saved at version {version} may no longer load, or may load with wrong or \
                 defaulted data."
            )?;
        }
        if !class.is_forward() {
            writeln!(
                f,
                "Files saved by this build may not load in builds from before the change."
            )?;
        }
        if self.locked_without_annotations() {
            writeln!(
                f,
                "The lock has no annotations: if a persist from before they were recorded wrote \
                 it, the changes above about what fields allow (optional, skipped when empty, \
                 aliases, unknown fields) may be older than this change. To see, undo the \
                 change, run the tests once (the lock is rewritten), and make it again."
            )?;
        }
        if self.accepted() {
            return write!(
                f,
                "Together they are {class}, which the `{level}` level accepts ({rule}).",
                level = self.compatibility,
                rule = self.compatibility.rule(),
            );
        }
        writeln!(
            f,
            "Together they are {class}, which the `{level}` level does not accept ({rule}).",
            level = self.compatibility,
            rule = self.compatibility.rule(),
        )?;
        let bump = format!(
            "keep the old definition as its own type with `#[persist(version = {version})]`, \
             give `{name}` `#[persist(version = {next}, migrate_from = <the old type>)]` and a \
             `From`/`TryFrom` impl, and write a fixture of version {next}"
        );
        if class == ChangeClass::Breaking {
            write!(
                f,
                "A breaking change always needs a version bump: {bump}. {ACCEPT_SCHEMA}=1 does \
                 not accept it. If no file of version {version} ever left your machine, delete \
                 the lock ({lock}) and run the tests again to write it anew.",
                lock = self.lock.display(),
            )
        } else {
            write!(
                f,
                "Make the changes compatible (the fix after each), or, if this is a new schema: \
                 {bump}.\n\
                 If the change is deliberate and the files it affects do not matter (no older \
                 build reads them, say), accept it: {ACCEPT_SCHEMA}=1 cargo test"
            )
        }
    }
}

/// Generates the migration tests of a chain in a module `name`: `fixtures` (every fixture of
/// every version loaded and snapshotted with insta) and `schemas` (every version's shape against
/// its lock, at a [`Compatibility`] level: `backward` unless `compatibility = ...` names
/// another of `backward`, `forward`, `full`, `none`). See the [module documentation](self).
///
/// ```ignore
/// persist::testing::migration_tests!(settings: Settings, "tests/fixtures/settings");
/// persist::testing::migration_tests!(settings: Settings, "tests/fixtures/settings", compatibility = full);
/// ```
#[macro_export]
macro_rules! migration_tests {
    (@level backward) => { $crate::testing::Compatibility::Backward };
    (@level forward) => { $crate::testing::Compatibility::Forward };
    (@level full) => { $crate::testing::Compatibility::Full };
    (@level none) => { $crate::testing::Compatibility::None };
    (@level $other:tt) => {
        ::core::compile_error!(::core::concat!(
            "unknown compatibility level `",
            ::core::stringify!($other),
            "`: use backward, forward, full or none"
        ))
    };
    ($name:ident : $ty:ty, $dir:expr $(,)?) => {
        $crate::migration_tests!($name: $ty, $dir, compatibility = backward);
    };
    ($name:ident : $ty:ty, $dir:expr, compatibility = $level:tt $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn fixtures() {
                let fixtures = $crate::testing::Fixtures::<$ty>::new($dir);
                fixtures.assert_folder_exists();
                let loaded = fixtures
                    .load_all()
                    .unwrap_or_else(|error| panic!("cannot read the fixtures: {error}"));
                fixtures.assert_every_version_has_a_fixture(&loaded);
                fixtures.assert_outcomes(&loaded);
                fixtures.assert_round_trips(&loaded);
                for fixture in &loaded {
                    $crate::testing::insta::assert_snapshot!(
                        fixture.snapshot_name(),
                        fixture.snapshot()
                    );
                }
                let trips = fixtures
                    .downgrade_round_trips()
                    .unwrap_or_else(|error| panic!("cannot read the fixtures: {error}"));
                fixtures.assert_downgrades(&trips);
                for trip in &trips {
                    $crate::testing::insta::assert_snapshot!(trip.snapshot_name(), trip.snapshot());
                }
            }

            #[test]
            fn schemas() {
                $crate::testing::Fixtures::<$ty>::new($dir)
                    .compatibility($crate::migration_tests!(@level $level))
                    .assert_schemas();
            }
        }
    };
}

pub use crate::migration_tests;

pub use crate::shell::faults::Fault;

/// Makes the next `times` steps `op` (an open, a write, an fsync, a rename, a directory sync,
/// a removal, a lock, ...) on files under `under` fail with the OS error `errno`, from any
/// thread, until the returned [`Fault`] is dropped: for testing what an application does when
/// persist meets a failing disk, and what persist leaves behind. Every write path of persist
/// (saves, updates, `Live`, collections, transactions, journals, the audit log) asks the same
/// seam before each step. Faults under other directories are untouched, so tests running side
/// by side do not see each other's.
///
/// # Examples
///
/// ```
/// # #[derive(serde::Serialize, serde::Deserialize, persist::Persisted)]
/// # #[persist(version = 1)]
/// # struct Settings { theme: String }
/// use persist::{IoOp, Persisted};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("settings.json");
/// Settings { theme: "light".into() }.save(&path)?;
///
/// let fault = persist::testing::inject_fault(dir.path(), IoOp::SyncFile, libc::EIO, 1);
/// let error = Settings { theme: "dark".into() }.save(&path).unwrap_err();
/// assert!(matches!(error, persist::Error::Io { op: IoOp::SyncFile, .. }));
/// assert_eq!(fault.hits(), 1);
/// assert_eq!(Settings::load(&path)?.theme, "light"); // the old file is kept
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inject_fault(under: impl AsRef<Path>, op: crate::IoOp, errno: i32, times: u32) -> Fault {
    crate::shell::faults::plan(under.as_ref(), op, errno, 0, times)
}

/// [`inject_fault`], letting the first `skip` matching steps through: the second fsync of a
/// batch, the third rename of a transaction.
pub fn inject_fault_after(
    under: impl AsRef<Path>,
    op: crate::IoOp,
    errno: i32,
    skip: u32,
    times: u32,
) -> Fault {
    crate::shell::faults::plan(under.as_ref(), op, errno, skip, times)
}
