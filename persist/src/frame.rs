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

use crate::error::Layer;
use crate::key::{Key, TAG_LEN};

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
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
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

/// The layers to apply on save.
#[derive(Clone, Copy, Default)]
pub(crate) struct Layers<'a> {
    pub(crate) zstd_level: Option<i32>,
    pub(crate) key: Option<&'a Key>,
}

impl Layers<'_> {
    pub(crate) fn any(&self) -> bool {
        self.zstd_level.is_some() || self.key.is_some()
    }
}

/// Whether `bytes` start like a frame (the first byte of the magic is enough: it cannot start
/// a JSON document).
pub(crate) fn is_framed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC[0])
}

/// The schema version in a frame's header, from the first 16 bytes of a file.
pub(crate) fn header_version(head: &[u8]) -> Option<u64> {
    let head = head.strip_prefix(&MAGIC)?;
    let bytes: [u8; 4] = head.get(4..8)?.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(bytes)))
}

/// Wraps the envelope `plain` (of schema `version`) in the frame of `layers`.
pub(crate) fn seal(plain: Vec<u8>, version: u32, layers: &Layers<'_>) -> std::io::Result<Vec<u8>> {
    let mut flags = 0;
    let mut payload = plain;
    if let Some(level) = layers.zstd_level {
        flags |= ZSTD;
        payload = compress(&payload, level)?;
    }
    let mut header = Vec::with_capacity(FIXED_HEADER + ENCRYPTION_BLOCK);
    header.extend_from_slice(&MAGIC);
    header.push(FORMAT_VERSION);
    header.push(flags);
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(&version.to_le_bytes());
    if let Some(key) = layers.key {
        header[9] |= ENCRYPTED;
        let payload_len = payload.len() as u64 + TAG_LEN as u64;
        header.extend_from_slice(&payload_len.to_le_bytes());
        // Appends the key-derivation block and nonce to the header, then encrypts `payload`
        // with the whole header as associated data.
        key.seal(&mut header, &mut payload)?;
        header.extend_from_slice(&payload);
        return Ok(header);
    }
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&payload);
    Ok(header)
}

/// The envelope inside `bytes`: `bytes` itself when the file has no frame, else the payload
/// decrypted and decompressed (at most `limit` bytes).
pub(crate) fn open<'b>(
    bytes: &'b [u8],
    key: Option<&Key>,
    limit: u64,
) -> Result<Cow<'b, [u8]>, FrameError> {
    if !is_framed(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    let corrupt = |reason: &str| FrameError::Corrupt(reason.to_owned());
    if bytes.len() < MAGIC.len() {
        return Err(corrupt(
            "truncated: the file ends inside the frame's magic bytes",
        ));
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            "not a persist file: it starts like a persist frame but its magic bytes are wrong",
        ));
    }
    if bytes.len() < FIXED_HEADER {
        return Err(corrupt("truncated: the file ends inside the frame header"));
    }
    let format = bytes[8];
    if format != FORMAT_VERSION {
        return Err(FrameError::Unsupported(format!(
            "frame format {format}, written by a newer persist (this one reads format \
             {FORMAT_VERSION})"
        )));
    }
    let flags = bytes[9];
    if flags & !KNOWN_LAYERS != 0 {
        return Err(FrameError::Unsupported(format!(
            "unknown layers (flags {flags:#010b}), written by a newer persist"
        )));
    }
    if bytes[10..12] != [0, 0] {
        return Err(corrupt("the frame header's reserved bytes are not zero"));
    }
    let header_len = if flags & ENCRYPTED != 0 {
        FIXED_HEADER + ENCRYPTION_BLOCK
    } else {
        FIXED_HEADER
    };
    if bytes.len() < header_len {
        return Err(corrupt("truncated: the file ends inside the frame header"));
    }
    let claimed = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let actual = (bytes.len() - header_len) as u64;
    if claimed != actual {
        return Err(FrameError::Corrupt(format!(
            "the frame header announces {claimed} bytes of payload but the file holds {actual}: \
             truncated or extended after it was written"
        )));
    }
    let (header, payload) = bytes.split_at(header_len);
    let mut payload = Cow::Borrowed(payload);
    if flags & ENCRYPTED != 0 {
        let key = key.ok_or(if cfg!(feature = "encryption") {
            FrameError::KeyRequired
        } else {
            unavailable(Layer::Encryption)
        })?;
        payload = Cow::Owned(key.open(header, payload.into_owned())?);
    }
    if flags & ZSTD != 0 {
        payload = Cow::Owned(decompress(&payload, limit)?);
    }
    if payload.len() as u64 > limit {
        return Err(FrameError::TooLarge { limit });
    }
    // Unencrypted headers are not authenticated: the version in the clear must agree with the
    // envelope's, or one of them was changed.
    let inner = crate::codec::leading_version(&payload);
    let outer = header_version(header);
    if inner.is_some() && inner != outer {
        return Err(FrameError::Corrupt(format!(
            "the frame header says schema version {} but the data inside says {}",
            outer.unwrap_or_default(),
            inner.unwrap_or_default()
        )));
    }
    Ok(payload)
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
