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
use crate::rollback::{self, OnNewer};
use crate::shell::{Disk, Durability};
use crate::{Error, Format, Persisted};

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
    /// What loads and saves do with a file of a newer version.
    pub(crate) on_newer: OnNewer,
    /// The older version saves write, walking down the declared downgrade steps.
    pub(crate) save_as: Option<u32>,
}

/// What a save writes: the file's bytes, and the schema version they hold.
pub(crate) struct Prepared {
    pub(crate) bytes: Vec<u8>,
    pub(crate) version: u32,
}

/// How values are written: the envelope's layout and the frame's layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Encoding {
    pub(crate) checksum: bool,
    pub(crate) pretty: bool,
    /// The format saves write, when not the type's own.
    pub(crate) format: Option<Format>,
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
            format: None,
            compression: None,
            key: None,
        },
        group_commit: None,
        journal_recovery: JournalRecovery::TolerateTornTail,
        on_corrupt: OnCorrupt::Fail,
        on_newer: OnNewer::Refuse,
        save_as: None,
    };

    /// The layout of a save of `T`.
    pub(crate) fn style<T: Persisted>(&self) -> codec::Style {
        codec::Style {
            checksum: self.encoding.checksum || T::CHECKSUM,
            pretty: self.encoding.pretty || T::PRETTY,
            format: self.encoding.format.unwrap_or(T::FORMAT),
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
    ///
    /// The version written is `T`'s, or the one [`save_as`](Settings::save_as) asks for, or,
    /// over a file of a newer version, what [`OnNewer`] says (that version, or a refusal).
    pub(crate) fn file_bytes<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
    ) -> Result<Prepared, Error> {
        let style = self.style::<T>();
        let (plain, version) = match self.save_as {
            Some(version) if version != T::VERSION => {
                // An older version written over a newer file is still a save over it.
                if self.on_newer == OnNewer::ReadOnly {
                    self.over_newer(value, path)?;
                }
                let plain = rollback::encode_at(value, version, style)
                    .map_err(|failure| failure.at(path))?
                    .map_err(|error| error.at(path))?;
                (plain, version)
            }
            _ => match self.over_newer(value, path)? {
                Some(newer) => newer,
                None => (
                    codec::encode_over(value, style, self.base(path, style).as_deref())
                        .map_err(|error| error.at(path))?,
                    T::VERSION,
                ),
            },
        };
        Ok(Prepared {
            bytes: self.seal(plain, version, || path.to_owned())?,
            version,
        })
    }

    /// What a save in a format that keeps a person's layout (TOML) writes over: the envelope of
    /// the file at `path`, read as a load reads it (a regular file within the size cap, its
    /// frame opened); `None` for JSON, and when there is no such file or it cannot be read (the
    /// save then writes the value as it would a new file).
    fn base(&self, path: &Path, style: codec::Style) -> Option<Vec<u8>> {
        if style.format == Format::Json {
            return None;
        }
        let bytes = crate::shell::read::read(path, self.disk.max_size).ok()?;
        self.open(path, &bytes).ok().map(Cow::into_owned)
    }

    /// The envelope a save of `value` writes over a file of a newer version at `path`, and
    /// that version, as [`OnNewer`] says; `None` when there is no such file (or it cannot be
    /// read: the save then goes on, and the write refuses what is not a regular file).
    fn over_newer<T: Persisted>(
        &self,
        value: &T,
        path: &Path,
    ) -> Result<Option<(Vec<u8>, u32)>, Error> {
        if self.on_newer == OnNewer::Refuse {
            return Ok(None);
        }
        // The version from the file's first bytes (a frame's header tells it in clear): a
        // newer file is refused, or kept, whatever else keeps it from being read whole (a key
        // that does not open it, a size over the cap).
        // Opened once: read whole when it is within the cap, its first bytes only otherwise.
        let Ok((file, metadata)) = crate::shell::read::open_regular_file(path, false) else {
            return Ok(None);
        };
        let limit = self.disk.max_size;
        let (head, read) = match metadata.len() <= limit {
            true => match crate::shell::read::read_open(path, &file, metadata.len(), limit) {
                Ok(bytes) => (
                    bytes[..bytes.len().min(64)].to_vec(),
                    self.open(path, &bytes)
                        .map(|envelope| envelope.into_owned()),
                ),
                Err(error) => (Vec::new(), Err(error)),
            },
            false => (
                crate::shell::read::head(&file, 64).unwrap_or_default(),
                Err(crate::shell::read::too_large(path, metadata.len(), limit)),
            ),
        };
        let newer = crate::shell::version_of(&head).filter(|found| *found > u64::from(T::VERSION));
        let existing = match (read, newer) {
            (Ok(existing), _) => existing,
            (Err(_), None) => return Ok(None),
            (Err(_), Some(found)) => {
                return Err(Error::ReadOnly {
                    path: path.to_owned(),
                    found,
                    supported: T::VERSION,
                });
            }
        };
        rollback::write_over(value, &existing, self.on_newer, self.style::<T>(), path)
    }

    /// `plain` (an envelope of `version`) framed with the configured layers, if any; `path()`
    /// names the file in an error (made only then).
    pub(crate) fn seal(
        &self,
        plain: Vec<u8>,
        version: u32,
        path: impl FnOnce() -> std::path::PathBuf,
    ) -> Result<Vec<u8>, Error> {
        let layers = self.layers();
        if !layers.any() {
            return Ok(plain);
        }
        frame::seal(plain, version, &layers).map_err(|source| Error::Seal {
            path: path(),
            source,
        })
    }

    /// Whether saves stream the value straight into the file: no layer needs it whole, and it
    /// is written at its type's version whatever file is there.
    pub(crate) fn streams(&self) -> bool {
        !self.layers().any() && self.save_as.is_none() && self.on_newer == OnNewer::Refuse
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
