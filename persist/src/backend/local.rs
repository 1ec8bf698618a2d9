//! A collection in a directory of files: each entry a persist file, written through the
//! shell's durable write, spread over 256 shard directories. Everything is reached from the
//! collection's directory, held open, without following a symbolic link or crossing a mount.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Backend, Change, Condition, Entry, EntryRecovery, Feed, Names, Stored, Tag, Written};
use crate::error::IoOp;
use crate::settings::Settings;
use crate::shell::commit::{Target, Write, bytes, create_dirs, escape, replace};
use crate::shell::dir::{Dir, Escape, Kind, Lookup, Stat};
use crate::shell::lock::{self, LockGuard, Scope};
use crate::shell::names::{self, Sibling, TXN_LOCK, TXN_RECORD, TXN_STAGING};
use crate::shell::read::{read_open, too_large};
use crate::shell::{Disk, backup, generations, io_error, remove};
use crate::txn::{Mode, Transaction};
use crate::{Error, FileKind};

/// A directory of entries: `<dir>/<shard>/<name>`, where the shard is two hex digits of a
/// hash of the name (FORMAT.md, section 5). Each entry is written like a state file: a
/// temporary file, fsync, rename, fsync of the directory, and a backup of an entry of another
/// schema version (the [`Options::backups`](crate::Options::backups) rule). Every single write
/// takes the entry's lock file (`<name>.lock` beside it, removed when the write is done),
/// shared with other processes, and so does [`Backend::modify`], which therefore needs no
/// retry, with the directory's transaction lock shared (a batch holds it alone); a delete
/// removes the entry with its backups, so a deleted key leaves nothing behind.
///
/// The directory is opened once, when the backend is made, and everything in it is reached
/// from that handle: a shard or an entry that is a symbolic link, or another mount, is never
/// followed (reads skip it or refuse it, writes refuse it).
#[derive(Debug, Clone)]
pub struct Local {
    dir: PathBuf,
    root: Arc<Dir>,
    disk: Disk,
}

impl Local {
    /// The directory `dir` (created if missing, mode 0700), written with the default
    /// [`Options`](crate::Options).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory cannot be created, [`Error::NotRegularFile`] when
    /// something else than a directory is there.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Local::with_disk(dir.into(), Settings::DEFAULT.disk.clone())
    }

    /// `dir`, written with the durability, lock timeout, backups and size cap of `disk`.
    pub(crate) fn with_disk(dir: PathBuf, disk: Disk) -> Result<Self, Error> {
        // Absolute now: the directory is held open, and its entries are named by it (errors,
        // audit records) whatever the working directory becomes.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let root = match Dir::open_root(&dir) {
            Ok(root) => root,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                create_dirs(&dir, &dir, disk.durability)?;
                Dir::open_root(&dir).map_err(io_error(&dir, IoOp::CreateDir))?
            }
            Err(error) => {
                return Err(match std::fs::metadata(&dir) {
                    Ok(metadata) if !metadata.is_dir() => Error::NotRegularFile {
                        path: dir,
                        kind: FileKind::of(metadata.file_type()),
                    },
                    _ => io_error(&dir, IoOp::Open)(error),
                });
            }
        };
        let local = Local {
            dir,
            root: Arc::new(root),
            disk,
        };
        local.settle()?;
        Ok(local)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<shard>/<name>`, for messages.
    fn path(&self, name: &str) -> PathBuf {
        let mut path = PathBuf::with_capacity(self.dir.as_os_str().len() + name.len() + 4);
        path.push(&self.dir);
        path.push(shard_of(name));
        path.push(name);
        path
    }

    /// The shard directory of `name`; created (mode 0700) if missing and `create`. A shard
    /// that is a link or another mount is refused.
    fn shard(&self, name: &str, create: bool) -> Result<Option<Arc<Dir>>, Error> {
        let shard = shard_of(name);
        let shard: &OsStr = shard.as_ref();
        let looked = match create {
            true => self.root.child_or_create(shard, self.disk.syncs()),
            false => self.root.child(shard),
        };
        let op = if create { IoOp::CreateDir } else { IoOp::Open };
        match looked.map_err(io_error(&self.root.join(shard), op))? {
            Lookup::Found(dir) => Ok(Some(Arc::new(dir))),
            Lookup::Missing => Ok(None),
            Lookup::Escape(escaped) => Err(escape(escaped)),
        }
    }

    /// The tag of the entry `name` in `shard` now, `None` when there is none.
    fn tag_now(shard: &Dir, name: &str, path: &Path) -> Result<Option<Tag>, Error> {
        Ok(shard
            .stat(OsStr::new(name))
            .map_err(io_error(path, IoOp::Metadata))?
            .map(|stat| tag_of(&stat)))
    }

    /// Whether `condition` holds for the entry `name` in `shard` now.
    fn holds(shard: &Dir, name: &str, path: &Path, condition: &Condition) -> Result<bool, Error> {
        let now = Local::tag_now(shard, name, path)?;
        Ok(match condition {
            Condition::Always => true,
            Condition::Absent => now.is_none(),
            Condition::Matches(tag) => now.as_ref() == Some(tag),
        })
    }

    /// The file `file` of the shard of the entry `name` (the entry itself or one of its
    /// siblings), reached from the directory held open without following a link or crossing a
    /// mount, with the opened file's tag; `None` if there is none.
    fn read_stored(&self, name: &str, file: &OsStr) -> Result<Option<Stored>, Error> {
        Ok(self.read_file(name, file)?.map(|(bytes, stat)| Stored {
            bytes,
            tag: tag_of(&stat),
        }))
    }

    /// [`read_stored`](Local::read_stored), with the opened file's state instead of its tag.
    fn read_file(&self, name: &str, file: &OsStr) -> Result<Option<(Vec<u8>, Stat)>, Error> {
        let shard = shard_of(name);
        let relative = [shard.as_ref(), file];
        let opened = match self.root.open_file_beneath(&relative) {
            Ok(opened) => opened,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.refused(name, error)),
        };
        let path = || self.path(name).with_file_name(file);
        let stat =
            Dir::stat_file(&opened).map_err(|error| io_error(&path(), IoOp::Metadata)(error))?;
        if stat.kind != Kind::File {
            return Err(Error::NotRegularFile {
                path: path(),
                kind: stat.kind.file_kind(),
            });
        }
        let limit = self.disk.max_size;
        if stat.size > limit {
            return Err(too_large(&path(), stat.size, limit));
        }
        // The state is the opened file's: its tag names exactly the bytes read (a save
        // replaces the inode, it never rewrites one in place).
        let bytes = read_open(&path(), &opened, stat.size, limit)?;
        Ok(Some((bytes, stat)))
    }

    /// The entry's lock, taken: its lock file (`<name>.lock`), created if missing, removed
    /// again when the lock is released, so that a shard holds one name per entry between
    /// writes.
    fn lock_entry(&self, shard: &Arc<Dir>, name: &str, path: &Path) -> Result<EntryLock, Error> {
        let lock_name = names::name_for(OsStr::new(name), Sibling::Lock);
        lock::exclusive_in(
            shard,
            &lock_name,
            path,
            self.disk.lock_timeout,
            Scope::Shared,
        )
        .map(|guard| EntryLock(Some(guard)))
    }

    /// Writes `entry` as `name` in `shard` (a backup of another version kept); returns the
    /// new file's tag.
    fn write(
        &self,
        shard: &Arc<Dir>,
        name: &str,
        entry: Entry<'_>,
        path: PathBuf,
    ) -> Result<Tag, Error> {
        let target = Target::beneath(shard, OsStr::new(name), path)?;
        let write = Write {
            version: Some(entry.version),
            ..Write::default()
        };
        let file = replace(&self.disk, &target, &write, bytes(entry.bytes))?;
        let stat = Dir::stat_file(&file).map_err(io_error(&target.named, IoOp::Metadata))?;
        Ok(tag_of(&stat))
    }
}

/// The shard of an entry name: two hex digits of its CRC-32C.
fn shard_of(name: &str) -> Shard {
    Shard::at(shard_index(name))
}

/// What a single write of an entry holds: the entry's lock, released first, and the batches'
/// lock, shared.
struct WriteLock {
    entry: EntryLock,
    _batches: LockGuard,
}

/// An entry's lock, held: its lock file is removed while it is still held, when it is released
/// (whoever waits on it then finds that the name no longer stands for the file it holds, and
/// starts again on a new one: the lock protocol `delete` relies on too). Nothing is synced: a
/// lock file that comes back after a power cut is empty and harmless.
struct EntryLock(Option<LockGuard>);

impl EntryLock {
    /// Releases the lock, its file removed first; an error if the removal failed.
    fn remove(mut self) -> Result<(), Error> {
        match self.0.take() {
            Some(guard) => guard.remove(crate::shell::Durability::None),
            None => Ok(()),
        }
    }
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        if let Some(guard) = self.0.take() {
            // A lock file left behind costs a name in the shard, nothing else.
            let _ = guard.remove(crate::shell::Durability::None);
        }
    }
}

/// The turn of this process's batches on the directory `root`: one at a time (a transaction
/// root admits one transaction per process), the others wait here.
fn batch_gate(root: &Dir) -> Arc<std::sync::Mutex<()>> {
    type Gates = std::collections::HashMap<(u64, u64), Arc<std::sync::Mutex<()>>>;
    static GATES: std::sync::Mutex<Option<Gates>> = std::sync::Mutex::new(None);
    let mut gates = GATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Without an identity (no Unix calls), one turn for every directory.
    let identity = root.identity().unwrap_or((0, 0));
    Arc::clone(
        gates
            .get_or_insert_with(Gates::new)
            .entry(identity)
            .or_default(),
    )
}

/// The number of an entry's shard: the low byte of its name's CRC-32C.
fn shard_index(name: &str) -> usize {
    (crc32c::crc32c(name.as_bytes()) & 0xff) as usize
}

/// A shard's name: two ASCII hex digits.
struct Shard([u8; 2]);

impl Shard {
    /// The shard numbered `index` (0 to 255).
    fn at(index: usize) -> Shard {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        Shard([HEX[(index >> 4) & 0xf], HEX[index & 0xf]])
    }
}

impl AsRef<OsStr> for Shard {
    fn as_ref(&self) -> &OsStr {
        OsStr::new(std::str::from_utf8(&self.0).unwrap_or("00"))
    }
}

impl AsRef<Path> for Shard {
    fn as_ref(&self) -> &Path {
        Path::new(AsRef::<OsStr>::as_ref(self))
    }
}

/// A file's identity and state: device, inode, size, modification time.
fn tag_of(stat: &Stat) -> Tag {
    Tag::new(format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        stat.dev, stat.ino, stat.size, stat.mtime.0, stat.mtime.1
    ))
}

/// The names in the shard `index` that begin with `prefix`, in name order: regular files with an
/// entry's name, in a real shard directory (a link or a mount is skipped, as is every file
/// persist keeps beside an entry).
fn names_in(root: &Dir, dir: &Path, index: usize, prefix: &str) -> Result<Vec<String>, Error> {
    let shard = Shard::at(index);
    let shard_path = dir.join(&shard);
    let Lookup::Found(listed) = root
        .child(shard.as_ref())
        .map_err(io_error(&shard_path, IoOp::Open))?
    else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for (entry, kind) in listed.list().map_err(io_error(&shard_path, IoOp::Read))? {
        // Entry names never hold a dot; lock files, backups and temporary files do.
        if kind == Kind::File
            && let Some(name) = entry.to_str()
            && name.starts_with(prefix)
            && !name.contains('.')
            && names::classify_any(&entry).is_none()
        {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Whether `name` (in the collection's directory) is a shard's: two lowercase hex digits.
pub(super) fn is_shard_name(name: &OsStr) -> bool {
    name.len() == 2
        && name.to_str().is_some_and(|name| {
            name.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

impl Backend for Local {
    fn root(&self) -> PathBuf {
        self.dir.clone()
    }

    fn locate(&self, name: &str) -> PathBuf {
        self.path(name)
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        self.read_stored(name, OsStr::new(name))
    }

    /// The file's tag from its metadata, nothing read; `None` for anything but a regular file
    /// (which a read would refuse, and a scan skips).
    fn tag(&self, name: &str) -> Result<Option<Tag>, Error> {
        let Some(shard) = self.shard(name, false)? else {
            return Ok(None);
        };
        let stat = shard
            .stat(OsStr::new(name))
            .map_err(io_error(&self.path(name), IoOp::Metadata))?;
        Ok(stat
            .filter(|stat| stat.kind == Kind::File)
            .map(|stat| tag_of(&stat)))
    }

    /// File events on the directory and its shard directories (the process's one watcher,
    /// shared with `Live`), each changed entry's tag compared with the one last seen; the
    /// directory listed whole after lost events. Without file events (the `live` feature off,
    /// or no watch to be had), the directory is listed every half second.
    fn watch(
        &self,
        prefixes: &[String],
        _poll: Option<std::time::Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        Ok(Some(Box::new(super::local_feed::LocalFeed::new(
            self.clone(),
            prefixes.to_vec(),
        )?)))
    }

    /// The entry's bytes, no tag made.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .read_file(name, OsStr::new(name))?
            .map(|(bytes, _)| bytes))
    }

    /// The entry's generations, newest first, each read and offered to `accepts`; the first
    /// accepted is put in the entry's place, the damaged entry kept as `<name>.corrupt-<ms>`.
    /// Under the entry's lock; every file is reached from the directory held open, without
    /// following a link or crossing a mount (a planted link among the generations is refused).
    fn recover(&self, name: &str, accepts: &dyn Fn(&[u8]) -> bool) -> Result<EntryRecovery, Error> {
        let path = self.path(name);
        let Some(shard) = self.shard(name, false)? else {
            return Ok(EntryRecovery::Nothing);
        };
        let listed = |shard: &Dir| {
            generations::list_in(shard, OsStr::new(name)).map_err(io_error(&path, IoOp::Read))
        };
        // Nothing to fall back to: nothing is touched, not even the lock file.
        if listed(&shard)?.is_empty() {
            return Ok(EntryRecovery::Nothing);
        }
        drop(shard);
        let Some((_lock, shard)) = self.lock_settled(name, &path, false)? else {
            return Ok(EntryRecovery::Nothing);
        };
        // Looked at again under the lock: another writer may have replaced it meanwhile.
        if let Some(now) = self.read_stored(name, OsStr::new(name))?
            && accepts(&now.bytes)
        {
            return Ok(EntryRecovery::Intact);
        }
        for (number, from) in listed(&shard)? {
            let generation = names::name_for(OsStr::new(name), Sibling::Generation(number));
            let candidate = match self.read_stored(name, &generation) {
                Ok(Some(stored)) => stored.bytes,
                // Removed meanwhile, or not a plain file in the shard: not a candidate.
                Ok(None) | Err(_) => continue,
            };
            if !accepts(&candidate) {
                continue;
            }
            let target = Target::beneath(&shard, OsStr::new(name), path.clone())?;
            let damaged = match target.current()? {
                Some((current, _)) => backup::keep_damaged_at(&self.disk, &target, &current)?,
                None => return Ok(EntryRecovery::Nothing),
            };
            let write = Write {
                version: crate::shell::version_of(&candidate)
                    .and_then(|version| u32::try_from(version).ok()),
                // The damaged entry is kept already, and is no generation.
                kept: true,
                ..Write::default()
            };
            replace(&self.disk, &target, &write, bytes(&candidate))?;
            return Ok(EntryRecovery::Restored { from, damaged });
        }
        Ok(EntryRecovery::Nothing)
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let path = self.path(name);
        // Under the entry's lock, which every writer takes: a put never lands between the
        // read and the write of an update.
        let Some((_lock, shard)) = self.lock_settled(name, &path, true)? else {
            return Err(io_error(&path, IoOp::CreateDir)(
                std::io::ErrorKind::NotFound.into(),
            ));
        };
        if !Local::holds(&shard, name, &path, condition)? {
            return Ok(Written::Conflict);
        }
        self.write(&shard, name, entry, path).map(Written::Done)
    }

    /// Removes the entry, its backups and temporary files a crashed write left, then its lock
    /// file (while holding it: a writer waiting for it starts again on a new one).
    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let path = self.path(name);
        let Some((lock, shard)) = self.lock_settled(name, &path, false)? else {
            return Ok(false);
        };
        if !Local::holds(&shard, name, &path, condition)? {
            return Ok(false);
        }
        let removed = remove::remove_file(&shard, OsStr::new(name), &path)?;
        let siblings = shard.list().map_err(io_error(&path, IoOp::Read))?;
        for (sibling, _) in siblings {
            // Every copy persist keeps of the entry (backups, generations, damaged copies,
            // temporary files); the lock goes last.
            if names::classify(&sibling, OsStr::new(name)).is_some_and(|kind| kind != Sibling::Lock)
            {
                remove::remove_file(&shard, &sibling, &shard.join(&sibling))?;
            }
        }
        lock.entry.remove()?;
        if self.disk.syncs_dirs() {
            remove::sync_dir(&self.disk, &shard, &path)?;
        }
        Ok(removed)
    }

    /// The entries of every shard: regular files with an entry's name, in real shard
    /// directories (links and mounts are skipped, as is every file persist keeps beside an
    /// entry).
    fn list(&self) -> Result<Vec<String>, Error> {
        self.scan("")?.collect()
    }

    /// Shard by shard (`00` to `ff`), each shard's names in name order: one shard's listing
    /// in memory at a time (a 256th of the entries), not the whole directory's.
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        let (root, dir, prefix) = (Arc::clone(&self.root), self.dir.clone(), prefix.to_owned());
        let mut shards = 0..256_usize;
        let mut names = Vec::<String>::new().into_iter();
        Ok(Box::new(std::iter::from_fn(move || {
            loop {
                if let Some(name) = names.next() {
                    return Some(Ok(name));
                }
                let index = shards.next()?;
                match names_in(&root, &dir, index, &prefix) {
                    Ok(listed) => names = listed.into_iter(),
                    Err(error) => {
                        shards = 0..0;
                        return Some(Err(error));
                    }
                }
            }
        })))
    }

    /// All or nothing, across crashes and power cuts: a transaction on the collection's
    /// directory ([`Transaction`](crate::Transaction)'s staging and commit record). Every entry
    /// is staged (written, its writeback started, closed), then all are synced at once (one
    /// `syncfs` of the file system for a batch of 32 or more on Linux), the commit record
    /// written and synced (the commit point), each entry put in place (with its backup), and
    /// the shards synced (one `syncfs` again). A failure before the commit point leaves every
    /// entry as it was; a crash after it is finished by the next open of the directory, write
    /// to it or batch on it. The batch holds the transaction lock alone from start to end,
    /// which single writes hold shared: it waits for the writes running when it starts (up to
    /// the lock timeout, before anything is staged), they wait for it, and no entry's lock is
    /// taken. Batches on one directory wait for each other (threads of this process, and other
    /// processes).
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        self.in_batch_turn(|mut transaction| {
            for (name, entry) in entries {
                let relative = AsRef::<Path>::as_ref(&shard_of(name)).join(name);
                transaction.stage_bytes(entry.bytes, entry.version, &relative)?;
            }
            transaction.commit_within()
        })
    }

    /// Removes the shard directories whole: entries with their lock files, backups and
    /// temporary files. Anything else in the directory stays, and nothing is followed out of
    /// it (a symbolic link inside is removed, not followed; a mount inside is refused).
    fn clear(&self) -> Result<(), Error> {
        // Under the batches' lock (a committed batch finished first, a running one waited
        // for): no batch lands in the middle of it, and none comes back after it.
        self.in_batch_turn(|_batches| {
            let shards = self.root.list().map_err(io_error(&self.dir, IoOp::Read))?;
            for (shard, _) in shards {
                if is_shard_name(&shard) {
                    remove::remove_tree(&self.root, &shard)?;
                }
            }
            remove::sync_dir(&self.disk, &self.root, &self.dir)
        })
    }

    /// Under the entry's lock: `change` runs once, and there is never a conflict.
    fn modify(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<&Stored>) -> Result<Change, Error>,
    ) -> Result<Written, Error> {
        let path = self.path(name);
        let Some((_lock, shard)) = self.lock_settled(name, &path, true)? else {
            return Err(io_error(&path, IoOp::CreateDir)(
                std::io::ErrorKind::NotFound.into(),
            ));
        };
        let stored = self.get(name)?;
        match change(stored.as_ref())? {
            Change::Keep => Ok(super::kept(stored)),
            Change::Put {
                key,
                bytes,
                version,
            } => {
                let entry = Entry {
                    key: &key,
                    bytes: &bytes,
                    version,
                };
                self.write(&shard, name, entry, path).map(Written::Done)
            }
        }
    }
}

impl Local {
    /// A transaction on the directory (what it finds unfinished is finished or discarded
    /// first), with this backend's durability, backups and lock timeout; the collection records
    /// its batches in the audit log itself.
    fn transaction(&self) -> Result<Transaction, Error> {
        let settings = Settings {
            disk: Disk {
                audit: None,
                ..self.disk.clone()
            },
            ..Settings::DEFAULT
        };
        Transaction::open_in(&settings, &self.dir, Arc::clone(&self.root), Mode::Entries)
    }

    /// Whether a batch's commit record is there (or something where it would be): a batch
    /// past its commit point, running or left by a crash. One failed lookup when there is none.
    fn batch_pending(&self) -> bool {
        let record = [OsStr::new(TXN_STAGING), OsStr::new(TXN_RECORD)];
        !matches!(
            self.root.open_file_beneath(&record),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound
        )
    }

    /// Finishes a batch another process left unfinished past its commit point (its commit
    /// record is still there), or waits for a running one, through the transaction lock.
    fn settle(&self) -> Result<(), Error> {
        if !self.batch_pending() {
            return Ok(());
        }
        // Its recovery reads the record (and refuses what is no record).
        self.in_batch_turn(|_| Ok(()))
    }

    /// Runs `work` with a transaction on the directory (a batch's, or what holds the batches
    /// out), in this process's turn: one at a time per directory (a transaction root admits
    /// one transaction per process), the other threads waiting.
    fn in_batch_turn<R>(
        &self,
        work: impl FnOnce(Transaction) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let gate = batch_gate(&self.root);
        let _turn = gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work(self.transaction()?)
    }

    /// The locks of a single write of the entry `name`: the batches' lock shared (no batch
    /// runs meanwhile: a batch holds it alone, from before its first entry is staged until its
    /// last is in place, so that it needs no entry's lock), then the entry's lock. Taken when
    /// no batch is past its commit point: one a crash left unfinished is finished first, so
    /// that no recovery ever puts a batch's entry over a later write.
    ///
    /// The entry's shard is opened (made, with `create`) under the batches' lock, and returned
    /// with the locks: a `clear` (which holds that lock alone) may have removed the directory
    /// a handle opened before it, and a write there would fail. `None` when the shard is
    /// missing and not to be made.
    fn lock_settled(
        &self,
        name: &str,
        path: &Path,
        create: bool,
    ) -> Result<Option<(WriteLock, Arc<Dir>)>, Error> {
        loop {
            let batches = lock::shared_in(
                &self.root,
                OsStr::new(TXN_LOCK),
                &self.dir,
                self.disk.lock_timeout,
            )?;
            let Some(shard) = self.shard(name, create)? else {
                return Ok(None);
            };
            let entry = self.lock_entry(&shard, name, path)?;
            if !self.batch_pending() {
                let lock = WriteLock {
                    entry,
                    _batches: batches,
                };
                return Ok(Some((lock, shard)));
            }
            // Released first: the recovery takes the batches' lock alone.
            drop((entry, batches));
            self.settle()?;
        }
    }

    /// The error of a read of `name` that met a link, a mount or another file type.
    fn refused(&self, name: &str, error: std::io::Error) -> Error {
        let path = self.path(name);
        match error.raw_os_error() {
            Some(libc::ELOOP) => escape(Escape::Symlink(path)),
            Some(libc::EXDEV) => escape(Escape::Mount(path)),
            Some(libc::ENOTDIR) => escape(Escape::NotDir(path, FileKind::Other)),
            _ => io_error(&path, IoOp::Open)(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_what_is_not_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::new(dir.path().join("c")).unwrap();
        let entry = Entry {
            key: "k",
            bytes: br#"{"version":1,"data":1}"#,
            version: 1,
        };
        local.put("a", entry, &Condition::Always).unwrap();
        std::fs::write(local.dir().join("stray.txt"), "x").unwrap();
        std::fs::create_dir(local.dir().join("zz")).unwrap();
        std::fs::write(local.dir().join("zz").join("b.v1.bak"), "x").unwrap();
        assert_eq!(local.list().unwrap(), ["a"]);
    }

    #[test]
    fn conditions() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::new(dir.path()).unwrap();
        let entry = Entry {
            key: "k",
            bytes: br#"{"version":1,"data":1}"#,
            version: 1,
        };
        let Written::Done(tag) = local.put("k", entry, &Condition::Absent).unwrap() else {
            panic!("absent")
        };
        assert_eq!(local.get("k").unwrap().unwrap().tag, tag);
        assert_eq!(
            local.put("k", entry, &Condition::Absent).unwrap(),
            Written::Conflict
        );
        let Written::Done(second) = local
            .put("k", entry, &Condition::Matches(tag.clone()))
            .unwrap()
        else {
            panic!("matches")
        };
        assert_ne!(second, tag);
        assert_eq!(
            local
                .put("k", entry, &Condition::Matches(tag.clone()))
                .unwrap(),
            Written::Conflict
        );
        assert!(!local.delete("k", &Condition::Matches(tag)).unwrap());
        assert!(local.delete("k", &Condition::Matches(second)).unwrap());
        assert!(local.get("k").unwrap().is_none());
    }
}
