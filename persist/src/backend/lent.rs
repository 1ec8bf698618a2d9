//! An entry lent by a store to its reader where it lies, without a copy: the bytes that were
//! put, or a collection entry without the head its name implies.

use std::borrow::Cow;

#[cfg(feature = "redb")]
use crate::collection::key;

const VERSION_OPEN: &[u8] = b"{\"version\":";
const KEY_OPEN: &[u8] = b",\"key\":";
const DATA_OPEN: &[u8] = b",\"data\":";

/// An entry as a store holds it, lent to the visitor of [`Backend::read_with`] for as long
/// as the store can lend it (inside a read transaction, say).
///
/// [`Backend::read_with`]: super::Backend::read_with
#[derive(Debug, Clone, Copy)]
pub struct Lent<'a>(Form<'a>);

#[derive(Debug, Clone, Copy)]
enum Form<'a> {
    Whole(&'a [u8]),
    /// `{"version":V,"key":"NAME","data":` followed by `rest`, for a name that is its key
    /// (lent by the stores that leave the head out: redb).
    #[cfg_attr(not(feature = "redb"), allow(dead_code))]
    Headless {
        name: &'a str,
        version: u64,
        rest: &'a [u8],
    },
}

impl<'a> Lent<'a> {
    /// The entry's bytes, exactly as they were put.
    pub fn whole(bytes: &'a [u8]) -> Self {
        Lent(Form::Whole(bytes))
    }

    /// The entry `{"version":V,"key":"NAME","data":` + `rest`, where `name` is a key's name
    /// that spells the key itself ([`key::spells_itself`]): its head is not stored.
    #[cfg(feature = "redb")]
    pub(crate) fn headless(name: &'a str, version: u64, rest: &'a [u8]) -> Self {
        debug_assert!(key::spells_itself(name));
        Lent(Form::Headless {
            name,
            version,
            rest,
        })
    }

    /// The schema version and what follows `"data":` when the entry is a collection's envelope
    /// whose head was left out (its key is the one the name stands for).
    pub(crate) fn parts(&self) -> Option<(u64, &'a [u8])> {
        match self.0 {
            Form::Whole(_) => None,
            Form::Headless { version, rest, .. } => Some((version, rest)),
        }
    }

    /// The entry's bytes: borrowed when they are stored whole, else built.
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        match self.0 {
            Form::Whole(bytes) => Cow::Borrowed(bytes),
            Form::Headless {
                name,
                version,
                rest,
            } => {
                let mut bytes = Vec::with_capacity(self.len());
                put_head(&mut bytes, version, |out| {
                    // The name needs no escape in JSON.
                    out.push(b'"');
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'"');
                });
                bytes.extend_from_slice(rest);
                Cow::Owned(bytes)
            }
        }
    }

    /// The length of [`bytes`](Lent::bytes), without building them.
    pub fn len(&self) -> usize {
        match self.0 {
            Form::Whole(bytes) => bytes.len(),
            Form::Headless {
                name,
                version,
                rest,
            } => {
                let digits = version.checked_ilog10().unwrap_or(0) as usize + 1;
                VERSION_OPEN.len()
                    + digits
                    + KEY_OPEN.len()
                    + name.len()
                    + 2
                    + DATA_OPEN.len()
                    + rest.len()
            }
        }
    }

    /// Whether the entry holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes a collection entry's head, `{"version":V,"key":K,"data":`, where `put_key` writes
/// `K`, the key as a JSON string.
pub(crate) fn put_head(out: &mut Vec<u8>, version: u64, put_key: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(VERSION_OPEN);
    crate::codec::put_decimal(out, version);
    out.extend_from_slice(KEY_OPEN);
    put_key(out);
    out.extend_from_slice(DATA_OPEN);
}

/// The head of the entry in `bytes`, `{"version":V,"key":`, parsed: `V` (in its one decimal
/// spelling: no leading zero, within a u64) and what follows the key's colon.
#[cfg(feature = "redb")]
pub(crate) fn parse_version_and_key(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let after = bytes.strip_prefix(VERSION_OPEN)?;
    let digits = after
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    let (spelled, after) = after.split_at(digits);
    if digits == 0 || (digits > 1 && spelled[0] == b'0') {
        return None;
    }
    let mut version = 0_u64;
    for &digit in spelled {
        version = version
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some((version, after.strip_prefix(KEY_OPEN)?))
}

/// What follows `,"data":` at the start of `bytes`.
#[cfg(feature = "redb")]
pub(crate) fn after_data_open(bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(DATA_OPEN)
}

#[cfg(all(test, feature = "redb"))]
mod tests {
    use super::*;

    #[test]
    fn a_headless_entry_is_built_back_and_measured_without_building() {
        for version in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            let lent = Lent::headless("alice", version, br#"{"n":1}}"#);
            let expected = format!(r#"{{"version":{version},"key":"alice","data":{{"n":1}}}}"#);
            assert_eq!(&*lent.bytes(), expected.as_bytes());
            assert_eq!(lent.len(), expected.len());
            assert_eq!(lent.parts(), Some((version, &br#"{"n":1}}"#[..])));
        }
        let whole = Lent::whole(b"abc");
        assert_eq!(
            (&*whole.bytes(), whole.len(), whole.parts()),
            (&b"abc"[..], 3, None)
        );
        assert!(Lent::whole(b"").is_empty());
    }
}
