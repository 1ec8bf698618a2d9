//! The optional CRC-32C of `data`, stored as the envelope's last member
//! (`{"version":3,"data":{...},"crc32c":"1a2b3c4d"}`): computed while a save streams, verified
//! before a load decodes.

use std::io;

use super::DecodeError;
use super::envelope::raw_data;

/// The envelope member that holds the checksum of `data`: always the last one.
pub(crate) const CHECKSUM_KEY: &str = "crc32c";

/// Bytes hashed at once: the CRC of serde_json's many tiny writes one by one would cost more
/// than the CRC itself.
const CRC_CHUNK: usize = 64 * 1024;

/// Passes everything through to `inner`, computing its CRC-32C in chunks on the way.
pub(crate) struct Crc32cWriter<W> {
    inner: W,
    crc: u32,
    pending: Vec<u8>,
}

impl<W: io::Write> Crc32cWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Crc32cWriter {
            inner,
            crc: 0,
            pending: Vec::with_capacity(CRC_CHUNK),
        }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.pending);
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and returns the CRC of everything written.
    pub(crate) fn finish(mut self) -> io::Result<u32> {
        self.pass_on()?;
        Ok(self.crc)
    }
}

impl<W: io::Write> io::Write for Crc32cWriter<W> {
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.pending.len() + data.len() > CRC_CHUNK {
            self.pass_on()?;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The checksum stored at the end of `bytes`, and where its member starts (at the comma before
/// it): `,"crc32c":"<8 lowercase hex digits>"}` as persist writes it, with any whitespace
/// between the tokens (a file reformatted by hand still has its checksum found, and checked).
fn trailing_checksum(bytes: &[u8]) -> Option<(u32, usize)> {
    /// Strips trailing whitespace, then `token`.
    fn back<'a>(bytes: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        let end = bytes.len()
            - bytes
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        bytes[..end].strip_suffix(token)
    }
    let rest = back(bytes, b"}")?;
    let rest = back(rest, b"\"")?;
    let (rest, hex) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let rest = rest.strip_suffix(b"\"")?;
    let rest = back(rest, b":")?;
    let rest = back(rest, format!("\"{CHECKSUM_KEY}\"").as_bytes())?;
    let rest = back(rest, b",")?;
    let stored = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    Some((stored, rest.len()))
}

/// The bytes of `data` in a file that has a trailing checksum: found by position when the file
/// starts the way persist writes it, else by parsing the envelope (a file reformatted by hand,
/// whose checksum then fails, as it should: the bytes changed).
fn checksummed_data(bytes: &[u8], checksum_start: usize) -> Option<&[u8]> {
    let head = bytes.strip_prefix(br#"{"version":"#);
    if let Some(rest) = head {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(data) = rest[digits..].strip_prefix(br#","data":"#) {
            let offset = bytes.len() - data.len();
            if offset <= checksum_start {
                return Some(&bytes[offset..checksum_start]);
            }
        }
    }
    raw_data(bytes)
}

/// Checks the checksum a file ends with, if it has one; `Ok(true)` when it had one and it
/// matched. A file whose data cannot be found passes here and fails in the decoding pass, which
/// says where.
pub(crate) fn verify_checksum(bytes: &[u8]) -> Result<bool, DecodeError> {
    let Some((stored, start)) = trailing_checksum(bytes) else {
        return Ok(false);
    };
    let Some(data) = checksummed_data(bytes, start) else {
        return Ok(true);
    };
    let mut computed = crc32c::crc32c(data);
    if computed != stored {
        // Found by position, `data` may have had other members after it; parse to be sure
        // before calling the file damaged.
        if let Some(parsed) = raw_data(bytes).filter(|parsed| parsed.len() != data.len()) {
            computed = crc32c::crc32c(parsed);
        }
    }
    if computed == stored {
        return Ok(true);
    }
    Err(DecodeError::Corrupt {
        line: 0,
        column: 0,
        field: None,
        reason: format!(
            "checksum mismatch: the data was damaged after it was written (stored crc32c \
             {stored:08x}, computed {computed:08x}); restore a backup or a copy of the file"
        ),
    })
}
