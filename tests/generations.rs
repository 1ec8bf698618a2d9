//! Generations (`Options::generations`) and what a load does with a damaged file
//! (`Options::on_corrupt`): the last good versions kept, rotated, private and removed with the
//! file; `LastGood` falls back to the newest that loads and keeps the damaged file aside;
//! `Default` falls back to the default value; `Fail` changes nothing.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::names;
use persist::{Error, LoadOutcome, OnCorrupt, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct NotesV1 {
    text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = NotesV1)]
struct Notes {
    text: String,
    count: u32,
}

impl From<NotesV1> for Notes {
    fn from(old: NotesV1) -> Self {
        Notes {
            text: old.text,
            count: 0,
        }
    }
}

fn notes(count: u32) -> Notes {
    Notes {
        text: format!("note {count}"),
        count,
    }
}

fn generations(path: &Path) -> Vec<(u64, PathBuf)> {
    Options::new()
        .backups_of(path)
        .unwrap()
        .into_iter()
        .filter_map(|kept| Some((kept.generation?, kept.path)))
        .collect()
}

fn corrupt_copies(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| matches!(persist::file_role(path), persist::FileRole::Corrupt { .. }))
        .collect();
    found.sort();
    found
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_last_n_saves_are_kept_newest_first_and_older_ones_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(3);
    for count in 1..=6 {
        options.save(&notes(count), &path).unwrap();
    }
    let kept = generations(&path);
    assert_eq!(
        kept.iter().map(|(number, _)| *number).collect::<Vec<_>>(),
        [5, 4, 3]
    );
    // Each holds the file the next save replaced: generation N is the Nth save's file.
    for (number, path) in &kept {
        let value: Notes = Options::new().load(path).unwrap();
        assert_eq!(value, notes(*number as u32));
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    assert_eq!(Notes::load(&path).unwrap(), notes(6));
    assert_eq!(
        names(dir.path()),
        [
            "notes.json",
            "notes.json.gen-3",
            "notes.json.gen-4",
            "notes.json.gen-5"
        ]
    );
}

#[test]
fn zero_generations_keeps_none_and_removes_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    for count in 1..=3 {
        Options::new()
            .generations(2)
            .save(&notes(count), &path)
            .unwrap();
    }
    assert_eq!(generations(&path).len(), 2);
    for count in 4..=6 {
        Options::new().save(&notes(count), &path).unwrap();
    }
    // Saves without the option leave the generations as they are.
    assert_eq!(
        generations(&path)
            .iter()
            .map(|(number, _)| *number)
            .collect::<Vec<_>>(),
        [2, 1]
    );
}

#[test]
fn a_generation_is_the_replaced_file_itself_not_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(1);
    options.save(&notes(1), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let inode = fs::metadata(&path).unwrap().ino();
    options.save(&notes(2), &path).unwrap();
    let (_, generation) = &generations(&path)[0];
    let metadata = fs::metadata(generation).unwrap();
    assert_eq!(metadata.ino(), inode);
    assert_eq!(metadata.nlink(), 1);
    // The generation is private; the state file keeps the mode its owner gave it.
    assert_eq!(mode(generation), 0o600);
    assert_eq!(mode(&path), 0o644);
}

#[test]
fn a_file_with_other_names_is_copied_and_its_other_names_keep_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(1);
    options.save(&notes(1), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let other = dir.path().join("elsewhere.json");
    fs::hard_link(&path, &other).unwrap();
    options.save(&notes(2), &path).unwrap();
    let (_, generation) = &generations(&path)[0];
    assert_ne!(
        fs::metadata(generation).unwrap().ino(),
        fs::metadata(&other).unwrap().ino()
    );
    assert_eq!(fs::read(generation).unwrap(), fs::read(&other).unwrap());
    assert_eq!(mode(generation), 0o600);
    assert_eq!(mode(&other), 0o644);
}

#[test]
fn generations_of_another_version_sit_beside_its_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    NotesV1 { text: "old".into() }.save(&path).unwrap();
    let options = Options::new().generations(2);
    let migrated: Notes = options.load(&path).unwrap();
    options.save(&migrated, &path).unwrap();
    let kept = options.backups_of(&path).unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter()
            .any(|k| k.generation.is_none() && k.version == 1)
    );
    assert!(
        kept.iter()
            .any(|k| k.generation == Some(1) && k.version == 1)
    );
    for kept in &kept {
        assert_eq!(mode(&kept.path), 0o600, "{}", kept.path.display());
        assert_eq!(
            Options::new().load::<NotesV1>(&kept.path).unwrap().text,
            "old"
        );
    }
}

#[test]
fn remove_takes_the_generations_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(3);
    for count in 1..=4 {
        options.save(&notes(count), &path).unwrap();
    }
    options.remove(&path).unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn a_damaged_file_is_no_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(3);
    options.save(&notes(1), &path).unwrap();
    options.save(&notes(2), &path).unwrap();
    fs::write(&path, "{\"version\":2,\"data\":{\"te").unwrap();
    options.save(&notes(3), &path).unwrap();
    assert_eq!(generations(&path).len(), 1);
    assert_eq!(corrupt_copies(dir.path()).len(), 1);
}

#[test]
fn a_failed_save_leaves_no_generation_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(2);
    options.save(&notes(1), &path).unwrap();
    options.save(&notes(2), &path).unwrap();
    let before = names(dir.path());
    for op in [persist::IoOp::SyncFile, persist::IoOp::Rename] {
        let fault = persist::testing::inject_fault(dir.path(), op, libc::EIO, 1);
        options.save(&notes(3), &path).unwrap_err();
        assert_eq!(fault.hits(), 1);
        assert_eq!(names(dir.path()), before, "{op:?}");
        assert_eq!(Notes::load(&path).unwrap(), notes(2));
    }
}

/// The ways a file is destroyed after it was written: zeroed, cut short, a flipped bit
/// (caught by the checksum).
fn destroy(path: &Path, how: &str) {
    let mut bytes = fs::read(path).unwrap();
    match how {
        "zeroed" => bytes.iter_mut().for_each(|byte| *byte = 0),
        "truncated" => bytes.truncate(bytes.len() / 2),
        "bit flipped" => {
            let at = bytes.iter().position(|&b| b == b'n').unwrap();
            bytes[at] ^= 0x04;
        }
        "empty" => bytes.clear(),
        other => unreachable!("{other}"),
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn last_good_loads_the_newest_generation_that_loads_and_keeps_the_damaged_file() {
    for how in ["zeroed", "truncated", "bit flipped"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.json");
        let options = Options::new().generations(3).checksum(true);
        for count in 1..=4 {
            options.save(&notes(count), &path).unwrap();
        }
        // The newest generation is damaged too: the one before it loads.
        let newest = generations(&path)[0].1.clone();
        let good = generations(&path)[1].1.clone();
        destroy(&newest, "truncated");
        destroy(&path, how);
        let damaged = fs::read(&path).unwrap();

        // Fail, the default: the error, and nothing changed.
        let before = common::listing(dir.path());
        let error = options.load::<Notes>(&path).unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{how}: {error}");
        assert_eq!(common::listing(dir.path()), before, "{how}");

        let recovering = options.on_corrupt(OnCorrupt::LastGood);
        let loaded = recovering.load_reported::<Notes>(&path).unwrap();
        assert_eq!(loaded.value, notes(2), "{how}");
        let LoadOutcome::LastGood(fallback) = &loaded.outcome else {
            panic!("{how}: {:?}", loaded.outcome);
        };
        assert!(matches!(fallback.error, Error::Corrupt { .. }), "{how}");
        assert_eq!(fallback.from.as_deref(), Some(&*good));
        // That generation is the file now: not kept twice (the next save keeps it again).
        assert!(!good.exists(), "{how}");
        assert_eq!(generations(&path).len(), 2, "{how}");
        let told = fallback.to_string();
        assert!(
            told.starts_with(&format!("{}: corrupt", path.display()))
                && told.contains(&format!("{} was put in its place", good.display())),
            "{told}"
        );
        assert!(
            !fallback.to_string().contains("left as it was"),
            "{fallback}"
        );
        assert_eq!(
            corrupt_copies(dir.path()),
            std::slice::from_ref(&fallback.damaged)
        );
        assert_eq!(fs::read(&fallback.damaged).unwrap(), damaged, "{how}");
        assert_eq!(mode(&fallback.damaged), 0o600);
        // The file holds the generation now: a plain load reads it.
        assert_eq!(Notes::load(&path).unwrap(), notes(2), "{how}");
        assert!(matches!(
            recovering.load_reported::<Notes>(&path).unwrap().outcome,
            LoadOutcome::Intact
        ));
    }
}

#[test]
fn last_good_falls_back_to_a_backup_of_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    NotesV1 {
        text: "kept".into(),
    }
    .save(&path)
    .unwrap();
    let migrated = Notes::load(&path).unwrap();
    migrated.save(&path).unwrap();
    destroy(&path, "zeroed");
    let options = Options::new().on_corrupt(OnCorrupt::LastGood);
    let loaded = options.load_reported::<Notes>(&path).unwrap();
    assert_eq!(loaded.value.text, "kept");
    let from = loaded.outcome.fallback().unwrap().from.clone().unwrap();
    assert_eq!(from, dir.path().join("notes.json.v1.bak"));
    // The backup's bytes are in place: version 1, migrated by each load until a save.
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .starts_with("{\"version\":1,")
    );
}

#[test]
fn without_a_copy_that_loads_last_good_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    notes(1).save(&path).unwrap();
    destroy(&path, "truncated");
    let before = common::listing(dir.path());
    let options = Options::new().on_corrupt(OnCorrupt::LastGood);
    assert!(matches!(
        options.load::<Notes>(&path),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        options.load_or_default::<Notes>(&path),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(common::listing(dir.path()), before);
}

#[test]
fn default_falls_back_to_the_default_value_and_moves_the_damaged_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    notes(1).save(&path).unwrap();
    destroy(&path, "truncated");
    let damaged = fs::read(&path).unwrap();
    let options = Options::new().on_corrupt(OnCorrupt::Default);
    // `load` has no default: as LastGood, the error.
    assert!(matches!(
        options.load::<Notes>(&path),
        Err(Error::Corrupt { .. })
    ));
    let loaded = options.load_or_default_reported::<Notes>(&path).unwrap();
    assert_eq!(loaded.value, Notes::default());
    let LoadOutcome::Defaulted(fallback) = &loaded.outcome else {
        panic!("{:?}", loaded.outcome);
    };
    assert_eq!(fallback.from, None);
    assert_eq!(fs::read(&fallback.damaged).unwrap(), damaged);
    assert!(!path.exists());
    assert!(matches!(
        options
            .load_or_default_reported::<Notes>(&path)
            .unwrap()
            .outcome,
        LoadOutcome::Missing
    ));
}

#[test]
fn default_prefers_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(1).on_corrupt(OnCorrupt::Default);
    options.save(&notes(1), &path).unwrap();
    options.save(&notes(2), &path).unwrap();
    destroy(&path, "zeroed");
    assert_eq!(options.load_or_default::<Notes>(&path).unwrap(), notes(1));
}

#[test]
fn update_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new()
        .generations(2)
        .on_corrupt(OnCorrupt::LastGood);
    options.save(&notes(1), &path).unwrap();
    options.save(&notes(2), &path).unwrap();
    destroy(&path, "truncated");
    let updated = options
        .update(&path, |value: &mut Notes| value.count += 10)
        .unwrap();
    assert_eq!(updated.count, 11);
    assert_eq!(Notes::load(&path).unwrap().count, 11);
    assert_eq!(corrupt_copies(dir.path()).len(), 1);

    // Fail: the update fails and the damaged file stays.
    destroy(&path, "truncated");
    let error = Options::new()
        .update(&path, |value: &mut Notes| value.count += 1)
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[cfg(feature = "encryption")]
#[test]
fn a_file_that_does_not_decrypt_is_never_replaced_by_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let right = persist::Key::from_bytes([7; 32]);
    let wrong = persist::Key::from_bytes([8; 32]);
    Options::new()
        .encrypt(right.clone())
        .generations(2)
        .save(&notes(1), &path)
        .unwrap();
    Options::new()
        .encrypt(right)
        .generations(2)
        .save(&notes(2), &path)
        .unwrap();
    let before = common::listing(dir.path());
    let options = Options::new().encrypt(wrong).on_corrupt(OnCorrupt::Default);
    let error = options.load_or_default::<Notes>(&path).unwrap_err();
    assert!(matches!(error, Error::Decrypt { .. }), "{error}");
    // The lock file of the look under the lock aside, nothing changed.
    let mut after = common::listing(dir.path());
    after.retain(|(path, _)| persist::file_role(path) != persist::FileRole::Lock);
    assert_eq!(after, before);
}

#[test]
fn backups_of_and_file_role_name_generations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(2);
    for count in 1..=3 {
        options.save(&notes(count), &path).unwrap();
    }
    for kept in options.backups_of(&path).unwrap() {
        assert_eq!(kept.version, 2);
        assert_eq!(
            persist::file_role(&kept.path),
            persist::FileRole::Generation {
                number: kept.generation.unwrap()
            }
        );
        assert!(persist::file_role(&kept.path).holds_data());
    }
}

#[test]
fn collection_entries_keep_generations_which_are_no_keys_and_go_with_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().generations(2);
    let collection: persist::Collection<Notes> = options.collection(dir.path()).unwrap();
    for count in 1..=4 {
        collection.put("alice", &notes(count)).unwrap();
    }
    collection.put("bob", &notes(9)).unwrap();
    let entry = collection.backend().locate("alice");
    let kept = options.backups_of(&entry).unwrap();
    assert_eq!(
        kept.iter().map(|k| k.generation).collect::<Vec<_>>(),
        [Some(3), Some(2)]
    );
    assert_eq!(
        collection.keys().unwrap().sorted().unwrap(),
        ["alice", "bob"]
    );
    assert!(collection.delete("alice").unwrap());
    assert!(options.backups_of(&entry).unwrap().is_empty());
    assert_eq!(collection.keys().unwrap().sorted().unwrap(), ["bob"]);
}

#[test]
fn a_damaged_collection_entry_recovers_from_its_own_generation() {
    for how in ["zeroed", "truncated", "bit flipped"] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::new()
            .generations(2)
            .checksum(true)
            .on_corrupt(OnCorrupt::LastGood);
        let collection: persist::Collection<Notes> = options.collection(dir.path()).unwrap();
        for count in 1..=3 {
            collection.put("alice", &notes(count)).unwrap();
        }
        collection.put("bob", &notes(9)).unwrap();
        let entry = collection.backend().locate("alice");
        let bob = fs::read(collection.backend().locate("bob")).unwrap();
        destroy(&entry, how);
        let damaged_bytes = fs::read(&entry).unwrap();

        // Without the policy, the damage is the error and nothing changes.
        let strict: persist::Collection<Notes> = Options::new()
            .checksum(true)
            .collection(dir.path())
            .unwrap();
        let error = strict.get("alice").unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{how}: {error:?}");
        assert_eq!(fs::read(&entry).unwrap(), damaged_bytes, "{how}");

        // The entry's newest generation (the save of 2), not another entry's.
        assert_eq!(collection.get("alice").unwrap(), Some(notes(2)), "{how}");
        assert_eq!(
            Notes::load(&entry).unwrap(),
            notes(2),
            "{how}: put in its place"
        );
        let shard = entry.parent().unwrap();
        let kept = corrupt_copies(shard);
        assert_eq!(kept.len(), 1, "{how}: {kept:?}");
        assert_eq!(fs::read(&kept[0]).unwrap(), damaged_bytes, "{how}");
        assert_eq!(mode(&kept[0]), 0o600, "{how}");
        assert_eq!(fs::read(collection.backend().locate("bob")).unwrap(), bob);
        assert_eq!(
            collection.keys().unwrap().sorted().unwrap(),
            ["alice", "bob"],
            "{how}"
        );
    }
}

#[test]
fn a_collection_update_follows_the_policy_and_default_acts_as_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().generations(1).on_corrupt(OnCorrupt::Default);
    let collection: persist::Collection<Notes> = options.collection(dir.path()).unwrap();
    collection.put("alice", &notes(1)).unwrap();
    collection.put("alice", &notes(2)).unwrap();
    let entry = collection.backend().locate("alice");
    destroy(&entry, "zeroed");
    let updated = collection
        .update("alice", |value| value.count += 10)
        .unwrap();
    assert_eq!(
        updated.count, 11,
        "the update ran on the generation's value"
    );
    assert_eq!(collection.get("alice").unwrap().unwrap().count, 11);

    // No generation that loads: the error, and the entry left as it was (no default).
    let lone: persist::Collection<Notes> = Options::new()
        .on_corrupt(OnCorrupt::Default)
        .collection(dir.path().join("lone"))
        .unwrap();
    lone.put("carol", &notes(1)).unwrap();
    let carol = lone.backend().locate("carol");
    destroy(&carol, "zeroed");
    let before = fs::read(&carol).unwrap();
    assert!(matches!(lone.get("carol"), Err(Error::Corrupt { .. })));
    assert!(matches!(
        lone.update("carol", |value| value.count = 5),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(fs::read(&carol).unwrap(), before);
    assert!(corrupt_copies(carol.parent().unwrap()).is_empty());
}

#[test]
fn a_planted_link_among_an_entry_s_generations_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let options = Options::new()
        .generations(1)
        .on_corrupt(OnCorrupt::LastGood);
    let collection: persist::Collection<Notes> = options.collection(dir.path()).unwrap();
    collection.put("alice", &notes(1)).unwrap();
    let entry = collection.backend().locate("alice");
    // A file outside that would load as the entry, linked in as a newer generation.
    let secret = outside.path().join("secret.json");
    fs::copy(&entry, &secret).unwrap();
    std::os::unix::fs::symlink(&secret, entry.with_file_name("alice.gen-9")).unwrap();
    destroy(&entry, "zeroed");
    assert!(matches!(
        collection.get("alice"),
        Err(Error::Corrupt { .. })
    ));
    assert!(corrupt_copies(entry.parent().unwrap()).is_empty());
}

/// A wrong key must not make a copy in clear (made before the file was encrypted) the state:
/// it would load whatever the key, and put old data in clear in the file's place.
#[cfg(feature = "encryption")]
#[test]
fn a_wrong_key_never_puts_a_copy_in_clear_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let right = persist::Key::from_bytes([7; 32]);
    let wrong = persist::Key::from_bytes([8; 32]);
    // Saved in clear first, then encrypted: the generations hold the copy in clear.
    Options::new()
        .generations(3)
        .save(&notes(1), &path)
        .unwrap();
    let encrypted = Options::new().generations(3).encrypt(right.clone());
    encrypted.save(&notes(2), &path).unwrap();
    encrypted.save(&notes(3), &path).unwrap();
    let before = common::listing(dir.path());
    for policy in [OnCorrupt::LastGood, OnCorrupt::Default] {
        let options = Options::new()
            .generations(3)
            .encrypt(wrong.clone())
            .on_corrupt(policy);
        let error = options.load_or_default::<Notes>(&path).unwrap_err();
        assert!(
            matches!(error, Error::Decrypt { .. }),
            "{policy:?}: {error}"
        );
        let mut after = common::listing(dir.path());
        after.retain(|(path, _)| persist::file_role(path) != persist::FileRole::Lock);
        assert_eq!(after, before, "{policy:?}");
    }
    // With the right key, a damaged file falls back to an encrypted generation, never to the
    // one in clear.
    destroy(&path, "zeroed");
    let options = encrypted.clone().on_corrupt(OnCorrupt::LastGood);
    assert_eq!(options.load::<Notes>(&path).unwrap(), notes(2));
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, validate = positive)]
struct Counter {
    count: i64,
}

fn positive(counter: &Counter) -> Result<(), String> {
    match counter.count > 0 {
        true => Ok(()),
        false => Err(format!("count {} is not positive", counter.count)),
    }
}

#[test]
fn a_value_validate_refuses_is_damage_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.json");
    let options = Options::new().generations(2);
    options.save(&Counter { count: 5 }, &path).unwrap();
    // Saves do not validate: a value the loads refuse gets written.
    options.save(&Counter { count: 0 }, &path).unwrap();
    assert!(matches!(
        options.load::<Counter>(&path),
        Err(Error::Migration { .. })
    ));
    let recovering = options.clone().on_corrupt(OnCorrupt::LastGood);
    let loaded = recovering.load_reported::<Counter>(&path).unwrap();
    assert_eq!(loaded.value.count, 5);
    let fallback = loaded.outcome.fallback().unwrap();
    assert!(
        fallback
            .error
            .to_string()
            .contains("count 0 is not positive"),
        "{}",
        fallback.error
    );
    // The app starts again, and saves go on.
    recovering
        .update::<Counter>(&path, |counter| counter.count += 1)
        .unwrap();
    assert_eq!(Counter::load(&path).unwrap().count, 6);
}

#[test]
fn last_good_reads_generations_of_a_newer_version_as_the_load_does() {
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
    #[persist(version = 3, migrate_from = Notes)]
    struct NotesV3 {
        text: String,
        count: u32,
        colour: String,
    }

    impl From<Notes> for NotesV3 {
        fn from(old: Notes) -> Self {
            NotesV3 {
                text: old.text,
                count: old.count,
                colour: "red".into(),
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let newer = NotesV3 {
        text: "t".into(),
        count: 1,
        colour: "blue".into(),
    };
    newer.save(&path).unwrap();
    let options = Options::new()
        .generations(3)
        .on_corrupt(OnCorrupt::LastGood)
        .on_newer(persist::OnNewer::KeepUnknown);
    for count in [16, 17] {
        options
            .update::<Notes>(&path, |notes| notes.count = count)
            .unwrap();
    }
    destroy(&path, "zeroed");
    let loaded = options.load_reported::<Notes>(&path).unwrap();
    assert_eq!(
        loaded.value.count, 16,
        "the newest generation, of version 3"
    );
    assert!(matches!(loaded.outcome, LoadOutcome::LastGood(_)));
    // Put back whole: the newer release still has its member.
    assert_eq!(NotesV3::load(&path).unwrap().colour, "blue");
}

#[test]
fn on_a_read_only_medium_the_damage_is_the_error_not_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let writable = dir.path().join("rw");
    fs::create_dir(&writable).unwrap();
    let path = writable.join("notes.json");
    let options = Options::new().generations(2);
    options.save(&notes(1), &path).unwrap();
    options.save(&notes(2), &path).unwrap();
    destroy(&path, "zeroed");
    let point = dir.path().join("ro");
    let Some(_mounted) = common::bind_mount(&writable, &point) else {
        return;
    };
    common::run("mount", &["-o", "remount,ro,bind", point.to_str().unwrap()]);
    let read_only = point.join("notes.json");
    let before = common::listing(&point);
    for policy in [OnCorrupt::LastGood, OnCorrupt::Default] {
        let options = Options::new().on_corrupt(policy);
        let error = options.load_or_default::<Notes>(&read_only).unwrap_err();
        assert!(
            matches!(error, Error::Corrupt { .. }),
            "{policy:?}: {error}"
        );
        assert_eq!(error.path(), read_only);
    }
    assert_eq!(common::listing(&point), before);
}

#[test]
fn a_hard_link_planted_as_a_generation_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new()
        .generations(1)
        .on_corrupt(OnCorrupt::LastGood);
    options.save(&notes(1), &path).unwrap();
    // A file elsewhere that would load as the state, linked in as the newest generation.
    let secret = outside.path().join("secret.json");
    notes(42).save(&secret).unwrap();
    fs::hard_link(&secret, path.with_file_name("notes.json.gen-99")).unwrap();
    destroy(&path, "zeroed");
    assert!(matches!(
        options.load::<Notes>(&path),
        Err(Error::Corrupt { .. })
    ));
    assert!(corrupt_copies(dir.path()).is_empty());
    assert_eq!(Notes::load(&secret).unwrap(), notes(42));
}

/// Another user flips the state file's name between a damaged file and a link to a file
/// elsewhere while a recovery runs: what is checked is what is kept and replaced, so the file
/// elsewhere is never moved, copied over or replaced.
#[test]
fn a_recovery_never_acts_on_a_file_it_did_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.conf");
    fs::write(&victim, b"root-only configuration, not JSON").unwrap();
    let path = dir.path().join("a.json");
    let link = dir.path().join("link");
    let damaged = dir.path().join("damaged");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, dir) = (stop.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A fresh damaged file, then the link, each renamed onto the name.
                let _ = fs::write(dir.join("damaged"), b"damaged{");
                let _ = fs::rename(dir.join("damaged"), dir.join("a.json"));
                let _ = fs::remove_file(dir.join("link2"));
                let _ = std::os::unix::fs::symlink(
                    fs::read_link(dir.join("link")).unwrap(),
                    dir.join("link2"),
                );
                let _ = fs::rename(dir.join("link2"), dir.join("a.json"));
                flips += 1;
            }
            flips
        })
    };
    let options = Options::new().on_corrupt(OnCorrupt::Default);
    let started = std::time::Instant::now();
    let mut recoveries = 0;
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        // A generation that loads, for LastGood to put back.
        let _ = fs::write(
            dir.path().join("a.json.gen-1"),
            br#"{"version":2,"data":{"text":"pwned","count":1}}"#,
        );
        let policy = if recoveries % 2 == 0 {
            OnCorrupt::LastGood
        } else {
            OnCorrupt::Default
        };
        let _ = options
            .clone()
            .on_corrupt(policy)
            .load_or_default_reported::<Notes>(&path);
        let _ = options.repair(&path);
        recoveries += 1;
        assert_eq!(
            fs::read(&victim).unwrap(),
            b"root-only configuration, not JSON",
            "after {recoveries} recoveries"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(
        flips > 10 && recoveries > 10,
        "{flips} flips, {recoveries} recoveries"
    );
    // Where the name was a link when it was looked at, the file it named was checked, so it
    // may have been dealt with as the state (write-through): kept whole as a copy beside it,
    // never moved, replaced or lost. Nothing else is made there but the lock file.
    let mut outside_names = common::names(outside.path());
    outside_names.sort();
    for name in &outside_names {
        if name.starts_with("victim.conf.corrupt-") {
            assert_eq!(
                fs::read(outside.path().join(name)).unwrap(),
                b"root-only configuration, not JSON"
            );
        }
    }
    outside_names.retain(|name| !name.ends_with(".lock") && !name.contains(".corrupt-"));
    assert_eq!(outside_names, ["victim.conf"]);
    let _ = (damaged, link);
}

#[test]
fn a_planted_last_generation_number_does_not_stop_saves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().generations(2);
    options.save(&notes(1), &path).unwrap();
    fs::write(
        path.with_file_name(format!("notes.json.gen-{}", u64::MAX)),
        b"planted",
    )
    .unwrap();
    let saver = {
        let (options, path) = (options.clone(), path.clone());
        std::thread::spawn(move || {
            for count in 2..=4 {
                options.save(&notes(count), &path).unwrap();
            }
        })
    };
    let started = std::time::Instant::now();
    while !saver.is_finished() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the saves hang"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    saver.join().unwrap();
    assert_eq!(Notes::load(&path).unwrap(), notes(4));
}

#[test]
fn default_on_a_linked_file_keeps_the_link_and_saves_go_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    let path = dir.path().join("notes.json");
    notes(1).save(&real).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    destroy(&real, "zeroed");
    let options = Options::new().on_corrupt(OnCorrupt::Default);
    let loaded = options.load_or_default_reported::<Notes>(&path).unwrap();
    assert_eq!(loaded.value, Notes::default());
    let fallback = loaded.outcome.fallback().unwrap();
    assert_eq!(
        fs::read(&fallback.damaged).unwrap(),
        vec![0; fs::metadata(&real).unwrap().len() as usize]
    );
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    options.save(&notes(2), &path).unwrap();
    assert_eq!(Notes::load(&real).unwrap(), notes(2));
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
