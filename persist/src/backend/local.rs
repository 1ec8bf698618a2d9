//! A collection in a directory of files: each entry a persist file, written with the core's
//! durable write, spread over 256 shard directories.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Backend, Change, Condition, Entry, Stored, Tag, Written};
use crate::error::IoOp;
use crate::fs::{self, Durability, io_error};
use crate::{Error, Options, backup, lock};

/// A directory of entries: `<dir>/<shard>/<name>`, where the shard is two hex digits of a
/// hash of the name (FORMAT.md, section 5). Each entry is written like a state file: a
/// temporary file, fsync, rename, fsync of the directory, and a backup of an entry of another
/// schema version (the [`Options::backups`] rule). Every write takes the entry's lock file
/// (`<name>.lock` beside it, never removed), shared with other processes, and so does
/// [`Backend::modify`], which therefore needs no retry.
#[derive(Debug, Clone)]
pub struct Local {
    dir: PathBuf,
    options: Options,
}

impl Local {
    /// The directory `dir` (created if missing), written with the default [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory cannot be created, [`Error::NotRegularFile`] when
    /// something else than a directory is there.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Local::with_options(dir.into(), Options::new())
    }

    /// `dir`, written with the durability, lock timeout, backups and size cap of `options`.
    pub(crate) fn with_options(dir: PathBuf, options: Options) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir, IoOp::CreateDir))?;
        let metadata = std::fs::metadata(&dir).map_err(io_error(&dir, IoOp::Metadata))?;
        if !metadata.is_dir() {
            return Err(Error::NotRegularFile {
                path: dir,
                kind: crate::FileKind::of(metadata.file_type()),
            });
        }
        Ok(Local { dir, options })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<shard>/<name>`, built in one allocation.
    fn path(&self, name: &str) -> PathBuf {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let low = crc32c::crc32c(name.as_bytes()) & 0xff;
        let shard = [HEX[(low >> 4) as usize], HEX[(low & 0xf) as usize]];
        let mut path = PathBuf::with_capacity(self.dir.as_os_str().len() + name.len() + 4);
        path.push(&self.dir);
        // Two ASCII hex digits.
        path.push(std::str::from_utf8(&shard).unwrap_or("00"));
        path.push(name);
        path
    }

    /// The tag of the file at `path` now, `None` when there is none.
    fn tag_now(path: &Path) -> Result<Option<Tag>, Error> {
        match std::fs::metadata(path) {
            Ok(metadata) => Ok(Some(tag_of(&metadata))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(path, IoOp::Metadata)(error)),
        }
    }

    /// Writes `entry` at `path` with `durability`, keeping a backup of another version;
    /// returns the staged file's tag (the file now at `path`).
    fn write(&self, path: &Path, entry: Entry<'_>, durability: Durability) -> Result<Tag, Error> {
        let staged = fs::stage(path, path, durability, fs::bytes(entry.bytes))?;
        let metadata = staged
            .file()
            .metadata()
            .map_err(io_error(path, IoOp::Metadata))?;
        backup::preserve(
            path,
            path,
            u64::from(entry.version),
            None,
            self.options.backups_kept(),
            self.options.max_size_limit(),
            durability,
        )?;
        staged.install()?;
        Ok(tag_of(&metadata))
    }

    /// Whether `condition` holds for the file at `path` now.
    fn holds(path: &Path, condition: &Condition) -> Result<bool, Error> {
        let now = Local::tag_now(path)?;
        Ok(match condition {
            Condition::Always => true,
            Condition::Absent => now.is_none(),
            Condition::Matches(tag) => now.as_ref() == Some(tag),
        })
    }

    fn lock_entry(&self, path: &Path) -> Result<lock::LockGuard, Error> {
        lock::exclusive(path, self.options.lock_wait())
    }
}

/// A file's identity and state: device, inode, size, modification time.
fn tag_of(metadata: &std::fs::Metadata) -> Tag {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Tag::new(format!(
            "{:x}-{:x}-{:x}-{:x}.{:x}",
            metadata.dev(),
            metadata.ino(),
            metadata.size(),
            metadata.mtime(),
            metadata.mtime_nsec()
        ))
    }
    #[cfg(not(unix))]
    {
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        Tag::new(format!("{:x}-{modified:x}", metadata.len()))
    }
}

impl Backend for Local {
    fn root(&self) -> PathBuf {
        self.dir.clone()
    }

    fn locate(&self, name: &str) -> PathBuf {
        self.path(name)
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        let path = self.path(name);
        let (file, metadata) = match fs::open_regular_file(&path, false) {
            Ok(opened) => opened,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let limit = self.options.max_size_limit();
        if metadata.len() > limit {
            return Err(Error::TooLarge {
                path,
                size: metadata.len(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        // The tag is the opened file's: it names exactly the bytes read (a save replaces the
        // inode, it never rewrites one in place).
        Read::take(&file, limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_error(&path, IoOp::Read))?;
        Ok(Some(Stored {
            bytes,
            tag: tag_of(&metadata),
        }))
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let path = self.path(name);
        let durability = self.options.sync_level();
        // Under the entry's lock, which every writer takes: a put never lands between the
        // read and the write of an update.
        let _lock = self.lock_entry(&path)?;
        if !Local::holds(&path, condition)? {
            return Ok(Written::Conflict);
        }
        self.write(&path, entry, durability).map(Written::Done)
    }

    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let path = self.path(name);
        let _lock = self.lock_entry(&path)?;
        if !Local::holds(&path, condition)? {
            return Ok(false);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(io_error(&path, IoOp::Remove)(error)),
        }
        if self.options.sync_level() == Durability::Full {
            fs::sync_dir(fs::parent_dir(&path)).map_err(io_error(&path, IoOp::SyncDir))?;
        }
        Ok(true)
    }

    fn list(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        let shards = match std::fs::read_dir(&self.dir) {
            Ok(shards) => shards,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(error) => return Err(io_error(&self.dir, IoOp::Read)(error)),
        };
        for shard in shards {
            let shard = shard.map_err(io_error(&self.dir, IoOp::Read))?;
            let is_shard =
                shard.file_name().len() == 2 && shard.file_type().is_ok_and(|kind| kind.is_dir());
            if !is_shard {
                continue;
            }
            let shard_path = shard.path();
            for entry in
                std::fs::read_dir(&shard_path).map_err(io_error(&shard_path, IoOp::Read))?
            {
                let entry = entry.map_err(io_error(&shard_path, IoOp::Read))?;
                // Entry names never hold a dot; lock files, backups and temporary files do.
                if let Some(name) = entry.file_name().to_str()
                    && !name.contains('.')
                    && entry.file_type().is_ok_and(|kind| kind.is_file())
                {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    /// Writes every temporary file, starts the writeback of all of them, then syncs each
    /// (the disk works on many at once instead of one after the other), renames them all,
    /// then syncs each touched directory once (and the collection's directory, which may have
    /// gained shards).
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        let durability = self.options.sync_level();
        let paths: Vec<PathBuf> = entries.iter().map(|(name, _)| self.path(name)).collect();
        // Every entry's lock, in one order (sorted) so that two batches cannot deadlock.
        let mut order: Vec<&PathBuf> = paths.iter().collect();
        order.sort_unstable();
        order.dedup();
        let _locks = order
            .into_iter()
            .map(|path| self.lock_entry(path))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut staged = Vec::with_capacity(entries.len());
        for (path, (_, entry)) in paths.iter().zip(entries) {
            // Synced below, all together; installed without a directory sync.
            let file = fs::stage(path, path, Durability::None, fs::bytes(entry.bytes))?;
            fs::start_writeback(file.file());
            staged.push((path, entry.version, file));
        }
        if durability != Durability::None {
            for (path, _, file) in &staged {
                file.file()
                    .sync_all()
                    .map_err(io_error(path, IoOp::SyncFile))?;
            }
        }
        for (path, version, file) in staged {
            backup::preserve(
                path,
                path,
                u64::from(version),
                None,
                self.options.backups_kept(),
                self.options.max_size_limit(),
                durability,
            )?;
            file.install()?;
        }
        if durability == Durability::Full {
            let mut directories: Vec<&Path> =
                paths.iter().map(|path| fs::parent_dir(path)).collect();
            directories.sort_unstable();
            directories.dedup();
            for directory in directories.into_iter().chain([self.dir.as_path()]) {
                fs::sync_dir(directory).map_err(io_error(directory, IoOp::SyncDir))?;
            }
        }
        Ok(())
    }

    /// Removes the shard directories whole: entries with their lock files, backups and
    /// temporary files. Anything else in the directory stays, and nothing is followed out of
    /// it (a symbolic link inside is removed, not followed).
    fn clear(&self) -> Result<(), Error> {
        let shards = match std::fs::read_dir(&self.dir) {
            Ok(shards) => shards,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error(&self.dir, IoOp::Read)(error)),
        };
        for shard in shards {
            let shard = shard.map_err(io_error(&self.dir, IoOp::Read))?;
            let name = shard.file_name();
            let is_shard = name.len() == 2
                && name.to_str().is_some_and(|name| {
                    name.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                })
                && shard.file_type().is_ok_and(|kind| kind.is_dir());
            if is_shard {
                let path = shard.path();
                std::fs::remove_dir_all(&path).map_err(io_error(&path, IoOp::Remove))?;
            }
        }
        if self.options.sync_level() != Durability::None {
            fs::sync_dir(&self.dir).map_err(io_error(&self.dir, IoOp::SyncDir))?;
        }
        Ok(())
    }

    /// Under the entry's lock: `change` runs once, and there is never a conflict.
    fn modify(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<&Stored>) -> Result<Change, Error>,
    ) -> Result<Written, Error> {
        let path = self.path(name);
        let _lock = self.lock_entry(&path)?;
        let stored = self.get(name)?;
        match change(stored.as_ref())? {
            Change::Keep => Ok(super::kept(stored)),
            Change::Put { bytes, version } => {
                let entry = Entry {
                    bytes: &bytes,
                    version,
                };
                self.write(&path, entry, self.options.sync_level())
                    .map(Written::Done)
            }
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
