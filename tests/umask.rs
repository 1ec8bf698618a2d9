//! Files persist creates are 0600 from creation (directories 0700) whatever the umask, and a
//! file it replaces keeps its mode. Alone in its test binary
//! because the umask is per process.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 2)]
struct Secret {
    token: String,
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn what_persist_creates_is_private_under_any_umask() {
    for umask in [0o000, 0o022, 0o077] {
        unsafe { libc::umask(umask) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        fs::write(&path, br#"{"version":1,"data":{"token":"old"}}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        Secret::update(&path, |secret| secret.token = "t0ken".into()).unwrap_err();
        // Version 1 is not in this chain: overwrite it on purpose, which keeps a backup.
        Secret {
            token: "t0ken".into(),
        }
        .save(&path)
        .unwrap();
        Secret::update(&path, |secret| secret.token.push('!')).unwrap();
        // The file the user made 0644 stays 0644 (a save keeps the mode of the file it
        // replaces); what persist creates is 0600.
        assert_eq!(mode(&path), 0o644, "secret.json under umask {umask:o}");
        for file in ["secret.json.lock", "secret.json.v1.bak"] {
            assert_eq!(
                mode(&dir.path().join(file)),
                0o600,
                "{file} under umask {umask:o}"
            );
        }
        let new = dir.path().join("sub").join("new.json");
        Secret::default().save(&new).unwrap();
        assert_eq!(mode(&new), 0o600, "a new file under umask {umask:o}");
        assert_eq!(
            mode(&dir.path().join("sub")),
            0o700,
            "a new directory under umask {umask:o}"
        );
    }
}

/// The directory the child of [`every_file_is_created_private_as_the_system_calls_show`]
/// writes in.
const CHILD_DIR: &str = "PERSIST_TEST_UMASK_DIR";

#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Event {
    n: u64,
}

/// The body of the child process: every kind of file persist writes, under umask 000 (so that
/// a file created with the default mode would be world-writable). Does nothing without its
/// variable.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn umask_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o000) };
    let secret = |token: &str| Secret {
        token: token.into(),
    };
    // A new file in new directories; a save over the user's 0644 file of another version (a
    // backup), over a damaged file (a copy kept aside); an update (the lock file); a restore.
    secret("a").save(dir.join("new/deeper/state.json")).unwrap();
    secret("b").save(dir.join("older.json")).unwrap();
    secret("c").save(dir.join("damaged.json")).unwrap();
    Secret::update(dir.join("older.json"), |s| s.token.push('!')).unwrap();
    persist::Options::new()
        .restore_backup(dir.join("older.json"), 1)
        .unwrap();
    // The audit log, with a save through it.
    persist::Options::new()
        .audit(dir.join("audit/log"))
        .save(&secret("d"), dir.join("audited.json"))
        .unwrap();
    // A collection: its directory, shards, entries, lock files, a batch.
    let users: persist::Collection<Secret> = persist::Options::new()
        .collection(dir.join("users"))
        .unwrap();
    users.put("ada", &secret("e")).unwrap();
    users
        .put_many([("bob", &secret("f")), ("eve", &secret("g"))])
        .unwrap();
    users.update("ada", |s| s.token.push('!')).unwrap();
    // A transaction: its staging directory, staged files, record and lock.
    let mut txn = persist::Transaction::open(dir.join("txn")).unwrap();
    txn.save(&secret("h"), "a/one.json").unwrap();
    txn.save(&secret("i"), "two.json").unwrap();
    txn.commit().unwrap();
    // A journal: the log, appends, a snapshot, a rewrite (the old log kept).
    let journal = persist::Options::new()
        .journal::<Event, Secret>(dir.join("journal/events.log"))
        .unwrap();
    journal.append(&Event { n: 1 }).unwrap();
    journal.checkpoint(&secret("j")).unwrap();
    journal.append(&Event { n: 2 }).unwrap();
    drop(journal);
    // Live, both policies.
    let live = persist::Options::new()
        .live::<Secret>(dir.join("live/immediate.json"))
        .unwrap();
    live.update(|s| s.token.push('k')).unwrap();
    drop(live);
    let live = persist::Options::new()
        .save_policy(persist::SavePolicy::Coalesce {
            debounce: std::time::Duration::from_millis(5),
            max_wait: std::time::Duration::from_millis(20),
        })
        .live::<Secret>(dir.join("live/coalesce.json"))
        .unwrap();
    live.update(|s| s.token.push('l')).unwrap();
    live.flush().unwrap();
    drop(live);
    // The instance lock of an application directory.
    drop(persist::InstanceLock::acquire(dir.join("app")).unwrap());
    println!("done");
}

/// Every file persist writes is created 0600 and every directory 0700, by the system call that
/// creates it (not fixed afterwards, when another user could have opened it): the child runs
/// under `strace` with umask 000, and every `open`/`openat` with `O_CREAT` and every `mkdir`
/// it makes is read back. `chmod`s are allowed only to give a replaced file its own mode.
#[test]
fn every_file_is_created_private_as_the_system_calls_show() {
    if !common::needs("strace (Debian package strace)", common::has_tool("strace")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    // What the child finds: a 0644 file of version 1 and a damaged file.
    fs::write(
        work.join("older.json"),
        br#"{"version":1,"data":{"token":"old"}}"#,
    )
    .unwrap();
    fs::set_permissions(work.join("older.json"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(work.join("damaged.json"), b"{\"version\":2,\"data\":{\"tok").unwrap();
    fs::set_permissions(work.join("damaged.json"), fs::Permissions::from_mode(0o644)).unwrap();
    let trace = dir.path().join("trace");
    let output = std::process::Command::new("strace")
        .args(["-f", "-qq", "-s", "256", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=open,openat,openat2,creat,mkdir,mkdirat,chmod,fchmod,fchmodat",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "umask_child",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
            "--quiet",
        ])
        .env(CHILD_DIR, &work)
        .output()
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("done"),
        "the child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let trace = fs::read_to_string(trace).unwrap();
    let (mut created, mut dirs) = (0, 0);
    let mut wrong = Vec::new();
    for line in trace.lines() {
        let call = line
            .split_once(' ')
            .map_or(line, |(_, call)| call)
            .trim_start();
        let mode = |text: &str| {
            text.rsplit([' ', '=', ',']).find_map(|part| {
                let part = part.trim_end_matches(['}', ')']);
                (part.len() > 1 && part.starts_with('0'))
                    .then(|| u32::from_str_radix(part, 8).ok())
                    .flatten()
            })
        };
        if call.starts_with("open") && call.contains("O_CREAT") {
            created += 1;
            let args = call.split(") = ").next().unwrap_or(call);
            if mode(args) != Some(0o600) {
                wrong.push(line.to_owned());
            }
        } else if call.starts_with("mkdir") {
            dirs += 1;
            let args = call.split(") = ").next().unwrap_or(call);
            if mode(args) != Some(0o700) {
                wrong.push(line.to_owned());
            }
        } else if call.starts_with("chmod") || call.starts_with("fchmod") {
            let args = call.split(") = ").next().unwrap_or(call);
            // Only a replaced file's own mode (the user's 0644), or 0600.
            if !matches!(mode(args), Some(0o644 | 0o600)) {
                wrong.push(line.to_owned());
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "created with another mode:\n{}",
        wrong.join("\n")
    );
    assert!(
        created >= 30 && dirs >= 8,
        "{created} files, {dirs} directories created"
    );
    // And as they are now: private, but the file the user made 0644.
    let mut stack = vec![work.clone()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let expected = if path.is_dir() {
                stack.push(path.clone());
                0o700
            } else if path == work.join("older.json") || path == work.join("damaged.json") {
                // The user's files (made 0644 here) keep their mode when replaced.
                0o644
            } else {
                0o600
            };
            assert_eq!(mode(&path), expected, "{}", path.display());
        }
    }
    eprintln!("{created} files and {dirs} directories created, each private from creation");
}
