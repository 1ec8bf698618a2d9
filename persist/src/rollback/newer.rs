//! A file of a newer version than the program's ([`OnNewer`]): its `data` read as the program's
//! version, the members it does not know listed, and on a save written back untouched.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use std::path::Path;

use crate::codec::{self, DecodeError, Style};
use crate::settings::Settings;
use crate::shell::read;
use crate::{Error, Persisted};

/// What a load does with a file of a newer version than the program's (a release rolled back,
/// a device that skipped a build). Set with [`Options::on_newer`](crate::Options::on_newer);
/// followed by every load of a single file ([`load`](crate::Options::load),
/// [`load_or_default`](crate::Options::load_or_default), [`update`](crate::Options::update),
/// [`Live`](crate::Live)) and by the saves of single files made with the same options (save,
/// update, the async saves, a transaction's saves, `Live`). A collection's entries are not
/// single files: they are read and written at their type's version.
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
    /// kept; a member the program knows is written as the program has it, and the members it
    /// does not know follow, byte for byte as they were (a number wider than an `f64` stays
    /// exact). A save over a newer file whose data this version
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
    let value: T = serde_json::from_str(data.get()).ok()?;
    if let Err(reason) = value.validate() {
        return Some(Err(DecodeError::Migration(codec::MigrationFailure {
            from: u32::try_from(found).unwrap_or(u32::MAX),
            to: T::VERSION,
            source: Box::new(crate::ValidationError { reason }),
        })));
    }
    let written = serde_json::to_string(&value).ok()?;
    let old = Tree::parse(data)?;
    let known = Tree::parse(serde_json::from_str(&written).ok()?)?;
    let mut unknown = Vec::new();
    unknown_members(&old, &known, "", &mut unknown);
    Some(Ok((
        value,
        NewerFile {
            found,
            supported: T::VERSION,
            unknown,
        },
    )))
}

/// The `data` of an envelope, as its text.
fn newer_data(envelope: &[u8]) -> Option<&RawValue> {
    let envelope = envelope.strip_prefix(codec::UTF8_BOM).unwrap_or(envelope);
    let data = std::str::from_utf8(codec::raw_data(envelope)?).ok()?;
    serde_json::from_str(data).ok()
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
    let old_data = newer_data(existing).ok_or_else(refused)?;
    let old_written = serde_json::from_str::<T>(old_data.get())
        .ok()
        .and_then(|read| serde_json::to_string(&read).ok())
        .ok_or_else(refused)?;
    let new_written = serde_json::to_string(value).map_err(|source| Error::Serialize {
        path: path.to_owned(),
        field: None,
        source,
    })?;
    let trees = (|| {
        let old = Tree::parse(old_data)?;
        let known = Tree::parse(serde_json::from_str(&old_written).ok()?)?;
        let new = Tree::parse(serde_json::from_str(&new_written).ok()?)?;
        Some((old, known, new))
    })();
    let (old, known, new) = trees.ok_or_else(refused)?;
    let mut data = String::with_capacity(new_written.len() + old_data.get().len());
    merge(&new, Some((&old, &known)), &mut data);
    let data: &RawValue = serde_json::from_str(&data).map_err(|source| Error::Serialize {
        path: path.to_owned(),
        field: None,
        source,
    })?;
    let mut bytes = Vec::new();
    codec::encode_as(data, found, None, &mut bytes, style).map_err(|error| error.at(path))?;
    Ok(Some((bytes, version)))
}

/// A JSON value as a tree of its objects and arrays whose every node keeps its text as it
/// was written: members this version does not know are written back byte for byte (a number
/// past what an `f64` holds stays as it was).
struct Tree<'a> {
    text: &'a RawValue,
    shape: Shape<'a>,
}

enum Shape<'a> {
    Object(Vec<(String, Tree<'a>)>),
    Array(Vec<Tree<'a>>),
    Leaf,
}

impl<'a> Tree<'a> {
    /// `text` as a tree; `None` for text that is not JSON.
    fn parse(text: &'a RawValue) -> Option<Tree<'a>> {
        let shape = match text.get().trim_start().as_bytes().first() {
            Some(b'{') => {
                let members: Members<'a> = serde_json::from_str(text.get()).ok()?;
                Shape::Object(
                    members
                        .0
                        .into_iter()
                        .map(|(name, member)| Some((name, Tree::parse(member)?)))
                        .collect::<Option<_>>()?,
                )
            }
            Some(b'[') => {
                let items: Vec<&'a RawValue> = serde_json::from_str(text.get()).ok()?;
                Shape::Array(items.into_iter().map(Tree::parse).collect::<Option<_>>()?)
            }
            _ => Shape::Leaf,
        };
        Some(Tree { text, shape })
    }

    fn member(&self, name: &str) -> Option<&Tree<'a>> {
        match &self.shape {
            Shape::Object(members) => members
                .iter()
                .find(|(member, _)| member == name)
                .map(|(_, tree)| tree),
            _ => None,
        }
    }
}

/// An object's members in the order written, their values as text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'a>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'a RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Collects into `out` the members of `data` that `known` (the same data read by the program
/// and written again) does not have.
fn unknown_members(data: &Tree<'_>, known: &Tree<'_>, at: &str, out: &mut Vec<String>) {
    match (&data.shape, &known.shape) {
        (Shape::Object(members), Shape::Object(_)) => {
            for (name, member) in members {
                let path = match at.is_empty() {
                    true => name.clone(),
                    false => format!("{at}.{name}"),
                };
                match known.member(name) {
                    None => out.push(path),
                    Some(known) => unknown_members(member, known, &path, out),
                }
            }
        }
        (Shape::Array(items), Shape::Array(known)) if items.len() == known.len() => {
            for (i, (item, known)) in items.iter().zip(known).enumerate() {
                unknown_members(item, known, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Writes `new` into `out`, with the members of `old` that `known` (`old` read by the program
/// and written again) does not have, where `new` has no member of that name: after `new`'s own
/// members, as they were written.
fn merge(new: &Tree<'_>, old: Option<(&Tree<'_>, &Tree<'_>)>, out: &mut String) {
    match &new.shape {
        Shape::Object(members) => {
            out.push('{');
            let mut first = true;
            let mut separate = |out: &mut String| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
            };
            for (name, member) in members {
                separate(out);
                push_name(out, name);
                let beneath =
                    old.and_then(|(old, known)| Some((old.member(name)?, known.member(name)?)));
                merge(member, beneath, out);
            }
            if let Some((old, known)) = old
                && let Shape::Object(old_members) = &old.shape
                && matches!(known.shape, Shape::Object(_))
            {
                for (name, member) in old_members {
                    if known.member(name).is_none() && new.member(name).is_none() {
                        separate(out);
                        push_name(out, name);
                        out.push_str(member.text.get());
                    }
                }
            }
            out.push('}');
        }
        Shape::Array(items) => {
            let paired = match old {
                Some((old, known)) => match (&old.shape, &known.shape) {
                    (Shape::Array(old), Shape::Array(known))
                        if old.len() == items.len() && known.len() == items.len() =>
                    {
                        Some((old, known))
                    }
                    _ => None,
                },
                None => None,
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                merge(item, paired.map(|(old, known)| (&old[i], &known[i])), out);
            }
            out.push(']');
        }
        Shape::Leaf => out.push_str(new.text.get()),
    }
}

/// A member's name, quoted as JSON, and its colon.
fn push_name(out: &mut String, name: &str) {
    out.push_str(&serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned()));
    out.push(':');
}
