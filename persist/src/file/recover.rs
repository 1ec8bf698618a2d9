//! What a load does with a file it cannot read ([`OnCorrupt`]): fail (the default), or fall
//! back to the newest earlier copy that loads (a generation, then a backup of another
//! version), keeping the damaged file aside as `<name>.corrupt-<ms>`, or to the default value.
//! The policy costs nothing until a load fails: an intact file loads as it always does.

use std::path::{Path, PathBuf};

use crate::mapped::Contents;
use crate::rollback::{self, NewerFile, OnNewer};
use crate::settings::Settings;
use crate::shell::damaged::Damaged;
use crate::shell::{lock, read};
use crate::{Error, Persisted};

/// What a load does with a file it cannot read: damaged (broken JSON, a failed checksum, a
/// file cut short, a version that is in no chain), or one that does not decrypt. Set with
/// [`Options::on_corrupt`](crate::Options::on_corrupt); followed by
/// [`load`](crate::Options::load), [`load_or_default`](crate::Options::load_or_default),
/// [`update`](crate::Options::update) and the opening of a [`Live`](crate::Live) value, and
/// per entry by a [`Collection`](crate::Collection)'s `get` and `update`: a damaged entry is
/// replaced by its newest generation that loads, where the backend keeps generations (the
/// local directory, with [`Options::generations`](crate::Options::generations)), and kept as
/// `<name>.corrupt-<unix ms>` beside it. An entry has no default: a collection follows
/// [`OnCorrupt::Default`] as [`OnCorrupt::LastGood`].
///
/// A value the type's `validate` refuses counts as damage. A file of a newer version
/// ([`Error::FutureVersion`]; see [`OnNewer`] to read it), a migration step that refuses the
/// data ([`Error::Migration`]), a missing file and every I/O error are not damage: they are
/// returned whatever the policy. With a key ([`Options::encrypt`](crate::Options::encrypt)),
/// only a copy the key opens is put back: a copy in clear (from before the file was
/// encrypted) would load whatever the key, so a wrong key never brings it back. Where no lock
/// file can be made (a read-only medium), the damage is the error returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnCorrupt {
    /// Return the error and leave the file as it is (the default).
    #[default]
    Fail,
    /// Load the newest earlier copy that loads: the generations
    /// ([`Options::generations`](crate::Options::generations)) newest first, then the backups of
    /// other versions, newest version first. That copy's bytes are put in the file's place
    /// (atomically, durably, under the file's lock), and the damaged file is kept as
    /// `<name>.corrupt-<unix ms>` (0600, listed by `persist backups`). When no copy loads,
    /// the error is returned and the file left as it is. The load reports what it did in
    /// [`LoadOutcome`] (through [`load_reported`](crate::Options::load_reported)) and as a
    /// `tracing` warning (with the `tracing` feature).
    LastGood,
    /// [`LastGood`](OnCorrupt::LastGood), and where no copy loads, the default value: the
    /// damaged file is moved aside as `<name>.corrupt-<unix ms>` and the load returns
    /// `T::default()` (nothing is written in its place: the next save writes the file).
    /// Followed where the load has a default: [`load_or_default`](crate::Options::load_or_default),
    /// [`update`](crate::Options::update) (its initial value) and [`Live`](crate::Live);
    /// [`load`](crate::Options::load) has none and behaves as `LastGood`. A file that does not
    /// decrypt, and no copy of which decrypts, is never replaced by the default (the key is
    /// more likely wrong than every copy damaged): the error is returned.
    Default,
}

/// A value a load returned, and how: see [`Options::load_reported`](crate::Options::load_reported).
#[derive(Debug)]
#[non_exhaustive]
pub struct Loaded<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub outcome: LoadOutcome,
}

/// Where a loaded value came from.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// The file, as it was.
    Intact,
    /// There was no file: the value is the default.
    Missing,
    /// The file did not load; the value is an earlier copy's, now in the file's place
    /// ([`OnCorrupt::LastGood`]).
    LastGood(Fallback),
    /// The file did not load, nor did any earlier copy; the value is the default
    /// ([`OnCorrupt::Default`]).
    Defaulted(Fallback),
    /// The file is of a newer version; its data was read as this program's version
    /// ([`OnNewer::ReadOnly`] or [`OnNewer::KeepUnknown`]).
    Newer(NewerFile),
}

impl LoadOutcome {
    /// What the fall-back did, if the file did not load.
    pub fn fallback(&self) -> Option<&Fallback> {
        match self {
            LoadOutcome::LastGood(fallback) | LoadOutcome::Defaulted(fallback) => Some(fallback),
            LoadOutcome::Intact | LoadOutcome::Missing | LoadOutcome::Newer(_) => None,
        }
    }
}

/// What a load did with a file it could not read.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fallback {
    /// Why the file did not load.
    pub error: Error,
    /// Where the damaged file is now: `<name>.corrupt-<unix ms>` beside it.
    pub damaged: PathBuf,
    /// The copy whose value was loaded (a generation or a backup); `None` for the default.
    pub from: Option<PathBuf>,
}

/// What a fall-back makes of a file's bytes (its path names it in errors): the value of `T`,
/// or a check without the type.
type Decode<'a, V> = dyn Fn(&Path, &[u8]) -> Result<V, Error> + 'a;

/// Whether `error` says the file is damaged, as [`OnCorrupt`] means it: it does not read as
/// a persist file of a version in the chain, does not decrypt, or holds a value the type's
/// `validate` refuses.
pub(crate) fn is_damage(error: &Error) -> bool {
    match error {
        Error::Corrupt { .. } | Error::Decrypt { .. } | Error::UnknownVersion { .. } => true,
        Error::Migration { source, .. } => source.is::<crate::ValidationError>(),
        _ => false,
    }
}

/// [`super::decode`] as the options read a file: a file of a newer version is read as `T`
/// under [`OnNewer::ReadOnly`] and [`OnNewer::KeepUnknown`], as a load of it would be.
fn decode_as_loaded<T: Persisted>(
    settings: &Settings,
    path: &Path,
    bytes: &[u8],
) -> Result<T, Error> {
    match super::decode::<T>(settings, path, bytes) {
        Err(refused @ Error::FutureVersion { .. }) if settings.on_newer != OnNewer::Refuse => {
            rollback::read_bytes::<T>(settings, path, bytes, refused).map(|(value, _)| value)
        }
        decoded => decoded,
    }
}

/// Loads `path` as `T` under `settings`' [`OnCorrupt`] policy. `defaults`: the caller has a
/// default value, for a missing file and as the last resort of [`OnCorrupt::Default`]; the
/// value is then `None` (a missing file is [`Error::NotFound`] otherwise). `locked`: the
/// caller holds the file's lock already.
pub(crate) fn load<T: Persisted>(
    settings: &Settings,
    path: &Path,
    defaults: bool,
    locked: bool,
) -> Result<Loaded<Option<T>>, Error> {
    let error = match super::load::<T>(settings, path) {
        Ok(value) => {
            return Ok(Loaded {
                value: Some(value),
                outcome: LoadOutcome::Intact,
            });
        }
        Err(Error::NotFound { .. }) if defaults => {
            return Ok(Loaded {
                value: None,
                outcome: LoadOutcome::Missing,
            });
        }
        Err(refused @ Error::FutureVersion { .. }) if settings.on_newer != OnNewer::Refuse => {
            let (value, newer) = rollback::load::<T>(settings, path, refused)?;
            return Ok(Loaded {
                value: Some(value),
                outcome: LoadOutcome::Newer(newer),
            });
        }
        Err(error) if settings.on_corrupt == OnCorrupt::Fail || !is_damage(&error) => {
            return Err(error);
        }
        Err(error) => error,
    };
    let defaults = defaults && settings.on_corrupt == OnCorrupt::Default;
    let decode = |path: &Path, bytes: &[u8]| decode_as_loaded::<T>(settings, path, bytes);
    fall_back(settings, path, error, (defaults, locked), &decode)
}

/// Repairs the file at `path` as [`OnCorrupt::LastGood`] would if it does not read as a
/// persist file (`check` of its bytes, without its type: the envelope, the checksum, the
/// layers): returns what was done, or [`LoadOutcome::Intact`].
pub(crate) fn repair(
    settings: &Settings,
    path: &Path,
    check: &Decode<'_, ()>,
) -> Result<LoadOutcome, Error> {
    let error = match read_with(settings, path, check) {
        Ok(_) => return Ok(LoadOutcome::Intact),
        Err(error) if !is_damage(&error) => return Err(error),
        Err(error) => error,
    };
    fall_back(settings, path, error, (false, false), check).map(|loaded| loaded.outcome)
}

/// The file at `path`, read once, and what `decode` makes of its bytes.
fn read_with<V>(
    settings: &Settings,
    path: &Path,
    decode: &Decode<'_, V>,
) -> Result<(V, Contents), Error> {
    let bytes = read::read_for_load(path, settings.disk.max_size)?;
    let decoded = decode(path, &bytes);
    // A truncation by another program during the read is the error to report.
    bytes.intact(path)?;
    Ok((decoded?, bytes))
}

/// Falls back from the damaged file at `path` (`error`: why it did not load) to the newest
/// earlier copy whose bytes `decode` accepts, or with `defaults`, to the default value;
/// `locked`: the caller holds the file's lock already.
fn fall_back<V>(
    settings: &Settings,
    path: &Path,
    error: Error,
    (defaults, locked): (bool, bool),
    decode: &Decode<'_, V>,
) -> Result<Loaded<Option<V>>, Error> {
    // Nothing to fall back to: nothing is touched (not even the lock file).
    if !defaults && candidates(path)?.is_empty() {
        return Err(error);
    }
    // Under the file's lock: no update lands between the look and the repair. Where no lock
    // file can be made (a read-only medium: nothing could be repaired either), the damage is
    // the error to report, not the lock's.
    let _lock = match locked {
        true => None,
        false => match lock::exclusive(path, settings.disk.lock_timeout) {
            Ok(lock) => Some(lock),
            Err(timeout @ Error::LockTimeout { .. }) => return Err(timeout),
            Err(_) => return Err(error),
        },
    };
    // Attempts: a save racing the recovery (one that takes no lock) replaces the file between
    // the look and the repair; it is looked at again.
    let mut error = error;
    for _ in 0..ATTEMPTS {
        match recover_once(settings, path, error, defaults, decode)? {
            Attempt::Done(loaded) => return Ok(loaded),
            Attempt::Again(again) => error = again,
        }
    }
    Err(error)
}

/// How many times a fall-back looks at a file replaced while it recovered it.
const ATTEMPTS: usize = 3;

/// What one look at the damaged file ended in.
enum Attempt<V> {
    Done(Loaded<Option<V>>),
    /// The file was replaced meanwhile: the error it had (to report if no attempt is left).
    Again(Error),
}

/// One look at the file at `path` under its lock: opened once, and everything done to what was
/// opened (see [`Damaged`]).
fn recover_once<V>(
    settings: &Settings,
    path: &Path,
    error: Error,
    defaults: bool,
    decode: &Decode<'_, V>,
) -> Result<Attempt<V>, Error> {
    let disk = &settings.disk;
    // Looked at again: another process may have repaired, replaced or removed it meanwhile.
    let Some(damaged) = Damaged::open(disk, path)? else {
        return Err(error);
    };
    let error = match decode(path, &damaged.bytes(disk)?) {
        Ok(value) => {
            return Ok(Attempt::Done(Loaded {
                value: Some(value),
                outcome: LoadOutcome::Intact,
            }));
        }
        Err(again) if is_damage(&again) => again,
        Err(_) => error,
    };
    let mut decrypts = !matches!(error, Error::Decrypt { .. });
    for copy in damaged.copies()? {
        // Only a plain file of its own: never a link, nor a second name of a file elsewhere.
        let Some(data) = damaged.read_copy(disk, &copy) else {
            continue;
        };
        let value = match decode(&copy.path, &data) {
            Ok(value) => value,
            Err(other) => {
                decrypts |= !matches!(other, Error::Decrypt { .. });
                continue;
            }
        };
        // With a key, only a copy that the key opens proves it right: a copy in clear (made
        // before the file was encrypted) would load whatever key is given, so a wrong key
        // would put old data in clear in the file's place.
        if settings.encoding.key.is_some() && !crate::frame::is_encrypted(&data) {
            continue;
        }
        let kept = match damaged.put_back(disk, &data) {
            Ok(kept) => kept,
            Err(Error::Contended { .. }) => return Ok(Attempt::Again(error)),
            Err(other) => return Err(other),
        };
        // The generation is the file now: kept, it would be kept again by the next save, a
        // second copy of one version pushing the oldest out.
        if copy.generation {
            damaged.remove_copy(&copy);
        }
        let fallback = Fallback {
            error,
            damaged: kept,
            from: Some(copy.path),
        };
        warn(path, &fallback);
        return Ok(Attempt::Done(Loaded {
            value: Some(value),
            outcome: LoadOutcome::LastGood(fallback),
        }));
    }
    if !(defaults && decrypts) {
        return Err(error);
    }
    let moved = match damaged.move_aside(disk) {
        Ok(moved) => moved,
        Err(Error::Contended { .. }) => return Ok(Attempt::Again(error)),
        Err(other) => return Err(other),
    };
    let fallback = Fallback {
        error,
        damaged: moved,
        from: None,
    };
    warn(path, &fallback);
    Ok(Attempt::Done(Loaded {
        value: None,
        outcome: LoadOutcome::Defaulted(fallback),
    }))
}

/// The earlier copies of the file at `path` a fall-back tries, in order: the generations,
/// newest first, then the backups of other versions, newest version first; each with whether
/// it is a generation.
fn candidates(path: &Path) -> Result<Vec<(PathBuf, bool)>, Error> {
    let mut kept = super::backups_of(path)?;
    // Generations first (newest first), then backups (newest version first).
    kept.sort_by_key(|kept| {
        (
            kept.generation.is_none(),
            std::cmp::Reverse(kept.generation),
            std::cmp::Reverse(kept.version),
        )
    });
    Ok(kept
        .into_iter()
        .map(|kept| (kept.path, kept.generation.is_some()))
        .collect())
}

impl std::fmt::Display for Fallback {
    /// What happened, in one sentence: the file and why it did not load, then what took its
    /// place.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = self.error.reason();
        match &self.from {
            Some(from) => write!(
                f,
                "{reason}; {} was put in its place, and the damaged file is kept as {}",
                from.display(),
                self.damaged.display()
            ),
            None => write!(
                f,
                "{reason}; the default value was used, and the damaged file was moved to {}",
                self.damaged.display()
            ),
        }
    }
}

/// The warning a fall-back leaves in the `tracing` log.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn warn(path: &Path, fallback: &Fallback) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        path = %path.display(),
        error = %fallback.error.reason(),
        damaged = %fallback.damaged.display(),
        from = fallback.from.as_ref().map(|from| from.display().to_string()),
        "the file did not load: {}",
        match &fallback.from {
            Some(_) => "an earlier copy was put in its place",
            None => "the default value was used",
        }
    );
}
