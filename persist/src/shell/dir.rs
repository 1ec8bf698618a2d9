//! Directory handles: everything the shell creates, renames, removes or opens is named relative
//! to an open directory, never by a path looked up again later. A directory under a root is
//! reached component by component without following a symbolic link (`O_NOFOLLOW`) and without
//! leaving the root's mount (the mount id, or the device where the kernel has no mount ids), so
//! a link or a bind mount planted inside a root never leads a write, a removal or a read out of
//! it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::FileKind;

/// What a file is, as far as the shell cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, device, socket or anything else persist never reads or replaces.
    Special(FileKind),
}

impl Kind {
    /// The kind to report in [`Error::NotRegularFile`](crate::Error::NotRegularFile).
    pub(crate) fn file_kind(self) -> FileKind {
        match self {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Directory,
            Kind::Symlink => FileKind::Symlink,
            Kind::Special(kind) => kind,
        }
    }
}

/// The facts about a file the shell uses: its kind, permission bits, identity, size, times and
/// the mount it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) kind: Kind,
    /// The permission bits (`mode & 0o777`).
    pub(crate) mode: u32,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    /// Modification time: seconds and nanoseconds since 1970.
    pub(crate) mtime: (i64, u32),
    /// Status change time.
    pub(crate) ctime: (i64, u32),
    /// The mount's id where the kernel tells it (Linux 5.8 and later), else the device.
    pub(crate) mount: u64,
    /// How many names the file has (hard links).
    pub(crate) nlink: u64,
}

impl Stat {
    /// Whether `self` and `other` are the same file (device and inode).
    pub(crate) fn same_file(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Why a path under a root cannot be used: it would leave the root.
#[derive(Debug)]
pub(crate) enum Escape {
    /// A symbolic link where a directory or a file of persist's was expected.
    Symlink(PathBuf),
    /// Another mount (a bind mount, a mounted file system) where persist expected its own
    /// directory or file.
    Mount(PathBuf),
    /// Something else than a directory where one was expected.
    NotDir(PathBuf, FileKind),
}

impl Escape {
    /// The path that would have been followed.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Escape::Symlink(path) | Escape::Mount(path) | Escape::NotDir(path, _) => path,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match self {
            Escape::Symlink(_) => "it is a symbolic link, which persist does not follow inside a \
                                   root (it could lead out of it)"
                .to_owned(),
            Escape::Mount(_) => "it is another mount (a bind mount or a mounted file system), \
                                 which persist does not cross inside a root"
                .to_owned(),
            Escape::NotDir(_, kind) => format!("it is a {kind}, not a directory"),
        }
    }
}

/// An open directory. Operations on names inside it never follow a symbolic link at the name.
#[derive(Debug)]
pub(crate) struct Dir {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    /// The path it was reached by, for messages and for the parts of std that want one.
    path: PathBuf,
    /// The mount it is on (see [`Stat::mount`]): known for a root and the directories reached
    /// under one, which are checked against it; `None` for a directory opened for one file.
    mount: Option<u64>,
    /// Its device and inode, where they were looked up (the directories reached under a root).
    identity: Option<(u64, u64)>,
}

/// The result of looking a name up in a directory.
pub(crate) enum Lookup {
    Found(Dir),
    Missing,
    Escape(Escape),
}

#[cfg(unix)]
mod sys {
    //! The Unix calls behind [`Dir`](super::Dir), through rustix.

    use std::os::fd::{AsFd, OwnedFd};

    use rustix::fs::{AtFlags, Mode, OFlags};

    use super::{Kind, Stat};
    use crate::error::FileKind;

    pub(super) fn kind_of(mode: u32) -> Kind {
        use rustix::fs::FileType;
        match FileType::from_raw_mode(mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Special(FileKind::Fifo),
            FileType::CharacterDevice => Kind::Special(FileKind::CharDevice),
            FileType::BlockDevice => Kind::Special(FileKind::BlockDevice),
            FileType::Socket => Kind::Special(FileKind::Socket),
            _ => Kind::Special(FileKind::Other),
        }
    }

    /// `statx` (with the mount id) of `name` in `dir`, or of `dir` itself for an empty name,
    /// never following a symbolic link.
    #[cfg(target_os = "linux")]
    pub(super) fn stat(dir: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<Stat> {
        use rustix::fs::StatxFlags;
        let flags = if name.is_empty() {
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        let mask = StatxFlags::TYPE
            | StatxFlags::MODE
            | StatxFlags::INO
            | StatxFlags::SIZE
            | StatxFlags::MTIME
            | StatxFlags::CTIME
            | StatxFlags::NLINK
            | StatxFlags::MNT_ID;
        let statx = rustix::fs::statx(dir, name, flags, mask)?;
        let dev = rustix::fs::makedev(statx.stx_dev_major, statx.stx_dev_minor);
        let mount = if statx.stx_mask & StatxFlags::MNT_ID.bits() != 0 {
            statx.stx_mnt_id
        } else {
            dev
        };
        Ok(Stat {
            kind: kind_of(u32::from(statx.stx_mode)),
            mode: u32::from(statx.stx_mode) & 0o777,
            dev,
            ino: statx.stx_ino,
            size: statx.stx_size,
            mtime: (statx.stx_mtime.tv_sec, statx.stx_mtime.tv_nsec),
            ctime: (statx.stx_ctime.tv_sec, statx.stx_ctime.tv_nsec),
            mount,
            nlink: u64::from(statx.stx_nlink),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn stat(dir: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<Stat> {
        let stat = if name.is_empty() {
            rustix::fs::fstat(dir)?
        } else {
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?
        };
        Ok(Stat {
            kind: kind_of(stat.st_mode as u32),
            mode: stat.st_mode as u32 & 0o777,
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as u32),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as u32),
            mount: stat.st_dev as u64,
            nlink: stat.st_nlink as u64,
        })
    }

    pub(super) fn open_dir(path: &std::path::Path) -> std::io::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            path
        };
        Ok(rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    pub(super) fn open_child_dir(
        dir: impl AsFd,
        name: &std::ffi::OsStr,
    ) -> std::io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    pub(super) fn mkdir(dir: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<()> {
        Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?)
    }

    /// Opens `name` for reading (and writing), never following a symbolic link at the name and
    /// never blocking on a FIFO; with `create`, creates it (mode 0600) if missing; with
    /// `exclusive`, only creates.
    pub(super) fn open_file(
        dir: impl AsFd,
        name: &std::ffi::OsStr,
        write: bool,
        create: bool,
        exclusive: bool,
    ) -> std::io::Result<OwnedFd> {
        let mut flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        flags |= if write { OFlags::RDWR } else { OFlags::RDONLY };
        if create {
            flags |= OFlags::CREATE;
        }
        if exclusive {
            flags |= OFlags::CREATE | OFlags::EXCL;
        }
        // Non-blocking mode keeps the open from waiting on a FIFO; it changes nothing for the
        // regular files the callers go on to use (they check what they opened).
        Ok(rustix::fs::openat(
            dir,
            name,
            flags,
            Mode::from_raw_mode(0o600),
        )?)
    }

    pub(super) fn rename(
        from_dir: impl AsFd,
        from: &std::ffi::OsStr,
        to_dir: impl AsFd,
        to: &std::ffi::OsStr,
    ) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?)
    }

    /// A second name `to` for the file `from` (never following a link at `from`); fails if
    /// anything is at `to`.
    pub(super) fn link(
        dir: impl AsFd,
        from: &std::ffi::OsStr,
        to: &std::ffi::OsStr,
    ) -> std::io::Result<()> {
        let dir = dir.as_fd();
        Ok(rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?)
    }

    pub(super) fn unlink(
        dir: impl AsFd,
        name: &std::ffi::OsStr,
        is_dir: bool,
    ) -> std::io::Result<()> {
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rustix::fs::unlinkat(dir, name, flags)?)
    }

    pub(super) fn fsync(fd: impl AsFd) -> std::io::Result<()> {
        Ok(rustix::fs::fsync(fd)?)
    }

    pub(super) fn chmod(fd: impl AsFd, mode: u32) -> std::io::Result<()> {
        Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode as _))?)
    }

    /// The names in a directory (not `.` and `..`), with their kinds where the directory
    /// listing tells them.
    pub(super) fn list(dir: impl AsFd) -> std::io::Result<Vec<(std::ffi::OsString, Option<Kind>)>> {
        use std::os::unix::ffi::OsStrExt;
        let mut entries = Vec::new();
        let mut listing = rustix::fs::Dir::read_from(dir)?;
        while let Some(entry) = listing.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            use rustix::fs::FileType;
            let kind = match entry.file_type() {
                FileType::Unknown => None,
                FileType::RegularFile => Some(Kind::File),
                FileType::Directory => Some(Kind::Dir),
                FileType::Symlink => Some(Kind::Symlink),
                _ => Some(Kind::Special(FileKind::Other)),
            };
            entries.push((std::ffi::OsStr::from_bytes(name).to_owned(), kind));
        }
        Ok(entries)
    }
}

#[cfg(unix)]
impl Dir {
    /// Opens the directory at `path`, as the caller named it (symbolic links in `path` are
    /// followed: the caller chose them), to work on one file in it.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        Ok(Dir {
            fd: sys::open_dir(path)?,
            path: path.to_owned(),
            mount: None,
            identity: None,
        })
    }

    /// [`open`](Dir::open) for a root: what is reached under it must be on its mount.
    pub(crate) fn open_root(path: &Path) -> io::Result<Dir> {
        let mut dir = Dir::open(path)?;
        let stat = sys::stat(&dir.fd, OsStr::new(""))?;
        dir.mount = Some(stat.mount);
        dir.identity = Some((stat.dev, stat.ino));
        Ok(dir)
    }

    /// Its device and inode, where they are known (a root, or a directory reached under one).
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// The directory that holds this one (`..`), on the same mount: for a walk back up a
    /// tree, which checks that it is the directory it came down from ([`identity`](Dir::identity)).
    pub(crate) fn parent(&self) -> io::Result<Dir> {
        let fd = sys::open_child_dir(&self.fd, OsStr::new(".."))?;
        let stat = sys::stat(&fd, OsStr::new(""))?;
        Ok(Dir {
            fd,
            path: super::parent_dir(&self.path).to_owned(),
            mount: self.mount,
            identity: Some((stat.dev, stat.ino)),
        })
    }

    /// The directory's path, as it was reached.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, as a path (for messages).
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The directory `name` inside this one, without following a symbolic link at `name` and
    /// without crossing onto another mount.
    pub(crate) fn child(&self, name: &OsStr) -> io::Result<Lookup> {
        match sys::open_child_dir(&self.fd, name) {
            Ok(fd) => {
                let stat = sys::stat(&fd, OsStr::new(""))?;
                if !self.same_mount(&stat) {
                    return Ok(Lookup::Escape(Escape::Mount(self.join(name))));
                }
                Ok(Lookup::Found(Dir {
                    fd,
                    path: self.join(name),
                    mount: Some(stat.mount),
                    identity: Some((stat.dev, stat.ino)),
                }))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Lookup::Missing),
            // ELOOP: a symbolic link; ENOTDIR: something else than a directory.
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ELOOP) | Some(libc::ENOTDIR)
                ) =>
            {
                let kind = match self.stat(name)? {
                    Some(stat) => stat.kind,
                    None => return Ok(Lookup::Missing),
                };
                Ok(Lookup::Escape(match kind {
                    Kind::Symlink => Escape::Symlink(self.join(name)),
                    other => Escape::NotDir(self.join(name), other.file_kind()),
                }))
            }
            Err(error) => Err(error),
        }
    }

    /// [`child`](Dir::child), creating the directory (mode 0700) if it is missing; the new
    /// entry is made durable (this directory synced) when `durable`.
    pub(crate) fn child_or_create(&self, name: &OsStr, durable: bool) -> io::Result<Lookup> {
        match self.child(name)? {
            Lookup::Missing => {}
            found => return Ok(found),
        }
        match sys::mkdir(&self.fd, name) {
            Ok(()) => {
                if durable {
                    self.sync()?;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        self.child(name)
    }

    /// The facts about `name` (not following a symbolic link); `None` if there is nothing.
    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        match sys::stat(&self.fd, name) {
            Ok(stat) => Ok(Some(stat)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The facts about an open file (its mount included).
    pub(crate) fn stat_file(file: &File) -> io::Result<Stat> {
        sys::stat(file, OsStr::new(""))
    }

    /// Whether `stat` is on this directory's mount (always, for a directory whose mount is
    /// not checked: one opened for a single file).
    pub(crate) fn same_mount(&self, stat: &Stat) -> bool {
        self.mount.is_none_or(|mount| mount == stat.mount)
    }

    /// Opens the file `name` for reading (and writing, if `write`), never following a symbolic
    /// link at `name` and never blocking on a FIFO. The caller checks what it opened.
    pub(crate) fn open_file(&self, name: &OsStr, write: bool) -> io::Result<File> {
        sys::open_file(&self.fd, name, write, false, false).map(File::from)
    }

    /// Opens the file `name` for reading and writing, creating it with mode 0600 if missing.
    pub(crate) fn open_or_create(&self, name: &OsStr) -> io::Result<File> {
        sys::open_file(&self.fd, name, true, true, false).map(File::from)
    }

    /// Opens the file at `relative` (plain names) under this directory for reading, without
    /// following a symbolic link anywhere on the way (the file included) and without crossing
    /// a mount: `ELOOP` or `EXDEV` where it would. One `openat2` call where the kernel has it
    /// (Linux 5.6), a walk through the directories otherwise.
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    pub(crate) fn open_file_beneath(&self, relative: &[&OsStr]) -> io::Result<File> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags, ResolveFlags};
            let path: PathBuf = relative.iter().collect();
            let resolve = ResolveFlags::BENEATH
                | ResolveFlags::NO_SYMLINKS
                | ResolveFlags::NO_XDEV
                | ResolveFlags::NO_MAGICLINKS;
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            match rustix::fs::openat2(&self.fd, &path, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(File::from(fd)),
                // Older kernels, and sandboxes that forbid the call.
                Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let Some((name, dirs)) = relative.split_last() else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let mut owned: Option<Dir> = None;
        for part in dirs {
            let current = owned.as_ref().unwrap_or(self);
            owned = Some(match current.child(part)? {
                Lookup::Found(dir) => dir,
                Lookup::Missing => return Err(io::ErrorKind::NotFound.into()),
                Lookup::Escape(Escape::Mount(_)) => {
                    return Err(io::Error::from_raw_os_error(libc::EXDEV));
                }
                Lookup::Escape(Escape::Symlink(_)) => {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                Lookup::Escape(Escape::NotDir(..)) => {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
            });
        }
        let current = owned.as_ref().unwrap_or(self);
        let file = current.open_file(name, false)?;
        let stat = Dir::stat_file(&file)?;
        if !current.same_mount(&stat) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(file)
    }

    /// Creates the file `name` (mode 0600, read and write); fails if anything is there.
    pub(crate) fn create_new(&self, name: &OsStr) -> io::Result<File> {
        sys::open_file(&self.fd, name, true, true, true).map(File::from)
    }

    /// Renames `from` in this directory to `to` in `to_dir` (replacing a file there).
    pub(crate) fn rename(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        sys::rename(&self.fd, from, &to_dir.fd, to)
    }

    /// Gives the file `from` of this directory the second name `to` (a hard link); fails if
    /// anything is at `to`.
    pub(crate) fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        sys::link(&self.fd, from, to)
    }

    /// Removes the file (or symbolic link) `name`.
    pub(crate) fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        sys::unlink(&self.fd, name, false)
    }

    /// Removes the empty directory `name`.
    pub(crate) fn remove_empty_dir(&self, name: &OsStr) -> io::Result<()> {
        sys::unlink(&self.fd, name, true)
    }

    /// Makes the directory's entries durable (fsync of the directory).
    pub(crate) fn sync(&self) -> io::Result<()> {
        sys::fsync(&self.fd)
    }

    /// Whether [`sync_fs`](Dir::sync_fs) is there (Linux's `syncfs`).
    pub(crate) const HAS_SYNC_FS: bool = cfg!(target_os = "linux");

    /// Makes everything written to the file system the directory is on durable, data and
    /// names (`syncfs`: one journal commit for a batch's files, where a file-by-file fsync
    /// commits once each), reporting a writeback error of that file system since the
    /// directory was opened. Only where [`HAS_SYNC_FS`](Dir::HAS_SYNC_FS).
    pub(crate) fn sync_fs(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        return Ok(rustix::fs::syncfs(&self.fd)?);
        #[cfg(not(target_os = "linux"))]
        return Err(io::ErrorKind::Unsupported.into());
    }

    /// The names in the directory, with their kinds (looked up where the listing does not say).
    pub(crate) fn list(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut entries = Vec::new();
        for (name, kind) in sys::list(&self.fd)? {
            let kind = match kind {
                Some(Kind::Special(_)) | None => match self.stat(&name)? {
                    Some(stat) => stat.kind,
                    None => continue, // removed meanwhile
                },
                Some(kind) => kind,
            };
            entries.push((name, kind));
        }
        Ok(entries)
    }
}

/// Sets the permission bits of an open file.
#[cfg(unix)]
pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    sys::chmod(file, mode)
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Without Unix's `*at` calls, directories are named by path: symbolic links and mounts are
/// checked before each step, not held open across it.
#[cfg(not(unix))]
impl Dir {
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let metadata = std::fs::metadata(if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        })?;
        if !metadata.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        Ok(Dir {
            path: path.to_owned(),
            mount: None,
            identity: None,
        })
    }

    pub(crate) fn open_root(path: &Path) -> io::Result<Dir> {
        Dir::open(path)
    }

    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        None
    }

    pub(crate) const HAS_SYNC_FS: bool = false;

    pub(crate) fn sync_fs(&self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn parent(&self) -> io::Result<Dir> {
        Dir::open(super::parent_dir(&self.path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    pub(crate) fn child(&self, name: &OsStr) -> io::Result<Lookup> {
        let path = self.join(name);
        match self.stat(name)? {
            None => Ok(Lookup::Missing),
            Some(stat) if stat.kind == Kind::Dir => Ok(Lookup::Found(Dir {
                path,
                mount: None,
                identity: None,
            })),
            Some(stat) if stat.kind == Kind::Symlink => Ok(Lookup::Escape(Escape::Symlink(path))),
            Some(stat) => Ok(Lookup::Escape(Escape::NotDir(path, stat.kind.file_kind()))),
        }
    }

    pub(crate) fn child_or_create(&self, name: &OsStr, _durable: bool) -> io::Result<Lookup> {
        match std::fs::create_dir(self.join(name)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        self.child(name)
    }

    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        match std::fs::symlink_metadata(self.join(name)) {
            Ok(metadata) => Ok(Some(stat_of(&metadata))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) fn stat_file(file: &File) -> io::Result<Stat> {
        file.metadata().map(|metadata| stat_of(&metadata))
    }

    pub(crate) fn same_mount(&self, _stat: &Stat) -> bool {
        true
    }

    pub(crate) fn open_file(&self, name: &OsStr, write: bool) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(self.join(name))
    }

    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    pub(crate) fn open_file_beneath(&self, relative: &[&OsStr]) -> io::Result<File> {
        let mut path = self.path.clone();
        for part in relative {
            if std::fs::symlink_metadata(&path.join(part))?
                .file_type()
                .is_symlink()
            {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            path.push(part);
        }
        File::open(path)
    }

    pub(crate) fn open_or_create(&self, name: &OsStr) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.join(name))
    }

    pub(crate) fn create_new(&self, name: &OsStr) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.join(name))
    }

    pub(crate) fn rename(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        std::fs::rename(self.join(from), to_dir.join(to))
    }

    pub(crate) fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        std::fs::hard_link(self.join(from), self.join(to))
    }

    pub(crate) fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        std::fs::remove_file(self.join(name))
    }

    pub(crate) fn remove_empty_dir(&self, name: &OsStr) -> io::Result<()> {
        std::fs::remove_dir(self.join(name))
    }

    /// Windows has no directory fsync through std; NTFS journals the rename itself.
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn list(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let kind = kind_of(entry.file_type()?);
            entries.push((entry.file_name(), kind));
        }
        Ok(entries)
    }
}

#[cfg(not(unix))]
fn kind_of(file_type: std::fs::FileType) -> Kind {
    if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Special(FileKind::of(file_type))
    }
}

#[cfg(not(unix))]
fn stat_of(metadata: &std::fs::Metadata) -> Stat {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    Stat {
        kind: kind_of(metadata.file_type()),
        mode: 0o600,
        dev: 0,
        ino: 0,
        size: metadata.len(),
        mtime: (modified.as_secs() as i64, modified.subsec_nanos()),
        ctime: (modified.as_secs() as i64, modified.subsec_nanos()),
        mount: 0,
        nlink: 1,
    }
}
