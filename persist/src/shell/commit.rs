//! Putting bytes in place durably: one file ([`replace`]) or many at once (the pieces a
//! transaction uses, `txn.rs`: [`stage_closed`], [`sync_staged`], [`install_staged`]).
//!
//! One file: the new contents go into a temporary file in the target's directory (created
//! exclusively, never through a link, mode 0600 from creation, or the permission bits of the
//! file it replaces), synced; the file it replaces is kept as a backup if it holds another
//! schema version; the temporary file is renamed over the target and the directory synced; the
//! audit record is appended. Every failure before the rename removes the temporary file and
//! leaves the target as it was.
//!
//! Many files: each is written and closed with its writeback started (no descriptor is held per
//! file, so a batch has no size limit), then all are synced (with one `syncfs` of their file
//! system from [`SYNC_FS_FROM`] files on, else each opened again and synced), then each is
//! installed, then the directories touched are synced (once each, or one `syncfs`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dir::{Dir, Escape, Kind, Lookup, set_mode};
use super::faults::fault;
use super::names::{self, Sibling, TEMP_RANDOM_CHARS};
use super::{
    AuditEntry, AuditOp, Disk, Durability, FileWriter, Written, backup, io_error, parent_dir,
    start_writeback, version_of,
};
use crate::error::{Error, FileKind, IoOp};

/// How much of the file being replaced is read for its schema version (backups, audit).
pub(super) const HEAD: usize = 64;

/// The file a write replaces: the directory that holds it (open) and its name there.
#[derive(Debug)]
pub(crate) struct Target {
    /// The path the caller named: errors and audit records name it.
    pub(crate) named: PathBuf,
    pub(crate) dir: Arc<Dir>,
    pub(crate) name: OsString,
    /// The permission bits of the file being replaced; `None` when there is none.
    pub(crate) mode: Option<u32>,
    /// The path named a symbolic link, followed to `dir` and `name`.
    pub(crate) through_link: bool,
}

/// Where the file a path names is, without opening anything: see [`Target::locate`].
#[derive(Debug)]
pub(crate) struct Located {
    dir: PathBuf,
    pub(crate) name: OsString,
    pub(crate) mode: Option<u32>,
    /// The path is a symbolic link, followed.
    pub(crate) through_link: bool,
}

impl Located {
    /// The directory that holds the file.
    pub(crate) fn dir_path(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The file itself: the path, or where a link at it points.
    pub(crate) fn real_path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl Target {
    /// Where the file `path` names is: `path` itself, or the file a symbolic link at `path`
    /// points to (so that a settings file symlinked from a dotfiles repository stays a
    /// symlink). Anything at the path that is not a regular file is refused, without opening it
    /// (a FIFO never blocks).
    pub(crate) fn locate(path: &Path) -> Result<Located, Error> {
        let split = |path: &Path, mode, through_link| Located {
            dir: parent_dir(path).to_owned(),
            name: path.file_name().unwrap_or(path.as_os_str()).to_owned(),
            mode,
            through_link,
        };
        let metadata =
            match fault(IoOp::Metadata, path).and_then(|()| std::fs::symlink_metadata(path)) {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Ok(split(path, None, false));
                }
                Err(error) => return Err(io_error(path, IoOp::Metadata)(error)),
            };
        let metadata_was_link = metadata.file_type().is_symlink();
        let (target, metadata) = if metadata_was_link {
            let target =
                std::fs::canonicalize(path).map_err(io_error(path, IoOp::ResolveSymlink))?;
            let metadata = std::fs::metadata(&target).map_err(io_error(path, IoOp::Metadata))?;
            (target, metadata)
        } else {
            (path.to_owned(), metadata)
        };
        if !metadata.is_file() {
            return Err(Error::NotRegularFile {
                path: path.to_owned(),
                kind: FileKind::of(metadata.file_type()),
            });
        }
        Ok(split(&target, Some(mode_of(&metadata)), metadata_was_link))
    }

    /// The target of a save to `path` (see [`locate`](Target::locate)), its directory open
    /// (missing directories created, mode 0700).
    pub(crate) fn resolve(path: &Path, durability: Durability) -> Result<Target, Error> {
        let located = Target::locate(path)?;
        let dir = open_parent(path, &located.dir, durability)?;
        Ok(Target {
            named: path.to_owned(),
            dir: Arc::new(dir),
            name: located.name,
            mode: located.mode,
            through_link: located.through_link,
        })
    }

    /// The file `name` in `dir`, a directory under a root: a symbolic link or a mount there is
    /// refused (never followed out of the root), and so is anything but a regular file.
    pub(crate) fn beneath(dir: &Arc<Dir>, name: &OsStr, named: PathBuf) -> Result<Target, Error> {
        let stat = dir.stat(name).map_err(io_error(&named, IoOp::Metadata))?;
        let mode = match stat {
            None => None,
            Some(stat) if stat.kind == Kind::File && dir.same_mount(&stat) => Some(stat.mode),
            Some(stat) if stat.kind == Kind::File => {
                return Err(escape(Escape::Mount(named)));
            }
            Some(stat) => {
                return Err(Error::NotRegularFile {
                    path: named,
                    kind: stat.kind.file_kind(),
                });
            }
        };
        Ok(Target {
            named,
            dir: Arc::clone(dir),
            name: name.to_owned(),
            mode,
            through_link: false,
        })
    }

    /// The file being replaced, open for reading (never through a link), and its first bytes
    /// (its schema version); `None` when there is none.
    pub(crate) fn current(&self) -> Result<Option<(File, Vec<u8>)>, Error> {
        let path = self.dir.join(&self.name);
        let file =
            match fault(IoOp::Open, &path).and_then(|()| self.dir.open_file(&self.name, false)) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(io_error(&self.named, IoOp::Open)(error)),
            };
        let head = super::read::head(&file, HEAD).map_err(io_error(&self.named, IoOp::Read))?;
        Ok(Some((file, head)))
    }

    /// The first bytes of the file being replaced, for its schema version; `None` when there
    /// is none.
    pub(crate) fn head(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.current()?.map(|(_, head)| head))
    }
}

/// The error for a path under a root that would leave it.
pub(crate) fn escape(escape: Escape) -> Error {
    Error::InvalidPath {
        reason: escape.reason(),
        path: escape.path().to_owned(),
    }
}

/// The permission bits of a file (read, write and execute for its owner, group and others; a
/// setuid, setgid or sticky bit is not carried over to the file that replaces it).
fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        0o600
    }
}

/// Opens `dir`, the directory of the file `path` names, creating it and its missing parents
/// (each new one with mode 0700, its entry synced unless [`Durability::None`]).
pub(crate) fn open_parent(path: &Path, dir: &Path, durability: Durability) -> Result<Dir, Error> {
    match Dir::open(dir) {
        Ok(dir) => return Ok(dir),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error(path, IoOp::Open)(error)),
    }
    create_dirs(path, dir, durability)?;
    Dir::open(dir).map_err(io_error(path, IoOp::CreateDir))
}

/// Creates `dir` and its missing parents, each new one with mode 0700 (private to the user);
/// an existing directory is left as it is. Each new entry is made durable (its parent synced)
/// unless [`Durability::None`].
pub(crate) fn create_dirs(path: &Path, dir: &Path, durability: Durability) -> Result<(), Error> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.as_os_str().is_empty() && !current.exists() {
        missing.push(current);
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    for created in missing.iter().rev() {
        match fault(IoOp::CreateDir, created).and_then(|()| builder.create(created)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_error(path, IoOp::CreateDir)(error)),
        }
        if durability != Durability::None {
            Dir::open(parent_dir(created))
                .and_then(|parent| parent.sync())
                .map_err(io_error(path, IoOp::SyncDir))?;
        }
    }
    Ok(())
}

/// What is being written, for backups and the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Write<'a> {
    /// The schema version written: a file of another version is kept as a backup first.
    /// `None` for files that are not state files (journals, copies).
    pub(crate) version: Option<u32>,
    /// The version a file without an envelope holds (`accept_unversioned`).
    pub(crate) unversioned_as: Option<u32>,
    /// The operation to record in the audit log, if any.
    pub(crate) audit: Option<AuditOp>,
    /// The collection key, for the audit record.
    pub(crate) key: Option<&'a str>,
    /// The caller kept the file this write replaces already (a transaction does, before its
    /// commit point): nothing is kept here.
    pub(crate) kept: bool,
    /// Asked once the new file is durable, right before it is renamed into place: `false`
    /// (the file at the target is not the one the caller read) leaves the target alone, and
    /// the write fails with [`Error::Contended`].
    pub(crate) unless_changed: Option<Precondition<'a>>,
}

/// A check of [`Write::unless_changed`].
#[derive(Clone, Copy)]
pub(crate) struct Precondition<'a>(pub(crate) &'a (dyn Fn() -> bool + Sync));

impl std::fmt::Debug for Precondition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Precondition")
    }
}

/// Replaces `target` with what `contents` writes, durably and atomically (the module's
/// sequence); returns the file now at the target, open.
pub(crate) fn replace(
    disk: &Disk,
    target: &Target,
    write: &Write<'_>,
    contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
) -> Result<File, Error> {
    match replace_keeping(disk, target, write, contents) {
        (Some(file), Ok(())) => Ok(file),
        (_, Err(error)) => Err(error),
        (None, Ok(())) => Err(io_error(&target.named, IoOp::Open)(
            io::ErrorKind::NotFound.into(),
        )),
    }
}

/// [`replace`], returning the new file whenever it was renamed into place, even when a later
/// step (the directory sync, the audit record) failed.
pub(crate) fn replace_keeping(
    disk: &Disk,
    target: &Target,
    write: &Write<'_>,
    contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
) -> (Option<File>, Result<(), Error>) {
    let staged = match stage(disk, target, contents) {
        Ok(staged) => staged,
        Err(error) => return (None, Err(error)),
    };
    let prepared = (|| {
        let written = match disk.audited() {
            true => {
                Some(Written::of_file(staged.file()).map_err(io_error(&target.named, IoOp::Read))?)
            }
            false => None,
        };
        let (head, kept) = look_before(disk, target, write)?;
        Ok((head, written, kept))
    })();
    let (head, written, kept) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return (None, Err(error)),
    };
    if let Some(Precondition(unchanged)) = write.unless_changed
        && !unchanged()
    {
        // The staged file is removed as it drops, and so is the copy.
        return (
            None,
            Err(Error::Contended {
                path: target.named.clone(),
                attempts: 1,
            }),
        );
    }
    let (file, installed) = staged.install(disk, target);
    if file.is_none() {
        // Not renamed: `kept` drops, removing the copy.
        return (file, installed);
    }
    if let Some(kept) = kept {
        kept.finish(installed.is_ok());
    }
    if installed.is_err() {
        return (file, installed);
    }
    let audited = match write.audit {
        Some(operation) => disk.audit(&[AuditEntry {
            operation,
            path: &target.named,
            key: write.key,
            from_version: head.as_deref().and_then(version_of),
            to_version: write.version.map(u64::from),
            written,
        }]),
        None => Ok(()),
    };
    (file, audited)
}

/// What a write looks at in the file `target` replaces, before it does: its first bytes (the
/// audit record's previous version) and, for a state file, the copy a save keeps of it
/// ([`backup::prepare`]).
pub(crate) fn look_before(
    disk: &Disk,
    target: &Target,
    write: &Write<'_>,
) -> Result<(Option<Vec<u8>>, Option<backup::Kept>), Error> {
    let keeps = !write.kept
        && write.version.is_some()
        && (disk.backups > 0 || disk.keep_unreadable || disk.generations > 0);
    if !(keeps || disk.audited()) || target.mode.is_none() {
        return Ok((None, None));
    }
    let Some((file, head)) = target.current()? else {
        return Ok((None, None));
    };
    let kept = match write.version {
        Some(version) if keeps => {
            let write = (u64::from(version), write.unversioned_as);
            backup::prepare(disk, target, &file, write, &head, backup::Keep::Usual)?
        }
        _ => None,
    };
    Ok((Some(head), kept))
}

/// [`replace`] of the file `path` names, resolved again on every attempt of `disk`'s retry
/// policy; `contents` runs once per attempt.
pub(crate) fn replace_path(
    disk: &Disk,
    path: &Path,
    write: &Write<'_>,
    mut contents: impl FnMut(&mut FileWriter<'_>) -> io::Result<()>,
) -> Result<File, Error> {
    disk.retry.run(|| {
        let target = Target::resolve(path, disk.durability)?;
        replace(disk, &target, write, &mut contents)
    })
}

/// `contents` for bytes prepared beforehand: written as they are, unbuffered.
pub(crate) fn bytes(data: &[u8]) -> impl FnMut(&mut FileWriter<'_>) -> io::Result<()> + '_ {
    move |writer| writer.write_unbuffered(data)
}

/// A temporary file beside its target holding the complete new contents (synced unless
/// [`Durability::None`]), not yet in place. Dropping it removes it.
#[must_use = "a staged file is removed unless it is installed"]
pub(super) struct Staged {
    /// Until it is installed (then the caller's).
    file: Option<File>,
    dir: Arc<Dir>,
    name: OsString,
    installed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.installed {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

pub(super) fn stage(
    disk: &Disk,
    target: &Target,
    contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
) -> Result<Staged, Error> {
    let dir_path = target.dir.path();
    let (file, name) = fault(IoOp::CreateTemp, dir_path)
        .and_then(|()| create_temp(&target.dir, &target.name))
        .map_err(io_error(&target.named, IoOp::CreateTemp))?;
    // `staged` removes the file when it drops: the clean-up of every early return below.
    let staged = Staged {
        file: Some(file),
        dir: Arc::clone(&target.dir),
        name,
        installed: false,
    };
    // Marks the temporary file as in use until this process closes it or dies, so that a
    // sweep by another process never removes it (see `sweep_stale_temps`). A file system
    // without locks only loses the sweep.
    let _ = staged.file().try_lock();
    let mut writer = FileWriter::new(staged.file());
    fault(IoOp::Write, dir_path)
        .and_then(|()| contents(&mut writer))
        .and_then(|()| io::Write::flush(&mut writer))
        .map_err(io_error(&target.named, IoOp::Write))?;
    drop(writer);
    keep_mode(staged.file(), target.mode, &target.named)?;
    // After a failed fsync the page cache may already have dropped the dirty pages: retrying
    // would report success for data that never reached the disk. Give up and keep the old file.
    if disk.syncs() {
        fault(IoOp::SyncFile, dir_path)
            .and_then(|()| staged.file().sync_all())
            .map_err(io_error(&target.named, IoOp::SyncFile))?;
    }
    Ok(staged)
}

/// Gives a new file the permission bits of the file it replaces (it was created 0600).
fn keep_mode(file: &File, mode: Option<u32>, named: &Path) -> Result<(), Error> {
    match mode {
        Some(mode) if mode != 0o600 => {
            set_mode(file, mode).map_err(io_error(named, IoOp::SetPermissions))
        }
        _ => Ok(()),
    }
}

impl Staged {
    /// The staged file, open.
    fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a staged file is open until it is installed")
    }

    /// Keeps the staged file under its temporary name (closed, no longer removed on drop)
    /// and returns that name: a copy that is renamed later, or removed, by its holder.
    pub(super) fn into_name(mut self) -> OsString {
        self.installed = true;
        self.file = None;
        std::mem::take(&mut self.name)
    }

    /// Renames the temporary file over the target and syncs the directory
    /// ([`Durability::Full`]); returns the file once it is renamed (also when the directory
    /// sync then failed).
    pub(super) fn install(
        mut self,
        disk: &Disk,
        target: &Target,
    ) -> (Option<File>, Result<(), Error>) {
        let dir = Arc::clone(&self.dir);
        if let Err(error) = fault(IoOp::Rename, dir.path())
            .and_then(|()| dir.rename(&self.name, &dir, &target.name))
        {
            return (None, Err(io_error(&target.named, IoOp::Rename)(error)));
        }
        self.installed = true;
        // The file itself, not a copy of its descriptor.
        let file = self.file.take();
        if disk.syncs_dirs()
            && let Err(error) = fault(IoOp::SyncDir, dir.path()).and_then(|()| dir.sync())
        {
            return (file, Err(io_error(&target.named, IoOp::SyncDir)(error)));
        }
        if sweep_due(dir.path()) {
            sweep_stale_temps(&dir, &target.name);
        }
        (file, Ok(()))
    }
}

/// Creates `.<name>.<random>.tmp` in `dir` with O_CREAT | O_EXCL (never opening or following
/// anything already there, a symbolic link included) and mode 0600 from creation.
fn create_temp(dir: &Dir, name: &OsStr) -> io::Result<(File, OsString)> {
    create_unique(dir, &names::temp_prefix(name), TEMP_RANDOM_CHARS)
}

/// Creates `<prefix><random><suffix>` exclusively, trying other random parts while one exists.
pub(crate) fn create_unique(
    dir: &Dir,
    prefix: &OsStr,
    random_chars: usize,
) -> io::Result<(File, OsString)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..(1u32 << 16) {
        let mut name = prefix.to_owned();
        name.push(random_part(random_chars));
        name.push(names::temp_suffix());
        match dir.create_new(&name) {
            Ok(file) => return Ok((file, name)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && random_chars > 0 => {
                last = error;
            }
            Err(error) => return Err(error),
        }
    }
    Err(last)
}

/// Gives the file `name` of `dir` a second, temporary name (`.<name>.<random>.tmp`, a hard
/// link): the name is returned.
pub(crate) fn link_temp(dir: &Dir, name: &OsStr) -> io::Result<OsString> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..(1u32 << 16) {
        let mut temp = names::temp_prefix(name);
        temp.push(random_part(TEMP_RANDOM_CHARS));
        temp.push(names::temp_suffix());
        match dir.link(name, &temp) {
            Ok(()) => return Ok(temp),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = error,
            Err(error) => return Err(error),
        }
    }
    Err(last)
}

fn random_part(chars: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(chars)
        .collect()
}

/// How often one process sweeps a directory for stale temporary files.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A temporary file younger than this is never swept: it may belong to a save that has created
/// it but not yet locked it.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// A temporary file is left behind only when a process dies during a save, so each process
/// looks at a directory on its first save there and then at most once a minute: the sweep
/// costs a directory listing, which a save should not pay every time.
fn sweep_due(dir: &Path) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static LAST_SWEEP: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
    let Ok(mut last_sweep) = LAST_SWEEP.lock() else {
        return false;
    };
    let now = Instant::now();
    let last_sweep = last_sweep.get_or_insert_with(HashMap::new);
    match last_sweep.get(dir) {
        Some(last) if now.duration_since(*last) < SWEEP_INTERVAL => false,
        _ => {
            last_sweep.insert(dir.to_owned(), now);
            true
        }
    }
}

/// Removes the temporary files of `name` that a crashed save left in `dir`: those whose
/// `flock` nobody holds (a live save holds its own until it closes the file) and that are old
/// enough not to be in the gap between creation and locking. Best effort: the save it follows
/// has already succeeded, so failures here are ignored.
pub(crate) fn sweep_stale_temps(dir: &Dir, name: &OsStr) {
    let Ok(entries) = dir.list() else {
        return;
    };
    for (candidate, kind) in entries {
        if kind != Kind::File || names::classify(&candidate, name) != Some(Sibling::Temp) {
            continue;
        }
        let Ok(file) = dir.open_file(&candidate, false) else {
            continue;
        };
        let stale = file.metadata().is_ok_and(|metadata| {
            metadata.is_file()
                && metadata
                    .modified()
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age >= STALE_AFTER)
        });
        if stale && file.try_lock().is_ok() {
            let _ = dir.remove_file(&candidate);
        }
    }
}

/// A file of a batch, written and closed, its writeback started but not yet synced, under a
/// name of its own (a temporary name beside its target, or a transaction's staged name).
/// Dropping it removes it, unless [`keep`](StagedFile::keep) said otherwise.
#[derive(Debug)]
pub(crate) struct StagedFile {
    dir: Arc<Dir>,
    name: OsString,
    /// Its device and inode when it was created (`None` for one found by recovery): the file
    /// opened again under its name must be this one.
    identity: Option<(u64, u64)>,
    /// Its size and CRC-32C, for the audit log.
    pub(crate) written: Option<Written>,
    kept: bool,
}

impl StagedFile {
    /// The name it is staged under.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// A file staged earlier (by a process that crashed past its commit point), found by
    /// recovery: never removed when dropped.
    pub(crate) fn existing(dir: &Arc<Dir>, name: OsString) -> StagedFile {
        StagedFile {
            dir: Arc::clone(dir),
            name,
            identity: None,
            written: None,
            kept: true,
        }
    }

    /// Refuses a file found under the staged name that is not the one staged: another file
    /// swapped in (a hard link to a file elsewhere, a mount), whose mode or place a commit
    /// must never change.
    fn check(&self, stat: &super::dir::Stat) -> Result<(), Error> {
        let ours = stat.kind == Kind::File
            && stat.nlink == 1
            && self.dir.same_mount(stat)
            && self
                .identity
                .is_none_or(|identity| identity == (stat.dev, stat.ino));
        match ours {
            true => Ok(()),
            false => Err(Error::InvalidPath {
                path: self.dir.join(&self.name),
                reason: "the staged file was replaced by another file (a link to a file \
                         elsewhere, a mount): it is not put in place"
                    .to_owned(),
            }),
        }
    }

    /// Leaves the file in place when this is dropped (a transaction past its commit point:
    /// recovery installs it).
    pub(crate) fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

/// Writes `data` into a new file `name` in `dir` (a transaction's staged name), starts its
/// writeback and closes it. A failure removes the file at once. Errors name `named`.
pub(crate) fn stage_closed(
    disk: &Disk,
    dir: &Arc<Dir>,
    name: &OsStr,
    data: &[u8],
    named: &Path,
) -> Result<StagedFile, Error> {
    let file = fault(IoOp::CreateTemp, dir.path())
        .and_then(|()| dir.create_new(name))
        .map_err(io_error(named, IoOp::CreateTemp))?;
    let name = name.to_owned();
    let mut staged = StagedFile {
        dir: Arc::clone(dir),
        name,
        identity: None,
        written: disk.audited().then(|| Written::of(data)),
        kept: false,
    };
    let stat = Dir::stat_file(&file).map_err(io_error(named, IoOp::Metadata))?;
    staged.identity = Some((stat.dev, stat.ino));
    let mut writer = FileWriter::new(&file);
    fault(IoOp::Write, dir.path())
        .and_then(|()| writer.write_unbuffered(data))
        .map_err(io_error(named, IoOp::Write))?;
    if disk.syncs() {
        start_writeback(&file);
    }
    Ok(staged)
}

/// From how many files a batch is synced with one `syncfs` of their file system instead of an
/// fsync each: below it, the fsyncs cost less than flushing whatever else is dirty there.
pub(crate) const SYNC_FS_FROM: usize = 32;

/// Syncs staged files (on `whole`'s file system), each given the permission bits of the file
/// it will replace first (`mode`; opened again by its name, never through a link). A batch of
/// [`SYNC_FS_FROM`] files or more is synced whole with one `syncfs` where there is one (a
/// journal commit for all, not one each); otherwise each file is opened and synced. Errors
/// name `named`.
pub(crate) fn sync_staged(
    disk: &Disk,
    files: &[(&StagedFile, Option<u32>, &Path)],
    whole: &Dir,
) -> Result<(), Error> {
    let at_once = disk.syncs() && files.len() >= SYNC_FS_FROM && Dir::HAS_SYNC_FS;
    for &(staged, mode, named) in files {
        let needs_mode = mode.is_some_and(|mode| mode != 0o600);
        if (at_once || !disk.syncs()) && !needs_mode {
            continue;
        }
        let file = fault(IoOp::Open, staged.dir.path())
            .and_then(|()| staged.dir.open_file(&staged.name, true))
            .map_err(io_error(named, IoOp::Open))?;
        let stat = Dir::stat_file(&file).map_err(io_error(named, IoOp::Metadata))?;
        staged.check(&stat)?;
        keep_mode(&file, mode, named)?;
        if disk.syncs() && !at_once {
            fault(IoOp::SyncFile, staged.dir.path())
                .and_then(|()| file.sync_all())
                .map_err(io_error(named, IoOp::SyncFile))?;
        }
    }
    if at_once {
        sync_fs(whole)?;
    }
    Ok(())
}

/// One `syncfs` of `dir`'s file system, through the fault seam as a file sync (only where
/// [`Dir::HAS_SYNC_FS`]).
pub(crate) fn sync_fs(dir: &Dir) -> Result<(), Error> {
    fault(IoOp::SyncFile, dir.path())
        .and_then(|()| dir.sync_fs())
        .map_err(io_error(dir.path(), IoOp::SyncFile))
}

/// Puts a staged file in place of `target` (keeping a backup of another version first,
/// unless `backup_may_fail`, when a failed backup does not stop the rename): the directories
/// are synced by the caller, once for the batch. Returns the schema version the replaced file
/// held, for the audit log (read only when audited).
pub(crate) fn install_staged(
    disk: &Disk,
    mut staged: StagedFile,
    target: &Target,
    write: &Write<'_>,
    backup_may_fail: bool,
) -> Result<Option<u64>, Error> {
    let (head, kept) = match look_before(disk, target, write) {
        Ok(looked) => looked,
        Err(_) if backup_may_fail => (target.head().ok().flatten(), None),
        Err(error) => return Err(error),
    };
    let now = staged
        .dir
        .stat(&staged.name)
        .map_err(io_error(&target.named, IoOp::Metadata))?
        .ok_or_else(|| io_error(&target.named, IoOp::Rename)(io::ErrorKind::NotFound.into()))?;
    staged.check(&now)?;
    fault(IoOp::Rename, target.dir.path())
        .and_then(|()| staged.dir.rename(&staged.name, &target.dir, &target.name))
        .map_err(io_error(&target.named, IoOp::Rename))?;
    staged.kept = true;
    if let Some(kept) = kept {
        kept.finish(true);
    }
    Ok(head.as_deref().and_then(version_of))
}

/// Creates the file `name` in `dir` with `data` (it must not exist), synced with its
/// directory unless [`Durability::None`]: a transaction's commit record.
pub(crate) fn create_file(disk: &Disk, dir: &Dir, name: &OsStr, data: &[u8]) -> Result<(), Error> {
    let path = dir.join(name);
    let file = fault(IoOp::CreateTemp, dir.path())
        .and_then(|()| dir.create_new(name))
        .map_err(io_error(&path, IoOp::CreateTemp))?;
    let written = fault(IoOp::Write, dir.path())
        .and_then(|()| FileWriter::new(&file).write_unbuffered(data))
        .map_err(io_error(&path, IoOp::Write))
        .and_then(|()| match disk.syncs() {
            true => fault(IoOp::SyncFile, dir.path())
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path, IoOp::SyncFile)),
            false => Ok(()),
        });
    if let Err(error) = written {
        let _ = dir.remove_file(name);
        return Err(error);
    }
    if disk.syncs() {
        fault(IoOp::SyncDir, dir.path())
            .and_then(|()| dir.sync())
            .map_err(io_error(&path, IoOp::SyncDir))?;
    }
    Ok(())
}

/// The directory `relative` (a path of plain components) under `root`, reached without
/// following a symbolic link or crossing a mount; with `create`, missing directories are made
/// (mode 0700, their entries synced unless [`Durability::None`]). `None` when a directory is
/// missing and not created.
pub(crate) fn dir_beneath(
    root: &Arc<Dir>,
    relative: &[&OsStr],
    create: Option<Durability>,
) -> Result<Option<Arc<Dir>>, Error> {
    let mut current = Arc::clone(root);
    for part in relative {
        let found = match create {
            Some(durability) => current.child_or_create(part, durability != Durability::None),
            None => current.child(part),
        };
        let path = current.join(part);
        current = match found.map_err(io_error(&path, IoOp::Open))? {
            Lookup::Found(dir) => Arc::new(dir),
            Lookup::Missing => return Ok(None),
            Lookup::Escape(escaped) => return Err(escape(escaped)),
        };
    }
    Ok(Some(current))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Failures in the middle of a save, provoked for real through the fault seam and the
    //! `contents` callback, which runs after the target check and the temporary file's
    //! creation.

    use std::fs;
    use std::io::{self, Write as _};
    use std::path::Path;

    use super::super::faults::inject_fault;
    use super::super::writer::MAX_WRITE;
    use super::*;
    use crate::settings::Settings;

    /// The names in `dir`, sorted.
    pub(crate) fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn disk(durability: Durability) -> Disk {
        Disk {
            durability,
            ..Settings::DEFAULT.disk
        }
    }

    fn write_atomic(
        path: &Path,
        durability: Durability,
        contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
    ) -> Result<(), Error> {
        let target = Target::resolve(path, durability)?;
        replace(&disk(durability), &target, &Write::default(), contents).map(drop)
    }

    #[test]
    fn the_temporary_file_is_hidden_private_and_beside_the_target() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, Durability::Full, |writer| {
            let names = entries(dir.path());
            assert_eq!(names.len(), 1);
            let name = &names[0];
            assert!(
                name.starts_with(".state.json.") && name.ends_with(".tmp"),
                "{name}"
            );
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            writer.write_all(b"new")
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_replaced_file_keeps_its_permission_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, Durability::Full, |writer| writer.write_all(b"new")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_removes_the_temporary_file_and_keeps_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        let error = write_atomic(&path, Durability::Full, |writer| {
            writer.write_all(b"partial")?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .unwrap_err();
        match error {
            Error::Io { op, source, .. } => {
                assert_eq!(op, IoOp::Write);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        // Between the check and the rename, a non-empty directory takes the target's place:
        // rename(2) refuses to replace it.
        let error = write_atomic(&path, Durability::Full, |writer| {
            fs::remove_file(&path).unwrap();
            fs::create_dir(&path).unwrap();
            fs::write(path.join("inside"), b"kept").unwrap();
            writer.write_all(b"new")
        })
        .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Io {
                    op: IoOp::Rename,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(entries(dir.path()), ["state.json"]);
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
    }

    #[test]
    fn the_file_writer_keeps_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        // Small writes that cross the piece boundary, then one write larger than a piece.
        let small: Vec<u8> = (0..=250u8).collect();
        let large = vec![b'x'; MAX_WRITE + 7];
        let mut expected = Vec::new();
        write_atomic(&path, Durability::None, |writer| {
            while expected.len() < MAX_WRITE + 1000 {
                writer.write_all(&small).unwrap();
                expected.extend_from_slice(&small);
            }
            writer.write_all(&large).unwrap();
            expected.extend_from_slice(&large);
            writer.write_all(b"end").unwrap();
            expected.extend_from_slice(b"end");
            Ok(())
        })
        .unwrap();
        assert!(fs::read(&path).unwrap() == expected);

        // The same bytes serialized beforehand, as `save_async` does, then written.
        write_atomic(&path, Durability::None, |writer| {
            writer.write_all(&expected[..5]).unwrap();
            writer.write_unbuffered(&expected[5..])
        })
        .unwrap();
        assert!(fs::read(&path).unwrap() == expected);
    }

    #[test]
    fn read_stops_one_byte_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"0123456789").unwrap();
        assert_eq!(super::super::read::read(&path, 10).unwrap(), b"0123456789");
        assert!(matches!(
            super::super::read::read(&path, 9),
            Err(Error::TooLarge {
                size: 10,
                limit: 9,
                ..
            })
        ));
    }

    fn save_new(path: &Path) -> Result<(), Error> {
        write_atomic(path, Durability::Full, |writer| writer.write_all(b"new"))
    }

    #[test]
    fn every_failed_step_before_the_rename_keeps_the_old_file_and_removes_the_temp() {
        for op in [IoOp::CreateTemp, IoOp::Write, IoOp::SyncFile, IoOp::Rename] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.json");
            fs::write(&path, b"old").unwrap();
            let fault = inject_fault(dir.path(), op);
            match save_new(&path) {
                Err(Error::Io {
                    op: failed, source, ..
                }) => {
                    assert_eq!(failed, op);
                    assert_eq!(source.raw_os_error(), Some(libc::EIO));
                }
                other => panic!("{op:?}: {other:?}"),
            }
            assert_eq!(fault.hits(), 1);
            assert_eq!(fs::read(&path).unwrap(), b"old", "{op:?}");
            assert_eq!(entries(dir.path()), ["state.json"], "{op:?}");
            // The next save goes through.
            save_new(&path).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"new");
        }
    }

    #[test]
    fn a_failed_directory_sync_is_its_own_error_after_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        let _fault = inject_fault(dir.path(), IoOp::SyncDir);
        let error = save_new(&path).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Io {
                    op: IoOp::SyncDir,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("may not survive a power cut"),
            "{error}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["state.json"]);
    }

    fn age(path: &Path, seconds: u64) {
        let file = fs::File::options().write(true).open(path).unwrap();
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
        file.set_modified(then).unwrap();
    }

    #[test]
    fn a_sweep_removes_only_old_unlocked_temporary_files_of_that_name() {
        let dir = tempfile::tempdir().unwrap();
        let name = OsStr::new("state.json");
        let stale = dir.path().join(".state.json.AbCdEf123456.tmp");
        let live = dir.path().join(".state.json.LiveLive0000.tmp");
        let young = dir.path().join(".state.json.Young0000000.tmp");
        let other = dir.path().join(".other.json.AbCdEf123456.tmp");
        let lookalike = dir.path().join(".state.json.short.tmp");
        for path in [&stale, &live, &young, &other, &lookalike] {
            fs::write(path, b"partial").unwrap();
        }
        for path in [&stale, &live, &other, &lookalike] {
            age(path, 5);
        }
        let holder = fs::File::open(&live).unwrap();
        holder.lock().unwrap();

        sweep_stale_temps(&Dir::open(dir.path()).unwrap(), name);

        assert!(!stale.exists());
        for kept in [&live, &young, &other, &lookalike] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
        // With no random part the name is known in advance, as an attacker would like it.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(".state.json..tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let opened = Dir::open(dir.path()).unwrap();
        let error = create_unique(&opened, ".state.json.".as_ref(), 0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(
            fs::symlink_metadata(&planted)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
