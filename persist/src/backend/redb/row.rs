//! A row of the entries table (layout 2): a form byte, the entry's tag (LEB128), then the
//! entry. Form 0 ([`RAW`]) holds the bytes that were put as they are. Form 1 ([`ENVELOPE`])
//! holds an entry in the shape a collection writes, `{"version":V,"key":K,"data":` followed by
//! the rest, where `K` is the JSON string of the key the row's name stands for: the row keeps
//! `V` (LEB128) and the rest only, since its name is the key already (a row of about 300 bytes
//! is a tenth smaller). Reading puts the envelope's head back, byte for byte: an entry is
//! stored in form 1 only when that gives exactly its bytes.

use super::super::lent::{self, Lent};
use crate::collection::key;

/// The bytes as they were put.
const RAW: u8 = 0;
/// A collection's envelope without its head.
const ENVELOPE: u8 = 1;

/// Writes the row of the entry `bytes` stored under `name` with `tag` into `row`.
pub(super) fn encode(name: &str, tag: u64, bytes: &[u8], row: &mut Vec<u8>) {
    row.clear();
    match headless(name, bytes) {
        Some((version, rest)) => {
            row.reserve(rest.len() + 12);
            row.push(ENVELOPE);
            put_varint(row, tag);
            put_varint(row, version);
            row.extend_from_slice(rest);
        }
        None => {
            row.reserve(bytes.len() + 11);
            row.push(RAW);
            put_varint(row, tag);
            row.extend_from_slice(bytes);
        }
    }
}

/// The tag of a row; `None` for a row not in this layout.
pub(super) fn tag(row: &[u8]) -> Option<u64> {
    header(row).map(|(_, tag, _)| tag)
}

/// The entry's bytes of the row stored under `name`; `None` for a row not in this layout.
pub(super) fn entry(name: &str, row: &[u8]) -> Option<Vec<u8>> {
    lend(name, row, |lent| lent.bytes().into_owned())
}

/// What `visit` makes of the entry of the row stored under `name`, lent where it lies (with
/// its head left out when the name is its key); `None` for a row not in this layout.
pub(super) fn lend<R>(name: &str, row: &[u8], visit: impl FnOnce(Lent<'_>) -> R) -> Option<R> {
    let (form, _, after) = header(row)?;
    match form {
        RAW => Some(visit(Lent::whole(after))),
        ENVELOPE => {
            let (version, rest) = get_varint(after)?;
            if key::spells_itself(name) {
                return Some(visit(Lent::headless(name, version, rest)));
            }
            // A name that stands for its key in another spelling: the head is built.
            let key = key::key_of(name)?;
            let mut bytes = Vec::with_capacity(rest.len() + 2 * key.len() + 48);
            lent::put_head(&mut bytes, version, |out| put_quoted(out, &key));
            bytes.extend_from_slice(rest);
            Some(visit(Lent::whole(&bytes)))
        }
        _ => None,
    }
}

/// The version and the rest of `bytes` when they are exactly `{"version":V,"key":K,"data":`
/// (V in its one decimal spelling, K the JSON string of `name`'s key) and a rest.
fn headless<'a>(name: &str, bytes: &'a [u8]) -> Option<(u64, &'a [u8])> {
    let (version, after) = lent::parse_version_and_key(bytes)?;
    let after = match key::spells_itself(name) {
        // The key is the name, and its bytes need no escape in JSON.
        true => after
            .strip_prefix(b"\"")?
            .strip_prefix(name.as_bytes())?
            .strip_prefix(b"\"")?,
        false => {
            let key = key::key_of(name)?;
            let mut quoted = Vec::with_capacity(key.len() + 2);
            put_quoted(&mut quoted, &key);
            after.strip_prefix(quoted.as_slice())?
        }
    };
    let rest = lent::after_data_open(after)?;
    Some((version, rest))
}

/// The form, the tag and what follows them.
fn header(row: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&form, after) = row.split_first()?;
    let (tag, after) = get_varint(after)?;
    Some((form, tag, after))
}

/// `value` in LEB128: seven bits a byte, low first, the high bit set on all but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 number at the start of `bytes` and what follows it; `None` when it is cut short
/// or longer than a `u64`.
fn get_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0_u64;
    for (at, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * at as u32;
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[at + 1..]));
        }
    }
    None
}

/// `text` as a JSON string, as serde_json writes it (the collection writes keys with it).
fn put_quoted(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail, and a string always serializes.
    let _ = serde_json::to_writer(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(key: &str, bytes: &[u8]) -> u8 {
        let name = key::name_of(key);
        let mut row = Vec::new();
        encode(&name, 12_345, bytes, &mut row);
        assert_eq!(tag(&row), Some(12_345));
        assert_eq!(entry(&name, &row).as_deref(), Some(bytes), "{key:?}");
        row[0]
    }

    #[test]
    fn entries_come_back_byte_for_byte_and_the_head_is_left_out_where_it_can_be() {
        let plain = |key: &str| {
            let quoted = serde_json::to_string(key).unwrap();
            format!(r#"{{"version":3,"key":{quoted},"data":{{"n":1}},"crc32c":"00000000"}}"#)
        };
        for key in [
            "alice",
            "Hello World/1",
            "con",
            "é\"\\\u{1}\u{7f}",
            "a~b",
            "-",
        ] {
            assert_eq!(round_trip(key, plain(key).as_bytes()), ENVELOPE, "{key:?}");
        }
        // A hashed name (a long key) does not give its key back: kept whole.
        let long = "k".repeat(400);
        assert_eq!(round_trip(&long, plain(&long).as_bytes()), RAW);
        // Any other shape is kept whole.
        let others = [
            r#"{"version":03,"key":"alice","data":1}"#,
            r#"{"version":3,"key":"bob","data":1}"#,
            r#"{"version":3,"data":1}"#,
            "{\n  \"version\": 3,\n  \"key\": \"alice\",\n  \"data\": 1\n}",
            r#"{"version":99999999999999999999,"key":"alice","data":1}"#,
            "",
            "\u{0}binary frame",
        ];
        for bytes in others {
            assert_eq!(round_trip("alice", bytes.as_bytes()), RAW, "{bytes:?}");
        }
        assert_eq!(
            round_trip(
                "alice",
                br#"{"version":18446744073709551615,"key":"alice","data":1}"#
            ),
            ENVELOPE
        );
    }

    #[test]
    fn tags_of_every_size_and_damaged_rows() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(get_varint(&out), Some((value, &[][..])));
        }
        // Cut short, or longer than a u64.
        assert_eq!(get_varint(&[0x80]), None);
        assert_eq!(get_varint(&[0xff; 10]), None);
        assert_eq!(tag(&[]), None);
        assert_eq!(entry("alice", &[9, 1]), None);
        assert_eq!(entry("alice", &[ENVELOPE, 1, 0x80]), None);
    }
}
