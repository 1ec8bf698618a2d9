//! The bytes of a collection entry: exactly a state file's (the envelope, then the layers of
//! the collection's [`Options`](crate::Options)), with the key as the envelope's `key` member, right after
//! `version`: `{"version":3,"key":"alice","data":{...}}`. Readers of plain files ignore the
//! member (FORMAT.md, section 1), so `persist show` and the migration kit read entries as they
//! read files.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::Settings;
use crate::{Error, Persisted, codec};

/// The entry holding `value` under `key`, encoded in a buffer of `capacity` bytes to start
/// with (the length of a similar entry saves the buffer's growing); errors name `path()`.
pub(crate) fn encode<T: Persisted>(
    settings: &Settings,
    value: &T,
    key: &str,
    capacity: usize,
    path: impl Fn() -> PathBuf,
) -> Result<Vec<u8>, Error> {
    let mut plain = Vec::with_capacity(capacity);
    encode_plain(settings, value, key, &mut plain, &path)?;
    settings.seal(plain, T::VERSION, path)
}

/// The envelope of `value` under `key`, before any layer, written at the end of `out`.
fn encode_plain<T: Persisted>(
    settings: &Settings,
    value: &T,
    key: &str,
    out: &mut Vec<u8>,
    path: impl Fn() -> PathBuf,
) -> Result<(), Error> {
    codec::encode_entry(value, key, out, settings.style::<T>()).map_err(|error| error.at(&path()))
}

/// The entries of a batch, encoded into a few blocks of [`Arena::BLOCK`] bytes rather than a
/// buffer each. Blocks stay below the size from which the allocator maps memory of its own
/// (128 KiB by default in glibc): freeing such a mapping raises glibc's threshold for the rest of
/// the process, which changed how unrelated later work (a listing) allocated.
#[derive(Default)]
pub(crate) struct Arena {
    blocks: Vec<Vec<u8>>,
    /// Bytes of every entry.
    len: usize,
    /// Bytes of the last entry: the room the next one is expected to need.
    last: usize,
}

/// Where an entry lies in an [`Arena`].
#[derive(Clone)]
pub(crate) struct Slot {
    block: usize,
    pub(crate) range: std::ops::Range<usize>,
}

impl Arena {
    const BLOCK: usize = 32 * 1024;

    /// [`encode`] of `value` under `key` at the end of the arena, in a block with room for
    /// about `expected` bytes (or as many as the last entry took, if more).
    pub(crate) fn append<T: Persisted>(
        &mut self,
        settings: &Settings,
        value: &T,
        key: &str,
        expected: usize,
        path: impl Fn() -> PathBuf,
    ) -> Result<Slot, Error> {
        let expected = expected.max(self.last);
        let room = expected + expected / 2;
        if self
            .blocks
            .last()
            .is_none_or(|block| block.capacity() - block.len() < room)
        {
            self.blocks.push(Vec::with_capacity(Self::BLOCK.max(room)));
        }
        let block = self.blocks.len() - 1;
        let buffer = &mut self.blocks[block];
        let start = buffer.len();
        // On an error the batch, and the arena with it, is given up.
        if settings.layers().any() {
            // The layers work on the whole envelope: sealed on its own, then kept.
            let sealed = encode(settings, value, key, expected, path)?;
            buffer.extend_from_slice(&sealed);
        } else {
            encode_plain(settings, value, key, buffer, path)?;
        }
        self.last = buffer.len() - start;
        self.len += self.last;
        Ok(Slot {
            block,
            range: start..buffer.len(),
        })
    }

    /// The bytes of the entry at `slot`.
    pub(crate) fn get(&self, slot: &Slot) -> &[u8] {
        &self.blocks[slot.block][slot.range.clone()]
    }

    /// Bytes of every entry.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The value of an entry's bytes, migrated to `T`, and whether the entry holds `key` (an
/// entry without a key member holds none). `path` is called only to name the entry in an
/// error.
pub(crate) fn decode<T: Persisted>(
    settings: &Settings,
    bytes: &[u8],
    key: &str,
    path: impl Fn() -> PathBuf,
) -> Result<(T, bool), Error> {
    let envelope = settings.unframe(bytes).map_err(|error| error.at(&path()))?;
    // A TOML entry's key is read in the pass that reads its value.
    #[cfg(feature = "toml")]
    if let Some(decoded) = codec::decode_toml_entry::<T>(&envelope) {
        let (value, stored) = decoded.map_err(|error| error.at::<T>(&path()))?;
        return Ok((value, stored.as_deref() == Some(key)));
    }
    let holds = holds_key(&envelope, key);
    let value = codec::decode::<T>(&envelope).map_err(|error| error.at::<T>(&path()))?;
    Ok((value, holds))
}

/// For a migration: `None` if the entry is already at `T`'s version, otherwise its value
/// migrated to `T` and the key it holds. The frame is opened (decrypted, decompressed) once.
pub(crate) fn decode_older<T: Persisted>(
    settings: &Settings,
    bytes: &[u8],
    path: &Path,
) -> Result<Option<(T, Option<String>)>, Error> {
    let envelope = settings.open(path, bytes)?;
    // (A TOML entry has no leading version: its version is read from the document.)
    let version = codec::leading_version(&envelope).or_else(|| codec::stored_version(&envelope));
    if version == Some(u64::from(T::VERSION)) {
        return Ok(None);
    }
    #[cfg(feature = "toml")]
    if let Some(decoded) = codec::decode_toml_entry::<T>(&envelope) {
        return decoded.map(Some).map_err(|error| error.at::<T>(path));
    }
    let key = stored_key(&envelope);
    let value = codec::decode::<T>(&envelope).map_err(|error| error.at::<T>(path))?;
    Ok(Some((value, key)))
}

/// The key an entry holds, without decoding its value.
pub(crate) fn key(settings: &Settings, bytes: &[u8], path: &Path) -> Result<Option<String>, Error> {
    let envelope = settings.open(path, bytes)?;
    Ok(stored_key(&envelope))
}

/// The `key` member of an entry: where writers put it (`{"version":N,"key":"..."`, whitespace
/// allowed between the tokens), read without the data after it; anywhere else among the
/// envelope's members otherwise (a whole pass over the document, for entries persist did not
/// write). `None` when there is none, or more than one where writers do not put it.
pub(crate) fn stored_key(envelope: &[u8]) -> Option<String> {
    match key_member(envelope) {
        Some(member) => {
            let mut deserializer = serde_json::Deserializer::from_slice(member);
            String::deserialize(&mut deserializer).ok()
        }
        None => {
            #[cfg(feature = "toml")]
            if let Some(key) = codec::toml_doc::stored_key(envelope) {
                return Some(key);
            }
            key_anywhere(envelope)
        }
    }
}

/// Whether the entry holds `key`: `false` when it holds another, or none. Allocates nothing
/// when the stored key is where writers put it and has no escapes.
pub(crate) fn holds_key(envelope: &[u8], key: &str) -> bool {
    if let Some(member) = key_member(envelope) {
        let mut deserializer = serde_json::Deserializer::from_slice(member);
        if let Ok(stored) = <&str>::deserialize(&mut deserializer) {
            return stored == key;
        }
    }
    // Escaped, or elsewhere in the envelope: compare the unescaped string.
    stored_key(envelope).is_some_and(|stored| stored == key)
}

/// The one `key` member among the envelope's top-level members, wherever it stands.
fn key_anywhere(envelope: &[u8]) -> Option<String> {
    use serde::de::{IgnoredAny, MapAccess, Visitor};

    struct Members;

    impl<'de> Visitor<'de> for Members {
        type Value = Option<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut key = None;
            let mut twice = false;
            while let Some(member) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if member == "key" {
                    let value = map.next_value::<String>()?;
                    twice |= key.replace(value).is_some();
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(if twice { None } else { key })
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(envelope);
    serde::Deserializer::deserialize_map(&mut deserializer, Members)
        .ok()
        .flatten()
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

    /// Any value, as the data of an envelope of version 2.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Two<V>(V);

    impl<V: serde::Serialize + serde::de::DeserializeOwned> Persisted for Two<V> {
        const VERSION: u32 = 2;
        type Previous = crate::Origin;
        fn migrate(previous: crate::Origin) -> Result<Self, crate::BoxError> {
            match previous {}
        }
    }

    #[test]
    fn the_key_is_the_member_after_the_version() {
        for pretty in [false, true] {
            let style = codec::Style {
                checksum: false,
                pretty,
                format: crate::Format::Json,
            };
            let mut envelope = Vec::new();
            codec::encode_entry(&Two(1), "a \"b\"\n", &mut envelope, style).unwrap();
            let text = String::from_utf8(envelope.clone()).unwrap();
            let expected = if pretty {
                "{\n  \"version\": 2,\n  \"key\": \"a \\\"b\\\"\\n\",\n  \"data\": 1\n}\n"
            } else {
                r#"{"version":2,"key":"a \"b\"\n","data":1}"#
            };
            assert_eq!(text, expected);
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["key"], "a \"b\"\n");
            assert_eq!(parsed["version"], 2);
            assert_eq!(stored_key(&envelope).as_deref(), Some("a \"b\"\n"));
            assert!(holds_key(&envelope, "a \"b\"\n"));
            assert!(!holds_key(&envelope, "a"));
        }
        assert_eq!(stored_key(br#"{"version":2,"data":1}"#), None);
        assert!(!holds_key(br#"{"version":2,"data":1}"#, "a"));
    }

    #[test]
    fn a_batch_arena_holds_each_entry_as_encode_writes_it() {
        let settings = Settings::DEFAULT;
        let mut arena = Arena::default();
        // Small and large entries, one larger than a block, and a wrong size expected.
        let sizes = [10, 300, 5, 40_000, 2, 32 * 1024, 1, 70_000, 17];
        let mut slots = Vec::new();
        for (at, &size) in sizes.iter().enumerate() {
            let value = Two("x".repeat(size));
            let key = format!("key-{at}");
            let slot = arena
                .append(&settings, &value, &key, 100, PathBuf::new)
                .unwrap();
            slots.push((
                slot,
                encode(&settings, &value, &key, 0, PathBuf::new).unwrap(),
            ));
        }
        for (slot, expected) in &slots {
            assert_eq!(arena.get(slot), expected.as_slice());
        }
        let total: usize = slots.iter().map(|(_, bytes)| bytes.len()).sum();
        assert_eq!(arena.len(), total);
        // Blocks stay below glibc's default mapping threshold unless one entry is larger.
        assert!(arena.blocks.len() > 1);
        for block in &arena.blocks {
            assert!(block.len() <= 128 * 1024, "{}", block.len());
        }
    }

    #[test]
    fn the_key_is_found_wherever_it_stands() {
        let last = br#"{"version":2,"data":{"key":"inner"},"key":"alice"}"#;
        assert_eq!(stored_key(last).as_deref(), Some("alice"));
        assert!(holds_key(last, "alice"));
        assert!(!holds_key(last, "inner"));
        let twice = br#"{"version":2,"data":1,"key":"alice","key":"bob"}"#;
        assert_eq!(stored_key(twice), None);
        assert!(!holds_key(twice, "alice"));
    }
}
