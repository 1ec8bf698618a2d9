//! The derive on every shape serde handles: enums, tuple and unit structs, generics, a
//! re-exported crate path.

use std::collections::HashMap;

use persist::Persisted;
use serde::{Deserialize, Serialize};

fn round_trip<T: Persisted + PartialEq + std::fmt::Debug>(value: T) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("value.json");
    value.save(&path).unwrap();
    assert_eq!(T::load(&path).unwrap(), value);
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
enum ModeV1 {
    Simple,
    Advanced(u8),
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = ModeV1)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Mode {
    Simple,
    Advanced { level: u8 },
    Expert { level: u8, unsafe_ops: bool },
}

impl From<ModeV1> for Mode {
    fn from(old: ModeV1) -> Self {
        match old {
            ModeV1::Simple => Mode::Simple,
            ModeV1::Advanced(level) => Mode::Advanced { level },
        }
    }
}

#[test]
fn enums_round_trip_and_migrate() {
    round_trip(Mode::Expert {
        level: 3,
        unsafe_ops: true,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mode.json");
    ModeV1::Advanced(7).save(&path).unwrap();
    assert_eq!(Mode::load(&path).unwrap(), Mode::Advanced { level: 7 });
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Point(i64, i64);

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Marker;

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 5)]
struct Counter(u64);

#[test]
fn tuple_unit_and_newtype_structs_round_trip() {
    round_trip(Point(-3, 4));
    round_trip(Marker);
    round_trip(Counter(u64::MAX));
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct CacheV1<K: std::hash::Hash + Eq, V> {
    entries: HashMap<K, V>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = CacheV1<K, V>)]
struct Cache<K, V>
where
    K: std::hash::Hash + Eq,
{
    entries: Vec<(K, V)>,
    hits: u64,
}

impl<K: std::hash::Hash + Eq + Ord, V> From<CacheV1<K, V>> for Cache<K, V> {
    fn from(old: CacheV1<K, V>) -> Self {
        let mut entries: Vec<_> = old.entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Cache { entries, hits: 0 }
    }
}

#[test]
fn generic_types_round_trip_and_migrate() {
    round_trip(Cache {
        entries: vec![("a".to_owned(), 1u32)],
        hits: 9,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    CacheV1 {
        entries: HashMap::from([(2u8, "two".to_owned()), (1, "one".to_owned())]),
    }
    .save(&path)
    .unwrap();
    let cache: Cache<u8, String> = Cache::load(&path).unwrap();
    assert_eq!(
        cache.entries,
        [(1, "one".to_owned()), (2, "two".to_owned())]
    );
}

mod reexport {
    //! A crate that re-exports persist names it with `crate = ...`.
    pub use persist as storage;
}

#[derive(Debug, PartialEq, Serialize, Deserialize, reexport::storage::Persisted)]
#[persist(version = 1, crate = reexport::storage)]
struct ThroughReexport {
    value: bool,
}

#[test]
fn a_custom_crate_path_works() {
    round_trip(ThroughReexport { value: true });
}

#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 1)]
struct SignedV1 {
    n: i64,
}

/// A migration step whose error is a plain `String`.
#[derive(Debug, serde::Serialize, serde::Deserialize, persist::Persisted)]
#[persist(version = 2, migrate_from = SignedV1)]
struct Unsigned {
    n: u64,
}

impl TryFrom<SignedV1> for Unsigned {
    type Error = String;

    fn try_from(old: SignedV1) -> Result<Self, String> {
        u64::try_from(old.n)
            .map(|n| Unsigned { n })
            .map_err(|_| format!("{} is negative", old.n))
    }
}

#[test]
fn a_migration_error_can_be_a_string() {
    use persist::Persisted as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.json");
    SignedV1 { n: 7 }.save(&path).unwrap();
    assert_eq!(Unsigned::load(&path).unwrap().n, 7);
    SignedV1 { n: -3 }.save(&path).unwrap();
    match Unsigned::load(&path).unwrap_err() {
        persist::Error::Migration {
            from, to, source, ..
        } => {
            assert_eq!((from, to), (1, 2));
            assert_eq!(source.to_string(), "-3 is negative");
        }
        other => panic!("{other:?}"),
    }
}
