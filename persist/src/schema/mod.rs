//! The serialized shape of a type, as text: what serde expects to read, traced through the
//! type's `Deserialize` impl with serde-reflection, with what each field allows probed on the
//! type itself (`probe`). Nested types are included, so a change inside an enum used three
//! levels down shows up too. Types are named by where they are used (`$.window`), not by their
//! Rust names, which JSON never holds: renaming a type is not a schema change.
//!
//! `model` is the shape as data (and its text), `compat` classifies the changes between two
//! shapes, `json_schema` writes one as a JSON Schema.

mod compat;
mod json_schema;
mod model;
mod probe;
mod trace;

use std::fmt;
use std::path::{Path, PathBuf};

pub use self::compat::{ChangeClass, ChangeKind, Compatibility, ShapeChange};
use self::model::{Container, Fields, Payload, Shape, Ty};
use crate::Persisted;

/// Why a type's shape could not be described, or a lock could not be read.
#[derive(Debug)]
pub struct ShapeError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Trace {
        type_name: String,
        reason: String,
    },
    Lock {
        /// The lock file, when there is one.
        lock: Option<PathBuf>,
        /// What the text is: "the lock", "the current shape".
        what: &'static str,
        line: usize,
        reason: String,
    },
}

impl ShapeError {
    /// The same error, naming the lock file it is about.
    pub(crate) fn in_lock(mut self, path: &Path) -> ShapeError {
        if let ErrorKind::Lock { lock, .. } = &mut self.kind {
            *lock = Some(path.to_owned());
        }
        self
    }

    fn unreadable(what: &'static str, error: model::ParseError) -> ShapeError {
        ShapeError {
            kind: ErrorKind::Lock {
                lock: None,
                what,
                line: error.line,
                reason: error.reason,
            },
        }
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Trace { type_name, reason } => write!(
                f,
                "cannot describe the serialized shape of `{type_name}`: {reason}. persist traces \
                 shapes through `Deserialize`, which does not work for untagged or internally \
                 tagged enums (`#[serde(untagged)]`, `#[serde(tag = ...)]`), \
                 `#[serde(flatten)]`, self-describing values such as `serde_json::Value`, or \
                 `Deserialize` impls that call `deserialize_any`; mark such a field \
                 `#[serde(with = \"persist::any\")]` and the lock describes it as `any`"
            ),
            ErrorKind::Lock {
                lock,
                what,
                line,
                reason,
            } => {
                match lock {
                    Some(path) => write!(f, "the schema lock {} cannot be read", path.display())?,
                    None => write!(f, "{what} cannot be read as a schema lock")?,
                }
                write!(
                    f,
                    ": line {line}: {reason}. It is not text persist wrote, or it was edited by \
                     hand: restore it from version control, or delete it and run the tests \
                     outside CI to write it anew"
                )
            }
        }
    }
}

impl std::error::Error for ShapeError {}

/// The name of a type without its module path.
pub(crate) fn short_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    let short = base.rsplit("::").next().unwrap_or(base);
    format!("{short}{}", &full[base.len()..])
}

/// The shape of `V` as data: traced, then probed.
fn shape_of<V: Persisted>() -> Result<Shape, ShapeError> {
    let (mut shape, pending) = trace::shape_of::<V>().map_err(|reason| ShapeError {
        kind: ErrorKind::Trace {
            type_name: short_name::<V>(),
            reason,
        },
    })?;
    probe::probe::<V>(&mut shape, &pending);
    Ok(shape)
}

/// The serialized shape of `V` as lock text: one block per container, the root `$` first,
/// then each nested type named by where it is first used. What the text says is in the
/// [module documentation](crate::testing#what-the-schema-lock-checks).
///
/// ```
/// use persist::Persisted;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Settings {
///     theme: String,
///     #[serde(default, skip_serializing_if = "Vec::is_empty")]
///     tags: Vec<String>,
/// }
///
/// assert_eq!(
///     persist::testing::describe::<Settings>()?,
///     "$ = struct {\n  theme: string,\n  tags: seq<string> = default, skipped when empty,\n}\n"
/// );
/// # Ok::<(), persist::testing::ShapeError>(())
/// ```
///
/// # Errors
///
/// [`ShapeError`] if the type cannot be traced: untagged or internally tagged enums,
/// `#[serde(flatten)]`, self-describing values such as `serde_json::Value` (unless marked
/// `#[serde(with = "persist::any")]`), `Deserialize` impls that call `deserialize_any`.
pub fn describe<V: Persisted>() -> Result<String, ShapeError> {
    Ok(shape_of::<V>()?.render())
}

/// The changes from a locked shape (`locked`, the text of a `schema.txt`) to `current`
/// (another lock text, usually [`describe`]'s), each with its [`ChangeClass`] and the fix that
/// would make it compatible. Empty when the texts are equal. Text that differs without a change
/// that matters to files (an order) gives one [`ChangeKind::NoEffect`].
///
/// ```
/// use persist::testing::{ChangeClass, compare_locks};
///
/// let locked = "$ = struct {\n  theme: string,\n  size: u32,\n}\n";
/// let current = "$ = struct {\n  theme: string,\n  size: u64,\n}\n";
/// let changes = compare_locks(locked, current)?;
/// assert_eq!(changes[0].path, "$.size");
/// assert_eq!(changes[0].class, ChangeClass::Backward);
/// assert_eq!(
///     changes[0].to_string(),
///     "$.size: type widened from `u32` to `u64`: backward compatible only. Older builds cannot \
///      read the values `u32` does not hold. If older builds must read new files, bump the \
///      version instead: they then refuse newer files with a clear error"
/// );
/// # Ok::<(), persist::testing::ShapeError>(())
/// ```
///
/// # Errors
///
/// [`ShapeError`] if either text is not a lock persist could have written.
pub fn compare_locks(locked: &str, current: &str) -> Result<Vec<ShapeChange>, ShapeError> {
    if locked == current {
        return Ok(Vec::new());
    }
    let old = Shape::parse(locked).map_err(|error| ShapeError::unreadable("the lock", error))?;
    let new = Shape::parse(current)
        .map_err(|error| ShapeError::unreadable("the current shape", error))?;
    let mut changes = compat::diff(&old, &new);
    if changes.is_empty() {
        changes.push(ShapeChange {
            path: model::ROOT.to_owned(),
            kind: ChangeKind::NoEffect,
            class: ChangeClass::Both,
            fix: None,
        });
    }
    Ok(changes)
}

/// The changes from a locked shape to the shape of `V` now: [`compare_locks`] with
/// [`describe::<V>`](describe). For tests that classify changes without a fixtures folder.
///
/// ```
/// use persist::Persisted;
/// use persist::testing::{ChangeClass, ChangeKind, compare_with_lock};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Settings {
///     #[serde(alias = "colour")]
///     theme: String,
/// }
///
/// let changes = compare_with_lock::<Settings>("$ = struct {\n  colour: string,\n}\n")?;
/// assert_eq!(changes.len(), 1);
/// assert!(matches!(
///     &changes[0].kind,
///     ChangeKind::FieldRenamed { new_reads_old: true, .. }
/// ));
/// // Files with `colour` load; a build from before cannot read `theme`.
/// assert_eq!(changes[0].class, ChangeClass::Backward);
/// # Ok::<(), persist::testing::ShapeError>(())
/// ```
///
/// # Errors
///
/// [`ShapeError`] if `V` cannot be traced (see [`describe`]) or `locked` is not a lock.
pub fn compare_with_lock<V: Persisted>(locked: &str) -> Result<Vec<ShapeChange>, ShapeError> {
    compare_locks(locked, &describe::<V>()?)
}

/// Whether `locked` has no annotations and differs from `current` only by them: a lock written
/// before persist recorded what fields allow (or whose type gained attributes since; the two
/// cannot be told apart).
pub(crate) fn annotations_only(locked: &str, current: &str) -> bool {
    let plain = |text: &str| -> Option<String> {
        let mut shape = Shape::parse(text).ok()?;
        let clear = |fields: &mut Fields| {
            fields.deny_unknown = false;
            for field in &mut fields.fields {
                field.optional = matches!(field.ty, Ty::Option(_));
                field.may_skip = false;
                field.aliases.clear();
            }
        };
        for (_, container) in &mut shape.containers {
            match container {
                Container::Struct(fields) => clear(fields),
                Container::Enum(variants) => {
                    for variant in variants {
                        if let Payload::Struct(fields) = &mut variant.payload {
                            clear(fields);
                        }
                    }
                }
                _ => {}
            }
        }
        Some(shape.render())
    };
    locked != current
        && plain(locked).as_deref() == Some(locked)
        && plain(current).as_deref() == Some(locked)
}

/// A JSON Schema (draft 2020-12) of a file of `V`'s version: the envelope
/// `{"version": V::VERSION, "data": ...}` (with the optional `crc32c` member of checksummed
/// files), the data's containers under `$defs` (named after their lock names: `root`,
/// `root.window`, `root.shapes.item`). Fields that may be missing on read are not `required`;
/// structs with `deny_unknown_fields` have `additionalProperties: false` (others accept
/// unknown members, as serde does); integers carry their type's bounds (up to 64 bits);
/// options are `anyOf` the value or `null`; enums are `oneOf` their variants, externally tagged
/// as serde_json writes them; maps are objects whose `additionalProperties` are the values;
/// `any` fields accept anything. For editors, other languages, and validating files by hand;
/// it describes the plain JSON envelope, not compressed or encrypted files.
///
/// ```
/// use persist::Persisted;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Persisted)]
/// #[persist(version = 3)]
/// struct Settings {
///     theme: String,
///     #[serde(default)]
///     font_size: u8,
/// }
///
/// let schema = persist::testing::json_schema::<Settings>()?;
/// assert_eq!(schema["properties"]["version"]["const"], 3);
/// assert_eq!(schema["properties"]["data"]["$ref"], "#/$defs/root");
/// let root = &schema["$defs"]["root"];
/// assert_eq!(root["required"], serde_json::json!(["theme"]));
/// assert_eq!(root["properties"]["font_size"]["maximum"], 255);
/// # Ok::<(), persist::testing::ShapeError>(())
/// ```
///
/// # Errors
///
/// [`ShapeError`] if `V` cannot be traced (see [`describe`]).
pub fn json_schema<V: Persisted>() -> Result<serde_json::Value, ShapeError> {
    let shape = shape_of::<V>()?;
    let title = format!("{} version {}", short_name::<V>(), V::VERSION);
    Ok(json_schema::file_schema(&shape, &title, V::VERSION))
}
