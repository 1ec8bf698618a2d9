//! `TryFrom` migration steps may fail with any error that converts into a boxed error: a
//! `String`, a `&'static str`, a boxed error, or an error type of one's own.

use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct V1 {
    n: i64,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = V1)]
struct V2 {
    n: u64,
}

impl TryFrom<V1> for V2 {
    type Error = String;

    fn try_from(old: V1) -> Result<Self, String> {
        u64::try_from(old.n)
            .map(|n| V2 { n })
            .map_err(|_| format!("{} is negative", old.n))
    }
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = V2)]
struct V3 {
    n: u32,
}

impl TryFrom<V2> for V3 {
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn try_from(old: V2) -> Result<Self, Self::Error> {
        Ok(V3 {
            n: u32::try_from(old.n)?,
        })
    }
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 4, migrate_from = V3)]
struct V4 {
    n: u16,
}

impl TryFrom<V3> for V4 {
    type Error = &'static str;

    fn try_from(old: V3) -> Result<Self, &'static str> {
        u16::try_from(old.n).map(|n| V4 { n }).map_err(|_| "too large")
    }
}

fn main() {}
