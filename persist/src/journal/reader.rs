//! The one record reader: the scan of an open, replay, the untyped reader of tools and the
//! audit log's reader all read records with it, and only it checks them.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{RECORD_HEADER, RecordHeader};
use crate::error::{Error, IoOp};
use crate::shell::io_error;

/// Reads records one after another from a journal file, checking each.
#[derive(Debug)]
pub(super) struct Reader {
    path: PathBuf,
    file: BufReader<File>,
    /// Where the next record starts.
    offset: u64,
    /// Where reading stops: the file's size for a scan, the end of the whole records for a
    /// replay.
    end: u64,
    /// The largest record read (the options' size cap).
    limit: u64,
    /// The data of the last record read (one buffer for all of them).
    data: Vec<u8>,
    /// Where the last record read starts.
    last: u64,
}

/// What the reader found at its offset.
#[derive(Debug)]
pub(super) enum Step {
    /// A whole record; its data is [`Reader::data`].
    Record(RecordHeader),
    /// A close mark.
    Mark,
    /// Nothing more before the end.
    End,
    /// The entry at the offset (which stays there) fails a check.
    Failed(Failure),
}

/// Why an entry failed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The end comes before a whole header.
    ShortHeader,
    /// The header does not match its checksum.
    HeaderChecksum,
    /// The header is genuine, and the record reaches past the end.
    PastEnd,
    /// The header is genuine, and the data does not match its checksum.
    DataChecksum,
    /// The header is genuine and claims more bytes than the limit.
    OverLimit(u32, u64),
}

impl Failure {
    /// What it means, for an error.
    pub(super) fn reason(self) -> String {
        match self {
            Failure::ShortHeader => {
                "a record's header is cut short by the end of the file".to_owned()
            }
            Failure::HeaderChecksum => "the record's header does not match its checksum".to_owned(),
            Failure::PastEnd => "the record reaches past the end of the file".to_owned(),
            Failure::DataChecksum => "the record's data does not match its checksum".to_owned(),
            Failure::OverLimit(len, limit) => {
                format!("the record claims {len} bytes, more than the {limit}-byte limit")
            }
        }
    }
}

impl Reader {
    /// Reads `file` (the journal at `path`) from `start` (the end of the file header or of a
    /// whole record) to `end`.
    pub(super) fn new(
        path: &Path,
        mut file: File,
        start: u64,
        end: u64,
        limit: u64,
    ) -> Result<Reader, Error> {
        file.seek(SeekFrom::Start(start))
            .map_err(io_error(path, IoOp::Read))?;
        Ok(Reader {
            path: path.to_owned(),
            file: BufReader::with_capacity(64 << 10, file),
            offset: start,
            end,
            limit,
            data: Vec::new(),
            last: start,
        })
    }

    /// The journal's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's file.
    pub(super) fn file(&self) -> &File {
        self.file.get_ref()
    }

    /// Where the next entry starts.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// The data of the last [`Step::Record`].
    pub(super) fn data(&self) -> &[u8] {
        &self.data
    }

    /// Reads up to `end` from now on: a reader that follows a journal as it grows (or as a
    /// writer cuts a torn tail off it).
    pub(super) fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    /// Where the last [`Step::Record`] starts.
    pub(super) fn last_offset(&self) -> u64 {
        self.last
    }

    /// Reads the next entry. A failed one leaves the offset where it starts, and the reader
    /// where it cannot go on (every later call fails the same way).
    pub(super) fn next(&mut self) -> Result<Step, Error> {
        let at = self.offset;
        if at >= self.end {
            return Ok(Step::End);
        }
        if self.end - at < RECORD_HEADER as u64 {
            return Ok(self.fail(Failure::ShortHeader));
        }
        let mut bytes = [0; RECORD_HEADER];
        if !self.read(&mut bytes)? {
            return Ok(self.fail(Failure::ShortHeader));
        }
        let Some(header) = RecordHeader::parse(&bytes) else {
            return Ok(self.fail(Failure::HeaderChecksum));
        };
        if u64::from(header.len) > self.limit {
            return Ok(self.fail(Failure::OverLimit(header.len, self.limit)));
        }
        let end = header.end(at);
        if end > self.end {
            return Ok(self.fail(Failure::PastEnd));
        }
        // Bounded by the bytes the file holds: never more than it has, whatever a header says.
        let mut data = std::mem::take(&mut self.data);
        data.resize(header.len as usize, 0);
        let read = self.read(&mut data);
        self.data = data;
        if !read? {
            return Ok(self.fail(Failure::PastEnd));
        }
        if crc32c::crc32c(&self.data) != header.data_crc {
            return Ok(self.fail(Failure::DataChecksum));
        }
        self.offset = end;
        self.last = at;
        Ok(match header.is_mark() {
            true => Step::Mark,
            false => Step::Record(header),
        })
    }

    /// The next record, skipping close marks; a failure is damage (the file changed after it
    /// was scanned): `None` at the end.
    pub(super) fn next_record(&mut self) -> Option<Result<RecordHeader, Error>> {
        loop {
            match self.next() {
                Ok(Step::Record(header)) => return Some(Ok(header)),
                Ok(Step::Mark) => {}
                Ok(Step::End) => return None,
                Ok(Step::Failed(failure)) => {
                    let offset = self.offset;
                    // Nothing after a failure is read.
                    self.end = offset;
                    return Some(Err(Error::DamagedJournal {
                        path: self.path.clone(),
                        offset,
                        reason: failure.reason(),
                    }));
                }
                Err(error) => {
                    self.end = self.offset;
                    return Some(Err(error));
                }
            }
        }
    }

    fn fail(&mut self, failure: Failure) -> Step {
        // The next read starts from the failed entry again.
        let _ = self.file.seek(SeekFrom::Start(self.offset));
        Step::Failed(failure)
    }

    /// Fills `buffer` from the file; `false` when the file ends first (someone cut it shorter
    /// than `end` meanwhile: a writer cutting a torn tail).
    fn read(&mut self, buffer: &mut [u8]) -> Result<bool, Error> {
        match self.file.read_exact(buffer) {
            Ok(()) => Ok(true),
            Err(error) => {
                let _ = self.file.seek(SeekFrom::Start(self.offset));
                match error.kind() {
                    io::ErrorKind::UnexpectedEof => Ok(false),
                    _ => Err(io_error(&self.path, IoOp::Read)(error)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::journal::format::FILE_HEADER;

    fn record(version: u32, data: &[u8], flush_start: u64) -> Vec<u8> {
        let mut header = RecordHeader::of(version, data).unwrap();
        header.flush_start = flush_start;
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes
    }

    fn reader_of(bytes: &[u8], limit: u64) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = File::create(&path).unwrap();
        file.write_all(&[0; FILE_HEADER]).unwrap();
        file.write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let reader = Reader::new(&path, file, FILE_HEADER as u64, size, limit).unwrap();
        (dir, reader)
    }

    #[test]
    fn records_and_marks_are_read_in_order_and_a_failure_stays_put() {
        let mut bytes = record(1, b"one", 24);
        bytes.extend(RecordHeader::mark(51).to_bytes());
        bytes.extend(record(1, b"three", 75));
        let damaged_at = 24 + bytes.len() as u64;
        let mut damaged = record(1, b"four", damaged_at);
        damaged[26] ^= 1;
        bytes.extend(damaged);
        let (_dir, mut reader) = reader_of(&bytes, 1 << 20);
        assert!(matches!(reader.next().unwrap(), Step::Record(h) if h.len == 3));
        assert_eq!(reader.data(), b"one");
        assert!(matches!(reader.next().unwrap(), Step::Mark));
        assert!(matches!(reader.next().unwrap(), Step::Record(_)));
        assert_eq!(reader.data(), b"three");
        for _ in 0..2 {
            assert!(matches!(
                reader.next().unwrap(),
                Step::Failed(Failure::DataChecksum)
            ));
            assert_eq!(reader.offset(), damaged_at);
        }
    }

    #[test]
    fn a_length_past_the_end_or_the_limit_fails_before_anything_is_read() {
        let mut header = RecordHeader::of(1, b"x").unwrap();
        header.len = u32::MAX;
        header.flush_start = 24;
        let (_dir, mut reader) = reader_of(&header.to_bytes(), 1 << 20);
        assert!(matches!(
            reader.next().unwrap(),
            Step::Failed(Failure::OverLimit(u32::MAX, _))
        ));
        let (_dir, mut reader) = reader_of(&header.to_bytes(), u64::MAX);
        assert!(matches!(
            reader.next().unwrap(),
            Step::Failed(Failure::PastEnd)
        ));
        let (_dir, mut reader) = reader_of(&[1, 2, 3], u64::MAX);
        assert!(matches!(
            reader.next().unwrap(),
            Step::Failed(Failure::ShortHeader)
        ));
        let (_dir, mut reader) = reader_of(&[], u64::MAX);
        assert!(matches!(reader.next().unwrap(), Step::End));
    }
}
