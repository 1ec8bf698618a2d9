//! The register of the files persist creates beside a state file: one place that spells each
//! name and recognises it again. Removal, backup listing, the temporary-file sweep, the
//! collection's listing and `persist verify` all ask this module what a name is.
//!
//! Beside the state file `<name>`:
//!
//! | kind | name |
//! |---|---|
//! | temporary file of a save | `.<name>.<12 alphanumerics>.tmp` |
//! | lock file | `<name>.lock` |
//! | backup of version N | `<name>.v<N>.bak` |
//! | journal snapshot covering N records | `<name>.snapshot.<N>` |
//! | copy of another program's version kept by earlier versions of `Live` | `<name>.conflict-<unix ms>` |
//! | value `Live` could not save | `<name>.unsaved-<unix ms>` |
//! | damaged file a save replaced, kept aside | `<name>.corrupt-<unix ms>` |
//! | an earlier good file, the Nth save's (`Options::generations`) | `<name>.gen-<N>` |
//!
//! In a transaction's root: the staging directory `.persist-txn` (staged files
//! `<32 hex>-<8 digits>`, the record `commit`) and its lock `.persist-txn.lock`; in an
//! application directory: `instance.lock`.

use std::ffi::{OsStr, OsString};

/// Suffix of the temporary files a save creates.
const TEMP_SUFFIX: &str = ".tmp";

/// Length of the random part of a temporary file's name: 62^12, about 2^71 names.
pub(crate) const TEMP_RANDOM_CHARS: usize = 12;

/// The staging directory of transactions under their root.
pub(crate) const TXN_STAGING: &str = ".persist-txn";

/// The lock file of transactions on a root.
pub(crate) const TXN_LOCK: &str = ".persist-txn.lock";

/// The commit record in the staging directory.
pub(crate) const TXN_RECORD: &str = "commit";

/// The instance lock of an application directory.
pub(crate) const INSTANCE_LOCK: &str = "instance.lock";

/// A file persist keeps beside a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Sibling {
    /// A save's temporary file (`.<name>.<random>.tmp`).
    Temp,
    /// The lock file of read-modify-writes (`<name>.lock`).
    Lock,
    /// A backup of another schema version (`<name>.v<N>.bak`).
    Backup(u64),
    /// A journal snapshot covering the first N records (`<name>.snapshot.<N>`).
    Snapshot(u64),
    /// Another program's version of the file kept aside by earlier versions of `Live`
    /// (`<name>.conflict-<ms>`).
    Conflict(u64),
    /// A value `Live` could not save (`<name>.unsaved-<ms>`).
    Unsaved(u64),
    /// A file persist could not read, kept aside by the save that replaced it
    /// (`<name>.corrupt-<ms>`).
    Corrupt(u64),
    /// An earlier good file, numbered in the order the saves replaced them
    /// (`<name>.gen-<N>`).
    Generation(u64),
}

/// What persist made a file for, told from its path alone: see [`file_role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileRole {
    /// None of the names persist gives its own files: a state file, a journal, a collection
    /// entry, or anything else.
    State,
    /// The temporary file of a save in progress, or of one that crashed
    /// (`.<name>.<12 alphanumerics>.tmp`): possibly partial, swept by later saves.
    Temporary,
    /// A lock file (`<name>.lock`, `.persist-txn.lock`, `instance.lock`): empty, or a process
    /// id.
    Lock,
    /// A backup of another schema version (`<name>.v<version>.bak`).
    Backup {
        /// The version it holds.
        version: u64,
    },
    /// A journal snapshot covering the first `covered` records (`<log>.snapshot.<covered>`).
    Snapshot {
        /// How many records it covers.
        covered: u64,
    },
    /// Another program's version of a file, kept by earlier versions of [`Live`](crate::Live)
    /// before they saved merged changes over it (`<name>.conflict-<unix ms>`); `Live` now
    /// replays its changes on that version and keeps no copy.
    Conflict {
        /// When, in milliseconds since 1970.
        millis: u64,
    },
    /// A value [`Live`](crate::Live) could not save to its file (`<name>.unsaved-<unix ms>`).
    Unsaved {
        /// When, in milliseconds since 1970.
        millis: u64,
    },
    /// A file persist could not read (damaged, cut short, or not a persist file at all), kept
    /// aside by the save that replaced it (`<name>.corrupt-<unix ms>`): its bytes as they were,
    /// for a person or a repair tool.
    Corrupt {
        /// When, in milliseconds since 1970.
        millis: u64,
    },
    /// An earlier good version of a state file, kept by a save that replaced it
    /// (`<name>.gen-<number>`, with [`Options::generations`](crate::Options::generations)):
    /// the higher the number, the more recent.
    Generation {
        /// Its place in the order saves replaced the file's versions.
        number: u64,
    },
    /// A transaction's staging directory (`.persist-txn`), its commit record or a file staged
    /// in it.
    Transaction,
}

impl FileRole {
    /// Whether the file holds a persist file's data (a state file or a copy of one: a backup,
    /// a snapshot, a kept or unsaved copy): what `persist verify` checks. Temporary and staged
    /// files may be partial, lock files hold no data, and a damaged file a save kept aside
    /// is known not to load (it is kept for a person or a repair tool).
    pub fn holds_data(self) -> bool {
        !matches!(
            self,
            FileRole::Temporary | FileRole::Lock | FileRole::Transaction | FileRole::Corrupt { .. }
        )
    }
}

/// What persist made the file at `path` for, from its name (and its directory's): the one
/// register of the names persist gives the files it keeps beside a state file, for tools that
/// walk a data directory (`persist verify` skips lock, temporary and staged files).
///
/// # Examples
///
/// ```
/// use persist::{FileRole, file_role};
///
/// assert_eq!(file_role("settings.json"), FileRole::State);
/// assert_eq!(file_role("settings.json.lock"), FileRole::Lock);
/// assert_eq!(file_role("settings.json.v2.bak"), FileRole::Backup { version: 2 });
/// assert_eq!(file_role("events.log.snapshot.100"), FileRole::Snapshot { covered: 100 });
/// assert_eq!(file_role("settings.json.gen-12"), FileRole::Generation { number: 12 });
/// assert_eq!(file_role("data/.persist-txn/commit"), FileRole::Transaction);
/// assert!(!file_role(".settings.json.AbCdEf012345.tmp").holds_data());
/// ```
pub fn file_role(path: impl AsRef<std::path::Path>) -> FileRole {
    let path = path.as_ref();
    let Some(name) = path.file_name() else {
        return FileRole::State;
    };
    let in_staging = path
        .parent()
        .and_then(|parent| parent.file_name())
        .is_some_and(|parent| parent == TXN_STAGING);
    if name == TXN_STAGING || in_staging {
        return FileRole::Transaction;
    }
    if name == TXN_LOCK || name == INSTANCE_LOCK {
        return FileRole::Lock;
    }
    match classify_any(name) {
        None => FileRole::State,
        Some((_, Sibling::Temp)) => FileRole::Temporary,
        Some((_, Sibling::Lock)) => FileRole::Lock,
        Some((_, Sibling::Backup(version))) => FileRole::Backup { version },
        Some((_, Sibling::Snapshot(covered))) => FileRole::Snapshot { covered },
        Some((_, Sibling::Conflict(millis))) => FileRole::Conflict { millis },
        Some((_, Sibling::Unsaved(millis))) => FileRole::Unsaved { millis },
        Some((_, Sibling::Corrupt(millis))) => FileRole::Corrupt { millis },
        Some((_, Sibling::Generation(number))) => FileRole::Generation { number },
    }
}

/// The name of `kind` beside the state file `name` (a temporary file's random part is
/// chosen by its creator: see [`temp_prefix`]).
pub(crate) fn name_for(name: &OsStr, kind: Sibling) -> OsString {
    let mut sibling = name.to_owned();
    match kind {
        Sibling::Temp => {
            let mut temp = temp_prefix(name);
            temp.push("x".repeat(TEMP_RANDOM_CHARS));
            temp.push(TEMP_SUFFIX);
            return temp;
        }
        Sibling::Lock => sibling.push(".lock"),
        Sibling::Backup(version) => sibling.push(format!(".v{version}.bak")),
        Sibling::Snapshot(covered) => sibling.push(format!(".snapshot.{covered}")),
        Sibling::Conflict(millis) => sibling.push(format!(".conflict-{millis}")),
        Sibling::Unsaved(millis) => sibling.push(format!(".unsaved-{millis}")),
        Sibling::Corrupt(millis) => sibling.push(format!(".corrupt-{millis}")),
        Sibling::Generation(number) => sibling.push(format!(".gen-{number}")),
    }
    sibling
}

/// `.<name>.`: what a temporary file's name starts with; the random part and
/// [`temp_suffix`] follow.
pub(crate) fn temp_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    prefix
}

/// What a temporary file's name ends with.
pub(crate) fn temp_suffix() -> &'static str {
    TEMP_SUFFIX
}

/// What `candidate` is beside the state file `name`: `None` when it is not one of the files
/// persist keeps beside it (the state file itself included).
pub(crate) fn classify(candidate: &OsStr, name: &OsStr) -> Option<Sibling> {
    let (candidate, name) = (candidate.to_str()?, name.to_str()?);
    if let Some(random) = candidate
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
    {
        return is_temp_random(random).then_some(Sibling::Temp);
    }
    let rest = candidate.strip_prefix(name)?;
    if rest == ".lock" {
        return Some(Sibling::Lock);
    }
    if let Some(version) = rest.strip_prefix(".v").and_then(|r| r.strip_suffix(".bak")) {
        return number(version).map(Sibling::Backup);
    }
    if let Some(covered) = rest.strip_prefix(".snapshot.") {
        return number(covered).map(Sibling::Snapshot);
    }
    if let Some(millis) = rest.strip_prefix(".conflict-") {
        return number(millis).map(Sibling::Conflict);
    }
    if let Some(millis) = rest.strip_prefix(".unsaved-") {
        return number(millis).map(Sibling::Unsaved);
    }
    if let Some(millis) = rest.strip_prefix(".corrupt-") {
        return number(millis).map(Sibling::Corrupt);
    }
    if let Some(generation) = rest.strip_prefix(".gen-") {
        return number(generation).map(Sibling::Generation);
    }
    None
}

/// What `candidate` is in any directory, without knowing the state file: the state file's
/// name and the kind, or `None` for a name persist does not make beside a file (a state file,
/// or anything else).
pub(crate) fn classify_any(candidate: &OsStr) -> Option<(OsString, Sibling)> {
    let text = candidate.to_str()?;
    if let Some(rest) = text.strip_prefix('.')
        && let Some(rest) = rest.strip_suffix(TEMP_SUFFIX)
        && let Some((name, random)) = rest.rsplit_once('.')
        && !name.is_empty()
        && is_temp_random(random)
    {
        return Some((OsString::from(name), Sibling::Temp));
    }
    // Every other kind is `<name><suffix>`: try each place the suffix could start.
    text.char_indices()
        .filter(|&(at, c)| at > 0 && c == '.')
        .find_map(|(at, _)| {
            let name = OsStr::new(&text[..at]);
            match classify(candidate, name)? {
                Sibling::Temp => None,
                kind => Some((name.to_owned(), kind)),
            }
        })
}

/// Whether `name` is one of a transaction root's own names, or the instance lock: names a
/// user's file never has under a transaction root.
pub(crate) fn is_root_own(name: &OsStr) -> bool {
    name == TXN_STAGING || name == TXN_LOCK
}

/// Whether `name` is a staged file's: `<32 lowercase hex>-<8 digits>`.
pub(crate) fn is_staged_name(name: &str) -> bool {
    let Some((id, sequence)) = name.split_once('-') else {
        return false;
    };
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && sequence.len() == 8
        && sequence.bytes().all(|b| b.is_ascii_digit())
}

/// A staged file's name: the transaction's id and the file's sequence number.
pub(crate) fn staged_name(id: u128, sequence: u32) -> String {
    format!("{id:032x}-{sequence:08}")
}

fn is_temp_random(random: &str) -> bool {
    random.len() == TEMP_RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A number as persist writes it: decimal digits, no sign, no leading zero (so that each
/// number has one name).
fn number(digits: &str) -> Option<u64> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_recognised_as_it_is_named() {
        let name = OsStr::new("a.json");
        for kind in [
            Sibling::Lock,
            Sibling::Backup(3),
            Sibling::Snapshot(100),
            Sibling::Conflict(1_700_000_000_000),
            Sibling::Unsaved(1),
            Sibling::Corrupt(1_700_000_000_001),
            Sibling::Generation(7),
        ] {
            let sibling = name_for(name, kind);
            assert_eq!(classify(&sibling, name), Some(kind), "{sibling:?}");
            assert_eq!(
                classify_any(&sibling),
                Some((name.to_owned(), kind)),
                "{sibling:?}"
            );
        }
        assert_eq!(
            classify(".a.json.0123456789ab.tmp".as_ref(), name),
            Some(Sibling::Temp)
        );
        assert_eq!(
            classify_any(".a.json.0123456789ab.tmp".as_ref()),
            Some((name.to_owned(), Sibling::Temp))
        );
    }

    #[test]
    fn lookalikes_are_not_siblings() {
        let name = OsStr::new("a.json");
        for other in [
            "a.json",
            ".a.json.0123456789a.tmp",
            ".a.json.0123456789abc.tmp",
            ".a.json.012345-789ab.tmp",
            ".b.json.0123456789ab.tmp",
            "a.json.0123456789ab.tmp",
            "a.json.v.bak",
            "a.json.vx.bak",
            "a.json.v1.bak.old",
            "a.json.v01.bak",
            "a.json.snapshot.007",
            "a.json.snapshot.",
            "a.json.snapshot.1a",
            "a.json.conflict-",
            "a.json.unsaved-x",
            "a.json.corrupt-",
            "a.json.corrupt-01",
            "a.json.locks",
            "b.json.lock",
        ] {
            assert_eq!(classify(other.as_ref(), name), None, "{other}");
        }
        assert_eq!(classify_any("settings.json".as_ref()), None);
        assert_eq!(classify_any("notes.txt".as_ref()), None);
    }

    #[test]
    fn staged_names() {
        assert!(is_staged_name(&staged_name(u128::MAX, 1)));
        assert!(is_staged_name(&staged_name(0, 99_999_999)));
        for other in [
            "commit",
            "../x",
            "0-1",
            &format!("{:032x}-1", 5u8),
            "x".repeat(41).as_str(),
        ] {
            assert!(!is_staged_name(other), "{other}");
        }
    }
}
