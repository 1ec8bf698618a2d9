//! The std file shell: a guarded read and a durable atomic write. It moves bytes only (what a
//! file holds is the codec's business) and is the one place that says "put these bytes there
//! durably": every save, backup copy and restore goes through [`write_atomic`] or
//! [`stage`] + [`Staged::install`]. The tokio shell runs these same functions on the blocking
//! pool.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

use crate::error::{Error, FileKind, IoOp};
use crate::mapped::Contents;

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
    /// No fsync at all: for caches and tests. After a power cut the file may be empty or
    /// zero-filled; after a process crash it is still intact.
    None,
}

/// The largest piece [`FileWriter`] hands to the file in one `write`: a file of up to 3.75 MiB
/// is one `write`, a larger one pays a system call per 3.75 MiB (why one piece beats many small
/// ones: BENCHMARKS.md, "What the suite changed"). A quarter MiB under 4 MiB so that the buffer
/// and the allocator's slack (glibc keeps the freed smaller buffers of the doubling, about
/// 132 KiB) stay under 4 MiB beside the value being saved (`cargo bench -- memory`).
const MAX_WRITE: usize = (4 << 20) - (256 << 10);

/// Suffix of the temporary files a save creates beside the target (`.<name>.<random>.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

/// Length of the random part of a temporary file's name: 62^12, about 2^71 names.
const TEMP_RANDOM_CHARS: usize = 12;

pub(crate) fn io_error(path: &Path, op: IoOp) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Reads the whole file, refusing anything that is not a regular file and anything over
/// `limit` bytes before reading it.
pub(crate) fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let (file, len) = open_regular(path, limit)?;
    read_open(path, &file, len, limit)
}

/// [`read`] for a load: a file of at least [`MAP_AT_LEAST`](crate::mapped::MAP_AT_LEAST) bytes
/// is mapped rather than copied into the heap where that is safe (see [`crate::mapped`]). The
/// mapping holds the size `fstat` reported; a file that grows afterwards is read as it was.
pub(crate) fn read_for_load(path: &Path, limit: u64) -> Result<Contents, Error> {
    let (file, len) = open_regular(path, limit)?;
    #[cfg(target_os = "linux")]
    if len >= crate::mapped::MAP_AT_LEAST
        && let Some(mapped) = Contents::map(&file, len)
    {
        return Ok(mapped);
    }
    read_open(path, &file, len, limit).map(Contents::Read)
}

/// Opens `path` for reading and returns it with its size, after checking on the open
/// descriptor that it is a regular file of at most `limit` bytes.
fn open_regular(path: &Path, limit: u64) -> Result<(File, u64), Error> {
    let (file, metadata) = open_regular_file(path, false)?;
    if metadata.len() > limit {
        return Err(too_large(path, metadata.len(), limit));
    }
    Ok((file, metadata.len()))
}

/// Opens `path` for reading (and writing, if `write`), refusing anything but a regular file
/// without ever blocking on one: returns the file and its metadata.
pub(crate) fn open_regular_file(path: &Path, write: bool) -> Result<(File, fs::Metadata), Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    // Opening a FIFO for reading blocks until a writer appears; non-blocking mode returns at
    // once so the type check below can refuse it. It changes nothing for regular files.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = fault(IoOp::Open)
        .and_then(|()| options.open(path))
        .map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                Error::NotFound {
                    path: path.to_owned(),
                    source,
                }
            } else {
                io_error(path, IoOp::Open)(source)
            }
        })?;
    // Checked on the open descriptor, not the path, so nothing can be swapped in between.
    let metadata = file.metadata().map_err(io_error(path, IoOp::Metadata))?;
    if !metadata.is_file() {
        return Err(Error::NotRegularFile {
            path: path.to_owned(),
            kind: FileKind::of(metadata.file_type()),
        });
    }
    Ok((file, metadata))
}

fn too_large(path: &Path, size: u64, limit: u64) -> Error {
    Error::TooLarge {
        path: path.to_owned(),
        size,
        limit,
    }
}

/// Reads the rest of `file`, which had `len` bytes when it was opened.
fn read_open(path: &Path, file: &File, len: u64, limit: u64) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow after the size check: read at most one byte past the cap.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error(path, IoOp::Read))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// Asks the kernel to start writing `file`'s dirty pages now, without waiting: the fsync that
/// follows then finds them on their way (DESIGN.md section 9: 1,000 small files synced 4.8x
/// faster than one by one, where a plain batch of fsyncs gained 1.6x).
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

/// Replaces the file at `path` with what `contents` writes, durably and atomically: a temporary
/// file in the same directory (created exclusively, mode 0600 from creation), written, fsynced,
/// renamed over the target, then the directory fsynced. On every failure the temporary file is
/// removed and the target is as it was. Errors name `path`.
pub(crate) fn write_atomic(
    path: &Path,
    durability: Durability,
    contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
) -> Result<(), Error> {
    let target = resolve_target(path)?;
    stage(path, &target, durability, contents)?.install()
}

/// `contents` for bytes prepared beforehand: written as they are, unbuffered.
pub(crate) fn bytes(data: &[u8]) -> impl FnOnce(&mut FileWriter<'_>) -> io::Result<()> + '_ {
    move |writer| writer.write_unbuffered(data)
}

/// A temporary file beside its target holding the complete new contents (synced to disk unless
/// [`Durability::None`]), not yet in place. Dropping it removes the temporary file and leaves
/// the target as it was; [`install`](Staged::install) renames it over the target.
#[must_use = "a staged file is removed unless it is installed"]
pub(crate) struct Staged<'p> {
    temp: NamedTempFile,
    path: &'p Path,
    target: &'p Path,
    durability: Durability,
}

/// The first half of [`write_atomic`]: creates the temporary file beside `target` (the
/// [`resolve_target`] of `path`), writes `contents` into it and syncs it. Errors name `path`.
pub(crate) fn stage<'p>(
    path: &'p Path,
    target: &'p Path,
    durability: Durability,
    contents: impl FnOnce(&mut FileWriter<'_>) -> io::Result<()>,
) -> Result<Staged<'p>, Error> {
    let dir = parent_dir(target);
    let name = target.file_name().unwrap_or(target.as_os_str());
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    // `temp` deletes the file when it drops: that is the clean-up of every early return below.
    // The directory usually exists: it is only looked at (and created) when the temporary file
    // cannot be, which saves a system call on every other save.
    let temp =
        match fault(IoOp::CreateTemp).and_then(|()| create_temp(dir, &prefix, TEMP_RANDOM_CHARS)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                create_parents(path, dir)?;
                create_temp(dir, &prefix, TEMP_RANDOM_CHARS)
            }
            created => created,
        }
        .map_err(io_error(path, IoOp::CreateTemp))?;
    // Marks the temporary file as in use until this process closes it or dies, so that a
    // sweep by another process never removes it (see `sweep_stale_temps`). A file system
    // without locks only loses the sweep.
    let _ = temp.as_file().try_lock();

    let mut writer = FileWriter::new(temp.as_file());
    fault(IoOp::Write)
        .and_then(|()| contents(&mut writer))
        .and_then(|()| writer.flush())
        .map_err(io_error(path, IoOp::Write))?;
    drop(writer);

    // After a failed fsync the page cache may already have dropped the dirty pages: retrying
    // would report success for data that never reached the disk. Give up and keep the old file.
    if durability != Durability::None {
        fault(IoOp::SyncFile)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_error(path, IoOp::SyncFile))?;
    }
    Ok(Staged {
        temp,
        path,
        target,
        durability,
    })
}

impl Staged<'_> {
    /// The staged file, open for reading and writing; after [`install`](Staged::install) it
    /// is the file at the target (a clone of it stays usable).
    pub(crate) fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// The second half of [`write_atomic`]: renames the temporary file over the target and
    /// syncs the directory ([`Durability::Full`]).
    pub(crate) fn install(self) -> Result<(), Error> {
        let Staged {
            temp,
            path,
            target,
            durability,
        } = self;
        let dir = parent_dir(target);
        fault(IoOp::Rename).map_err(io_error(path, IoOp::Rename))?;
        temp.persist(target)
            .map_err(|failed| io_error(path, IoOp::Rename)(failed.error))?;
        if durability == Durability::Full {
            fault(IoOp::SyncDir)
                .and_then(|()| sync_dir(dir))
                .map_err(io_error(path, IoOp::SyncDir))?;
        }
        if sweep_due(dir) {
            sweep_stale_temps(dir, target.file_name().unwrap_or(target.as_os_str()));
        }
        Ok(())
    }
}

/// The writer a save's serializer writes into: collects a serializer's many small writes in a
/// buffer that grows as needed up to [`MAX_WRITE`], and hands the file whole buffers. A small
/// file costs one `write` and a buffer of its own size; a large one a `write` per [`MAX_WRITE`]
/// and never more than that much buffer (a `Vec` written at the end would hold the whole file
/// twice).
pub(crate) struct FileWriter<'f> {
    file: &'f File,
    buffer: Vec<u8>,
}

impl<'f> FileWriter<'f> {
    fn new(file: &'f File) -> Self {
        FileWriter {
            file,
            buffer: Vec::with_capacity(8 * 1024),
        }
    }

    /// Writes `data` to the file as it is, after what is buffered: for bytes prepared
    /// beforehand (framed files, backup copies), which copying into the buffer would only slow
    /// down.
    pub(crate) fn write_unbuffered(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.file.write_all(data)
    }

    /// A write the buffer has no room for: the buffer grows to [`MAX_WRITE`] or is handed to
    /// the file first; a piece of `MAX_WRITE` or more goes to the file directly.
    #[cold]
    fn write_beyond_capacity(&mut self, data: &[u8]) -> io::Result<()> {
        if self.buffer.len() + data.len() > MAX_WRITE {
            self.spill()?;
            if data.len() >= MAX_WRITE {
                return self.file.write_all(data);
            }
        }
        if data.len() > self.buffer.capacity() - self.buffer.len() {
            // Doubling, as `Vec` grows (the freed smaller buffers are reused by the next save,
            // which costs no page faults), but never past `MAX_WRITE`: a `Vec` would double
            // 2 MiB to 4 MiB and then fill all of it.
            let wanted = (self.buffer.len() + data.len())
                .max(self.buffer.capacity() * 2)
                .min(MAX_WRITE);
            self.buffer.reserve_exact(wanted - self.buffer.len());
        }
        self.buffer.extend_from_slice(data);
        Ok(())
    }

    #[cold]
    fn spill(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.buffer);
        self.buffer.clear();
        result
    }
}

impl Write for FileWriter<'_> {
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        // The hot path, taken by all but a few writes: the piece fits the room the buffer has.
        // It is the same test `extend_from_slice` makes, which the compiler then drops, so a
        // write costs what a write into a plain `Vec` costs.
        if data.len() <= self.buffer.capacity() - self.buffer.len() {
            self.buffer.extend_from_slice(data);
            return Ok(());
        }
        self.write_beyond_capacity(data)
    }

    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            self.spill()
        }
    }
}

/// Creates `<prefix><random>.tmp` in `dir` with O_CREAT | O_EXCL (never opening or following
/// anything already there, a symbolic link included) and mode 0600 from creation. Opened here
/// rather than by `tempfile_in`, which wraps the OS error that callers match on (ENOSPC, EROFS,
/// EACCES) in one of its own.
fn create_temp(dir: &Path, prefix: &OsStr, random_chars: usize) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(random_chars)
        .make_in(dir, |path| {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)
        })
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
pub(crate) fn sweep_stale_temps(dir: &Path, name: &OsStr) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_temp_of(&entry.file_name(), name) {
            continue;
        }
        let path = entry.path();
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NOFOLLOW | libc::O_NONBLOCK,
        );
        let Ok(file) = options.open(&path) else {
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
            let _ = fs::remove_file(&path);
        }
    }
}

/// `.<name>.<TEMP_RANDOM_CHARS alphanumerics>.tmp`: the names `write_atomic` creates.
pub(crate) fn is_temp_of(candidate: &OsStr, name: &OsStr) -> bool {
    let (Some(candidate), Some(name)) = (candidate.to_str(), name.to_str()) else {
        return false;
    };
    candidate
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == TEMP_RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Test-only fault injection: `inject_fault(op)` makes the next `fault(op)` on this thread
/// fail with EIO, `inject_faults(op, errno, n)` the next `n` with `errno`, so every failure path
/// of a load or save (and the retries of transient ones) is exercised for real in the unit
/// tests.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::Cell;

    use crate::IoOp;

    thread_local! {
        static NEXT: Cell<Option<(IoOp, i32, u32)>> = const { Cell::new(None) };
    }

    pub(crate) fn inject_fault(op: IoOp) {
        inject_faults(op, libc::EIO, 1);
    }

    pub(crate) fn inject_faults(op: IoOp, errno: i32, times: u32) {
        NEXT.set((times > 0).then_some((op, errno, times)));
    }

    pub(crate) fn fault(op: IoOp) -> std::io::Result<()> {
        match NEXT.get() {
            Some((at, errno, times)) if at == op => {
                NEXT.set((times > 1).then_some((at, errno, times - 1)));
                Err(std::io::Error::from_raw_os_error(errno))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
use faults::fault;

#[cfg(not(test))]
#[inline(always)]
fn fault(_op: IoOp) -> io::Result<()> {
    Ok(())
}

/// The file a save replaces: `path` itself, or the file a symbolic link at `path` points to
/// (so that a settings file symlinked from a dotfiles repository stays a symlink). Anything at
/// the path that is not a regular file is refused before anything is written.
pub(crate) fn resolve_target(path: &Path) -> Result<PathBuf, Error> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(path.to_owned()),
        Err(error) => return Err(io_error(path, IoOp::Metadata)(error)),
    };
    let (target, metadata) = if metadata.file_type().is_symlink() {
        let target = fs::canonicalize(path).map_err(io_error(path, IoOp::ResolveSymlink))?;
        let metadata = fs::metadata(&target).map_err(io_error(path, IoOp::Metadata))?;
        (target, metadata)
    } else {
        (path.to_owned(), metadata)
    };
    if metadata.is_file() {
        Ok(target)
    } else {
        Err(Error::NotRegularFile {
            path: path.to_owned(),
            kind: FileKind::of(metadata.file_type()),
        })
    }
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its missing parents, each new one with mode 0700 (private to the user);
/// an existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the missing directories above the target and makes each new entry durable.
pub(crate) fn create_parents(path: &Path, dir: &Path) -> Result<(), Error> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.as_os_str().is_empty() && !current.exists() {
        missing.push(current);
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error(path, IoOp::CreateDir))?;
    for created in missing {
        sync_dir(parent_dir(created)).map_err(io_error(path, IoOp::SyncDir))?;
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory fsync through std; NTFS journals the rename itself.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! Failures in the middle of a save, provoked for real through the `contents` callback,
    //! which runs after the target check and the temporary file's creation.

    use std::fs;
    use std::io::{self, Write as _};
    use std::path::Path;

    use super::faults::inject_fault;
    use super::{MAX_WRITE, create_temp, is_temp_of, read, sweep_stale_temps, write_atomic};
    use crate::{Durability, Error, IoOp};

    /// The names in `dir`, sorted.
    pub(crate) fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
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
        assert_eq!(read(&path, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read(&path, 9),
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
            inject_fault(op);
            match save_new(&path) {
                Err(Error::Io {
                    op: failed, source, ..
                }) => {
                    assert_eq!(failed, op);
                    assert_eq!(source.raw_os_error(), Some(libc::EIO));
                }
                other => panic!("{op:?}: {other:?}"),
            }
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
        inject_fault(IoOp::SyncDir);
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
        let name = std::ffi::OsStr::new("state.json");
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

        sweep_stale_temps(dir.path(), name);

        assert!(!stale.exists());
        for kept in [&live, &young, &other, &lookalike] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }

    #[test]
    fn temporary_file_names_are_recognised_exactly() {
        let name = std::ffi::OsStr::new("a.json");
        assert!(is_temp_of(".a.json.0123456789ab.tmp".as_ref(), name));
        for other in [
            "a.json",
            ".a.json.0123456789a.tmp",
            ".a.json.0123456789abc.tmp",
            ".a.json.012345-789ab.tmp",
            ".b.json.0123456789ab.tmp",
            "a.json.0123456789ab.tmp",
        ] {
            assert!(!is_temp_of(other.as_ref(), name), "{other}");
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
        let error = create_temp(dir.path(), ".state.json.".as_ref(), 0).unwrap_err();
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
