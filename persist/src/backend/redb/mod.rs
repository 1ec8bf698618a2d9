//! A collection in a redb database: every entry a row of one file, each write one transaction.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use ::redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, TableError, WriteTransaction,
};

use super::{Backend, Change, Condition, Entry, Names, Stored, Tag, Written};
use crate::error::IoOp;
use crate::settings::Settings;
use crate::shell::commit::{create_file, open_parent};
use crate::shell::read::open_regular_file;
use crate::shell::{io_error, parent_dir};
use crate::{Durability, Error};

mod row;
mod scan;

/// The entries: name to a row of the entry's tag and bytes (the layout is in `row`).
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("persist_entries");
/// The database's own records: [`FORMAT`] and [`SEQUENCE`].
const META: TableDefinition<&str, u64> = TableDefinition::new("persist_meta");
/// The layout of the tables, [`FORMAT_VERSION`] for this one.
const FORMAT: &str = "format";
/// The last tag given to a write.
const SEQUENCE: &str = "sequence";
/// Layout 2: rows of `row` (layout 1's rows were an 8-byte big-endian tag and the bytes as
/// they were put; a database of layout 1 is rewritten in layout 2 when it opens).
const FORMAT_VERSION: u64 = 2;

/// A collection in one [redb](https://www.redb.org) database file, for many small entries: a
/// put is one write transaction and one `fdatasync` of the database file, where the
/// [`Local`](super::Local) directory creates, syncs and renames a file and syncs its shard
/// directory; a [`put_many`](Backend::put_many) is one transaction, all entries or none.
///
/// Each entry is a row of the table `persist_entries`: its name, then its tag and the bytes
/// that were put (a persist file's bytes, so layers, migrations, `migrate_all` and the cache
/// work as on any backend), without the envelope's head `{"version":V,"key":K,"data":` where
/// the name holds the key (FORMAT.md, section 5): a get gives back exactly the bytes put. Tags come from one sequence kept in the database (never
/// reused, not even after a delete or a [`clear`](Backend::clear)), and each conditional write
/// compares and stores inside one write transaction, so compare-and-swap is exact.
/// [`modify`](Backend::modify) runs its change inside the write transaction: it never conflicts
/// (writers wait for each other, so the change must not write to the same database). Scans
/// read in name order (bytewise), a page of names per read transaction.
///
/// Commits are durable ([`Durability::Full`]): a put that returned survives a power cut (redb
/// commits copy-on-write, and a crash leaves the last commit). With [`Durability::None`]
/// ([`durability`](Redb::durability)) commits are not synced: they are kept by the next
/// durable commit or when the database closes, and a crash of the process or the machine
/// rolls the database back to the last durable commit, whole.
///
/// The database file is created with mode 0600 (its missing directories 0700). One process
/// has it open at a time (redb locks the file): [`open`](Redb::open) waits for another
/// process to close it, up to 30 seconds by default ([`open_waiting`](Redb::open_waiting)).
/// Within a process, every [`Redb`] opened on the same file shares one database. A symbolic
/// link at the path is followed; a directory, a FIFO or another non-file is refused, and so is
/// a redb database of another program (tables, none of persist's). Errors name the database
/// file, and an entry as `<database file>/<name>`.
///
/// No earlier copies of an entry are kept ([`Options::backups`](crate::Options::backups) and
/// generations are the local directory's): a damaged entry is an error under any
/// [`OnCorrupt`](crate::OnCorrupt).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use persist::backend::Redb;
/// use persist::{Collection, Options, Persisted};
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Session { user: String }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let backend = Redb::open(dir.path().join("sessions.redb"))?;
/// let sessions = Collection::<Session>::with_backend(Arc::new(backend), Options::new());
/// sessions.put("s1", &Session { user: "ada".into() })?;
/// assert_eq!(sessions.get("s1")?.unwrap().user, "ada");
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Clone)]
pub struct Redb {
    shared: Arc<Shared>,
    durability: ::redb::Durability,
}

/// One open database, shared by every [`Redb`] of this process on its file.
struct Shared {
    path: PathBuf,
    db: Database,
    /// The file's device and inode: its key in [`OPEN`].
    id: (u64, u64),
}

/// The databases this process has open, by file identity.
static OPEN: Mutex<Option<OpenDatabases>> = Mutex::new(None);

/// The open databases by file identity (device, inode).
type OpenDatabases = HashMap<(u64, u64), Weak<Shared>>;

fn open_databases() -> MutexGuard<'static, Option<OpenDatabases>> {
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut open = open_databases();
        if let Some(open) = open.as_mut()
            && open
                .get(&self.id)
                .is_some_and(|weak| weak.upgrade().is_none())
        {
            open.remove(&self.id);
        }
    }
}

impl fmt::Debug for Redb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redb")
            .field("path", &self.shared.path)
            .field("durability", &self.durability)
            .finish()
    }
}

impl Redb {
    /// What `read` makes of the row of the entry `name` (its tag, then its bytes), read in a
    /// read transaction of its own; `None` when there is none.
    fn row<R>(
        &self,
        name: &str,
        read: impl FnOnce(&[u8], &dyn Fn() -> PathBuf) -> Result<R, Error>,
    ) -> Result<Option<R>, Error> {
        let path = || self.locate(name);
        let txn = self
            .db()
            .begin_read()
            .map_err(|error| failed(&path(), IoOp::Read)(error))?;
        let entries = txn
            .open_table(ENTRIES)
            .map_err(|error| failed(&path(), IoOp::Read)(error))?;
        let row = entries
            .get(name)
            .map_err(|error| failed(&path(), IoOp::Read)(error))?;
        row.map(|row| read(row.value(), &path)).transpose()
    }

    /// The database file `path`, created if missing (mode 0600, its missing directories 0700);
    /// when another process has it open, waits up to 30 seconds (persist's default
    /// [`Options::lock_timeout`](crate::Options::lock_timeout)) for it to close it.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegularFile`] when `path` is a directory, a FIFO or another non-file;
    /// [`Error::LockTimeout`] when another process kept the database open for the whole wait;
    /// [`Error::Unsupported`] for a database of a newer layout; [`Error::Io`] when the file
    /// cannot be created or read, or is no redb database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Redb::open_waiting(path, Some(crate::settings::DEFAULT_LOCK_TIMEOUT))
    }

    /// [`open`](Redb::open), waiting up to `lock_timeout` for another process to close the
    /// database (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// See [`open`](Redb::open).
    pub fn open_waiting(
        path: impl AsRef<Path>,
        lock_timeout: Option<Duration>,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let shared = open_shared(&path, lock_timeout)?;
        Ok(Redb {
            shared,
            durability: ::redb::Durability::Immediate,
        })
    }

    /// This handle with commits of `durability`: [`Durability::Full`] and
    /// [`Durability::FileSync`] commit durably (one sync of the database file),
    /// [`Durability::None`] without a sync (see [`Redb`]). Other handles on the same database
    /// keep theirs.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = match durability {
            Durability::Full | Durability::FileSync => ::redb::Durability::Immediate,
            Durability::None => ::redb::Durability::None,
        };
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn db(&self) -> &Database {
        &self.shared.db
    }

    /// A write transaction with this handle's durability; errors name `path`.
    fn begin(&self, path: &Path) -> Result<WriteTransaction, Error> {
        let mut txn = self.db().begin_write().map_err(failed(path, IoOp::Write))?;
        txn.set_durability(self.durability)
            .map_err(failed(path, IoOp::Write))?;
        Ok(txn)
    }
}

/// Commits `txn`; errors name `path`.
fn commit(txn: WriteTransaction, path: &Path) -> Result<(), Error> {
    txn.commit().map_err(failed(path, IoOp::SyncFile))
}

/// Opens (or finds open in this process) the database at `path`.
fn open_shared(path: &Path, lock_timeout: Option<Duration>) -> Result<Arc<Shared>, Error> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        let file = open_file(path)?;
        let id = identity(&file, path)?;
        let mut guard = open_databases();
        let open = guard.get_or_insert_with(HashMap::new);
        if let Some(shared) = open.get(&id).and_then(Weak::upgrade) {
            return Ok(shared);
        }
        match Database::builder().create_file(file) {
            Ok(db) => {
                let shared = Arc::new(Shared {
                    path: path.to_owned(),
                    db,
                    id,
                });
                let ready = prepare(&shared);
                if ready.is_ok() {
                    open.insert(id, Arc::downgrade(&shared));
                }
                // Released before a failed database is dropped: its drop takes the lock.
                drop(guard);
                ready?;
                return Ok(shared);
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {}
            Err(error) => return Err(failed(path, IoOp::Open)(error)),
        }
        drop(guard);
        // Another process has it open (or a thread of this one is opening it): wait.
        let waited = started.elapsed();
        if lock_timeout.is_some_and(|timeout| waited >= timeout) {
            return Err(Error::LockTimeout {
                path: path.to_owned(),
                lock_path: path.to_owned(),
                waited,
            });
        }
        std::thread::sleep(crate::retry::full_jitter(backoff).max(Duration::from_micros(500)));
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// The database file, opened for reading and writing as the shell opens a file (through a
/// link, never blocking on a FIFO, anything but a regular file refused). A missing one is
/// created first through the shell, empty and exclusively (mode 0600, its missing directories
/// 0700, the file and its directory synced): of two openers, the one that comes second opens
/// the other's.
fn open_file(path: &Path) -> Result<File, Error> {
    match open_regular_file(path, true) {
        Err(Error::NotFound { .. }) => {}
        opened => return opened.map(|(file, _)| file),
    }
    let Some(name) = path.file_name() else {
        return Err(Error::InvalidPath {
            path: path.to_owned(),
            reason: "the path names no file".into(),
        });
    };
    let disk = &Settings::DEFAULT.disk;
    let dir = open_parent(path, parent_dir(path), disk.durability)?;
    match create_file(disk, &dir, name, &[]) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
        // The database file itself, not a temporary file beside it.
        Err(Error::Io {
            path,
            op: IoOp::CreateTemp,
            source,
        }) => {
            return Err(Error::Io {
                path,
                op: IoOp::Create,
                source,
            });
        }
        created => created?,
    }
    open_regular_file(path, true).map(|(file, _)| file)
}

/// The device and inode of the open file.
fn identity(file: &File, path: &Path) -> Result<(u64, u64), Error> {
    let metadata = file.metadata().map_err(io_error(path, IoOp::Metadata))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        // Without inodes, the path names the database.
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let _ = metadata;
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(path);
        Ok((0, hash))
    }
}

/// Creates the tables of a new database (one durable commit), or checks the layout of an
/// existing one.
fn prepare(shared: &Shared) -> Result<(), Error> {
    let path = &shared.path;
    let read = shared.db.begin_read().map_err(failed(path, IoOp::Read))?;
    let format = match read.open_table(META) {
        Ok(meta) => meta
            .get(FORMAT)
            .map_err(failed(path, IoOp::Read))?
            .map(|format| format.value()),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(error) => return Err(failed(path, IoOp::Read)(error)),
    };
    // A database with tables but none of persist's is another program's: left alone.
    let foreign = format.is_none()
        && read
            .list_tables()
            .map_err(failed(path, IoOp::Read))?
            .next()
            .is_some();
    drop(read);
    if foreign {
        return Err(Error::Unsupported {
            path: path.clone(),
            reason: "the redb database holds tables of another program, not persist's entries"
                .into(),
        });
    }
    match format {
        Some(FORMAT_VERSION) => Ok(()),
        Some(1) => upgrade(shared),
        Some(newer) => Err(Error::Unsupported {
            path: path.clone(),
            reason: format!(
                "the database holds persist's entries in layout {newer}, this version reads \
                 layout {FORMAT_VERSION}: open it with a newer persist"
            ),
        }),
        None => {
            let txn = shared.db.begin_write().map_err(failed(path, IoOp::Write))?;
            {
                txn.open_table(ENTRIES).map_err(failed(path, IoOp::Write))?;
                let mut meta = txn.open_table(META).map_err(failed(path, IoOp::Write))?;
                meta.insert(FORMAT, FORMAT_VERSION)
                    .map_err(failed(path, IoOp::Write))?;
            }
            txn.commit().map_err(failed(path, IoOp::SyncFile))
        }
    }
}

/// Rewrites a database of layout 1 (each row an 8-byte big-endian tag, then the bytes) in
/// this layout, in one write transaction: every row or none.
fn upgrade(shared: &Shared) -> Result<(), Error> {
    let path = &shared.path;
    let txn = shared.db.begin_write().map_err(failed(path, IoOp::Write))?;
    {
        let mut entries = txn.open_table(ENTRIES).map_err(failed(path, IoOp::Write))?;
        let mut old = Vec::new();
        for stored in entries.iter().map_err(failed(path, IoOp::Read))? {
            let (name, row) = stored.map_err(failed(path, IoOp::Read))?;
            old.push((name.value().to_owned(), row.value().to_vec()));
        }
        let mut row = Vec::new();
        for (name, was) in old {
            let locate = || path.join(&name);
            let tag = was
                .get(..8)
                .and_then(|tag| tag.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| damaged_row(locate()))?;
            insert(&mut entries, &name, (tag, &was[8..]), &mut row, locate)?;
        }
        let mut meta = txn.open_table(META).map_err(failed(path, IoOp::Write))?;
        meta.insert(FORMAT, FORMAT_VERSION)
            .map_err(failed(path, IoOp::Write))?;
    }
    txn.commit().map_err(failed(path, IoOp::SyncFile))
}

/// An [`Error::Io`] at `path` from one of redb's errors (its I/O error when it is one).
fn failed<E: Into<::redb::Error>>(path: &Path, op: IoOp) -> impl FnOnce(E) -> Error + '_ {
    move |error| {
        let source = match error.into() {
            ::redb::Error::Io(source) => source,
            ::redb::Error::DatabaseAlreadyOpen => io::Error::new(
                io::ErrorKind::WouldBlock,
                "the redb database is open in another process",
            ),
            error @ (::redb::Error::Corrupted(_) | ::redb::Error::UpgradeRequired(_)) => {
                io::Error::new(io::ErrorKind::InvalidData, error)
            }
            error => io::Error::other(error),
        };
        Error::Io {
            path: path.to_owned(),
            op,
            source,
        }
    }
}

/// The tag of a row.
fn tag_of(row: &[u8]) -> Option<u64> {
    row::tag(row)
}

/// A tag's text: its decimal digits (written here, without the formatting machinery: a get
/// makes one).
fn tag_text(tag: u64) -> Tag {
    let mut digits = Vec::with_capacity(20);
    crate::codec::put_decimal(&mut digits, tag);
    Tag::new(String::from_utf8_lossy(&digits).into_owned())
}

/// The number a tag's text spells, as [`tag_text`] writes it (digits only, no leading zero).
fn tag_value(tag: &Tag) -> Option<u64> {
    let text = tag.as_str();
    let canonical =
        text.bytes().all(|byte| byte.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Whether `condition` holds for an entry whose tag is `current`.
fn holds(condition: &Condition, current: Option<u64>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::Absent => current.is_none(),
        Condition::Matches(tag) => current.is_some_and(|current| tag_value(tag) == Some(current)),
    }
}

/// The tag of the entry `name` in the write transaction's table, `None` when there is none.
fn current_tag(
    entries: &Table<'_, &str, &[u8]>,
    name: &str,
    path: &Path,
) -> Result<Option<u64>, Error> {
    Ok(entries
        .get(name)
        .map_err(failed(path, IoOp::Read))?
        .and_then(|row| tag_of(row.value())))
}

/// Takes `count` tags from the sequence: the first of them.
fn take_tags(txn: &WriteTransaction, count: u64, path: &Path) -> Result<u64, Error> {
    let mut meta = txn.open_table(META).map_err(failed(path, IoOp::Write))?;
    let last = meta
        .get(SEQUENCE)
        .map_err(failed(path, IoOp::Read))?
        .map_or(0, |last| last.value());
    meta.insert(SEQUENCE, last + count)
        .map_err(failed(path, IoOp::Write))?;
    Ok(last + 1)
}

/// Stores `bytes` under `name` with `tag`; `row` is a buffer to reuse, `locate` names the
/// entry in an error.
fn insert(
    entries: &mut Table<'_, &str, &[u8]>,
    name: &str,
    (tag, bytes): (u64, &[u8]),
    row: &mut Vec<u8>,
    locate: impl Fn() -> PathBuf,
) -> Result<(), Error> {
    row::encode(name, tag, bytes, row);
    entries
        .insert(name, row.as_slice())
        .map_err(|error| failed(&locate(), IoOp::Write)(error))?;
    Ok(())
}

/// The entry of the row stored under `name`; `locate` names it in an error.
fn stored(name: &str, row: &[u8], locate: impl FnOnce() -> PathBuf) -> Result<Stored, Error> {
    match (tag_of(row), row::entry(name, row)) {
        (Some(tag), Some(bytes)) => Ok(Stored {
            bytes,
            tag: tag_text(tag),
        }),
        _ => Err(damaged_row(locate())),
    }
}

/// The error of a row that is not in persist's layout.
fn damaged_row(path: PathBuf) -> Error {
    Error::Io {
        path,
        op: IoOp::Read,
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            "the row is not in persist's layout: not written by persist, or damaged",
        ),
    }
}

impl Backend for Redb {
    fn root(&self) -> PathBuf {
        self.shared.path.clone()
    }

    fn locate(&self, name: &str) -> PathBuf {
        self.shared.path.join(name)
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        self.row(name, |row, path| stored(name, row, path))
    }

    /// [`get`](Backend::get) without making the tag's text.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.row(name, |row, path| {
            row::entry(name, row).ok_or_else(|| damaged_row(path()))
        })
    }

    /// Lends the entry inside the read transaction, with its head left out when the name is
    /// its key (no copy, no allocation).
    fn read_with(&self, name: &str, visit: &mut dyn FnMut(super::Lent<'_>)) -> Result<bool, Error> {
        let found = self.row(name, |row, path| {
            row::lend(name, row, &mut *visit).ok_or_else(|| damaged_row(path()))
        })?;
        Ok(found.is_some())
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let path = self.locate(name);
        let txn = self.begin(&path)?;
        let tag = {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(failed(&path, IoOp::Write))?;
            // Read only for a condition to check.
            if *condition != Condition::Always {
                let current = current_tag(&entries, name, &path)?;
                if !holds(condition, current) {
                    drop(entries);
                    txn.abort().map_err(failed(&path, IoOp::Write))?;
                    return Ok(Written::Conflict);
                }
            }
            let tag = take_tags(&txn, 1, &path)?;
            insert(
                &mut entries,
                name,
                (tag, entry.bytes),
                &mut Vec::new(),
                || path.clone(),
            )?;
            tag
        };
        commit(txn, &path)?;
        Ok(Written::Done(tag_text(tag)))
    }

    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let path = self.locate(name);
        let txn = self.begin(&path)?;
        let removed = {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(failed(&path, IoOp::Remove))?;
            let current = current_tag(&entries, name, &path)?;
            let removed = current.is_some() && holds(condition, current);
            if removed {
                entries.remove(name).map_err(failed(&path, IoOp::Remove))?;
            }
            removed
        };
        match removed {
            true => commit(txn, &path)?,
            false => txn.abort().map_err(failed(&path, IoOp::Remove))?,
        }
        Ok(removed)
    }

    /// Every name, in name order, in one read transaction.
    fn list(&self) -> Result<Vec<String>, Error> {
        let path = self.path();
        let txn = self.db().begin_read().map_err(failed(path, IoOp::Read))?;
        let entries = txn.open_table(ENTRIES).map_err(failed(path, IoOp::Read))?;
        let mut names = Vec::with_capacity(
            usize::try_from(entries.len().map_err(failed(path, IoOp::Read))?).unwrap_or(0),
        );
        for row in entries.iter().map_err(failed(path, IoOp::Read))? {
            let (name, _) = row.map_err(failed(path, IoOp::Read))?;
            names.push(name.value().to_owned());
        }
        Ok(names)
    }

    /// A range of the table from `prefix`, in name order (bytewise), each page of names in a
    /// read transaction of its own that starts after the last name of the page before: a scan
    /// consumed slowly never keeps a snapshot (and the file space it pins) for longer than a
    /// page, and writers never wait for it.
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        Ok(Box::new(scan::Scan::new(
            Arc::clone(&self.shared),
            prefix.to_owned(),
        )?))
    }

    /// One write transaction: every entry is stored, or none is.
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.path();
        let txn = self.begin(path)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(failed(path, IoOp::Write))?;
            let first_tag = take_tags(&txn, entries.len() as u64, path)?;
            let mut row = Vec::new();
            for (tag, (name, entry)) in (first_tag..).zip(entries) {
                insert(&mut table, name, (tag, entry.bytes), &mut row, || {
                    self.locate(name)
                })?;
            }
        }
        commit(txn, path)
    }

    /// Removes every entry in one write transaction (the tag sequence goes on).
    fn clear(&self) -> Result<(), Error> {
        let path = self.path();
        let txn = self.begin(path)?;
        txn.delete_table(ENTRIES)
            .map_err(failed(path, IoOp::Remove))?;
        txn.open_table(ENTRIES).map_err(failed(path, IoOp::Write))?;
        commit(txn, path)
    }

    /// Inside one write transaction: `change` runs once, and there is never a conflict.
    fn modify(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<&Stored>) -> Result<Change, Error>,
    ) -> Result<Written, Error> {
        let path = self.locate(name);
        let txn = self.begin(&path)?;
        let tag = {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(failed(&path, IoOp::Write))?;
            let current = entries
                .get(name)
                .map_err(failed(&path, IoOp::Read))?
                .map(|row| stored(name, row.value(), || path.clone()))
                .transpose()?;
            let bytes = match change(current.as_ref())? {
                Change::Keep => {
                    drop(entries);
                    txn.abort().map_err(failed(&path, IoOp::Write))?;
                    return Ok(super::kept(current));
                }
                Change::Put { bytes, .. } => bytes,
            };
            let tag = take_tags(&txn, 1, &path)?;
            insert(&mut entries, name, (tag, &bytes), &mut Vec::new(), || {
                path.clone()
            })?;
            tag
        };
        commit(txn, &path)?;
        Ok(Written::Done(tag_text(tag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_programs_database_and_a_newer_layout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.redb");
        const THEIRS: TableDefinition<&str, u64> = TableDefinition::new("theirs");
        {
            let db = Database::create(&other).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(THEIRS).unwrap().insert("a", 1).unwrap();
            txn.commit().unwrap();
        }
        let error = Redb::open(&other).unwrap_err();
        assert!(
            matches!(&error, Error::Unsupported { path, .. } if *path == other),
            "{error:?}"
        );
        let db = Database::create(&other).unwrap();
        let read = db.begin_read().unwrap();
        assert!(read.open_table(META).is_err(), "nothing was added");
        drop((read, db));

        let newer = dir.path().join("newer.redb");
        drop(Redb::open(&newer).unwrap());
        {
            let db = Database::create(&newer).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(FORMAT, FORMAT_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let error = Redb::open(&newer).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("layout {}", FORMAT_VERSION + 1)),
            "{error}"
        );
    }

    #[test]
    fn a_database_of_layout_1_is_rewritten_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let envelope = br#"{"version":1,"key":"alice","data":{"n":1}}"#;
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(FORMAT, 1).unwrap();
                meta.insert(SEQUENCE, 7).unwrap();
                let mut entries = txn.open_table(ENTRIES).unwrap();
                for (name, tag, bytes) in [("alice", 6_u64, &envelope[..]), ("raw", 7, b"\x00z")] {
                    let mut row = tag.to_be_bytes().to_vec();
                    row.extend_from_slice(bytes);
                    entries.insert(name, row.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let redb = Redb::open(&path).unwrap();
        let alice = redb.get("alice").unwrap().unwrap();
        assert_eq!(
            (alice.bytes.as_slice(), alice.tag.as_str()),
            (&envelope[..], "6")
        );
        let raw = redb.get("raw").unwrap().unwrap();
        assert_eq!(
            (raw.bytes.as_slice(), raw.tag.as_str()),
            (&b"\x00z"[..], "7")
        );
        // The next tag follows the sequence, and the layout is the new one.
        let Written::Done(tag) = redb
            .put(
                "bob",
                Entry {
                    key: "bob",
                    bytes: b"{}",
                    version: 1,
                },
                &Condition::Always,
            )
            .unwrap()
        else {
            panic!("an unconditional put");
        };
        assert_eq!(tag.as_str(), "8");
        let read = redb.db().begin_read().unwrap();
        let meta = read.open_table(META).unwrap();
        assert_eq!(meta.get(FORMAT).unwrap().unwrap().value(), FORMAT_VERSION);
    }

    #[test]
    fn tags_are_decimal_and_conditions_exact() {
        assert_eq!(tag_text(0).as_str(), "0");
        assert_eq!(tag_text(u64::MAX).as_str(), u64::MAX.to_string());
        assert!(holds(&Condition::Matches(tag_text(42)), Some(42)));
        assert!(!holds(&Condition::Matches(Tag::new("042")), Some(42)));
        assert!(!holds(&Condition::Matches(Tag::new("+42")), Some(42)));
        assert!(!holds(&Condition::Matches(Tag::new("x")), Some(42)));
        assert!(!holds(&Condition::Matches(Tag::new("")), Some(0)));
        assert!(holds(&Condition::Matches(Tag::new("0")), Some(0)));
        assert!(!holds(&Condition::Matches(tag_text(42)), None));
        assert!(holds(&Condition::Absent, None));
        assert!(!holds(&Condition::Absent, Some(1)));
    }
}
