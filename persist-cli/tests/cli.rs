//! The `persist` command and `persist::cli::run`, run as real processes on real files; what
//! they print is pinned by insta snapshots (`INSTA_UPDATE=always cargo test -p persist-cli`
//! after a deliberate change).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use persist::{Key, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
struct SettingsV1 {
    theme: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
struct Settings {
    theme: String,
    zoom: f64,
    recent: Vec<String>,
}

impl From<SettingsV1> for Settings {
    fn from(old: SettingsV1) -> Settings {
        Settings {
            theme: old.theme,
            zoom: 1.0,
            recent: Vec::new(),
        }
    }
}

fn settings() -> Settings {
    Settings {
        theme: "dark".to_owned(),
        zoom: 1.25,
        recent: vec!["notes.md".to_owned(), "ünïcode.txt".to_owned()],
    }
}

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A version 1 settings file in `dir`.
fn v1_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("settings.json");
    SettingsV1 {
        theme: "light".to_owned(),
    }
    .save(&path)
    .unwrap();
    path
}

/// How a process ended: its exit code, or "signal".
fn exit(output: &Output) -> String {
    output
        .status
        .code()
        .map_or("signal".to_owned(), |code| code.to_string())
}

/// Runs the `persist` command in `dir` with `args`.
fn persist(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persist"))
        .args(args)
        .current_dir(dir)
        .env("TEST_KEY", KEY_HEX)
        .env("TEST_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap()
}

/// Exit code, standard output and standard error, for a snapshot.
fn transcript(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        exit(output),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn show_prints_the_envelope_and_the_data_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    settings().save(dir.path().join("settings.json")).unwrap();
    let output = persist(dir.path(), &["show", "settings.json"]);
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(transcript(&output));
}

#[test]
fn show_reports_pretty_checksummed_and_unversioned_files() {
    let dir = tempfile::tempdir().unwrap();
    Options::new()
        .pretty(true)
        .checksum(true)
        .save(&settings(), dir.path().join("pretty.json"))
        .unwrap();
    fs::write(dir.path().join("legacy.json"), r#"{"theme":"light"}"#).unwrap();
    let pretty = persist(dir.path(), &["show", "pretty.json"]);
    let legacy = persist(dir.path(), &["show", "legacy.json"]);
    insta::assert_snapshot!(format!("{}\n{}", transcript(&pretty), transcript(&legacy)));
}

#[test]
fn show_prints_a_toml_file_as_toml() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("settings.toml"),
        "# the demo's settings\npersist-version = 2\n\n# colours\ntheme = \"dark\" # or light\nzoom = 1.25\nrecent = []\n",
    )
    .unwrap();
    // A save with a checksum adds its line; the rest stays as written.
    Options::new()
        .format(persist::Format::Toml)
        .checksum(true)
        .update(dir.path().join("settings.toml"), |s: &mut Settings| {
            s.zoom = 1.5;
        })
        .unwrap();
    let shown = persist(dir.path(), &["show", "settings.toml"]);
    let verified = persist(dir.path(), &["verify", "settings.toml"]);
    insta::assert_snapshot!(format!("{}\n{}", transcript(&shown), transcript(&verified)));
}

#[test]
fn show_opens_compressed_and_encrypted_files_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    Options::new()
        .compress(3)
        .encrypt(Key::from_hex(KEY_HEX).unwrap())
        .save(&settings(), dir.path().join("sealed.json"))
        .unwrap();
    Options::new()
        .encrypt(Key::from_passphrase("correct horse battery staple"))
        .save(&settings(), dir.path().join("passphrase.json"))
        .unwrap();
    let sealed = persist(
        dir.path(),
        &["show", "sealed.json", "--key-env", "TEST_KEY"],
    );
    let passphrase = persist(
        dir.path(),
        &[
            "show",
            "--passphrase-env",
            "TEST_PASSPHRASE",
            "passphrase.json",
        ],
    );
    let no_key = persist(dir.path(), &["show", "sealed.json"]);
    let wrong_key = persist(
        dir.path(),
        &["show", "sealed.json", "--passphrase-env", "TEST_PASSPHRASE"],
    );
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}\n{}",
        transcript(&sealed),
        transcript(&passphrase),
        transcript(&no_key),
        transcript(&wrong_key)
    ));
}

#[test]
fn bad_input_gets_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("folder")).unwrap();
    fs::write(dir.path().join("garbage.json"), b"\x00\x01 not json").unwrap();
    fs::write(dir.path().join("empty.json"), b"").unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut transcripts = String::new();
    for file in [
        "missing.json",
        "folder",
        "fifo",
        "garbage.json",
        "empty.json",
    ] {
        let output = persist(dir.path(), &["show", file]);
        assert_eq!(output.status.code(), Some(1), "{file}");
        assert!(output.stdout.is_empty(), "{file}");
        assert_eq!(
            output.stderr.iter().filter(|&&b| b == b'\n').count(),
            1,
            "{file}"
        );
        transcripts.push_str(&transcript(&output));
    }
    insta::assert_snapshot!(transcripts);
}

#[test]
fn command_line_mistakes_get_the_usage_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[][..],
        &["frobnicate"],
        &["show"],
        &["show", "a", "b"],
        &["restore", "a", "latest"],
        &["show", "a", "--key-env"],
        &["show", "a", "--verbose"],
        &["journal", "a", "--all"],
    ] {
        let output = persist(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("usage:"),
            "{args:?}"
        );
    }
    let help = persist(dir.path(), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("persist verify PATH..."));
}

#[test]
fn verify_names_each_damaged_file_and_walks_directories() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(state.join("users")).unwrap();
    settings().save(state.join("settings.json")).unwrap();
    Options::new()
        .checksum(true)
        .save(&settings(), state.join("users/alice.json"))
        .unwrap();
    Options::new()
        .checksum(true)
        .save(&settings(), state.join("users/bob.json"))
        .unwrap();
    // A bit flipped inside bob's data: only the checksum can tell.
    let bob = state.join("users/bob.json");
    let mut bytes = fs::read(&bob).unwrap();
    let at = bytes.windows(4).position(|w| w == b"dark").unwrap();
    bytes[at] = b'D';
    fs::write(&bob, bytes).unwrap();
    fs::write(state.join("users/carol.json"), r#"{"version":2,"data":{"#).unwrap();
    // persist's own files are not state files.
    fs::write(state.join("settings.json.lock"), b"").unwrap();
    fs::write(
        state.join(".settings.json.a1B2c3D4e5F6.tmp"),
        b"half a save",
    )
    .unwrap();

    let all = persist(dir.path(), &["verify", "state"]);
    assert_eq!(all.status.code(), Some(1));
    let intact = persist(
        dir.path(),
        &["verify", "state/settings.json", "state/users/alice.json"],
    );
    assert_eq!(intact.status.code(), Some(0));
    insta::assert_snapshot!(format!("{}\n{}", transcript(&all), transcript(&intact)));
}

#[test]
fn backups_and_restore_round_trip_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = v1_file(dir.path());
    // The first save after a migration keeps the version 1 file.
    Settings::load(&path).unwrap().save(&path).unwrap();
    let listed = persist(dir.path(), &["backups", "settings.json"]);
    let restored = persist(dir.path(), &["restore", "settings.json", "1"]);
    assert_eq!(restored.status.code(), Some(0));
    let after = persist(dir.path(), &["backups", "settings.json"]);
    let none = persist(dir.path(), &["backups", "other.json"]);
    let missing = persist(dir.path(), &["restore", "settings.json", "7"]);
    assert_eq!(missing.status.code(), Some(1));
    insta::assert_snapshot!(
        [&listed, &restored, &after, &none, &missing]
            .map(transcript)
            .join("\n")
    );
    // The restored file is the version 1 file again, and loads through the chain.
    assert_eq!(SettingsV1::load(&path).unwrap().theme, "light");
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 3)]
struct Event {
    id: u64,
    text: String,
}

/// Where each entry of the journal `bytes` starts and ends, from its header's length, up to
/// the first header that is not a record's: the records, then the close mark if there is one
/// (the last entry, of version 0).
fn entries(bytes: &[u8]) -> Vec<(usize, usize)> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut entries = Vec::new();
    let mut at = 24;
    while at + 24 <= bytes.len() && bytes[at..at + 24] != [0; 24] {
        let end = at + 24 + word(at);
        entries.push((at, end));
        if word(at + 4) == 0 {
            break;
        }
        at = end;
    }
    entries
}

/// A journal of `count` events at `path`, written with `options` and closed.
fn write_journal(options: &Options, path: &Path, count: u64) {
    let journal = options.journal::<Event, persist::NoSnapshot>(path).unwrap();
    for id in 0..count {
        journal
            .append(&Event {
                id,
                text: format!("event {id}"),
            })
            .unwrap();
    }
}

#[test]
fn journal_dumps_the_records_and_names_a_torn_tail_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    write_journal(&Options::new(), &path, 3);
    let whole = persist(dir.path(), &["journal", "events.log"]);
    assert_eq!(whole.status.code(), Some(0));
    let bytes = fs::read(&path).unwrap();
    let entries = entries(&bytes);
    // Three records, then the close mark of a clean close (a header alone).
    assert_eq!(entries.len(), 4, "{entries:?}");
    let (mark, _) = entries[3];
    let (last, last_end) = entries[2];
    assert_eq!(last_end, mark);

    // A crash after the last append's sync, before the close: no mark, nothing torn.
    fs::write(&path, &bytes[..mark]).unwrap();
    let unclosed = persist(dir.path(), &["journal", "events.log"]);
    assert_eq!(unclosed.status.code(), Some(0));
    // A crash during the last append: its record cut short, a torn tail the next open cuts.
    fs::write(&path, &bytes[..mark - 5]).unwrap();
    let torn = persist(dir.path(), &["journal", "events.log"]);
    assert_eq!(torn.status.code(), Some(0));
    // A bit flipped in the first record's data (after its 24-byte header): damage, since the
    // records of later flushes follow it.
    let mut damaged = bytes.clone();
    damaged[entries[0].0 + 24 + 3] ^= 1;
    fs::write(&path, &damaged).unwrap();
    let damage = persist(dir.path(), &["journal", "events.log"]);
    assert_eq!(damage.status.code(), Some(1));
    // A bit flipped in the last record's data: damage too, as the close mark after it proves
    // the record was synced before.
    let mut damaged = bytes.clone();
    damaged[last + 24 + 3] ^= 1;
    fs::write(&path, &damaged).unwrap();
    let damaged_last = persist(dir.path(), &["journal", "events.log"]);
    assert_eq!(damaged_last.status.code(), Some(1));
    let not_a_journal = persist(dir.path(), &["journal", "missing.log"]);
    assert_eq!(not_a_journal.status.code(), Some(1));
    insta::assert_snapshot!(
        [
            &whole,
            &unclosed,
            &torn,
            &damage,
            &damaged_last,
            &not_a_journal
        ]
        .map(transcript)
        .join("\n")
    );
}

#[test]
fn journal_reads_layered_records_and_names_the_encrypted_ones_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = || Key::from_hex(KEY_HEX).unwrap();
    write_journal(
        &Options::new().encrypt(key()),
        &dir.path().join("one.log"),
        1,
    );
    write_journal(
        &Options::new().compress(3).encrypt(key()),
        &dir.path().join("sealed.log"),
        2,
    );
    write_journal(
        &Options::new().compress(3),
        &dir.path().join("compressed.log"),
        2,
    );
    let one_without_key = persist(dir.path(), &["journal", "one.log"]);
    assert_eq!(one_without_key.status.code(), Some(0));
    let one = persist(dir.path(), &["journal", "one.log", "--key-env", "TEST_KEY"]);
    assert_eq!(one.status.code(), Some(0));
    let sealed_without_key = persist(dir.path(), &["journal", "sealed.log"]);
    assert_eq!(sealed_without_key.status.code(), Some(0));
    let sealed = persist(
        dir.path(),
        &["journal", "--key-env", "TEST_KEY", "sealed.log"],
    );
    assert_eq!(sealed.status.code(), Some(0));
    let wrong_key = persist(
        dir.path(),
        &[
            "journal",
            "sealed.log",
            "--passphrase-env",
            "TEST_PASSPHRASE",
        ],
    );
    assert_eq!(wrong_key.status.code(), Some(1));
    let compressed = persist(dir.path(), &["journal", "compressed.log"]);
    assert_eq!(compressed.status.code(), Some(0));
    insta::assert_snapshot!(
        [
            &one_without_key,
            &one,
            &sealed_without_key,
            &sealed,
            &wrong_key,
            &compressed
        ]
        .map(transcript)
        .join("\n")
    );
}

/// Standard output's lines.
fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn verify_checks_journals_audit_logs_and_encrypted_files_and_names_only_damage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    // A state file whose save is recorded in an audit log (a journal of audit records).
    Options::new()
        .audit(data.join("audit.log"))
        .save(&settings(), data.join("settings.json"))
        .unwrap();
    write_journal(&Options::new(), &data.join("events.log"), 2);
    // A journal whose last append a crash cut short.
    write_journal(&Options::new(), &data.join("torn.log"), 2);
    let torn = fs::read(data.join("torn.log")).unwrap();
    let (mark, _) = *entries(&torn).last().unwrap();
    fs::write(data.join("torn.log"), &torn[..mark - 5]).unwrap();
    // Encrypted: a state file and a journal's records.
    Options::new()
        .encrypt(Key::from_hex(KEY_HEX).unwrap())
        .save(&settings(), data.join("sealed.json"))
        .unwrap();
    write_journal(
        &Options::new().encrypt(Key::from_hex(KEY_HEX).unwrap()),
        &data.join("sealed.log"),
        2,
    );
    // persist's own files: a save's temporary file, a transaction's staging and its lock.
    fs::write(data.join(".settings.json.a1B2c3D4e5F6.tmp"), b"half a save").unwrap();
    fs::create_dir(data.join(".persist-txn")).unwrap();
    fs::write(data.join(".persist-txn/commit"), b"{").unwrap();
    fs::write(
        data.join(".persist-txn/0123456789abcdef0123456789abcdef-00000001"),
        b"half a staged file",
    )
    .unwrap();
    fs::write(data.join(".persist-txn.lock"), b"").unwrap();

    let intact = persist(dir.path(), &["verify", "data"]);
    assert_eq!(intact.status.code(), Some(0), "{}", transcript(&intact));
    let listed = persist(dir.path(), &["verify", "--all", "data"]);
    assert_eq!(listed.status.code(), Some(0), "{}", transcript(&listed));
    let with_key = persist(dir.path(), &["verify", "data", "--key-env", "TEST_KEY"]);
    assert_eq!(with_key.status.code(), Some(0), "{}", transcript(&with_key));
    let audit = persist(dir.path(), &["verify", "data/audit.log"]);
    assert_eq!(audit.status.code(), Some(0), "{}", transcript(&audit));
    let lock = persist(dir.path(), &["verify", "data/.persist-txn.lock"]);
    assert_eq!(lock.status.code(), Some(0), "{}", transcript(&lock));

    // A bit flipped in the first record of a journal closed cleanly: damage.
    let mut damaged = fs::read(data.join("events.log")).unwrap();
    let first = entries(&damaged)[0].0;
    damaged[first + 24 + 3] ^= 1;
    fs::write(data.join("events.log"), &damaged).unwrap();
    let damage = persist(dir.path(), &["verify", "data"]);
    assert_eq!(damage.status.code(), Some(1), "{}", transcript(&damage));
    // Exactly one line more than without the damage, naming it; the rest but the summary as
    // before.
    let before = lines(&intact);
    let after = lines(&damage);
    let new: Vec<&String> = after.iter().filter(|line| !before.contains(line)).collect();
    assert_eq!(new.len(), 2, "{after:#?}");
    assert!(new[0].starts_with("data/events.log: journal damaged at byte 24"));
    assert_eq!(new[1], after.last().unwrap());
    assert_eq!(after.len(), before.len() + 1);

    insta::assert_snapshot!(
        [&intact, &listed, &with_key, &audit, &lock, &damage]
            .map(transcript)
            .join("\n")
    );
}

/// Set to the arguments (joined by `\x1f`) when this test binary is started as an application
/// whose command line forwards to `persist::cli::run::<Settings>`.
const APP_ARGS: &str = "PERSIST_TEST_APP_ARGS";

/// The application: runs `persist::cli::run` with the arguments in [`APP_ARGS`] and exits with
/// its code. Does nothing when run directly by `cargo test`.
#[test]
fn app() {
    let Ok(args) = std::env::var(APP_ARGS) else {
        return;
    };
    let code = persist::cli::run::<Settings>(args.split('\x1f'));
    // The exit code is the point; std's ExitCode has no accessor, so compare with the three.
    let code = [
        (std::process::ExitCode::SUCCESS, 0),
        (std::process::ExitCode::FAILURE, 1),
        (std::process::ExitCode::from(2), 2),
    ]
    .into_iter()
    .find(|(known, _)| *known == code)
    .map_or(99, |(_, number)| number);
    std::process::exit(code);
}

/// Runs the application (this test binary, see [`app`]) in `dir` with `args`.
fn app_command(dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "app",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(APP_ARGS, args.join("\x1f"))
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The application's own output, without the test harness's lines around it.
fn app_transcript(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let own: String = stdout
        .lines()
        .filter(|line| !line.starts_with("running ") && !line.trim().is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    format!(
        "exit: {}\n--- stdout\n{own}--- stderr\n{}",
        exit(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn an_application_offers_inspect_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = v1_file(dir.path());
    let v1 = fs::read(&path).unwrap();

    let inspect = app_command(dir.path(), &["inspect", "settings.json"]);
    let dry_run = app_command(dir.path(), &["migrate", "settings.json", "--dry-run"]);
    assert_eq!(fs::read(&path).unwrap(), v1, "a dry run wrote");
    let migrate = app_command(dir.path(), &["migrate", "settings.json"]);
    assert_eq!(migrate.status.code(), Some(0));
    let again = app_command(dir.path(), &["migrate", "settings.json"]);
    insta::assert_snapshot!(
        [&inspect, &dry_run, &migrate, &again]
            .map(app_transcript)
            .join("\n")
    );
    assert_eq!(Settings::load(&path).unwrap().theme, "light");
    assert_eq!(
        fs::read(dir.path().join("settings.json.v1.bak")).unwrap(),
        v1
    );
}

#[test]
fn an_application_refuses_what_it_cannot_read_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("future.json"), r#"{"version":9,"data":{}}"#).unwrap();
    fs::write(
        dir.path().join("broken.json"),
        r#"{"version":2,"data":{"theme":"#,
    )
    .unwrap();
    fs::write(dir.path().join("legacy.json"), r#"{"theme":"sepia"}"#).unwrap();
    let future = app_command(dir.path(), &["migrate", "future.json"]);
    let broken = app_command(dir.path(), &["inspect", "broken.json"]);
    let missing = app_command(dir.path(), &["migrate", "missing.json"]);
    let usage = app_command(dir.path(), &["migrate"]);
    let legacy = app_command(dir.path(), &["migrate", "legacy.json"]);
    assert_eq!(future.status.code(), Some(1));
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(legacy.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(dir.path().join("future.json")).unwrap(),
        r#"{"version":9,"data":{}}"#
    );
    insta::assert_snapshot!(
        [&future, &broken, &missing, &usage, &legacy]
            .map(app_transcript)
            .join("\n")
    );
    assert_eq!(
        Settings::load(dir.path().join("legacy.json"))
            .unwrap()
            .theme,
        "sepia"
    );
}

#[test]
fn verify_and_show_read_collection_directories() {
    let dir = tempfile::tempdir().unwrap();
    let users: persist::Collection<Settings> = Options::new()
        .checksum(true)
        .collection(dir.path().join("users"))
        .unwrap();
    for key in ["alice", "Bob", "a/b"] {
        users.put(key, &settings()).unwrap();
    }
    users.update("alice", |_| {}).unwrap(); // a lock file beside the entry
    let intact = persist(dir.path(), &["verify", "users"]);
    assert_eq!(intact.status.code(), Some(0), "{}", transcript(&intact));

    // An entry is a state file: `show` prints it, key member and all.
    let entry = dir
        .path()
        .join("users")
        .join(format!("{:02x}", crc32c_low("~42ob")))
        .join("~42ob");
    let shown = persist(dir.path(), &["show", entry.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(0), "{}", transcript(&shown));

    // A flipped bit in one entry: named, and only that one.
    let mut bytes = fs::read(&entry).unwrap();
    let at = bytes.windows(4).position(|w| w == b"dark").unwrap();
    bytes[at] = b'D';
    fs::write(&entry, bytes).unwrap();
    let damaged = persist(dir.path(), &["verify", "users"]);
    assert_eq!(damaged.status.code(), Some(1));
    let report = String::from_utf8_lossy(&damaged.stdout).into_owned()
        + &String::from_utf8_lossy(&damaged.stderr);
    assert!(report.contains("~42ob"), "{report}");
    assert_eq!(
        report.lines().filter(|line| line.contains("users")).count(),
        1,
        "{report}"
    );
}

/// The shard of an entry name: the low byte of its CRC-32C (FORMAT.md, section 5).
fn crc32c_low(name: &str) -> u32 {
    // CRC-32C, bit by bit (reflected polynomial 0x82F63B78).
    let mut crc = !0u32;
    for byte in name.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc & 0xff
}

#[test]
fn journal_follow_prints_records_as_they_are_appended_across_a_checkpoint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let journal = persist::Journal::<Event, Event>::open(&path).unwrap();
    journal
        .append(&Event {
            id: 0,
            text: "event 0".to_owned(),
        })
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_persist"))
        .args(["journal", "events.log", "--follow"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    let event = |id: u64| Event {
        id,
        text: format!("event {id}"),
    };
    assert_eq!(next(), r#"#0 @24 v3 {"id":0,"text":"event 0"}"#);
    journal.append(&event(1)).unwrap();
    assert!(next().starts_with("#1 @"));
    journal.checkpoint(&event(1)).unwrap();
    journal.append(&event(2)).unwrap();
    assert_eq!(next(), r#"#2 @24 v3 {"id":2,"text":"event 2"}"#);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn backups_lists_the_damaged_files_saves_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    fs::write(&path, b"{\"version\":2,\"data\":{\"th").unwrap();
    Settings::default().save(&path).unwrap();
    let listed = persist(dir.path(), &["backups", "settings.json"]);
    assert_eq!(listed.status.code(), Some(0));
    let stdout = String::from_utf8(listed.stdout).unwrap();
    assert!(
        stdout.starts_with("damaged      ./settings.json.corrupt-")
            || stdout.starts_with("damaged      settings.json.corrupt-"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(24 bytes: a damaged file kept aside as it was"),
        "{stdout}"
    );
    // And `verify` skips the copy: the new file is whole.
    let verified = persist(dir.path(), &["verify", "."]);
    assert_eq!(verified.status.code(), Some(0), "{}", transcript(&verified));
}

#[test]
fn verify_repair_puts_the_newest_good_generation_back_and_keeps_the_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let path = state.join("settings.json");
    let options = Options::new().generations(2).checksum(true);
    let mut value = settings();
    for zoom in [1.0, 2.0, 3.0] {
        value.zoom = zoom;
        options.save(&value, &path).unwrap();
    }
    // Damaged: a bit flipped inside the data, which only the checksum tells.
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"dark").unwrap();
    bytes[at] = b'D';
    fs::write(&path, &bytes).unwrap();
    // A file without any copy to fall back to.
    let lone = state.join("lone.json");
    fs::write(&lone, r#"{"version":2,"data":{"#).unwrap();

    // Without --repair, nothing is written.
    let before = names_in(&state);
    let checked = persist(dir.path(), &["verify", "state"]);
    assert_eq!(checked.status.code(), Some(1));
    assert_eq!(names_in(&state), before);

    let repaired = persist(dir.path(), &["verify", "--repair", "state"]);
    let out = String::from_utf8_lossy(&repaired.stdout).into_owned();
    assert_eq!(repaired.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "settings.json: repaired: the damaged file was moved to state/settings.json.corrupt-"
        ) && out.contains(" and state/settings.json.gen-2 put in its place"),
        "{out}"
    );
    assert!(out.contains("lone.json: not repaired"), "{out}");
    // gen-2 is the file now: listed before the repair, it is not counted after it.
    assert!(out.contains("2 of 3 files damaged, 1 repaired"), "{out}");
    assert_eq!(Settings::load(&path).unwrap().zoom, 2.0);
    let kept: Vec<_> = names_in(&state)
        .into_iter()
        .filter(|name| name.starts_with("settings.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(fs::read(state.join(&kept[0])).unwrap(), bytes);

    // Only the lone file is left damaged; backups lists what was kept.
    fs::remove_file(&lone).unwrap();
    let again = persist(dir.path(), &["verify", "--repair", "state/settings.json"]);
    assert_eq!(again.status.code(), Some(0));
    let listed = persist(dir.path(), &["backups", "state/settings.json"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    // The generation put back is the file now: it is not kept twice.
    assert!(!listed.contains("generation 2 of version 2"), "{listed}");
    assert!(listed.contains("generation 1 of version 2"), "{listed}");
    assert!(listed.contains("damaged "), "{listed}");

    let misuse = persist(dir.path(), &["show", "--repair", "state/settings.json"]);
    assert_eq!(misuse.status.code(), Some(2));
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
