//! The audit log ([`Options::audit`]): after each successful save, update, removal, restore and
//! transaction commit, one [`AuditRecord`] is appended to a [`Journal`](crate::Journal) of its
//! own: what was done, to which file (or collection key), from and to which schema version, how
//! many bytes with which CRC-32C, by which process and actor, and when. Never the data itself.
//!
//! Many processes may write to the same audit log: each append takes the log's lock for the
//! append alone, and reads only the records others appended since its own last one.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::journal::{self, Replay, SharedEnd};
use crate::persisted::{BoxError, Origin};
use crate::{Options, Persisted};

/// What an [`AuditRecord`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditOp {
    /// [`Options::save`] (or one of its async forms) replaced or created the file.
    Save,
    /// [`Options::update`] (or its async form) changed the file under its lock.
    Update,
    /// [`Options::remove`] removed the file (with its backups and lock file).
    Remove,
    /// [`Options::restore_backup`] put a backup back in place.
    Restore,
    /// A [`Transaction`](crate::Transaction) commit wrote this file (or removed it, when
    /// [`to_version`](AuditRecord::to_version) is `None`). Every file of one commit has a
    /// record, all with the same [`time`](AuditRecord::time).
    Commit,
}

impl AuditOp {
    /// The name stored in the log: `save`, `update`, `remove`, `restore` or `commit`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOp::Save => "save",
            AuditOp::Update => "update",
            AuditOp::Remove => "remove",
            AuditOp::Restore => "restore",
            AuditOp::Commit => "commit",
        }
    }

    fn parse(name: &str) -> Option<AuditOp> {
        [
            AuditOp::Save,
            AuditOp::Update,
            AuditOp::Remove,
            AuditOp::Restore,
            AuditOp::Commit,
        ]
        .into_iter()
        .find(|op| op.as_str() == name)
    }
}

impl fmt::Display for AuditOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Who did it, as given to [`Options::actor`].
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
/// for record in persist::read_audit("audit.log")? {
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
pub fn read_audit(path: impl AsRef<Path>) -> Result<AuditRecords, Error> {
    let (records, _, _) = journal::read_only(path.as_ref(), Options::DEFAULT_MAX_SIZE)?;
    Ok(AuditRecords { records })
}

/// The records of an audit log: see [`read_audit`].
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

/// An [`Options::audit`] log: where it is, and where this process last saw its end.
#[derive(Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    end: Mutex<SharedEnd>,
}

impl AuditLog {
    pub(crate) fn new(path: PathBuf) -> Arc<AuditLog> {
        // Absolute now, so that a later change of the working directory does not move it.
        let path = std::path::absolute(&path).unwrap_or(path);
        Arc::new(AuditLog {
            path,
            end: Mutex::new(SharedEnd::default()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Two options with the same audit log are equal.
impl PartialEq for AuditLog {
    fn eq(&self, other: &AuditLog) -> bool {
        self.path == other.path
    }
}

impl Eq for AuditLog {}

/// What an operation wrote, for its audit record: the file's size and CRC-32C.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) crc32c: u32,
}

impl Written {
    /// The size and CRC-32C of the file `file` (from its start).
    pub(crate) fn of_file(mut file: &std::fs::File) -> std::io::Result<Written> {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(0))?;
        let mut buffer = vec![0; 64 << 10];
        let mut written = Written::default();
        loop {
            let read = match file.read(&mut buffer) {
                Ok(0) => return Ok(written),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            written.bytes += read as u64;
            written.crc32c = crc32c::crc32c_append(written.crc32c, &buffer[..read]);
        }
    }

    /// The size and CRC-32C of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Written {
        Written {
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }
    }
}

/// The schema version of the file at `path`, if there is one and it can be told from its first
/// bytes (a plain envelope or a framed file's header).
pub(crate) fn stored_version(path: &Path) -> Option<u64> {
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_end(&mut head)
        .ok()?;
    version_of(&head)
}

/// The schema version a file's first bytes tell (a plain envelope or a framed file's header).
pub(crate) fn version_of(head: &[u8]) -> Option<u64> {
    crate::frame::header_version(head)
        .map(u64::from)
        .or_else(|| crate::codec::leading_version(head))
}

/// One operation to record.
pub(crate) struct Entry<'p> {
    pub(crate) operation: AuditOp,
    pub(crate) path: &'p Path,
    pub(crate) key: Option<&'p str>,
    pub(crate) from_version: Option<u64>,
    pub(crate) to_version: Option<u64>,
    pub(crate) written: Option<Written>,
}

impl Options {
    /// Whether operations are audited: then they compute what [`Entry`] needs.
    pub(crate) fn audited(&self) -> bool {
        self.audit.is_some()
    }

    /// Appends the records of `entries` (one operation, or every file of a commit) to the
    /// audit log, if there is one. The operations succeeded already: a failure is
    /// [`Error::Audit`] about the first entry's file.
    pub(crate) fn audit_entries(&self, entries: &[Entry<'_>]) -> Result<(), Error> {
        let (Some(log), Some(first)) = (&self.audit, entries.first()) else {
            return Ok(());
        };
        let time = SystemTime::now();
        let records: Vec<AuditRecord> = entries
            .iter()
            .map(|entry| AuditRecord {
                time,
                operation: entry.operation,
                path: std::path::absolute(entry.path).unwrap_or_else(|_| entry.path.to_owned()),
                key: entry.key.map(str::to_owned),
                from_version: entry.from_version,
                to_version: entry.to_version,
                bytes: entry.written.map_or(0, |written| written.bytes),
                crc32c: entry.written.map(|written| written.crc32c),
                pid: std::process::id(),
                actor: self.actor.as_deref().map(str::to_owned),
            })
            .collect();
        let mut end = log.end.lock().unwrap_or_else(|poison| poison.into_inner());
        journal::append_shared(self, &log.path, &mut end, &records).map_err(|source| Error::Audit {
            path: first.path.to_owned(),
            log: log.path.clone(),
            source: Box::new(source),
        })
    }

    /// [`audit_entries`](Options::audit_entries) of one entry.
    pub(crate) fn audit_entry(&self, entry: Entry<'_>) -> Result<(), Error> {
        self.audit_entries(std::slice::from_ref(&entry))
    }
}
