//! Cleanup: `Options::remove` deletes a state file with its backups, lock and stray temporary
//! files and nothing else; `Options::remove_dir` deletes a directory without following links out
//! of it.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{AppState, AppStateV1, names, sample};
use persist::{Error, FileKind, Options, Persisted};

#[test]
fn a_state_file_goes_with_its_backups_lock_and_temporary_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    AppStateV1 {
        user: "u".into(),
        dark_mode: true,
    }
    .save(&path)
    .unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap(); // keeps state.json.v1.bak
    AppState::update(&path, |state| state.user = "v".into()).unwrap(); // state.json.lock
    fs::write(dir.path().join(".state.json.AbCdEf123456.tmp"), b"partial").unwrap();
    // Not ours: other files, and names that only look alike.
    for other in [
        "other.json",
        "other.json.v1.bak",
        "state.json.notes",
        "state.json.vx.bak",
        ".state.json.short.tmp",
    ] {
        fs::write(dir.path().join(other), b"keep").unwrap();
    }

    let removed = Options::new().remove(&path).unwrap();
    let removed: Vec<String> = removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        removed,
        [
            ".state.json.AbCdEf123456.tmp",
            "state.json",
            "state.json.lock",
            "state.json.v1.bak"
        ]
    );
    assert_eq!(
        names(dir.path()),
        [
            ".state.json.short.tmp",
            "other.json",
            "other.json.v1.bak",
            "state.json.notes",
            "state.json.vx.bak"
        ]
    );
    // Again: nothing left to remove, no error, nothing created.
    assert!(Options::new().remove(&path).unwrap().is_empty());
    assert_eq!(names(dir.path()).len(), 5);
    assert!(
        Options::new()
            .remove(dir.path().join("absent/state.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_directory_at_the_path_is_refused_and_a_symlink_is_removed_as_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"kept").unwrap();
    assert!(matches!(
        Options::new().remove(&path),
        Err(Error::NotRegularFile {
            kind: FileKind::Directory,
            ..
        })
    ));
    assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");

    // The link goes; the file it points to in another directory, and its backup, stay.
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("real.json");
    sample().save(&real).unwrap();
    fs::write(elsewhere.path().join("real.json.v1.bak"), b"old").unwrap();
    let link = dir.path().join("link.json");
    symlink(&real, &link).unwrap();
    let removed = Options::new().remove(&link).unwrap();
    assert_eq!(removed, std::slice::from_ref(&link));
    assert!(fs::symlink_metadata(&link).is_err());
    assert_eq!(AppState::load(&real).unwrap(), sample());
    assert!(elsewhere.path().join("real.json.v1.bak").exists());
}

#[test]
fn a_whole_directory_goes_without_following_links_out_of_it() {
    let root = tempfile::tempdir().unwrap();
    let alice = root.path().join("users/alice");
    let bob = root.path().join("users/bob");
    fs::create_dir_all(alice.join("nested/deeper")).unwrap();
    fs::create_dir_all(&bob).unwrap();
    sample().save(alice.join("state.json")).unwrap();
    sample()
        .save(alice.join("nested/deeper/cache.json"))
        .unwrap();
    sample().save(bob.join("state.json")).unwrap();
    // Links from alice's directory into bob's: a file and a directory.
    symlink(bob.join("state.json"), alice.join("bobs-state.json")).unwrap();
    symlink(&bob, alice.join("nested/bob")).unwrap();

    Options::new().remove_dir(&alice).unwrap();
    assert!(!alice.exists());
    assert_eq!(AppState::load(bob.join("state.json")).unwrap(), sample());
    assert_eq!(names(&bob), ["state.json"]);
    // Missing: no error.
    Options::new().remove_dir(&alice).unwrap();

    // The directory itself as a link: refused, the directory it points to untouched.
    let link = root.path().join("users/carol");
    symlink(&bob, &link).unwrap();
    let error = Options::new().remove_dir(&link).unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(names(&bob), ["state.json"]);
    // A file: refused as not a directory, and said so.
    let error = Options::new()
        .remove_dir(bob.join("state.json"))
        .unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");
    assert_eq!(names(&bob), ["state.json"]);
}

#[test]
fn any_depth_is_removed_with_few_descriptors() {
    // Deeper than the descriptors a process may hold, and than a recursion's stack would take.
    let root = tempfile::tempdir().unwrap();
    let top = root.path().join("deep");
    // Built relative, a level at a time: the full path is longer than PATH_MAX.
    fs::create_dir(&top).unwrap();
    let mut current = fs::File::open(&top).unwrap();
    for level in 0..3_000 {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(format!("d{level}")).unwrap();
        // SAFETY: valid descriptor and C string.
        assert_eq!(
            unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o700) },
            0
        );
        let fd = unsafe {
            libc::openat(
                current.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
        };
        assert!(fd >= 0);
        // SAFETY: a descriptor this test just opened.
        current = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let file = std::ffi::CString::new("f").unwrap();
        let fd = unsafe {
            libc::openat(
                current.as_raw_fd(),
                file.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o600,
            )
        };
        assert!(fd >= 0);
        unsafe { libc::close(fd) };
    }
    drop(current);
    let output = common::child("deep_child", &[(DEEP_CHILD, &top)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(names(root.path()), Vec::<String>::new());
}

const DEEP_CHILD: &str = "PERSIST_TEST_DEEP_DIR";

/// The child of `any_depth_is_removed_with_few_descriptors`: under `ulimit -n 256`, in a
/// thread with a 256 KiB stack, removes the tree.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn deep_child() {
    let Ok(top) = std::env::var(DEEP_CHILD) else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || Options::new().remove_dir(&top))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
}

#[test]
fn every_copy_persist_made_goes_too() {
    // Live's copies (another program's version kept aside, a value it could not save), a
    // journal's snapshots: each holds the data, so a cleanup at logout removes them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    for copy in [
        "state.json.conflict-1700000000000",
        "state.json.unsaved-1700000000001",
        "state.json.snapshot.100",
    ] {
        fs::write(dir.path().join(copy), b"{}").unwrap();
    }
    fs::write(dir.path().join("state.json.conflict-x"), b"keep").unwrap();
    let removed = Options::new().remove(&path).unwrap();
    assert_eq!(removed.len(), 5, "{removed:?}"); // with the file and its lock file
    assert_eq!(names(dir.path()), ["state.json.conflict-x"]);

    // A journal with its snapshots and lock.
    let log = dir.path().join("events.log");
    let journal = persist::Journal::<AppState, AppState>::open(&log).unwrap();
    journal.append(&sample()).unwrap();
    journal.checkpoint(&sample()).unwrap();
    drop(journal);
    let removed = Options::new().remove(&log).unwrap();
    let removed: Vec<String> = removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        removed,
        ["events.log", "events.log.lock", "events.log.snapshot.1"]
    );
    assert_eq!(names(dir.path()), ["state.json.conflict-x"]);
}
