//! Real file-system failures, each a typed error with the old file byte-identical and no
//! temporary file left: a full disk (a small tmpfs), a read-only mount (a read-only bind
//! mount), and permission denied (an unprivileged file-system identity). The failures of each
//! single step (write, fsync, rename, directory fsync) are injected in `persist/src/fs.rs`'s
//! unit tests.
//!
//! Mounting and changing identity need root: elsewhere each test says it is skipped and passes.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{AppState, listing, sample};
use persist::{Error, IoOp, Persisted};

fn is_root() -> bool {
    common::needs("root (to mount small file systems)", common::is_root())
}

fn run(command: &str, args: &[&str]) {
    let status = Command::new(command).args(args).status().unwrap();
    assert!(status.success(), "{command} {args:?} failed");
}

/// A mount that is undone when dropped, even if the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn io_kind(error: &Error) -> (IoOp, ErrorKind, Option<i32>) {
    match error {
        Error::Io { op, source, .. } => (*op, source.kind(), source.raw_os_error()),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn a_full_disk_keeps_the_old_file() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("small");
    fs::create_dir(&point).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            point.to_str().unwrap(),
        ],
    );
    let _mounted = Mounted(point.clone());

    let path = point.join("state.json");
    sample().save(&path).unwrap();
    // Fill the rest of the file system.
    let filler = vec![b'x'; 4096];
    let mut file = fs::File::create(point.join("filler")).unwrap();
    while std::io::Write::write_all(&mut file, &filler).is_ok() {}
    drop(file);

    let before = listing(&point);
    let mut big = sample();
    big.recent = (0..2_000)
        .map(|i| PathBuf::from(format!("/a/long/path/{i}")))
        .collect();
    let error = big.save(&path).unwrap_err();
    let (_, _, errno) = io_kind(&error);
    assert_eq!(errno, Some(libc::ENOSPC), "{error:?}");
    assert_eq!(listing(&point), before);
    assert_eq!(AppState::load(&path).unwrap(), sample());
}

#[test]
fn a_read_only_file_system_keeps_the_old_file() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data");
    let view = dir.path().join("read-only");
    fs::create_dir(&source).unwrap();
    fs::create_dir(&view).unwrap();
    sample().save(source.join("state.json")).unwrap();
    run(
        "mount",
        &["--bind", source.to_str().unwrap(), view.to_str().unwrap()],
    );
    let _mounted = Mounted(view.clone());
    run("mount", &["-o", "remount,bind,ro", view.to_str().unwrap()]);

    let path = view.join("state.json");
    let before = listing(&source);
    assert_eq!(AppState::load(&path).unwrap(), sample(), "reads still work");
    let mut changed = sample();
    changed.user = "changed".into();
    let error = changed.save(&path).unwrap_err();
    assert_eq!(
        io_kind(&error),
        (
            IoOp::CreateTemp,
            ErrorKind::ReadOnlyFilesystem,
            Some(libc::EROFS)
        )
    );
    let error = AppState::update(&path, |state| state.user.push('!')).unwrap_err();
    assert_eq!(io_kind(&error).2, Some(libc::EROFS), "{error:?}");
    assert_eq!(listing(&source), before);
}

/// Runs `work` on a thread whose file-system identity is `nobody`: Linux's fsuid is per thread
/// and dropping it from 0 clears the thread's file capabilities, so the permission checks are
/// those of an unprivileged user while the rest of the test process stays root.
fn as_nobody<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                unsafe {
                    libc::setfsgid(65534);
                    libc::setfsuid(65534);
                }
                work()
            })
            .join()
            .unwrap()
    })
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn permission_denied_is_a_typed_error_and_changes_nothing() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let before = listing(dir.path());

    // The file is 0600 and root's: nobody may not read it.
    let error = as_nobody(|| AppState::load(&path).unwrap_err());
    assert_eq!(
        io_kind(&error),
        (IoOp::Open, ErrorKind::PermissionDenied, Some(libc::EACCES))
    );

    // Readable, but the directory is not writable: no save, no lock file.
    chmod(&path, 0o644);
    let before_writes = listing(dir.path());
    let loaded = as_nobody(|| AppState::load(&path).unwrap());
    assert_eq!(loaded, sample());
    let error = as_nobody(|| loaded.save(&path).unwrap_err());
    assert_eq!(
        io_kind(&error),
        (
            IoOp::CreateTemp,
            ErrorKind::PermissionDenied,
            Some(libc::EACCES)
        )
    );
    let error = as_nobody(|| AppState::update(&path, |state| state.user.push('!')).unwrap_err());
    assert_eq!(io_kind(&error).0, IoOp::OpenLock, "{error:?}");
    assert_eq!(listing(dir.path()), before_writes);
    chmod(&path, 0o600);
    assert_eq!(listing(dir.path()), before);
}
