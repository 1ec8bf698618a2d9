//! Reading a journal's records: [`Replay`] (typed, migrated to the program's version) and
//! [`JournalRecords`] (untyped, for tools), both over the one [`Reader`].

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;

use super::format::{FILE_HEADER, FileHeader};
use super::reader::Reader;
use super::recovery::{self, Recovered};
use super::upcast::Many;
use crate::error::{Error, IoOp};
use crate::settings::Settings;
use crate::shell::io_error;
use crate::shell::read::open_regular_file;
use crate::{Persisted, codec};

/// The records of a journal, read one at a time: see [`Journal::replay`](crate::Journal::replay).
#[derive(Debug)]
pub struct Replay<E> {
    reader: Reader,
    settings: Settings,
    /// Values an upcast record became, not yet returned.
    upcast: VecDeque<E>,
    /// An encrypted record was read (see [`check_sealing`]).
    encrypted_seen: bool,
    marker: PhantomData<fn() -> E>,
}

impl<E> Replay<E> {
    /// The records of the journal at `path` up to `end` (the end of its whole records), read
    /// from a handle of its own.
    pub(super) fn new(settings: &Settings, path: &Path, end: u64) -> Result<Replay<E>, Error> {
        let (file, _) = open_regular_file(path, false)?;
        Replay::of(
            settings,
            Reader::new(path, file, FILE_HEADER as u64, end, settings.disk.max_size)?,
        )
    }

    pub(super) fn of(settings: &Settings, reader: Reader) -> Result<Replay<E>, Error> {
        Ok(Replay {
            reader,
            settings: settings.clone(),
            upcast: VecDeque::new(),
            encrypted_seen: false,
            marker: PhantomData,
        })
    }

    /// Skips the next record.
    pub(super) fn skip_record(&mut self) -> Result<(), Error> {
        self.reader.next_record().transpose().map(drop)
    }

    /// The next record's envelope: its data, opened with the options' key when it is framed.
    fn next_envelope(&mut self) -> Option<Result<Envelope<'_>, Error>> {
        if let Err(error) = self.reader.next_record()? {
            return Some(Err(error));
        }
        let offset = self.reader.last_offset();
        let path = self.reader.path();
        if let Err(error) = check_sealing(
            &self.settings,
            &mut self.encrypted_seen,
            self.reader.data(),
            path,
            offset,
        ) {
            return Some(Err(error));
        }
        Some(
            self.settings
                .unframe(self.reader.data())
                .map(|envelope| (offset, envelope))
                .map_err(|error| at_record(error.at(path), offset)),
        )
    }
}

/// With a key, records are encrypted once one is: a record in clear after an encrypted one
/// was not written by a holder of the key (a writer without it is refused at open), so it is
/// refused, not taken as authentic. Records in clear before the first encrypted one are those
/// of a journal that was encrypted later.
pub(super) fn check_sealing(
    settings: &Settings,
    encrypted_seen: &mut bool,
    data: &[u8],
    path: &Path,
    offset: u64,
) -> Result<(), Error> {
    if settings.encoding.key.is_none() {
        return Ok(());
    }
    if crate::frame::is_encrypted(data) {
        *encrypted_seen = true;
    } else if *encrypted_seen {
        return Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset,
            reason: "a record in clear after encrypted ones: it was not written with the \
                     journal's key"
                .to_owned(),
        });
    }
    Ok(())
}

/// Refuses a writer whose key does not open the journal: when its first record (up to `end`)
/// is encrypted, [`Error::KeyRequired`] without a key (it would add records in clear to an
/// encrypted journal) and the decryption error with another key.
pub(super) fn check_key(
    settings: &Settings,
    path: &Path,
    file: &std::fs::File,
    end: u64,
) -> Result<(), Error> {
    let file = file.try_clone().map_err(io_error(path, IoOp::Open))?;
    let mut reader = Reader::new(path, file, FILE_HEADER as u64, end, settings.disk.max_size)?;
    match reader.next_record() {
        Some(Ok(_)) if crate::frame::is_encrypted(reader.data()) => {
            if settings.encoding.key.is_none() {
                return Err(Error::KeyRequired {
                    path: path.to_owned(),
                });
            }
            settings.open(path, reader.data()).map(drop)
        }
        Some(Err(error)) => Err(error),
        _ => Ok(()),
    }
}

/// A record's offset and envelope.
type Envelope<'r> = (u64, std::borrow::Cow<'r, [u8]>);

/// `error` of the record at `offset`: a reason that says where.
fn at_record(mut error: Error, offset: u64) -> Error {
    if let Error::Corrupt { reason, .. } = &mut error {
        *reason = format!("record at byte {offset}: {reason}");
    }
    error
}

/// A record's values as `E` (an upcast may make any number): its `data`, at `offset` in the
/// journal at `path`, opened with the options' layers and migrated. [`Replay`] does the same
/// without a `Vec` per record.
pub(super) fn decode_values<E: Persisted>(
    settings: &Settings,
    path: &Path,
    offset: u64,
    data: &[u8],
) -> Result<Vec<E>, Error> {
    let envelope = settings.unframe(data).map_err(|error| error.at(path))?;
    let at = |error: codec::DecodeError| at_record(error.at::<E>(path), offset);
    match codec::chain_upcasts::<E>() {
        true => Ok(codec::decode::<Many<E>>(&envelope).map_err(at)?.0),
        false => Ok(vec![codec::decode::<E>(&envelope).map_err(at)?]),
    }
}

impl<E: Persisted> Iterator for Replay<E> {
    type Item = Result<E, Error>;

    /// The next value: a record migrated to `E`, or one of the values an upcast made of it
    /// (in order; none for a record an upcast dropped).
    fn next(&mut self) -> Option<Result<E, Error>> {
        loop {
            if let Some(value) = self.upcast.pop_front() {
                return Some(Ok(value));
            }
            if let Err(error) = self.reader.next_record()? {
                return Some(Err(error));
            }
            if let Err(error) = check_sealing(
                &self.settings,
                &mut self.encrypted_seen,
                self.reader.data(),
                self.reader.path(),
                self.reader.last_offset(),
            ) {
                return Some(Err(error));
            }
            // The path is only copied for an error.
            let (reader, settings) = (&self.reader, &self.settings);
            let at = |error: codec::DecodeError| {
                at_record(error.at::<E>(reader.path()), reader.last_offset())
            };
            let envelope = match settings.unframe(reader.data()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    return Some(Err(at_record(
                        error.at(reader.path()),
                        reader.last_offset(),
                    )));
                }
            };
            if !codec::chain_upcasts::<E>() {
                return Some(codec::decode::<E>(&envelope).map_err(at));
            }
            match codec::decode::<Many<E>>(&envelope) {
                Ok(Many(values)) => self.upcast.extend(values),
                Err(error) => return Some(Err(at(error))),
            }
        }
    }
}

/// A journal's records read without their type, for tools (the `persist journal` command):
/// see [`Options::journal_records`](crate::Options::journal_records). Reading takes no lock
/// and changes nothing; a torn last flush is not cut off but reported by
/// [`recovered`](JournalRecords::recovered).
#[derive(Debug)]
pub struct JournalRecords {
    records: Replay<()>,
    index: u64,
    torn: Option<Recovered>,
}

/// One record of a journal, as [`JournalRecords`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawRecord {
    /// The record's index: its position among all records ever appended.
    pub index: u64,
    /// Where the record starts in the file, in bytes.
    pub offset: u64,
    /// The schema version the record was written at.
    pub version: u64,
    /// The record's value as JSON text, exactly as stored (decrypted and decompressed when
    /// the journal's options have layers).
    pub data: String,
}

impl JournalRecords {
    pub(crate) fn open(settings: &Settings, path: &Path) -> Result<JournalRecords, Error> {
        let (records, base, torn) = read_only(settings, path)?;
        Ok(JournalRecords {
            records,
            index: base,
            torn,
        })
    }

    /// Where a torn last flush starts (a crash during an append), which the next
    /// [`Journal::open`](crate::Journal::open) cuts off; `None` when the journal ends with a
    /// whole record.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn.map(|torn| torn.offset)
    }

    /// What the next [`Journal::open`](crate::Journal::open) would cut off (or refuse to,
    /// under [`JournalRecovery::AbsoluteConsistency`](crate::JournalRecovery::AbsoluteConsistency)):
    /// `None` when the journal ends with a whole record.
    pub fn recovered(&self) -> Option<Recovered> {
        self.torn
    }
}

impl Iterator for JournalRecords {
    type Item = Result<RawRecord, Error>;

    /// The next record; an encrypted one when no key was given is
    /// [`Error::KeyRequired`], and the records after it are still read.
    fn next(&mut self) -> Option<Result<RawRecord, Error>> {
        let index = self.index;
        let (offset, envelope) = match self.records.next_envelope()? {
            Ok(next) => next,
            Err(error) => {
                self.index += 1;
                return Some(Err(error));
            }
        };
        self.index += 1;
        let record = raw_record(Path::new(""), index, offset, &envelope);
        drop(envelope);
        Some(record.map_err(|error| match error {
            Error::DamagedJournal { offset, reason, .. } => Error::DamagedJournal {
                path: self.records.reader.path().to_owned(),
                offset,
                reason,
            },
            error => error,
        }))
    }
}

/// The record `index` at `offset` of the journal at `path`, whose envelope is `envelope`, as
/// the untyped readers give it.
pub(super) fn raw_record(
    path: &Path,
    index: u64,
    offset: u64,
    envelope: &[u8],
) -> Result<RawRecord, Error> {
    let scanned = codec::scan(envelope).and_then(|scan| Some((scan.version?, scan.data?)));
    match scanned {
        Some((version, data)) => Ok(RawRecord {
            index,
            offset,
            version,
            data: String::from_utf8_lossy(data).into_owned(),
        }),
        None => Err(Error::DamagedJournal {
            path: path.to_owned(),
            offset,
            reason: "the record is not a persist envelope".to_owned(),
        }),
    }
}

/// The whole records of the journal at `path`, read without its lock and changing nothing,
/// with the index of the first and the torn tail after them, if there is one.
pub(crate) fn read_only<E>(
    settings: &Settings,
    path: &Path,
) -> Result<(Replay<E>, u64, Option<Recovered>), Error> {
    let (file, _) = open_regular_file(path, false)?;
    let header = read_header(path, &file)?;
    let scan = recovery::scan(path, &file, settings.disk.max_size, FILE_HEADER as u64)?;
    let reader = Reader::new(
        path,
        file,
        FILE_HEADER as u64,
        scan.end,
        settings.disk.max_size,
    )?;
    Ok((Replay::of(settings, reader)?, header.base, scan.torn))
}

/// The file header of the journal `file` at `path`, checked.
pub(super) fn read_header(path: &Path, file: &std::fs::File) -> Result<FileHeader, Error> {
    let mut bytes = [0; FILE_HEADER];
    let mut read = 0;
    while read < FILE_HEADER {
        match crate::shell::read_at(file, &mut bytes[read..], read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(io_error(path, IoOp::Read)(error)),
        }
    }
    FileHeader::parse(&bytes[..read]).map_err(|error| error.at(path))
}
