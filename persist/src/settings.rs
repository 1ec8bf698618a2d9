//! [`Settings`]: what the layers under [`Options`](crate::Options) need of its settings, as one
//! crate-internal value: how the shell writes ([`Disk`]), how values are encoded
//! ([`Encoding`]), and a journal's group-commit window. `Options` is the public builder of it.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use crate::codec::{self, EncodeError};
use crate::file::recover::OnCorrupt;
use crate::frame::{self, FrameError};
use crate::journal::JournalRecovery;
use crate::key::Key;
use crate::retry::Retry;
use crate::shell::{Disk, Durability};
use crate::{Error, Persisted};

/// The default cap on the size of a file a load reads: 256 MiB.
pub(crate) const DEFAULT_MAX_SIZE: u64 = 256 << 20;

/// How long a lock is waited for by default: 30 s.
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many backups of other versions a save keeps by default: 3.
pub(crate) const DEFAULT_BACKUPS: usize = 3;

/// One call's settings, below the facade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) disk: Disk,
    pub(crate) encoding: Encoding,
    /// How long a journal flush waits for more appends.
    pub(crate) group_commit: Option<Duration>,
    /// What opening a journal does with a torn tail.
    pub(crate) journal_recovery: JournalRecovery,
    /// What a load does with a file it cannot read.
    pub(crate) on_corrupt: OnCorrupt,
}

/// How values are written: the envelope's layout and the frame's layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Encoding {
    pub(crate) checksum: bool,
    pub(crate) pretty: bool,
    pub(crate) compression: Option<i32>,
    pub(crate) key: Option<Key>,
}

impl Settings {
    /// The defaults ([`Options::new`](crate::Options::new)).
    pub(crate) const DEFAULT: Settings = Settings {
        disk: Disk {
            durability: Durability::Full,
            backups: DEFAULT_BACKUPS,
            keep_unreadable: true,
            generations: 0,
            max_size: DEFAULT_MAX_SIZE,
            lock_timeout: Some(DEFAULT_LOCK_TIMEOUT),
            retry: Retry::NONE,
            audit: None,
            actor: None,
        },
        encoding: Encoding {
            checksum: false,
            pretty: false,
            compression: None,
            key: None,
        },
        group_commit: None,
        journal_recovery: JournalRecovery::TolerateTornTail,
        on_corrupt: OnCorrupt::Fail,
    };

    /// The layout of a save of `T`.
    pub(crate) fn style<T: Persisted>(&self) -> codec::Style {
        codec::Style {
            checksum: self.encoding.checksum || T::CHECKSUM,
            pretty: self.encoding.pretty || T::PRETTY,
        }
    }

    pub(crate) fn layers(&self) -> frame::Layers<'_> {
        frame::Layers {
            zstd_level: self.encoding.compression,
            key: self.encoding.key.as_ref(),
            sealing: None,
        }
    }

    /// The JSON envelope of a file's bytes: the bytes themselves, or what a frame holds.
    /// Errors name `path`.
    pub(crate) fn open<'b>(&self, path: &Path, bytes: &'b [u8]) -> Result<Cow<'b, [u8]>, Error> {
        self.unframe(bytes).map_err(|error| error.at(path))
    }

    /// [`open`](Settings::open) without a path: the caller names the file only on an error
    /// (`FrameError::at`), so the hot path of a collection read builds no path.
    pub(crate) fn unframe<'b>(&self, bytes: &'b [u8]) -> Result<Cow<'b, [u8]>, FrameError> {
        codec::unframe(bytes, self.encoding.key.as_ref(), self.disk.max_size)
    }

    /// The whole file of `value` in memory: the envelope, framed when layers are configured
    /// (the layers work on the complete envelope). A `Vec` is the fastest thing serde_json
    /// writes into; growing a large one costs no copies on Linux (glibc moves its pages with
    /// mremap).
    pub(crate) fn file_bytes<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
    ) -> Result<Vec<u8>, Error> {
        let plain =
            codec::encode_to_vec(value, self.style::<T>()).map_err(|error| error.at(path))?;
        self.seal::<T>(plain, path)
    }

    /// `plain` (an envelope of `T`) framed with the configured layers, if any.
    pub(crate) fn seal<T: Persisted>(&self, plain: Vec<u8>, path: &Path) -> Result<Vec<u8>, Error> {
        let layers = self.layers();
        if !layers.any() {
            return Ok(plain);
        }
        frame::seal(plain, T::VERSION, &layers).map_err(|source| Error::Seal {
            path: path.to_owned(),
            source,
        })
    }

    /// Whether saves stream the value straight into the file (no layer needs it whole).
    pub(crate) fn streams(&self) -> bool {
        !self.layers().any()
    }
}

/// Serialize errors of a streamed save, kept aside while the file write reports an I/O error.
pub(crate) fn stream_refusal(
    error: EncodeError,
    refused: &mut Option<EncodeError>,
) -> std::io::Error {
    match error {
        EncodeError::Io(error) => error,
        refusal @ EncodeError::Value { .. } => {
            *refused = Some(refusal);
            std::io::Error::other("the value could not be serialized")
        }
    }
}
