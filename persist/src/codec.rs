//! The sans-IO core: state value <-> bytes of the on-disk envelope, with the migration walk.
//!
//! A file is `{"version":N,"data":...}`. Loading parses it in one pass: the envelope visitor
//! reads `version`, then deserializes `data` straight into the struct of THAT version and steps
//! it forward through the chain with each type's `migrate`. Nothing goes through
//! `serde_json::Value`. Only a hand-edited file that puts `data` before `version` takes a
//! second pass, and only a failing load re-parses with field-path tracking, so the common path
//! pays for neither.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::{BoxError, Error, Persisted};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The envelope member that holds the checksum of `data`: always the last one.
const CHECKSUM_KEY: &str = "crc32c";

/// Writes `value` as the envelope of its version. With `checksum`, the CRC-32C of the exact bytes
/// of `data` follows as the last member: `{"version":3,"data":{...},"crc32c":"1a2b3c4d"}`.
pub(crate) fn encode<T: Persisted, W: io::Write>(
    value: &T,
    mut writer: W,
    checksum: bool,
) -> Result<(), serde_json::Error> {
    if !checksum {
        return serde_json::to_writer(writer, &Envelope { data: value });
    }
    write!(writer, "{{\"version\":{},\"data\":", T::VERSION).map_err(serde_json::Error::io)?;
    let mut hashing = Crc32cWriter {
        inner: &mut writer,
        crc: 0,
        pending: Vec::with_capacity(CRC_CHUNK),
    };
    serde_json::to_writer(&mut hashing, value)?;
    let crc = hashing.finish().map_err(serde_json::Error::io)?;
    write!(writer, ",\"{CHECKSUM_KEY}\":\"{crc:08x}\"}}").map_err(serde_json::Error::io)
}

/// Bytes hashed at once: the CRC of serde_json's many tiny writes one by one would cost more
/// than the CRC itself.
const CRC_CHUNK: usize = 64 * 1024;

/// Passes everything through to `inner`, computing its CRC-32C in chunks on the way.
struct Crc32cWriter<W> {
    inner: W,
    crc: u32,
    pending: Vec<u8>,
}

impl<W: io::Write> Crc32cWriter<W> {
    fn pass_on(&mut self) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.pending);
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<u32> {
        self.pass_on()?;
        Ok(self.crc)
    }
}

impl<W: io::Write> io::Write for Crc32cWriter<W> {
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.pending.len() + data.len() > CRC_CHUNK {
            self.pass_on()?;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The checksum stored at the end of `bytes`, and where its member starts (at the comma before
/// it): `,"crc32c":"<8 lowercase hex digits>"}` as persist writes it, with any whitespace
/// between the tokens (a file reformatted by hand still has its checksum found, and checked).
fn trailing_checksum(bytes: &[u8]) -> Option<(u32, usize)> {
    /// Strips trailing whitespace, then `token`.
    fn back<'a>(bytes: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        let end = bytes.len()
            - bytes
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        bytes[..end].strip_suffix(token)
    }
    let rest = back(bytes, b"}")?;
    let rest = back(rest, b"\"")?;
    let (rest, hex) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let rest = rest.strip_suffix(b"\"")?;
    let rest = back(rest, b":")?;
    let rest = back(rest, format!("\"{CHECKSUM_KEY}\"").as_bytes())?;
    let rest = back(rest, b",")?;
    let stored = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    Some((stored, rest.len()))
}

/// The bytes of `data` in a file that has a trailing checksum: found by position when the file
/// starts the way persist writes it, else by parsing the envelope (a file reformatted by hand,
/// whose checksum then fails, as it should: the bytes changed).
fn checksummed_data(bytes: &[u8], checksum_start: usize) -> Option<&[u8]> {
    let head = bytes.strip_prefix(br#"{"version":"#);
    if let Some(rest) = head {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(data) = rest[digits..].strip_prefix(br#","data":"#) {
            let offset = bytes.len() - data.len();
            if offset <= checksum_start {
                return Some(&bytes[offset..checksum_start]);
            }
        }
    }
    raw_data(bytes)
}

/// `data`'s bytes as they are in the file, by parsing the envelope without building anything.
fn raw_data(bytes: &[u8]) -> Option<&[u8]> {
    struct RawData;

    impl<'de> Visitor<'de> for RawData {
        type Value = Option<&'de [u8]>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut data = None;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Data => {
                        let raw: &'de serde_json::value::RawValue = map.next_value()?;
                        data = Some(raw.get().as_bytes());
                    }
                    Key::Version | Key::Checksum | Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(data)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.deserialize_map(RawData).ok().flatten()
}

/// Checks the checksum a file ends with, if it has one. A file whose data cannot be found
/// passes here and fails in the decoding pass, which says where.
fn verify_checksum(bytes: &[u8]) -> Result<bool, DecodeError> {
    let Some((stored, start)) = trailing_checksum(bytes) else {
        return Ok(false);
    };
    let Some(data) = checksummed_data(bytes, start) else {
        return Ok(true);
    };
    let mut computed = crc32c::crc32c(data);
    if computed != stored {
        // Found by position, `data` may have had other members after it; parse to be sure
        // before calling the file damaged.
        if let Some(parsed) = raw_data(bytes).filter(|parsed| parsed.len() != data.len()) {
            computed = crc32c::crc32c(parsed);
        }
    }
    if computed == stored {
        return Ok(true);
    }
    Err(DecodeError::Corrupt {
        line: 0,
        column: 0,
        field: None,
        reason: format!(
            "checksum mismatch: the data was damaged after it was written (stored crc32c \
             {stored:08x}, computed {computed:08x}); restore a backup or a copy of the file"
        ),
    })
}

struct Envelope<'a, T> {
    data: &'a T,
}

impl<T: Persisted> Serialize for Envelope<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut envelope = serializer.serialize_struct("Envelope", 2)?;
        envelope.serialize_field("version", &T::VERSION)?;
        envelope.serialize_field("data", self.data)?;
        envelope.end()
    }
}

/// Why bytes did not decode; [`DecodeError::at`] names the file.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Corrupt {
        line: usize,
        column: usize,
        field: Option<String>,
        reason: String,
    },
    FutureVersion {
        found: u64,
    },
    UnknownVersion {
        found: u64,
    },
    Migration(MigrationFailure),
}

#[derive(Debug)]
pub(crate) struct MigrationFailure {
    from: u32,
    to: u32,
    source: BoxError,
}

impl DecodeError {
    pub(crate) fn at<T: Persisted>(self, path: &Path) -> Error {
        let path = path.to_owned();
        match self {
            DecodeError::Corrupt {
                line,
                column,
                field,
                reason,
            } => Error::Corrupt {
                path,
                line,
                column,
                field,
                reason,
            },
            DecodeError::FutureVersion { found } => Error::FutureVersion {
                path,
                found,
                supported: T::VERSION,
            },
            DecodeError::UnknownVersion { found } => Error::UnknownVersion {
                path,
                found,
                known: chain_versions::<T>(),
            },
            DecodeError::Migration(MigrationFailure { from, to, source }) => Error::Migration {
                path,
                from,
                to,
                source,
            },
        }
    }
}

/// Reads the envelope in `bytes` and returns the value migrated to `T`.
pub(crate) fn decode<T: Persisted>(bytes: &[u8]) -> Result<T, DecodeError> {
    // Editors on Windows add a byte-order mark to files a user edits by hand.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let checksum_checked = verify_checksum(bytes)?;
    finish(
        parse::<T>(
            bytes,
            Pass::Envelope {
                known_version: None,
                checksum_checked,
            },
        )?,
        bytes,
    )
}

/// The version of a file that starts the way persist writes it (`{"version":N,`), from its
/// first bytes; `None` when the file starts in any other way.
pub(crate) fn leading_version(head: &[u8]) -> Option<u64> {
    if crate::frame::is_framed(head) {
        return crate::frame::header_version(head);
    }
    let head = head.strip_prefix(UTF8_BOM).unwrap_or(head);
    let rest = head.strip_prefix(br#"{"version":"#)?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if !matches!(rest.get(digits), Some(b',' | b'}')) || digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The `version` of the envelope in `bytes`, whatever the layout; `None` for a document that is
/// not an envelope or not JSON. Does not look at `data` beyond skipping it.
pub(crate) fn stored_version(bytes: &[u8]) -> Option<u64> {
    if crate::frame::is_framed(bytes) {
        return crate::frame::header_version(bytes);
    }
    struct VersionOnly;

    impl<'de> Visitor<'de> for VersionOnly {
        type Value = Option<u64>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut version = None;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Version => version = Some(map.next_value_seed(VersionSeed)?),
                    Key::Data | Key::Checksum | Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(version)
        }
    }

    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.deserialize_map(VersionOnly).ok().flatten()
}

/// Turns the outcome of a pass into the value, running the second pass a file may need.
fn finish<T: Persisted>(outcome: Outcome<T>, bytes: &[u8]) -> Result<T, DecodeError> {
    match outcome {
        Outcome::Decoded(result) => result.map_err(DecodeError::Migration),
        Outcome::FutureVersion(found) => Err(DecodeError::FutureVersion { found }),
        Outcome::UnknownVersion(found) => Err(DecodeError::UnknownVersion { found }),
        // A pass that knows the version decodes `data` where it finds it, so this recursion
        // ends after one more pass.
        Outcome::VersionAfterData {
            version,
            checksum_checked,
        } => {
            let pass = Pass::Envelope {
                known_version: Some(version),
                checksum_checked,
            };
            finish(parse::<T>(bytes, pass)?, bytes)
        }
        Outcome::NotEnvelope => match unversioned_root::<T>() {
            // An unversioned pass only ever returns `Decoded`.
            Some(root) => finish(parse::<T>(bytes, Pass::Unversioned { root })?, bytes),
            None => Err(DecodeError::Corrupt {
                line: 0,
                column: 0,
                field: None,
                reason: "not a persist file: expected a JSON object with `version` and `data` \
                         fields (if the application wrote this file before it adopted persist, \
                         mark the oldest version `#[persist(accept_unversioned)]`)"
                    .to_owned(),
            }),
        },
    }
}

#[derive(Clone, Copy)]
enum Pass {
    Envelope {
        known_version: Option<u64>,
        /// The file ends with a checksum that [`verify_checksum`] checked; a checksum member
        /// anywhere else is an error.
        checksum_checked: bool,
    },
    Unversioned {
        root: u32,
    },
}

enum Outcome<T> {
    Decoded(Result<T, MigrationFailure>),
    FutureVersion(u64),
    UnknownVersion(u64),
    /// `data` came before `version`: parse again knowing the version.
    VersionAfterData {
        version: u64,
        checksum_checked: bool,
    },
    NotEnvelope,
}

fn parse<T: Persisted>(bytes: &[u8], pass: Pass) -> Result<Outcome<T>, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match run_pass::<T, _>(&mut deserializer, pass).and_then(|outcome| {
        deserializer.end()?;
        Ok(outcome)
    }) {
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(corrupt(error, field_of_error::<T>(bytes, pass))),
    }
}

/// Parses again, tracking the position in the document, to name the field an error is at.
/// Only failing loads pay for it; a migration step that ran before the error runs again, which
/// is harmless for the pure conversions `From`/`TryFrom` impls are.
fn field_of_error<T: Persisted>(bytes: &[u8], pass: Pass) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&mut deserializer, &mut track);
    match run_pass::<T, _>(tracked, pass) {
        Ok(_) => None,
        Err(_) => {
            let path = track.path().to_string();
            (path != ".").then_some(path)
        }
    }
}

fn run_pass<'de, T: Persisted, D: Deserializer<'de>>(
    deserializer: D,
    pass: Pass,
) -> Result<Outcome<T>, D::Error> {
    match pass {
        Pass::Envelope {
            known_version,
            checksum_checked,
        } => deserializer.deserialize_any(EnvelopeVisitor::<T> {
            known_version,
            checksum_checked,
            marker: PhantomData,
        }),
        Pass::Unversioned { root } => {
            deserialize_at::<T, D>(root, deserializer).map(Outcome::Decoded)
        }
    }
}

fn corrupt(error: serde_json::Error, field: Option<String>) -> DecodeError {
    let mut reason = error.to_string();
    let location = format!(" at line {} column {}", error.line(), error.column());
    if let Some(stripped) = reason.strip_suffix(&location) {
        reason.truncate(stripped.len());
    }
    DecodeError::Corrupt {
        line: error.line(),
        column: error.column(),
        field,
        reason: redact(&reason),
    }
}

/// Removes values quoted from the file out of a serde message, so that a secret stored in the
/// wrong place does not end up in a log. Field and variant names of the schema stay.
pub(crate) fn redact(message: &str) -> String {
    const QUOTED: [(&str, &str); 6] = [
        ("string \"", "a string"),
        ("integer `", "an integer"),
        ("floating point `", "a floating-point number"),
        ("character `", "a character"),
        ("boolean `", "a boolean"),
        ("unknown variant `", "an unknown variant"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for (opening, replacement) in QUOTED {
            if let Some(after) = rest.strip_prefix(opening) {
                let end = if opening.ends_with('"') {
                    closing_quote(after)
                } else if opening.starts_with("unknown variant") {
                    after.rfind("`, expected").or_else(|| after.rfind('`'))
                } else {
                    after.find('`')
                };
                if let Some(end) = end {
                    out.push_str(replacement);
                    rest = &after[end + 1..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

/// Index of the `"` that closes a Debug-escaped string.
fn closing_quote(escaped: &str) -> Option<usize> {
    let mut backslash = false;
    for (index, byte) in escaped.bytes().enumerate() {
        match byte {
            b'\\' if !backslash => backslash = true,
            b'"' if !backslash => return Some(index),
            _ => backslash = false,
        }
    }
    None
}

/// Something done for each type of a chain, oldest first (see [`walk_chain`]).
pub(crate) trait VisitVersion {
    fn visit<V: Persisted>(&mut self);
}

/// Calls `visitor` with every type of `T`'s chain, oldest first.
pub(crate) fn walk_chain<T: Persisted, W: VisitVersion>(visitor: &mut W) {
    if T::VERSION == 0 {
        return;
    }
    if T::Previous::VERSION < T::VERSION {
        walk_chain::<T::Previous, W>(visitor);
    }
    visitor.visit::<T>();
}

/// The versions of `T`'s chain, oldest first.
pub(crate) fn chain_versions<T: Persisted>() -> Vec<u32> {
    struct Versions(Vec<u32>);

    impl VisitVersion for Versions {
        fn visit<V: Persisted>(&mut self) {
            self.0.push(V::VERSION);
        }
    }

    let mut versions = Versions(Vec::new());
    walk_chain::<T, _>(&mut versions);
    versions.0
}

fn classify<T: Persisted>(version: u64) -> Result<u32, Outcome<T>> {
    if version > u64::from(T::VERSION) {
        return Err(Outcome::FutureVersion(version));
    }
    match u32::try_from(version) {
        Ok(version) if in_chain::<T>(version) => Ok(version),
        _ => Err(Outcome::UnknownVersion(version)),
    }
}

/// Whether `version` is one of the chain's versions: [`chain_versions`] without the allocation,
/// for the load path.
fn in_chain<T: Persisted>(version: u32) -> bool {
    if T::VERSION == 0 || version > T::VERSION {
        false
    } else if version == T::VERSION {
        true
    } else {
        T::Previous::VERSION < T::VERSION && in_chain::<T::Previous>(version)
    }
}

/// The oldest version, when it accepts files without an envelope.
pub(crate) fn unversioned_root<T: Persisted>() -> Option<u32> {
    if T::VERSION == 0 {
        None
    } else if T::Previous::VERSION == 0 || T::Previous::VERSION >= T::VERSION {
        T::ACCEPTS_UNVERSIONED.then_some(T::VERSION)
    } else {
        unversioned_root::<T::Previous>()
    }
}

/// Deserializes the struct of `version` and migrates it up to `T`. `version` must be in `T`'s
/// chain (checked by [`classify`]); the guard below only stops a hand-written, malformed chain
/// from recursing forever.
fn deserialize_at<'de, T: Persisted, D: Deserializer<'de>>(
    version: u32,
    deserializer: D,
) -> Result<Result<T, MigrationFailure>, D::Error> {
    if version == T::VERSION {
        return T::deserialize(deserializer).map(Ok);
    }
    if T::VERSION == 0 || version > T::VERSION || T::Previous::VERSION >= T::VERSION {
        return Err(de::Error::custom(format_args!(
            "version {version} is not in the migration chain"
        )));
    }
    Ok(
        deserialize_at::<T::Previous, D>(version, deserializer)?.and_then(|previous| {
            T::migrate(previous).map_err(|source| MigrationFailure {
                from: T::Previous::VERSION,
                to: T::VERSION,
                source,
            })
        }),
    )
}

struct DataSeed<T> {
    version: u32,
    marker: PhantomData<T>,
}

impl<'de, T: Persisted> DeserializeSeed<'de> for DataSeed<T> {
    type Value = Result<T, MigrationFailure>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserialize_at::<T, D>(self.version, deserializer)
    }
}

struct EnvelopeVisitor<T> {
    known_version: Option<u64>,
    checksum_checked: bool,
    marker: PhantomData<T>,
}

/// Anything but an object is not an envelope; it may still be a pre-persist file.
macro_rules! not_an_envelope {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Outcome::NotEnvelope)
        })*
    };
}

impl<'de, T: Persisted> Visitor<'de> for EnvelopeVisitor<T> {
    type Value = Outcome<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object with `version` and `data` fields")
    }

    not_an_envelope!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
    );

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Outcome::NotEnvelope)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Outcome::NotEnvelope)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut version = self.known_version;
        let mut seen_version = false;
        let mut data: Option<Outcome<T>> = None;
        let mut data_before_version = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Version => {
                    if seen_version {
                        return Err(de::Error::duplicate_field("version"));
                    }
                    seen_version = true;
                    version = Some(map.next_value_seed(VersionSeed)?);
                }
                Key::Data => {
                    if data.is_some() || data_before_version {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    match version.map(classify::<T>) {
                        Some(Ok(version)) => {
                            data = Some(Outcome::Decoded(map.next_value_seed(DataSeed {
                                version,
                                marker: PhantomData,
                            })?));
                        }
                        Some(Err(refused)) => {
                            map.next_value::<IgnoredAny>()?;
                            data = Some(refused);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            data_before_version = true;
                        }
                    }
                }
                Key::Checksum if !self.checksum_checked => {
                    // Never skipped: a file that has a checksum is verified or refused.
                    return Err(de::Error::custom(format_args!(
                        "`{CHECKSUM_KEY}` must be the last member of the envelope, as 8 \
                         lowercase hex digits in a string"
                    )));
                }
                Key::Checksum | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(version) = version.filter(|_| seen_version) else {
            return Ok(Outcome::NotEnvelope);
        };
        if data_before_version {
            return Ok(Outcome::VersionAfterData {
                version,
                checksum_checked: self.checksum_checked,
            });
        }
        match (data, classify::<T>(version)) {
            (Some(outcome), _) | (None, Err(outcome)) => Ok(outcome),
            (None, Ok(_)) => Err(de::Error::missing_field("data")),
        }
    }
}

enum Key {
    Version,
    Data,
    Checksum,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "version" => Key::Version,
                    "data" => Key::Data,
                    CHECKSUM_KEY => Key::Checksum,
                    _ => Key::Other,
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct VersionSeed;

impl<'de> DeserializeSeed<'de> for VersionSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_u64(self)
    }
}

impl Visitor<'_> for VersionSeed {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("`version` to be a positive integer")
    }

    fn visit_u64<E: de::Error>(self, version: u64) -> Result<u64, E> {
        Ok(version)
    }

    fn visit_i64<E: de::Error>(self, version: i64) -> Result<u64, E> {
        u64::try_from(version)
            .map_err(|_| E::custom("`version` must be a positive integer, found a negative one"))
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use serde::{Deserialize, Serialize};

    use super::{
        DecodeError, chain_versions, decode, encode, in_chain, leading_version, redact,
        stored_version,
    };
    use crate::{BoxError, Origin, Persisted};

    // Hand-written impls: the core is tested without the derive.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        name: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V3 {
        name: String,
        size: u8,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V7 {
        label: String,
        size: u8,
        tags: Vec<String>,
    }

    #[derive(Debug)]
    struct Refused;

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("refused")
        }
    }

    impl std::error::Error for Refused {}

    impl Persisted for V1 {
        const VERSION: u32 = 1;
        const ACCEPTS_UNVERSIONED: bool = true;
        type Previous = Origin;
        fn migrate(previous: Origin) -> Result<Self, BoxError> {
            match previous {}
        }
    }

    impl Persisted for V3 {
        const VERSION: u32 = 3;
        type Previous = V1;
        fn migrate(previous: V1) -> Result<Self, BoxError> {
            if previous.name == "refuse me" {
                return Err(Box::new(Refused));
            }
            Ok(V3 {
                name: previous.name,
                size: 1,
            })
        }
    }

    impl Persisted for V7 {
        const VERSION: u32 = 7;
        type Previous = V3;
        fn migrate(previous: V3) -> Result<Self, BoxError> {
            Ok(V7 {
                label: previous.name,
                size: previous.size * 2,
                tags: vec!["migrated".to_owned()],
            })
        }
    }

    fn encoded<T: Persisted>(value: &T) -> String {
        let mut bytes = Vec::new();
        encode(value, &mut bytes, false).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn corrupt_reason(
        result: Result<impl fmt::Debug, DecodeError>,
    ) -> (usize, usize, Option<String>, String) {
        match result {
            Err(DecodeError::Corrupt {
                line,
                column,
                field,
                reason,
            }) => (line, column, field, reason),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn encodes_version_first() {
        let value = V3 {
            name: "a".into(),
            size: 4,
        };
        assert_eq!(
            encoded(&value),
            r#"{"version":3,"data":{"name":"a","size":4}}"#
        );
    }

    fn checksummed<T: Persisted>(value: &T) -> String {
        let mut bytes = Vec::new();
        encode(value, &mut bytes, true).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn sample() -> V7 {
        V7 {
            label: "a label long enough to damage".into(),
            size: 9,
            tags: vec!["t".into()],
        }
    }

    #[test]
    fn a_checksum_is_the_last_member_over_the_exact_data_bytes() {
        let file = checksummed(&sample());
        let data = r#"{"label":"a label long enough to damage","size":9,"tags":["t"]}"#;
        assert_eq!(
            file,
            format!(
                r#"{{"version":7,"data":{data},"crc32c":"{:08x}"}}"#,
                crc32c::crc32c(data.as_bytes())
            )
        );
        assert_eq!(decode::<V7>(file.as_bytes()).unwrap(), sample());
        // A trailing newline (an editor's) is not part of the data.
        assert_eq!(
            decode::<V7>(format!("{file}\n").as_bytes()).unwrap(),
            sample()
        );
    }

    #[test]
    fn a_damaged_string_that_is_still_valid_json_fails_the_checksum() {
        let file = checksummed(&sample()).replace("long enough", "long enougH");
        let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
        assert!(
            reason.starts_with("checksum mismatch: the data was damaged after it was written"),
            "{reason}"
        );
        // The same file without its checksum would have loaded the damaged value.
        let plain = encoded(&sample()).replace("long enough", "long enougH");
        assert_eq!(
            decode::<V7>(plain.as_bytes()).unwrap().label,
            "a label long enougH to damage"
        );
    }

    #[test]
    fn a_reformatted_file_is_checked_by_parsing_and_fails_because_its_bytes_changed() {
        let file = checksummed(&sample()).replace(",\"size\"", ", \"size\"");
        let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
        assert!(reason.starts_with("checksum mismatch"), "{reason}");
        // A member after `data` (a later format's, say) is not taken for part of it.
        let data = r#"{"label":"x","size":1,"tags":[]}"#;
        let crc = crc32c::crc32c(data.as_bytes());
        let later = format!(r#"{{"version":7,"data":{data},"note":1,"crc32c":"{crc:08x}"}}"#);
        assert_eq!(decode::<V7>(later.as_bytes()).unwrap().label, "x");
        // Envelope members reordered by hand, data untouched: still verified, and it passes.
        let data = r#"{"label":"x","size":1,"tags":[]}"#;
        let crc = crc32c::crc32c(data.as_bytes());
        let reordered = format!(r#"{{ "data": {data}, "version": 7, "crc32c": "{crc:08x}" }}"#);
        assert_eq!(decode::<V7>(reordered.as_bytes()).unwrap().label, "x");
    }

    #[test]
    fn a_checksum_that_is_not_last_or_not_canonical_is_refused_not_skipped() {
        let data = r#"{"label":"x","size":1,"tags":[]}"#;
        let crc = crc32c::crc32c(data.as_bytes());
        for file in [
            format!(r#"{{"version":7,"crc32c":"{crc:08x}","data":{data}}}"#),
            format!(r#"{{"version":7,"data":{data},"crc32c":"{crc:08X}"}}"#),
            format!(r#"{{"version":7,"data":{data},"crc32c":{crc}}}"#),
        ] {
            let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
            assert!(
                reason.contains("must be the last member"),
                "{file}: {reason}"
            );
        }
    }

    #[test]
    fn an_older_version_with_a_checksum_migrates() {
        let old = checksummed(&V1 { name: "old".into() });
        assert_eq!(decode::<V7>(old.as_bytes()).unwrap().label, "old");
        let damaged = old.replace("old", "olt");
        assert!(decode::<V7>(damaged.as_bytes()).is_err());
    }

    #[test]
    fn round_trips_current_version() {
        let value = V7 {
            label: "x".into(),
            size: 9,
            tags: vec!["t".into()],
        };
        assert_eq!(decode::<V7>(encoded(&value).as_bytes()).unwrap(), value);
    }

    #[test]
    fn migrates_through_non_consecutive_versions() {
        let old = encoded(&V1 { name: "old".into() });
        let expected = V7 {
            label: "old".into(),
            size: 2,
            tags: vec!["migrated".into()],
        };
        assert_eq!(decode::<V7>(old.as_bytes()).unwrap(), expected);
        let middle = encoded(&V3 {
            name: "mid".into(),
            size: 5,
        });
        assert_eq!(decode::<V7>(middle.as_bytes()).unwrap().size, 10);
    }

    #[test]
    fn lists_the_chain() {
        for version in 0..9 {
            assert_eq!(
                in_chain::<V7>(version),
                chain_versions::<V7>().contains(&version),
                "{version}"
            );
        }
        assert_eq!(chain_versions::<V7>(), [1, 3, 7]);
        assert_eq!(chain_versions::<V1>(), [1]);
        assert!(chain_versions::<Origin>().is_empty());
    }

    #[test]
    fn reads_data_before_version_and_ignores_extra_fields() {
        let file = br#"{"checksum":"abc","data":{"name":"n"},"extra":[1,{"a":null}],"version":1}"#;
        assert_eq!(decode::<V3>(file).unwrap().name, "n");
    }

    #[test]
    fn strips_a_byte_order_mark() {
        let file = b"\xEF\xBB\xBF{\"version\":1,\"data\":{\"name\":\"bom\"}}";
        assert_eq!(decode::<V1>(file).unwrap().name, "bom");
    }

    #[test]
    fn refuses_a_future_version_without_reading_its_data() {
        let file = br#"{"version":8,"data":{"entirely":"different"}}"#;
        assert!(matches!(
            decode::<V7>(file),
            Err(DecodeError::FutureVersion { found: 8 })
        ));
        let huge = br#"{"version":18446744073709551615,"data":1}"#;
        assert!(matches!(
            decode::<V7>(huge),
            Err(DecodeError::FutureVersion { found: u64::MAX })
        ));
        // Found before `data` is even present.
        assert!(matches!(
            decode::<V7>(br#"{"version":9}"#),
            Err(DecodeError::FutureVersion { found: 9 })
        ));
    }

    #[test]
    fn refuses_versions_outside_the_chain() {
        for version in [0, 2, 5] {
            let file = format!(r#"{{"version":{version},"data":{{"name":"n"}}}}"#);
            match decode::<V7>(file.as_bytes()) {
                Err(DecodeError::UnknownVersion { found }) => assert_eq!(found, version),
                other => panic!("version {version}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_malformed_versions() {
        for (file, expected) in [
            (r#"{"version":-1,"data":{}}"#, "negative"),
            (
                r#"{"version":"1","data":{}}"#,
                "expected `version` to be a positive integer",
            ),
            (
                r#"{"version":1.5,"data":{}}"#,
                "expected `version` to be a positive integer",
            ),
            (
                r#"{"version":null,"data":{}}"#,
                "expected `version` to be a positive integer",
            ),
            (
                r#"{"version":1,"version":1,"data":{}}"#,
                "duplicate field `version`",
            ),
            (r#"{"version":1}"#, "missing field `data`"),
        ] {
            let (_, _, _, reason) = corrupt_reason(decode::<V3>(file.as_bytes()));
            assert!(reason.contains(expected), "{file}: {reason}");
        }
    }

    #[test]
    fn reports_a_migration_failure_with_its_step() {
        let file = encoded(&V1 {
            name: "refuse me".into(),
        });
        match decode::<V7>(file.as_bytes()) {
            Err(DecodeError::Migration(failure)) => {
                assert_eq!((failure.from, failure.to), (1, 3));
                assert_eq!(failure.source.to_string(), "refused");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_field_and_position_of_bad_data() {
        let file = b"{\"version\":7,\n\"data\":{\"label\":\"x\",\"size\":300,\"tags\":[]}}";
        let (line, column, field, reason) = corrupt_reason(decode::<V7>(file));
        assert_eq!((line, field.as_deref()), (2, Some("data.size")));
        assert!(column > 0);
        assert_eq!(reason, "invalid value: an integer, expected u8");

        let file = br#"{"version":7,"data":{"label":"x","size":1,"tags":[1]}}"#;
        let (_, _, field, _) = corrupt_reason(decode::<V7>(file));
        assert_eq!(field.as_deref(), Some("data.tags[0]"));
    }

    #[test]
    fn does_not_repeat_values_from_the_file() {
        let file = br#"{"version":7,"data":{"label":"x","size":"hunter2","tags":[]}}"#;
        let (_, _, _, reason) = corrupt_reason(decode::<V7>(file));
        assert!(!reason.contains("hunter2"), "{reason}");
        assert_eq!(reason, "invalid type: a string, expected u8");
    }

    #[test]
    fn reports_broken_json() {
        for file in [
            &b""[..],
            b"{",
            b"{\"version\":1,\"data\":{\"name\":\"n\"}} trailing",
            b"\0\0\0\0",
            b"{\"version\":1,\"data\":{\"name\":\"\xFF\"}}",
        ] {
            corrupt_reason(decode::<V1>(file));
        }
    }

    #[test]
    fn reads_plain_json_as_the_oldest_version_when_allowed() {
        let plain = br#"{"name":"legacy"}"#;
        assert_eq!(decode::<V7>(plain).unwrap().label, "legacy");
        // A value that is not an object at all is not an envelope either.
        corrupt_reason(decode::<V7>(b"[1,2]"));
    }

    #[test]
    fn refuses_plain_json_otherwise() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Strict {
            name: String,
        }
        impl Persisted for Strict {
            const VERSION: u32 = 1;
            type Previous = Origin;
            fn migrate(previous: Origin) -> Result<Self, BoxError> {
                match previous {}
            }
        }
        let (_, _, _, reason) = corrupt_reason(decode::<Strict>(br#"{"name":"legacy"}"#));
        assert!(reason.starts_with("not a persist file"), "{reason}");
    }

    #[test]
    fn finds_the_stored_version_without_decoding_data() {
        assert_eq!(leading_version(br#"{"version":12,"data":{}}"#), Some(12));
        assert_eq!(leading_version(b"\xEF\xBB\xBF{\"version\":3}"), Some(3));
        for head in [
            &br#"{ "version": 3"#[..],
            br#"{"version":"3","#,
            br#"{"data":1}"#,
            b"",
        ] {
            assert_eq!(leading_version(head), None);
        }
        assert_eq!(
            leading_version(br#"{"version":99999999999999999999,"#),
            None
        );
        assert_eq!(
            stored_version(b"{\n \"data\": [1, {}],\n \"version\": 7\n}"),
            Some(7)
        );
        assert_eq!(stored_version(br#"{"name":"legacy"}"#), None);
        assert_eq!(stored_version(b"[1,2]"), None);
        assert_eq!(stored_version(b"{broken"), None);
    }

    #[test]
    fn redacts_quoted_values() {
        assert_eq!(
            redact(r#"invalid type: string "a \"quoted\" secret", expected u32"#),
            "invalid type: a string, expected u32"
        );
        assert_eq!(
            redact("invalid value: integer `1234`, expected a boolean"),
            "invalid value: an integer, expected a boolean"
        );
        assert_eq!(
            redact("unknown variant `s3cr`et`, expected one of `A`, `B`"),
            "an unknown variant, expected one of `A`, `B`"
        );
        assert_eq!(
            redact("invalid type: floating point `1.5`, expected u8"),
            "invalid type: a floating-point number, expected u8"
        );
        assert_eq!(redact("missing field `name`"), "missing field `name`");
    }
}
