//! The generated code is clean under strict lints (thiserror's `tests/test_lints.rs`).

#![deny(unused_qualifications, missing_docs)]

use persist::Persisted;
use serde::{Deserialize, Serialize};

/// A documented first version.
#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct LintedV1 {
    /// A field.
    pub field: u8,
}

/// A documented second version.
#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = LintedV1)]
pub struct Linted {
    /// A field.
    pub field: u16,
}

impl From<LintedV1> for Linted {
    fn from(old: LintedV1) -> Self {
        Linted {
            field: old.field.into(),
        }
    }
}

/// A documented generic version.
#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct LintedGeneric<T> {
    /// A field.
    pub field: T,
}

#[test]
fn generated_code_passes_strict_lints() {
    assert_eq!(<Linted as Persisted>::VERSION, 2);
    assert_eq!(<LintedGeneric<u8> as Persisted>::VERSION, 1);
}
