//! The decode path (envelope, version dispatch, typed chain with a fallible step, unversioned
//! fallback) on arbitrary bytes: it must return a value or a typed error, never panic, and a
//! value it returns must save and decode to itself.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode` (see RELIABILITY.md).

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
struct StateV1 {
    name: String,
    flags: Vec<bool>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = StateV1)]
struct StateV2 {
    name: String,
    flags: Vec<bool>,
    limits: Option<(u8, i64)>,
}

impl From<StateV1> for StateV2 {
    fn from(old: StateV1) -> Self {
        StateV2 {
            name: old.name,
            flags: old.flags,
            limits: None,
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Mode {
    Off,
    On { level: u16 },
    Custom(BTreeMap<String, f64>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 5, migrate_from = StateV2)]
struct State {
    name: String,
    mode: Mode,
    limits: Option<(u8, i64)>,
    extra: BTreeMap<String, Vec<u32>>,
}

#[derive(Debug, thiserror::Error)]
#[error("more flags than modes")]
struct TooManyFlags;

impl TryFrom<StateV2> for State {
    type Error = TooManyFlags;

    fn try_from(old: StateV2) -> Result<Self, TooManyFlags> {
        let mode = match old.flags.as_slice() {
            [] => Mode::Off,
            [on] => Mode::On {
                level: u16::from(*on),
            },
            _ => return Err(TooManyFlags),
        };
        Ok(State {
            name: old.name,
            mode,
            limits: old.limits,
            extra: BTreeMap::new(),
        })
    }
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(state) = persist::__private::decode::<State>(bytes) {
        // NaN in `Custom` is not equal to itself and cannot come from JSON anyway.
        let mut encoded = Vec::new();
        serde_json::to_writer(
            &mut encoded,
            &serde_json::json!({"version": 5, "data": &state}),
        )
        .unwrap();
        let again = persist::__private::decode::<State>(&encoded).unwrap();
        assert_eq!(again, state);
    }
    let _ = persist::__private::decode::<StateV1>(bytes);
});
