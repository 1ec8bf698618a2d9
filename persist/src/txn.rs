//! [`Transaction`]: several files under one root replaced all or nothing, across crashes and
//! power cuts: a staged directory and a commit record.
//!
//! The sequence (FORMAT.md, section 6):
//! 1. each file is written into `<root>/.persist-txn/` (the staging directory, kept between
//!    transactions) under a name unique to the transaction, its writeback started at once,
//!    and closed (a transaction holds no descriptor per file);
//! 2. `commit` takes the lock of every target (in path order; a transaction of more than 256
//!    files takes each file's lock while it replaces it instead), checks every target again,
//!    syncs the staged files, then writes and syncs the commit record (`.persist-txn/commit`:
//!    the targets and a CRC-32C of them, so a torn record is recognised) and syncs the staging
//!    directory, which makes the staged files' and the record's names durable together:
//!    **the commit point**;
//! 3. each staged file is renamed over its target (a backup kept as a save keeps one), each
//!    touched directory synced, then the record removed and the staging directory synced (a
//!    record that came back after a crash would replay its removals over later files).
//!
//! Everything under the root is reached through directory handles, never through a symbolic
//! link or across a mount: a target is a regular file (or nothing) under the root, checked when
//! it is staged and again before the commit point, so nothing the commit point promises can be
//! refused after it. A symbolic link at a target is written through when it points to a file
//! under the root, as a plain save writes through one.
//!
//! Recovery ([`Transaction::recover`], and every [`Transaction::open`]) looks at the staging directory: with a
//! valid record it does step 3 again (renaming what is still staged, so running it twice is
//! harmless); with no record, a torn one, or one that names anything outside the root, it
//! removes the staged files, and no target was touched. A target that cannot be replaced while
//! rolling forward is reported ([`Recovery::Incomplete`]); every other one is finished and the
//! record cleared, so a root is never left refusing transactions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::IoOp;
use crate::settings::Settings;
use crate::shell::commit::{
    SYNC_FS_FROM, StagedFile, Target, Write, bytes, create_dirs, create_file, dir_beneath, escape,
    install_staged, look_before, replace, stage_closed, sync_staged,
};
use crate::shell::dir::{Dir, Escape, Kind, Lookup};
use crate::shell::lock::{self, LockGuard, Registration, Scope};
use crate::shell::names::{self, Sibling, TXN_LOCK, TXN_RECORD, TXN_STAGING};
use crate::shell::{AuditEntry, AuditOp, Disk, Durability, io_error, remove};
use crate::telemetry::{Facts, Operation};
use crate::{Error, Persisted};

/// What a transaction does to one target, as the commit record lists it (FORMAT.md,
/// section 6; written by hand, as persist's core does not build serde's derive).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Replace (or create) `target` with the staged file `staged`, which holds `version`.
    Put {
        target: String,
        staged: String,
        version: u32,
    },
    /// Remove `target` if it exists.
    Remove { target: String },
}

impl Op {
    fn target(&self) -> &str {
        match self {
            Op::Put { target, .. } | Op::Remove { target } => target,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Op::Put {
                target,
                staged,
                version,
            } => json!({"put": {"target": target, "staged": staged, "version": version}}),
            Op::Remove { target } => json!({"remove": {"target": target}}),
        }
    }

    /// The operation a record lists, checked as strictly as [`Transaction::save`] checks its
    /// input: a target is a relative path of plain components that is not the transaction's
    /// own, a staged file's name is one the transaction could have made. `None` for anything
    /// else: such a record is never applied.
    fn from_json(value: &Value) -> Option<Op> {
        let op = if let Some(put) = value.get("put") {
            Op::Put {
                target: put.get("target")?.as_str()?.to_owned(),
                staged: put.get("staged")?.as_str()?.to_owned(),
                version: u32::try_from(put.get("version")?.as_u64()?).ok()?,
            }
        } else {
            let remove = value.get("remove")?;
            Op::Remove {
                target: remove.get("target")?.as_str()?.to_owned(),
            }
        };
        parts(op.target()).ok()?;
        match &op {
            Op::Put { staged, .. } if !names::is_staged_name(staged) => None,
            _ => Some(op),
        }
    }
}

/// What [`Transaction::recover`] found and did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Recovery {
    /// No transaction was left unfinished.
    Clean,
    /// A committed transaction had not finished putting its files in place; it was finished.
    RolledForward,
    /// A transaction had not reached its commit point (or its record was torn, or named
    /// anything outside the root); its staged files were removed and no target was touched.
    Discarded,
    /// A committed transaction was finished except for the targets in `failed`, which could
    /// not be replaced (each with its error; what was staged for them is gone). The record is
    /// cleared: the root takes new transactions.
    Incomplete {
        /// Each target that was not replaced, and why.
        failed: Vec<(PathBuf, Error)>,
    },
}

/// Two recoveries are equal when they did the same thing to the same targets.
impl PartialEq for Recovery {
    fn eq(&self, other: &Recovery) -> bool {
        match (self, other) {
            (Recovery::Incomplete { failed: a }, Recovery::Incomplete { failed: b }) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.0 == b.0)
            }
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// Several files under one root directory, replaced all or nothing.
///
/// Paths are relative to the root (`index/main.json`), never absolute, never leaving it
/// (`..`, or a symbolic link or a mount inside it: directories under the root are not
/// followed through links). Saves are staged (written beside the root's other files, in
/// `.persist-txn/`); nothing under the root changes before [`commit`](Transaction::commit).
/// A target must be a regular file or nothing; a symbolic link at a target is written through
/// when it points to a file under the root. Dropping an uncommitted transaction removes what
/// it staged. One transaction per root at a time: across processes (the lock file
/// `.persist-txn.lock`; another process waits up to [`Options::lock_timeout`]), and in one
/// process (a second [`Transaction::open`] on a root whose transaction is still alive fails at
/// once with [`Error::AlreadyOpen`]). A commit takes the lock of each file it writes, the one
/// [`Options::update`] and [`Live`](crate::Live) take, so they never interleave with it: all of
/// them before its commit point (for up to 256 files; a larger transaction takes each while it
/// replaces that file, and a file whose lock is held too long then waits for the next
/// recovery: [`Error::Committed`]).
///
/// After a crash at any moment, the next [`Transaction::open`] (or [`Transaction::recover`]) on the root
/// leaves either every file of the transaction as it was before or every one as it was
/// committed. A program that reads the files without recovering first may, while a commit is
/// putting its files in place (or after a crash in the middle of that), see some of them new
/// and others old; each file it reads is whole, old or new, never a mix of the two.
///
/// [`Options::lock_timeout`]: crate::Options::lock_timeout
/// [`Options::update`]: crate::Options::update
///
/// # Examples
///
/// ```
/// use persist::{Persisted, Transaction};
///
/// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Index { entries: Vec<String> }
///
/// #[derive(serde::Serialize, serde::Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Entry { text: String }
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let root = dir.path();
/// let mut txn = Transaction::open(root)?;
/// txn.save(&Entry { text: "hello".into() }, "entries/1.json")?;
/// txn.save(&Index { entries: vec!["1".into()] }, "index.json")?;
/// txn.commit()?; // both files, or (after a crash) neither
/// assert_eq!(Index::load(root.join("index.json"))?.entries, ["1"]);
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug)]
pub struct Transaction {
    root: PathBuf,
    root_dir: Arc<Dir>,
    staging: Arc<Dir>,
    settings: Settings,
    ops: Vec<Op>,
    /// Where each target's operation is in `ops`.
    by_target: HashMap<String, usize>,
    /// The staged files of the puts in `ops`, by staged name: removed when the transaction is
    /// dropped before its commit point.
    files: Vec<StagedFile>,
    /// Prefix of this transaction's staged files: its start, in nanoseconds since 1970.
    id: u128,
    next: u32,
    mode: Mode,
    _lock: RootLock,
}

/// What a transaction's targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Files under a root ([`Transaction::open`]): a symbolic link at a target is written
    /// through (to a file under the root); a target's lock file stays, as an update's does; a
    /// lock held past the lock timeout after the commit point leaves that file waiting for the
    /// next recovery ([`Error::Committed`]).
    Files,
    /// A collection's entries (its `put_many`): a link at a target is refused, as the
    /// collection's own writes refuse one; no entry's lock is taken: the collection's single
    /// writes hold the transaction lock shared while they write, so the transaction, which
    /// holds it alone, lands whole between them, without a lock file per entry; every
    /// directory is made before the commit point, so nothing after it waits or fails for want
    /// of one.
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    Entries,
}

impl Transaction {
    /// A transaction on the files under `root` (created if missing), with the default
    /// [`Options`](crate::Options); recovers a transaction a crash left unfinished first.
    ///
    /// # Errors
    ///
    /// See [`Options::transaction`](crate::Options::transaction).
    pub fn open(root: impl AsRef<Path>) -> Result<Transaction, Error> {
        Transaction::open_with(&Settings::DEFAULT, root.as_ref())
    }

    /// [`open`](Transaction::open), by the name databases give it.
    ///
    /// # Errors
    ///
    /// See [`open`](Transaction::open).
    pub fn begin(root: impl AsRef<Path>) -> Result<Transaction, Error> {
        Transaction::open(root)
    }

    /// Finishes or discards a transaction a crash left unfinished under `root` (see
    /// [`Transaction`]), with the default [`Options`](crate::Options); [`open`](Transaction::open)
    /// does it too.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] while another process holds the root's transaction lock,
    /// [`Error::AlreadyOpen`] while a transaction of this process is open on it,
    /// [`Error::InvalidPath`] when `.persist-txn` under the root is a symbolic link or a mount
    /// (it is never followed), and [`Error::Io`] naming the step that failed (running it again
    /// continues).
    pub fn recover(root: impl AsRef<Path>) -> Result<Recovery, Error> {
        recover(root.as_ref())
    }

    pub(crate) fn open_with(settings: &Settings, root: &Path) -> Result<Transaction, Error> {
        let root_dir = open_root(&settings.disk, root)?;
        Transaction::open_in(settings, root, root_dir, Mode::Files)
    }

    /// A transaction on the files under the directory `root_dir` (held open by the caller, and
    /// reached by `root`), in `mode`.
    pub(crate) fn open_in(
        settings: &Settings,
        root: &Path,
        root_dir: Arc<Dir>,
        mode: Mode,
    ) -> Result<Transaction, Error> {
        let disk = &settings.disk;
        let (root_dir, lock) = lock_root_dir(disk, root, root_dir)?;
        recover_locked(settings, root, &root_dir, mode)?;
        let staging = match root_dir
            .child_or_create(OsStr::new(TXN_STAGING), disk.syncs())
            .map_err(io_error(&root.join(TXN_STAGING), IoOp::CreateDir))?
        {
            Lookup::Found(staging) => Arc::new(staging),
            Lookup::Missing => {
                return Err(io_error(&root.join(TXN_STAGING), IoOp::CreateDir)(
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            Lookup::Escape(escaped) => return Err(escape(escaped)),
        };
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Ok(Transaction {
            root: root.to_owned(),
            root_dir,
            staging,
            settings: settings.clone(),
            ops: Vec::new(),
            by_target: HashMap::new(),
            files: Vec::new(),
            id,
            next: 0,
            mode,
            _lock: lock,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stages `value` to be saved at `path` (relative to the root) when the transaction
    /// commits, with the transaction's options (layers, checksum, durability): written now,
    /// synced with the others at the commit. Saving the same path again replaces what was
    /// staged.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for an absolute path, one leaving the root (`..`, a symbolic
    /// link or a mount inside it), or the transaction's own; [`Error::NotRegularFile`] when a
    /// directory, FIFO or device is at the path; [`Error::Serialize`] or [`Error::Seal`] for
    /// the value; [`Error::Io`] for the staging. Nothing under the root changes.
    pub fn save<T: Persisted>(&mut self, value: &T, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        // Checked before the value is encoded: a refused path costs no serialization.
        let target = self.checked(path)?;
        let prepared = self.settings.file_bytes(value, &self.root.join(&target))?;
        self.stage_checked(&prepared.bytes, prepared.version, target)
    }

    /// Stages `bytes` (a persist file's, holding `version`) to be put at `path` (relative to the
    /// root) when the transaction commits: what [`save`](Transaction::save) stages, for a
    /// caller that encoded the value itself (a collection's batch).
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    pub(crate) fn stage_bytes(
        &mut self,
        bytes: &[u8],
        version: u32,
        path: &Path,
    ) -> Result<(), Error> {
        let target = self.checked(path)?;
        self.stage_checked(bytes, version, target)
    }

    /// Stages `bytes` for `target`, a path [`checked`](Transaction::checked) already.
    fn stage_checked(&mut self, bytes: &[u8], version: u32, target: String) -> Result<(), Error> {
        let destination = self.root.join(&target);
        self.next += 1;
        let staged = names::staged_name(self.id, self.next);
        let file = stage_closed(
            &self.settings.disk,
            &self.staging,
            OsStr::new(&staged),
            bytes,
            &destination,
        )?;
        self.replace(Op::Put {
            target,
            staged,
            version,
        });
        self.files.push(file);
        Ok(())
    }

    /// Stages the removal of the file at `path` (relative to the root; nothing happens if
    /// there is none when the transaction commits).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for an absolute path or one leaving the root;
    /// [`Error::NotRegularFile`] when something else than a file is at the path.
    pub fn remove(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let target = self.checked(path.as_ref())?;
        self.replace(Op::Remove { target });
        Ok(())
    }

    /// Applies every staged save and removal, all or nothing; returns once they are durable.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] or [`Error::NotRegularFile`] when a target changed since it was
    /// staged into something a transaction cannot replace, [`Error::Io`] naming the step that
    /// failed: before the commit point, every target is as it was (and the staging is removed
    /// when the transaction drops). A failure after the commit point (a rename the file system
    /// refused, a lock another process held past [`Options::lock_timeout`](crate::Options::lock_timeout)) is returned after
    /// every other file was put in place: the transaction is finished, without that file.
    pub fn commit(mut self) -> Result<(), Error> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let operation = Operation::start("transaction_commit", &self.root);
        let result = operation.in_span(|| self.commit_now());
        operation.finish(&result, Facts::default());
        result
    }

    /// [`commit`](Transaction::commit) inside the caller's operation (a collection's batch,
    /// which has its own span and metrics): no span or metric of its own.
    #[cfg_attr(not(feature = "collection"), allow(dead_code))]
    pub(crate) fn commit_within(mut self) -> Result<(), Error> {
        match self.ops.is_empty() {
            true => Ok(()),
            false => self.commit_now(),
        }
    }

    /// [`commit`](Transaction::commit) on persist's worker threads: the staged files' syncs,
    /// the commit point and the renames run there, so no thread of the runtime waits for the
    /// disk. The transaction is handed over.
    ///
    /// # Errors
    ///
    /// See [`commit`](Transaction::commit).
    #[cfg(feature = "tokio")]
    pub fn commit_async(self) -> crate::Pending<()> {
        crate::Pending::new(self.root.clone(), move |_| self.commit())
    }

    fn commit_now(&mut self) -> Result<(), Error> {
        let disk = self.settings.disk.clone();
        // The lock of every target, in path order, before the commit point: updates of these
        // files and other commits serialize with this one whole, and a lock held too long
        // fails the commit before anything changed. A transaction of more files than that
        // takes each file's lock while it replaces it (a descriptor per held lock).
        let mut held: HashMap<String, LockGuard> = HashMap::new();
        // Every target checked again (it may have changed since it was staged): past the
        // commit point nothing may be refused. Each target's mode is kept for its new file.
        let mut modes: HashMap<&str, Option<u32>> = HashMap::with_capacity(self.ops.len());
        let mut existing: HashMap<&str, Target> = HashMap::new();
        let lock_all = self.ops.len() <= LOCKS_HELD_AT_MOST;
        let mut targets: Vec<&str> = self.ops.iter().map(Op::target).collect();
        targets.sort_unstable();
        for target in targets {
            // Resolved (its directories made) where its lock is taken now, and for every entry
            // of a collection (nothing may fail for want of a directory after the commit point).
            let create = (lock_all || self.mode == Mode::Entries).then_some(&disk);
            let resolved = resolve(&self.root, &self.root_dir, target, create, self.mode)?;
            modes.insert(target, resolved.as_ref().and_then(|resolved| resolved.mode));
            if let (true, Mode::Files, Some(resolved)) = (lock_all, self.mode, &resolved) {
                held.insert(target.to_owned(), lock_of(&disk, resolved)?);
            }
            if let Some(resolved) = resolved.filter(|resolved| resolved.mode.is_some()) {
                existing.insert(target, resolved);
            }
        }
        let staged: HashMap<&OsStr, &StagedFile> =
            self.files.iter().map(|file| (file.name(), file)).collect();
        let mut syncs = Vec::with_capacity(self.files.len());
        for op in &self.ops {
            if let Op::Put {
                staged: name,
                target,
                ..
            } = op
                && let Some(file) = staged.get(OsStr::new(name))
            {
                let mode = modes.get(target.as_str()).copied().flatten();
                syncs.push((*file, mode, self.root.join(target)));
            }
        }
        let syncs: Vec<(&StagedFile, Option<u32>, &Path)> = syncs
            .iter()
            .map(|(file, mode, named)| (*file, *mode, named.as_path()))
            .collect();
        sync_staged(&disk, &syncs, &self.staging)?;
        // What a save keeps of the files it replaces (a backup of another version, a file this
        // program cannot read), kept before the commit point: a copy that cannot be made
        // stops the commit before anything changed, and none is needed after it (a
        // roll-forward replaces the files without looking at them again).
        let mut kept = Vec::new();
        for op in &self.ops {
            if let Op::Put {
                target, version, ..
            } = op
                && let Some(resolved) = existing.get(target.as_str())
            {
                let write = Write {
                    version: Some(*version),
                    ..Write::default()
                };
                kept.extend(look_before(&disk, resolved, &write)?.1);
            }
        }
        write_record(&disk, &self.staging, &self.ops)?;
        for copy in &mut kept {
            copy.hold();
        }
        // The commit point has passed: from here on, a crash rolls forward, and the staged
        // files stay for recovery whatever happens.
        for file in &mut self.files {
            file.keep();
        }
        let files = std::mem::take(&mut self.files);
        let place = Place {
            root: &self.root,
            root_dir: &self.root_dir,
            staging: &self.staging,
        };
        let Applied { failed, entries } =
            apply(&self.settings, place, &self.ops, files, held, self.mode)?;
        // The files are in place: the copies become private. The copy of a target that could
        // not be replaced is a second name of that file still: it goes, and the file keeps its
        // one name and its mode.
        for copy in kept {
            copy.finish(true);
        }
        let Finished { waiting, failed } = finish(&disk, &self.staging, &self.ops, failed)?;
        let entries: Vec<AuditEntry<'_>> = entries
            .iter()
            .map(|entry| AuditEntry {
                operation: AuditOp::Commit,
                path: &entry.path,
                key: None,
                from_version: entry.from_version,
                to_version: entry.to_version,
                written: entry.written,
            })
            .collect();
        let audited = disk.audit(&entries);
        // A file still waiting (its lock held by another writer past the timeout) is put in
        // place by the next recovery; one that cannot be replaced is reported here.
        match waiting
            .into_iter()
            .chain(failed.into_iter().map(|(_, error)| error))
            .next()
        {
            Some(error) => Err(error),
            None => audited,
        }
    }

    /// The path relative to the root, as the record stores it, after checking that it names a
    /// file the transaction may replace.
    fn checked(&self, path: &Path) -> Result<String, Error> {
        let invalid = |reason: &str| Error::InvalidPath {
            path: self.root.join(path),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => {
                    let part = part
                        .to_str()
                        .ok_or_else(|| invalid("the path is not valid UTF-8"))?;
                    parts.push(part);
                }
                Component::CurDir => {}
                Component::ParentDir => return Err(invalid("the path leaves the root (`..`)")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid(
                        "the path must be relative to the transaction's root",
                    ));
                }
            }
        }
        if parts.is_empty() {
            return Err(invalid("the path names no file"));
        }
        if names::is_root_own(OsStr::new(parts[0])) {
            return Err(invalid("the path is the transaction's own"));
        }
        let target = parts.join("/");
        // A target that would be refused at the commit is refused now; a link at the target
        // is written through, so the record names the file it points to.
        match resolve(&self.root, &self.root_dir, &target, None, self.mode)? {
            Some(resolved) => Ok(relative_name(&self.root, &resolved)),
            None => Ok(target),
        }
    }

    /// Stages `op`, replacing an earlier one on the same target.
    fn replace(&mut self, op: Op) {
        match self.by_target.get(op.target()) {
            Some(&at) => {
                if let Op::Put { staged, .. } = std::mem::replace(&mut self.ops[at], op) {
                    // Replaced: neither synced at the commit nor put in place (removed on drop).
                    self.files.retain(|file| file.name() != OsStr::new(&staged));
                }
            }
            None => {
                self.by_target
                    .insert(op.target().to_owned(), self.ops.len());
                self.ops.push(op);
            }
        }
    }
}

/// The components of a target as the record stores it (`a/b/c.json`): plain names only.
fn parts(target: &str) -> Result<Vec<&OsStr>, &'static str> {
    let parts: Vec<&OsStr> = target.split('/').map(OsStr::new).collect();
    for part in &parts {
        let text = part.to_str().unwrap_or_default();
        if text.is_empty() || text == "." || text == ".." || text.contains('\0') {
            return Err("the path is not a relative path of plain names");
        }
        if Path::new(part).components().count() != 1 {
            return Err("the path is not a relative path of plain names");
        }
    }
    if names::is_root_own(parts[0]) {
        return Err("the path is the transaction's own");
    }
    Ok(parts)
}

/// The file `target` names under the root, reached without following a link in a directory
/// or crossing a mount; a link at the target itself is followed when it leads to a file
/// under the root. `None` when a directory on the way does not exist yet. With `create`,
/// missing directories are made (mode 0700) and the result is never `None`.
fn resolve(
    root: &Path,
    root_dir: &Arc<Dir>,
    target: &str,
    create: Option<&Disk>,
    mode: Mode,
) -> Result<Option<Target>, Error> {
    let named = root.join(target);
    let parts = parts(target).map_err(|reason| Error::InvalidPath {
        path: named.clone(),
        reason: reason.to_owned(),
    })?;
    let (name, dirs) = parts.split_last().unwrap_or((&parts[0], &[]));
    let dir = match dir_beneath(root_dir, dirs, create.map(|disk| disk.durability))? {
        Some(dir) => dir,
        None => return Ok(None),
    };
    let stat = dir.stat(name).map_err(io_error(&named, IoOp::Metadata))?;
    match stat.map(|stat| stat.kind) {
        Some(Kind::Symlink) if mode == Mode::Entries => Err(Error::NotRegularFile {
            path: named,
            kind: crate::FileKind::Symlink,
        }),
        Some(Kind::Symlink) => {
            let inside = follow_link(root, &named)?;
            resolve(root, root_dir, &inside, create, mode)
        }
        _ => Target::beneath(&dir, name, named).map(Some),
    }
}

/// The target, under the root, of the link at `named`: refused when it leads out of the
/// root (or nowhere).
fn follow_link(root: &Path, named: &Path) -> Result<String, Error> {
    let leaves = || escape(Escape::Symlink(named.to_owned()));
    let real_root = std::fs::canonicalize(root).map_err(io_error(root, IoOp::ResolveSymlink))?;
    let real = std::fs::canonicalize(named).map_err(io_error(named, IoOp::ResolveSymlink))?;
    let inside = real.strip_prefix(&real_root).map_err(|_| leaves())?;
    let parts: Option<Vec<&str>> = inside
        .components()
        .map(|component| match component {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    match parts {
        Some(parts) if !parts.is_empty() => Ok(parts.join("/")),
        _ => Err(leaves()),
    }
}

/// A resolved target's path relative to the root, as the record stores it.
fn relative_name(root: &Path, target: &Target) -> String {
    let name = target.name.to_string_lossy();
    match relative_dir(root, target) {
        dir if dir.is_empty() => name.into_owned(),
        dir => format!("{dir}/{name}"),
    }
}

/// Opens the root, created if missing (mode 0700).
fn open_root(disk: &Disk, root: &Path) -> Result<Arc<Dir>, Error> {
    let root_dir = match Dir::open_root(root) {
        Ok(dir) => dir,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create_dirs(root, root, disk.durability)?;
            Dir::open_root(root).map_err(io_error(root, IoOp::CreateDir))?
        }
        Err(error) => return Err(io_error(root, IoOp::Open)(error)),
    };
    Ok(Arc::new(root_dir))
}

/// Opens the root (created if missing, mode 0700) and takes its transaction lock.
fn lock_root(disk: &Disk, root: &Path) -> Result<(Arc<Dir>, RootLock), Error> {
    lock_root_dir(disk, root, open_root(disk, root)?)
}

/// Takes the transaction lock of the root `root_dir`: once per process, waiting for other
/// processes up to the lock timeout.
fn lock_root_dir(
    disk: &Disk,
    root: &Path,
    root_dir: Arc<Dir>,
) -> Result<(Arc<Dir>, RootLock), Error> {
    // The root itself is registered first: a second transaction of this process on it fails
    // at once, even if another program removed the lock file meanwhile.
    let lock_path = root_dir.join(TXN_LOCK);
    let registered = match root_dir.identity() {
        Some(identity) => Some(lock::register(identity, root, &lock_path)?),
        None => None,
    };
    let lock = lock::exclusive_in(
        &root_dir,
        OsStr::new(TXN_LOCK),
        root,
        disk.lock_timeout,
        Scope::Process,
    )?;
    Ok((root_dir, (lock, registered)))
}

/// What holds a transaction root: its lock file's lock, and its registration in this process.
type RootLock = (LockGuard, Option<Registration>);

/// Writes the commit record: the operations as JSON, then a line with their CRC-32C (a torn
/// record fails it), synced, then syncs the staging directory, which makes the staged files'
/// names and the record's durable at once.
fn write_record(disk: &Disk, staging: &Dir, ops: &[Op]) -> Result<(), Error> {
    let bytes = record_bytes(ops)?;
    let name = OsStr::new(TXN_RECORD);
    // A record the size cap would refuse to read back could never be recovered: refused
    // before the commit point instead.
    if bytes.len() as u64 > disk.max_size {
        return Err(crate::shell::read::too_large(
            &staging.join(name),
            bytes.len() as u64,
            disk.max_size,
        ));
    }
    create_file(disk, staging, name, &bytes).inspect_err(|_| {
        // Not committed (the caller is told so, and drops the staged files): a record whose
        // directory sync failed must not be rolled forward later.
        let _ = remove::remove_file(staging, name, &staging.join(name));
    })
}

/// A record's bytes: the operations as JSON, a newline, their CRC-32C in hex, a newline.
fn record_bytes(ops: &[Op]) -> Result<Vec<u8>, Error> {
    let record = json!({"ops": ops.iter().map(Op::to_json).collect::<Vec<_>>()});
    let mut bytes = serde_json::to_vec(&record).map_err(|source| Error::Serialize {
        path: PathBuf::from(TXN_RECORD),
        field: None,
        source,
    })?;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    Ok(bytes)
}

/// The record in the staging directory, if there is a whole and valid one.
fn read_record(disk: &Disk, staging: &Dir) -> Result<Option<Vec<Op>>, Error> {
    let name = OsStr::new(TXN_RECORD);
    let path = staging.join(name);
    // Something else than a file there (a link, a directory) is no record: it goes, as a torn
    // record does.
    match staging
        .stat(name)
        .map_err(io_error(&path, IoOp::Metadata))?
    {
        Some(stat) if stat.kind == Kind::File && staging.same_mount(&stat) => {}
        _ => return Ok(None),
    }
    let Some(bytes) = crate::shell::backup::read_in(disk, staging, name, &path)? else {
        return Ok(None);
    };
    Ok(parse_record(&bytes))
}

fn parse_record(bytes: &[u8]) -> Option<Vec<Op>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (json, crc) = text.strip_suffix('\n')?.rsplit_once('\n')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32c::crc32c(json.as_bytes()) == crc).then_some(())?;
    let record: Value = serde_json::from_str(json).ok()?;
    record
        .get("ops")?
        .as_array()?
        .iter()
        .map(Op::from_json)
        .collect()
}

/// What [`apply`] did: the targets it could not replace (the operation's index, the target,
/// why), and one audit entry per target done.
struct Applied {
    failed: Vec<(usize, PathBuf, Error)>,
    entries: Vec<Done>,
}

/// A target put in place or removed, for the audit log.
struct Done {
    path: PathBuf,
    from_version: Option<u64>,
    to_version: Option<u64>,
    written: Option<crate::shell::Written>,
}

/// Puts the staged files in place and removes the removed targets (skipping what an earlier
/// run already did), each under its file's lock (the one updates take, held for that file
/// alone: a transaction of any size holds a few descriptors), then syncs each touched
/// directory once. A target that cannot be replaced does not stop the others: it is reported
/// in [`Applied::failed`].
fn apply(
    settings: &Settings,
    place: Place<'_>,
    ops: &[Op],
    files: Vec<StagedFile>,
    mut held: HashMap<String, LockGuard>,
    mode: Mode,
) -> Result<Applied, Error> {
    let Place {
        root,
        root_dir,
        staging,
    } = place;
    let disk = &settings.disk;
    let mut files: HashMap<OsString, StagedFile> = files
        .into_iter()
        .map(|file| (file.name().to_owned(), file))
        .collect();
    // The directories touched, relative to the root, synced once each at the end.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut applied = Applied {
        failed: Vec::new(),
        entries: Vec::new(),
    };
    for (index, op) in ops.iter().enumerate() {
        let named = root.join(op.target());
        let done = (|| -> Result<Option<Done>, Error> {
            let Some(target) = resolve(root, root_dir, op.target(), Some(disk), mode)? else {
                return Ok(None);
            };
            // A collection's entries take no lock of their own: the transaction's lock, which
            // the collection's single writes share, keeps them out until the last is in place.
            let lock = match (held.remove(op.target()), mode) {
                (Some(lock), _) => Some(lock),
                (None, Mode::Entries) => None,
                (None, Mode::Files) => Some(lock_of(disk, &target)?),
            };
            let done = match op {
                Op::Put {
                    staged, version, ..
                } => {
                    let file = match files.remove(OsStr::new(staged)) {
                        Some(file) => file,
                        // Recovery: the staged file, if an earlier run has not put it in place.
                        None => match staging
                            .stat(OsStr::new(staged))
                            .map_err(io_error(&named, IoOp::Metadata))?
                        {
                            Some(stat) if stat.kind == Kind::File => {
                                StagedFile::existing(staging, OsString::from(staged))
                            }
                            _ => return Ok(None),
                        },
                    };
                    let written = file.written;
                    // What it replaces was kept before the commit point.
                    let write = Write {
                        version: Some(*version),
                        kept: true,
                        ..Write::default()
                    };
                    let from_version = install_staged(disk, file, &target, &write, true)?;
                    drop(lock);
                    Done {
                        path: named.clone(),
                        from_version,
                        to_version: Some(u64::from(*version)),
                        written,
                    }
                }
                Op::Remove { .. } => {
                    let from_version = match disk.audited() {
                        true => target.head()?.as_deref().and_then(crate::shell::version_of),
                        false => None,
                    };
                    remove::remove_file(&target.dir, &target.name, &named)?;
                    // Its lock file goes with it, removed while held.
                    if let Some(lock) = lock {
                        lock.remove(Durability::None)?;
                    }
                    Done {
                        path: named.clone(),
                        from_version,
                        to_version: None,
                        written: None,
                    }
                }
            };
            touched.insert(relative_dir(root, &target));
            Ok(Some(done))
        })();
        match done {
            Ok(Some(done)) => applied.entries.push(done),
            Ok(None) => {}
            Err(error) => applied.failed.push((index, named, error)),
        }
    }
    if disk.syncs_dirs() && touched.len() >= SYNC_FS_FROM && Dir::HAS_SYNC_FS {
        // Many directories (a collection's shards): one journal commit for all.
        crate::shell::commit::sync_fs(staging)?;
    } else if disk.syncs_dirs() {
        for dir in &touched {
            let parts: Vec<&OsStr> = dir
                .split('/')
                .filter(|part| !part.is_empty())
                .map(OsStr::new)
                .collect();
            if let Some(dir) = dir_beneath(root_dir, &parts, None)? {
                remove::sync_dir(disk, &dir, dir.path())?;
            }
        }
    }
    Ok(applied)
}

/// Where a transaction applies its operations: the root (its path and its directory, held
/// open) and the staging directory under it.
#[derive(Clone, Copy)]
struct Place<'a> {
    root: &'a Path,
    root_dir: &'a Arc<Dir>,
    staging: &'a Arc<Dir>,
}

/// How many targets' locks a commit holds together (above that, each while it is replaced).
const LOCKS_HELD_AT_MOST: usize = 256;

/// Takes the lock of a resolved target (`<name>.lock` beside it), the one updates take.
fn lock_of(disk: &Disk, target: &Target) -> Result<LockGuard, Error> {
    lock_waiting(target, disk.lock_timeout)
}

/// [`lock_of`], waiting at most `timeout` (forever if `None`).
fn lock_waiting(target: &Target, timeout: Option<std::time::Duration>) -> Result<LockGuard, Error> {
    let lock_name = names::name_for(&target.name, Sibling::Lock);
    lock::exclusive_in(
        &target.dir,
        &lock_name,
        &target.named,
        timeout,
        Scope::Shared,
    )
}

/// The directory of a resolved target, relative to the root (`""` for the root itself).
fn relative_dir(root: &Path, target: &Target) -> String {
    target
        .dir
        .path()
        .strip_prefix(root)
        .unwrap_or(Path::new(""))
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// After [`apply`]: a failure that may go away by itself (a lock another writer held past
/// the timeout) keeps its operation in the record, rewritten with only those, for the next
/// recovery ([`Error::Committed`]); the others cannot be retried: with none waiting, the
/// record is cleared with every staged file. Cleared rather than kept: a record left behind
/// would replay its removals over files written since.
fn finish(
    disk: &Disk,
    staging: &Arc<Dir>,
    ops: &[Op],
    failed: Vec<(usize, PathBuf, Error)>,
) -> Result<Finished, Error> {
    let (waiting, failed): (Vec<_>, Vec<_>) = failed
        .into_iter()
        .partition(|(_, _, error)| error.is_transient());
    let failed = failed
        .into_iter()
        .map(|(_, path, error)| (path, error))
        .collect();
    let Some((_, path, _)) = waiting.first() else {
        clear_record(disk, staging)?;
        return Ok(Finished {
            waiting: None,
            failed,
        });
    };
    let remaining: Vec<Op> = waiting
        .iter()
        .map(|(index, _, _)| ops[*index].clone())
        .collect();
    let name = OsStr::new(TXN_RECORD);
    let target = Target::beneath(staging, name, staging.join(name))?;
    replace(
        disk,
        &target,
        &Write::default(),
        bytes(&record_bytes(&remaining)?),
    )?;
    // The staged files of the operations done, or dropped, go now.
    let kept: HashSet<&str> = remaining
        .iter()
        .filter_map(|op| match op {
            Op::Put { staged, .. } => Some(staged.as_str()),
            Op::Remove { .. } => None,
        })
        .collect();
    discard_staged(staging, &kept)?;
    let path = path.clone();
    let count = waiting.len();
    let first = waiting.into_iter().next().map(|(_, _, error)| error);
    Ok(Finished {
        waiting: first.map(|source| Error::Committed {
            path,
            waiting: count,
            source: Box::new(source),
        }),
        failed,
    })
}

/// How [`finish`] left a committed transaction.
struct Finished {
    /// [`Error::Committed`] when files wait for the next recovery.
    waiting: Option<Error>,
    /// The targets that cannot be replaced, and why.
    failed: Vec<(PathBuf, Error)>,
}

/// Removes the commit record, durably (a record that came back after a crash would replay its
/// removals over files written since), then every staged file left.
fn clear_record(disk: &Disk, staging: &Dir) -> Result<(), Error> {
    let name = OsStr::new(TXN_RECORD);
    remove::remove_tree(staging, name)?;
    remove::sync_dir(disk, staging, &staging.join(name))?;
    discard_staged(staging, &HashSet::new()).map(drop)
}

/// Removes every staged file in the staging directory but those in `keep` (names a
/// transaction makes, whatever is there under them: the staging directory is persist's;
/// anything else is left alone); `true` if there was one.
fn discard_staged(staging: &Dir, keep: &HashSet<&str>) -> Result<bool, Error> {
    let entries = staging
        .list()
        .map_err(io_error(staging.path(), IoOp::Read))?;
    let mut discarded = false;
    for (name, _) in entries {
        if let Some(text) = name.to_str()
            && names::is_staged_name(text)
            && !keep.contains(text)
        {
            remove::remove_tree(staging, &name)?;
            discarded = true;
        }
    }
    Ok(discarded)
}

/// [`Transaction::recover`].
fn recover(root: &Path) -> Result<Recovery, Error> {
    let settings = &Settings::DEFAULT;
    // Nothing to recover in a root that does not exist: nothing is created for it.
    if std::fs::symlink_metadata(root)
        .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(Recovery::Clean);
    }
    let (root_dir, _lock) = lock_root(&settings.disk, root)?;
    recover_locked(settings, root, &root_dir, Mode::Files)
}

fn recover_locked(
    settings: &Settings,
    root: &Path,
    root_dir: &Arc<Dir>,
    mode: Mode,
) -> Result<Recovery, Error> {
    let disk = &settings.disk;
    let staging_path = root.join(TXN_STAGING);
    let staging = match root_dir
        .child(OsStr::new(TXN_STAGING))
        .map_err(io_error(&staging_path, IoOp::Open))?
    {
        Lookup::Found(staging) => Arc::new(staging),
        Lookup::Missing => return Ok(Recovery::Clean),
        Lookup::Escape(escaped) => return Err(escape(escaped)),
    };
    if let Some(ops) = read_record(disk, &staging)? {
        let place = Place {
            root,
            root_dir,
            staging: &staging,
        };
        let Applied { failed, .. } =
            apply(settings, place, &ops, Vec::new(), HashMap::new(), mode)?;
        let Finished { waiting, failed } = finish(disk, &staging, &ops, failed)?;
        if let Some(waiting) = waiting {
            return Err(waiting);
        }
        return Ok(match failed.is_empty() {
            true => Recovery::RolledForward,
            false => Recovery::Incomplete { failed },
        });
    }
    // No record, a torn one or one naming anything outside the root (or something else than a
    // file at the record's name): the transaction never (validly) reached its commit point,
    // and no target was touched.
    let name = OsStr::new(TXN_RECORD);
    let had_record = staging
        .stat(name)
        .map_err(io_error(&staging.join(name), IoOp::Metadata))?
        .is_some();
    remove::remove_tree(&staging, name)?;
    if discard_staged(&staging, &HashSet::new())? || had_record {
        remove::sync_dir(disk, &staging, &staging_path)?;
        Ok(Recovery::Discarded)
    } else {
        Ok(Recovery::Clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_naming_anything_outside_the_root_is_not_valid() {
        let record = |ops: Value| {
            let json = serde_json::to_vec(&json!({ "ops": ops })).unwrap();
            let crc = crc32c::crc32c(&json);
            let mut bytes = json;
            bytes.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
            parse_record(&bytes)
        };
        let staged = names::staged_name(7, 1);
        assert!(
            record(json!([{"put": {"target": "a/b.json", "staged": staged, "version": 1}}]))
                .is_some()
        );
        for target in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "",
            ".",
            "a//b",
            ".persist-txn/commit",
            ".persist-txn.lock",
            "a/./b",
        ] {
            assert!(
                record(json!([{"remove": {"target": target}}])).is_none(),
                "{target:?}"
            );
            assert!(
                record(json!([{"put": {"target": target, "staged": staged, "version": 1}}]))
                    .is_none(),
                "{target:?}"
            );
        }
        for staged in ["../../etc/passwd", "/etc/passwd", "commit", "x"] {
            assert!(
                record(json!([{"put": {"target": "a.json", "staged": staged, "version": 1}}]))
                    .is_none(),
                "{staged:?}"
            );
        }
    }
}
