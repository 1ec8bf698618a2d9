//! Appends to a journal that many processes share without keeping it open (the audit log):
//! each append takes the journal's lock for itself.

use std::path::Path;

use super::format::{FILE_HEADER, RecordCodec, seal_flush};
use super::open_or_create;
use super::records::read_header;
use super::recovery::{self, JournalRecovery};
use crate::Persisted;
use crate::error::{Error, IoOp};
use crate::shell::dir::Dir;
use crate::shell::{self, Disk, io_error, lock};

/// Where the whole records of a journal written by [`append_shared`] end, as this process last
/// saw it, with the file's identity (device, inode), so that a file replaced meanwhile is
/// scanned again from its start.
#[derive(Debug, Default)]
pub(crate) struct SharedEnd {
    seen: Option<((u64, u64), u64)>,
}

/// Appends `records` to the journal at `path` without keeping the journal open, for logs many
/// processes append to, each now and then (the audit log): takes the journal's lock (waiting as
/// [`Options::lock_timeout`](crate::Options::lock_timeout) says), creates the journal if there
/// is none, finds where its whole records end (reading only what others appended since
/// `known`), cuts a torn tail off (reported as an open's is), then appends and syncs (per
/// [`Options::durability`](crate::Options::durability)). Records are never sealed with layers:
/// they hold no values, and any process reads them without a key.
pub(crate) fn append_shared<E: Persisted>(
    disk: &Disk,
    path: &Path,
    known: &mut SharedEnd,
    records: &[E],
) -> Result<(), Error> {
    let codec = RecordCodec::plain();
    let mut bytes = Vec::new();
    for record in records {
        codec.encode(&mut bytes, record, path)?;
    }
    let _lock = lock::exclusive(path, disk.lock_timeout)?;
    let (file, metadata) = open_or_create(disk, path, || Ok(0))?;
    let identity = file_identity(&file);
    let start = match known.seen {
        // The same file, no shorter than when this process last appended to it.
        Some((seen, end)) if Some(seen) == identity && end <= metadata.len() => end,
        _ => {
            read_header(path, &file)?;
            FILE_HEADER as u64
        }
    };
    let scan = recovery::scan(path, &file, disk.max_size, start)?;
    seal_flush(&mut bytes, scan.end);
    if let Some(torn) = &scan.torn {
        // A crash during someone's append: never acknowledged.
        recovery::allow_cut(path, JournalRecovery::TolerateTornTail, torn)?;
        shell::set_len(&file, path, torn.offset).map_err(io_error(path, IoOp::CutTail))?;
        recovery::report_cut(path, torn);
    }
    let appended = shell::write_all_at(&file, path, &bytes, scan.end)
        .map_err(io_error(path, IoOp::Append))
        .and_then(|()| match disk.syncs() {
            true => shell::sync_data(&file, path).map_err(io_error(path, IoOp::SyncAppend)),
            false => Ok(()),
        });
    if let Err(error) = appended {
        // Cut what may have reached the file (the torn tail before it too), so that nothing
        // unacknowledged can be read as a record later.
        known.seen = None;
        let _ = file.set_len(scan.end);
        return Err(error);
    }
    known.seen = identity.map(|identity| (identity, scan.end + bytes.len() as u64));
    Ok(())
}

/// The device and inode of `file`, where the platform tells them.
fn file_identity(file: &std::fs::File) -> Option<(u64, u64)> {
    Dir::stat_file(file).ok().map(|stat| (stat.dev, stat.ino))
}
