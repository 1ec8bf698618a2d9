//! The `simd` feature against serde_json: every input is decoded by the load path (sonic-rs
//! where it agrees with serde_json) and by serde_json alone, as a typed chain and as any JSON
//! value, bare and inside an envelope. Any difference (a value on one side and an error on
//! the other, two values that serialize differently, two different errors) is a finding.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run parsers` (see RELIABILITY.md).

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use persist::Persisted;
use persist::__private::{decode, decode_json, decode_simd_only};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
struct RecordV1 {
    id: u64,
    name: String,
}

/// Every kind of field a state file has: numbers of each width, floats, strings, options,
/// maps, an internally tagged enum, a nested vector.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = RecordV1)]
struct Record {
    id: u64,
    name: String,
    #[serde(default)]
    score: f64,
    #[serde(default)]
    ratio: f32,
    #[serde(default)]
    delta: i8,
    #[serde(default)]
    parent: Option<u32>,
    #[serde(default)]
    tags: BTreeMap<String, Vec<i64>>,
    #[serde(default)]
    kind: Option<Kind>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Kind {
    Plain,
    Weighted { weight: f64 },
    Named(BTreeMap<String, String>),
}

impl From<RecordV1> for Record {
    fn from(old: RecordV1) -> Record {
        Record {
            id: old.id,
            name: old.name,
            score: 0.0,
            ratio: 0.0,
            delta: 0,
            parent: None,
            tags: BTreeMap::new(),
            kind: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct AnyJson(serde_json::Value);

fn same<T: Persisted + Debug>(bytes: &[u8]) {
    // Where sonic-rs decodes alone, its value is serde_json's: the comparison that can fail
    // (where sonic-rs declines, serde_json decides, and the errors below agree by
    // construction).
    if let Some(sonic) = decode_simd_only::<T>(bytes) {
        match decode_json::<T>(bytes) {
            Ok(json) => assert_eq!(
                serde_json::to_string(&sonic).unwrap(),
                serde_json::to_string(&json).unwrap(),
                "sonic-rs alone gave another value for {:?}",
                String::from_utf8_lossy(bytes)
            ),
            Err(error) => panic!(
                "sonic-rs alone decoded {:?}; serde_json refuses it: {error}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    match (decode::<T>(bytes), decode_json::<T>(bytes)) {
        (Ok(fast), Ok(json)) => assert_eq!(
            serde_json::to_string(&fast).unwrap(),
            serde_json::to_string(&json).unwrap(),
            "values differ for {:?}",
            String::from_utf8_lossy(bytes)
        ),
        (Err(fast), Err(json)) => assert_eq!(
            format!("{fast:?}"),
            format!("{json:?}"),
            "errors differ for {:?}",
            String::from_utf8_lossy(bytes)
        ),
        (fast, json) => panic!(
            "the parsers disagree on {:?}: simd {fast:?}, serde_json {json:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fuzz_target!(|bytes: &[u8]| {
    same::<Record>(bytes);
    same::<AnyJson>(bytes);
    let mut wrapped = br#"{"version":1,"data":"#.to_vec();
    wrapped.extend_from_slice(bytes);
    wrapped.push(b'}');
    same::<AnyJson>(&wrapped);
    let mut record = br#"{"version":2,"data":{"id":1,"name":"n","#.to_vec();
    record.extend_from_slice(bytes);
    record.extend_from_slice(b"}}");
    same::<Record>(&record);
});
