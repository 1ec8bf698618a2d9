//! The std file shell: a guarded read and a durable atomic write. The only module that touches
//! the file system; the tokio shell runs these same functions on the blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, FileKind, IoOp};

/// Buffer between the serializer and the temporary file: large enough that serde_json's many
/// small writes become few system calls, small enough not to matter for memory.
const WRITE_BUFFER: usize = 64 * 1024;

/// Suffix of the temporary files a save creates beside the target (`.<name>.<random>.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

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
    let mut options = OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading blocks until a writer appears; non-blocking mode returns at
    // once so the type check below can refuse it. It changes nothing for regular files.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|source| {
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
    let too_large = |size| Error::TooLarge {
        path: path.to_owned(),
        size,
        limit,
    };
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // The file may grow after the size check: read at most one byte past the cap.
    (&file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error(path, IoOp::Read))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Replaces the file at `path` with what `contents` writes, durably and atomically: a temporary
/// file in the same directory (created exclusively, mode 0600 from creation), written, fsynced,
/// renamed over the target, then the directory fsynced. On every failure the temporary file is
/// removed and the target is as it was.
///
/// A serde_json error of category I/O from `contents` is a failed write; any other is a value
/// serde could not serialize.
pub(crate) fn write_atomic(
    path: &Path,
    contents: impl FnOnce(&mut BufWriter<&File>) -> Result<(), serde_json::Error>,
) -> Result<(), Error> {
    let target = resolve_target(path)?;
    let dir = parent_dir(&target);
    create_parents(path, dir)?;

    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(target.file_name().unwrap_or(target.as_os_str()));
    prefix.push(".");
    // tempfile opens with O_CREAT | O_EXCL (a planted file or symlink makes it pick another
    // name), mode 0600 at creation, and deletes the file when `temp` drops: that is the
    // clean-up of every early return below.
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(12)
        .tempfile_in(dir)
        .map_err(io_error(path, IoOp::CreateTemp))?;

    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, temp.as_file());
    contents(&mut writer).map_err(|error| {
        if error.is_io() {
            io_error(path, IoOp::Write)(error.into())
        } else {
            Error::Serialize {
                path: path.to_owned(),
                source: error,
            }
        }
    })?;
    writer.flush().map_err(io_error(path, IoOp::Write))?;
    drop(writer);

    // After a failed fsync the page cache may already have dropped the dirty pages: retrying
    // would report success for data that never reached the disk. Give up and keep the old file.
    temp.as_file()
        .sync_all()
        .map_err(io_error(path, IoOp::SyncFile))?;
    temp.persist(&target)
        .map_err(|failed| io_error(path, IoOp::Rename)(failed.error))?;
    sync_dir(dir).map_err(io_error(path, IoOp::SyncDir))
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
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory fsync through std; NTFS journals the rename itself.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Failures in the middle of a save, provoked for real through the `contents` callback,
    //! which runs after the target check and the temporary file's creation.

    use std::fs;
    use std::io::{self, Write as _};
    use std::path::Path;

    use super::{read, write_atomic};
    use crate::{Error, IoOp};

    fn entries(dir: &Path) -> Vec<String> {
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
        write_atomic(&path, |writer| {
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
            writer.write_all(b"new").map_err(serde_json::Error::io)
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
        let error = write_atomic(&path, |writer| {
            writer
                .write_all(b"partial")
                .map_err(serde_json::Error::io)?;
            Err(serde_json::Error::io(io::Error::from_raw_os_error(
                libc::ENOSPC,
            )))
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
        let error = write_atomic(&path, |writer| {
            fs::remove_file(&path).unwrap();
            fs::create_dir(&path).unwrap();
            fs::write(path.join("inside"), b"kept").unwrap();
            writer.write_all(b"new").map_err(serde_json::Error::io)
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
}
