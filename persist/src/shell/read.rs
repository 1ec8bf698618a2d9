//! The guarded read: only a regular file, never blocking on a FIFO, never more than a size cap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use super::faults::fault;
use super::io_error;
use crate::error::{Error, FileKind, IoOp};
use crate::mapped::Contents;

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
/// without ever blocking on one: returns the file and its metadata. An open that fails on
/// something else than a regular file (a directory opened for writing, a socket) is
/// [`Error::NotRegularFile`] too.
pub(crate) fn open_regular_file(path: &Path, write: bool) -> Result<(File, fs::Metadata), Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    // Opening a FIFO for reading blocks until a writer appears; non-blocking mode returns at
    // once so the type check below can refuse it. It changes nothing for regular files.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = fault(IoOp::Open, path)
        .and_then(|()| options.open(path))
        .map_err(|source| match fs::metadata(path) {
            Ok(metadata) if !metadata.is_file() => Error::NotRegularFile {
                path: path.to_owned(),
                kind: FileKind::of(metadata.file_type()),
            },
            _ => not_found_or(path, IoOp::Open, source),
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

/// [`Error::NotFound`] for a missing file, [`Error::Io`] with `op` otherwise.
pub(crate) fn not_found_or(path: &Path, op: IoOp, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_owned(),
            source,
        }
    } else {
        io_error(path, op)(source)
    }
}

pub(crate) fn too_large(path: &Path, size: u64, limit: u64) -> Error {
    Error::TooLarge {
        path: path.to_owned(),
        size,
        limit,
    }
}

/// Reads the rest of `file`, which had `len` bytes when it was opened.
pub(crate) fn read_open(path: &Path, file: &File, len: u64, limit: u64) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow after the size check: read at most one byte past the cap.
    fault(IoOp::Read, path)
        .and_then(|()| file.take(limit.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(io_error(path, IoOp::Read))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// The first `len` bytes of `file` (fewer if it is shorter).
pub(crate) fn head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}
