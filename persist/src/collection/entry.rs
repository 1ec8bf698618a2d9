//! The bytes of a collection entry: exactly a state file's (the envelope, then the layers of
//! the collection's [`Options`]), with the key as the envelope's `key` member, right after
//! `version`: `{"version":3,"key":"alice","data":{...}}`. Readers of plain files ignore the
//! member (FORMAT.md, section 1), so `persist show` and the migration kit read entries as they
//! read files.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Options, Persisted, codec, frame};

/// The entry holding `value` under `key`; errors name `path`.
pub(crate) fn encode<T: Persisted>(
    options: &Options,
    value: &T,
    key: &str,
    path: &Path,
) -> Result<Vec<u8>, Error> {
    let style = options.style::<T>();
    let mut plain = codec::encode_to_vec(value, style).map_err(|error| error.at(path))?;
    insert_key(&mut plain, key, style.pretty);
    let layers = options.layers();
    if !layers.any() {
        return Ok(plain);
    }
    frame::seal(plain, T::VERSION, &layers).map_err(|source| Error::Seal {
        path: path.to_owned(),
        source,
    })
}

/// Puts the `key` member after `version`, the envelope's first member: the first comma of
/// the envelope ends it (a version is an integer).
fn insert_key(envelope: &mut Vec<u8>, key: &str, pretty: bool) {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    let member = if pretty {
        format!("\n  \"key\": {quoted},")
    } else {
        format!("\"key\":{quoted},")
    };
    if let Some(comma) = envelope.iter().position(|&byte| byte == b',') {
        envelope.splice(comma + 1..comma + 1, member.into_bytes());
    }
}

/// The value of an entry's bytes, migrated to `T`, and whether the entry holds `key`
/// (`None`: it holds no key member). `path` is called only to name the entry in an error.
pub(crate) fn decode<T: Persisted>(
    options: &Options,
    bytes: &[u8],
    key: &str,
    path: impl Fn() -> PathBuf,
) -> Result<(T, Option<bool>), Error> {
    let envelope = options.unframe(bytes).map_err(|error| error.at(&path()))?;
    let holds = holds_key(&envelope, key);
    let value = codec::decode::<T>(&envelope).map_err(|error| error.at::<T>(&path()))?;
    Ok((value, holds))
}

/// For a migration: `None` if the entry is already at `T`'s version, otherwise its value
/// migrated to `T` and the key it holds. The frame is opened (decrypted, decompressed) once.
pub(crate) fn decode_older<T: Persisted>(
    options: &Options,
    bytes: &[u8],
    path: &Path,
) -> Result<Option<(T, Option<String>)>, Error> {
    let envelope = options.open(path, bytes)?;
    if codec::leading_version(&envelope) == Some(u64::from(T::VERSION)) {
        return Ok(None);
    }
    let key = stored_key(&envelope);
    let value = codec::decode::<T>(&envelope).map_err(|error| error.at::<T>(path))?;
    Ok(Some((value, key)))
}

/// The key an entry holds, without decoding its value.
pub(crate) fn key(options: &Options, bytes: &[u8], path: &Path) -> Result<Option<String>, Error> {
    let envelope = options.open(path, bytes)?;
    Ok(stored_key(&envelope))
}

/// Reads the `key` member where writers put it: `{"version":N,"key":"..."`, whitespace
/// allowed between the tokens. Reads only the string, not the data after it.
fn stored_key(envelope: &[u8]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(key_member(envelope)?);
    String::deserialize(&mut deserializer).ok()
}

/// Whether the entry holds `key` (`None`: it holds no key member), without allocating when the
/// stored key has no escapes.
pub(crate) fn holds_key(envelope: &[u8], key: &str) -> Option<bool> {
    let member = key_member(envelope)?;
    let mut deserializer = serde_json::Deserializer::from_slice(member);
    match <&str>::deserialize(&mut deserializer) {
        Ok(stored) => Some(stored == key),
        // Escaped: compare the unescaped string.
        Err(_) => stored_key(envelope).map(|stored| stored == key),
    }
}

/// The bytes from the `key` member's value on.
fn key_member(envelope: &[u8]) -> Option<&[u8]> {
    let mut rest = envelope;
    let skip_space = |rest: &mut &[u8]| {
        while let [b' ' | b'\n' | b'\r' | b'\t', tail @ ..] = rest {
            *rest = tail;
        }
    };
    let expect = |rest: &mut &[u8], token: &[u8]| -> Option<()> {
        skip_space(rest);
        *rest = rest.strip_prefix(token)?;
        Some(())
    };
    expect(&mut rest, b"{")?;
    expect(&mut rest, b"\"version\"")?;
    expect(&mut rest, b":")?;
    skip_space(&mut rest);
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    rest = &rest[digits..];
    expect(&mut rest, b",")?;
    expect(&mut rest, b"\"key\"")?;
    expect(&mut rest, b":")?;
    skip_space(&mut rest);
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_member_after_the_version() {
        for pretty in [false, true] {
            let mut envelope = if pretty {
                b"{\n  \"version\": 2,\n  \"data\": 1\n}\n".to_vec()
            } else {
                br#"{"version":2,"data":1}"#.to_vec()
            };
            insert_key(&mut envelope, "a \"b\"\n", pretty);
            let text = String::from_utf8(envelope.clone()).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["key"], "a \"b\"\n");
            assert_eq!(parsed["version"], 2);
            assert_eq!(stored_key(&envelope).as_deref(), Some("a \"b\"\n"));
            assert_eq!(holds_key(&envelope, "a \"b\"\n"), Some(true));
            assert_eq!(holds_key(&envelope, "a"), Some(false));
        }
        assert_eq!(stored_key(br#"{"version":2,"data":1}"#), None);
    }
}
