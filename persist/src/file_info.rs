//! [`FileInfo`]: what a persist file holds, read without the program's types. For tools (the
//! `persist` command's `show` and `verify`) and for operators' scripts: the layout, the layers,
//! the schema version, the checksum, and the data as JSON text. Every check a load makes before
//! it decodes is made here too: the frame (and its key), the size cap, the checksum, the JSON.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;

use crate::Format;
use crate::codec::{self, UTF8_BOM};
use crate::error::Error;
use crate::frame;
use crate::key::Key;
use crate::shell::read;

/// What a persist file holds, as [`Options::file_info`](crate::Options::file_info) read it:
/// intact, since any damage is an error instead.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileInfo {
    /// The file read.
    pub path: PathBuf,
    /// Its size on disk, in bytes.
    pub size: u64,
    /// How it is laid out: plain JSON or TOML, or a frame around either.
    pub layout: Layout,
    /// The text the envelope is written in.
    pub format: Format,
    /// The schema version the file says it holds (the envelope's, or a frame header's); `None`
    /// for a JSON file without an envelope.
    pub version: Option<u64>,
    /// Whether the envelope ends with a CRC-32C of its data (which matched: a mismatch is an
    /// error).
    pub checksummed: bool,
    /// The envelope's `data` exactly as the file holds it (decompressed and decrypted), or the
    /// whole document for a file without an envelope. For TOML, the document after the
    /// envelope's keys (all of it when a person moved them below the data), comments included.
    pub data: String,
}

/// How a file is laid out (FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// A JSON envelope, `{"version":N,"data":...}`; `pretty` when written indented.
    Envelope {
        /// Indented (a pretty save, or a hand edit) rather than compact.
        pretty: bool,
    },
    /// JSON without an envelope, as an application wrote it before it adopted persist.
    Unversioned,
    /// A TOML document: `persist-version = N` and the data's keys (or a document without the
    /// version, written before the application adopted persist).
    Toml,
    /// A binary frame around the envelope (compression, encryption).
    Framed {
        /// The frame format's version (1).
        format: u8,
        /// zstd-compressed.
        compressed: bool,
        /// How the key of an encrypted frame is derived; `None` when not encrypted.
        encrypted: Option<KeySource>,
        /// Bytes after the header.
        payload_len: u64,
        /// The envelope's size once opened.
        envelope_len: u64,
    },
}

/// Where the key of an encrypted file comes from, as its frame header records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A raw 32-byte key.
    Raw,
    /// A passphrase, through Argon2id with these costs.
    Passphrase {
        /// Memory in KiB.
        memory_kib: u32,
        /// Passes.
        iterations: u32,
        /// Lanes.
        lanes: u32,
    },
}

pub(crate) fn file_info(path: &Path, max_size: u64, key: Option<&Key>) -> Result<FileInfo, Error> {
    describe(path, &read::read(path, max_size)?, max_size, key)
}

/// [`file_info`] of the file at `path` whose bytes the caller read.
pub(crate) fn describe(
    path: &Path,
    bytes: &[u8],
    max_size: u64,
    key: Option<&Key>,
) -> Result<FileInfo, Error> {
    let framed = if frame::is_framed(bytes) {
        Some(frame::Header::parse(bytes).map_err(|error| error.at(path))?)
    } else {
        None
    };
    let envelope = codec::unframe(bytes, key, max_size).map_err(|error| error.at(path))?;
    #[cfg(feature = "toml")]
    if let Some(found) = codec::toml_doc::describe(&envelope) {
        let found = found.map_err(|error| error.at_untyped(path))?;
        return Ok(FileInfo {
            path: path.to_owned(),
            size: bytes.len() as u64,
            layout: match framed {
                Some(header) => framed_layout(&header, envelope.len()),
                None => Layout::Toml,
            },
            format: Format::Toml,
            version: found.version,
            checksummed: found.checksummed,
            data: found.data,
        });
    }
    let checksummed = codec::verify_checksum(&envelope).map_err(|error| error.at_untyped(path))?;
    let json = envelope.strip_prefix(UTF8_BOM).unwrap_or(&envelope);
    codec::refuse_blank(json).map_err(|error| error.at_untyped(path))?;
    if let Err(error) = serde_json::from_slice::<IgnoredAny>(json) {
        return Err(codec::corrupt(error, None).at_untyped(path));
    }
    let scan = codec::scan(json).filter(|scan| scan.version.is_some() && scan.data.is_some());
    let version = scan.as_ref().and_then(|scan| scan.version);
    let data = match &scan {
        Some(scan) => scan.data.unwrap_or_default(),
        None => json,
    };
    let layout = match framed {
        Some(header) => framed_layout(&header, envelope.len()),
        None if scan.is_some() => Layout::Envelope {
            pretty: json.contains(&b'\n'),
        },
        None => Layout::Unversioned,
    };
    Ok(FileInfo {
        path: path.to_owned(),
        size: bytes.len() as u64,
        layout,
        format: Format::Json,
        version,
        checksummed,
        // serde_json accepted the document, so it is UTF-8.
        data: String::from_utf8_lossy(data).into_owned(),
    })
}

/// The layout of a framed file whose header is `header` and whose envelope has `envelope_len`
/// bytes once opened.
fn framed_layout(header: &frame::Header, envelope_len: usize) -> Layout {
    Layout::Framed {
        format: frame::FORMAT_VERSION,
        compressed: header.layers & frame::ZSTD != 0,
        encrypted: header.sealing.map(|sealing| match sealing.derivation {
            0 => KeySource::Raw,
            _ => KeySource::Passphrase {
                memory_kib: sealing.cost[0],
                iterations: sealing.cost[1],
                lanes: sealing.cost[2],
            },
        }),
        payload_len: header.payload_len,
        envelope_len: envelope_len as u64,
    }
}
