//! Backups: the first save after a migration keeps the old file as `<name>.v<N>.bak`, with a
//! retention limit, and a backup can be restored.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{AppState, AppStateV1, AppStateV2, copy_of_fixture, names, sample};
use persist::{Error, Options, Persisted};

fn v1() -> AppStateV1 {
    AppStateV1 {
        user: "grace".into(),
        dark_mode: true,
    }
}

#[test]
fn the_first_save_after_a_migration_keeps_the_old_file() {
    let (dir, path) = copy_of_fixture("v2.json");
    let original = fs::read(&path).unwrap();
    let state = AppState::load(&path).unwrap();
    state.save(&path).unwrap();

    let backup = dir.path().join("state.json.v2.bak");
    assert_eq!(fs::read(&backup).unwrap(), original);
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(AppStateV2::load(&backup).unwrap().user, "linus");

    // Later saves of the same version make no further backup.
    state.save(&path).unwrap();
    assert_eq!(names(dir.path()), ["state.json", "state.json.v2.bak"]);
    let backups = Options::new().backups_of(&path).unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!((backups[0].version, &backups[0].path), (2, &backup));
}

#[test]
fn a_file_without_an_envelope_is_kept_as_the_oldest_version() {
    let (dir, path) = copy_of_fixture("v1-unversioned.json");
    let original = fs::read(&path).unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v1.bak")).unwrap(),
        original
    );
}

#[test]
fn an_older_program_saving_over_a_newer_file_keeps_the_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let newer = fs::read(&path).unwrap();
    v1().save(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v4.bak")).unwrap(),
        newer
    );
}

#[test]
fn only_the_newest_backups_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = Options::new().backups(1);
    options.save(&v1(), &path).unwrap();
    options.save(&AppStateV2::from(v1()), &path).unwrap(); // keeps v1
    options.save(&sample(), &path).unwrap(); // keeps v2, drops v1 (2 backups > 1)
    assert_eq!(names(dir.path()), ["state.json", "state.json.v2.bak"]);
    // An older program over the newer file: the v4 file is kept, and neither it nor the v2
    // backup (both newer than what this program writes) counts against the limit.
    options.save(&v1(), &path).unwrap();
    assert_eq!(
        names(dir.path()),
        ["state.json", "state.json.v2.bak", "state.json.v4.bak"]
    );
    let versions: Vec<u64> = options
        .backups_of(&path)
        .unwrap()
        .iter()
        .map(|backup| backup.version)
        .collect();
    assert_eq!(versions, [4, 2]);
}

#[test]
fn without_keep_unreadable_newer_backups_count_and_go_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = Options::new().backups(2).keep_unreadable(false);
    options.save(&v1(), &path).unwrap();
    options.save(&AppStateV2::from(v1()), &path).unwrap(); // keeps v1
    options.save(&sample(), &path).unwrap(); // keeps v2
    options.save(&v1(), &path).unwrap(); // keeps v4, drops v1 (3 backups > 2)
    assert_eq!(
        names(dir.path()),
        ["state.json", "state.json.v2.bak", "state.json.v4.bak"]
    );
}

#[test]
fn a_newer_file_is_kept_even_with_backups_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let newer = fs::read(&path).unwrap();
    Options::new().backups(0).save(&v1(), &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json", "state.json.v4.bak"]);
    assert_eq!(
        fs::read(dir.path().join("state.json.v4.bak")).unwrap(),
        newer
    );
    assert_eq!(
        fs::metadata(dir.path().join("state.json.v4.bak"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Saving the v4 file again over what the older program wrote: a v1 backup, once.
    sample().save(&path).unwrap();
    assert_eq!(
        names(dir.path()),
        ["state.json", "state.json.v1.bak", "state.json.v4.bak"]
    );
}

#[test]
fn keep_unreadable_false_lets_a_save_destroy_what_it_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    sample().save(&path).unwrap();
    let options = Options::new().backups(0).keep_unreadable(false);
    options.save(&v1(), &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json"]);
    fs::write(&path, b"not json at all").unwrap();
    options.save(&v1(), &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json"]);
}

/// The copies `<name>.corrupt-<ms>` in `dir`, with their bytes.
fn corrupt_copies(dir: &std::path::Path) -> Vec<Vec<u8>> {
    names(dir)
        .iter()
        .filter(|name| {
            name.strip_prefix("state.json.corrupt-")
                .is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|name| {
            let path = dir.join(name);
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                persist::file_role(&path),
                persist::FileRole::Corrupt {
                    millis: name["state.json.corrupt-".len()..].parse().unwrap()
                }
            );
            // Not a file `persist verify` checks (it is known not to load).
            assert!(!persist::file_role(&path).holds_data());
            fs::read(path).unwrap()
        })
        .collect()
}

#[test]
fn a_save_over_a_file_it_cannot_read_keeps_that_file_aside() {
    let whole = serde_json::to_vec(&serde_json::json!({
        "version": 4, "data": {"user": "ada", "theme": "dark", "font_size": 12, "recent": []}
    }))
    .unwrap();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"hello, world".to_vec()),
        ("binary", vec![0, 159, 146, 150, 255, 0, 1]),
        ("cut short, small", whole[..whole.len() - 5].to_vec()),
        ("cut short after 64 bytes", {
            let mut long = whole[..whole.len() - 2].to_vec();
            long.extend_from_slice(&[b' '; 100]);
            long
        }),
        ("zero-filled tail", {
            let mut zeros = whole.clone();
            zeros.extend_from_slice(&[0; 4096]);
            zeros
        }),
        ("no version", br#"{"data":{"user":"ada"}}x"#.to_vec()),
        (
            "another version, cut short",
            br#"{"version":2,"data":{"us"#.to_vec(),
        ),
    ];
    for (what, bytes) in damaged {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, &bytes).unwrap();
        sample().save(&path).unwrap();
        let kept: Vec<_> = corrupt_copies(dir.path());
        let backups: Vec<_> = names(dir.path())
            .into_iter()
            .filter(|name| name.ends_with(".bak"))
            .map(|name| fs::read(dir.path().join(name)).unwrap())
            .collect();
        assert!(
            kept == [bytes.clone()] || backups == [bytes.clone()],
            "{what}: {:?}",
            names(dir.path())
        );
        assert_eq!(AppState::load(&path).unwrap(), sample(), "{what}");
        // Removing the file removes the copy too.
        Options::new().remove(&path).unwrap();
        assert!(names(dir.path()).is_empty(), "{what}");
    }
}

#[test]
fn whole_files_empty_files_and_files_of_the_same_version_leave_no_copy() {
    for bytes in [
        Vec::new(),
        b"  \n".to_vec(),
        serde_json::to_vec_pretty(&serde_json::json!({
            "version": 4, "data": {"user": "ada", "theme": "dark", "font_size": 12, "recent": []}
        }))
        .unwrap(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, &bytes).unwrap();
        sample().save(&path).unwrap();
        assert_eq!(names(dir.path()), ["state.json"], "{bytes:?}");
    }
}

/// Every name in `dir` with its bytes (none for a directory).
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    with_modes(dir)
        .into_iter()
        .map(|(name, bytes, _)| (name, bytes))
        .collect()
}

#[test]
fn a_save_that_fails_at_any_step_leaves_the_directory_as_it_was() {
    use persist::IoOp;
    // Each scenario makes the save keep a copy: an older file (a backup), a newer file, a
    // damaged file, and an older file whose backup name is taken by an earlier backup (the
    // copy waits for the new file to be in place).
    type Plant = Box<dyn Fn(&std::path::Path)>;
    let scenarios: Vec<(&str, Plant)> = vec![
        ("older", Box::new(|path| v1().save(path).unwrap())),
        (
            "newer",
            Box::new(|path| {
                sample().save(path).unwrap();
            }),
        ),
        (
            "damaged",
            Box::new(|path| fs::write(path, b"{oops").unwrap()),
        ),
        (
            "older, backup name taken",
            Box::new(|path| {
                v1().save(path).unwrap();
                let taken = path.with_file_name("state.json.v1.bak");
                fs::write(taken, b"an earlier backup").unwrap();
            }),
        ),
    ];
    let ops = [
        IoOp::Open,
        IoOp::Metadata,
        IoOp::Read,
        IoOp::CreateTemp,
        IoOp::Write,
        IoOp::SyncFile,
        IoOp::Rename,
        IoOp::SyncDir,
        IoOp::Remove,
    ];
    for (what, plant) in &scenarios {
        let (mut failed, mut after_rename) = (0, 0);
        for op in ops {
            for skip in 0..4 {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("state.json");
                plant(&path);
                let before = snapshot(dir.path());
                // The version the save writes: AppStateV2 (v2) over v1, v4 and damage alike.
                let new = AppStateV2::from(v1());
                let fault =
                    persist::testing::inject_fault_after(dir.path(), op, libc::EIO, skip, 1);
                let saved = Options::new().save(&new, &path);
                let hit = fault.hits() > 0;
                drop(fault);
                match saved {
                    Ok(()) => continue,
                    Err(error) => assert!(hit, "{what} {op:?}/{skip}: {error}"),
                }
                failed += 1;
                let now = snapshot(dir.path());
                if fs::read(&path).unwrap() == before[0].1 {
                    assert_eq!(now, before, "{what}: {op:?} after {skip}");
                } else {
                    // The fault struck after the new file took the name (a directory sync):
                    // the file it replaced must be kept.
                    after_rename += 1;
                    assert_eq!(Options::new().load::<AppStateV2>(&path).unwrap(), new);
                    let old = &before[0].1;
                    assert!(
                        now.iter()
                            .any(|(name, bytes)| name != "state.json" && bytes == old),
                        "{what}: {op:?} after {skip}: {:?}",
                        names(dir.path())
                    );
                }
            }
        }
        assert!(failed >= 8, "{what}: only {failed} failing saves");
        assert!(after_rename >= 1, "{what}: no fault after the rename");
    }
}

#[test]
fn backups_can_be_turned_off() {
    let (dir, path) = copy_of_fixture("v2.json");
    let state: AppState = Options::new().load(&path).unwrap();
    Options::new().backups(0).save(&state, &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json"]);
}

#[tokio::test]
async fn async_saves_keep_backups_too() {
    let (dir, path) = copy_of_fixture("v1.json");
    let original = fs::read(&path).unwrap();
    let state = AppState::load_async(&path).await.unwrap();
    state.save_async(&path).await.unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v1.bak")).unwrap(),
        original
    );
}

#[test]
fn a_backup_can_be_restored_and_the_restore_undone() {
    let (dir, path) = copy_of_fixture("v2.json");
    let original = fs::read(&path).unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap();
    let migrated = fs::read(&path).unwrap();

    Options::new().restore_backup(&path, 2).unwrap();
    assert_eq!(fs::read(&path).unwrap(), original);
    // The file the restore replaced is itself kept.
    assert_eq!(
        fs::read(dir.path().join("state.json.v4.bak")).unwrap(),
        migrated
    );
    assert_eq!(AppState::load(&path).unwrap().user, "linus");

    Options::new().restore_backup(&path, 4).unwrap();
    assert_eq!(fs::read(&path).unwrap(), migrated);
}

#[test]
fn restoring_a_missing_backup_names_it_and_changes_nothing() {
    let (dir, path) = copy_of_fixture("v4.json");
    let before = fs::read(&path).unwrap();
    let error = Options::new().restore_backup(&path, 3).unwrap_err();
    match &error {
        Error::NotFound { path: missing, .. } => {
            assert_eq!(missing, &dir.path().join("state.json.v3.bak"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(names(dir.path()), ["state.json"]);
}

/// Every name in `dir` with its bytes (none for a directory) and mode.
fn with_modes(dir: &std::path::Path) -> Vec<(String, Vec<u8>, u32)> {
    names(dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let metadata = fs::metadata(&path).unwrap();
            let bytes = match metadata.is_dir() {
                true => Vec::new(),
                false => fs::read(&path).unwrap(),
            };
            (name, bytes, metadata.permissions().mode() & 0o777)
        })
        .collect()
}

#[test]
fn a_transaction_keeps_what_it_replaces_before_its_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A newer file and a damaged one among the targets.
    sample().save(root.join("newer.json")).unwrap();
    let newer = fs::read(root.join("newer.json")).unwrap();
    fs::write(root.join("damaged.json"), b"{\"version\":1,\"da").unwrap();
    let mut txn = persist::Transaction::open(root).unwrap();
    txn.save(&v1(), "newer.json").unwrap();
    txn.save(&v1(), "damaged.json").unwrap();
    txn.commit().unwrap();
    assert_eq!(fs::read(root.join("newer.json.v4.bak")).unwrap(), newer);
    let kept: Vec<String> = names(root)
        .into_iter()
        .filter(|name| name.starts_with("damaged.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(root));
    assert_eq!(
        fs::read(root.join(&kept[0])).unwrap(),
        b"{\"version\":1,\"da"
    );

    // A copy that cannot be made stops the commit before its commit point: a directory at the
    // backup's name, or a failed write of the copy.
    sample().save(root.join("newer.json")).unwrap();
    fs::remove_file(root.join("newer.json.v4.bak")).unwrap();
    fs::create_dir(root.join("newer.json.v4.bak")).unwrap();
    let before = fs::read(root.join("newer.json")).unwrap();
    let mut txn = persist::Transaction::open(root).unwrap();
    txn.save(&v1(), "newer.json").unwrap();
    assert!(txn.commit().is_err());
    assert_eq!(fs::read(root.join("newer.json")).unwrap(), before);
    fs::remove_dir(root.join("newer.json.v4.bak")).unwrap();
    for op in [persist::IoOp::Rename, persist::IoOp::SyncDir] {
        let mut txn = persist::Transaction::open(root).unwrap();
        txn.save(&v1(), "newer.json").unwrap();
        let fault = persist::testing::inject_fault(root, op, libc::EIO, 1);
        let committed = txn.commit();
        assert!(fault.hits() > 0, "{op:?}");
        drop(fault);
        match committed {
            // The fault struck before the commit point: nothing changed, no copy left.
            Err(_) if fs::read(root.join("newer.json")).unwrap() == before => {
                assert!(!root.join("newer.json.v4.bak").exists(), "{op:?}");
            }
            // After it: the copy was made before.
            _ => assert_eq!(fs::read(root.join("newer.json.v4.bak")).unwrap(), before),
        }
        persist::Transaction::recover(root).unwrap();
        sample().save(root.join("newer.json")).unwrap();
        let _ = fs::remove_file(root.join("newer.json.v4.bak"));
    }
}

#[test]
fn compressed_files_cut_short_are_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = Options::new().compress(3);
    options.save(&sample(), &path).unwrap();
    let whole = fs::read(&path).unwrap();
    for cut in [whole.len() - 1, whole.len() / 2, 30] {
        fs::write(&path, &whole[..cut]).unwrap();
        options.save(&sample(), &path).unwrap();
        let kept: Vec<_> = corrupt_copies(dir.path());
        assert_eq!(kept, [whole[..cut].to_vec()], "cut at {cut}");
        for name in names(dir.path()) {
            if name.contains(".corrupt-") {
                fs::remove_file(dir.path().join(name)).unwrap();
            }
        }
    }
    // A whole compressed file of this version is replaced without a copy.
    options.save(&sample(), &path).unwrap();
    assert_eq!(names(dir.path()), ["state.json"]);
}

#[test]
fn copies_are_second_names_made_private_and_files_with_other_names_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    v1().save(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let old = fs::read(&path).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    sample().save(&path).unwrap();
    let backup = dir.path().join("state.json.v1.bak");
    // The replaced file itself, under the backup's name, now private; the new file keeps the
    // user's mode.
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&backup).unwrap()),
        inode
    );
    assert_eq!(fs::read(&backup).unwrap(), old);
    assert_eq!(with_modes(dir.path())[1].2, 0o600);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // A file with another name elsewhere (a hard link the user made) is copied: its other
    // name keeps its mode.
    let other = dir.path().join("elsewhere.json");
    fs::remove_file(&backup).unwrap();
    v1().save(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::hard_link(&path, &other).unwrap();
    Options::new().save(&sample(), &path).unwrap();
    assert_eq!(fs::read(&backup).unwrap(), fs::read(&other).unwrap());
    assert_eq!(
        fs::metadata(&other).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_damaged_file_larger_than_the_size_cap_is_kept_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let damaged = vec![b'x'; 64 << 10];
    fs::write(&path, &damaged).unwrap();
    Options::new()
        .max_size(4 << 10)
        .save(&sample(), &path)
        .unwrap();
    assert_eq!(corrupt_copies(dir.path()), [damaged]);
}

#[test]
fn two_saves_over_damaged_files_within_a_millisecond_keep_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = Options::new().durability(persist::Durability::None);
    for n in 0..50 {
        fs::write(&path, format!("damaged {n}")).unwrap();
        options.save(&sample(), &path).unwrap();
    }
    let mut kept: Vec<Vec<u8>> = corrupt_copies(dir.path());
    kept.sort();
    let mut expected: Vec<Vec<u8>> = (0..50)
        .map(|n| format!("damaged {n}").into_bytes())
        .collect();
    expected.sort();
    assert_eq!(kept, expected);
}

#[test]
fn a_restore_over_a_file_of_the_same_version_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    AppStateV2::from(v1()).save(&path).unwrap();
    let first = fs::read(&path).unwrap();
    sample().save(&path).unwrap(); // keeps v2
    let mut other = AppStateV2::from(v1());
    other.user = "someone else".into();
    other.save(&path).unwrap(); // v2 again, over v4: keeps v4
    let current = fs::read(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v2.bak")).unwrap(),
        first
    );
    // The backup of version 2 goes in place; the version 2 file it replaces becomes that
    // backup (a restore can be undone by restoring again).
    Options::new().restore_backup(&path, 2).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first);
    assert_eq!(
        fs::read(dir.path().join("state.json.v2.bak")).unwrap(),
        current
    );
    Options::new().restore_backup(&path, 2).unwrap();
    assert_eq!(fs::read(&path).unwrap(), current);
}

#[test]
fn pruning_never_removes_the_backup_a_save_just_made() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // A backup of version 4 left by a rollback, then a version 2 file.
    sample().save(&path).unwrap();
    AppStateV2::from(v1()).save(&path).unwrap(); // keeps v4
    let v2 = fs::read(&path).unwrap();
    Options::new().backups(1).save(&sample(), &path).unwrap(); // keeps v2
    assert_eq!(fs::read(dir.path().join("state.json.v2.bak")).unwrap(), v2);
}

#[test]
fn an_unversioned_file_with_a_byte_order_mark_is_kept_as_the_oldest_version() {
    let (dir, path) = copy_of_fixture("v1-unversioned.json");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(fs::read(&path).unwrap());
    fs::write(&path, &bytes).unwrap();
    AppState::load(&path).unwrap().save(&path).unwrap();
    assert_eq!(
        fs::read(dir.path().join("state.json.v1.bak")).unwrap(),
        bytes
    );
}

#[test]
fn an_earlier_backup_survives_a_save_that_fails_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    v1().save(&path).unwrap();
    fs::write(dir.path().join("state.json.v1.bak"), b"an earlier backup").unwrap();
    // The rename of the new file fails, and so does the earlier backup's rename back.
    let fault =
        persist::testing::inject_fault_after(dir.path(), persist::IoOp::Rename, libc::EIO, 1, 2);
    Options::new()
        .save(&AppStateV2::from(v1()), &path)
        .unwrap_err();
    assert_eq!(fault.hits(), 2);
    drop(fault);
    let survived = names(dir.path())
        .iter()
        .any(|name| fs::read(dir.path().join(name)).unwrap() == b"an earlier backup");
    assert!(survived, "{:?}", names(dir.path()));
    // The earlier backup cannot be linked (the second temporary name of the save fails) and
    // the new file's rename fails: the earlier backup, kept by a copy, takes its name back.
    // (The failed undo above left the backup's name a second name of the state file: written
    // anew, not through it.)
    fs::remove_file(dir.path().join("state.json.v1.bak")).unwrap();
    fs::write(dir.path().join("state.json.v1.bak"), b"an earlier backup").unwrap();
    for name in names(dir.path()) {
        if name.ends_with(".tmp") {
            fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    let before = snapshot(dir.path());
    let link = persist::testing::inject_fault_after(
        dir.path(),
        persist::IoOp::CreateTemp,
        libc::EPERM,
        1,
        1,
    );
    let rename =
        persist::testing::inject_fault_after(dir.path(), persist::IoOp::Rename, libc::EIO, 1, 1);
    let error = Options::new()
        .save(&AppStateV2::from(v1()), &path)
        .unwrap_err();
    assert_eq!((link.hits(), rename.hits()), (1, 1), "{error:?}");
    drop((link, rename));
    // The same names and bytes (the earlier backup put back from its copy, which is private).
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_file_linked_by_another_program_is_copied_and_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    v1().save(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let other = dir.path().join("other.json");
    fs::hard_link(&path, &other).unwrap();
    sample().save(&path).unwrap();
    let backup = dir.path().join("state.json.v1.bak");
    let ino =
        |path: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap());
    assert_ne!(ino(&backup), ino(&other));
    assert_ne!(ino(&backup), ino(&path));
    assert_eq!(fs::read(&backup).unwrap(), fs::read(&other).unwrap());
    assert_eq!(
        fs::metadata(&other).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn a_transaction_that_fails_leaves_its_targets_modes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    sample().save(root.join("a.json")).unwrap();
    fs::set_permissions(root.join("a.json"), fs::Permissions::from_mode(0o644)).unwrap();
    for skip in 0..4 {
        let before = with_modes(root);
        let mut txn = persist::Transaction::open(root).unwrap();
        txn.save(&v1(), "a.json").unwrap();
        let fault =
            persist::testing::inject_fault_after(root, persist::IoOp::Rename, libc::EIO, skip, 1);
        let committed = txn.commit();
        drop(fault);
        persist::Transaction::recover(root).unwrap();
        let now = with_modes(root);
        let a = now.iter().find(|(name, ..)| name == "a.json").unwrap();
        if committed.is_err() && a.1 == before.iter().find(|(name, ..)| name == "a.json").unwrap().1
        {
            // Not replaced: its mode is its own, whatever was kept.
            assert_eq!(a.2, 0o644, "skip {skip}");
        }
        // Replaced or not, the backup is never the live file.
        let ino = |name: &str| {
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(root.join(name)).unwrap())
        };
        if root.join("a.json.v4.bak").exists() {
            assert_ne!(ino("a.json"), ino("a.json.v4.bak"), "skip {skip}");
        }
        sample().save(root.join("a.json")).unwrap();
        fs::set_permissions(root.join("a.json"), fs::Permissions::from_mode(0o644)).unwrap();
        let _ = fs::remove_file(root.join("a.json.v4.bak"));
    }
}

#[test]
fn a_hand_edited_file_with_a_typo_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    Options::new().pretty(true).save(&sample(), &path).unwrap();
    // A comma deleted in the middle of the file: it starts and ends as a whole file does.
    let edited = fs::read_to_string(&path).unwrap().replacen(",\n", "\n", 1);
    fs::write(&path, &edited).unwrap();
    assert!(AppState::load(&path).is_err());
    Options::new().pretty(true).save(&sample(), &path).unwrap();
    assert_eq!(corrupt_copies(dir.path()), [edited.into_bytes()]);
    // A whole indented file of this version is replaced without a copy.
    Options::new().pretty(true).save(&sample(), &path).unwrap();
    assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
}
