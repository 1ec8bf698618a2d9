//! A journal's bytes, without I/O (FORMAT.md, section 4): the file header and each record's
//! header, each one type that encodes and parses itself, how a record is encoded, and how a
//! flush seals the records it writes.

use std::path::Path;

use crate::Persisted;
use crate::codec::{self, Style};
use crate::error::Error;
use crate::frame;
use crate::key::Sealing;
use crate::settings::Settings;

/// The first bytes of a journal: `\x89pjl\r\n\x1a\n`, in the manner of PNG and persist's frame
/// (a byte over 0x7F, line-ending and end-of-file bytes that transfers would mangle).
pub(crate) const MAGIC: [u8; 8] = [0x89, b'p', b'j', b'l', 0x0D, 0x0A, 0x1A, 0x0A];

/// The journal format this version writes: format 2 with close marks and framed records.
pub(super) const FORMAT_VERSION: u8 = 3;

/// The oldest format this version reads. Format 2 holds neither close marks nor framed
/// records; a writer that opens one upgrades its header before it writes either.
pub(super) const OLDEST_FORMAT: u8 = 2;

/// Magic, format, 7 reserved zero bytes, the index of the first record (u64 LE).
pub(super) const FILE_HEADER: usize = 24;

/// Each record's header: data length (u32 LE), schema version (u32 LE), the offset of the
/// first record of the same flush (u64 LE), CRC-32C of the data, CRC-32C of the first twenty
/// header bytes (u32 LE each).
pub(super) const RECORD_HEADER: usize = 24;

/// The largest base index a header may hold: a count of records ever appended, which only a
/// damaged header puts past 2^62 (and indexes computed from it could overflow).
pub(super) const MAX_BASE: u64 = 1 << 62;

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileHeader {
    /// The journal format the file was written in.
    pub(super) format: u8,
    /// The index of the file's first record.
    pub(super) base: u64,
}

/// Why a file header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileHeaderError {
    /// The file is shorter than a header.
    Short,
    /// It does not start with the magic bytes.
    NotAJournal,
    /// A format this version does not read.
    Unsupported(u8),
    /// The base index is past [`MAX_BASE`].
    ImpossibleBase,
}

impl FileHeader {
    /// The header of a new log whose first record gets index `base`.
    pub(super) fn new(base: u64) -> FileHeader {
        FileHeader {
            format: FORMAT_VERSION,
            base,
        }
    }

    pub(super) fn to_bytes(self) -> [u8; FILE_HEADER] {
        let mut header = [0; FILE_HEADER];
        header[..8].copy_from_slice(&MAGIC);
        header[8] = self.format;
        header[16..].copy_from_slice(&self.base.to_le_bytes());
        header
    }

    /// The header at the start of `bytes` (which may be shorter than one).
    pub(super) fn parse(bytes: &[u8]) -> Result<FileHeader, FileHeaderError> {
        let header: &[u8; FILE_HEADER] = bytes
            .get(..FILE_HEADER)
            .and_then(|header| header.try_into().ok())
            .ok_or(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
                FileHeaderError::Short
            } else {
                FileHeaderError::NotAJournal
            })?;
        if header[..8] != MAGIC {
            return Err(FileHeaderError::NotAJournal);
        }
        let format = header[8];
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&format) {
            return Err(FileHeaderError::Unsupported(format));
        }
        let base = u64::from_le_bytes(header[16..].try_into().unwrap_or_default());
        if base > MAX_BASE {
            return Err(FileHeaderError::ImpossibleBase);
        }
        Ok(FileHeader { format, base })
    }
}

impl FileHeaderError {
    /// The error for the journal at `path`.
    pub(super) fn at(self, path: &Path) -> Error {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_owned(),
            line: 0,
            column: 0,
            field: None,
            reason: reason.to_owned(),
        };
        match self {
            FileHeaderError::Short => {
                corrupt("not a persist journal: shorter than a journal's header")
            }
            FileHeaderError::NotAJournal => {
                corrupt("not a persist journal: it does not start as one")
            }
            FileHeaderError::ImpossibleBase => {
                corrupt("the journal's header holds an impossible record index")
            }
            FileHeaderError::Unsupported(format) => Error::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "journal format {format}, written by {} (this version reads formats \
                     {OLDEST_FORMAT} to {FORMAT_VERSION})",
                    if format < OLDEST_FORMAT {
                        "a pre-release of persist"
                    } else {
                        "a later version of persist"
                    }
                ),
            },
        }
    }
}

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordHeader {
    /// The data's length in bytes.
    pub(super) len: u32,
    /// The schema version of the record; 0 for a close mark.
    pub(super) version: u32,
    /// Where the first record written by the same flush starts.
    pub(super) flush_start: u64,
    /// CRC-32C of the data.
    pub(super) data_crc: u32,
}

impl RecordHeader {
    /// The header of a record of `version` whose data is `data`, in a flush not yet placed
    /// (its start is set by [`seal_flush`]).
    pub(super) fn of(version: u32, data: &[u8]) -> Result<RecordHeader, TooLarge> {
        Ok(RecordHeader {
            len: u32::try_from(data.len()).map_err(|_| TooLarge)?,
            version,
            flush_start: 0,
            data_crc: crc32c::crc32c(data),
        })
    }

    /// A close mark at `offset`: a record without data and of version 0, written (and
    /// synced) when a writer closes the journal. Readers skip it; it is a whole record of a
    /// later flush for every record before it, so damage to the last record before a clean
    /// close is told from a torn write.
    pub(super) fn mark(offset: u64) -> RecordHeader {
        RecordHeader {
            len: 0,
            version: 0,
            flush_start: offset,
            data_crc: crc32c::crc32c(&[]),
        }
    }

    /// Whether this is a close mark (see [`mark`](RecordHeader::mark)).
    pub(super) fn is_mark(&self) -> bool {
        self.version == 0
    }

    /// Where the record that starts at `offset` ends.
    pub(super) fn end(&self, offset: u64) -> u64 {
        offset + RECORD_HEADER as u64 + u64::from(self.len)
    }

    pub(super) fn to_bytes(self) -> [u8; RECORD_HEADER] {
        let mut header = [0; RECORD_HEADER];
        header[..4].copy_from_slice(&self.len.to_le_bytes());
        header[4..8].copy_from_slice(&self.version.to_le_bytes());
        header[8..16].copy_from_slice(&self.flush_start.to_le_bytes());
        header[16..20].copy_from_slice(&self.data_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[..20]);
        header[20..].copy_from_slice(&header_crc.to_le_bytes());
        header
    }

    /// The header in `bytes`, or `None` when they do not match their checksum (torn or
    /// damaged).
    pub(super) fn parse(bytes: &[u8; RECORD_HEADER]) -> Option<RecordHeader> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        if crc32c::crc32c(&bytes[..20]) != word(20) {
            return None;
        }
        Some(RecordHeader {
            len: word(0),
            version: word(4),
            flush_start: flush_start_in(bytes),
            data_crc: word(16),
        })
    }
}

/// The flush start field of the (unchecked) header bytes `bytes`.
pub(super) fn flush_start_in(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default())
}

/// A record longer than a header can say (4 GiB).
#[derive(Debug)]
pub(super) struct TooLarge;

/// How records are written: the envelope's layout and the frame's layers of the journal's
/// options, with one key derivation for all its records (so a passphrase is stretched once
/// per journal, not once per record).
#[derive(Debug, Clone)]
pub(super) struct RecordCodec {
    settings: Settings,
    sealing: Option<Sealing>,
}

impl RecordCodec {
    /// The codec of records written with `settings`.
    pub(super) fn new(settings: &Settings, path: &Path) -> Result<RecordCodec, Error> {
        let sealing = match &settings.encoding.key {
            Some(key) => Some(key.new_sealing().map_err(|source| Error::Seal {
                path: path.to_owned(),
                source,
            })?),
            None => None,
        };
        Ok(RecordCodec {
            settings: settings.clone(),
            sealing,
        })
    }

    /// Records without layers (the audit log's).
    pub(super) fn plain() -> RecordCodec {
        RecordCodec {
            settings: Settings::DEFAULT,
            sealing: None,
        }
    }

    /// Appends `record`, with its header, to `out`; its flush's start is set by
    /// [`seal_flush`]. On an error nothing is appended. Errors name `path`.
    pub(super) fn encode<E: Persisted>(
        &self,
        out: &mut Vec<u8>,
        record: &E,
        path: &Path,
    ) -> Result<(), Error> {
        let start = out.len();
        let style = Style {
            checksum: self.settings.style::<E>().checksum,
            pretty: false,
            // Journal records are JSON lines, whatever the type's files are.
            format: crate::Format::Json,
        };
        let mut layers = self.settings.layers();
        layers.sealing = self.sealing.as_ref();
        out.extend_from_slice(&[0; RECORD_HEADER]);
        let encoded = if layers.any() {
            codec::encode_to_vec(record, style)
                .map_err(|error| error.at(path))
                .and_then(|plain| {
                    frame::seal(plain, E::VERSION, &layers).map_err(|source| Error::Seal {
                        path: path.to_owned(),
                        source,
                    })
                })
                .map(|framed| out.extend_from_slice(&framed))
        } else {
            codec::encode(record, &mut *out, style).map_err(|error| error.at(path))
        };
        let header = encoded.and_then(|()| {
            RecordHeader::of(E::VERSION, &out[start + RECORD_HEADER..]).map_err(|TooLarge| {
                codec::EncodeError::Io(std::io::Error::other(
                    "a journal record is limited to 4 GiB",
                ))
                .at(path)
            })
        });
        match header {
            Ok(header) => {
                out[start..start + RECORD_HEADER].copy_from_slice(&header.to_bytes());
                Ok(())
            }
            Err(error) => {
                out.truncate(start);
                Err(error)
            }
        }
    }
}

/// Sets the flush start of every record in `batch` (records built by [`RecordCodec::encode`],
/// to be written with one `write` at `start`) and seals each header with its checksum.
pub(super) fn seal_flush(batch: &mut [u8], start: u64) {
    let mut at = 0;
    while at + RECORD_HEADER <= batch.len() {
        let header = &mut batch[at..at + RECORD_HEADER];
        let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        header[8..16].copy_from_slice(&start.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[..20]);
        header[20..].copy_from_slice(&header_crc.to_le_bytes());
        at += RECORD_HEADER + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_header_parses_back_and_refuses_what_is_not_one() {
        let header = FileHeader::new(42);
        let bytes = header.to_bytes();
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(FileHeader::parse(&bytes), Ok(header));
        let mut two = bytes;
        two[8] = 2;
        assert_eq!(FileHeader::parse(&two).map(|h| h.format), Ok(2));
        for (format, refused) in [(1, true), (2, false), (3, false), (4, true), (255, true)] {
            let mut other = bytes;
            other[8] = format;
            assert_eq!(
                FileHeader::parse(&other) == Err(FileHeaderError::Unsupported(format)),
                refused,
                "format {format}"
            );
        }
        assert_eq!(FileHeader::parse(&bytes[..10]), Err(FileHeaderError::Short));
        assert_eq!(
            FileHeader::parse(b"{\"version\":1}"),
            Err(FileHeaderError::NotAJournal)
        );
        assert_eq!(FileHeader::parse(b""), Err(FileHeaderError::Short));
        let impossible = FileHeader {
            format: FORMAT_VERSION,
            base: MAX_BASE + 1,
        };
        assert_eq!(
            FileHeader::parse(&impossible.to_bytes()),
            Err(FileHeaderError::ImpossibleBase)
        );
    }

    #[test]
    fn a_record_header_parses_back_and_any_flipped_bit_fails_its_checksum() {
        let mut header = RecordHeader::of(7, b"{\"version\":7,\"data\":1}").unwrap();
        header.flush_start = 1234;
        let bytes = header.to_bytes();
        assert_eq!(RecordHeader::parse(&bytes), Some(header));
        assert_eq!(header.end(100), 100 + 24 + 22);
        assert!(!header.is_mark());
        for bit in 0..RECORD_HEADER * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(RecordHeader::parse(&flipped), None, "bit {bit}");
        }
        assert_eq!(RecordHeader::parse(&[0; RECORD_HEADER]), None);
    }

    #[test]
    fn a_close_mark_is_a_whole_record_of_its_own_flush() {
        let mark = RecordHeader::mark(4096);
        assert!(mark.is_mark());
        assert_eq!(mark.end(4096), 4096 + 24);
        assert_eq!(mark.flush_start, 4096);
        assert_eq!(RecordHeader::parse(&mark.to_bytes()), Some(mark));
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Event {
        id: u64,
    }

    impl Persisted for Event {
        const VERSION: u32 = 2;
        type Previous = crate::Origin;
        fn migrate(previous: crate::Origin) -> Result<Self, crate::BoxError> {
            match previous {}
        }
    }

    #[test]
    fn a_flush_seals_every_record_with_its_start() {
        let codec = RecordCodec::plain();
        let path = Path::new("events.log");
        let mut batch = Vec::new();
        for id in 0..3 {
            codec.encode(&mut batch, &Event { id }, path).unwrap();
        }
        seal_flush(&mut batch, 500);
        let mut at = 0;
        let mut seen = 0;
        while at < batch.len() {
            let header = RecordHeader::parse(batch[at..at + 24].try_into().unwrap()).unwrap();
            assert_eq!(header.flush_start, 500);
            assert_eq!(header.version, 2);
            let data = &batch[at + 24..header.end(at as u64) as usize];
            assert_eq!(crc32c::crc32c(data), header.data_crc);
            assert_eq!(
                data,
                format!("{{\"version\":2,\"data\":{{\"id\":{seen}}}}}").as_bytes()
            );
            at = header.end(at as u64) as usize;
            seen += 1;
        }
        assert_eq!(seen, 3);
    }
}
