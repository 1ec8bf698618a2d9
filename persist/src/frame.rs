//! The binary frame of a compressed or encrypted file (sans-IO, specified in FORMAT.md).
//!
//! A file with neither layer is the plain JSON envelope and has no frame. With either, the
//! envelope's bytes (checksum included, if any) go through zstd, then XChaCha20-Poly1305, and
//! are preceded by a header that says which layers were applied:
//!
//! ```text
//!  0  8  magic 89 70 73 74 0D 0A 1A 0A ("\x89pst\r\n\x1a\n")
//!  8  1  frame format version: 1
//!  9  1  layers: bit 0 zstd, bit 1 XChaCha20-Poly1305; other bits 0
//! 10  2  reserved, 0
//! 12  4  schema version (u32 LE), the envelope's, readable without the key
//! 16  8  payload length in bytes (u64 LE), everything after the header
//! 24     encrypted only: key derivation (1 byte: 0 raw key, 1 Argon2id), 3 reserved bytes,
//!        Argon2id memory KiB, iterations, lanes (u32 LE each), salt (16), nonce (24): 56 bytes
//! ```
//!
//! The whole header is the AEAD's associated data, so nothing in it can be changed without the
//! decryption failing.

use std::borrow::Cow;

use crate::error::{Layer, SealError};
use crate::key::{Key, OpenError, Sealing, TAG_LEN};

/// The first eight bytes of every framed file. The first byte is not ASCII, so no JSON document
/// and no text file starts this way; the rest catches line-ending and 7-bit conversions, like
/// PNG's signature.
pub(crate) const MAGIC: [u8; 8] = [0x89, b'p', b's', b't', 0x0D, 0x0A, 0x1A, 0x0A];

/// The frame format this code writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Layer bits of byte 9.
pub(crate) const ZSTD: u8 = 0b01;
pub(crate) const ENCRYPTED: u8 = 0b10;
const KNOWN_LAYERS: u8 = ZSTD | ENCRYPTED;

/// Bytes of the header every frame has.
const FIXED_HEADER: usize = 24;
/// Bytes the encryption layer adds to the header.
pub(crate) const ENCRYPTION_BLOCK: usize = 56;

/// Why a frame did not open; named with the file's path by [`FrameError::at`].
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Damaged or not a persist frame.
    Corrupt(String),
    /// A later frame format, an unknown layer, or a layer this build leaves out.
    Unsupported(String),
    /// The file is encrypted and no key was given.
    KeyRequired,
    /// The key is wrong or the file was changed after it was written.
    Decrypt,
    /// The decompressed envelope would be larger than the load's size cap.
    TooLarge { limit: u64 },
}

impl FrameError {
    pub(crate) fn at(self, path: &std::path::Path) -> crate::Error {
        let path = path.to_owned();
        match self {
            FrameError::Corrupt(reason) => crate::Error::Corrupt {
                path,
                line: 0,
                column: 0,
                field: None,
                reason,
            },
            FrameError::Unsupported(reason) => crate::Error::Unsupported { path, reason },
            FrameError::KeyRequired => crate::Error::KeyRequired { path },
            FrameError::Decrypt => crate::Error::Decrypt { path },
            FrameError::TooLarge { limit } => crate::Error::TooLarge {
                path,
                size: limit.saturating_add(1),
                limit,
            },
        }
    }
}

impl From<OpenError> for FrameError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Decrypt => FrameError::Decrypt,
            OpenError::UnknownDerivation(kdf) => FrameError::Unsupported(format!(
                "unknown key derivation {kdf}, written by a newer persist"
            )),
            OpenError::CostTooHigh([memory, iterations, lanes]) => FrameError::Corrupt(format!(
                "the header asks for an Argon2id cost above persist's limits ({memory} KiB, \
                 {iterations} iterations, {lanes} lanes)"
            )),
            OpenError::InvalidDerivation => {
                FrameError::Corrupt("the header's Argon2id parameters are invalid".to_owned())
            }
            OpenError::Truncated => FrameError::Corrupt(
                "truncated: the encrypted payload is shorter than its tag".to_owned(),
            ),
        }
    }
}

/// The layers to apply on save.
#[derive(Clone, Copy, Default)]
pub(crate) struct Layers<'a> {
    pub(crate) zstd_level: Option<i32>,
    pub(crate) key: Option<&'a Key>,
    /// The key derivation to seal with (a fresh nonce each time), instead of a new one per
    /// frame: the records of a journal share one.
    pub(crate) sealing: Option<&'a Sealing>,
}

impl Layers<'_> {
    pub(crate) fn any(&self) -> bool {
        self.zstd_level.is_some() || self.key.is_some()
    }
}

/// A frame's header, as FORMAT.md lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Layer bits ([`ZSTD`], [`ENCRYPTED`]).
    pub(crate) layers: u8,
    /// The schema version of the envelope inside.
    pub(crate) version: u32,
    /// Bytes after the header.
    pub(crate) payload_len: u64,
    /// For an encrypted frame: the key derivation and the nonce.
    pub(crate) sealing: Option<Sealing>,
}

impl Header {
    /// The header's length in bytes.
    pub(crate) fn len(&self) -> usize {
        if self.sealing.is_some() {
            FIXED_HEADER + ENCRYPTION_BLOCK
        } else {
            FIXED_HEADER
        }
    }

    /// The header's bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.layers);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        if let Some(sealing) = &self.sealing {
            out.extend_from_slice(&[sealing.derivation, 0, 0, 0]);
            for word in sealing.cost {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&sealing.salt);
            out.extend_from_slice(&sealing.nonce);
        }
        debug_assert_eq!(out.len(), self.len());
        out
    }

    /// Reads the header at the start of `bytes`, which must start with the magic's first byte.
    /// Checks the header alone; whether the payload is as long as it says is the caller's.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, FrameError> {
        let corrupt = |reason: &str| FrameError::Corrupt(reason.to_owned());
        let truncated = || corrupt("truncated: the file ends inside the frame header");
        let Some(magic) = bytes.get(..MAGIC.len()) else {
            return Err(corrupt(
                "truncated: the file ends inside the frame's magic bytes",
            ));
        };
        if magic == crate::journal::MAGIC {
            return Err(corrupt(
                "a persist journal, not a state file: read it with Journal::replay or \
                 Options::journal_records (`persist journal FILE`)",
            ));
        }
        if magic != MAGIC {
            return Err(corrupt(
                "not a persist file: it starts like a persist frame but its magic bytes are wrong",
            ));
        }
        let mut reader = Reader(bytes.get(MAGIC.len()..FIXED_HEADER).ok_or_else(truncated)?);
        let format = reader.byte();
        if format != FORMAT_VERSION {
            return Err(FrameError::Unsupported(format!(
                "frame format {format}, written by a newer persist (this one reads format \
                 {FORMAT_VERSION})"
            )));
        }
        let layers = reader.byte();
        if layers & !KNOWN_LAYERS != 0 {
            return Err(FrameError::Unsupported(format!(
                "unknown layers (flags {layers:#010b}), written by a newer persist"
            )));
        }
        if reader.array::<2>() != [0, 0] {
            return Err(corrupt("the frame header's reserved bytes are not zero"));
        }
        let version = u32::from_le_bytes(reader.array());
        let payload_len = u64::from_le_bytes(reader.array());
        let sealing = if layers & ENCRYPTED == 0 {
            None
        } else {
            let block = bytes
                .get(FIXED_HEADER..FIXED_HEADER + ENCRYPTION_BLOCK)
                .ok_or_else(truncated)?;
            let mut reader = Reader(block);
            let derivation = reader.byte();
            if reader.array::<3>() != [0, 0, 0] {
                return Err(corrupt(
                    "the encryption header's reserved bytes are not zero",
                ));
            }
            let cost = [0; 3].map(|_: u32| u32::from_le_bytes(reader.array()));
            Some(Sealing {
                derivation,
                cost,
                salt: reader.array(),
                nonce: reader.array(),
            })
        };
        Ok(Header {
            layers,
            version,
            payload_len,
            sealing,
        })
    }
}

/// Reads fixed-size fields off the front of a slice whose length was checked beforehand.
struct Reader<'b>(&'b [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let (field, rest) = self.0.split_at(N);
        self.0 = rest;
        field.try_into().expect("the caller checked the length")
    }

    fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }
}

/// Whether `bytes` start like a frame (the first byte of the magic is enough: it cannot start
/// a JSON document).
pub(crate) fn is_framed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC[0])
}

/// Whether `bytes` start with the frame of an encrypted file.
pub(crate) fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC) && bytes.get(9).is_some_and(|layers| layers & ENCRYPTED != 0)
}

/// The schema version in a frame's header, from the first 16 bytes of a file.
pub(crate) fn header_version(head: &[u8]) -> Option<u32> {
    let head = head.strip_prefix(&MAGIC)?;
    Some(u32::from_le_bytes(head.get(4..8)?.try_into().ok()?))
}

/// Wraps the envelope `plain` (of schema `version`) in the frame of `layers`.
pub(crate) fn seal(
    plain: Vec<u8>,
    version: u32,
    layers: &Layers<'_>,
) -> Result<Vec<u8>, SealError> {
    let mut header = Header {
        layers: 0,
        version,
        payload_len: 0,
        sealing: None,
    };
    let mut payload = plain;
    if let Some(level) = layers.zstd_level {
        header.layers |= ZSTD;
        payload = compress(&payload, level).map_err(SealError::Compress)?;
    }
    if let Some(key) = layers.key {
        header.layers |= ENCRYPTED;
        header.sealing = Some(match layers.sealing {
            Some(template) => key.renew(template)?,
            None => key.new_sealing()?,
        });
        header.payload_len = payload.len() as u64 + TAG_LEN as u64;
        let header_bytes = header.to_bytes();
        // The whole header is the associated data: nothing in it changes without the
        // decryption failing.
        key.encrypt(
            header.sealing.as_ref().expect("set above"),
            &header_bytes,
            &mut payload,
        )?;
        let mut file = header_bytes;
        file.extend_from_slice(&payload);
        return Ok(file);
    }
    header.payload_len = payload.len() as u64;
    let mut file = header.to_bytes();
    file.extend_from_slice(&payload);
    Ok(file)
}

/// An opened frame: its header and what it holds.
pub(crate) struct Opened<'b> {
    pub(crate) header: Header,
    /// The payload decrypted and decompressed: the JSON envelope.
    pub(crate) envelope: Cow<'b, [u8]>,
}

/// The frame of `bytes`: `None` when the file has no frame, else its header and the payload
/// decrypted and decompressed (at most `limit` bytes).
pub(crate) fn open<'b>(
    bytes: &'b [u8],
    key: Option<&Key>,
    limit: u64,
) -> Result<Option<Opened<'b>>, FrameError> {
    if !is_framed(bytes) {
        return Ok(None);
    }
    let header = Header::parse(bytes)?;
    let (header_bytes, payload) = bytes.split_at(header.len().min(bytes.len()));
    let actual = payload.len() as u64;
    if header.payload_len != actual {
        return Err(FrameError::Corrupt(format!(
            "the frame header announces {} bytes of payload but the file holds {actual}: \
             truncated or extended after it was written",
            header.payload_len
        )));
    }
    let mut payload = Cow::Borrowed(payload);
    if let Some(sealing) = &header.sealing {
        let key = key.ok_or(if cfg!(feature = "encryption") {
            FrameError::KeyRequired
        } else {
            unavailable(Layer::Encryption)
        })?;
        payload = Cow::Owned(key.decrypt(sealing, header_bytes, payload.into_owned())?);
    }
    if header.layers & ZSTD != 0 {
        payload = Cow::Owned(decompress(&payload, limit)?);
    }
    if payload.len() as u64 > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(Some(Opened {
        header,
        envelope: payload,
    }))
}

#[cfg_attr(all(feature = "zstd", feature = "encryption"), allow(dead_code))]
fn unavailable(layer: Layer) -> FrameError {
    FrameError::Unsupported(format!(
        "the file is {layer}, and this build of persist leaves that layer out: enable persist's \
         `{}` feature",
        layer.feature()
    ))
}

#[cfg(feature = "zstd")]
fn compress(plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    // zstd's own checksum of the content: a damaged compressed file fails in the decompressor
    // with a clear message instead of producing garbage for the JSON parser.
    compressor.include_checksum(true)?;
    compressor.compress(plain)
}

#[cfg(not(feature = "zstd"))]
fn compress(_plain: &[u8], _level: i32) -> std::io::Result<Vec<u8>> {
    unreachable!("compression is only requested through the zstd feature")
}

#[cfg(feature = "zstd")]
fn decompress(compressed: &[u8], limit: u64) -> Result<Vec<u8>, FrameError> {
    use std::io::Read;

    let damaged = |error: std::io::Error| {
        FrameError::Corrupt(format!("the compressed data is damaged: {error}"))
    };
    // The size zstd recorded is only a hint for the allocation: it is never trusted beyond the
    // cap, and the read below stops one byte past the cap whatever the header says.
    let hint = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten()
        .unwrap_or(0)
        .min(limit);
    let mut plain = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(damaged)?;
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(damaged)?;
    if plain.len() as u64 > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(plain)
}

#[cfg(not(feature = "zstd"))]
fn decompress(_compressed: &[u8], _limit: u64) -> Result<Vec<u8>, FrameError> {
    Err(unavailable(Layer::Zstd))
}
