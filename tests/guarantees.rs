//! The guarantee matrix: every promise a save makes, checked on every path that writes a state
//! file. A guarantee is a property of persist, not of one function: each check below runs
//! through each way persist puts bytes on disk (a plain save, an update, `Live` with either
//! policy, a collection's put and batch on the local directory, a transaction's commit, a
//! journal's creation and checkpoint, a restore, a save at an older version through the
//! downgrade steps, and, with the `redb` feature, a collection's put on redb, whose database
//! file is the target), and each way is one entry of [`Way`].
//!
//! Checks that need root (a full disk on a loop-mounted ext4, a device node, a bind mount) say
//! SKIPPED elsewhere and must run under CI.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use persist::{
    Collection, Durability, Error, FileRole, IoOp, Journal, Options, Persisted, SavePolicy,
    Transaction,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct DocV1 {
    n: u64,
    #[serde(default)]
    filler: String,
}

/// The value every way writes: a number, and a filler to make a write large.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = DocV1, downgrade)]
struct Doc {
    n: u64,
    filler: String,
}

impl From<DocV1> for Doc {
    fn from(old: DocV1) -> Self {
        Doc {
            n: old.n,
            filler: old.filler,
        }
    }
}

impl From<Doc> for DocV1 {
    fn from(new: Doc) -> Self {
        DocV1 {
            n: new.n,
            filler: new.filler,
        }
    }
}

fn doc(n: u64) -> Doc {
    Doc {
        n,
        filler: String::new(),
    }
}

/// A way persist writes a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Save,
    Update,
    LiveImmediate,
    LiveCoalesce,
    Put,
    PutMany,
    Commit,
    JournalCreate,
    Checkpoint,
    Restore,
    SaveAsVersion,
    /// A collection's put on redb (the database file is the target).
    Redb,
}

const WAYS: &[Way] = &[
    Way::Save,
    Way::Update,
    Way::LiveImmediate,
    Way::LiveCoalesce,
    Way::Put,
    Way::PutMany,
    Way::Commit,
    Way::JournalCreate,
    Way::Checkpoint,
    Way::Restore,
    Way::SaveAsVersion,
    #[cfg(feature = "redb")]
    Way::Redb,
];

/// The collection's directory and the one key the collection ways write.
const COLLECTION: &str = "c";
const KEY: &str = "k";
/// The database file of the redb way.
const REDB: &str = "c.redb";

/// The redb way's collection in `dir`, opened with `options`.
#[cfg(feature = "redb")]
fn redb(options: &Options, dir: &Path) -> Result<Collection<Doc>, Error> {
    options.redb(dir.join(REDB))
}

#[cfg(not(feature = "redb"))]
fn redb(_: &Options, _: &Path) -> Result<Collection<Doc>, Error> {
    unreachable!("the redb way is listed with the `redb` feature only")
}

impl Way {
    /// Whether the way writes a value that can be read back (a journal's creation writes an
    /// empty journal).
    fn holds_value(self) -> bool {
        self != Way::JournalCreate
    }

    /// The file this way writes (replaces or creates) in `dir`.
    fn target(self, dir: &Path) -> PathBuf {
        match self {
            Way::Put | Way::PutMany => {
                let collection: Collection<Doc> = Collection::open(dir.join(COLLECTION)).unwrap();
                collection.backend().locate(KEY)
            }
            Way::JournalCreate | Way::Checkpoint => dir.join("events.log"),
            Way::Redb => dir.join(REDB),
            _ => dir.join("doc.json"),
        }
    }

    /// Puts a first value in place (`n`), so that the next write replaces a file.
    fn prepare(self, dir: &Path, n: u64) {
        match self {
            Way::JournalCreate => {}
            Way::Restore => {
                doc(n).save(dir.join("doc.json")).unwrap();
            }
            _ => self.write(dir, n).unwrap(),
        }
    }

    /// Writes `n` the way this way does.
    fn write(self, dir: &Path, n: u64) -> Result<(), Error> {
        self.write_with(&Options::new(), dir, n)
    }

    fn write_with(self, options: &Options, dir: &Path, n: u64) -> Result<(), Error> {
        let path = dir.join("doc.json");
        match self {
            Way::Save => options.save(&doc(n), &path),
            Way::Update => options
                .update(&path, |value: &mut Doc| *value = doc(n))
                .map(drop),
            Way::LiveImmediate => {
                let live = options
                    .clone()
                    .save_policy(SavePolicy::Immediate)
                    .watch(false)
                    .live::<Doc>(&path)?;
                live.update(move |value| *value = doc(n)).map(drop)
            }
            Way::LiveCoalesce => {
                let live = options
                    .clone()
                    .save_policy(SavePolicy::Coalesce {
                        debounce: Duration::from_secs(60),
                        max_wait: Duration::from_secs(60),
                    })
                    .watch(false)
                    .live::<Doc>(&path)?;
                live.update(move |value| *value = doc(n))?;
                live.flush()
            }
            Way::Put => options
                .collection::<Doc>(dir.join(COLLECTION))?
                .put(KEY, &doc(n)),
            Way::PutMany => {
                let value = doc(n);
                options
                    .collection::<Doc>(dir.join(COLLECTION))?
                    .put_many([(KEY, &value)])
            }
            Way::Commit => {
                let mut txn = options.transaction(dir)?;
                txn.save(&doc(n), "doc.json")?;
                txn.commit()
            }
            Way::JournalCreate => options
                .journal::<Doc, Doc>(dir.join("events.log"))
                .map(drop),
            Way::Checkpoint => {
                let journal = options.journal::<Doc, _>(dir.join("events.log"))?;
                journal.append(&doc(n))?;
                journal.checkpoint(&doc(n))
            }
            Way::Restore => {
                // The value to restore, as a backup of version 1 of the file.
                fs::write(
                    dir.join("doc.json.v1.bak"),
                    format!(r#"{{"version":1,"data":{{"n":{n}}}}}"#),
                )
                .unwrap();
                options.restore_backup(&path, 1)
            }
            Way::SaveAsVersion => options.clone().save_as_version(1).save(&doc(n), &path),
            Way::Redb => redb(options, dir)?.put(KEY, &doc(n)),
        }
    }

    /// The value now at the target, as this way reads it.
    fn read(self, dir: &Path) -> Option<u64> {
        match self {
            Way::Put | Way::PutMany => Collection::<Doc>::open(dir.join(COLLECTION))
                .unwrap()
                .get(KEY)
                .unwrap()
                .map(|doc| doc.n),
            Way::JournalCreate => None,
            Way::Redb => redb(&Options::new(), dir)
                .unwrap()
                .get(KEY)
                .unwrap()
                .map(|doc| doc.n),
            Way::Checkpoint => {
                let journal = Journal::<Doc, Doc>::open(dir.join("events.log")).unwrap();
                let (snapshot, _) = journal.recover().unwrap();
                snapshot.map(|doc| doc.n)
            }
            _ => Doc::load(dir.join("doc.json")).ok().map(|doc| doc.n),
        }
    }
}

/// Every test of this binary runs under umask 022 (the umask is per process).
fn umask_022() {
    static SET: Once = Once::new();
    // SAFETY: umask has no preconditions.
    SET.call_once(|| unsafe {
        libc::umask(0o022);
    });
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every entry under `dir` (not following links), with its kind.
fn walk(dir: &Path) -> Vec<(PathBuf, fs::FileType)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            }
            found.push((entry.path(), kind));
        }
    }
    found
}

/// The temporary and staged files under `dir`: what a failed write must not leave.
fn strays(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|(path, kind)| {
            kind.is_file()
                && matches!(
                    persist::file_role(path),
                    FileRole::Temporary | FileRole::Transaction
                )
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn new_files_and_directories_are_private() {
    umask_022();
    for way in WAYS.iter().copied() {
        let dir = tempfile::tempdir().unwrap();
        way.write(dir.path(), 1).unwrap();
        assert_eq!(mode(&way.target(dir.path())), 0o600, "{way:?}");
        for (path, kind) in walk(dir.path()) {
            let expected = if kind.is_dir() { 0o700 } else { 0o600 };
            if path.ends_with("doc.json.v1.bak") {
                continue; // written by the test itself
            }
            assert_eq!(mode(&path), expected, "{way:?}: {}", path.display());
        }
    }
}

#[test]
fn a_replaced_file_keeps_its_mode() {
    umask_022();
    for way in WAYS
        .iter()
        .copied()
        .filter(|way| *way != Way::JournalCreate)
    {
        let dir = tempfile::tempdir().unwrap();
        way.prepare(dir.path(), 1);
        let target = way.target(dir.path());
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        way.write(dir.path(), 2).unwrap();
        assert_eq!(mode(&target), 0o640, "{way:?}");
        assert_eq!(way.read(dir.path()), Some(2), "{way:?}");
    }
}

#[test]
fn a_symlink_at_the_target_is_written_through() {
    umask_022();
    // Collection entries are persist's own names: a link there is refused, never followed
    // (`planted_links_are_never_followed`). A journal is created through a link like a plain
    // save is: only to an existing file.
    let ways = WAYS
        .iter()
        .copied()
        .filter(|way| !matches!(way, Way::Put | Way::PutMany | Way::JournalCreate));
    for way in ways {
        let dir = tempfile::tempdir().unwrap();
        // The real file in a subdirectory (under the root, for a transaction).
        let real_dir = dir.path().join("real");
        way.prepare(&real_dir_or_create(&real_dir), 1);
        let name = way.target(dir.path()).file_name().unwrap().to_owned();
        std::os::unix::fs::symlink(real_dir.join(&name), dir.path().join(&name)).unwrap();
        if way == Way::Restore {
            // A backup is kept beside the file the link points to.
            fs::write(
                real_dir.join("doc.json.v1.bak"),
                r#"{"version":1,"data":{"n":2}}"#,
            )
            .unwrap();
            persist::Options::new()
                .restore_backup(dir.path().join("doc.json"), 1)
                .unwrap();
        } else {
            way.write(dir.path(), 2).unwrap();
        }
        let link = fs::symlink_metadata(dir.path().join(&name)).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "{way:?}: the link stays a link"
        );
        assert_eq!(way.read(&real_dir), Some(2), "{way:?}");
    }
}

fn real_dir_or_create(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    dir.to_owned()
}

/// Runs `write` on another thread and returns its result, or panics if it takes more than a
/// second (a FIFO opened without `O_NONBLOCK` blocks forever).
fn within_a_second(
    write: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(write());
    });
    receiver
        .recv_timeout(Duration::from_secs(1))
        .expect("the write blocked on something that is not a regular file")
}

#[test]
fn a_fifo_directory_or_device_at_the_target_is_refused_untouched() {
    umask_022();
    let device = common::is_root();
    for way in WAYS.iter().copied() {
        for kind in ["fifo", "directory", "device"] {
            if kind == "device" && !device {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let target = way.target(dir.path());
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            if way == Way::Restore {
                fs::write(
                    dir.path().join("doc.json.v1.bak"),
                    r#"{"version":1,"data":{"n":2}}"#,
                )
                .unwrap();
            }
            let c_path = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
            match kind {
                "fifo" => {
                    // SAFETY: a valid C string.
                    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
                }
                "directory" => fs::create_dir(&target).unwrap(),
                _ => {
                    // /dev/null's device numbers (1, 3).
                    let dev = libc::makedev(1, 3);
                    // SAFETY: a valid C string.
                    assert_eq!(
                        unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o600, dev) },
                        0
                    );
                }
            }
            let root = dir.path().to_owned();
            let error = within_a_second(move || way.write(&root, 2))
                .expect_err(&format!("{way:?} over a {kind}"));
            assert!(
                matches!(error, Error::NotRegularFile { .. }),
                "{way:?} over a {kind}: {error}"
            );
            let now = fs::symlink_metadata(&target).unwrap().file_type();
            let untouched = match kind {
                "fifo" => now.is_fifo(),
                "directory" => now.is_dir() && fs::read_dir(&target).unwrap().next().is_none(),
                _ => now.is_char_device(),
            };
            assert!(untouched, "{way:?}: the {kind} was touched");
            assert!(
                strays(dir.path()).is_empty(),
                "{way:?}: {:?}",
                strays(dir.path())
            );
        }
    }
    if !device {
        common::needs("root (to make a device node)", false);
    }
}

#[test]
fn a_full_disk_leaves_the_old_content_and_a_typed_error() {
    umask_022();
    let scratch = tempfile::tempdir().unwrap();
    let point = scratch.path().join("small");
    let Some(_mounted) = common::small_ext4(scratch.path(), &point, 4096) else {
        return;
    };
    for way in WAYS.iter().copied().filter(|way| way.holds_value()) {
        let dir = point.join(format!("{way:?}"));
        fs::create_dir(&dir).unwrap();
        way.prepare(&dir, 1);
        let big = Doc {
            n: 2,
            filler: "y".repeat(256 << 10),
        };
        if way == Way::Restore {
            // The backup to restore is there before the disk fills up.
            Options::new()
                .backups(0)
                .save(&big, dir.join("doc.json.v2.bak"))
                .unwrap();
        }
        // Fill the file system, then write a value larger than what is left.
        let filler = dir.join("filler");
        let mut file = fs::File::create(&filler).unwrap();
        let block = vec![b'x'; 4096];
        while std::io::Write::write_all(&mut file, &block).is_ok() {}
        drop(file);
        let error = big_write(way, &dir, &big).expect_err(&format!("{way:?} on a full disk"));
        let enospc = match &error {
            Error::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            Error::Audit { .. } => false,
            _ => false,
        };
        assert!(enospc, "{way:?}: {error}");
        fs::remove_file(&filler).unwrap();
        assert_eq!(way.read(&dir), Some(1), "{way:?}: the old content");
        assert!(
            strays(&dir).is_empty() || way == Way::Commit,
            "{way:?}: {:?}",
            strays(&dir)
        );
        // Room again: the next write goes through (a transaction first recovers).
        way.write(&dir, 3).unwrap();
        assert_eq!(way.read(&dir), Some(3), "{way:?}");
        assert!(strays(&dir).is_empty(), "{way:?}: {:?}", strays(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A write of `value` (a large one) the way `way` writes.
fn big_write(way: Way, dir: &Path, value: &Doc) -> Result<(), Error> {
    let path = dir.join("doc.json");
    match way {
        Way::Save => value.save(&path),
        Way::Update => Options::new()
            .update(&path, |doc: &mut Doc| *doc = value.clone())
            .map(drop),
        Way::LiveImmediate | Way::LiveCoalesce => {
            let policy = match way {
                Way::LiveImmediate => SavePolicy::Immediate,
                _ => SavePolicy::Coalesce {
                    debounce: Duration::from_secs(60),
                    max_wait: Duration::from_secs(60),
                },
            };
            let live = Options::new()
                .save_policy(policy)
                .watch(false)
                .live::<Doc>(&path)?;
            let value = value.clone();
            let result = live
                .update(move |doc| *doc = value.clone())
                .and_then(|_| live.flush());
            // A value that could not be saved is not kept beside the file on a full disk
            // either: nothing to clean up but what the drop tries.
            drop(live);
            result
        }
        Way::Put => Collection::open(dir.join(COLLECTION))?.put(KEY, value),
        Way::PutMany => Collection::open(dir.join(COLLECTION))?.put_many([(KEY, value)]),
        Way::Commit => {
            let mut txn = Transaction::open(dir)?;
            txn.save(value, "doc.json")?;
            txn.commit()
        }
        Way::Checkpoint => {
            let journal = Journal::<Doc, Doc>::open(dir.join("events.log"))?;
            journal.checkpoint(value)
        }
        Way::Restore => {
            let _ = value;
            Options::new().restore_backup(&path, 2)
        }
        Way::SaveAsVersion => Options::new().save_as_version(1).save(value, &path),
        Way::Redb => redb(&Options::new(), dir)?.put(KEY, value),
        Way::JournalCreate => unreachable!(),
    }
}

/// The steps of a write, each of which the fault seam can make fail.
const STEPS: [IoOp; 12] = [
    IoOp::Metadata,
    IoOp::Open,
    IoOp::Read,
    IoOp::CreateDir,
    IoOp::CreateTemp,
    IoOp::Write,
    IoOp::SetPermissions,
    IoOp::SyncFile,
    IoOp::Rename,
    IoOp::SyncDir,
    IoOp::OpenLock,
    IoOp::Lock,
];

#[test]
fn a_fault_at_any_step_leaves_the_old_content_and_no_stray_file() {
    umask_022();
    for way in WAYS.iter().copied() {
        for step in STEPS {
            let dir = tempfile::tempdir().unwrap();
            way.prepare(dir.path(), 1);
            let fault = persist::testing::inject_fault(dir.path(), step, libc::EIO, 1);
            let result = way.write(dir.path(), 2);
            let hit = fault.hits() > 0;
            drop(fault);
            match result {
                // Not every way takes every step (or a step's failure is only a lost head start).
                Ok(()) => {
                    if way.holds_value() {
                        assert_eq!(way.read(dir.path()), Some(2), "{way:?} {step:?}");
                    }
                }
                Err(error) => {
                    assert!(hit, "{way:?} {step:?}: failed without the fault: {error}");
                    let now = way.read(dir.path());
                    // The old content; the new one only once the rename is done (a directory
                    // sync that failed after it), or once a coalesced value was saved again
                    // when its handle closed.
                    // A checkpoint whose snapshot is saved holds the new value whatever fails
                    // after it: the snapshot is what `recover` returns.
                    let allowed: &[Option<u64>] = match (step, way) {
                        (_, Way::JournalCreate) => &[None],
                        (IoOp::SyncDir, _) | (_, Way::LiveCoalesce | Way::Checkpoint) => {
                            &[Some(1), Some(2)]
                        }
                        _ => &[Some(1)],
                    };
                    assert!(
                        allowed.contains(&now),
                        "{way:?} {step:?}: {now:?} after {error}"
                    );
                    // Temporary files are gone at once; a transaction past its commit point
                    // leaves its staged files for recovery, which the next one runs.
                    if way != Way::Commit {
                        assert!(
                            strays(dir.path()).is_empty(),
                            "{way:?} {step:?}: {:?}",
                            strays(dir.path())
                        );
                    }
                }
            }
            // The next write goes through and leaves nothing behind.
            way.write(dir.path(), 3).unwrap();
            if way.holds_value() {
                assert_eq!(way.read(dir.path()), Some(3), "{way:?} {step:?}");
            }
            assert!(
                strays(dir.path()).is_empty(),
                "{way:?} {step:?}: {:?}",
                strays(dir.path())
            );
        }
    }
}

#[test]
fn a_write_never_lands_inside_a_concurrent_update() {
    umask_022();
    // A plain save (at its version or an older one) takes no lock (documented: mixing it with
    // updates can lose them), and a journal has one writer; every other way takes the file's
    // lock.
    let ways = WAYS.iter().copied().filter(|way| {
        !matches!(
            way,
            Way::Save | Way::SaveAsVersion | Way::JournalCreate | Way::Checkpoint
        )
    });
    for way in ways {
        let dir = tempfile::tempdir().unwrap();
        way.prepare(dir.path(), 1);
        let root = dir.path().to_owned();
        let (loaded, wait) = std::sync::mpsc::channel();
        // An update that loads, then takes its time before it saves 100.
        let updater = std::thread::spawn(move || match way {
            Way::Put | Way::PutMany | Way::Redb => {
                let collection: Collection<Doc> = match way {
                    Way::Redb => redb(&Options::new(), &root).unwrap(),
                    _ => Collection::open(root.join(COLLECTION)).unwrap(),
                };
                collection
                    .update(KEY, |doc| {
                        let _ = loaded.send(());
                        std::thread::sleep(Duration::from_millis(300));
                        *doc = self::doc(100);
                    })
                    .unwrap();
            }
            _ => {
                Options::new()
                    .update(root.join("doc.json"), |doc: &mut Doc| {
                        let _ = loaded.send(());
                        std::thread::sleep(Duration::from_millis(300));
                        *doc = self::doc(100);
                    })
                    .unwrap();
            }
        });
        wait.recv().unwrap();
        let started = Instant::now();
        way.write(dir.path(), 7).unwrap();
        updater.join().unwrap();
        // The write waited for the update's save: it comes after it, and nothing overwrote it
        // with a value loaded before it.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{way:?} did not wait"
        );
        assert_eq!(way.read(dir.path()), Some(7), "{way:?}: the write was lost");
    }
}

/// Files outside the root that a planted link or mount points to: they must stay as they are.
struct Outside {
    _dir: tempfile::TempDir,
    root: PathBuf,
    listing: Vec<(PathBuf, Vec<u8>)>,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::write(
            root.join("precious.json"),
            br#"{"version":2,"data":{"n":42,"filler":""}}"#,
        )
        .unwrap();
        fs::write(root.join("k"), b"precious").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub").join("x.json"), b"precious").unwrap();
        let listing = common::listing(&root);
        Outside {
            _dir: dir,
            root,
            listing,
        }
    }

    fn untouched(&self, what: &str) {
        assert_eq!(
            common::listing(&self.root),
            self.listing,
            "{what}: outside changed"
        );
    }
}

/// A shard's name for `KEY` in a collection directory.
fn shard_of_key(collection: &Path) -> PathBuf {
    let located: Collection<Doc> = Collection::open(collection).unwrap();
    located.backend().locate(KEY).parent().unwrap().to_owned()
}

#[test]
fn planted_links_are_never_followed_out_of_the_root() {
    umask_022();
    // The staging directory of transactions.
    let outside = Outside::new();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&outside.root, dir.path().join(".persist-txn")).unwrap();
    let error = Transaction::open(dir.path()).unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    assert!(matches!(
        persist::Transaction::recover(dir.path()),
        Err(Error::InvalidPath { .. })
    ));
    outside.untouched(".persist-txn");

    // A directory on the way to a transaction's target.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.root.join("sub"), dir.path().join("sub")).unwrap();
    let mut txn = Transaction::open(dir.path()).unwrap();
    let error = txn.save(&doc(1), "sub/x.json").unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    assert!(matches!(
        txn.remove("sub/x.json"),
        Err(Error::InvalidPath { .. })
    ));
    // A link at a target pointing out of the root.
    std::os::unix::fs::symlink(
        outside.root.join("precious.json"),
        dir.path().join("out.json"),
    )
    .unwrap();
    let error = txn.save(&doc(1), "out.json").unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    txn.commit().unwrap();
    outside.untouched("transaction targets");

    // A collection's shard.
    let dir = tempfile::tempdir().unwrap();
    let collection_dir = dir.path().join(COLLECTION);
    let shard = shard_of_key(&collection_dir);
    std::os::unix::fs::symlink(&outside.root, &shard).unwrap();
    let collection: Collection<Doc> = Collection::open(&collection_dir).unwrap();
    assert!(collection.put(KEY, &doc(1)).is_err());
    assert!(collection.put_many([(KEY, &doc(1))]).is_err());
    assert!(collection.get(KEY).is_err());
    assert!(collection.delete(KEY).is_err() || !outside.root.join("k").exists());
    assert_eq!(
        collection.keys().unwrap().sorted().unwrap(),
        Vec::<String>::new()
    );
    collection.clear().unwrap();
    assert!(
        fs::symlink_metadata(&shard).is_err(),
        "the link is removed, as a link"
    );
    outside.untouched("shard");

    // A collection's entry.
    let dir = tempfile::tempdir().unwrap();
    let collection_dir = dir.path().join(COLLECTION);
    let collection: Collection<Doc> = Collection::open(&collection_dir).unwrap();
    collection.put("other", &doc(0)).unwrap();
    let entry = collection.backend().locate(KEY);
    fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(outside.root.join("precious.json"), &entry).unwrap();
    assert!(collection.get(KEY).is_err());
    assert!(collection.put(KEY, &doc(1)).is_err());
    assert!(collection.put_many([(KEY, &doc(1))]).is_err());
    assert_eq!(collection.keys().unwrap().sorted().unwrap(), ["other"]);
    outside.untouched("entry");

    // A lock file.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.root.join("k"), dir.path().join("doc.json.lock")).unwrap();
    let error = Options::new()
        .update(dir.path().join("doc.json"), |doc: &mut Doc| doc.n += 1)
        .unwrap_err();
    assert!(matches!(error, Error::NotRegularFile { .. }), "{error}");
    outside.untouched("lock");

    // A journal's next snapshot.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::<Doc, Doc>::open(dir.path().join("events.log")).unwrap();
    journal.append(&doc(1)).unwrap();
    std::os::unix::fs::symlink(
        outside.root.join("precious.json"),
        dir.path().join("events.log.snapshot.1"),
    )
    .unwrap();
    let error = journal.checkpoint(&doc(1)).unwrap_err();
    assert!(matches!(error, Error::NotRegularFile { .. }), "{error}");
    // A link at a snapshot's name is never read either, nor one claiming more records than
    // the log has.
    std::os::unix::fs::symlink(
        outside.root.join("precious.json"),
        dir.path().join("events.log.snapshot.0"),
    )
    .unwrap();
    fs::write(
        dir.path().join("events.log.snapshot.999"),
        br#"{"version":2,"data":{"n":666,"filler":""}}"#,
    )
    .unwrap();
    let (snapshot, tail) = journal.recover().unwrap();
    assert_eq!(snapshot, None);
    assert_eq!(tail.count(), 1, "the record is replayed, not skipped");
    outside.untouched("snapshot");

    // A backup's name.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("doc.json"),
        r#"{"version":1,"data":{"n":1}}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.root.join("k"), dir.path().join("doc.json.v1.bak")).unwrap();
    assert!(doc(2).save(dir.path().join("doc.json")).is_err());
    outside.untouched("backup");

    // A directory being removed.
    let dir = tempfile::tempdir().unwrap();
    let doomed = dir.path().join("doomed");
    fs::create_dir(&doomed).unwrap();
    std::os::unix::fs::symlink(&outside.root, doomed.join("link")).unwrap();
    Options::new().remove_dir(&doomed).unwrap();
    assert!(!doomed.exists());
    outside.untouched("remove_dir");
}

#[test]
fn planted_mounts_are_never_crossed() {
    umask_022();
    let outside = Outside::new();
    // A mount where a collection's shard goes.
    let dir = tempfile::tempdir().unwrap();
    let collection_dir = dir.path().join(COLLECTION);
    let shard = shard_of_key(&collection_dir);
    let Some(mounted) = common::bind_mount(&outside.root, &shard) else {
        return;
    };
    let collection: Collection<Doc> = Collection::open(&collection_dir).unwrap();
    assert!(matches!(
        collection.put(KEY, &doc(1)),
        Err(Error::InvalidPath { .. })
    ));
    assert!(collection.get(KEY).is_err());
    assert_eq!(
        collection.keys().unwrap().sorted().unwrap(),
        Vec::<String>::new()
    );
    assert!(collection.clear().is_err());
    drop(mounted);
    outside.untouched("mounted shard");

    // A mount as a collection's entry (a file bind-mounted over it).
    let dir = tempfile::tempdir().unwrap();
    let collection_dir = dir.path().join(COLLECTION);
    let collection: Collection<Doc> = Collection::open(&collection_dir).unwrap();
    collection.put(KEY, &doc(1)).unwrap();
    let entry = collection.backend().locate(KEY);
    let mounted = common::bind_mount(&outside.root.join("precious.json"), &entry).unwrap();
    assert!(collection.get(KEY).is_err(), "a mounted entry is not read");
    assert!(collection.put(KEY, &doc(2)).is_err());
    drop(mounted);
    outside.untouched("mounted entry");

    // A mount as a transaction's staging directory.
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(".persist-txn");
    let mounted = common::bind_mount(&outside.root, &staging).unwrap();
    assert!(matches!(
        Transaction::open(dir.path()),
        Err(Error::InvalidPath { .. })
    ));
    drop(mounted);
    outside.untouched("mounted staging");

    // A directory being removed that is itself a mount point.
    let dir = tempfile::tempdir().unwrap();
    let doomed = dir.path().join("mounted");
    let mounted = common::bind_mount(&outside.root, &doomed).unwrap();
    assert!(matches!(
        Options::new().remove_dir(&doomed),
        Err(Error::InvalidPath { .. })
    ));
    drop(mounted);
    outside.untouched("remove_dir of a mount point");

    // A journal's snapshot bind-mounted from elsewhere is never read.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::<Doc, Doc>::open(dir.path().join("events.log")).unwrap();
    journal.append(&doc(1)).unwrap();
    journal.checkpoint(&doc(1)).unwrap();
    let planted = dir.path().join("events.log.snapshot.1");
    fs::remove_file(&planted).unwrap();
    let mounted = common::bind_mount(&outside.root.join("precious.json"), &planted).unwrap();
    // Not read: without it the records the real one covered are missing, which is said.
    let error = journal.recover().unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    drop(mounted);
    outside.untouched("mounted snapshot");

    // A mount inside a directory being removed.
    let dir = tempfile::tempdir().unwrap();
    let doomed = dir.path().join("doomed");
    fs::create_dir_all(doomed.join("inner")).unwrap();
    let mounted = common::bind_mount(&outside.root, &doomed.join("inner")).unwrap();
    assert!(Options::new().remove_dir(&doomed).is_err());
    drop(mounted);
    outside.untouched("mounted inside remove_dir");
}

#[test]
fn a_crafted_commit_record_is_never_applied() {
    umask_022();
    let outside = Outside::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    Transaction::open(&root).unwrap();
    let staging = root.join(".persist-txn");
    let staged = format!("{:032x}-{:08}", 7u128, 1);
    fs::write(
        staging.join(&staged),
        br#"{"version":2,"data":{"n":666,"filler":""}}"#,
    )
    .unwrap();
    let outside_file = outside.root.join("precious.json");
    let relative_out = format!(
        "../../{}/precious.json",
        outside.root.file_name().unwrap().to_str().unwrap()
    );
    for ops in [
        serde_json::json!([{"remove": {"target": outside_file.to_str().unwrap()}}]),
        serde_json::json!([{"remove": {"target": relative_out}}]),
        serde_json::json!([{"put": {"target": relative_out, "staged": staged, "version": 2}}]),
        serde_json::json!([{"put": {"target": "a.json", "staged": "../../x", "version": 2}}]),
        serde_json::json!([{"put": {"target": ".persist-txn/commit", "staged": staged, "version": 2}}]),
    ] {
        let json = serde_json::to_vec(&serde_json::json!({ "ops": ops })).unwrap();
        let crc = crc32c::crc32c(&json);
        let mut record = json;
        record.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
        fs::write(staging.join("commit"), &record).unwrap();
        fs::write(
            staging.join(&staged),
            br#"{"version":2,"data":{"n":666,"filler":""}}"#,
        )
        .unwrap();
        let recovery = persist::Transaction::recover(&root).unwrap();
        assert_eq!(recovery, persist::Recovery::Discarded, "{ops}");
        outside.untouched(&ops.to_string());
        assert!(!root.join("a.json").exists());
        assert_eq!(common::names(&staging), Vec::<String>::new(), "{ops}");
    }
}

#[test]
fn durability_levels_hold_on_every_way() {
    // Every way writes with each level (the syncs skipped or not, never the atomic rename).
    umask_022();
    for durability in [Durability::Full, Durability::FileSync, Durability::None] {
        let options = Options::new().durability(durability);
        for way in WAYS.iter().copied() {
            let dir = tempfile::tempdir().unwrap();
            way.write_with(&options, dir.path(), 1).unwrap();
            way.write_with(&options, dir.path(), 2).unwrap();
            if way.holds_value() {
                assert_eq!(way.read(dir.path()), Some(2), "{way:?} {durability:?}");
            }
            assert!(strays(dir.path()).is_empty(), "{way:?} {durability:?}");
        }
    }
}

const BATCH_CHILD: &str = "PERSIST_TEST_BATCH_DIR";

/// How many files the batch tests write: far more than the descriptors a process may hold.
const BATCH: usize = 100_000;

/// The child of `batches_of_any_size_fit_in_a_small_descriptor_limit`: under `ulimit -n 1024`,
/// a collection batch and a transaction of [`BATCH`] files each.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn batch_child() {
    let Ok(dir) = std::env::var(BATCH_CHILD) else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let dir = Path::new(&dir);
    let values: Vec<(String, Doc)> = (0..BATCH as u64)
        .map(|n| (format!("key-{n}"), doc(n)))
        .collect();
    let collection: Collection<Doc> = Collection::open(dir.join("c")).unwrap();
    collection
        .put_many(values.iter().map(|(key, value)| (key.as_str(), value)))
        .unwrap();
    assert_eq!(collection.get("key-99999").unwrap(), Some(doc(99_999)));
    let mut txn = Transaction::open(dir.join("t")).unwrap();
    for (key, value) in &values {
        txn.save(value, format!("{key}.json")).unwrap();
    }
    txn.commit().unwrap();
    assert_eq!(
        Doc::load(dir.join("t").join("key-99999.json")).unwrap(),
        doc(99_999)
    );
    println!("done");
}

#[test]
fn batches_of_any_size_fit_in_a_small_descriptor_limit() {
    // tmpfs, where a sync is free: the test is about descriptors, not the disk.
    let shm = Path::new("/dev/shm");
    let dir = match shm.is_dir() {
        true => tempfile::tempdir_in(shm).unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let output = common::child("batch_child", &[(BATCH_CHILD, dir.path())])
        .output()
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("done"),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
