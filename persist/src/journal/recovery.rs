//! Where a journal's whole records end, and what to do with what follows them (FORMAT.md,
//! section 4): the end (zeros), damage (an error), or a torn last flush (cut off, reported, or
//! refused in the strict mode).

use std::fs::File;
use std::path::Path;

use super::format::{self, RECORD_HEADER, RecordHeader};
use super::reader::{Failure, Reader, Step};
use crate::error::{Error, IoOp};
use crate::shell::{io_error, read_exact_at};

/// What [`Journal::open`](crate::Journal::open) does with a torn tail: the records of a flush
/// that a crash interrupted, which no append ever acknowledged. Set with
/// [`Options::journal_recovery`](crate::Options::journal_recovery).
///
/// Damage before the last flush (a record a later flush follows) is always
/// [`Error::DamagedJournal`]; so is damage to the last record of a journal that was closed
/// cleanly (its writer marks the end when it closes). What is left is a tail that a torn write
/// and damage inside the last flush of a crashed writer both explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum JournalRecovery {
    /// Cut a torn tail off and go on (RocksDB's "tolerate corrupted tail records"): the
    /// records in it were never acknowledged. The cut is reported by
    /// [`Journal::recovered`](crate::Journal::recovered), a `tracing` warning and the
    /// `persist_journal_cuts_total` metric (under those features).
    #[default]
    TolerateTornTail,
    /// Refuse to open a journal that would need any cut: [`Error::DamagedJournal`] naming
    /// where the tail starts, nothing changed. For callers that must never lose a record
    /// to bit rot in the last flush, at the price of opening nothing after a crash during an
    /// append until someone decides (opening once with the default mode cuts the tail).
    AbsoluteConsistency,
}

/// A torn tail cut off (or that the next open cuts off): see
/// [`Journal::recovered`](crate::Journal::recovered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Recovered {
    /// Where the tail starts, in bytes from the start of the file: the end of the last whole
    /// record.
    pub offset: u64,
    /// How many bytes of it were not zero (the zeros after them are space the writer had
    /// preallocated).
    pub bytes: u64,
    /// How many records of the tail still had a whole header, in order from its start (none
    /// of them was acknowledged).
    pub records: u64,
}

/// What a scan found.
#[derive(Debug)]
pub(super) struct Scan {
    /// Whole records (close marks not counted).
    pub(super) records: u64,
    /// Whole records after the last close mark.
    pub(super) unmarked: u64,
    /// The end of the last whole record or mark.
    pub(super) end: u64,
    /// The torn tail after them, if there is one.
    pub(super) torn: Option<Recovered>,
}

/// Reads every record from `start` (the end of the file header or of a whole record) once,
/// to find where the whole ones end. At the first entry that fails a check: zeros from
/// there to the end are the end (space a writer preallocated, or a tail a crash left
/// zero-filled); if a whole record of a later flush follows, that flush began after this
/// one was synced, so this is damage (an error); if none does, it is the torn last flush of
/// a crash. A genuine header over the size cap is damage. Time linear in the file's size.
pub(super) fn scan(path: &Path, file: &File, limit: u64, start: u64) -> Result<Scan, Error> {
    let size = file
        .metadata()
        .map_err(io_error(path, IoOp::Metadata))?
        .len();
    let read = file.try_clone().map_err(io_error(path, IoOp::Open))?;
    let mut reader = Reader::new(path, read, start, size, limit)?;
    let (mut records, mut unmarked) = (0, 0);
    loop {
        match reader.next()? {
            Step::Record(_) => {
                records += 1;
                unmarked += 1;
            }
            Step::Mark => unmarked = 0,
            Step::End => {
                return Ok(Scan {
                    records,
                    unmarked,
                    end: size,
                    torn: None,
                });
            }
            Step::Failed(failure) => {
                let offset = reader.offset();
                let damaged = |reason: String| Error::DamagedJournal {
                    path: path.to_owned(),
                    offset,
                    reason,
                };
                if let Failure::OverLimit(..) = failure {
                    return Err(damaged(failure.reason()));
                }
                let torn =
                    match after_failure(file, offset, size).map_err(io_error(path, IoOp::Read))? {
                        After::Zeros => None,
                        After::LaterFlush => {
                            return Err(damaged(format!(
                                "{}; a later flush (or the mark of a clean close) follows it, \
                                 so it was synced and is damaged, not torn; records after it \
                                 may be intact",
                                failure.reason()
                            )));
                        }
                        After::Torn { bytes } => Some(Recovered {
                            offset,
                            bytes,
                            records: headers_from(file, offset, size)
                                .map_err(io_error(path, IoOp::Read))?,
                        }),
                    };
                return Ok(Scan {
                    records,
                    unmarked,
                    end: offset,
                    torn,
                });
            }
        }
    }
}

/// [`Error::DamagedJournal`] when the entry at `failed` (which fails for `failure`) is
/// followed by a later flush: damage, not a flush still being written.
pub(super) fn check_damage(
    path: &Path,
    file: &File,
    failed: u64,
    size: u64,
    failure: Failure,
) -> Result<(), Error> {
    match after_failure(file, failed, size).map_err(io_error(path, IoOp::Read))? {
        After::LaterFlush => Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset: failed,
            reason: format!(
                "{}; a later flush follows it, so it was synced and is damaged; records after \
                 it may be intact",
                failure.reason()
            ),
        }),
        _ => Ok(()),
    }
}

/// What follows a failed entry.
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// Zeros to the end of the file.
    Zeros,
    /// A whole header of a flush that started after the failed entry.
    LaterFlush,
    /// Neither: a torn flush, with this many bytes up to its last non-zero one.
    Torn { bytes: u64 },
}

/// Reads the file once from `failed` to `size`, looking at every byte for a record header of
/// a later flush (a failed header tells nothing of where the next record starts): one whose
/// checksum holds, that fits in the file, and whose flush started after `failed` and no later
/// than itself. Only the header is checked, so each position costs the same whatever a header
/// claims; a header holds zero bytes JSON text cannot, and a false match in a frame's bytes
/// needs both a 32-bit checksum and a 64-bit offset to fall in range.
fn after_failure(file: &File, failed: u64, size: u64) -> std::io::Result<After> {
    const WINDOW: u64 = 1 << 20;
    let header_len = RECORD_HEADER as u64;
    let mut window = vec![0; (size - failed).min(WINDOW + header_len) as usize];
    let mut window_start = failed;
    let mut last_nonzero = None;
    while window_start < size {
        let len = (size - window_start).min(WINDOW + header_len) as usize;
        let bytes = &mut window[..len];
        read_exact_at(file, bytes, window_start)?;
        // Positions whose header starts in this window (the overlap holds the next window's
        // first header).
        let starts = (size - window_start).min(WINDOW) as usize;
        if let Some(at) = last_non_zero(&bytes[..starts]) {
            last_nonzero = Some(window_start + at as u64);
        }
        let mut from = 0;
        while from < starts {
            // A header has a non-zero byte (the checksum of zero bytes is not zero): the
            // positions whose 24 bytes are all zero (preallocated space, holes) are skipped.
            if bytes[from] == 0 {
                match first_non_zero(&bytes[from..]) {
                    Some(skip) => from += skip.saturating_sub(RECORD_HEADER - 1),
                    None => break,
                }
                if from >= starts {
                    break;
                }
            }
            let at = window_start + from as u64;
            let Some(header) = bytes.get(from..from + RECORD_HEADER) else {
                break;
            };
            from += 1;
            let flush_start = format::flush_start_in(header);
            if flush_start <= failed || flush_start > at {
                continue;
            }
            let header: &[u8; RECORD_HEADER] = header.try_into().unwrap_or(&[0; RECORD_HEADER]);
            if RecordHeader::parse(header).is_some_and(|header| header.end(at) <= size) {
                return Ok(After::LaterFlush);
            }
        }
        window_start += starts as u64;
    }
    Ok(match last_nonzero {
        None => After::Zeros,
        Some(last) => After::Torn {
            bytes: last + 1 - failed,
        },
    })
}

/// The first byte of `bytes` that is not zero, looked for a word at a time (long runs of
/// zeros are the common case: preallocated space, holes).
fn first_non_zero(bytes: &[u8]) -> Option<usize> {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().len();
    for (index, word) in words.enumerate() {
        if u64::from_ne_bytes(word.try_into().unwrap_or_default()) != 0 {
            let at = index * 8;
            return bytes[at..at + 8]
                .iter()
                .position(|&b| b != 0)
                .map(|i| at + i);
        }
    }
    let start = bytes.len() - tail;
    bytes[start..]
        .iter()
        .position(|&b| b != 0)
        .map(|i| start + i)
}

/// The last byte of `bytes` that is not zero (see [`first_non_zero`]).
fn last_non_zero(bytes: &[u8]) -> Option<usize> {
    let words = bytes.rchunks_exact(8);
    let head = words.remainder().len();
    for (index, word) in words.enumerate() {
        if u64::from_ne_bytes(word.try_into().unwrap_or_default()) != 0 {
            let at = bytes.len() - (index + 1) * 8;
            return bytes[at..at + 8]
                .iter()
                .rposition(|&b| b != 0)
                .map(|i| at + i);
        }
    }
    bytes[..head].iter().rposition(|&b| b != 0)
}

/// How many whole headers follow one another from `offset` (the records of a torn flush that
/// kept their header).
fn headers_from(file: &File, mut offset: u64, size: u64) -> std::io::Result<u64> {
    let mut count = 0;
    let mut bytes = [0; RECORD_HEADER];
    while offset + RECORD_HEADER as u64 <= size {
        read_exact_at(file, &mut bytes, offset)?;
        match RecordHeader::parse(&bytes) {
            Some(header) if !header.is_mark() => {
                count += 1;
                offset = header.end(offset);
            }
            _ => break,
        }
    }
    Ok(count)
}

/// Whether `recovery` allows cutting `torn` off the journal at `path`: an error naming it
/// when it does not.
pub(super) fn allow_cut(
    path: &Path,
    recovery: JournalRecovery,
    torn: &Recovered,
) -> Result<(), Error> {
    match recovery {
        JournalRecovery::TolerateTornTail => Ok(()),
        JournalRecovery::AbsoluteConsistency => Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset: torn.offset,
            reason: format!(
                "the last flush is torn or damaged ({} bytes, {} records with a whole header) \
                 and would be cut off, which JournalRecovery::AbsoluteConsistency refuses",
                torn.bytes, torn.records
            ),
        }),
    }
}

/// Reports a cut: a `tracing` warning and metrics, under those features.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn report_cut(path: &Path, torn: &Recovered) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        path = %path.display(),
        offset = torn.offset,
        bytes = torn.bytes,
        records = torn.records,
        "persist: cut a torn tail off the journal (a crash during an append; never acknowledged)"
    );
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("persist_journal_cuts_total").increment(1);
        metrics::counter!("persist_journal_cut_bytes_total").increment(torn.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::journal::format::{FILE_HEADER, FileHeader};

    fn record(data: &[u8], flush_start: u64) -> Vec<u8> {
        let mut header = RecordHeader::of(1, data).unwrap();
        header.flush_start = flush_start;
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes
    }

    /// A log of `flushes`, each a list of record data, then `zeros` zero bytes.
    fn log(flushes: &[&[&[u8]]], zeros: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = FileHeader::new(0).to_bytes().to_vec();
        let mut offsets = Vec::new();
        for flush in flushes {
            let start = bytes.len() as u64;
            for data in *flush {
                offsets.push(bytes.len() as u64);
                bytes.extend(record(data, start));
            }
        }
        bytes.resize(bytes.len() + zeros, 0);
        (bytes, offsets)
    }

    fn scanned(bytes: &[u8]) -> Result<Scan, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        scan(&path, &file, 1 << 20, FILE_HEADER as u64)
    }

    #[test]
    fn whole_records_then_zeros_end_cleanly() {
        let (bytes, offsets) = log(&[&[b"{a}", b"{b}"], &[b"{c}"]], 5000);
        let scan = scanned(&bytes).unwrap();
        assert_eq!((scan.records, scan.unmarked), (3, 3));
        assert_eq!(scan.end, offsets[2] + 27);
        assert!(scan.torn.is_none());
    }

    #[test]
    fn every_flipped_bit_of_the_last_flush_is_a_torn_tail_and_of_an_earlier_one_damage() {
        let (bytes, offsets) = log(&[&[b"{one}"], &[b"{two}", b"{three}"]], 100);
        let records_end = offsets[2] as usize + 24 + 7;
        for bit in (FILE_HEADER * 8)..(records_end * 8) {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let at = (bit / 8) as u64;
            match scanned(&flipped) {
                Ok(scan) if at >= offsets[1] => {
                    let torn = scan.torn.expect("a torn tail");
                    let expected = if at >= offsets[2] {
                        offsets[2]
                    } else {
                        offsets[1]
                    };
                    assert_eq!(torn.offset, expected, "bit {bit}");
                    assert_eq!(scan.end, expected);
                }
                Err(Error::DamagedJournal { offset, .. }) if at < offsets[1] => {
                    assert_eq!(offset, offsets[0], "bit {bit}");
                }
                other => panic!("bit {bit}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_mark_after_the_last_record_makes_its_damage_an_error() {
        let (mut bytes, offsets) = log(&[&[b"{one}"], &[b"{two}"]], 0);
        let mark_at = bytes.len() as u64;
        bytes.extend(RecordHeader::mark(mark_at).to_bytes());
        bytes.resize(bytes.len() + 1000, 0);
        let clean = scanned(&bytes).unwrap();
        assert_eq!(
            (clean.records, clean.unmarked, clean.end),
            (2, 0, mark_at + 24)
        );
        let mut flipped = bytes.clone();
        flipped[offsets[1] as usize + 26] ^= 4;
        assert!(matches!(
            scanned(&flipped),
            Err(Error::DamagedJournal { offset, .. }) if offset == offsets[1]
        ));
    }

    #[test]
    fn a_torn_tail_reports_its_bytes_and_whole_headers() {
        let (bytes, offsets) = log(&[&[b"{one}"], &[b"{two}", b"{three}", b"{four}"]], 4096);
        let mut torn = bytes.clone();
        // The last record's data never arrived.
        let last = offsets[3] as usize;
        torn[last + 24..last + 30].fill(0);
        let scan = scanned(&torn).unwrap();
        let recovered = scan.torn.unwrap();
        assert_eq!(recovered.offset, offsets[3]);
        assert_eq!(recovered.records, 1);
        assert_eq!(recovered.bytes, 24);
        // The first record of the flush lost: the others of it kept their headers.
        let mut torn = bytes.clone();
        torn[offsets[1] as usize + 2] ^= 1;
        let recovered = scanned(&torn).unwrap().torn.unwrap();
        assert_eq!(recovered.offset, offsets[1]);
        assert_eq!(recovered.records, 0);
        assert_eq!(recovered.bytes, offsets[3] + 24 + 6 - offsets[1]);
    }

    /// A crafted file of many genuine headers each claiming almost the whole file: the scan
    /// reads it about once (the old search read each claimed length).
    #[test]
    fn headers_claiming_the_whole_file_cost_one_pass() {
        let mut bytes = FileHeader::new(0).to_bytes().to_vec();
        // The first entry fails (its header is damaged); then 4,000 headers of "later"
        // flushes whose lengths reach past the end.
        bytes.extend([0xAB; RECORD_HEADER]);
        for _ in 0..4000 {
            let at = bytes.len() as u64;
            let mut header = RecordHeader::of(1, b"").unwrap();
            header.len = 200 << 20;
            header.flush_start = at;
            bytes.extend(header.to_bytes());
        }
        let scan = scanned(&bytes).unwrap();
        let torn = scan.torn.unwrap();
        assert_eq!(torn.offset, FILE_HEADER as u64);
        assert_eq!(torn.bytes, bytes.len() as u64 - FILE_HEADER as u64);
    }

    #[test]
    fn non_zero_bytes_are_found_at_any_position() {
        for len in 0..40 {
            assert_eq!(first_non_zero(&vec![0; len]), None);
            assert_eq!(last_non_zero(&vec![0; len]), None);
            for at in 0..len {
                let mut bytes = vec![0; len];
                bytes[at] = 1;
                assert_eq!(first_non_zero(&bytes), Some(at));
                assert_eq!(last_non_zero(&bytes), Some(at));
                bytes[len - 1] = 2;
                bytes[0] = 3;
                assert_eq!(first_non_zero(&bytes), Some(0));
                assert_eq!(last_non_zero(&bytes), Some(len - 1));
            }
        }
    }

    #[test]
    fn the_strict_mode_refuses_a_cut() {
        let torn = Recovered {
            offset: 100,
            bytes: 10,
            records: 1,
        };
        let path = Path::new("log");
        assert!(allow_cut(path, JournalRecovery::TolerateTornTail, &torn).is_ok());
        assert!(matches!(
            allow_cut(path, JournalRecovery::AbsoluteConsistency, &torn),
            Err(Error::DamagedJournal { offset: 100, .. })
        ));
    }
}
