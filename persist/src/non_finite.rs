//! A `serde(with = ...)` helper for `f32`/`f64` fields that must hold NaN or an infinity.
//!
//! JSON has no such numbers, so persist refuses to save them ([`Error::Serialize`] naming the
//! field) rather than let serde_json write `null`, which the field could not read back. A field
//! that needs them opts in with this module: finite values are stored as plain JSON numbers,
//! exactly as without it, and the three others as the strings `"NaN"`, `"inf"` and `"-inf"`.
//! Loading accepts both forms, so adding the attribute to an existing field keeps old files
//! loadable (no new schema version is needed for that).
//!
//! ```
//! use persist::Persisted;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, Persisted)]
//! #[persist(version = 1)]
//! struct Calibration {
//!     #[serde(with = "persist::non_finite")]
//!     offset: f64,
//!     #[serde(with = "persist::non_finite")]
//!     gain: f32,
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("calibration.json");
//! Calibration { offset: f64::NAN, gain: f32::INFINITY }.save(&path)?;
//! assert_eq!(
//!     std::fs::read_to_string(&path).unwrap(),
//!     r#"{"version":1,"data":{"offset":"NaN","gain":"inf"}}"#
//! );
//! let loaded = Calibration::load(&path)?;
//! assert!(loaded.offset.is_nan() && loaded.gain == f32::INFINITY);
//! # Ok::<(), persist::Error>(())
//! ```
//!
//! For a collection of floats (`Vec<f64>`, `Option<f64>`, map values), wrap the element type in
//! a newtype whose one field carries the attribute.
//!
//! [`Error::Serialize`]: crate::Error::Serialize

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// `f32` or `f64`.
pub trait Float: Copy + sealed::Sealed {
    #[doc(hidden)]
    fn to_f64(self) -> f64;
    #[doc(hidden)]
    fn from_f64(value: f64) -> Self;
    #[doc(hidden)]
    fn serialize_finite<S: Serializer>(self, serializer: S) -> Result<S::Ok, S::Error>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    fn serialize_finite<S: Serializer>(self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f32(self)
    }
}

impl Float for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
    }
    fn serialize_finite<S: Serializer>(self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self)
    }
}

/// Writes a finite value as a number and the others as `"NaN"`, `"inf"` or `"-inf"`.
///
/// # Errors
///
/// Those of the serializer.
pub fn serialize<F: Float, S: Serializer>(value: &F, serializer: S) -> Result<S::Ok, S::Error> {
    let wide = value.to_f64();
    if wide.is_nan() {
        serializer.serialize_str("NaN")
    } else if wide == f64::INFINITY {
        serializer.serialize_str("inf")
    } else if wide == f64::NEG_INFINITY {
        serializer.serialize_str("-inf")
    } else {
        value.serialize_finite(serializer)
    }
}

/// Reads a number, or one of the strings `"NaN"`, `"inf"`, `"-inf"` (also `"infinity"` and
/// `"-infinity"`, in any case).
///
/// # Errors
///
/// A value that is neither a number nor one of those strings.
pub fn deserialize<'de, F: Float, D: Deserializer<'de>>(deserializer: D) -> Result<F, D::Error> {
    struct FloatVisitor<F>(PhantomData<F>);

    impl<F: Float> Visitor<'_> for FloatVisitor<F> {
        type Value = F;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a number, or \"NaN\", \"inf\" or \"-inf\"")
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<F, E> {
            Ok(F::from_f64(value))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<F, E> {
            Ok(F::from_f64(value as f64))
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<F, E> {
            Ok(F::from_f64(value as f64))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<F, E> {
            let wide = match value.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ => return Err(E::invalid_value(de::Unexpected::Str(value), &self)),
            };
            Ok(F::from_f64(wide))
        }
    }

    deserializer.deserialize_any(FloatVisitor(PhantomData))
}
