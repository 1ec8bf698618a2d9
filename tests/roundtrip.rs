//! Property tests: save then load is the identity for generated values, and a file of an old
//! version loads as exactly what the in-memory migration chain makes of the value.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{AppState, AppStateV1, AppStateV2, Theme, Window};
use persist::{Error, Persisted};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn theme() -> impl Strategy<Value = Theme> {
    prop_oneof![
        Just(Theme::Light),
        Just(Theme::Dark),
        any::<String>().prop_map(|accent| Theme::Custom { accent }),
    ]
}

fn app_state() -> impl Strategy<Value = AppState> {
    (
        any::<String>(),
        theme(),
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::collection::vec(any::<String>(), 0..4),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    )
        .prop_map(|(user, theme, window, recent, shortcuts)| AppState {
            user,
            theme,
            window: window.map(|(width, height)| Window { width, height }),
            recent: recent.into_iter().map(PathBuf::from).collect(),
            shortcuts,
        })
}

fn v2() -> impl Strategy<Value = AppStateV2> {
    (
        any::<String>(),
        prop_oneof![
            Just("light".to_owned()),
            Just("dark".to_owned()),
            any::<String>().prop_map(|accent| format!("custom:{accent}")),
            any::<String>(),
        ],
        proptest::option::of((any::<u32>(), any::<u32>())),
    )
        .prop_map(|(user, theme, window)| AppStateV2 {
            user,
            theme,
            window,
        })
}

/// Floats and integers at the edges of their types.
#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Numbers {
    floats: Vec<f64>,
    small: Vec<f32>,
    big: Vec<u64>,
    negative: Vec<i64>,
    wide: BTreeMap<String, i128>,
}

fn save_load<T: Persisted>(value: &T) -> Result<T, Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("value.json");
    value.save(&path).unwrap();
    T::load(&path)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn current_version_round_trips(state in app_state()) {
        prop_assert_eq!(save_load(&state).unwrap(), state);
    }

    #[test]
    fn numbers_round_trip_exactly(
        floats in proptest::collection::vec(any::<f64>().prop_filter("finite", |f| f.is_finite()), 0..8),
        small in proptest::collection::vec(any::<f32>().prop_filter("finite", |f| f.is_finite()), 0..8),
        big in proptest::collection::vec(any::<u64>(), 0..8),
        negative in proptest::collection::vec(any::<i64>(), 0..8),
        wide in proptest::collection::btree_map(any::<String>(), any::<i128>(), 0..4),
    ) {
        let numbers = Numbers { floats, small, big, negative, wide };
        prop_assert_eq!(save_load(&numbers).unwrap(), numbers);
    }

    #[test]
    fn a_v1_file_loads_as_the_in_memory_migration(user in any::<String>(), dark_mode in any::<bool>()) {
        let old = AppStateV1 { user, dark_mode };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        old.save(&path).unwrap();
        let expected = AppState::try_from(AppStateV2::from(old)).unwrap();
        prop_assert_eq!(AppState::load(&path).unwrap(), expected);
    }

    #[test]
    fn a_v2_file_loads_or_fails_as_the_in_memory_migration(old in v2()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        old.save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        match (AppState::try_from(old), AppState::load(&path)) {
            (Ok(expected), Ok(loaded)) => prop_assert_eq!(loaded, expected),
            (Err(_), Err(Error::Migration { from: 2, to: 4, .. })) => {
                prop_assert_eq!(std::fs::read(&path).unwrap(), before);
            }
            (expected, loaded) => prop_assert!(false, "{expected:?} vs {loaded:?}"),
        }
    }
}
