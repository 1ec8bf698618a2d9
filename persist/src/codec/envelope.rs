//! The envelope `{"version":N,"data":...}`: written by [`Envelope`], decoded by
//! [`EnvelopeVisitor`] (which deserializes `data` straight into the struct of its version), and
//! looked at without decoding by [`scan`] (for backups, inspection and checksums).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::UTF8_BOM;
use super::chain::{DataSeed, MigrationFailure, in_chain};
use super::checksum::CHECKSUM_KEY;
use crate::Persisted;

/// A value wrapped in the envelope of a version (its type's, but for a newer file kept whole).
pub(crate) struct Envelope<'a, T: ?Sized> {
    pub(crate) version: u64,
    pub(crate) data: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for Envelope<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut envelope = serializer.serialize_struct("Envelope", 2)?;
        envelope.serialize_field("version", &self.version)?;
        envelope.serialize_field("data", self.data)?;
        envelope.end()
    }
}

/// What one pass over a document found.
pub(crate) enum Outcome<T> {
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

fn classify<T: Persisted>(version: u64) -> Result<u32, Outcome<T>> {
    if version > u64::from(T::VERSION) {
        return Err(Outcome::FutureVersion(version));
    }
    match u32::try_from(version) {
        Ok(version) if in_chain::<T>(version) => Ok(version),
        _ => Err(Outcome::UnknownVersion(version)),
    }
}

/// Decodes an envelope into `T`, migrating from the version it holds.
pub(crate) struct EnvelopeVisitor<T> {
    /// The version, when a first pass found it after `data`.
    pub(crate) known_version: Option<u64>,
    /// The file ends with a checksum that was verified; a checksum member anywhere else is an
    /// error.
    pub(crate) checksum_checked: bool,
    pub(crate) marker: PhantomData<T>,
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
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Version => {
                    if seen_version {
                        return Err(de::Error::duplicate_field("version"));
                    }
                    seen_version = true;
                    version = Some(map.next_value_seed(VersionSeed)?);
                }
                Member::Data => {
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
                Member::Checksum if !self.checksum_checked => {
                    // Never skipped: a file that has a checksum is verified or refused.
                    return Err(de::Error::custom(format_args!(
                        "`{CHECKSUM_KEY}` must be the last member of the envelope, as 8 \
                         lowercase hex digits in a string"
                    )));
                }
                Member::Checksum | Member::Other => {
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

/// A member of the envelope, by name.
enum Member {
    Version,
    Data,
    Checksum,
    Other,
}

impl<'de> de::Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl Visitor<'_> for MemberVisitor {
            type Value = Member;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
                Ok(match name {
                    "version" => Member::Version,
                    "data" => Member::Data,
                    CHECKSUM_KEY => Member::Checksum,
                    _ => Member::Other,
                })
            }
        }

        deserializer.deserialize_identifier(MemberVisitor)
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

/// What [`scan`] finds in an envelope without decoding it.
#[derive(Default)]
pub(crate) struct Scan<'b> {
    /// The `version` member, if it is a positive integer.
    pub(crate) version: Option<u64>,
    /// The bytes of the `data` member as they are in the document.
    pub(crate) data: Option<&'b [u8]>,
}

/// The `version` and the raw `data` of the envelope in `bytes`, whatever their order; `None` for
/// a document that is not a JSON object.
pub(crate) fn scan(bytes: &[u8]) -> Option<Scan<'_>> {
    struct Scanner;

    impl<'de> Visitor<'de> for Scanner {
        type Value = Scan<'de>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut scan = Scan::default();
            while let Some(member) = map.next_key::<Member>()? {
                match member {
                    Member::Version => scan.version = Some(map.next_value_seed(VersionSeed)?),
                    Member::Data => {
                        let raw: &'de serde_json::value::RawValue = map.next_value()?;
                        scan.data = Some(raw.get().as_bytes());
                    }
                    Member::Checksum | Member::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(scan)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.deserialize_map(Scanner).ok()
}

/// `data`'s bytes as they are in the file, by parsing the envelope without building anything.
pub(crate) fn raw_data(bytes: &[u8]) -> Option<&[u8]> {
    scan(bytes)?.data
}

/// The version of a file that starts the way persist writes it (`{"version":N,`, compact or
/// indented), or of a frame's header, from the file's first bytes; `None` when the file starts
/// in any other way.
pub(crate) fn leading_version(head: &[u8]) -> Option<u64> {
    if crate::frame::is_framed(head) {
        return crate::frame::header_version(head).map(u64::from);
    }
    // `{"version":N,` as a compact save writes it, or with whitespace between the tokens as a
    // pretty save (or a person) does.
    fn token<'h>(head: &'h [u8], token: &[u8]) -> Option<&'h [u8]> {
        let start = head.iter().take_while(|b| b.is_ascii_whitespace()).count();
        head[start..].strip_prefix(token)
    }
    let head = head.strip_prefix(UTF8_BOM).unwrap_or(head);
    let rest = token(head, b"{")?;
    let rest = token(rest, br#""version""#)?;
    let rest = token(rest, b":")?;
    let rest = token(rest, b"")?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0
        || digits > 19
        || !matches!(token(&rest[digits..], b"")?.first(), Some(b',' | b'}'))
    {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The `version` of the envelope in `bytes` (or of a frame's header), whatever the layout or
/// format; `None` for a document that is not an envelope.
pub(crate) fn stored_version(bytes: &[u8]) -> Option<u64> {
    if crate::frame::is_framed(bytes) {
        return crate::frame::header_version(bytes).map(u64::from);
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    #[cfg(feature = "toml")]
    if let Some(version) = super::toml_doc::stored_version(bytes) {
        return version;
    }
    scan(bytes)?.version
}
