//! Keys and the entry names they map to (FORMAT.md, section 5).
//!
//! A key is any non-empty UTF-8 string of at most [`MAX_KEY_BYTES`] bytes. Its name keeps the
//! bytes `a-z 0-9 _ -` and writes every other byte as `~` and two lowercase hex digits, so that
//! names are ASCII (no Unicode normalisation by a file system can merge two), hold no capital
//! letter (no case-insensitive file system can merge two), no `/ \ . :`, no NUL or control
//! character, and map back to their key exactly. A name that would be a Windows device name
//! (`con`, `aux`, `com1`, ...) has its first letter escaped. A name over [`MAX_NAME_BYTES`]
//! is `~~` and the SHA-256 of the key in hex instead; the key itself is always stored in the
//! entry too.

use sha2::{Digest, Sha256};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest name spelled from its key; longer ones are hashed.
pub(crate) const MAX_NAME_BYTES: usize = 200;

/// Why a key is refused.
pub(crate) fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key cannot be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key is at most {MAX_KEY_BYTES} bytes, this one has {}",
            key.len()
        ));
    }
    Ok(())
}

fn kept(byte: u8) -> bool {
    KEPT[usize::from(byte)]
}

/// [`kept`] of every byte: one load per byte where a listing turns many names into keys.
static KEPT: [bool; 256] = {
    let mut kept = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        kept[byte] = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
        byte += 1;
    }
    kept
};

/// Windows device names, which no file may be called (with any extension).
pub(crate) const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// What every hashed name begins with (and no spelled one).
pub(crate) const HASHED: &str = "~~";

/// Appends `byte` escaped (`~` and two lowercase hex digits) to `name`.
fn push_escaped(name: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    name.push('~');
    name.push(char::from(HEX[usize::from(byte >> 4)]));
    name.push(char::from(HEX[usize::from(byte & 0xf)]));
}

/// `text` with every byte kept or escaped, alone: the spelling of a key, without the device-name
/// rule and the length limit (so the escape of a prefix of a key is a prefix of its spelling).
pub(crate) fn escape(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if kept(byte) {
            name.push(char::from(byte));
        } else {
            push_escaped(&mut name, byte);
        }
    }
    name
}

/// The entry name of a valid key.
pub(crate) fn name_of(key: &str) -> String {
    name_of_borrowed(key).into_owned()
}

/// [`name_of`], borrowing the key where it is its own name (most keys): no copy made.
pub(crate) fn name_of_borrowed(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_NAME_BYTES && spells_itself(key) {
        return std::borrow::Cow::Borrowed(key);
    }
    let name = match RESERVED.contains(&key) {
        true => {
            let mut name = String::with_capacity(key.len() + 2);
            push_escaped(&mut name, key.as_bytes()[0]);
            name.push_str(&key[1..]);
            name
        }
        false => escape(key),
    };
    if name.len() <= MAX_NAME_BYTES {
        return std::borrow::Cow::Owned(name);
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut hashed = String::from(HASHED);
    for byte in digest {
        hashed.push_str(&format!("{byte:02x}"));
    }
    std::borrow::Cow::Owned(hashed)
}

/// The key a name spells, `None` for a hashed name (whose key is read from the entry) or a
/// name no key maps to.
pub(crate) fn key_of(name: &str) -> Option<String> {
    if name.starts_with("~~") {
        return None;
    }
    // Most names escape nothing: such a name is its key, unless it is a device name (whose key
    // is spelled with its first letter escaped).
    if spells_itself(name) {
        return Some(name.to_owned());
    }
    let bytes = name.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'~' {
            let hex = name.get(at + 1..at + 3)?;
            if !hex
                .bytes()
                .all(|digit| matches!(digit, b'0'..=b'9' | b'a'..=b'f'))
            {
                return None;
            }
            key.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else if kept(bytes[at]) {
            key.push(bytes[at]);
            at += 1;
        } else {
            return None;
        }
    }
    let key = String::from_utf8(key).ok()?;
    // Only the one spelling of each key is a name of it.
    (check(&key).is_ok() && name_of(&key) == name).then_some(key)
}

/// [`key_of`] of an owned name: the name itself when it is its key (most are), not copied.
pub(crate) fn into_key(name: String) -> Option<String> {
    match spells_itself(&name) {
        true => Some(name),
        false => key_of(&name),
    }
}

/// Whether `name` is the name of the key spelled the same: every byte kept, and not a device
/// name (whose key is spelled with its first letter escaped).
pub(crate) fn spells_itself(name: &str) -> bool {
    // Every byte looked at, without a branch per byte: names are short, and most are kept.
    let all_kept = name.bytes().fold(true, |all, byte| all & kept(byte));
    !name.is_empty() && all_kept && (name.len() > 4 || !RESERVED.contains(&name))
}

/// Whether `name` is a hashed name.
pub(crate) fn is_hashed(name: &str) -> bool {
    name.starts_with(HASHED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_collide() {
        let keys = [
            "alice",
            "Alice",
            "ALICE",
            "a/b",
            "a\\b",
            ".",
            "..",
            "con",
            "CON",
            "aux.txt",
            "com1",
            "\0",
            "tab\there",
            "caf\u{e9}",
            "cafe\u{301}",
            "~",
            "~7e",
            "a b",
            "日本",
        ];
        let mut names = std::collections::HashSet::new();
        for key in keys {
            let name = name_of(key);
            assert!(names.insert(name.to_lowercase()), "{key:?} -> {name}");
            assert!(name.bytes().all(|b| kept(b) || b == b'~'), "{name}");
            assert!(!RESERVED.contains(&name.as_str()), "{name}");
            assert_eq!(key_of(&name).as_deref(), Some(key), "{name}");
        }
        assert_eq!(name_of("con"), "~63on");
        assert_eq!(name_of("aux.txt"), "aux~2etxt");
    }

    #[test]
    fn long_keys_are_hashed() {
        let key = "K".repeat(100);
        let name = name_of(&key);
        assert!(is_hashed(&name) && name.len() == 66, "{name}");
        assert_eq!(key_of(&name), None);
        assert_eq!(name_of(&"k".repeat(200)).len(), 200);
        assert!(is_hashed(&name_of(&"k".repeat(201))));
    }

    #[test]
    fn only_valid_spellings_are_names() {
        for name in ["A", "a.b", "~", "~4", "~zz", "~41X", "~61", "~4A"] {
            assert_eq!(key_of(name), None, "{name}");
        }
    }

    #[test]
    fn checks() {
        assert!(check("").is_err());
        assert!(check(&"x".repeat(1024)).is_ok());
        assert!(check(&"x".repeat(1025)).is_err());
    }
}
