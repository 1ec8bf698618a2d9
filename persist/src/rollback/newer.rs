//! A file of a newer version than the program's ([`OnNewer`]): its `data` read as the program's
//! version, the members it does not know listed, and on a save written back untouched.

use serde_json::{Map, Value};

use std::path::Path;

use crate::codec::{self, DecodeError, Style};
use crate::settings::Settings;
use crate::shell::read;
use crate::{Error, Persisted};

/// What a load does with a file of a newer version than the program's (a release rolled back,
/// a device that skipped a build). Set with [`Options::on_newer`](crate::Options::on_newer);
/// followed by every load of a single file ([`load`](crate::Options::load),
/// [`load_or_default`](crate::Options::load_or_default), [`update`](crate::Options::update),
/// [`Live`](crate::Live)) and by the saves made with the same options.
///
/// A newer file is read only when its `data` deserializes as the program's version (serde
/// skips members a struct does not know, unless it has `#[serde(deny_unknown_fields)]`) and
/// passes its `validate` function; otherwise the load returns [`Error::FutureVersion`], as
/// under [`Refuse`](OnNewer::Refuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnNewer {
    /// Refuse the file with [`Error::FutureVersion`] (the default). A save over it still
    /// replaces it, keeping the newer file as a backup (`<name>.v<N>.bak`).
    #[default]
    Refuse,
    /// Load the file's data as the program's version, and refuse every save over a file of a
    /// newer version with [`Error::ReadOnly`] (at an older version too), so that nothing the
    /// newer release wrote is lost.
    ReadOnly,
    /// Load it as [`ReadOnly`](OnNewer::ReadOnly) does; a save over it writes the value with
    /// the members the program does not know taken back from the file on disk, untouched, and
    /// keeps the file's newer version, so that the newer release reads its data back. Members
    /// are matched by name at every depth of objects, and inside lists whose length the save
    /// kept; a member the program knows is written as the program has it, and the members of
    /// an object are written in name order. A save over a newer file whose data this version
    /// cannot read is refused with [`Error::ReadOnly`] (nothing of it could be kept). A save at
    /// an older version ([`Options::save_as_version`](crate::Options::save_as_version)) is a
    /// rollback asked for: it writes that version, without the newer members.
    KeepUnknown,
}

/// What a load of a file of a newer version found ([`LoadOutcome::Newer`](crate::LoadOutcome::Newer)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewerFile {
    /// The version stored in the file.
    pub found: u64,
    /// The newest version this program knows (the version the value was read as).
    pub supported: u32,
    /// The members of the file's data that this program's version does not know, as paths
    /// (`theme.accent`, `servers[2].weight`): ignored by the value, kept in the file by a save
    /// under [`OnNewer::KeepUnknown`].
    pub unknown: Vec<String>,
}

/// Loads `path`, a file of a newer version (`refused`: the error a load reported for it), under
/// a policy other than [`OnNewer::Refuse`]: its value and what was found, or `refused` when its
/// data does not read as `T`.
pub(crate) fn load<T: Persisted>(
    settings: &Settings,
    path: &Path,
    refused: Error,
) -> Result<(T, NewerFile), Error> {
    let bytes = read::read_for_load(path, settings.disk.max_size)?;
    let read = read_bytes::<T>(settings, path, &bytes, refused);
    // A truncation by another program during the read is the error to report.
    bytes.intact(path)?;
    let (value, newer) = read?;
    #[cfg(feature = "tracing")]
    tracing::warn!(
        path = %path.display(),
        found = newer.found,
        supported = newer.supported,
        unknown = ?newer.unknown,
        "the file is of a newer version: read as version {}",
        newer.supported
    );
    Ok((value, newer))
}

/// [`load`] of a file's `bytes`, read by the caller; `path` names it in errors.
pub(crate) fn read_bytes<T: Persisted>(
    settings: &Settings,
    path: &Path,
    bytes: &[u8],
    refused: Error,
) -> Result<(T, NewerFile), Error> {
    let envelope = settings.open(path, bytes)?;
    let read = codec::stored_version(&envelope)
        .filter(|found| *found > u64::from(T::VERSION))
        .and_then(|found| read::<T>(&envelope, found));
    match read {
        Some(Ok(read)) => Ok(read),
        Some(Err(error)) => Err(error.at::<T>(path)),
        // Another version by now (replaced meanwhile), or data this version cannot read.
        None => Err(refused),
    }
}

/// The value of `T` in `envelope`, a file of the newer version `found` (the codec refused it
/// as such): `None` when its data does not read as `T`, so that the caller reports the newer
/// version; `Err` when `T`'s `validate` refuses it.
fn read<T: Persisted>(envelope: &[u8], found: u64) -> Option<Result<(T, NewerFile), DecodeError>> {
    let data = newer_data(envelope)?;
    let value = T::deserialize(&data).ok()?;
    if let Err(reason) = value.validate() {
        return Some(Err(DecodeError::Migration(codec::MigrationFailure {
            from: u32::try_from(found).unwrap_or(u32::MAX),
            to: T::VERSION,
            source: Box::new(crate::ValidationError { reason }),
        })));
    }
    let known = serde_json::to_value(&value).unwrap_or(Value::Null);
    let mut unknown = Vec::new();
    unknown_members(&data, &known, "", &mut unknown);
    Some(Ok((
        value,
        NewerFile {
            found,
            supported: T::VERSION,
            unknown,
        },
    )))
}

/// The `data` of an envelope, parsed.
fn newer_data(envelope: &[u8]) -> Option<Value> {
    let envelope = envelope.strip_prefix(codec::UTF8_BOM).unwrap_or(envelope);
    let data = codec::raw_data(envelope)?;
    serde_json::from_slice(data).ok()
}

/// The envelope a save of `value` writes over `existing` (the file at the path now, its
/// envelope), under `policy`: `None` to write `value` as usual (a file of this version or
/// older, or [`OnNewer::Refuse`]); the envelope and the existing file's newer version, its
/// unknown members kept ([`OnNewer::KeepUnknown`]); [`Error::ReadOnly`] under
/// [`OnNewer::ReadOnly`], and for a newer file whose data no longer reads as `T`.
pub(crate) fn write_over<T: Persisted>(
    value: &T,
    existing: &[u8],
    policy: OnNewer,
    style: Style,
    path: &Path,
) -> Result<Option<(Vec<u8>, u32)>, Error> {
    if policy == OnNewer::Refuse {
        return Ok(None);
    }
    let Some(found) = codec::stored_version(existing) else {
        return Ok(None);
    };
    if found <= u64::from(T::VERSION) {
        return Ok(None);
    }
    let refused = || Error::ReadOnly {
        path: path.to_owned(),
        found,
        supported: T::VERSION,
    };
    // Versions are u32 in every program persist builds.
    let version = match (policy, u32::try_from(found)) {
        (OnNewer::KeepUnknown, Ok(version)) => version,
        _ => return Err(refused()),
    };
    // A newer file whose data no longer reads as this version has nothing this save could
    // keep by name: it is refused rather than replaced.
    let old = newer_data(existing).ok_or_else(refused)?;
    let old_known = T::deserialize(&old)
        .ok()
        .and_then(|read: T| serde_json::to_value(&read).ok())
        .ok_or_else(refused)?;
    let mut data = serde_json::to_value(value).map_err(|source| Error::Serialize {
        path: path.to_owned(),
        field: None,
        source,
    })?;
    keep_unknown(&mut data, &old, &old_known);
    let mut bytes = Vec::new();
    codec::encode_as(&data, found, &mut bytes, style).map_err(|error| error.at(path))?;
    Ok(Some((bytes, version)))
}

/// Collects into `out` the members of `data` that `known` (the same data read by the program
/// and written again) does not have.
fn unknown_members(data: &Value, known: &Value, at: &str, out: &mut Vec<String>) {
    match (data, known) {
        (Value::Object(data), Value::Object(known)) => {
            for (name, member) in data {
                let path = match at.is_empty() {
                    true => name.clone(),
                    false => format!("{at}.{name}"),
                };
                match known.get(name) {
                    None => out.push(path),
                    Some(known) => unknown_members(member, known, &path, out),
                }
            }
        }
        (Value::Array(data), Value::Array(known)) if data.len() == known.len() => {
            for (i, (item, known)) in data.iter().zip(known).enumerate() {
                unknown_members(item, known, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Puts into `new` the members of `old` that `old_known` (`old` read by the program and written
/// again) does not have, where `new` has no member of that name.
fn keep_unknown(new: &mut Value, old: &Value, old_known: &Value) {
    match (new, old, old_known) {
        (Value::Object(new), Value::Object(old), Value::Object(known)) => {
            keep_members(new, old, known);
        }
        (Value::Array(new), Value::Array(old), Value::Array(known))
            if new.len() == old.len() && old.len() == known.len() =>
        {
            for ((new, old), known) in new.iter_mut().zip(old).zip(known) {
                keep_unknown(new, old, known);
            }
        }
        _ => {}
    }
}

fn keep_members(
    new: &mut Map<String, Value>,
    old: &Map<String, Value>,
    known: &Map<String, Value>,
) {
    for (name, member) in old {
        match (known.get(name), new.get_mut(name)) {
            (None, None) => {
                new.insert(name.clone(), member.clone());
            }
            (Some(known), Some(new)) => keep_unknown(new, member, known),
            _ => {}
        }
    }
}
