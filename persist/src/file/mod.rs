//! The single-file verbs: load, save, update, restore and remove of one state file, on a
//! [`Settings`]. [`Options`](crate::Options) and the [`Persisted`] methods are their public
//! faces; [`Live`](crate::Live) and the journal's snapshots use them too.

pub(crate) mod recover;
mod update;

use std::path::{Path, PathBuf};

use self::recover::Loaded;
pub(crate) use self::update::modify;
use crate::codec;
use crate::settings::{Settings, stream_refusal};
use crate::shell::commit::{Precondition, Target, Write, bytes, replace, replace_path};
use crate::shell::{AuditOp, backup, read, remove};
use crate::telemetry::{Facts, Operation};
use crate::{Backup, Error, Format, Persisted};

/// Loads `path` as `T`, migrating from whatever version the file holds. Never writes.
pub(crate) fn load<T: Persisted>(settings: &Settings, path: &Path) -> Result<T, Error> {
    let operation = Operation::start("load", path);
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(unused_mut))]
    let mut facts = Facts {
        to: Some(T::VERSION),
        ..Facts::default()
    };
    let result = operation.in_span(|| {
        let max_size = settings.disk.max_size;
        let bytes = settings
            .disk
            .retry
            .run(|| read::read_for_load(path, max_size))?;
        // What the telemetry reports; nothing to compute without it.
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        {
            facts.read = Some(bytes.len() as u64);
            facts.from = codec::leading_version(&bytes);
        }
        let decoded = decode(settings, path, &bytes);
        // A truncation by another program during the read is the error to report, not
        // what the parser made of the zeros that replaced the lost bytes.
        bytes.intact(path)?;
        decoded
    });
    operation.finish(&result, facts);
    result
}

/// The value of a file's `bytes` (read by the caller), migrated to `T`; errors name `path`.
pub(crate) fn decode<T: Persisted>(
    settings: &Settings,
    path: &Path,
    bytes: &[u8],
) -> Result<T, Error> {
    settings
        .open(path, bytes)
        .and_then(|envelope| codec::decode(&envelope).map_err(|error| error.at::<T>(path)))
}

/// [`load`] under the settings' [`OnCorrupt`](recover::OnCorrupt) policy, saying where the
/// value came from.
pub(crate) fn load_reported<T: Persisted>(
    settings: &Settings,
    path: &Path,
) -> Result<Loaded<T>, Error> {
    let loaded = recover::load::<T>(settings, path, false, false)?;
    match loaded.value {
        Some(value) => Ok(Loaded {
            value,
            outcome: loaded.outcome,
        }),
        // Without a default, a load has a value or an error.
        None => Err(Error::NotFound {
            path: path.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        }),
    }
}

/// [`load_reported`], or `T::default()` if there is no file (or, under
/// [`OnCorrupt::Default`](recover::OnCorrupt::Default), no copy of it that loads).
pub(crate) fn load_or_default_reported<T: Persisted + Default>(
    settings: &Settings,
    path: &Path,
) -> Result<Loaded<T>, Error> {
    let loaded = recover::load::<T>(settings, path, true, false)?;
    Ok(Loaded {
        value: loaded.value.unwrap_or_default(),
        outcome: loaded.outcome,
    })
}

/// [`load_or_default_reported`]'s value.
pub(crate) fn load_or_default<T: Persisted + Default>(
    settings: &Settings,
    path: &Path,
) -> Result<T, Error> {
    load_or_default_reported(settings, path).map(|loaded| loaded.value)
}

/// Saves `value` at `path`, recorded in the audit log as `operation`: serialized straight into
/// the temporary file when no layer needs it whole. Errors are the value's first (a float JSON
/// cannot hold, a map key that is not a string), then the file's.
pub(crate) fn save<T: Persisted>(
    settings: &Settings,
    value: &T,
    path: &Path,
    operation: AuditOp,
) -> Result<(), Error> {
    save_file(settings, value, path, operation, None).map(drop)
}

/// [`save`], returning the file written, open (for its identity: whoever replaces the file
/// after the save replaces another inode); with `unless_changed`, as [`Write::unless_changed`]
/// says.
pub(crate) fn save_file<T: Persisted>(
    settings: &Settings,
    value: &T,
    path: &Path,
    operation: AuditOp,
    unless_changed: Option<Precondition<'_>>,
) -> Result<std::fs::File, Error> {
    measured_save(path, T::VERSION, || {
        let write = Write {
            unless_changed,
            ..write_of::<T>(operation)
        };
        let style = settings.style::<T>();
        // A TOML save is written over the file it replaces: made whole first.
        if !settings.streams() || style.format != Format::Json {
            let prepared = settings.file_bytes(value, path)?;
            let write = Write {
                version: Some(prepared.version),
                ..write
            };
            return replace_path(&settings.disk, path, &write, bytes(&prepared.bytes));
        }
        // Streams into the temporary file: no copy of the file in memory. A value serde refuses
        // half-way leaves a partial temporary file, which the failed write removes.
        let mut refused = None;
        let result = replace_path(&settings.disk, path, &write, |writer| {
            codec::encode(value, writer, style).map_err(|error| stream_refusal(error, &mut refused))
        });
        match refused {
            Some(refusal) => Err(refusal.at(path)),
            None => result,
        }
    })
}

/// [`save`] to a target resolved by the caller (a name persist makes, in a directory it
/// holds open): no retry, the target is not looked up again.
pub(crate) fn save_to<T: Persisted>(
    settings: &Settings,
    value: &T,
    target: &Target,
    operation: AuditOp,
) -> Result<(), Error> {
    measured_save(&target.named, T::VERSION, || {
        let prepared = settings.file_bytes(value, &target.named)?;
        let write = Write {
            version: Some(prepared.version),
            ..write_of::<T>(operation)
        };
        replace(&settings.disk, target, &write, bytes(&prepared.bytes)).map(drop)
    })
}

/// What a save of `T` writes, for backups and the audit log.
pub(crate) fn write_of<T: Persisted>(operation: AuditOp) -> Write<'static> {
    Write {
        version: Some(T::VERSION),
        unversioned_as: codec::unversioned_root::<T>(),
        audit: Some(operation),
        ..Write::default()
    }
}

/// Runs a save as one measured operation: its span, and its outcome, version and size.
fn measured_save<R>(
    path: &Path,
    version: u32,
    save: impl FnOnce() -> Result<R, Error>,
) -> Result<R, Error> {
    let operation = Operation::start("save", path);
    let result = operation.in_span(save);
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    let written = result
        .is_ok()
        .then(|| std::fs::metadata(path).ok().map(|metadata| metadata.len()))
        .flatten();
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let written = None;
    let facts = Facts {
        to: Some(version),
        written,
        ..Facts::default()
    };
    operation.finish(&result, facts);
    result
}

/// The backups kept beside the file at `path`, newest version first.
pub(crate) fn backups_of(path: &Path) -> Result<Vec<Backup>, Error> {
    backup::list(path)
}

/// Puts the backup of `version` back in place of the file at `path`.
pub(crate) fn restore(settings: &Settings, path: &Path, version: u64) -> Result<(), Error> {
    let operation = Operation::start("restore", path);
    let result = operation.in_span(|| {
        settings
            .disk
            .retry
            .run(|| backup::restore(&settings.disk, path, version))
    });
    let facts = Facts {
        from: Some(version),
        ..Facts::default()
    };
    operation.finish(&result, facts);
    result
}

/// Deletes the state file at `path` with every file persist keeps beside it.
pub(crate) fn remove_file(settings: &Settings, path: &Path) -> Result<Vec<PathBuf>, Error> {
    remove::remove_state_file(&settings.disk, path)
}

/// Deletes the directory `dir` and everything in it.
pub(crate) fn remove_dir(settings: &Settings, dir: &Path) -> Result<(), Error> {
    remove::remove_dir(&settings.disk, dir)
}
