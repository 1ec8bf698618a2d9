//! `#[serde(with = "persist::any")]`: a field whose shape is free, such as a
//! `serde_json::Value` of plugin settings, and which the migration kit's schema lock should
//! describe as `any` instead of refusing the whole type.
//!
//! The lock traces shapes through `Deserialize`, and a self-describing value cannot be traced
//! (it accepts anything). Without this attribute one such field turns the whole `schemas` test
//! off for its type; with it the rest of the shape stays locked, and the field shows as
//! `extra: any`. Saving and loading are unchanged: the field is serialized and deserialized by
//! its own impls, exactly as without the attribute. The field's type needs `Default`, which the
//! lock's tracing uses as a stand-in value.
//!
//! ```
//! use persist::Persisted;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Persisted)]
//! #[persist(version = 1)]
//! struct Settings {
//!     theme: String,
//!     #[serde(with = "persist::any")]
//!     plugins: serde_json::Value,
//! }
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("settings.json");
//! let settings = Settings { theme: "dark".into(), plugins: serde_json::json!({"vim": true}) };
//! settings.save(&path)?;
//! assert_eq!(Settings::load(&path)?.plugins["vim"], true);
//! # Ok::<(), persist::Error>(())
//! ```

use std::cell::Cell;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// The serde name the lock's tracing sees for such a field; the lock prints it as `any`.
pub(crate) const TRACED_NAME: &str = "persist::any";

thread_local! {
    /// Set while the migration kit traces a shape on this thread.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as tracing a shape until dropped.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) struct Tracing(());

#[cfg_attr(not(feature = "testing"), allow(dead_code))]
impl Tracing {
    pub(crate) fn start() -> Tracing {
        TRACING.set(true);
        Tracing(())
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        TRACING.set(false);
    }
}

/// Serializes the field as its own impl does.
///
/// # Errors
///
/// Those of the field's `Serialize` impl.
pub fn serialize<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    value.serialize(serializer)
}

/// Deserializes the field as its own impl does (when the schema lock traces the type, it sees
/// `any` instead).
///
/// # Errors
///
/// Those of the field's `Deserialize` impl.
pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + Default,
    D: Deserializer<'de>,
{
    if !TRACING.get() {
        return T::deserialize(deserializer);
    }
    struct Unit;

    impl Visitor<'_> for Unit {
        type Value = ();

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("any value")
        }

        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    }

    deserializer.deserialize_unit_struct(TRACED_NAME, Unit)?;
    Ok(T::default())
}
