//! The `simd` feature gives serde_json's results: every document here is decoded by the load
//! path (sonic-rs where it agrees) and by serde_json alone, and the two must be identical: the
//! same value, or the same error to the letter (errors hold by construction: where sonic-rs
//! fails, serde_json decides). The oracle that can fail is the other one: every document
//! sonic-rs decodes alone (`decode_simd_only`) must give serde_json's value, and each test
//! counts those documents and asserts there were some. Under `cargo test --release` (run by
//! `.ci/run`) the release nesting limit (64 levels) is the one checked. The rest of the suite (hostile input, the
//! JSONTestSuite corpus, the property tests) runs with the feature on as part of
//! `cargo test --workspace --all-features`.
#![cfg(feature = "simd")]

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs;
use std::path::Path;

use std::sync::atomic::{AtomicUsize, Ordering};

use persist::__private::{decode, decode_json, decode_simd_only};
use persist::{Error, Persisted};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct AnyJson(serde_json::Value);

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
struct FloatsV1 {
    values: Vec<f64>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = FloatsV1)]
struct Floats {
    values: Vec<f64>,
    labels: BTreeMap<String, Option<i64>>,
    small: Vec<f32>,
}

impl From<FloatsV1> for Floats {
    fn from(old: FloatsV1) -> Floats {
        Floats {
            values: old.values,
            labels: BTreeMap::new(),
            small: Vec::new(),
        }
    }
}

/// Documents sonic-rs decoded alone, in this test binary (each test reads it before and after).
static BY_SONIC: AtomicUsize = AtomicUsize::new(0);

/// Both parsers' outcomes for `bytes` as `T`, which must be the same. Values are compared by
/// their serialized form, so that -0.0 and 0.0 (equal as floats) count as different. Where
/// sonic-rs decodes the document alone, its value must be serde_json's.
fn assert_same<T: Persisted + Debug>(bytes: &[u8]) -> Result<T, Error> {
    let fast = decode::<T>(bytes);
    let json = decode_json::<T>(bytes);
    if let Some(sonic) = decode_simd_only::<T>(bytes) {
        BY_SONIC.fetch_add(1, Ordering::Relaxed);
        match &json {
            Ok(json) => assert_eq!(
                serde_json::to_string(&sonic).unwrap(),
                serde_json::to_string(json).unwrap(),
                "sonic-rs alone gave another value for {}",
                String::from_utf8_lossy(bytes)
            ),
            Err(error) => panic!(
                "sonic-rs alone decoded {:?} as {sonic:?}; serde_json refuses it: {error}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    match (&fast, &json) {
        (Ok(fast), Ok(json)) => assert_eq!(
            serde_json::to_string(fast).unwrap(),
            serde_json::to_string(json).unwrap(),
            "{}",
            String::from_utf8_lossy(bytes)
        ),
        (Err(fast), Err(json)) => assert_eq!(
            format!("{fast:?}"),
            format!("{json:?}"),
            "{}",
            String::from_utf8_lossy(bytes)
        ),
        _ => panic!(
            "the parsers disagree on {:?}: simd {fast:?}, serde_json {json:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
    fast
}

#[test]
fn the_json_test_suite_decodes_the_same_with_both_parsers() {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite/test_parsing");
    let mut files = 0;
    for entry in fs::read_dir(corpus).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        let mut wrapped = br#"{"version":1,"data":"#.to_vec();
        wrapped.extend_from_slice(&bytes);
        wrapped.push(b'}');
        let _ = assert_same::<AnyJson>(&wrapped);
        let _ = assert_same::<AnyJson>(&bytes);
        let _ = assert_same::<Floats>(&wrapped);
        files += 1;
    }
    assert_eq!(files, 318);
    // Each test of this binary adds to the count: at least the suite's `y_` files (95, bare
    // and wrapped) went through sonic-rs alone.
    let by_sonic = BY_SONIC.load(Ordering::Relaxed);
    assert!(
        by_sonic >= 95,
        "only {by_sonic} documents decoded by sonic-rs alone"
    );
}

/// The depth up to which sonic-rs is shown a document: 64 levels in release builds, 16 in
/// debug builds (each level of its recursion takes more stack there). Every depth on both sides
/// of the limit gives serde_json's value, and sonic-rs decodes alone exactly those within it.
#[test]
fn nesting_around_the_simd_limit_gives_serde_json_s_values() {
    let limit = if cfg!(debug_assertions) { 16 } else { 64 };
    let mut deepest = 0;
    for depth in 1..=limit + 4 {
        // Inside the envelope (one level) and its data object (another).
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let document = format!(r#"{{"version":1,"data":{{"a":{nested}}}}}"#);
        let loaded = assert_same::<AnyJson>(document.as_bytes()).unwrap();
        assert_eq!(
            loaded.0["a"],
            serde_json::from_str::<serde_json::Value>(&nested).unwrap()
        );
        if decode_simd_only::<AnyJson>(document.as_bytes()).is_some() {
            deepest = depth + 2;
        }
    }
    assert_eq!(
        deepest, limit,
        "the deepest document sonic-rs decoded alone"
    );
}

#[test]
fn negative_zero_keeps_its_sign() {
    let value = Floats {
        values: vec![-0.0, 0.0, -1e-320, f64::MIN_POSITIVE, -2.5],
        labels: BTreeMap::new(),
        small: vec![-0.0],
    };
    let bytes = serde_json::to_vec(&serde_json::json!({"version": 2, "data": value})).unwrap();
    let loaded = assert_same::<Floats>(&bytes).unwrap();
    assert!(loaded.values[0].is_sign_negative() && loaded.values[0] == 0.0);
    assert!(loaded.small[0].is_sign_negative());
    for text in ["-0", "-0.0", "-0e0", "-0.000E+3", "[-0]"] {
        let doc = format!(r#"{{"version":1,"data":{{"values":[{text}]}}}}"#);
        if text.starts_with('[') {
            assert!(assert_same::<Floats>(doc.as_bytes()).is_err());
        } else {
            assert!(assert_same::<Floats>(doc.as_bytes()).unwrap().values[0].is_sign_negative());
        }
    }
}

#[test]
fn deep_nesting_is_refused_or_skipped_as_serde_json_does_never_a_crash() {
    // sonic-rs skips an unknown field by unbounded recursion (cloudwego/sonic-rs#232): 100,000
    // levels would overflow the stack. serde_json skips them without recursing.
    for depth in [126, 127, 128, 129, 1_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let unknown = format!(
            r#"{{"version":2,"data":{{"values":[],"labels":{{}},"small":[],"extra":{nested}}}}}"#
        );
        let _ = assert_same::<Floats>(unknown.as_bytes());
        let value = format!(r#"{{"version":1,"data":{nested}}}"#);
        let _ = assert_same::<AnyJson>(value.as_bytes());
        let objects = format!(
            r#"{{"version":1,"data":{}1{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        let _ = assert_same::<AnyJson>(objects.as_bytes());
    }
}

#[test]
fn errors_are_serde_jsons_to_the_letter() {
    for bad in [
        &br#"{"version":2,"data":{"values":[1,2,],"labels":{},"small":[]}}"#[..],
        br#"{"version":2,"data":{"values":"no","labels":{},"small":[]}}"#,
        br#"{"version":2,"data":{"values":[],"labels":{"a":1.5},"small":[]}}"#,
        br#"{"version":2,"data":{"values":[],"labels":{},"small":[1e39]}}"#,
        br#"{"version":2,"data":{"values":[1e400],"labels":{},"small":[]}}"#,
        br#"{"version":2,"data":{"values":[],"labels":{},"small":[]}} x"#,
        br#"{"version":2,"data":{"values":[],"values":[],"labels":{},"small":[]}}"#,
        b"{\"version\":2,\"data\":{\"values\":[],\"labels\":{\"\xff\":1},\"small\":[]}}",
        br#"{"version":2,"data":{"values":[],"labels":{"\ud800":1},"small":[]}}"#,
        br#"{"version":9,"data":{}}"#,
        br#"{"values":[1]"#,
        // sonic-rs skips an unknown field's `\u` escape without looking at its digits.
        br#"{"version":2,"data":{"values":[],"labels":{},"small":[],"x":"\uqqqq"}}"#,
        br#"{"version":2,"data":{"values":[],"labels":{},"small":[],"x":["\u12"]}}"#,
    ] {
        let outcome = assert_same::<Floats>(bad);
        assert!(
            outcome.is_err(),
            "{}: {outcome:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// How deep `value` nests (a scalar is 0 deep, `[1]` 1).
fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".*", inner, 0..8)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_document_decodes_the_same(value in any_json(), pretty in any::<bool>()) {
        let envelope = serde_json::json!({"version": 1, "data": value});
        let bytes = if pretty {
            serde_json::to_vec_pretty(&envelope).unwrap()
        } else {
            serde_json::to_vec(&envelope).unwrap()
        };
        let loaded = assert_same::<AnyJson>(&bytes).unwrap();
        prop_assert_eq!(&loaded.0, &value);
        // As persist writes it, the version first (`json!` sorts "data" before it): values a
        // state file holds (not nested beyond the limit) are decoded by sonic-rs alone.
        let text = match pretty {
            true => serde_json::to_string_pretty(&value).unwrap(),
            false => serde_json::to_string(&value).unwrap(),
        };
        let first = format!(r#"{{"version":1,"data":{text}}}"#);
        let loaded = assert_same::<AnyJson>(first.as_bytes()).unwrap();
        prop_assert_eq!(&loaded.0, &value);
        let limit = if cfg!(debug_assertions) { 16 } else { 64 };
        // The screen keeps from sonic-rs what it gets wrong: negative zero.
        prop_assert!(
            decode_simd_only::<AnyJson>(first.as_bytes()).is_some()
                || depth(&value) + 1 > limit
                || text.contains("-0.0")
                || text.contains("-0,")
                || text.contains("-0]")
        );
    }

    #[test]
    fn any_floats_decode_the_same(values in prop::collection::vec(any::<f64>(), 0..32)) {
        let values: Vec<f64> = values.into_iter().filter(|f| f.is_finite()).collect();
        let doc = serde_json::json!({"version": 1, "data": {"values": values}});
        let loaded = assert_same::<Floats>(&serde_json::to_vec(&doc).unwrap()).unwrap();
        for (loaded, saved) in loaded.values.iter().zip(&values) {
            prop_assert_eq!(loaded.to_bits(), saved.to_bits());
        }
    }

    #[test]
    fn any_bytes_decode_the_same(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = assert_same::<Floats>(&bytes);
        let mut wrapped = br#"{"version":1,"data":"#.to_vec();
        wrapped.extend_from_slice(&bytes);
        wrapped.push(b'}');
        let _ = assert_same::<AnyJson>(&wrapped);
    }
}
