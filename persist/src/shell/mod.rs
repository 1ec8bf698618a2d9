//! The shell: the only code that creates, replaces or removes the files persist keeps, and the
//! guarded reads of them. It moves bytes (what a file holds is the codec's business) and holds
//! every promise a write makes, whichever verb asked for it: the target resolved (a symbolic
//! link written through, anything but a regular file refused without blocking), the new file
//! staged beside it (0600 from creation; the permission bits of the file it replaces), a backup
//! of another schema version, the rename, the directory sync, the audit record, and the fault
//! seam before every step. One file is [`commit::replace`]d; many at once are staged, synced
//! and installed in one batch ([`commit::commit_batch`]), which collections' batches and
//! transactions share.
//!
//! - [`dir`]: directory handles, and reaching a directory under a root without following a
//!   link or crossing a mount;
//! - [`names`]: the register of every file name persist makes beside a state file;
//! - [`read`]: the guarded read;
//! - [`commit`]: staging and installing, one file or a batch;
//! - [`backup`]: the backups of other versions;
//! - [`generations`]: the earlier good versions of a file;
//! - [`damaged`]: a damaged file, and the recovery that puts an earlier copy in its place;
//! - [`lock`]: the inter-process locks;
//! - [`remove`]: removals (a state file with its siblings, a directory tree under a root);
//! - [`faults`]: the fault seam.

pub(crate) mod backup;
pub(crate) mod commit;
pub(crate) mod damaged;
pub(crate) mod dir;
pub(crate) mod faults;
pub(crate) mod generations;
pub(crate) mod lock;
pub(crate) mod names;
pub(crate) mod read;
pub(crate) mod remove;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::writer::FileWriter;
use crate::error::{Error, IoOp};
use crate::retry::Retry;

/// How much a save waits for the disk. Every level replaces the file atomically (a reader, or
/// a process that crashes, sees the old file or the new one); they differ in what survives a
/// power cut or a kernel crash.
///
/// Measured with the power-cut harness (`tests/powercut.rs`): only [`Full`](Durability::Full)
/// never lost an acknowledged save. What each level costs is in BENCHMARKS.md ("Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// fsync the file, rename, fsync the directory: a save that returned survives a power cut.
    /// The default.
    #[default]
    Full,
    /// fsync the file, rename, but skip the directory fsync: after a power cut the file holds
    /// the new value or the previous one, never a mix, but a save that returned may be rolled
    /// back. Skips one of the two fsyncs of a save.
    FileSync,
    /// No fsync at all: for caches and tests. After a process crash the file is intact (the
    /// old value or the new). After a power cut it usually holds an older value than the last
    /// save returned; whether it can be torn depends on the file system: ext4 with its default
    /// mount options (`data=ordered`, `auto_da_alloc`) writes a file's data before a rename
    /// over another file commits, and the power-cut harness finds no torn file there (it loses
    /// the acknowledged value at nearly every cut), but a file system without that rule (ext4
    /// with `noauto_da_alloc`, and others) may leave it empty or zero-filled.
    None,
}

/// What the shell needs of one call's settings: how durable, how many backups, how large a
/// read, how long a lock wait, how many attempts, and where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    pub(crate) durability: Durability,
    pub(crate) backups: usize,
    /// Whether a save keeps a file it could not read (newer, damaged) before replacing it.
    pub(crate) keep_unreadable: bool,
    /// How many earlier good versions of a file a save keeps (`<name>.gen-<N>`).
    pub(crate) generations: usize,
    pub(crate) max_size: u64,
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) retry: Retry,
    pub(crate) audit: Option<Auditor>,
    pub(crate) actor: Option<Arc<str>>,
}

impl Disk {
    /// Whether files and directories are synced at all.
    pub(crate) fn syncs(&self) -> bool {
        self.durability != Durability::None
    }

    /// Whether directories are synced after a rename or removal.
    pub(crate) fn syncs_dirs(&self) -> bool {
        self.durability == Durability::Full
    }

    /// Whether operations are audited (then they gather what an [`AuditEntry`] holds).
    pub(crate) fn audited(&self) -> bool {
        self.audit.is_some()
    }

    /// Appends the records of `entries` (one operation, or every file of a commit) to the
    /// audit log, if there is one. The operations succeeded already: a failure is
    /// [`Error::Audit`] about the first entry's file.
    pub(crate) fn audit(&self, entries: &[AuditEntry<'_>]) -> Result<(), Error> {
        let (Some(auditor), Some(first)) = (&self.audit, entries.first()) else {
            return Ok(());
        };
        auditor
            .0
            .append(self, entries)
            .map_err(|source| Error::Audit {
                path: first.path.to_owned(),
                log: auditor.0.path().to_owned(),
                source: Box::new(source),
            })
    }
}

/// Where audit records go (the audit log implements it): the shell records what it did without
/// knowing how a log is kept.
pub(crate) trait AuditSink: Send + Sync + fmt::Debug {
    /// The log's file.
    fn path(&self) -> &Path;

    /// Appends one record per entry, with `disk`'s durability, lock timeout and actor.
    fn append(&self, disk: &Disk, entries: &[AuditEntry<'_>]) -> Result<(), Error>;
}

/// An [`AuditSink`] in a [`Disk`]: two are equal when they write to the same log.
#[derive(Debug, Clone)]
pub(crate) struct Auditor(pub(crate) Arc<dyn AuditSink>);

impl PartialEq for Auditor {
    fn eq(&self, other: &Auditor) -> bool {
        self.0.path() == other.0.path()
    }
}

impl Eq for Auditor {}

/// What an [`AuditRecord`](crate::AuditRecord) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditOp {
    /// [`Options::save`](crate::Options::save) (or one of its async forms) replaced or created the file.
    Save,
    /// [`Options::update`](crate::Options::update) (or its async form) changed the file under its lock.
    Update,
    /// [`Options::remove`](crate::Options::remove) removed the file (with its backups and lock file).
    Remove,
    /// [`Options::restore_backup`](crate::Options::restore_backup) put a backup back in place.
    Restore,
    /// A [`Transaction`](crate::Transaction) commit wrote this file (or removed it, when
    /// [`to_version`](crate::AuditRecord::to_version) is `None`). Every file of one commit has a
    /// record, all with the same [`time`](crate::AuditRecord::time).
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

    pub(crate) fn parse(name: &str) -> Option<AuditOp> {
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

/// One operation to record in the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditEntry<'p> {
    pub(crate) operation: AuditOp,
    pub(crate) path: &'p Path,
    pub(crate) key: Option<&'p str>,
    pub(crate) from_version: Option<u64>,
    pub(crate) to_version: Option<u64>,
    pub(crate) written: Option<Written>,
}

/// What an operation wrote, for its audit record: the file's size and CRC-32C.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) crc32c: u32,
}

impl Written {
    /// The size and CRC-32C of the file `file` (from its start).
    pub(crate) fn of_file(file: &std::fs::File) -> io::Result<Written> {
        let mut buffer = vec![0; 64 << 10];
        let mut written = Written::default();
        loop {
            let read = match read_at(file, &mut buffer, written.bytes) {
                Ok(0) => return Ok(written),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            written.crc32c = crc32c::crc32c_append(written.crc32c, &buffer[..read]);
            written.bytes += read as u64;
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

/// The schema version a file's first bytes tell (a plain envelope or a framed file's header).
/// The schema version of the file `name` in `dir`, as its first bytes say; `None` if it cannot
/// be opened or they do not say.
pub(crate) fn version_in(dir: &dir::Dir, name: &std::ffi::OsStr) -> Option<u64> {
    let file = dir.open_file(name, false).ok()?;
    version_of(&read::head(&file, 64).ok()?)
}

pub(crate) fn version_of(head: &[u8]) -> Option<u64> {
    crate::frame::header_version(head)
        .map(u64::from)
        .or_else(|| crate::codec::leading_version(head))
}

/// An [`Error::Io`] naming `path` and the step `op`.
pub(crate) fn io_error(path: &Path, op: IoOp) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `path` with `name` as its file name.
pub(crate) fn sibling_path(path: &Path, name: impl AsRef<std::ffi::OsStr>) -> PathBuf {
    parent_dir(path).join(name.as_ref())
}

/// Reads into `buffer` at `offset` (`pread`: no shared file position).
pub(crate) fn read_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buffer, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read(buffer)
    }
}

/// Reads exactly `buffer.len()` bytes of `file` at `offset` (`pread`: no shared position).
pub(crate) fn read_exact_at(
    file: &std::fs::File,
    buffer: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buffer)
    }
}

/// Writes all of `bytes` at `offset` of `file` (`pwrite`), through the fault seam: the write
/// path of journals. `path` names the file in the seam.
pub(crate) fn write_all_at(
    file: &std::fs::File,
    path: &Path,
    bytes: &[u8],
    offset: u64,
) -> io::Result<()> {
    faults::fault(IoOp::Write, path)?;
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(bytes)
    }
}

/// `fdatasync` of `file` through the fault seam: what makes a journal's appends durable.
pub(crate) fn sync_data(file: &std::fs::File, path: &Path) -> io::Result<()> {
    faults::fault(IoOp::SyncFile, path)?;
    file.sync_data()
}

/// `fsync` of `file` through the fault seam.
pub(crate) fn sync_all(file: &std::fs::File, path: &Path) -> io::Result<()> {
    faults::fault(IoOp::SyncFile, path)?;
    file.sync_all()
}

/// Truncates (or extends) `file` through the fault seam.
pub(crate) fn set_len(file: &std::fs::File, path: &Path, len: u64) -> io::Result<()> {
    faults::fault(IoOp::Write, path)?;
    file.set_len(len)
}

/// Asks the kernel to start writing `file`'s dirty pages now, without waiting: the fsync that
/// follows then finds them on their way (RELIABILITY.md and BENCHMARKS.md measure batches:
/// with the writeback of every file started first, 1,000 small files sync several times
/// faster than one after the other).
pub(crate) fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range on a descriptor this process owns; a failure only loses the
        // head start, and the fsync after it reports any real error.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
