//! The audit log (`Options::audit`, issue 14): one record per successful save, update, removal,
//! restore and commit, with the versions, size, CRC-32C, process and actor, never the data;
//! nothing for failures or loads; many processes appending to one log.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use persist::{AuditLog, AuditOp, AuditRecord, Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    theme: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
struct Settings {
    theme: String,
    volume: u8,
}

impl From<SettingsV1> for Settings {
    fn from(old: SettingsV1) -> Settings {
        Settings {
            theme: old.theme,
            volume: 5,
        }
    }
}

/// A value no one should ever find in the audit log.
const SECRET: &str = "correct horse battery staple";

fn settings(volume: u8) -> Settings {
    Settings {
        theme: SECRET.to_owned(),
        volume,
    }
}

fn records(log: &Path) -> Vec<AuditRecord> {
    AuditLog::read(log)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The record's size and CRC-32C are those of the file as it is now.
fn assert_describes_file(record: &AuditRecord, path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(record.bytes, bytes.len() as u64);
    assert_eq!(record.crc32c, Some(crc32c::crc32c(&bytes)));
}

#[test]
fn every_kind_of_operation_is_recorded_without_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = dir.path().join("settings.json");
    let options = Options::new().audit(&log).actor("alice");
    assert_eq!(options.audit_log(), Some(log.as_path()));

    SettingsV1 {
        theme: "old".into(),
    }
    .save(&path)
    .unwrap(); // not audited: other options
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    options.save(&settings(1), &path).unwrap();
    let saved = &records(&log)[0];
    assert_eq!(saved.operation, AuditOp::Save);
    assert_eq!(saved.path, path);
    assert_eq!((saved.from_version, saved.to_version), (Some(1), Some(2)));
    assert_eq!(saved.actor.as_deref(), Some("alice"));
    assert_eq!(saved.pid, std::process::id());
    assert!(saved.time >= before && saved.time <= std::time::SystemTime::now());
    assert_describes_file(saved, &path);

    options
        .update_or(&path, || settings(0), |s: &mut Settings| s.volume += 1)
        .unwrap();
    let updated = records(&log)[1].clone();
    assert_eq!(updated.operation, AuditOp::Update);
    assert_eq!(
        (updated.from_version, updated.to_version),
        (Some(2), Some(2))
    );
    assert_describes_file(&updated, &path);

    // The save of version 2 kept the version-1 file as a backup: put it back.
    options.restore_backup(&path, 1).unwrap();
    let restored = records(&log)[2].clone();
    assert_eq!(restored.operation, AuditOp::Restore);
    assert_eq!(
        (restored.from_version, restored.to_version),
        (Some(2), Some(1))
    );
    assert_describes_file(&restored, &path);

    options.remove(&path).unwrap();
    let removed = records(&log)[3].clone();
    assert_eq!(removed.operation, AuditOp::Remove);
    assert_eq!((removed.from_version, removed.to_version), (Some(1), None));
    assert_eq!((removed.bytes, removed.crc32c), (0, None));
    // Removing what is not there records nothing.
    options.remove(&path).unwrap();
    assert_eq!(records(&log).len(), 4);

    let log_bytes = std::fs::read(&log).unwrap();
    assert!(
        !log_bytes
            .windows(SECRET.len())
            .any(|window| window == SECRET.as_bytes()),
        "the audit log holds the data"
    );
}

#[test]
fn a_commit_records_each_of_its_files_at_one_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let root = dir.path().join("state");
    let options = Options::new().audit(&log).actor("batch job");
    let mut txn = options.transaction(&root).unwrap();
    txn.save(&settings(1), "a.json").unwrap();
    txn.save(&settings(2), "b/c.json").unwrap();
    txn.commit().unwrap();
    let mut txn = options.transaction(&root).unwrap();
    txn.save(&settings(3), "a.json").unwrap();
    txn.remove("b/c.json").unwrap();
    txn.commit().unwrap();

    let records = records(&log);
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|record| record.operation == AuditOp::Commit)
    );
    assert_eq!(records[0].time, records[1].time);
    assert_eq!(records[2].time, records[3].time);
    let (a, c) = (root.join("a.json"), root.join("b/c.json"));
    assert_eq!(
        (records[0].path.as_path(), records[0].from_version),
        (a.as_path(), None)
    );
    assert_eq!(
        (records[2].path.as_path(), records[2].from_version),
        (a.as_path(), Some(2))
    );
    assert_describes_file(&records[2], &a);
    assert_eq!(records[3].path, c);
    assert_eq!((records[3].to_version, records[3].crc32c), (None, None));
    // An empty transaction records nothing.
    options.transaction(&root).unwrap().commit().unwrap();
    assert_eq!(AuditLog::read(&log).unwrap().count(), 4);
}

#[test]
fn failures_and_loads_are_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = dir.path().join("settings.json");
    let options = Options::new().audit(&log);
    options.save(&settings(1), &path).unwrap();
    let _: Settings = options.load(&path).unwrap();
    let refused = options.try_update_or(
        &path,
        || settings(0),
        |_: &mut Settings| {
            Err::<(), _>(Error::InvalidKey {
                path: PathBuf::new(),
                reason: "refused on purpose".into(),
            })
        },
    );
    assert!(refused.is_err());
    // A file that is not a state file: the update fails before writing.
    std::fs::write(&path, "not json").unwrap();
    assert!(
        options
            .update_or(&path, || settings(0), |_: &mut Settings| {})
            .is_err()
    );
    let records = records(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].actor, None);
}

#[test]
fn an_audit_log_that_cannot_be_written_fails_the_call_after_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::create_dir(&log).unwrap(); // not a file: no record can go there
    let path = dir.path().join("settings.json");
    let error = Options::new()
        .audit(&log)
        .save(&settings(7), &path)
        .unwrap_err();
    match &error {
        Error::Audit {
            path: failed,
            log: named,
            ..
        } => {
            assert_eq!((failed, named), (&path, &log));
        }
        other => panic!("expected Error::Audit, got {other:?}"),
    }
    assert!(error.to_string().contains("audit log"), "{error}");
    // The save itself happened.
    assert_eq!(Settings::load(&path).unwrap(), settings(7));
}

#[test]
fn a_torn_record_is_cut_by_the_next_append_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = dir.path().join("settings.json");
    let options = Options::new().audit(&log);
    options.save(&settings(1), &path).unwrap();
    // A crash in the middle of another process's append.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(&[0x40, 0, 0, 0, 1, 0]).unwrap();
    drop(file);
    assert_eq!(records(&log).len(), 1);
    // Another process's options, which never saw the log.
    Options::new()
        .audit(&log)
        .save(&settings(2), &path)
        .unwrap();
    // And this one, which saw it before the torn record.
    options.save(&settings(3), &path).unwrap();
    let records = records(&log);
    assert_eq!(records.len(), 3);
    assert_describes_file(&records[2], &path);
    assert!(
        Options::new()
            .journal_records(&log)
            .unwrap()
            .torn_tail()
            .is_none()
    );
}

#[test]
fn damage_in_the_middle_is_an_error_naming_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = dir.path().join("settings.json");
    let options = Options::new().audit(&log);
    for volume in 0..3 {
        options.save(&settings(volume), &path).unwrap();
    }
    let mut bytes = std::fs::read(&log).unwrap();
    let second = persist::Options::new()
        .journal_records(&log)
        .unwrap()
        .nth(1)
        .unwrap()
        .unwrap()
        .offset;
    bytes[second as usize + 20] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let error = match AuditLog::read(&log) {
        Ok(records) => records
            .collect::<Result<Vec<_>, _>>()
            .expect_err("damage read as a record"),
        Err(error) => error,
    };
    assert!(
        matches!(error, Error::DamagedJournal { offset, .. } if offset == second),
        "{error:?}"
    );
    // And a process that opens the log later refuses to append after the damage rather than
    // hide it (one that appended already reads only what was appended since).
    let error = Options::new()
        .audit(&log)
        .save(&settings(9), &path)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Audit { source, .. } if matches!(**source, Error::DamagedJournal { .. })),
        "{error:?}"
    );
}

const CHILD_LOG: &str = "PERSIST_TEST_AUDIT_LOG";
const CHILD_SAVES: u8 = 50;

/// The body of each child of `processes_share_one_audit_log`. Does nothing when run directly.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn audit_child() {
    let Ok(log) = std::env::var(CHILD_LOG) else {
        return;
    };
    let log = Path::new(&log);
    let options = Options::new()
        .audit(log)
        .actor(format!("child {}", std::process::id()));
    let path = log.with_file_name(format!("{}.json", std::process::id()));
    for volume in 0..CHILD_SAVES {
        options.save(&settings(volume), &path).unwrap();
    }
}

#[test]
fn processes_share_one_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let children: Vec<_> = (0..4)
        .map(|_| {
            common::child("audit_child", &[(CHILD_LOG, &log)])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pids = Vec::new();
    for mut child in children {
        pids.push(child.id());
        assert!(child.wait().unwrap().success());
    }
    let records = records(&log);
    assert_eq!(records.len(), 4 * usize::from(CHILD_SAVES));
    for pid in pids {
        let own: Vec<&AuditRecord> = records.iter().filter(|r| r.pid == pid).collect();
        assert_eq!(own.len(), usize::from(CHILD_SAVES));
        assert!(own.iter().all(|r| r.actor == Some(format!("child {pid}"))));
        assert!(own.iter().all(|r| r.path.ends_with(format!("{pid}.json"))));
        assert_describes_file(own.last().unwrap(), &dir.path().join(format!("{pid}.json")));
    }
}

#[test]
fn the_log_is_a_journal_of_audit_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = dir.path().join("settings.json");
    Options::new()
        .audit(&log)
        .actor("ops")
        .save(&settings(1), &path)
        .unwrap();
    // Readable as a journal (here with `Journal`, which takes the log's lock while it is open).
    let journal = persist::Journal::<AuditRecord>::open(&log).unwrap();
    let replayed: Vec<AuditRecord> = journal.replay().unwrap().map(Result::unwrap).collect();
    assert_eq!(replayed, records(&log));
    // And each record is JSON a person (or `persist journal audit.log`) can read.
    let raw = Options::new()
        .journal_records(&log)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&raw.data).unwrap();
    assert_eq!(json["op"], "save");
    assert_eq!(json["actor"], "ops");
    assert_eq!(json["to_version"], 2);
    assert!(json["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
}

#[test]
fn collection_writes_are_recorded_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let options = Options::new().audit(&log).actor("api");
    // Version-1 entries first, without the audit log, for the migration below.
    let old = Options::new()
        .collection::<SettingsV1>(dir.path().join("users"))
        .unwrap();
    old.put("carol", &SettingsV1 { theme: "v1".into() })
        .unwrap();
    let users = options
        .collection::<Settings>(dir.path().join("users"))
        .unwrap();
    users.put("alice", &settings(1)).unwrap();
    users
        .put_many([("bob", &settings(2)), ("dave", &settings(3))])
        .unwrap();
    users.update("alice", |s| s.volume += 10).unwrap();
    assert!(users.delete("bob").unwrap());
    assert!(!users.delete("bob").unwrap()); // nothing to delete: no record
    let report = users.migrate_all().unwrap();
    assert_eq!(report.migrated, 1);

    let records = records(&log);
    let summary: Vec<(AuditOp, &str, Option<u64>, Option<u64>)> = records
        .iter()
        .map(|r| {
            (
                r.operation,
                r.key.as_deref().unwrap(),
                r.from_version,
                r.to_version,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (AuditOp::Save, "alice", None, Some(2)),
            (AuditOp::Save, "bob", None, Some(2)),
            (AuditOp::Save, "dave", None, Some(2)),
            (AuditOp::Update, "alice", Some(2), Some(2)),
            (AuditOp::Remove, "bob", None, None),
            (AuditOp::Update, "carol", Some(1), Some(2)),
        ]
    );
    assert_eq!(records[1].time, records[2].time, "one batch, one time");
    // The path is the entry's file, and the record describes its bytes.
    assert!(records[3].path.starts_with(dir.path().join("users")));
    assert_describes_file(&records[3], &records[3].path);
    assert_describes_file(&records[5], &records[5].path);
    assert!(records.iter().all(|r| r.actor.as_deref() == Some("api")));
}

#[test]
fn a_collection_not_on_files_is_recorded_by_its_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let users: persist::Collection<Settings> = persist::Collection::with_backend(
        std::sync::Arc::new(persist::backend::Memory::new()),
        Options::new().audit(&log),
    );
    users.put("alice", &settings(1)).unwrap();
    let records = records(&log);
    // The backend's name for the entry, not a path of this machine's working directory.
    assert_eq!(records[0].path, Path::new("memory:alice"));
    assert_eq!(records[0].key.as_deref(), Some("alice"));
}

#[test]
fn a_cleared_collection_records_each_removal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let users = Options::new()
        .audit(&log)
        .collection::<Settings>(dir.path().join("users"))
        .unwrap();
    users.put("m", &settings(1)).unwrap();
    users.put("n", &settings(2)).unwrap();
    users.clear().unwrap();
    let removed: Vec<(AuditOp, Option<String>)> = records(&log)
        .into_iter()
        .skip(2)
        .map(|record| (record.operation, record.key))
        .collect();
    assert_eq!(
        removed,
        [
            (AuditOp::Remove, Some("m".to_owned())),
            (AuditOp::Remove, Some("n".to_owned()))
        ]
    );
}
