//! The TOML envelope (feature `toml`): the schema version as the file's first key, then the
//! data's own keys, at the top level of the document:
//!
//! ```toml
//! persist-version = 3
//!
//! theme = "dark"
//!
//! [window]
//! width = 800
//! ```
//!
//! A collection entry adds `persist-key = "alice"`, and a checksum `persist-crc32c = "1a2b3c4d"`
//! (the CRC-32C of every byte after the end of its line), both right after the version. The
//! three names are the envelope's: data with a top-level field of one of these names is refused
//! at save, so a field called `version` is just data.
//!
//! A save over a TOML file edits that file's document ([`merge`]): what a person wrote around
//! the values (comments, blank lines, key order, quoting, number bases) stays.

mod merge;

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::chain::{deserialize_checked, in_chain, unversioned_root};
use super::{DecodeError, EncodeError, Style, known_path, redact};
use crate::{Format, Persisted};

/// The key that holds the schema version: the file's first.
pub(crate) const VERSION_KEY: &str = "persist-version";
/// The key that holds a collection entry's key.
pub(crate) const KEY_KEY: &str = "persist-key";
/// The key that holds the checksum of the bytes after its line.
pub(crate) const CHECKSUM_KEY: &str = "persist-crc32c";
/// The envelope's keys, in the order a save writes them.
const RESERVED: [&str; 3] = [VERSION_KEY, KEY_KEY, CHECKSUM_KEY];

/// Whether `bytes` (a byte-order mark stripped) can be TOML: they do not start with `{`, as
/// every JSON envelope does.
fn may_be_toml(bytes: &[u8]) -> bool {
    bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{')
}

/// The value of `bytes` when they are a TOML file, and the key it holds (a collection entry's
/// `persist-key`), read in one pass: `None` when they are left to the JSON decoder (a `{`, or,
/// for a type whose format is JSON, text that is not a TOML envelope).
pub(crate) fn decode_keyed<T: Persisted>(
    bytes: &[u8],
) -> Option<Result<(T, Option<String>), DecodeError>> {
    if !may_be_toml(bytes) {
        return None;
    }
    let toml_type = T::FORMAT == Format::Toml;
    // The caller took one byte-order mark off; the TOML parser would take a second.
    if bytes.starts_with(super::UTF8_BOM) && (toml_type || text_names_version(bytes)) {
        return Some(Err(DecodeError::Corrupt {
            line: 1,
            column: 1,
            field: None,
            reason: "a second byte-order mark at the start of the file".to_owned(),
        }));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) if toml_type => {
            let (line, column) = line_column(bytes, error.valid_up_to());
            return Some(Err(DecodeError::Corrupt {
                line,
                column,
                field: None,
                reason: "a TOML file must be UTF-8 text".to_owned(),
            }));
        }
        Err(_) => return None,
    };
    match DeTable::parse(text) {
        Ok(root) if toml_type || root.get_ref().contains_key(VERSION_KEY) => {
            Some(decode_document(text, root))
        }
        Ok(_) => None,
        // A broken TOML file that names the envelope's key is reported as the TOML it is.
        Err(error) if toml_type || text_names_version(bytes) => {
            Some(Err(corrupt(text, &error, None)))
        }
        Err(_) => None,
    }
}

/// Whether `bytes` name the TOML envelope's version key anywhere.
fn text_names_version(bytes: &[u8]) -> bool {
    bytes
        .windows(VERSION_KEY.len())
        .any(|window| window == VERSION_KEY.as_bytes())
}

/// What a look at a file's bytes without the program's types finds: `None` when they are not a
/// TOML document, else its version (`None` for a TOML document without one).
pub(crate) fn stored_version(bytes: &[u8]) -> Option<Option<u64>> {
    if !may_be_toml(bytes) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut root = DeTable::parse(text).ok()?.into_inner();
    Some(match root.remove(VERSION_KEY) {
        Some(version) => Some(version_of(text, &version).ok()?),
        None => None,
    })
}

/// What [`describe`] finds in a TOML file.
pub(crate) struct Described {
    pub(crate) version: Option<u64>,
    pub(crate) checksummed: bool,
    /// The document after the envelope's keys.
    pub(crate) data: String,
}

/// A TOML file looked at without the program's types, its checksum verified: `None` when
/// `bytes` are not TOML (left to the JSON checks).
pub(crate) fn describe(bytes: &[u8]) -> Option<Result<Described, DecodeError>> {
    let bytes = bytes.strip_prefix(super::UTF8_BOM).unwrap_or(bytes);
    if !may_be_toml(bytes) || super::refuse_blank(bytes).is_err() {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let root = match DeTable::parse(text) {
        Ok(root) => root.into_inner(),
        Err(error) if text_names_version(bytes) => return Some(Err(corrupt(text, &error, None))),
        Err(_) => return None,
    };
    Some((|| {
        let version = match root.get(VERSION_KEY) {
            Some(version) => Some(version_of(text, version)?),
            None => None,
        };
        let checksum = root.get(CHECKSUM_KEY);
        if let Some(checksum) = checksum {
            verify(text, checksum)?;
        }
        // The data begins after the last of the envelope's lines, when they come first.
        let head = RESERVED
            .iter()
            .filter_map(|name| root.get(*name))
            .map(|value| value.span().end)
            .max();
        let first_data = root
            .iter()
            .filter(|(name, _)| !RESERVED.contains(&name.get_ref().as_ref()))
            .map(|(name, _)| name.span().start)
            .min();
        let data = match (head, first_data) {
            (Some(head), Some(first)) if head < first => after_line(text, head),
            (Some(head), None) => after_line(text, head),
            _ => text,
        };
        Ok(Described {
            version,
            checksummed: checksum.is_some(),
            data: data.to_owned(),
        })
    })())
}

/// The key stored in a TOML entry (`persist-key`), when `bytes` are one.
#[cfg(feature = "collection")]
pub(crate) fn stored_key(bytes: &[u8]) -> Option<String> {
    if !may_be_toml(bytes) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut root = DeTable::parse(text).ok()?.into_inner();
    match root.remove(KEY_KEY)?.into_inner() {
        DeValue::String(key) => Some(key.into_owned()),
        _ => None,
    }
}

/// The value of a parsed TOML file: its checksum verified, its version read, the rest
/// deserialized as the data of that version and migrated to `T`; with its `persist-key`.
fn decode_document<T: Persisted>(
    text: &str,
    root: Spanned<DeTable<'_>>,
) -> Result<(T, Option<String>), DecodeError> {
    let span = root.span();
    let mut table = root.into_inner();
    let version = table.remove(VERSION_KEY);
    if let Some(checksum) = table.remove(CHECKSUM_KEY) {
        verify(text, &checksum)?;
    }
    let key = match table.remove(KEY_KEY).map(Spanned::into_inner) {
        Some(DeValue::String(key)) => Some(key.into_owned()),
        _ => None,
    };
    let version = match version {
        Some(version) => {
            let found = version_of(text, &version)?;
            if found > u64::from(T::VERSION) {
                return Err(DecodeError::FutureVersion { found });
            }
            match u32::try_from(found) {
                Ok(found) if in_chain::<T>(found) => found,
                _ => return Err(DecodeError::UnknownVersion { found }),
            }
        }
        None => unversioned_root::<T>().ok_or_else(|| DecodeError::Corrupt {
            line: 1,
            column: 1,
            field: None,
            reason: format!(
                "not a persist file: a TOML file persist reads starts with `{VERSION_KEY} = N` \
                 (if the application wrote this file before it adopted persist, mark the oldest \
                 version `#[persist(accept_unversioned)]`)"
            ),
        })?,
    };
    let data = toml::de::Deserializer::from(Spanned::new(span, table));
    match deserialize_checked::<T, _>(version, data) {
        Ok(result) => result
            .map(|value| (value, key))
            .map_err(DecodeError::Migration),
        Err(error) => Err(corrupt(text, &error, field_of_error::<T>(text, version))),
    }
}

/// Parses again, tracking the position in the data, to name the field an error is at (only a
/// failing load pays for it), as a TOML path: `servers[2].port`.
fn field_of_error<T: Persisted>(text: &str, version: u32) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let span = root.span();
    let mut table = root.into_inner();
    for reserved in RESERVED {
        table.remove(reserved);
    }
    let data = toml::de::Deserializer::from(Spanned::new(span, table));
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(data, &mut track);
    match deserialize_checked::<T, _>(version, tracked) {
        Ok(_) => None,
        Err(_) => known_path(&track.path()),
    }
}

/// The schema version `value` holds: a whole number.
fn version_of(text: &str, value: &Spanned<DeValue<'_>>) -> Result<u64, DecodeError> {
    let parsed = match value.get_ref() {
        DeValue::Integer(integer) => {
            u64::from_str_radix(integer.as_str().trim_start_matches('+'), integer.radix()).ok()
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        let (line, column) = line_column(text.as_bytes(), value.span().start);
        DecodeError::Corrupt {
            line,
            column,
            field: Some(VERSION_KEY.to_owned()),
            reason: match value.get_ref() {
                DeValue::Integer(integer) => format!(
                    "`{VERSION_KEY}` must be a schema version, a whole number from 0 to \
                     18446744073709551615 (found {integer})"
                ),
                other => format!(
                    "`{VERSION_KEY}` must be a whole number, the schema version (found {})",
                    other.type_str()
                ),
            },
        }
    })
}

/// Checks the checksum `value` against the bytes after the end of its line.
fn verify(text: &str, value: &Spanned<DeValue<'_>>) -> Result<(), DecodeError> {
    let (line, column) = line_column(text.as_bytes(), value.span().start);
    let stored = match value.get_ref() {
        DeValue::String(hex) if hex.len() == 8 => u32::from_str_radix(hex, 16).ok(),
        _ => None,
    };
    let Some(stored) = stored else {
        return Err(DecodeError::Corrupt {
            line,
            column,
            field: Some(CHECKSUM_KEY.to_owned()),
            reason: format!("`{CHECKSUM_KEY}` must be a string of 8 hexadecimal digits"),
        });
    };
    let computed = crc32c::crc32c(after_line(text, value.span().end).as_bytes());
    if computed == stored {
        return Ok(());
    }
    Err(DecodeError::Corrupt {
        line,
        column,
        field: None,
        reason: format!(
            "checksum mismatch: the data was changed after it was written (stored {CHECKSUM_KEY} \
             {stored:08x}, computed {computed:08x}); restore a backup or a copy of the file, or \
             delete the `{CHECKSUM_KEY}` line after an edit by hand"
        ),
    })
}

/// What follows the end of the line that `at` is on.
fn after_line(text: &str, at: usize) -> &str {
    match text[at..].find('\n') {
        Some(end) => &text[at + end + 1..],
        None => "",
    }
}

/// The 1-based line and column (in characters) of the byte `offset` of `bytes`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// A TOML error as damage at its place in `text`.
fn corrupt(text: &str, error: &toml::de::Error, field: Option<String>) -> DecodeError {
    let (line, column) = match error.span() {
        Some(span) => line_column(text.as_bytes(), span.start),
        None => (0, 0),
    };
    DecodeError::Corrupt {
        line,
        column,
        field,
        reason: redact(error.message().trim_end()),
    }
}

/// Writes `value` as a TOML envelope of `version` (with a `persist-key` when given): over the
/// document of `base` (the file the save replaces, when it is TOML) keeping what a person wrote
/// around the values, else as `toml` lays it out. `renamed` are the type's renamed fields.
pub(crate) fn encode_as<T: Serialize + ?Sized>(
    value: &T,
    version: u64,
    key: Option<&str>,
    style: Style,
    base: Option<&str>,
    renamed: &[(&str, &str)],
) -> Result<Vec<u8>, EncodeError> {
    let data = match style.pretty {
        true => toml::to_string_pretty(value),
        false => toml::to_string(value),
    }
    .map_err(|error| refused(&error.to_string()))?;
    let reserved = |has: &dyn Fn(&str) -> bool| {
        RESERVED.iter().find(|name| has(name)).map(|name| {
            refused(&format!(
                "the top-level key `{name}` is the TOML envelope's (rename the field)"
            ))
        })
    };
    if let Some((base, document)) = base.and_then(|base| {
        let document = base.parse::<toml_edit::DocumentMut>().ok()?;
        Some((base, document))
    }) {
        // Parsed, the data is also known to be within the parser's nesting limit: a load
        // reads what a save writes.
        let new = data
            .parse::<toml_edit::DocumentMut>()
            .map_err(|error| refused(&format!("{error}").replace('\n', " ")))?;
        if let Some(error) = reserved(&|name| new.as_table().contains_key(name)) {
            return Err(error);
        }
        let crlf = base
            .find('\n')
            .is_some_and(|end| base[..end].ends_with('\r'));
        let merged = merge::over(document, &new, version, key, style.checksum, renamed, crlf);
        return Ok(merged.into_bytes());
    }
    // Parsed as a load parses it when it may hold a key of the envelope's (as a value, a
    // `[table]` or a dotted key) or nest deeper than the parser reads (80 levels): refused here,
    // not found by a load. Every level of nesting takes a `[`, a `{` or a `.`, so data with
    // fewer than 64 of them cannot be too deep, and a top-level key starts a line.
    let nesting = data
        .bytes()
        .filter(|byte| matches!(byte, b'[' | b'{' | b'.'))
        .count();
    let named = data.lines().any(|line| {
        line.trim_start_matches(['[', ' ', '\t', '"', '\''])
            .starts_with("persist-")
    });
    if nesting >= 64 || named {
        let parsed = DeTable::parse(&data)
            .map_err(|error| refused(error.message()))?
            .into_inner();
        if let Some(error) = reserved(&|name| parsed.contains_key(name)) {
            return Err(error);
        }
    }
    let mut out = format!("{VERSION_KEY} = {version}\n");
    if let Some(key) = key {
        out.push_str(&format!("{KEY_KEY} = {}\n", toml_edit::Value::from(key)));
    }
    let data = match data.is_empty() {
        true => data,
        false => format!("\n{data}"),
    };
    if style.checksum {
        out.push_str(&format!(
            "{CHECKSUM_KEY} = \"{:08x}\"\n",
            crc32c::crc32c(data.as_bytes())
        ));
    }
    out.push_str(&data);
    Ok(out.into_bytes())
}

/// A value TOML cannot hold (not a table at its top, a `None` in an array, a unit value...).
fn refused(reason: &str) -> EncodeError {
    EncodeError::Value {
        field: None,
        source: <serde_json::Error as serde::ser::Error>::custom(format_args!("TOML: {reason}")),
    }
}
