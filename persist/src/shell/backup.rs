//! What a save keeps of the file it replaces: before a save replaces a file that holds another
//! version (the first save after a migration, or an older program writing over a newer file),
//! the old bytes are kept beside it as `<name>.v<version>.bak`; a file persist cannot read
//! (no version it can tell, or cut short) is kept as `<name>.corrupt-<unix ms>`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;

use super::commit::{Target, Write, bytes, replace_keeping, stage};
use super::dir::{Dir, Kind};
use super::faults::fault;
use super::generations::Generation;
use super::names::{self, Sibling};
use super::read::{read_open, too_large};
use super::{AuditEntry, AuditOp, Disk, Written, io_error, version_of};
use crate::codec::{UTF8_BOM, leading_version, stored_version};
use crate::error::{Error, IoOp};

/// A copy of a state file kept beside it, as listed by
/// [`Options::backups_of`](crate::Options::backups_of): a backup of another schema version, or
/// an earlier generation ([`Options::generations`](crate::Options::generations)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Backup {
    /// The schema version the kept file holds (for a generation, as its first bytes say; 0
    /// when they do not).
    pub version: u64,
    /// Where it is: `<name>.v<version>.bak` beside the state file, or `<name>.gen-<N>` for a
    /// generation.
    pub path: PathBuf,
    /// For a generation, its number (the higher, the more recent); `None` for a backup of a
    /// version.
    pub generation: Option<u64>,
}

/// What a save keeps of the file it replaces: see [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// What the file holds decides, and the options.
    Usual,
    /// A file of the version written too (a restore).
    Always,
}

/// What a save finds in the file it replaces, as far as it looks.
enum Found {
    /// Nothing to keep: an empty file, or white space only.
    Nothing,
    /// A file of the version being written that ends as a whole file does.
    Same,
    /// A file of another schema version.
    Version(u64),
    /// A file persist cannot read: no schema version it can tell, or cut short.
    Damaged,
}

/// How many bytes at the end of a file a save reads to tell whether it was cut short.
const TAIL: u64 = 16;

/// Looks at the file `target` replaces (open as `current`, `size` bytes, its first bytes
/// `head`) before a file of `version` replaces it. The common case, a whole file this version
/// wrote, costs the small read of `head` and one of its last bytes (of its header, for a
/// compressed or encrypted file); only a file of another version, or one that looks damaged,
/// is read whole, and one larger than `disk.max_size` is told by its first bytes alone. Damage
/// inside a file that starts and ends as a whole one is not looked for: that would read every
/// file a save replaces.
fn examine(
    disk: &Disk,
    target: &Target,
    current: &std::fs::File,
    size: u64,
    (version, unversioned_as): (u64, Option<u32>),
    head: &[u8],
) -> Result<Found, Error> {
    let whole = || {
        match crate::frame::is_framed(head) {
            true => frame_whole(current, size),
            false => ends_whole(current, head, size),
        }
        .map_err(io_error(&target.named, IoOp::Read))
    };
    let leading = leading_version(head);
    if leading == Some(version) && whole()? {
        // A file with line breaks is one a person may edit (indented, or written by hand):
        // it is read whole and parsed, so that a typo anywhere in it is seen. A compact file
        // is not (that would read every file a save replaces).
        let edited = !crate::frame::is_framed(head) && head.contains(&b'\n');
        if !edited || size > disk.max_size {
            return Ok(Found::Same);
        }
        let bytes = read_opened(current, size, &target.named)?;
        let json = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
        return Ok(match serde_json::from_slice::<IgnoredAny>(json) {
            Ok(_) => Found::Same,
            Err(_) => Found::Damaged,
        });
    }
    if size > disk.max_size {
        // Too large to read for its version: what its first bytes say, kept either way.
        return Ok(match leading {
            Some(stored) if stored != version && whole()? => Found::Version(stored),
            _ => Found::Damaged,
        });
    }
    let bytes = read_opened(current, size, &target.named)?;
    if bytes.trim_ascii().is_empty() {
        return Ok(Found::Nothing);
    }
    if crate::frame::is_framed(&bytes) {
        return Ok(match (stored_version(&bytes), frame_whole(current, size)) {
            (Some(stored), Ok(true)) if stored != version => Found::Version(stored),
            (Some(_), Ok(true)) => Found::Same,
            _ => Found::Damaged,
        });
    }
    let json = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    // A TOML document (read whole anyway, so its checksum is checked too): its
    // `persist-version`, or the version a file without one loads as.
    #[cfg(feature = "toml")]
    if let Some(described) = crate::codec::toml_doc::describe(json) {
        let stored = described
            .ok()
            .and_then(|described| described.version.or(unversioned_as.map(u64::from)));
        return Ok(match stored {
            Some(stored) if stored == version => Found::Same,
            Some(stored) => Found::Version(stored),
            None => Found::Damaged,
        });
    }
    let parses = || serde_json::from_slice::<IgnoredAny>(json).is_ok();
    let stored = match stored_version(json) {
        Some(stored) if ends_like_json(json) && (stored != version || parses()) => stored,
        Some(_) => return Ok(Found::Damaged),
        None => match unversioned_as {
            Some(root) if serde_json::from_slice::<IgnoredAny>(json).is_ok() => u64::from(root),
            _ => return Ok(Found::Damaged),
        },
    };
    Ok(match stored == version {
        true => Found::Same,
        false => Found::Version(stored),
    })
}

/// The `size` bytes of the file a save opened to replace (not of whatever its name holds
/// now); the caller has checked `size` against the size cap.
pub(super) fn read_opened(file: &std::fs::File, size: u64, named: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0; size as usize];
    super::read_exact_at(file, &mut bytes, 0).map_err(io_error(named, IoOp::Read))?;
    Ok(bytes)
}

/// Whether the file (`size` bytes, whose first bytes are `head`) ends as a JSON document does,
/// `}` and perhaps white space: a file cut short by a crash or a full disk does not.
fn ends_whole(file: &std::fs::File, head: &[u8], size: u64) -> std::io::Result<bool> {
    if head.len() < super::commit::HEAD {
        return Ok(ends_like_json(head));
    }
    let start = size.saturating_sub(TAIL);
    let mut tail = vec![0; (size - start) as usize];
    super::read_exact_at(file, &mut tail, start)?;
    // A tail of white space only: not told here (the caller reads the whole file).
    match tail.trim_ascii().is_empty() {
        true => Ok(false),
        false => Ok(ends_like_json(&tail)),
    }
}

/// Whether a compressed or encrypted file (`size` bytes) is as long as its header says.
fn frame_whole(file: &std::fs::File, size: u64) -> std::io::Result<bool> {
    let mut header = vec![0; size.min(FRAME_HEADER_AT_MOST) as usize];
    super::read_exact_at(file, &mut header, 0)?;
    Ok(match crate::frame::Header::parse(&header) {
        Ok(parsed) => (parsed.len() as u64).checked_add(parsed.payload_len) == Some(size),
        Err(_) => false,
    })
}

/// More than any frame header takes (the fixed part, and the key derivation's and nonce's).
const FRAME_HEADER_AT_MOST: u64 = 512;

fn ends_like_json(bytes: &[u8]) -> bool {
    bytes.trim_ascii_end().last() == Some(&b'}')
}

/// The whole regular file `name` in `dir` (never through a link), at most `disk.max_size`
/// bytes; `None` if there is none.
pub(crate) fn read_in(
    disk: &Disk,
    dir: &Dir,
    name: &std::ffi::OsStr,
    named: &Path,
) -> Result<Option<Vec<u8>>, Error> {
    let path = dir.join(name);
    let file = match fault(IoOp::Open, &path).and_then(|()| dir.open_file(name, false)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(super::lock::refused_or(dir, name, named, IoOp::Open, error)),
    };
    let stat = Dir::stat_file(&file).map_err(io_error(named, IoOp::Metadata))?;
    if stat.kind != Kind::File {
        return Err(Error::NotRegularFile {
            path: named.to_owned(),
            kind: stat.kind.file_kind(),
        });
    }
    if stat.size > disk.max_size {
        return Err(too_large(named, stat.size, disk.max_size));
    }
    read_open(named, &file, stat.size, disk.max_size).map(Some)
}

/// What a save keeps of the file it replaces before the new file is renamed into place: a
/// backup or a damaged file's copy ([`Aside`]), an earlier generation
/// ([`Generation`](super::generations::Generation)), or both. A save that fails removes
/// them again; [`finish`](Kept::finish) keeps them once the new file is in place.
#[must_use = "a kept copy is removed again unless the save finishes it"]
pub(crate) struct Kept {
    aside: Option<Aside>,
    generation: Option<Generation>,
}

/// A backup or a damaged file's copy, under a name beside the state file, made before the new
/// file is renamed into place (so a crash at any point leaves it): the replaced file itself
/// under a second name (a hard link: nothing copied, whatever its size) where it has no other
/// name, a copy of its bytes, written and synced, otherwise. A save that fails removes that
/// name again. Where a file had the name already (a backup of the same version from an earlier
/// save), that file keeps a second name until the save is done and takes its name back if the
/// save fails. Backups are pruned only by [`finish`](Aside::finish), after the rename: a
/// failed save leaves the directory as it found it.
struct Aside {
    copy: Target,
    /// The second name of the file the copy replaced, if there was one.
    earlier: Option<OsString>,
    /// Whether the copy has its name (and is removed, or the earlier file put back, if the
    /// save fails).
    placed: bool,
    /// The replaced file itself, when the copy is a second name of it: made private (0600)
    /// once the new file has taken the state file's name.
    linked: Option<Identity>,
    /// The state file's name, in the copy's directory.
    state: OsString,
    /// The backups to prune once the new file is in place.
    prune: Option<Prune>,
    syncs_dirs: bool,
}

/// Keeps the file `target` replaces (open as `current`, its first bytes `head`) before a file
/// of `version` replaces it, when it holds something a save must not destroy: a file of an
/// older version (a backup, `<name>.v<N>.bak`, when `disk.backups > 0` or `always`), a file of
/// a newer version (a backup too, whatever `disk.backups`, unless `disk.keep_unreadable` is
/// off), a file persist cannot read (`<name>.corrupt-<ms>`, unless `disk.keep_unreadable` is
/// off); with [`Keep::Always`], a file of the same version too (a restore keeps the file it
/// replaces).
/// With `disk.generations`, a file that reads as whole (of any version) is kept as the newest
/// generation as well. `None` when there is nothing to keep.
pub(crate) fn prepare(
    disk: &Disk,
    target: &Target,
    current: &std::fs::File,
    write: (u64, Option<u32>),
    head: &[u8],
    keep: Keep,
) -> Result<Option<Kept>, Error> {
    let usual = disk.backups > 0 || disk.keep_unreadable || disk.generations > 0;
    if !usual && keep == Keep::Usual {
        return Ok(None);
    }
    let stat = Dir::stat_file(current).map_err(io_error(&target.named, IoOp::Metadata))?;
    let found = examine(disk, target, current, stat.size, write, head)?;
    let generation = match found {
        Found::Same | Found::Version(_) if disk.generations > 0 => {
            Some(super::generations::keep(disk, target, current, &stat)?)
        }
        _ => None,
    };
    let made = u64::from(generation.as_ref().is_some_and(Generation::linked));
    let aside = set_aside(disk, target, current, (write.0, found, &stat, made), keep)?;
    Ok(match (aside, generation) {
        (None, None) => None,
        (aside, generation) => Some(Kept { aside, generation }),
    })
}

/// The [`Aside`] [`prepare`] makes of the file it `found`, if any; `made` names of that file
/// are made already (a generation).
fn set_aside(
    disk: &Disk,
    target: &Target,
    current: &std::fs::File,
    (version, found, stat, made): (u64, Found, &super::dir::Stat, u64),
    keep: Keep,
) -> Result<Option<Aside>, Error> {
    let always = keep == Keep::Always;
    let backup = |version| names::name_for(&target.name, Sibling::Backup(version));
    let (name, prune) = match found {
        Found::Same if always && stat.size > 0 => (backup(version), None),
        Found::Nothing | Found::Same => return Ok(None),
        Found::Version(stored) => {
            let newer = stored > version && disk.keep_unreadable;
            if disk.backups == 0 && !newer && !always {
                return Ok(None);
            }
            let prune = (disk.backups > 0).then_some(Prune {
                written: version,
                keep: disk.backups,
                spare_newer: disk.keep_unreadable,
            });
            (backup(stored), prune)
        }
        Found::Damaged if !disk.keep_unreadable => return Ok(None),
        Found::Damaged => (free_name(&target.dir, &target.name, Sibling::Corrupt), None),
    };
    let (copy, taken) = copy_target(target, &name)?;
    let mut kept = Aside {
        copy,
        earlier: None,
        placed: false,
        linked: None,
        state: target.name.clone(),
        prune,
        syncs_dirs: disk.syncs_dirs(),
    };
    if taken {
        // The earlier file of that name keeps a second name until the save is done: a hard
        // link, or a copy of its bytes where it cannot be linked (no hard links, or
        // protected_hardlinks and another owner). A copy that cannot be made either stops
        // the save before anything changed.
        let earlier = match fault(IoOp::CreateTemp, target.dir.path())
            .and_then(|()| super::commit::link_temp(&target.dir, &name))
        {
            Ok(temp) => temp,
            Err(_) => {
                let Some(data) = read_in(disk, &target.dir, &name, &kept.copy.named)? else {
                    return Err(io_error(&kept.copy.named, IoOp::Open)(
                        std::io::ErrorKind::NotFound.into(),
                    ));
                };
                stage(disk, &kept.copy, bytes(&data))?.into_name()
            }
        };
        kept.earlier = Some(earlier);
    }
    // The replaced file itself under a second name, where it has no other (a file with more
    // names is copied: making the copy private must not change the others), and only if the
    // name linked is still that file (another program may have replaced it since it was
    // opened).
    if stat.nlink == 1
        && let Some(temp) = link_same(target, stat, made)
    {
        let renamed = fault(IoOp::Rename, target.dir.path())
            .and_then(|()| target.dir.rename(&temp, &target.dir, &name));
        if let Err(error) = renamed {
            let _ = target.dir.remove_file(&temp);
            return Err(io_error(&kept.copy.named, IoOp::Rename)(error));
        }
        kept.placed = true;
        kept.linked = Some(Identity::from_stat(stat));
        if disk.syncs_dirs() {
            fault(IoOp::SyncDir, target.dir.path())
                .and_then(|()| target.dir.sync())
                .map_err(io_error(&kept.copy.named, IoOp::SyncDir))?;
        }
        return Ok(Some(kept));
    }
    // A copy of the bytes of the file opened (not of whatever the name holds now).
    if stat.size > disk.max_size {
        return Err(super::read::too_large(
            &target.named,
            stat.size,
            disk.max_size,
        ));
    }
    let data = read_opened(current, stat.size, &target.named)?;
    let staged = stage(disk, &kept.copy, bytes(&data))?;
    let (renamed, placed) = staged.install(disk, &kept.copy);
    // Renamed (synced or not): undone if the save fails.
    kept.placed = renamed.is_some();
    placed?;
    Ok(Some(kept))
}

/// A second, temporary name of the file `target` names, if it is still the file `stat`
/// describes and nothing else has linked it meanwhile (its own name, the `made` ones this save
/// made already, and this one); `None` otherwise, or where it cannot be linked (the caller
/// copies its bytes instead).
fn link_same(target: &Target, stat: &super::dir::Stat, made: u64) -> Option<OsString> {
    let temp = fault(IoOp::CreateTemp, target.dir.path())
        .and_then(|()| super::commit::link_temp(&target.dir, &target.name))
        .ok()?;
    match target.dir.stat(&temp) {
        Ok(Some(linked))
            if linked.ino == stat.ino && linked.dev == stat.dev && linked.nlink == 2 + made =>
        {
            Some(temp)
        }
        _ => {
            let _ = target.dir.remove_file(&temp);
            None
        }
    }
}

/// A free name beside the state file `name` in `dir` for a copy `kind` names by time:
/// `kind(ms)` for the first millisecond from now whose name nothing holds (two copies made
/// within one millisecond get two names).
pub(crate) fn free_name(dir: &Dir, name: &std::ffi::OsStr, kind: fn(u64) -> Sibling) -> OsString {
    let mut millis = unix_millis();
    loop {
        let candidate = names::name_for(name, kind(millis));
        if dir.stat(&candidate).ok().flatten().is_none() {
            return candidate;
        }
        millis += 1;
    }
}

/// Which backups a save prunes once its new file is in place.
#[derive(Clone, Copy)]
struct Prune {
    /// The version the save wrote.
    written: u64,
    /// How many backups to keep, newest versions first.
    keep: usize,
    /// Whether backups of versions newer than `written` (files the program could not read)
    /// are neither counted nor removed.
    spare_newer: bool,
}

impl Kept {
    /// Once the new file is in place: keeps the backup or copy (see [`Aside::finish`]) and the
    /// generation, and removes what they replace (older backups if `prune`, generations past
    /// the number kept).
    pub(crate) fn finish(mut self, prune: bool) {
        let aside_linked = self
            .aside
            .as_ref()
            .is_some_and(|aside| aside.linked.is_some());
        let generation_linked = self.generation.as_ref().is_some_and(Generation::linked);
        let names = u64::from(aside_linked) + u64::from(generation_linked);
        if let Some(aside) = self.aside.take() {
            aside.finish(prune, names);
        }
        if let Some(generation) = self.generation.take() {
            generation.finish(names);
        }
    }

    /// The commit point of a transaction has passed: what is kept stays whatever happens next
    /// (it is no longer removed on drop); [`finish`](Kept::finish) still makes it private once
    /// the new file is in place.
    pub(crate) fn hold(&mut self) {
        if let Some(aside) = &mut self.aside {
            aside.hold();
        }
        if let Some(generation) = &mut self.generation {
            generation.hold();
        }
    }
}

impl Aside {
    /// Once the new file is in place: makes a linked copy private (0600) where the names this
    /// save made (`names`) are all it has, lets the earlier file's second name go and, if
    /// `prune`, removes all but the newest backups (never the one just made, never one of a
    /// version newer than the one written, which the program could not read).
    fn finish(mut self, prune: bool, names: u64) {
        self.placed = false;
        if let Some(linked) = self.linked.take()
            && !settle_link(&self.copy.dir, &self.state, &self.copy.name, linked, names)
        {
            // Not replaced after all: nothing needs keeping.
            return;
        }
        if let Some(rule) = self.prune.filter(|_| prune) {
            self.prune(rule);
        }
    }

    /// Best effort: the copy that matters is in place; an old backup left over is harmless.
    fn prune(&self, rule: Prune) {
        let dir = &self.copy.dir;
        let Some((state, _)) = names::classify_any(&self.copy.name) else {
            return;
        };
        let Ok(backups) = list_in(dir) else {
            return;
        };
        let mine = names::classify(&self.copy.name, &state);
        for stale in backups
            .iter()
            .filter(|b| b.0 == state && !(rule.spare_newer && b.1 > rule.written))
            .filter(|b| Some(Sibling::Backup(b.1)) != mine)
            // The one just made counts as one of those kept.
            .skip(rule.keep.saturating_sub(1))
        {
            let name = names::name_for(&state, Sibling::Backup(stale.1));
            let _ = fault(IoOp::Remove, dir.path()).and_then(|()| dir.remove_file(&name));
        }
    }
}

impl Aside {
    /// The commit point of a transaction has passed: the copy stays whatever happens next (it
    /// is no longer removed on drop); [`finish`](Aside::finish) still makes it private once
    /// the new file is in place.
    fn hold(&mut self) {
        self.placed = false;
        if let Some(earlier) = self.earlier.take() {
            let _ = self.copy.dir.remove_file(&earlier);
        }
    }
}

impl Drop for Aside {
    /// Undoes the copy of a save that failed (`placed`), or lets the earlier file's second name
    /// go (a finished save, or a copy that never took its name).
    fn drop(&mut self) {
        let dir = &self.copy.dir;
        let earlier = self.earlier.take();
        let undone = match (self.placed, earlier) {
            (false, None) => return,
            (false, Some(earlier)) => {
                let _ = dir.remove_file(&earlier);
                return;
            }
            // The earlier file takes its name back; if it cannot, it keeps its second name
            // (swept later, but not lost with this save).
            (true, Some(earlier)) => fault(IoOp::Rename, dir.path())
                .and_then(|()| dir.rename(&earlier, dir, &self.copy.name)),
            (true, None) => {
                fault(IoOp::Remove, dir.path()).and_then(|()| dir.remove_file(&self.copy.name))
            }
        };
        if undone.is_ok() && self.syncs_dirs {
            let _ = dir.sync();
        }
    }
}

/// Milliseconds since 1970, for the names of copies kept aside.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Writes `data` (a file of `version`) as the backup of `target` of that version.
pub(crate) fn write_copy(
    disk: &Disk,
    target: &Target,
    version: u64,
    data: &[u8],
) -> Result<(), Error> {
    let name = names::name_for(&target.name, Sibling::Backup(version));
    let (copy, _) = copy_target(target, &name)?;
    super::commit::replace(disk, &copy, &Write::default(), bytes(data)).map(drop)
}

/// The target of a copy named `name` beside the state file `target`: private (0600) whatever
/// the file's mode, and not a state file of its own. Also whether a file holds that name.
pub(super) fn copy_target(
    target: &Target,
    name: &std::ffi::OsStr,
) -> Result<(Target, bool), Error> {
    let copy = Target::beneath(&target.dir, name, target.dir.join(name))?;
    let taken = copy.mode.is_some();
    Ok((Target { mode: None, ..copy }, taken))
}

/// Once a save's new file is in place: whether the file a copy `copy` was linked from
/// (`linked`) was replaced. If it was not (a transaction's target that could not be), the
/// copy's name is removed: the file keeps its one name. If it was, it is made private (0600)
/// once the `names` this save made are all it has (no other program has linked it). Best
/// effort: the data is kept either way, with the mode the file had.
pub(super) fn settle_link(
    dir: &Dir,
    state: &std::ffi::OsStr,
    copy: &std::ffi::OsStr,
    linked: Identity,
    names: u64,
) -> bool {
    let still_there = dir
        .stat(state)
        .ok()
        .flatten()
        .is_some_and(|now| linked.is(&now));
    if still_there {
        let _ = dir.remove_file(copy);
        return false;
    }
    // The copy's name, looked up (the file is not held open): only while it names the file
    // linked. Already private (a state file persist made is): no change of the inode to commit.
    let Some(stat) = dir.stat(copy).ok().flatten().filter(|stat| linked.is(stat)) else {
        return true;
    };
    if stat.nlink == names
        && stat.mode != 0o600
        && let Ok(file) = dir.open_file(copy, false)
        && Dir::stat_file(&file).is_ok_and(|opened| linked.is(&opened))
    {
        let _ = super::dir::set_mode(&file, 0o600);
    }
    true
}

/// Which file a name held when it was linked (device and inode), without holding it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// From what a save already knows of the file.
    pub(crate) fn from_stat(stat: &super::dir::Stat) -> Identity {
        Identity {
            dev: stat.dev,
            ino: stat.ino,
        }
    }

    /// Whether `stat` describes this file.
    pub(crate) fn is(self, stat: &super::dir::Stat) -> bool {
        stat.dev == self.dev && stat.ino == self.ino
    }
}

/// The file now at a target, under a second, temporary name (a hard link): what a journal's
/// rewrite keeps as its backup without copying it. [`keep`](Linked::keep) makes it the backup
/// of a version once the file was replaced; dropped unkept, the name is removed.
pub(crate) struct Linked<'t> {
    target: &'t Target,
    temp: Option<std::ffi::OsString>,
}

/// Links the file at `target` under a temporary name (see [`Linked`]). Fails where the file
/// system has no hard links; the caller copies instead.
pub(crate) fn link_current(target: &Target) -> Result<Linked<'_>, Error> {
    let temp = fault(IoOp::CreateTemp, target.dir.path())
        .and_then(|()| super::commit::link_temp(&target.dir, &target.name))
        .map_err(io_error(&target.named, IoOp::CreateTemp))?;
    Ok(Linked {
        target,
        temp: Some(temp),
    })
}

impl Linked<'_> {
    /// Makes the linked file the backup of `version` of the target (replacing one there),
    /// durably per `disk`. Returns its path.
    pub(crate) fn keep(mut self, disk: &Disk, version: u64) -> Result<PathBuf, Error> {
        let target = self.target;
        let name = names::name_for(&target.name, Sibling::Backup(version));
        let path = target.dir.join(&name);
        let temp = self.temp.take().unwrap_or_default();
        fault(IoOp::Rename, target.dir.path())
            .and_then(|()| target.dir.rename(&temp, &target.dir, &name))
            .map_err(|error| {
                let _ = target.dir.remove_file(&temp);
                io_error(&path, IoOp::Rename)(error)
            })?;
        if disk.syncs_dirs() {
            fault(IoOp::SyncDir, target.dir.path())
                .and_then(|()| target.dir.sync())
                .map_err(io_error(&path, IoOp::SyncDir))?;
        }
        Ok(path)
    }
}

impl Drop for Linked<'_> {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = self.target.dir.remove_file(&temp);
        }
    }
}

/// The versions of the backups of the state file `name` in `dir`, newest first.
pub(crate) fn versions_in(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<Vec<u64>> {
    Ok(list_in(dir)?
        .into_iter()
        .filter(|(file, _)| file == name)
        .map(|(_, version)| version)
        .collect())
}

/// The backups in `dir`, as (state file name, version), newest version first.
fn list_in(dir: &Dir) -> std::io::Result<Vec<(std::ffi::OsString, u64)>> {
    let mut backups: Vec<_> = dir
        .list()?
        .into_iter()
        .filter(|(_, kind)| *kind == Kind::File)
        .filter_map(|(name, _)| match names::classify_any(&name)? {
            (file, Sibling::Backup(version)) => Some((file, version)),
            _ => None,
        })
        .collect();
    backups.sort_by_key(|backup| std::cmp::Reverse(backup.1));
    Ok(backups)
}

/// The backups of the state file at `path`, newest version first, then its generations,
/// newest first.
pub(crate) fn list(path: &Path) -> Result<Vec<Backup>, Error> {
    let located = Target::locate(path)?;
    let dir = match Dir::open(&located.dir_path()) {
        Ok(dir) => dir,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(path, IoOp::Read)(error)),
    };
    let backups = list_in(&dir).map_err(io_error(path, IoOp::Read))?;
    let generations =
        super::generations::list_in(&dir, &located.name).map_err(io_error(path, IoOp::Read))?;
    let generations = generations.into_iter().map(|(number, path)| {
        let version = super::version_in(&dir, path.file_name().unwrap_or_default()).unwrap_or(0);
        Backup {
            version,
            path,
            generation: Some(number),
        }
    });
    Ok(backups
        .into_iter()
        .filter(|(name, _)| *name == located.name)
        .map(|(name, version)| Backup {
            version,
            path: dir.join(names::name_for(&name, Sibling::Backup(version))),
            generation: None,
        })
        .chain(generations)
        .collect())
}

/// Puts the backup of `version` back in place of the state file at `path`, durably and
/// atomically, after keeping the current file as a backup of its own version; records it in
/// the audit log. Under the file's lock, as an update: neither lands inside the other.
pub(crate) fn restore(disk: &Disk, path: &Path, version: u64) -> Result<(), Error> {
    let target = Target::resolve(path, disk.durability)?;
    let name = names::name_for(&target.name, Sibling::Backup(version));
    let backup_path = target.dir.join(&name);
    let missing = || Error::NotFound {
        path: backup_path.clone(),
        source: std::io::ErrorKind::NotFound.into(),
    };
    // Looked for before the lock is taken (which creates the lock file): a restore of a
    // backup that is not there changes nothing.
    if target.dir.stat(&name).ok().flatten().is_none() {
        return Err(missing());
    }
    let _lock = super::lock::exclusive(path, disk.lock_timeout)?;
    let Some(data) = read_in(disk, &target.dir, &name, &backup_path)? else {
        return Err(missing());
    };
    let current = target.current()?;
    let head = current.as_ref().map(|(_, head)| head.clone());
    let kept = match &current {
        Some((file, head)) => prepare(disk, &target, file, (version, None), head, Keep::Always)?,
        None => None,
    };
    drop(current);
    let (file, replaced) = replace_keeping(disk, &target, &Write::default(), bytes(&data));
    if let (Some(_), Some(kept)) = (file, kept) {
        kept.finish(false);
    }
    replaced?;
    disk.audit(&[AuditEntry {
        operation: AuditOp::Restore,
        path,
        key: None,
        from_version: head.as_deref().and_then(version_of),
        to_version: Some(version),
        written: disk.audited().then(|| Written::of(&data)),
    }])
}

/// Keeps a copy of `current`, the file open at `target` (a name in a directory persist holds
/// open), which did not load, as `<name>.corrupt-<ms>` beside it (its bytes, written durably,
/// 0600) before a recovery writes an earlier copy over it; returns where.
pub(crate) fn keep_damaged_at(
    disk: &Disk,
    target: &Target,
    current: &std::fs::File,
) -> Result<PathBuf, Error> {
    let path = &target.named;
    let stat = Dir::stat_file(current).map_err(io_error(path, IoOp::Metadata))?;
    if stat.size > disk.max_size {
        return Err(too_large(path, stat.size, disk.max_size));
    }
    let data = read_opened(current, stat.size, path)?;
    let name = free_name(&target.dir, &target.name, Sibling::Corrupt);
    let (copy, _) = copy_target(target, &name)?;
    super::commit::replace(disk, &copy, &Write::default(), bytes(&data))?;
    Ok(copy.named)
}
