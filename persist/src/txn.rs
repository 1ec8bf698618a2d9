//! [`Transaction`]: several files under one root replaced all or nothing, across crashes and
//! power cuts (DESIGN.md section 9: a staged directory and a commit record).
//!
//! The sequence (FORMAT.md, section 6):
//! 1. each file is written into `<root>/.persist-txn/` (the staging directory, kept between
//!    transactions) under a name unique to the transaction, its writeback started at once;
//!    the commit syncs them all;
//! 2. `commit` writes and syncs the commit record (`.persist-txn/commit`: the targets and a
//!    CRC-32C of them, so a torn record is recognised), then syncs the staging directory once,
//!    which makes the staged files' and the record's names durable together: **the commit
//!    point**;
//! 3. each staged file is renamed over its target (a backup kept as a save keeps one), each
//!    touched directory synced, then the record removed and the staging directory synced (a
//!    record that came back after a crash would replay its removals over later files).
//!
//! Recovery ([`recover`], and every [`Transaction::new`]) looks at the staging directory: with a
//! valid record it does step 3 again (renaming what is still staged, so running it twice is
//! harmless); with no record, or a torn one, it removes the staged files, and no target was
//! touched.

use std::fs::{self as stdfs, File};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use crate::audit::{self, AuditOp, Written};
use crate::error::IoOp;
use crate::fs::{Durability, create_parents, io_error, parent_dir, sync_dir};
use crate::lock::{self, LockGuard};
use crate::{Error, Options, Persisted, backup};

/// The staging directory's name under the root.
const STAGING: &str = ".persist-txn";

/// The commit record's name in the staging directory.
const RECORD: &str = "commit";

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
}

impl Op {
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

    fn from_json(value: &Value) -> Option<Op> {
        if let Some(put) = value.get("put") {
            return Some(Op::Put {
                target: put.get("target")?.as_str()?.to_owned(),
                staged: put.get("staged")?.as_str()?.to_owned(),
                version: u32::try_from(put.get("version")?.as_u64()?).ok()?,
            });
        }
        let remove = value.get("remove")?;
        Some(Op::Remove {
            target: remove.get("target")?.as_str()?.to_owned(),
        })
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// No transaction was left unfinished.
    Clean,
    /// A committed transaction had not finished putting its files in place; it was finished.
    RolledForward,
    /// A transaction had not reached its commit point; its staged files were removed and no
    /// target was touched.
    Discarded,
}

/// Several files under one root directory, replaced all or nothing.
///
/// Paths are relative to the root (`index/main.json`), never absolute, never leaving it
/// (`..`). Saves are staged (written and synced beside the root's other files, in
/// `.persist-txn/`); nothing under the root changes before [`commit`](Transaction::commit).
/// Dropping an uncommitted transaction removes what it staged. One transaction per root at a
/// time, across processes (the lock file `.persist-txn.lock`).
///
/// After a crash at any moment, the next [`Transaction::new`] (or [`recover`]) on the root
/// leaves either every file of the transaction as it was before or every one as it was
/// committed. A program that reads the files without recovering first may, while a commit is
/// putting its files in place (or after a crash in the middle of that), see some of them new
/// and others old; each file it reads is whole, old or new, never a mix of the two.
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
/// let mut txn = Transaction::new(root)?;
/// txn.save(&Entry { text: "hello".into() }, "entries/1.json")?;
/// txn.save(&Index { entries: vec!["1".into()] }, "index.json")?;
/// txn.commit()?; // both files, or (after a crash) neither
/// assert_eq!(Index::load(root.join("index.json"))?.entries, ["1"]);
/// # Ok::<(), persist::Error>(())
/// ```
#[derive(Debug)]
pub struct Transaction {
    root: PathBuf,
    options: Options,
    ops: Vec<Op>,
    /// Prefix of this transaction's staged files: its start, in nanoseconds since 1970.
    id: u128,
    /// The staged files of the puts in `ops`, open: synced together at the commit; with an
    /// audit log, with their size and CRC-32C.
    files: Vec<(String, File, Option<Written>)>,
    next: u32,
    committed: bool,
    _lock: LockGuard,
}

impl Transaction {
    /// A transaction on the files under `root` (created if missing), with the default
    /// [`Options`]; recovers a transaction a crash left unfinished first.
    ///
    /// # Errors
    ///
    /// See [`Options::transaction`].
    pub fn new(root: impl AsRef<Path>) -> Result<Transaction, Error> {
        Options::new().transaction(root)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn staging(&self) -> PathBuf {
        self.root.join(STAGING)
    }

    /// Stages `value` to be saved at `path` (relative to the root) when the transaction
    /// commits, with the transaction's options (layers, checksum, durability): written now,
    /// synced with the others at the commit. Saving the same path again replaces what was
    /// staged.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for an absolute path or one leaving the root,
    /// [`Error::Serialize`] or [`Error::Seal`] for the value, [`Error::Io`] for the staging.
    /// Nothing under the root changes.
    pub fn save<T: Persisted>(&mut self, value: &T, path: impl AsRef<Path>) -> Result<(), Error> {
        let target = self.relative(path.as_ref())?;
        let destination = self.root.join(&target);
        let bytes = self.options.file_bytes(value, &destination)?;
        let staging = self.staging();
        self.next += 1;
        let staged = format!("{:032x}-{:08}", self.id, self.next);
        let staged_path = staging.join(&staged);
        let mut file =
            File::create_new(&staged_path).map_err(io_error(&destination, IoOp::CreateTemp))?;
        file.write_all(&bytes)
            .map_err(io_error(&destination, IoOp::Write))?;
        // Its writeback starts now; the commit waits for all of them at once.
        crate::fs::start_writeback(&file);
        let written = self.options.audited().then(|| Written::of(&bytes));
        self.files.push((staged.clone(), file, written));
        self.replace(Op::Put {
            target,
            staged,
            version: T::VERSION,
        });
        Ok(())
    }

    /// Stages the removal of the file at `path` (relative to the root; nothing happens if
    /// there is none when the transaction commits).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for an absolute path or one leaving the root.
    pub fn remove(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let target = self.relative(path.as_ref())?;
        self.replace(Op::Remove { target });
        Ok(())
    }

    /// Applies every staged save and removal, all or nothing; returns once they are durable.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the step that failed. A failure before the commit point leaves
    /// every target as it was (and the staging is removed when the transaction drops); after
    /// it, the transaction is committed and the next [`Transaction::new`] or [`recover`] on the
    /// root finishes putting the files in place.
    pub fn commit(mut self) -> Result<(), Error> {
        if self.ops.is_empty() {
            self.committed = true;
            return Ok(());
        }
        let durable = self.options.sync_level() != Durability::None;
        if durable {
            for (staged, file, _) in &self.files {
                file.sync_all()
                    .map_err(io_error(&self.staging().join(staged), IoOp::SyncFile))?;
            }
        }
        // Read before the files are replaced: the versions they held.
        let from_versions: Vec<Option<u64>> = match self.options.audited() {
            true => self
                .ops
                .iter()
                .map(|op| audit::stored_version(&self.root.join(op.target())))
                .collect(),
            false => Vec::new(),
        };
        write_record(&self.staging(), &self.ops, durable)?;
        // The commit point has passed: from here on, a crash rolls forward.
        self.committed = true;
        apply(&self.root, &self.options, &self.ops)?;
        if !self.options.audited() {
            return Ok(());
        }
        let paths: Vec<PathBuf> = self
            .ops
            .iter()
            .map(|op| self.root.join(op.target()))
            .collect();
        let entries: Vec<audit::Entry<'_>> = self
            .ops
            .iter()
            .zip(&paths)
            .zip(from_versions)
            .map(|((op, path), from_version)| {
                let (to_version, written) = match op {
                    Op::Put {
                        staged, version, ..
                    } => (
                        Some(u64::from(*version)),
                        self.files
                            .iter()
                            .find(|(name, _, _)| name == staged)
                            .and_then(|(_, _, written)| *written),
                    ),
                    Op::Remove { .. } => (None, None),
                };
                audit::Entry {
                    operation: AuditOp::Commit,
                    path,
                    key: None,
                    from_version,
                    to_version,
                    written,
                }
            })
            .collect();
        self.options.audit_entries(&entries)
    }

    /// The path relative to the root, as the record stores it.
    fn relative(&self, path: &Path) -> Result<String, Error> {
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
        if parts[0] == STAGING || parts[0] == ".persist-txn.lock" {
            return Err(invalid("the path is the transaction's own"));
        }
        Ok(parts.join("/"))
    }

    /// Stages `op`, replacing an earlier one on the same target.
    fn replace(&mut self, op: Op) {
        if let Some(at) = self.ops.iter().position(|old| old.target() == op.target()) {
            let old = self.ops.remove(at);
            if let Op::Put { staged, .. } = old {
                // Replaced: neither synced at the commit nor put in place.
                self.files.retain(|(name, _, _)| *name != staged);
                let _ = stdfs::remove_file(self.staging().join(staged));
            }
        }
        self.ops.push(op);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.committed {
            // Not committed: nothing under the root was touched; the staged files go.
            for op in &self.ops {
                if let Op::Put { staged, .. } = op {
                    let _ = stdfs::remove_file(self.staging().join(staged));
                }
            }
        }
    }
}

/// Writes the commit record: the operations as JSON, then a line with their CRC-32C (a torn
/// record fails it), synced, then syncs the staging directory, which makes the staged files'
/// names and the record's durable at once.
fn write_record(staging: &Path, ops: &[Op], durable: bool) -> Result<(), Error> {
    let path = staging.join(RECORD);
    let record = json!({"ops": ops.iter().map(Op::to_json).collect::<Vec<_>>()});
    let mut bytes = serde_json::to_vec(&record).map_err(|source| Error::Serialize {
        path: path.clone(),
        field: None,
        source,
    })?;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    let mut file = File::create(&path).map_err(io_error(&path, IoOp::CreateTemp))?;
    file.write_all(&bytes)
        .map_err(io_error(&path, IoOp::Write))?;
    if durable {
        file.sync_all().map_err(io_error(&path, IoOp::SyncFile))?;
        sync_dir(staging).map_err(io_error(&path, IoOp::SyncDir))?;
    }
    Ok(())
}

/// The record in the staging directory, if there is a whole one.
fn read_record(staging: &Path) -> Option<Vec<Op>> {
    let bytes = stdfs::read(staging.join(RECORD)).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
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

/// Puts the staged files in place and removes the removed ones (skipping what an earlier run
/// already did), syncs each touched directory, then removes the record and the staging.
fn apply(root: &Path, options: &Options, ops: &[Op]) -> Result<(), Error> {
    let staging = root.join(STAGING);
    let durability = options.sync_level();
    let mut touched: Vec<PathBuf> = Vec::new();
    for op in ops {
        let target = root.join(op.target());
        match op {
            Op::Put {
                staged, version, ..
            } => {
                let staged = staging.join(staged);
                if !staged.exists() {
                    continue; // put in place by an earlier run
                }
                create_parents(&target, parent_dir(&target))?;
                backup::preserve(
                    &target,
                    &target,
                    u64::from(*version),
                    None,
                    options.backups_kept(),
                    options.max_size_limit(),
                    durability,
                )?;
                stdfs::rename(&staged, &target).map_err(io_error(&target, IoOp::Rename))?;
            }
            Op::Remove { .. } => match stdfs::remove_file(&target) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&target, IoOp::Remove)(error)),
            },
        }
        touched.push(parent_dir(&target).to_owned());
    }
    if durability != Durability::None {
        touched.sort();
        touched.dedup();
        for directory in &touched {
            sync_dir(directory).map_err(io_error(directory, IoOp::SyncDir))?;
        }
    }
    remove_record(&staging, durability)
}

/// Removes the commit record, durably: a record that came back after a crash would replay its
/// removals over files written since.
fn remove_record(staging: &Path, durability: Durability) -> Result<(), Error> {
    let path = staging.join(RECORD);
    match stdfs::remove_file(&path) {
        Ok(()) if durability != Durability::None => {
            sync_dir(staging).map_err(io_error(&path, IoOp::SyncDir))
        }
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(&path, IoOp::Remove)(error)),
    }
}

/// Removes every staged file of transactions that did not commit (no target was touched).
fn discard_staged(staging: &Path) -> Result<bool, Error> {
    let entries = match stdfs::read_dir(staging) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io_error(staging, IoOp::Read)(error)),
    };
    let mut discarded = false;
    for entry in entries {
        let entry = entry.map_err(io_error(staging, IoOp::Read))?;
        let path = entry.path();
        stdfs::remove_file(&path).map_err(io_error(&path, IoOp::Remove))?;
        discarded = true;
    }
    Ok(discarded)
}

/// Finishes or discards a transaction a crash left unfinished under `root` (see
/// [`Transaction`]), with the default [`Options`]; [`Transaction::new`] does it too.
///
/// # Errors
///
/// [`Error::LockTimeout`] while another process holds the root's transaction lock, and
/// [`Error::Io`] naming the step that failed (running it again continues).
pub fn recover(root: impl AsRef<Path>) -> Result<Recovery, Error> {
    let options = Options::new();
    let root = root.as_ref();
    let _lock = lock_root(root, &options)?;
    recover_locked(root, &options)
}

/// The lock of transactions on `root`: the file `<root>/.persist-txn.lock`.
fn lock_root(root: &Path, options: &Options) -> Result<LockGuard, Error> {
    let lock_path = root.join(format!("{STAGING}.lock"));
    lock::exclusive_file(&root.join(STAGING), lock_path, options.lock_wait())
}

fn recover_locked(root: &Path, options: &Options) -> Result<Recovery, Error> {
    let staging = root.join(STAGING);
    if let Some(ops) = read_record(&staging) {
        apply(root, options, &ops)?;
        return Ok(Recovery::RolledForward);
    }
    // No record, or a torn one: the transaction never reached its commit point.
    let _ = stdfs::remove_file(staging.join(RECORD));
    if discard_staged(&staging)? {
        Ok(Recovery::Discarded)
    } else {
        Ok(Recovery::Clean)
    }
}

impl Options {
    /// A [`Transaction`] on the files under `root` (created if missing) with these options
    /// (layers, checksum, durability, backups, lock timeout); recovers a transaction a crash
    /// left unfinished first.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the root cannot be created, [`Error::LockTimeout`] while another
    /// transaction on the root holds its lock longer than the lock timeout, and the errors of
    /// [`recover`].
    pub fn transaction(&self, root: impl AsRef<Path>) -> Result<Transaction, Error> {
        let root = root.as_ref().to_owned();
        stdfs::create_dir_all(&root).map_err(io_error(&root, IoOp::CreateDir))?;
        let lock = lock_root(&root, self)?;
        recover_locked(&root, self)?;
        let staging = root.join(STAGING);
        create_parents(&staging, &staging)?;
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Ok(Transaction {
            root,
            options: self.clone(),
            ops: Vec::new(),
            id,
            files: Vec::new(),
            next: 0,
            committed: false,
            _lock: lock,
        })
    }
}
