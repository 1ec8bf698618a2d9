//! `Transaction`: several files replaced all or nothing. Real processes are killed (SIGKILL) at
//! random moments of their commits, then recovery runs: every file holds the same step, never a
//! mix. The same loop with the files saved one by one (the control) shows mixed states.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use persist::{Error, Options, Persisted, Recovery, Transaction};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Part {
    step: u64,
    /// About 8 KiB, so that writes span several blocks.
    filler: Vec<String>,
}

impl Part {
    fn at(step: u64) -> Self {
        Part {
            step,
            filler: (0..200)
                .map(|i| format!("line {i:04} of step {step}"))
                .collect(),
        }
    }
}

const FILES: [&str; 4] = ["index.json", "a/one.json", "a/two.json", "b/c/three.json"];

#[test]
fn a_commit_saves_and_removes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(0).save(root.join("old.json")).unwrap();
    let mut txn = Transaction::open(root).unwrap();
    for file in FILES {
        txn.save(&Part::at(1), file).unwrap();
    }
    txn.save(&Part::at(2), "index.json").unwrap(); // the later save wins
    txn.remove("old.json").unwrap();
    txn.remove("never-was.json").unwrap();
    // Nothing changes before the commit.
    assert!(!root.join("index.json").exists());
    assert!(root.join("old.json").exists());
    txn.commit().unwrap();
    assert_eq!(Part::load(root.join("index.json")).unwrap().step, 2);
    for file in &FILES[1..] {
        assert_eq!(Part::load(root.join(file)).unwrap(), Part::at(1));
    }
    assert!(!root.join("old.json").exists());
    assert_eq!(
        common::names(&root.join(".persist-txn")),
        Vec::<String>::new(),
        "nothing staged is left"
    );
}

#[test]
fn an_uncommitted_transaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("index.json")).unwrap();
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(2), "index.json").unwrap();
    txn.remove("index.json").unwrap();
    drop(txn);
    assert_eq!(Part::load(root.join("index.json")).unwrap().step, 1);
    assert_eq!(
        common::names(&root.join(".persist-txn")),
        Vec::<String>::new()
    );
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Clean
    );
}

#[test]
fn paths_stay_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut txn = Transaction::open(dir.path()).unwrap();
    for path in [
        "/etc/passwd",
        "../outside.json",
        "a/../../x",
        "",
        ".",
        ".persist-txn/commit",
    ] {
        let error = txn.save(&Part::at(1), path).unwrap_err();
        assert!(
            matches!(error, Error::InvalidPath { .. }),
            "{path:?}: {error}"
        );
    }
    assert!(matches!(txn.remove("../x"), Err(Error::InvalidPath { .. })));
}

#[test]
fn layers_and_backups_work_inside_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A file of another version: the commit keeps it as a backup, as a save would.
    std::fs::write(root.join("index.json"), r#"{"version":0,"data":{}}"#).unwrap();
    let mut txn = Options::new().checksum(true).transaction(root).unwrap();
    txn.save(&Part::at(3), "index.json").unwrap();
    txn.commit().unwrap();
    let text = std::fs::read_to_string(root.join("index.json")).unwrap();
    assert!(text.contains("\"crc32c\""), "checksummed");
    assert!(
        root.join("index.json.v0.bak").exists(),
        "{:?}",
        common::names(root)
    );
}

#[test]
fn one_transaction_per_root_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Transaction::open(dir.path()).unwrap();
    // In the same process: refused at once, not after the 30 s lock timeout, saying so.
    let started = std::time::Instant::now();
    let error = Transaction::open(dir.path()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
    assert!(error.to_string().contains("this process"), "{error}");
    let error = persist::Transaction::recover(dir.path()).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
    drop(first);

    // Another process holding the root: waited for, up to the lock timeout.
    let mut holder = common::child(
        "child",
        &[
            (CHILD_ROOT, dir.path().as_os_str()),
            (CHILD_MODE, "hold".as_ref()),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(lines.any(|line| line.unwrap() == "held"));
    let error = Options::new()
        .lock_timeout(Some(Duration::from_millis(50)))
        .transaction(dir.path())
        .unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error}");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    Transaction::open(dir.path()).unwrap();
}

const CHILD_ROOT: &str = "PERSIST_TEST_TXN_ROOT";
const CHILD_MODE: &str = "PERSIST_TEST_TXN_MODE";

/// The body of the child processes: commits (or, as the control, saves one by one) ever higher
/// steps and prints each step once it returned; runs until killed. Does nothing when run
/// directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    let (Ok(root), Ok(mode)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_MODE)) else {
        return;
    };
    let root = Path::new(&root);
    if mode == "hold" {
        // Holds a transaction on the root until its stdin closes.
        let _txn = Transaction::open(root).unwrap();
        println!("held");
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }
    let mut step = Part::load(root.join(FILES[0])).map_or(0, |part| part.step);
    let stdout = std::io::stdout();
    loop {
        step += 1;
        let part = Part::at(step);
        match mode.as_str() {
            "transaction" => {
                let mut txn = Transaction::open(root).unwrap();
                for file in FILES {
                    txn.save(&part, file).unwrap();
                }
                txn.commit().unwrap();
            }
            "one-by-one" => {
                for file in FILES {
                    part.save(root.join(file)).unwrap();
                }
            }
            other => panic!("unknown mode {other}"),
        }
        use std::io::Write;
        writeln!(stdout.lock(), "{step}").unwrap();
    }
}

/// Kills a child of `mode` at `kills` random moments; after each kill runs recovery (for
/// transactions) and counts the states where the files disagree. Returns (mixed states,
/// recoveries that rolled forward, recoveries that discarded).
fn kill_loop(mode: &str, kills: usize) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rng, _) = common::Rng::from_env();
    let (mut mixed, mut forward, mut discarded) = (0, 0, 0);
    let mut most_acknowledged = 0;
    for _ in 0..kills {
        let mut child = common::child(
            "child",
            &[(CHILD_ROOT, root.as_os_str()), (CHILD_MODE, mode.as_ref())],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it commit a few times, then kill it at a random moment of the next ones.
        let mut acknowledged = 0;
        for line in lines.by_ref() {
            if let Ok(step) = line.unwrap().trim().parse::<u64>() {
                acknowledged = step;
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        // SAFETY: kill(2) on the child's pid, which has not been waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        child.wait().unwrap();
        // Every step it acknowledged before it died is in the pipe: the last one counts.
        for line in lines {
            if let Ok(step) = line.unwrap().trim().parse::<u64>() {
                acknowledged = acknowledged.max(step);
            }
        }
        most_acknowledged = most_acknowledged.max(acknowledged);
        if mode == "transaction" {
            match persist::Transaction::recover(root).unwrap() {
                Recovery::RolledForward => forward += 1,
                Recovery::Discarded => discarded += 1,
                _ => {}
            }
        }
        let steps: Vec<u64> = FILES
            .iter()
            .map(|file| {
                let part = Part::load(root.join(file)).unwrap();
                assert_eq!(part, Part::at(part.step), "a whole file of its step");
                part.step
            })
            .collect();
        assert!(
            steps.iter().all(|step| *step >= acknowledged),
            "an acknowledged commit was lost: step {acknowledged} acknowledged, files at {steps:?}"
        );
        if steps.iter().any(|step| *step != steps[0]) {
            mixed += 1;
        }
    }
    // Each child went on from where the last one stopped: the acknowledgements read cover
    // the run, not only each child's first.
    assert!(
        most_acknowledged > kills as u64,
        "only {most_acknowledged} steps acknowledged in {kills} kills"
    );
    (mixed, forward, discarded)
}

#[test]
fn a_killed_commit_is_all_or_nothing_after_recovery() {
    let kills = 100;
    let (mixed, forward, discarded) = kill_loop("transaction", kills);
    eprintln!(
        "transactions: {kills} kills, {mixed} mixed states, {forward} rolled forward, \
         {discarded} discarded"
    );
    assert_eq!(mixed, 0);
    // The kills landed on both sides of the commit point.
    assert!(forward > 0 && discarded > 0, "{forward} / {discarded}");
}

#[test]
fn the_control_saving_one_by_one_shows_mixed_states() {
    let kills = 60;
    let (mixed, _, _) = kill_loop("one-by-one", kills);
    eprintln!("one by one: {kills} kills, {mixed} mixed states");
    assert!(mixed > 0, "the harness did not catch a single mixed state");
}

#[test]
fn a_target_that_cannot_be_replaced_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("index.json")).unwrap();
    std::fs::create_dir(root.join("subdir")).unwrap();
    let fifo = std::ffi::CString::new(root.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(2), "index.json").unwrap();
    let started = std::time::Instant::now();
    for target in ["subdir", "pipe"] {
        let error = txn.save(&Part::at(2), target).unwrap_err();
        assert!(
            matches!(error, Error::NotRegularFile { .. }),
            "{target}: {error}"
        );
        assert!(matches!(
            txn.remove(target),
            Err(Error::NotRegularFile { .. })
        ));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "a FIFO blocked");
    txn.commit().unwrap();
    assert_eq!(Part::load(root.join("index.json")).unwrap().step, 2);
    // The root takes the next transaction.
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Clean
    );
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(3), "index.json").unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_roll_forward_that_meets_an_unreplaceable_target_finishes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("a.json")).unwrap();
    Part::at(1).save(root.join("b.json")).unwrap();
    // A committed transaction whose renames a crash interrupted: its record and staged files.
    drop(Transaction::open(root).unwrap());
    let staging = root.join(".persist-txn");
    let (first, second) = (
        format!("{:032x}-{:08}", 9u128, 1),
        format!("{:032x}-{:08}", 9u128, 2),
    );
    Part::at(2).save(staging.join(&first)).unwrap();
    Part::at(2).save(staging.join(&second)).unwrap();
    let ops = serde_json::json!({"ops": [
        {"put": {"target": "a.json", "staged": first, "version": 1}},
        {"put": {"target": "b.json", "staged": second, "version": 1}},
    ]});
    let json = serde_json::to_vec(&ops).unwrap();
    let crc = crc32c::crc32c(&json);
    let mut record = json;
    record.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    std::fs::write(staging.join("commit"), record).unwrap();
    // Meanwhile something that is not a file took a.json's place.
    std::fs::remove_file(root.join("a.json")).unwrap();
    std::fs::create_dir(root.join("a.json")).unwrap();
    std::fs::write(root.join("a.json").join("inside"), b"kept").unwrap();

    match persist::Transaction::recover(root).unwrap() {
        Recovery::Incomplete { failed } => {
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, root.join("a.json"));
            assert!(
                matches!(failed[0].1, Error::NotRegularFile { .. }),
                "{}",
                failed[0].1
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Part::load(root.join("b.json")).unwrap().step,
        2,
        "the other target"
    );
    assert_eq!(
        std::fs::read(root.join("a.json").join("inside")).unwrap(),
        b"kept"
    );
    // The record is cleared: the root is not wedged.
    assert_eq!(common::names(&staging), Vec::<String>::new());
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Clean
    );
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(3), "b.json").unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_staged_file_whose_write_failed_is_removed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut txn = Transaction::open(root).unwrap();
    let fault = persist::testing::inject_fault(root, persist::IoOp::Write, libc::ENOSPC, 1);
    let error = txn.save(&Part::at(1), "index.json").unwrap_err();
    assert_eq!(fault.hits(), 1);
    assert!(matches!(error, Error::Io { .. }), "{error}");
    // Gone now, not when the transaction is dropped.
    assert_eq!(
        common::names(&root.join(".persist-txn")),
        Vec::<String>::new()
    );
    txn.save(&Part::at(1), "index.json").unwrap();
    txn.commit().unwrap();
}

#[test]
fn files_and_directories_a_commit_creates_are_private_and_replaced_ones_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("shared.json")).unwrap();
    std::fs::set_permissions(
        root.join("shared.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(2), "shared.json").unwrap();
    txn.save(&Part::at(2), "new/deeper/file.json").unwrap();
    txn.commit().unwrap();
    assert_eq!(mode(&root.join("shared.json")), 0o644);
    assert_eq!(mode(&root.join("new/deeper/file.json")), 0o600);
    assert_eq!(mode(&root.join("new")), 0o700);
    assert_eq!(mode(&root.join("new/deeper")), 0o700);
    assert_eq!(mode(&root.join(".persist-txn")), 0o700);
}

#[test]
fn a_rename_refused_after_the_commit_point_finishes_the_others_and_clears_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("a.json")).unwrap();
    Part::at(1).save(root.join("b.json")).unwrap();
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(2), "a.json").unwrap();
    txn.save(&Part::at(2), "b.json").unwrap();
    txn.remove("c.json").unwrap();
    // The first rename of the commit fails (the first rename under the root is a.json's).
    let fault = persist::testing::inject_fault(root, persist::IoOp::Rename, libc::EIO, 1);
    let error = txn.commit().unwrap_err();
    assert_eq!(fault.hits(), 1);
    assert!(
        matches!(error, Error::Io { op: persist::IoOp::Rename, ref path, .. } if path.ends_with("a.json")),
        "{error}"
    );
    assert_eq!(Part::load(root.join("a.json")).unwrap().step, 1);
    assert_eq!(
        Part::load(root.join("b.json")).unwrap().step,
        2,
        "the others are finished"
    );
    // Nothing is left to replay over files written since.
    assert_eq!(
        common::names(&root.join(".persist-txn")),
        Vec::<String>::new()
    );
    Part::at(5).save(root.join("c.json")).unwrap();
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Clean
    );
    assert_eq!(Part::load(root.join("c.json")).unwrap().step, 5);
}

#[test]
fn a_file_swapped_in_at_a_staged_name_is_never_put_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside.json");
    Part::at(99).save(&outside).unwrap();
    Part::at(1).save(root.join("a.json")).unwrap();
    std::fs::set_permissions(root.join("a.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut txn = Transaction::open(&root).unwrap();
    txn.save(&Part::at(2), "a.json").unwrap();
    // Another program replaces the staged file with a hard link to a file elsewhere.
    let staging = root.join(".persist-txn");
    let staged = common::names(&staging).pop().unwrap();
    std::fs::remove_file(staging.join(&staged)).unwrap();
    std::fs::hard_link(&outside, staging.join(&staged)).unwrap();
    let error = txn.commit().unwrap_err();
    assert!(matches!(error, Error::InvalidPath { .. }), "{error}");
    // The file elsewhere kept its mode and place; the target is as it was.
    assert_eq!(
        std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(Part::load(&outside).unwrap().step, 99);
    assert_eq!(Part::load(root.join("a.json")).unwrap().step, 1);
}

#[test]
fn what_is_planted_under_the_staging_names_never_wedges_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    drop(Transaction::open(root).unwrap());
    let staging = root.join(".persist-txn");
    let staged = format!("{:032x}-{:08}", 3u128, 1);
    // A directory at a staged name, and a directory where the record goes.
    std::fs::create_dir_all(staging.join(&staged).join("inner")).unwrap();
    std::fs::create_dir_all(staging.join("commit").join("inner")).unwrap();
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Discarded
    );
    assert_eq!(common::names(&staging), Vec::<String>::new());
    // A FIFO, then a link, where the record goes.
    let fifo = std::ffi::CString::new(staging.join("commit").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Discarded
    );
    std::os::unix::fs::symlink("/etc/passwd", staging.join("commit")).unwrap();
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Discarded
    );
    let mut txn = Transaction::open(root).unwrap();
    txn.save(&Part::at(1), "index.json").unwrap();
    txn.commit().unwrap();
    assert_eq!(Part::load(root.join("index.json")).unwrap().step, 1);
}

/// Holds the lock of `root/b.json` (an update that waits) until the returned sender is used.
fn hold_b(root: &Path) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
    let (held, wait) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder_root = root.to_owned();
    let holder = std::thread::spawn(move || {
        Options::new()
            .update_or(
                holder_root.join("b.json"),
                || Part::at(0),
                |part| {
                    held.send(()).unwrap();
                    released.recv().unwrap();
                    *part = Part::at(50);
                },
            )
            .unwrap();
    });
    wait.recv().unwrap();
    (holder, release)
}

#[test]
fn a_lock_held_too_long_fails_the_commit_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    Part::at(1).save(root.join("a.json")).unwrap();
    Part::at(1).save(root.join("b.json")).unwrap();
    let (holder, release) = hold_b(root);
    let mut txn = Options::new()
        .lock_timeout(Some(Duration::from_millis(100)))
        .transaction(root)
        .unwrap();
    txn.save(&Part::at(2), "a.json").unwrap();
    txn.save(&Part::at(2), "b.json").unwrap();
    let error = txn.commit().unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error}");
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        Part::load(root.join("a.json")).unwrap().step,
        1,
        "nothing changed"
    );
    assert_eq!(Part::load(root.join("b.json")).unwrap().step, 50);
    assert_eq!(
        persist::Transaction::recover(root).unwrap(),
        Recovery::Clean
    );
}

#[test]
fn in_a_large_transaction_a_file_whose_lock_is_held_too_long_is_finished_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    Part::at(1).save(root.join("b.json")).unwrap();
    let (holder, release) = hold_b(&root);
    // More files than a commit locks together: each is locked while it is replaced.
    let small = Options::new()
        .durability(persist::Durability::None)
        .lock_timeout(Some(Duration::from_millis(100)));
    let mut txn = small.transaction(&root).unwrap();
    let part = Part {
        step: 2,
        filler: Vec::new(),
    };
    for i in 0..300 {
        txn.save(&part, format!("many/{i}.json")).unwrap();
    }
    txn.save(&part, "b.json").unwrap();
    let error = txn.commit().unwrap_err();
    assert!(
        matches!(error, Error::Committed { waiting: 1, .. }),
        "{error}"
    );
    assert_eq!(error.kind(), persist::ErrorKind::Committed);
    assert!(error.is_transient());
    assert_eq!(Part::load(root.join("many/299.json")).unwrap().step, 2);
    release.send(()).unwrap();
    holder.join().unwrap();
    // The update came first; the transaction's b.json is put in place after it.
    assert_eq!(
        persist::Transaction::recover(&root).unwrap(),
        Recovery::RolledForward
    );
    assert_eq!(Part::load(root.join("b.json")).unwrap().step, 2);
    assert_eq!(
        persist::Transaction::recover(&root).unwrap(),
        Recovery::Clean
    );
}

#[test]
fn a_root_is_open_once_per_process_even_without_its_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Transaction::open(dir.path()).unwrap();
    // Another program removes the lock file: this process still knows the root is open.
    std::fs::remove_file(dir.path().join(".persist-txn.lock")).unwrap();
    let error = Transaction::open(dir.path()).unwrap_err();
    assert!(matches!(error, Error::AlreadyOpen { .. }), "{error}");
}
