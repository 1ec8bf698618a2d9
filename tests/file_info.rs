//! `Options::file_info`: a file read without its types, with every check a load makes before
//! decoding.

use std::fs;

use persist::{Error, FileInfo, Layout, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 4)]
struct Config {
    name: String,
    limits: Vec<u32>,
}

fn config() -> Config {
    Config {
        name: "édition".to_owned(),
        limits: vec![1, 2, 3],
    }
}

fn info(options: &Options, bytes: &[u8]) -> Result<FileInfo, Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, bytes).unwrap();
    let result = options.file_info(&path);
    assert_eq!(fs::read(&path).unwrap(), bytes, "file_info wrote");
    result
}

#[test]
fn plain_pretty_and_unversioned_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    config().save(&path).unwrap();
    let plain = Options::new().file_info(&path).unwrap();
    assert_eq!(plain.layout, Layout::Envelope { pretty: false });
    assert_eq!(plain.version, Some(4));
    assert!(!plain.checksummed);
    assert_eq!(plain.data, r#"{"name":"édition","limits":[1,2,3]}"#);
    assert_eq!(plain.size, fs::metadata(&path).unwrap().len());

    Options::new()
        .pretty(true)
        .checksum(true)
        .save(&config(), &path)
        .unwrap();
    let pretty = Options::new().file_info(&path).unwrap();
    assert_eq!(pretty.layout, Layout::Envelope { pretty: true });
    assert!(pretty.checksummed);
    assert!(pretty.data.starts_with("{\n"));

    let legacy = info(&Options::new(), br#"[1, 2]"#).unwrap();
    assert_eq!(legacy.layout, Layout::Unversioned);
    assert_eq!((legacy.version, legacy.data.as_str()), (None, "[1, 2]"));
}

#[test]
fn damage_is_an_error_as_a_load_would_report_it() {
    let damaged = br#"{"version":4,"data":{"name":"x","limits":[]},"crc32c":"00000000"}"#;
    match info(&Options::new(), damaged) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("checksum mismatch")),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    match info(&Options::new(), br#"{"version":4,"data":{"#) {
        Err(Error::Corrupt {
            line: 1, column, ..
        }) => assert!(column > 0),
        other => panic!("expected Corrupt with a position, got {other:?}"),
    }
    assert!(matches!(
        Options::new().file_info("no/such/file.json"),
        Err(Error::NotFound { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Options::new().file_info(dir.path()),
        Err(Error::NotRegularFile { .. })
    ));
}

#[cfg(all(feature = "zstd", feature = "encryption"))]
#[test]
fn framed_files_report_their_layers_and_need_their_key() {
    use persist::{Key, KeySource};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let key = Key::from_bytes([7; 32]);
    Options::new()
        .compress(3)
        .encrypt(key.clone())
        .save(&config(), &path)
        .unwrap();
    let info = Options::new().encrypt(key).file_info(&path).unwrap();
    match info.layout {
        Layout::Framed {
            format: 1,
            compressed: true,
            encrypted: Some(KeySource::Raw),
            payload_len,
            envelope_len,
        } => {
            assert_eq!(payload_len + 80, info.size);
            assert_eq!(envelope_len as usize, 20 + info.data.len() + 1);
        }
        other => panic!("unexpected layout {other:?}"),
    }
    assert_eq!(info.version, Some(4));
    assert!(matches!(
        Options::new().file_info(&path),
        Err(Error::KeyRequired { .. })
    ));
}
