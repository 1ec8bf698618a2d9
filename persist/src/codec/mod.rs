//! The sans-IO core: state value <-> bytes of the on-disk envelope, with the migration walk.
//!
//! A file is `{"version":N,"data":...}`. Loading parses it in one pass: the envelope visitor
//! reads `version`, then deserializes `data` straight into the struct of THAT version and steps
//! it forward through the chain with each type's `migrate`. Nothing goes through
//! `serde_json::Value`. Only a hand-edited file that puts `data` before `version` takes a
//! second pass, and only a failing load (or save) runs again with field-path tracking, so the
//! common path pays for neither.
//!
//! - [`envelope`]: the envelope's serializer, decoder and scanner;
//! - [`chain`]: the walk down the migration chain;
//! - [`checksum`]: the optional CRC-32C member;
//! - [`finite`]: the refusal of floats JSON cannot hold, at no cost to values without `null`;
//! - [`redact`]: values from the file kept out of messages.
//!
//! Below it sits the frame ([`crate::frame`]), which the codec asks for a framed file's version;
//! the frame never calls back.

mod chain;
mod checksum;
mod envelope;
mod finite;
mod redact;
#[cfg(feature = "simd")]
mod simd;
#[cfg(test)]
mod tests;
#[cfg(feature = "toml")]
pub(crate) mod toml_doc;

use std::borrow::Cow;
use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;
use serde::de::Deserializer;

pub(crate) use self::chain::MigrationFailure;
pub(crate) use self::chain::chain_upcasts;
#[cfg(feature = "testing")]
pub(crate) use self::chain::{VisitVersion, walk_chain};
pub(crate) use self::chain::{chain_versions, unversioned_root};
use self::chain::{deserialize_checked, validated};
pub(crate) use self::chain::{has_older, in_chain};
pub(crate) use self::checksum::verify_checksum;
use self::checksum::{CHECKSUM_KEY, Crc32cWriter};
use self::envelope::{Envelope, EnvelopeVisitor, Outcome};
pub(crate) use self::envelope::{leading_version, raw_data, scan, stored_version};
use self::finite::{Compact, FloatScan, Indented, NullWatch, check_floats};
pub(crate) use self::redact::redact;
use crate::frame::{self, FrameError};
use crate::key::Key;
use crate::{Error, Format, Persisted};

pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a value could not be written.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The writer failed.
    Io(io::Error),
    /// serde refused the value (a non-finite float, a map with non-string keys, a failing
    /// `Serialize` impl); `field` is where, such as `data.samples[3]`.
    Value {
        field: Option<String>,
        source: serde_json::Error,
    },
}

impl EncodeError {
    /// The error of a save of `path` that failed this way (a failed writer is a failed write).
    pub(crate) fn at(self, path: &Path) -> Error {
        match self {
            EncodeError::Io(source) => Error::Io {
                path: path.to_owned(),
                op: crate::IoOp::Write,
                source,
            },
            EncodeError::Value { field, source } => Error::Serialize {
                path: path.to_owned(),
                field,
                source,
            },
        }
    }
}

/// How a save lays the envelope out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Style {
    /// End with the CRC-32C of the exact bytes of `data`.
    pub(crate) checksum: bool,
    /// Indented JSON, two spaces per level, and a final newline (TOML: arrays one element
    /// per line).
    pub(crate) pretty: bool,
    /// The text written.
    pub(crate) format: Format,
}

/// Writes `value` as the envelope of its version. With a checksum, the CRC-32C of the exact
/// bytes of `data` follows as the last member: `{"version":3,"data":{...},"crc32c":"1a2b3c4d"}`.
/// A value serde_json would write but could not read back (a NaN or an infinity) is refused.
pub(crate) fn encode<T: Persisted, W: io::Write>(
    value: &T,
    writer: W,
    style: Style,
) -> Result<(), EncodeError> {
    encode_as(value, u64::from(T::VERSION), None, writer, style)
}

/// [`encode`] of a collection entry: the envelope with the `key` member after `version`,
/// `{"version":3,"key":"alice","data":{...}}`.
#[cfg(feature = "collection")]
pub(crate) fn encode_entry<T: Persisted, W: io::Write>(
    value: &T,
    key: &str,
    writer: W,
    style: Style,
) -> Result<(), EncodeError> {
    encode_as(value, u64::from(T::VERSION), Some(key), writer, style)
}

/// [`encode`] of any value as the data of an envelope of `version` (with a `key` member when
/// given): what a save writes at a version other than its type's (a newer file's data kept
/// whole).
pub(crate) fn encode_as<T: Serialize + ?Sized, W: io::Write>(
    value: &T,
    version: u64,
    key: Option<&str>,
    writer: W,
    style: Style,
) -> Result<(), EncodeError> {
    #[cfg(feature = "toml")]
    if style.format == Format::Toml {
        let mut writer = writer;
        let bytes = toml_doc::encode_as(value, version, key, style, None, &[])?;
        return writer.write_all(&bytes).map_err(EncodeError::Io);
    }
    let wrote_null = Cell::new(false);
    let head = Head { version, key };
    let written = if style.pretty {
        write_envelope(value, head, writer, style, &wrote_null, Indented::at)
    } else {
        write_envelope(value, head, writer, style, &wrote_null, |_| Compact)
    };
    // A NaN or an infinity comes out as `null`: only a value that wrote one can hold one.
    written
        .and_then(|()| match wrote_null.get() {
            true => check_floats(value),
            false => Ok(()),
        })
        .map_err(|error| {
            if error.is_io() {
                EncodeError::Io(error.into())
            } else {
                EncodeError::Value {
                    field: field_of_value(value, version),
                    source: error,
                }
            }
        })
}

/// [`encode`] into memory.
pub(crate) fn encode_to_vec<T: Persisted>(value: &T, style: Style) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::new();
    encode(value, &mut bytes, style)?;
    Ok(bytes)
}

/// [`encode_to_vec`] for a save that replaces a file whose bytes (unframed) are `base`: in
/// TOML, written over `base`'s document when it is one, so that a person's comments and layout
/// stay.
pub(crate) fn encode_over<T: Persisted>(
    value: &T,
    style: Style,
    base: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    #[cfg(feature = "toml")]
    if style.format == Format::Toml {
        // A byte-order mark an editor put first stays first.
        let marked = base.is_some_and(|base| base.starts_with(UTF8_BOM));
        let base = base
            .map(|base| base.strip_prefix(UTF8_BOM).unwrap_or(base))
            .and_then(|base| std::str::from_utf8(base).ok());
        let bytes =
            toml_doc::encode_as(value, u64::from(T::VERSION), None, style, base, T::RENAMED)?;
        return Ok(match marked {
            true => [UTF8_BOM, &bytes].concat(),
            false => bytes,
        });
    }
    let _ = base;
    encode_to_vec(value, style)
}

/// The fixed text of an envelope in one layout.
struct Punctuation {
    open: &'static [u8],
    key_open: &'static [u8],
    data_open: &'static [u8],
    member: &'static str,
    colon: &'static str,
    close: &'static [u8],
}

impl Punctuation {
    const COMPACT: Punctuation = Punctuation {
        open: b"{\"version\":",
        key_open: b",\"key\":",
        data_open: b",\"data\":",
        member: ",",
        colon: ":",
        close: b"}",
    };
    const PRETTY: Punctuation = Punctuation {
        open: b"{\n  \"version\": ",
        key_open: b",\n  \"key\": ",
        data_open: b",\n  \"data\": ",
        member: ",\n  ",
        colon: ": ",
        close: b"\n}\n",
    };
}

/// The members an envelope writes before `data`.
#[derive(Clone, Copy)]
struct Head<'k> {
    version: u64,
    key: Option<&'k str>,
}

/// The envelope in the layout `L` (`layout(level)` makes one starting at that depth). The
/// members around the data are written as they are, not through the serializer: what serde_json
/// would write for them, without escaping their names on every save.
fn write_envelope<'n, T, W, L>(
    value: &T,
    head: Head<'_>,
    mut writer: W,
    style: Style,
    wrote_null: &'n Cell<bool>,
    layout: impl Fn(usize) -> L,
) -> Result<(), serde_json::Error>
where
    T: Serialize + ?Sized,
    W: io::Write,
    NullWatch<'n, L>: serde_json::ser::Formatter,
{
    let Punctuation {
        open,
        key_open,
        data_open,
        member,
        colon,
        close,
    } = match style.pretty {
        true => Punctuation::PRETTY,
        false => Punctuation::COMPACT,
    };
    writer.write_all(open).map_err(serde_json::Error::io)?;
    let mut digits = [0_u8; 20];
    writer
        .write_all(decimal(&mut digits, head.version))
        .map_err(serde_json::Error::io)?;
    if let Some(key) = head.key {
        writer.write_all(key_open).map_err(serde_json::Error::io)?;
        serde_json::to_writer(&mut writer, key)?;
    }
    writer.write_all(data_open).map_err(serde_json::Error::io)?;
    // The data one level in, as it stands inside the envelope.
    let formatter = NullWatch {
        wrote_null,
        layout: layout(1),
    };
    if style.checksum {
        let mut hashing = Crc32cWriter::new(&mut writer);
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut hashing,
            formatter,
        ))?;
        let crc = hashing.finish().map_err(serde_json::Error::io)?;
        write!(writer, "{member}\"{CHECKSUM_KEY}\"{colon}\"{crc:08x}\"")
            .map_err(serde_json::Error::io)?;
    } else {
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut writer,
            formatter,
        ))?;
    }
    writer.write_all(close).map_err(serde_json::Error::io)
}

/// `value` in decimal digits, without the formatting machinery.
#[cfg(feature = "collection")]
pub(crate) fn put_decimal(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(decimal(&mut [0_u8; 20], value));
}

/// `value` in decimal digits, written at the end of `digits`.
fn decimal(digits: &mut [u8; 20], value: u64) -> &[u8] {
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Walks the value again, tracking the position, to name the field a serialization error is
/// at: serde_json's own refusals first, then the floats. Only failing saves pay for it.
fn field_of_value<T: Serialize + ?Sized>(value: &T, version: u64) -> Option<String> {
    let envelope = Envelope {
        version,
        data: value,
    };
    let mut serializer = serde_json::Serializer::new(io::sink());
    let error = serde_path_to_error::serialize(&envelope, &mut serializer)
        .err()
        .or_else(|| serde_path_to_error::serialize(&envelope, FloatScan).err())?;
    known_path(error.path())
}

/// The envelope inside a file's bytes: the bytes themselves, or what their frame holds
/// (decrypted with `key`, decompressed to at most `limit` bytes). An unencrypted frame's header
/// is not authenticated, so the version it tells must agree with the envelope's.
pub(crate) fn unframe<'b>(
    bytes: &'b [u8],
    key: Option<&Key>,
    limit: u64,
) -> Result<Cow<'b, [u8]>, FrameError> {
    let Some(frame::Opened { header, envelope }) = frame::open(bytes, key, limit)? else {
        return Ok(Cow::Borrowed(bytes));
    };
    let inner = leading_version(&envelope);
    // A TOML envelope has no leading version: its `persist-version` is read from the document.
    #[cfg(feature = "toml")]
    let inner = inner.or_else(|| toml_doc::stored_version(&envelope).flatten());
    if inner.is_some_and(|inner| inner != u64::from(header.version)) {
        return Err(FrameError::Corrupt(format!(
            "the frame header says schema version {} but the data inside says {}",
            header.version,
            inner.unwrap_or_default()
        )));
    }
    Ok(envelope)
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

impl DecodeError {
    pub(crate) fn at<T: Persisted>(self, path: &Path) -> Error {
        let path = path.to_owned();
        match self {
            corrupt @ DecodeError::Corrupt { .. } => corrupt.at_untyped(&path),
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

    /// [`DecodeError::at`] for a check made without the program's types (a checksum, the JSON
    /// syntax): only `Corrupt` comes from those; anything else is reported as damage too.
    pub(crate) fn at_untyped(self, path: &Path) -> Error {
        match self {
            DecodeError::Corrupt {
                line,
                column,
                field,
                reason,
            } => Error::Corrupt {
                path: path.to_owned(),
                line,
                column,
                field,
                reason,
            },
            other => Error::Corrupt {
                path: path.to_owned(),
                line: 0,
                column: 0,
                field: None,
                reason: format!("{other:?}"),
            },
        }
    }
}

/// Which parser turns a document into serde calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parser {
    /// serde_json, always.
    Json,
    /// sonic-rs where it agrees with serde_json, serde_json elsewhere (see `simd.rs`).
    #[cfg(feature = "simd")]
    Simd,
}

impl Parser {
    /// The parser loads use: sonic-rs with the `simd` feature, serde_json without.
    pub(crate) const DEFAULT: Parser = {
        #[cfg(feature = "simd")]
        {
            Parser::Simd
        }
        #[cfg(not(feature = "simd"))]
        {
            Parser::Json
        }
    };
}

/// Refuses a document (its byte-order mark stripped) that is empty or holds nothing but white
/// space, saying so: a file a crash or a full disk left empty, or one created by hand.
pub(crate) fn refuse_blank(bytes: &[u8]) -> Result<(), DecodeError> {
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    Err(DecodeError::Corrupt {
        line: 0,
        column: 0,
        field: None,
        reason: if bytes.is_empty() {
            "the file is empty".to_owned()
        } else {
            "the file holds nothing but whitespace".to_owned()
        },
    })
}

/// Reads the envelope in `bytes` and returns the value migrated to `T`.
pub(crate) fn decode<T: Persisted>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, Parser::DEFAULT)
}

/// [`decode`] of a collection entry written in TOML, with the key it holds (`persist-key`),
/// read in the same pass: `None` when the bytes are not a TOML envelope (the caller reads the
/// key where a JSON entry holds it, and decodes).
#[cfg(all(feature = "toml", feature = "collection"))]
pub(crate) fn decode_toml_entry<T: Persisted>(
    bytes: &[u8],
) -> Option<Result<(T, Option<String>), DecodeError>> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    // A blank entry is left to `decode`, which says so.
    refuse_blank(bytes).ok()?;
    toml_doc::decode_keyed::<T>(bytes)
}

/// [`decode`] with the given parser (the fuzz target compares both).
pub(crate) fn decode_with<T: Persisted>(bytes: &[u8], parser: Parser) -> Result<T, DecodeError> {
    // Editors on Windows add a byte-order mark to files a user edits by hand.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    refuse_blank(bytes)?;
    #[cfg(feature = "toml")]
    if let Some(decoded) = toml_doc::decode_keyed::<T>(bytes) {
        return decoded.map(|(value, _)| value);
    }
    if parser == Parser::Json
        && let Some(value) = decode_compact::<T>(bytes)
    {
        return validated(T::VERSION, value).map_err(DecodeError::Migration);
    }
    let checksum_checked = verify_checksum(bytes)?;
    let pass = Pass::Envelope {
        known_version: None,
        checksum_checked,
    };
    finish(parse::<T>(bytes, pass, parser)?, bytes, parser)
}

/// The value sonic-rs alone decodes from `bytes` in one pass over the envelope, or `None`
/// where it declines (the screen refuses the document, sonic-rs reports an error) or the pass
/// does not end in a value (another version, a migration's error): the tests compare each
/// such value with serde_json's, so that the parsers are compared where sonic-rs answers, not
/// only where both fall back to serde_json.
#[cfg(feature = "simd")]
pub(crate) fn decode_simd_only<T: Persisted>(bytes: &[u8]) -> Option<T> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let checksum_checked = verify_checksum(bytes).ok()?;
    let pass = Pass::Envelope {
        known_version: None,
        checksum_checked,
    };
    match simd::parse::<T>(bytes, pass)? {
        Outcome::Decoded(Ok(value)) => Some(value),
        _ => None,
    }
}

/// The envelope persist writes, compact and at `T`'s version — `{"version":N,"data":VALUE}`,
/// or a collection entry's `{"version":N,"key":"K","data":VALUE}` (a key without escapes or
/// control characters), nothing around it — read by parsing the value where it lies, without
/// the envelope's visitor (which takes members in any order, checksums and unknown members,
/// and costs a good part of a small record's decode): `None` for any other shape (another order or
/// version, whitespace, a checksum or other member after the value, a value that does not
/// parse), which [`decode_with`] reads the general way (and reports). The value parsing alone
/// means the whole is that envelope: what lies between the two fixed ends is one JSON value.
fn decode_compact<T: Persisted>(bytes: &[u8]) -> Option<T> {
    let rest = bytes.strip_prefix(b"{\"version\":")?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let (version, rest) = rest.split_at(digits);
    // JSON numbers have no leading zeros.
    if version.len() > 1 && version[0] == b'0' {
        return None;
    }
    let version: u32 = std::str::from_utf8(version).ok()?.parse().ok()?;
    if version != T::VERSION {
        return None;
    }
    let rest = match rest.strip_prefix(b",\"key\":") {
        Some(key) => after_plain_string(key)?,
        None => rest,
    };
    compact_value(rest.strip_prefix(b",\"data\":")?)
}

/// [`decode`] of a collection entry `{"version":V,"key":K,"data":` + `rest` whose head is not
/// at hand (a store kept only `V` and `rest`, and the key is the one asked for) where the fast
/// way of [`decode_compact`] gives its value: `None` where the entry must be built and decoded
/// the general way (another version, another shape, the `simd` parser).
#[cfg(feature = "collection")]
pub(crate) fn decode_headless<T: Persisted>(version: u64, rest: &[u8]) -> Option<T> {
    if Parser::DEFAULT != Parser::Json || version != u64::from(T::VERSION) {
        return None;
    }
    compact_value(rest)
}

/// The value of the envelope whose `"data":` is followed by `rest`, parsed where it lies,
/// when `rest` is the value and the envelope's closing brace alone.
fn compact_value<T: Persisted>(rest: &[u8]) -> Option<T> {
    let value = rest.strip_suffix(b"}")?;
    // A checksum member is a string, and last: the general way verifies it.
    if value.ends_with(b"\"") {
        return None;
    }
    // Parsed alone, the value has one level of nesting more to spend than inside the
    // envelope (serde_json allows 128): only a value with fewer than 127 opening brackets
    // (counted in strings too) is read this way, as it cannot nest 127 levels deep, so that
    // the same documents pass and fail.
    if value.len() >= 2 * 127 && openings(value) >= 127 {
        return None;
    }
    serde_json::from_slice::<T>(value).ok()
}

/// What follows the JSON string at the start of `bytes`, when it is a string serde_json reads
/// as it is: valid UTF-8 without escapes or control characters (anything else is left to the
/// general way).
fn after_plain_string(bytes: &[u8]) -> Option<&[u8]> {
    let text = bytes.strip_prefix(b"\"")?;
    let end = text
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
    if text[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&text[..end]).ok()?;
    Some(&text[end + 1..])
}

/// How many bytes of `value` are `[` or `{` (a bound on its nesting). `[` is 0x5B and `{`
/// 0x7B, the only bytes that are `{` with the 0x20 bit set; counted in bytes per chunk of 255,
/// which the compiler turns into vector instructions.
fn openings(value: &[u8]) -> usize {
    value
        .chunks(255)
        .map(|chunk| {
            let count = chunk
                .iter()
                .fold(0_u8, |count, &byte| count + u8::from(byte | 0x20 == b'{'));
            usize::from(count)
        })
        .sum()
}

/// Turns the outcome of a pass into the value, running the second pass a file may need.
fn finish<T: Persisted>(
    outcome: Outcome<T>,
    bytes: &[u8],
    parser: Parser,
) -> Result<T, DecodeError> {
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
            finish(parse::<T>(bytes, pass, parser)?, bytes, parser)
        }
        Outcome::NotEnvelope => match unversioned_root::<T>() {
            // An unversioned pass only ever returns `Decoded`.
            Some(root) => finish(
                parse::<T>(bytes, Pass::Unversioned { root }, parser)?,
                bytes,
                parser,
            ),
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

fn parse<T: Persisted>(
    bytes: &[u8],
    pass: Pass,
    parser: Parser,
) -> Result<Outcome<T>, DecodeError> {
    #[cfg(feature = "simd")]
    if parser == Parser::Simd
        && let Some(outcome) = simd::parse::<T>(bytes, pass)
    {
        return Ok(outcome);
    }
    let _ = parser;
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
        Err(_) => known_path(&track.path()),
    }
}

/// `path` as `data.servers[2].port`, up to its first segment serde_path_to_error could not name
/// (which it would print as `?`); `None` when not even the first is known.
fn known_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;

    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    (!text.is_empty()).then_some(text)
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
            deserialize_checked::<T, D>(root, deserializer).map(Outcome::Decoded)
        }
    }
}

pub(crate) fn corrupt(error: serde_json::Error, field: Option<String>) -> DecodeError {
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
