//! The optional layers of a file: the checksum (always built in); each test also checks that a
//! file that fails is left exactly as it was.

mod common;

use std::fs;

use common::{AppState, AppStateV1, listing, sample};
use persist::{Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, checksum)]
struct Session {
    token: String,
    user: String,
}

fn session() -> Session {
    Session {
        token: "tok_3f2a9c4e8b1d4c7a".into(),
        user: "ada".into(),
    }
}

/// Flips one bit of the byte at the first occurrence of `needle` in the file.
fn flip_bit_at(path: &std::path::Path, needle: &str) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    bytes[at] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_type_with_the_checksum_attribute_always_saves_one_and_stays_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    session().save(&path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["data"]["user"], "ada");
    let crc = json["crc32c"].as_str().unwrap();
    assert_eq!(crc.len(), 8);
    assert!(text.ends_with(&format!(r#","crc32c":"{crc}"}}"#)));
    assert_eq!(Session::load(&path).unwrap(), session());
    // Turning the option off does not remove what the type asks for.
    Options::new()
        .checksum(false)
        .save(&session(), &path)
        .unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("crc32c"));
}

#[test]
fn a_bit_flipped_inside_a_string_is_a_corrupt_error_and_the_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    session().save(&path).unwrap();
    // 'a' (0x61) becomes '`' (0x60): still valid JSON, still a string.
    flip_bit_at(&path, "ada");
    let before = listing(dir.path());
    let damaged = fs::read(&path).unwrap();

    let error = Session::load(&path).unwrap_err();
    let Error::Corrupt {
        path: named,
        reason,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(named, &path);
    assert!(reason.contains("damaged after it was written"), "{reason}");
    assert!(error.to_string().contains("session.json"), "{error}");
    // Neither `load_or_default` nor `update` replaces a file they could not read.
    assert!(matches!(
        Session::load_or_default(&path),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(listing(dir.path()), before);
    assert!(matches!(
        Options::new().update(&path, |s: &mut Session| s.user.push('!')),
        Err(Error::Corrupt { .. })
    ));
    // `update` leaves its lock file beside the state file, and nothing else.
    assert_eq!(fs::read(&path).unwrap(), damaged);
}

#[test]
fn the_option_adds_a_checksum_to_any_type_and_files_without_one_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.json");
    let without = dir.path().join("without.json");
    Options::new()
        .checksum(true)
        .save(&sample(), &with)
        .unwrap();
    sample().save(&without).unwrap();
    assert!(
        fs::read_to_string(&with)
            .unwrap()
            .contains(r#","crc32c":""#)
    );
    assert!(!fs::read_to_string(&without).unwrap().contains("crc32c"));
    // Loading needs no option either way.
    assert_eq!(AppState::load(&with).unwrap(), sample());
    assert_eq!(AppState::load(&without).unwrap(), sample());
}

#[test]
fn an_older_version_saved_with_a_checksum_migrates_and_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let old = AppStateV1 {
        user: "grace".into(),
        dark_mode: true,
    };
    Options::new().checksum(true).save(&old, &path).unwrap();
    assert_eq!(AppState::load(&path).unwrap().user, "grace");
    flip_bit_at(&path, "grace");
    assert!(matches!(AppState::load(&path), Err(Error::Corrupt { .. })));
}

#[tokio::test]
async fn async_saves_and_loads_carry_and_check_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    session().save_async(&path).await.unwrap();
    let sync_bytes = fs::read(&path).unwrap();
    session().save(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), sync_bytes);
    assert_eq!(Session::load_async(&path).await.unwrap(), session());
    flip_bit_at(&path, "tok_");
    assert!(matches!(
        Session::load_async(&path).await,
        Err(Error::Corrupt { .. })
    ));
}

/// Every combination of the layers this build has, as options.
fn combinations() -> Vec<(String, Options)> {
    let mut all = vec![("plain".to_owned(), Options::new())];
    #[cfg(feature = "zstd")]
    {
        let more: Vec<_> = all
            .iter()
            .flat_map(|(name, options)| {
                [
                    (format!("{name}+zstd1"), options.clone().compress(1)),
                    (format!("{name}+zstd19"), options.clone().compress(19)),
                ]
            })
            .collect();
        all.extend(more);
    }
    #[cfg(feature = "encryption")]
    {
        let more: Vec<_> = all
            .iter()
            .flat_map(|(name, options)| {
                [
                    (format!("{name}+key"), options.clone().encrypt(key())),
                    (
                        format!("{name}+passphrase"),
                        options.clone().encrypt(persist::Key::from_passphrase(
                            "correct horse battery staple",
                        )),
                    ),
                ]
            })
            .collect();
        all.extend(more);
    }
    let with_checksum: Vec<_> = all
        .iter()
        .map(|(name, options)| (format!("{name}+crc32c"), options.clone().checksum(true)))
        .collect();
    all.extend(with_checksum);
    all
}

#[cfg(feature = "encryption")]
fn key() -> persist::Key {
    persist::Key::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        .unwrap()
}

#[test]
fn every_combination_round_trips_and_migrates_an_older_version() {
    let dir = tempfile::tempdir().unwrap();
    for (name, options) in combinations() {
        let path = dir.path().join(format!("{name}.state"));
        options.save(&sample(), &path).unwrap();
        assert_eq!(options.load::<AppState>(&path).unwrap(), sample(), "{name}");
        let old = AppStateV1 {
            user: "grace".into(),
            dark_mode: true,
        };
        options.save(&old, &path).unwrap();
        let migrated: AppState = options.load(&path).unwrap();
        assert_eq!(migrated.user, "grace", "{name}");
        // Backups see the version through every frame (in the clear in its header): version 4
        // was kept when version 1 was saved over it, version 1 when the migrated value was.
        options.save(&migrated, &path).unwrap();
        let backups = options.backups_of(&path).unwrap();
        let versions: Vec<u64> = backups.iter().map(|b| b.version).collect();
        assert_eq!(versions, [4, 1], "{name}");
        let restored: AppStateV1 = options.load(&backups[1].path).unwrap();
        assert_eq!(restored.user, "grace", "{name}");
        assert_eq!(
            options.inspect::<AppState>(&path).unwrap().stored_version,
            Some(4),
            "{name}"
        );
        for backup in backups {
            fs::remove_file(backup.path).unwrap();
        }
    }
}

#[tokio::test]
async fn every_combination_works_through_the_async_path() {
    let dir = tempfile::tempdir().unwrap();
    for (name, options) in combinations() {
        let path = dir.path().join(format!("{name}.state"));
        options.save_async(&sample(), &path).await.unwrap();
        assert_eq!(
            options.load_async::<AppState>(&path).await.unwrap(),
            sample(),
            "{name}"
        );
    }
}
