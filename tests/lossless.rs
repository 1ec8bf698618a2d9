//! A value that saves must load back equal: floats JSON cannot hold (NaN, the infinities) and
//! values serde refuses are errors naming the field, before anything replaces the file, for
//! every way of saving; the `persist::non_finite` recipe stores them.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{listing, names};
use persist::{Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SeriesV1 {
    samples: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SeriesV1)]
struct Series {
    name: String,
    samples: Vec<f64>,
    gain: Option<f32>,
}

impl From<SeriesV1> for Series {
    fn from(old: SeriesV1) -> Self {
        Series {
            name: "migrated".into(),
            samples: old.samples,
            gain: None,
        }
    }
}

fn with_sample(value: f64) -> Series {
    Series {
        name: "s".into(),
        samples: vec![1.0, 2.0, 3.0, value, 5.0],
        gain: Some(1.5),
    }
}

/// A directory holding a version-1 file, so that a successful save of version 2 would also
/// write a backup.
fn old_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("series.json");
    SeriesV1 { samples: vec![0.5] }.save(&path).unwrap();
    (dir, path)
}

#[track_caller]
fn assert_refused(error: &Error, path: &Path, field: &str, what: &str) {
    match error {
        Error::Serialize {
            path: named,
            field: Some(at),
            ..
        } => {
            assert_eq!(named, path);
            assert_eq!(at, field);
        }
        other => panic!("expected Serialize at {field}, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(what), "{message}");
    assert!(message.contains(&format!("at `{field}`")), "{message}");
    assert!(message.contains("persist::non_finite"), "{message}");
}

#[test]
fn every_sync_save_refuses_non_finite_floats_and_leaves_the_directory_as_it_was() {
    for (value, what) in [
        (f64::NAN, "f64 NaN"),
        (f64::INFINITY, "f64 infinity"),
        (f64::NEG_INFINITY, "f64 -infinity"),
    ] {
        let (dir, path) = old_file();
        let before = listing(dir.path());
        let series = with_sample(value);

        let error = series.save(&path).unwrap_err();
        assert_refused(&error, &path, "data.samples[3]", what);
        assert_eq!(listing(dir.path()), before, "save of {what}");

        // With a checksum the value is serialized in another way: same refusal.
        let error = Options::new()
            .checksum(true)
            .save(&series, &path)
            .unwrap_err();
        assert_refused(&error, &path, "data.samples[3]", what);
        assert_eq!(listing(dir.path()), before, "checksummed save of {what}");

        // update: under the lock; the lock file is the only new entry.
        let error =
            Series::update(&path, |current| current.samples = series.samples.clone()).unwrap_err();
        assert_refused(&error, &path, "data.samples[3]", what);
        assert_eq!(names(dir.path()), ["series.json", "series.json.lock"]);
        assert_eq!(fs::read(&path).unwrap(), before[0].1, "update of {what}");
    }
}

#[test]
fn a_non_finite_float_is_found_among_legitimate_nulls() {
    // `gain: None` and unit values are written as `null` too: the float must still be found.
    let (dir, path) = old_file();
    let before = listing(dir.path());
    let mut series = with_sample(f64::NAN);
    series.gain = None;
    let error = series.save(&path).unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    assert_eq!(listing(dir.path()), before);

    // And a value whose only nulls are legitimate saves and loads back equal.
    series.samples[3] = 4.0;
    series.save(&path).unwrap();
    assert_eq!(Series::load(&path).unwrap(), series);
}

#[cfg(feature = "zstd")]
#[test]
fn framed_saves_refuse_them_too() {
    let (dir, path) = old_file();
    let before = listing(dir.path());
    let error = Options::new()
        .compress(3)
        .save(&with_sample(f64::NAN), &path)
        .unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    assert_eq!(listing(dir.path()), before);
}

#[cfg(feature = "encryption")]
#[test]
fn encrypted_saves_refuse_them_too() {
    let (dir, path) = old_file();
    let before = listing(dir.path());
    let key = persist::Key::from_bytes([7; 32]);
    let mut series = with_sample(1.0);
    series.gain = Some(f32::INFINITY);
    let error = Options::new()
        .encrypt(key)
        .save(&series, &path)
        .unwrap_err();
    assert_refused(&error, &path, "data.gain", "f32 infinity");
    assert_eq!(listing(dir.path()), before);
}

#[tokio::test]
async fn async_saves_refuse_them_too() {
    let (dir, path) = old_file();
    let before = listing(dir.path());
    let series = with_sample(f64::NAN);

    let error = series.clone().save_async(&path).await.unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    let error = series.clone().save_async(&path).await.unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    let error = Options::new()
        .save_shared_async(std::sync::Arc::new(series.clone()), &path)
        .await
        .unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    assert_eq!(listing(dir.path()), before);

    let samples = series.samples.clone();
    let error = Series::update_async(&path, move |current| current.samples = samples)
        .await
        .unwrap_err();
    assert_refused(&error, &path, "data.samples[3]", "f64 NaN");
    assert_eq!(fs::read(&path).unwrap(), before[0].1);
}

#[test]
fn a_float_nested_deep_is_named_by_its_whole_path() {
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    struct Scene {
        layers: BTreeMap<String, Vec<Shape>>,
    }
    #[derive(Serialize, Deserialize)]
    enum Shape {
        Circle { radius: f64 },
        Point(f64, f64),
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scene.json");
    let scene = Scene {
        layers: BTreeMap::from([(
            "top".to_owned(),
            vec![
                Shape::Circle { radius: 1.0 },
                Shape::Point(0.0, f64::INFINITY),
            ],
        )]),
    };
    let error = scene.save(&path).unwrap_err();
    // serde_path_to_error names a variant's fields by position, without the variant.
    assert_refused(&error, &path, "data.layers.top[1][1]", "f64 infinity");
    assert!(names(dir.path()).is_empty());
}

#[test]
fn other_values_serde_refuses_name_their_field_too() {
    #[derive(Serialize, Deserialize, Persisted)]
    #[persist(version = 1)]
    struct Grid {
        cells: BTreeMap<(u8, u8), String>,
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.json");
    let grid = Grid {
        cells: BTreeMap::from([((1, 2), "x".to_owned())]),
    };
    let error = grid.save(&path).unwrap_err();
    match &error {
        Error::Serialize { field, .. } => assert_eq!(field.as_deref(), Some("data.cells")),
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("key must be a string"), "{message}");
    assert!(message.contains("at `data.cells`"), "{message}");
    assert!(names(dir.path()).is_empty());
}

#[test]
fn finite_extremes_and_negative_zero_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("series.json");
    let series = Series {
        name: "edges".into(),
        samples: vec![f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -0.0, 0.1],
        gain: Some(f32::MAX),
    };
    series.save(&path).unwrap();
    let loaded = Series::load(&path).unwrap();
    assert_eq!(loaded, series);
    assert!(loaded.samples[4].is_sign_negative());
}

/// The recipe of `persist::non_finite`: a newtype for floats inside collections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
struct Reading(#[serde(with = "persist::non_finite")] f64);

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Sensor {
    #[serde(with = "persist::non_finite")]
    offset: f64,
    #[serde(with = "persist::non_finite")]
    gain: f32,
    readings: Vec<Reading>,
}

#[test]
fn the_non_finite_recipe_stores_and_loads_every_float() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sensor.json");
    let sensor = Sensor {
        offset: f64::NEG_INFINITY,
        gain: f32::NAN,
        readings: vec![Reading(1.25), Reading(f64::NAN), Reading(f64::INFINITY)],
    };
    sensor.save(&path).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        r#"{"version":1,"data":{"offset":"-inf","gain":"NaN","readings":[1.25,"NaN","inf"]}}"#
    );
    let loaded = Sensor::load(&path).unwrap();
    assert_eq!(loaded.offset, f64::NEG_INFINITY);
    assert!(loaded.gain.is_nan());
    assert_eq!(loaded.readings[0].0, 1.25);
    assert!(loaded.readings[1].0.is_nan());
    assert_eq!(loaded.readings[2].0, f64::INFINITY);

    // Files written before the attribute was added (plain numbers) still load.
    fs::write(
        &path,
        r#"{"version":1,"data":{"offset":-2,"gain":0.5,"readings":[3]}}"#,
    )
    .unwrap();
    let old = Sensor::load(&path).unwrap();
    assert_eq!((old.offset, old.gain, old.readings[0].0), (-2.0, 0.5, 3.0));

    // Anything else is a typed error naming the field, with the value kept out of the message.
    fs::write(
        &path,
        r#"{"version":1,"data":{"offset":"s3cret","gain":0.5,"readings":[]}}"#,
    )
    .unwrap();
    let error = Sensor::load(&path).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, Error::Corrupt { field: Some(field), .. } if field == "data.offset"),
        "{error:?}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}
