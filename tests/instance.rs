//! `InstanceLock`: one running instance per directory, across processes, released on drop and
//! when the holder dies (SIGKILL included), with no stale PID file to clean up.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};

use persist::{Error, INSTANCE_LOCK_FILE, InstanceLock};

const HOLDER_DIR: &str = "PERSIST_TEST_INSTANCE_DIR";

/// The tests of this file run one at a time: a process spawned by one test is forked with the
/// parent's descriptors, and until it execs, a lock file another test has open is shared with it
/// (the lock would outlive that test's guard by a moment). Real applications spawn no test
/// processes in between; the descriptors are close-on-exec.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child process holding the lock of a directory.
struct Holder {
    child: Child,
    output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Holder {
    /// Lets the holder exit normally and waits for it.
    fn release(mut self) {
        drop(self.child.stdin.take());
        for line in self.output.by_ref() {
            line.unwrap();
        }
        assert!(self.child.wait().unwrap().success());
    }
}

/// The body of the child process of the cross-process tests: takes the lock, says so, and holds
/// it until its standard input closes (or it is killed). Does nothing when run by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn holder() {
    let Ok(dir) = std::env::var(HOLDER_DIR) else {
        return;
    };
    let _guard = InstanceLock::acquire(&dir).unwrap();
    println!("locked");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn spawn_holder(dir: &std::path::Path) -> Holder {
    let mut child = common::child("holder", &[(HOLDER_DIR, dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The test harness of the child prints its own lines first.
    let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        output.any(|line| line.unwrap().trim() == "locked"),
        "the holder process did not take the lock"
    );
    Holder { child, output }
}

#[track_caller]
fn assert_running(dir: &std::path::Path, expected_pid: u32) {
    match InstanceLock::acquire(dir) {
        Err(Error::AlreadyRunning { pid, path }) => {
            assert_eq!(pid, Some(expected_pid));
            assert_eq!(path, dir.join(INSTANCE_LOCK_FILE));
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
}

#[test]
fn a_second_guard_is_refused_until_the_first_drops() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let guard = InstanceLock::acquire(&state).unwrap();
    assert_eq!(guard.path(), state.join(INSTANCE_LOCK_FILE));
    // Created private; the lock file too.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(guard.path()), 0o600);
    // In this process: said as such, not as another instance.
    let error = InstanceLock::acquire(&state).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
    assert!(
        error.to_string().contains("already open in this process"),
        "{error}"
    );
    drop(guard);
    let _again = InstanceLock::acquire(&state).unwrap();
}

#[test]
fn another_process_is_refused_while_one_runs_and_after_it_exits_it_is_free() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let holder = spawn_holder(dir.path());
    assert_running(dir.path(), holder.child.id());
    holder.release();
    let _mine = InstanceLock::acquire(dir.path()).unwrap();
}

#[test]
fn a_killed_holder_leaves_no_stale_lock() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut holder = spawn_holder(dir.path());
    assert_running(dir.path(), holder.child.id());
    holder.child.kill().unwrap(); // SIGKILL: no destructor runs
    holder.child.wait().unwrap();
    // The file (and the dead process's id in it) is still there; the lock is not.
    assert!(dir.path().join(INSTANCE_LOCK_FILE).exists());
    let guard = InstanceLock::acquire(dir.path()).unwrap();
    let holder = std::fs::read_to_string(guard.path()).unwrap();
    assert_eq!(holder.trim(), std::process::id().to_string());
}

#[test]
fn something_else_at_the_lock_path_is_refused_untouched() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(INSTANCE_LOCK_FILE)).unwrap();
    assert!(matches!(
        InstanceLock::acquire(dir.path()),
        Err(Error::Io { .. } | Error::NotRegularFile { .. })
    ));
    assert!(dir.path().join(INSTANCE_LOCK_FILE).is_dir());
}

#[test]
fn a_lock_file_that_is_not_persists_own_is_refused_untouched() {
    let _serial = one_at_a_time();
    // A hard link to someone's file at the lock's name: the process id is never written
    // into it.
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.json");
    std::fs::write(&precious, b"keep me").unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::hard_link(&precious, state.join(INSTANCE_LOCK_FILE)).unwrap();
    let error = InstanceLock::acquire(&state).unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    // A symbolic link there is not followed either.
    std::fs::remove_file(state.join(INSTANCE_LOCK_FILE)).unwrap();
    std::os::unix::fs::symlink(&precious, state.join(INSTANCE_LOCK_FILE)).unwrap();
    assert!(InstanceLock::acquire(&state).is_err());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
}
