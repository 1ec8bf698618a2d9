//! Hostile and damaged input through the real load path: every case is a typed error or a
//! correct value, never a panic, a hang or a write. Includes the public JSONTestSuite corpus
//! (vendored in `tests/data/JSONTestSuite`, see its SOURCE.md; `PERSIST_JSON_TEST_SUITE` points
//! the test at another copy).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{AppState, AppStateV1, sample};
use persist::{Error, Persisted};
use serde::{Deserialize, Serialize};

/// Any JSON at all, for the corpus.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct AnyJson(serde_json::Value);

/// A chain that does not accept files without an envelope.
#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3)]
struct Strict {
    count: u32,
    name: String,
}

/// Loads `bytes` from a fresh file as `T`, checks the file is unchanged afterwards.
fn load_bytes<T: Persisted>(bytes: &[u8]) -> Result<T, Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, bytes).unwrap();
    let result = T::load(&path);
    assert_eq!(fs::read(&path).unwrap(), bytes, "load changed the file");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "load created a file"
    );
    result
}

fn assert_corrupt<T: Persisted + std::fmt::Debug>(bytes: &[u8]) {
    match load_bytes::<T>(bytes) {
        Err(Error::Corrupt { .. }) => {}
        other => panic!(
            "{:?}: expected Corrupt, got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// Outcomes that damaged input may legitimately have.
fn assert_typed<T: Persisted + std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Ok(_)
        | Err(Error::Corrupt { .. })
        | Err(Error::FutureVersion { .. })
        | Err(Error::UnknownVersion { .. })
        | Err(Error::Migration { .. }) => {}
        Err(other) => panic!("unexpected error for damaged input: {other:?}"),
    }
}

fn valid_file() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    fs::read(path).unwrap()
}

#[test]
fn every_truncation_is_corrupt() {
    let file = valid_file();
    for end in 0..file.len() {
        assert_corrupt::<AppState>(&file[..end]);
    }
    assert_eq!(load_bytes::<AppState>(&file).unwrap(), sample());
}

#[test]
fn every_single_bit_flip_is_a_value_or_a_typed_error() {
    let file = br#"{"version":3,"data":{"count":7,"name":"x"}}"#;
    let mut loaded = 0;
    for byte in 0..file.len() {
        for bit in 0..8 {
            let mut damaged = file.to_vec();
            damaged[byte] ^= 1 << bit;
            let result = load_bytes::<Strict>(&damaged);
            loaded += usize::from(result.is_ok());
            assert_typed(result);
        }
    }
    // A flip inside a string or a digit is still valid JSON: only a checksum can catch those.
    assert!(loaded > 0);
}

#[test]
fn zeros_and_invalid_utf8_are_corrupt() {
    assert_corrupt::<AppState>(b"");
    assert_corrupt::<AppState>(&[0; 4096]);
    assert_corrupt::<Strict>(b"{\"version\":3,\"data\":{\"count\":1,\"name\":\"\xC3\x28\"}}");
    assert_corrupt::<Strict>(b"\xFF\xFE{\"version\":3}");
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let mut file = b"\xEF\xBB\xBF".to_vec();
    file.extend_from_slice(br#"{"version":3,"data":{"count":1,"name":"bom"}}"#);
    assert_eq!(
        load_bytes::<Strict>(&file).unwrap(),
        Strict {
            count: 1,
            name: "bom".into()
        }
    );
}

#[test]
fn trailing_junk_is_corrupt() {
    assert_corrupt::<Strict>(br#"{"version":3,"data":{"count":1,"name":"x"}}x"#);
    assert_corrupt::<Strict>(br#"{"version":3,"data":{"count":1,"name":"x"}}{}"#);
}

#[test]
fn duplicate_keys_are_corrupt() {
    assert_corrupt::<Strict>(br#"{"version":3,"version":3,"data":{"count":1,"name":"x"}}"#);
    assert_corrupt::<Strict>(br#"{"version":3,"data":{"count":1,"name":"x"},"data":{}}"#);
    assert_corrupt::<Strict>(br#"{"version":3,"data":{"count":1,"count":2,"name":"x"}}"#);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [200, 100_000, 2_000_000] {
        let open = "[".repeat(depth);
        let in_data = format!(r#"{{"version":3,"data":{open}"#);
        assert_corrupt::<Strict>(in_data.as_bytes());
        let in_ignored_field = format!(r#"{{"extra":{open}"#);
        assert_corrupt::<Strict>(in_ignored_field.as_bytes());
        let top_level = "{\"a\":".repeat(depth);
        assert_corrupt::<AppState>(top_level.as_bytes());
    }
}

#[test]
fn numbers_out_of_range_are_corrupt() {
    for count in [
        "-1",
        "4294967296",
        "1e20",
        "1.5",
        "18446744073709551616",
        "1e400",
    ] {
        let file = format!(r#"{{"version":3,"data":{{"count":{count},"name":"x"}}}}"#);
        assert_corrupt::<Strict>(file.as_bytes());
    }
}

#[test]
fn bad_versions_are_typed_errors() {
    let data = r#""data":{"count":1,"name":"x"}"#;
    for (version, expected) in [
        ("-3", "Corrupt"),
        ("\"3\"", "Corrupt"),
        ("3.0", "Corrupt"),
        ("null", "Corrupt"),
        ("[3]", "Corrupt"),
        ("0", "UnknownVersion"),
        ("2", "UnknownVersion"),
        ("4", "FutureVersion"),
        ("99999999999999999999", "Corrupt"),
    ] {
        let file = format!(r#"{{"version":{version},{data}}}"#);
        let outcome = match load_bytes::<Strict>(file.as_bytes()) {
            Err(Error::Corrupt { .. }) => "Corrupt",
            Err(Error::UnknownVersion { .. }) => "UnknownVersion",
            Err(Error::FutureVersion { .. }) => "FutureVersion",
            other => panic!("version {version}: {other:?}"),
        };
        assert_eq!(outcome, expected, "version {version}");
    }
    // No version at all: not an envelope.
    assert_corrupt::<Strict>(format!("{{{data}}}").as_bytes());
}

#[test]
fn a_symlink_loop_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    for error in [
        AppState::load(&a).unwrap_err(),
        sample().save(&a).unwrap_err(),
    ] {
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
    }
    assert!(fs::symlink_metadata(&a).unwrap().file_type().is_symlink());
}

#[test]
fn a_symlink_to_a_valid_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    AppStateV1 {
        user: "u".into(),
        dark_mode: false,
    }
    .save(&real)
    .unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(AppState::load(&link).unwrap().user, "u");
}

fn corpus() -> PathBuf {
    let dir = std::env::var_os("PERSIST_JSON_TEST_SUITE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite"),
        PathBuf::from,
    );
    let parsing = dir.join("test_parsing");
    assert!(
        parsing.is_dir(),
        "JSONTestSuite not found at {}: set PERSIST_JSON_TEST_SUITE to its folder",
        parsing.display()
    );
    parsing
}

#[test]
fn json_test_suite() {
    let (mut accepted, mut rejected, mut other) = (0, 0, 0);
    for entry in fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(&path).unwrap();
        let mut wrapped = br#"{"version":1,"data":"#.to_vec();
        wrapped.extend_from_slice(&bytes);
        wrapped.push(b'}');
        if name.starts_with("y_") {
            // Valid JSON: the envelope around it loads, as any JSON value.
            if let Err(error) = load_bytes::<AnyJson>(&wrapped) {
                panic!("{name}: valid JSON refused: {error}");
            }
            accepted += 1;
        } else if name.starts_with("n_") {
            // Invalid JSON: a typed error, bare or inside an envelope.
            assert_corrupt::<AnyJson>(&bytes);
            assert_corrupt::<AnyJson>(&wrapped);
            rejected += 1;
        } else {
            // Implementation-defined: any outcome but a panic or an untyped failure.
            assert_typed(load_bytes::<AnyJson>(&wrapped));
            assert_typed(load_bytes::<AnyJson>(&bytes));
            other += 1;
        }
    }
    println!("JSONTestSuite: {accepted} y_ accepted, {rejected} n_ rejected, {other} i_ survived");
    assert_eq!((accepted, rejected, other), (95, 188, 35));
}
