//! The audit log ([`Options::audit`](crate::Options::audit)): after each successful save,
//! update, removal, restore and transaction commit, one [`AuditRecord`] is appended to a [`Journal`](crate::Journal) of its
//! own: what was done, to which file (or collection key), from and to which schema version, how
//! many bytes with which CRC-32C, by which process and actor, and when. Never the data itself.
//!
//! Many processes may write to the same audit log: each append takes the log's lock for the
//! append alone, and reads only the records others appended since its own last one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Persisted;
use crate::error::{BoxError, Error};
use crate::journal::{self, Replay, SharedEnd};
use crate::persisted::Origin;
pub use crate::shell::AuditOp;
use crate::shell::{AuditEntry, AuditSink, Auditor, Disk};

/// One entry of the audit log: an operation that succeeded. Stored as JSON (FORMAT.md, "Audit
/// log"): `{"time_ms":…,"op":"save","path":"…","from_version":2,"to_version":3,"bytes":812,
/// "crc32c":…,"pid":…,"actor":"alice"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When the operation ended (to the millisecond).
    pub time: SystemTime,
    /// What was done.
    pub operation: AuditOp,
    /// The file, made absolute (not resolved through links); a path that is not UTF-8 is
    /// stored with its invalid bytes replaced by U+FFFD. For a [`Collection`](crate::Collection)
    /// entry, where its backend keeps it ([`Backend::locate`](crate::backend::Backend::locate)).
    pub path: PathBuf,
    /// The key, for a [`Collection`](crate::Collection) entry (its puts are recorded as
    /// [`Save`](AuditOp::Save), updates and migrations as [`Update`](AuditOp::Update), deletes
    /// as [`Remove`](AuditOp::Remove)); `None` for a file.
    pub key: Option<String>,
    /// The schema version the file held before, when there was a file and its version could
    /// be read (not read for a collection's put or delete: `None`).
    pub from_version: Option<u64>,
    /// The schema version written; `None` for a removal.
    pub to_version: Option<u64>,
    /// The size of the file written, in bytes (0 for a removal).
    pub bytes: u64,
    /// The CRC-32C (Castagnoli) of the file's bytes as written, layers included: compare it
    /// with the file to tell whether it is still what this operation left; `None` for a
    /// removal.
    pub crc32c: Option<u32>,
    /// The process that did it.
    pub pid: u32,
    /// Who did it, as given to [`Options::actor`](crate::Options::actor).
    pub actor: Option<String>,
}

impl Serialize for AuditRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("AuditRecord", 10)?;
        let millis = self
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        record.serialize_field("time_ms", &millis)?;
        record.serialize_field("op", self.operation.as_str())?;
        record.serialize_field("path", &self.path.to_string_lossy())?;
        record.serialize_field("key", &self.key)?;
        record.serialize_field("from_version", &self.from_version)?;
        record.serialize_field("to_version", &self.to_version)?;
        record.serialize_field("bytes", &self.bytes)?;
        record.serialize_field("crc32c", &self.crc32c)?;
        record.serialize_field("pid", &self.pid)?;
        record.serialize_field("actor", &self.actor)?;
        record.end()
    }
}

impl<'de> Deserialize<'de> for AuditRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand through a JSON value: persist's serde has no derive feature.
        let value = serde_json::Value::deserialize(deserializer)?;
        let field = |name: &str| value.get(name).filter(|value| !value.is_null());
        let number = |name: &str| match field(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("`{name}` is not a whole number"))),
        };
        let text = |name: &str| match field(name) {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .map(|text| Some(text.to_owned()))
                .ok_or_else(|| D::Error::custom(format!("`{name}` is not a string"))),
        };
        let required = |name: &str| D::Error::custom(format!("missing field `{name}`"));
        let op = text("op")?.ok_or_else(|| required("op"))?;
        Ok(AuditRecord {
            time: UNIX_EPOCH
                + Duration::from_millis(number("time_ms")?.ok_or_else(|| required("time_ms"))?),
            operation: AuditOp::parse(&op)
                .ok_or_else(|| D::Error::custom(format!("unknown operation `{op}`")))?,
            path: PathBuf::from(text("path")?.ok_or_else(|| required("path"))?),
            key: text("key")?,
            from_version: number("from_version")?,
            to_version: number("to_version")?,
            bytes: number("bytes")?.unwrap_or(0),
            crc32c: number("crc32c")?
                .map(|crc| {
                    u32::try_from(crc).map_err(|_| D::Error::custom("`crc32c` exceeds 32 bits"))
                })
                .transpose()?,
            pid: number("pid")?
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| required("pid"))?,
            actor: text("actor")?,
        })
    }
}

impl Persisted for AuditRecord {
    const VERSION: u32 = 1;
    type Previous = Origin;

    fn migrate(previous: Origin) -> Result<Self, BoxError> {
        match previous {}
    }
}

/// The audit log [`Options::audit`](crate::Options::audit) writes, read with
/// [`AuditLog::read`]. (Writing is the options' job: every save, update, removal and commit
/// made through them appends its record.)
#[derive(Debug)]
pub enum AuditLog {}

impl AuditLog {
    /// Reads the audit log at `path`, oldest record first, without taking its lock (writers may
    /// append meanwhile; what they append after this call is not read). A torn last record, left
    /// by a crash during an append, is not read.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Corrupt`] when the file is not a journal,
    /// [`Error::DamagedJournal`] naming the offset of a damaged record (also as an item, for
    /// damage found while reading), [`Error::Io`]. Each item is a record or the error decoding it
    /// (as [`Journal::replay`](crate::Journal::replay) gives them: a record that is not an audit
    /// record is [`Error::Corrupt`] naming its offset).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// for record in persist::AuditLog::read("audit.log")? {
    ///     let record = record?;
    ///     println!(
    ///         "{:?} {} {} by {:?}",
    ///         record.time,
    ///         record.operation,
    ///         record.path.display(),
    ///         record.actor
    ///     );
    /// }
    /// # Ok::<(), persist::Error>(())
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<AuditRecords, Error> {
        let (records, _, _) =
            journal::read_only(&crate::settings::Settings::DEFAULT, path.as_ref())?;
        Ok(AuditRecords { records })
    }
}

/// The records of an audit log: see [`AuditLog::read`].
#[derive(Debug)]
pub struct AuditRecords {
    records: Replay<AuditRecord>,
}

impl Iterator for AuditRecords {
    type Item = Result<AuditRecord, Error>;

    fn next(&mut self) -> Option<Result<AuditRecord, Error>> {
        self.records.next()
    }
}

/// An [`Options::audit`](crate::Options::audit) log: where it is, and where this process last
/// saw its end.
#[derive(Debug)]
pub(crate) struct AuditFile {
    path: PathBuf,
    end: Mutex<SharedEnd>,
}

impl AuditFile {
    /// The log at `path`, as the shell's audit sink.
    pub(crate) fn open(path: PathBuf) -> Auditor {
        // Absolute now, so that a later change of the working directory does not move it.
        let path = std::path::absolute(&path).unwrap_or(path);
        Auditor(Arc::new(AuditFile {
            path,
            end: Mutex::new(SharedEnd::default()),
        }))
    }
}

impl AuditSink for AuditFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, disk: &Disk, entries: &[AuditEntry<'_>]) -> Result<(), Error> {
        let time = SystemTime::now();
        let records: Vec<AuditRecord> = entries
            .iter()
            .map(|entry| AuditRecord {
                time,
                operation: entry.operation,
                // A file's path, made absolute; a collection entry's as its backend names it (a
                // URL-like name for remote and in-memory stores, never a path of this machine).
                path: match entry.key {
                    None => {
                        std::path::absolute(entry.path).unwrap_or_else(|_| entry.path.to_owned())
                    }
                    Some(_) => entry.path.to_owned(),
                },
                key: entry.key.map(str::to_owned),
                from_version: entry.from_version,
                to_version: entry.to_version,
                bytes: entry.written.map_or(0, |written| written.bytes),
                crc32c: entry.written.map(|written| written.crc32c),
                pid: std::process::id(),
                actor: disk.actor.as_deref().map(str::to_owned),
            })
            .collect();
        let mut end = self.end.lock().unwrap_or_else(|poison| poison.into_inner());
        journal::append_shared(disk, &self.path, &mut end, &records)
    }
}
