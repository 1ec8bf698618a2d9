//! Every error path of load and save: the typed error, a message naming the file, and the
//! directory left exactly as it was (same bytes, no temporary file).

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{AppState, UnknownTheme, copy_of_fixture, listing, sample};
use persist::{Error, FileKind, IoOp, Options, Persisted};
use serde::{Deserialize, Serialize};

/// Runs `action` and checks that the directory holding `path` is unchanged afterwards.
fn untouched<R>(path: &Path, action: impl FnOnce() -> R) -> R {
    let dir = path.parent().unwrap();
    let before = listing(dir);
    let result = action();
    assert_eq!(listing(dir), before, "the directory changed");
    result
}

fn assert_names_path(error: &Error, path: &Path) {
    assert_eq!(error.path(), path);
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

fn assert_not_regular(error: &Error, expected: FileKind) {
    match error {
        Error::NotRegularFile { kind, .. } => assert_eq!(*kind, expected),
        other => panic!("expected NotRegularFile, got {other:?}"),
    }
}

fn assert_io(error: &Error, expected: IoOp) {
    match error {
        Error::Io { op, .. } => assert_eq!(*op, expected),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    let error = untouched(&path, || AppState::load(&path).unwrap_err());
    assert!(matches!(&error, Error::NotFound { .. }), "{error:?}");
    assert_names_path(&error, &path);
    let missing_parent = dir.path().join("no/such/dir/state.json");
    assert!(matches!(
        AppState::load(&missing_parent),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn corrupt_files_are_errors_and_stay_as_they_were() {
    let cases: [(&str, &[u8]); 7] = [
        ("empty", b""),
        ("truncated", br#"{"version":4,"data":{"user":"ada","th"#),
        ("zeros", &[0; 64]),
        (
            "trailing junk",
            br#"{"version":1,"data":{"user":"a","dark_mode":true}}junk"#,
        ),
        (
            "wrong type",
            br#"{"version":1,"data":{"user":"a","dark_mode":"yes"}}"#,
        ),
        ("missing field", br#"{"version":1,"data":{"user":"a"}}"#),
        ("not an object", b"[1,2,3]"),
    ];
    for (name, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, bytes).unwrap();
        for result in [
            untouched(&path, || AppState::load(&path)),
            untouched(&path, || AppState::load_or_default(&path)),
        ] {
            let error = result.unwrap_err();
            assert!(matches!(&error, Error::Corrupt { .. }), "{name}: {error:?}");
            assert_names_path(&error, &path);
        }
    }
}

#[test]
fn corrupt_reports_line_column_and_field_without_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(
        &path,
        "{\"version\": 1,\n \"data\": {\"user\": \"a\", \"dark_mode\": \"s3cret\"}}",
    )
    .unwrap();
    let error = AppState::load(&path).unwrap_err();
    let Error::Corrupt {
        line,
        column,
        field,
        reason,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*line, 2);
    assert!(*column > 30, "{column}");
    assert_eq!(field.as_deref(), Some("data.dark_mode"));
    assert_eq!(reason, "invalid type: a string, expected a boolean");
    let message = error.to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn a_file_without_an_envelope_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, b"[1,2,3]").unwrap();
    // Unlike AppState's chain, this type does not accept files without an envelope.
    let message = Unserializable::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}: corrupt: not a persist file: expected a JSON object with `version` and `data` \
             fields (if the application wrote this file before it adopted persist, mark the \
             oldest version `#[persist(accept_unversioned)]`); the file was left as it was",
            path.display()
        )
    );
}

#[test]
fn a_file_from_a_newer_version_is_refused_and_never_overwritten() {
    let (_dir, path) = copy_of_fixture("v5-future.json");
    let error = untouched(&path, || AppState::load(&path).unwrap_err());
    assert!(
        matches!(
            error,
            Error::FutureVersion {
                found: 5,
                supported: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names_path(&error, &path);
    let message = error.to_string();
    assert!(
        message.contains("saved at schema version 5, but this program reads versions up to 4"),
        "{message}"
    );
    assert!(
        message.ends_with("(the file was left as it was)"),
        "{message}"
    );
    let error = untouched(&path, || AppState::load_or_default(&path).unwrap_err());
    assert!(matches!(error, Error::FutureVersion { .. }));
}

#[test]
fn a_version_outside_the_chain_is_refused() {
    let (_dir, path) = copy_of_fixture("v3-unknown.json");
    let error = untouched(&path, || AppState::load(&path).unwrap_err());
    match &error {
        Error::UnknownVersion { found, known, .. } => {
            assert_eq!(*found, 3);
            assert_eq!(known, &[1, 2, 4]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("known versions: 1, 2, 4"),
        "{error}"
    );
}

#[test]
fn a_failed_migration_names_the_step_and_keeps_the_users_error() {
    let (_dir, path) = copy_of_fixture("v2-unknown-theme.json");
    let error = untouched(&path, || AppState::load(&path).unwrap_err());
    match &error {
        Error::Migration {
            from: 2,
            to: 4,
            source,
            ..
        } => assert_eq!(source.downcast_ref::<UnknownTheme>(), Some(&UnknownTheme)),
        other => panic!("{other:?}"),
    }
    // The message is complete, so an error-chain reporter must not find the cause again.
    assert!(std::error::Error::source(&error).is_none());
    assert!(
        error.to_string().contains(&UnknownTheme.to_string()),
        "{error}"
    );
    assert_names_path(&error, &path);
}

#[test]
fn a_directory_is_neither_read_nor_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"kept").unwrap();
    for error in [
        untouched(&path, || AppState::load(&path).unwrap_err()),
        untouched(&path, || sample().save(&path).unwrap_err()),
    ] {
        assert_not_regular(&error, FileKind::Directory);
    }
}

fn mkfifo(path: &Path) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    mkfifo(&path);
    for error in [
        untouched(&path, || AppState::load(&path).unwrap_err()),
        untouched(&path, || AppState::load_or_default(&path).unwrap_err()),
        untouched(&path, || sample().save(&path).unwrap_err()),
    ] {
        assert_not_regular(&error, FileKind::Fifo);
    }
}

#[test]
fn a_device_is_refused() {
    // Reading /dev/zero would never end and replacing /dev/null would break the machine: both
    // must be refused before any byte moves. Saving is tried on a device node of our own (root
    // only), never on the real /dev/null.
    let error = AppState::load("/dev/zero").unwrap_err();
    assert_not_regular(&error, FileKind::CharDevice);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("null");
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let device = libc::makedev(1, 3);
    if !common::needs("root (mknod, for the save half)", common::is_root()) {
        return;
    }
    assert_eq!(
        unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o666, device) },
        0,
        "mknod: {}",
        std::io::Error::last_os_error()
    );
    let error = untouched(&path, || sample().save(&path).unwrap_err());
    assert_not_regular(&error, FileKind::CharDevice);
}

#[test]
fn a_file_over_the_size_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // Sparse: 2 GiB that take no disk space, and no time to refuse.
    fs::File::create(&path).unwrap().set_len(2 << 30).unwrap();
    let error = AppState::load(&path).unwrap_err();
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 << 30);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    match &error {
        Error::TooLarge { size, limit, .. } => {
            assert_eq!((*size, *limit), (2 << 30, Options::DEFAULT_MAX_SIZE));
        }
        other => panic!("{other:?}"),
    }
    assert_names_path(&error, &path);
}

/// serde_json cannot write maps whose keys are not strings.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Unserializable {
    map: BTreeMap<Vec<u8>, u8>,
}

#[test]
fn a_value_serde_cannot_serialize_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, b"previous contents").unwrap();
    let value = Unserializable {
        map: BTreeMap::from([(vec![1], 1)]),
    };
    let error = untouched(&path, || value.save(&path).unwrap_err());
    assert!(matches!(error, Error::Serialize { .. }), "{error:?}");
    assert_names_path(&error, &path);
}

#[test]
fn a_failed_save_step_is_an_io_error_with_its_operation() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"a file where a directory should be").unwrap();
    let path = blocker.join("state.json");
    let error = untouched(&blocker, || sample().save(&path).unwrap_err());
    // ENOTDIR from the check of what is at the target path.
    assert_io(&error, IoOp::Metadata);
    let Error::Io { source, .. } = &error else {
        unreachable!()
    };
    assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR));
    assert!(std::error::Error::source(&error).is_none());
    assert_names_path(&error, &path);

    // A dangling symlink where a parent directory should be: mkdir fails with EEXIST.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("nowhere/at/all"), &link).unwrap();
    let nested = link.join("state.json");
    let error = untouched(&link, || sample().save(&nested).unwrap_err());
    assert_io(&error, IoOp::CreateDir);
}

#[test]
fn a_dangling_symlink_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::os::unix::fs::symlink(dir.path().join("missing/target.json"), &path).unwrap();
    let error = untouched(&path, || sample().save(&path).unwrap_err());
    assert_io(&error, IoOp::ResolveSymlink);
}

#[test]
fn an_empty_file_says_it_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for (contents, says) in [
        (&b""[..], "the file is empty"),
        (b"\xEF\xBB\xBF", "the file is empty"),
        (b"  \n\t", "the file holds nothing but whitespace"),
    ] {
        fs::write(&path, contents).unwrap();
        let error = untouched(&path, || AppState::load(&path).unwrap_err());
        let message = error.to_string();
        assert!(message.contains(&format!("corrupt: {says};")), "{message}");
        assert!(!message.contains("EOF"), "{message}");
    }
}

#[test]
fn a_field_path_never_shows_an_unknown_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(
        &path,
        "{\"version\":4,\"data\":{\"user\":\"u\",\"theme\":\"light\",\"window\":null,\n\
         \"recent\":[],\"shortcuts\":{\"save\":\"Ctrl+S\",}}}",
    )
    .unwrap();
    let error = untouched(&path, || AppState::load(&path).unwrap_err());
    let message = error.to_string();
    assert!(!message.contains('?'), "{message}");
    assert!(message.contains("trailing comma"), "{message}");
    assert!(message.contains("(at `data.shortcuts`)"), "{message}");
}
