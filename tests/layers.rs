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
        options.save_async(sample(), &path).await.unwrap();
        assert_eq!(
            options.load_async::<AppState>(&path).await.unwrap(),
            sample(),
            "{name}"
        );
    }
}

/// An encrypted file to damage in the hostile tests.
#[cfg(feature = "encryption")]
fn framed_file(dir: &std::path::Path) -> (std::path::PathBuf, Options) {
    let path = dir.join("framed.state");
    let options = Options::new().encrypt(key());
    options.save(&sample(), &path).unwrap();
    (path, options)
}

/// Writes `bytes` at `path`, loads it, checks that the load failed with `expected` and left
/// the bytes as they were.
fn load_fails(
    path: &std::path::Path,
    options: &Options,
    bytes: &[u8],
    expected: fn(&Error) -> bool,
) -> Error {
    fs::write(path, bytes).unwrap();
    let error = options.load::<AppState>(path).unwrap_err();
    assert!(expected(&error), "{error:?}");
    assert_eq!(error.path(), path);
    assert!(options.load_or_default::<AppState>(path).is_err());
    assert_eq!(fs::read(path).unwrap(), bytes);
    error
}

#[test]
fn hostile_frames_are_typed_errors_and_the_file_is_kept() {
    const MAGIC: [u8; 8] = [0x89, b'p', b's', b't', 0x0D, 0x0A, 0x1A, 0x0A];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.state");
    let options = Options::new();
    let corrupt = |e: &Error| matches!(e, Error::Corrupt { .. });
    let unsupported = |e: &Error| matches!(e, Error::Unsupported { .. });

    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&[1, 0, 0, 0]);
    header.extend_from_slice(&4u32.to_le_bytes());
    let plain = br#"{"version":4,"data":{"user":"x","theme":"light","window":null,"recent":[],"shortcuts":{}}}"#;
    let frame = |flags: u8, length: u64, payload: &[u8]| {
        let mut bytes = header.clone();
        bytes[9] = flags;
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    // A frame with no layers is valid (nothing writes one, a reader must accept it).
    fs::write(&path, frame(0, plain.len() as u64, plain)).unwrap();
    assert_eq!(options.load::<AppState>(&path).unwrap().user, "x");

    for truncated in [&MAGIC[..3], &MAGIC[..], &frame(0, 0, b"")[..20]] {
        let error = load_fails(&path, &options, truncated, corrupt);
        assert!(error.to_string().contains("truncated"), "{error}");
    }
    let mut wrong_magic = frame(0, plain.len() as u64, plain);
    wrong_magic[3] = b'X';
    let error = load_fails(&path, &options, &wrong_magic, corrupt);
    assert!(error.to_string().contains("magic"), "{error}");

    let error = load_fails(
        &path,
        &options,
        &frame(0b1000_0000, plain.len() as u64, plain),
        unsupported,
    );
    assert!(error.to_string().contains("unknown layers"), "{error}");
    let mut later_format = frame(0, plain.len() as u64, plain);
    later_format[8] = 2;
    let error = load_fails(&path, &options, &later_format, unsupported);
    assert!(error.to_string().contains("newer persist"), "{error}");

    // A length beyond the file is refused before anything is allocated for it.
    let error = load_fails(&path, &options, &frame(0, u64::MAX, plain), corrupt);
    assert!(error.to_string().contains("announces"), "{error}");
    let error = load_fails(&path, &options, &frame(0, 3, plain), corrupt);
    assert!(error.to_string().contains("announces"), "{error}");

    // The version in the clear must agree with the data's.
    let mut lying = frame(0, plain.len() as u64, plain);
    lying[12] = 9;
    let error = load_fails(&path, &options, &lying, corrupt);
    assert!(error.to_string().contains("schema version 9"), "{error}");

    // A layer this build does not have, or that needs a key nobody gave.
    #[cfg(not(feature = "zstd"))]
    load_fails(
        &path,
        &options,
        &frame(0b01, plain.len() as u64, plain),
        unsupported,
    );
    #[cfg(feature = "zstd")]
    load_fails(
        &path,
        &options,
        &frame(0b01, plain.len() as u64, plain),
        corrupt,
    );
    let mut encrypted = frame(0b10, plain.len() as u64, &[0; 56]);
    encrypted.extend_from_slice(plain);
    #[cfg(not(feature = "encryption"))]
    load_fails(&path, &options, &encrypted, unsupported);
    #[cfg(feature = "encryption")]
    load_fails(&path, &options, &encrypted, |e| {
        matches!(e, Error::KeyRequired { .. })
    });
}

#[cfg(feature = "zstd")]
#[test]
fn a_compressed_file_that_expands_past_the_size_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.state");
    let mut big = sample();
    big.user = "x".repeat(1 << 20);
    Options::new().compress(19).save(&big, &path).unwrap();
    assert!(fs::metadata(&path).unwrap().len() < 4096);
    let capped = Options::new().max_size(64 << 10);
    assert!(matches!(
        capped.load::<AppState>(&path),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(Options::new().load::<AppState>(&path).unwrap(), big);
}

#[cfg(feature = "encryption")]
#[test]
fn a_wrong_key_or_any_changed_byte_is_a_decrypt_error_and_the_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options) = framed_file(dir.path());
    let good = fs::read(&path).unwrap();
    let other = Options::new().encrypt(persist::Key::from_bytes([7; 32]));
    let decrypt = |e: &Error| matches!(e, Error::Decrypt { .. });
    load_fails(&path, &other, &good, decrypt);
    let passphrase = Options::new().encrypt(persist::Key::from_passphrase("guess"));
    load_fails(&path, &passphrase, &good, decrypt);
    // No key at all.
    load_fails(&path, &Options::new(), &good, |e| {
        matches!(e, Error::KeyRequired { .. })
    });
    // One flipped bit anywhere after the magic, header included (it is the associated data),
    // except the reserved bytes and layer flags, which are refused before decryption.
    for at in (12..good.len()).step_by(7) {
        let mut tampered = good.clone();
        tampered[at] ^= 0x10;
        let error = load_fails(&path, &options, &tampered, |e| {
            matches!(e, Error::Decrypt { .. } | Error::Corrupt { .. })
        });
        if at >= 24 {
            assert!(decrypt(&error) || at < 28, "byte {at}: {error:?}");
        }
    }
    // Neither the key nor the data is in any message.
    let error = other.load::<AppState>(&path).unwrap_err();
    assert!(!format!("{error:?} {error}").contains("0001020304"));
    assert_eq!(format!("{:?}", key()), "Key(<redacted>)");
    assert!(!format!("{options:?}").contains("0001020304"));
    // Saving with the right key over the damaged file still works; the wrong key never wrote.
    fs::write(&path, &good).unwrap();
    assert_eq!(options.load::<AppState>(&path).unwrap(), sample());
}

#[cfg(feature = "encryption")]
#[test]
fn an_encrypted_file_reveals_only_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = framed_file(dir.path());
    let bytes = fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("alice") && !text.contains("user") && !text.contains("version"));
    // Header: magic, format 1, layers, reserved, schema version 4 in the clear, length.
    insta::assert_snapshot!(
        "encrypted_header",
        format!(
            "magic {:02x?}\nformat {}\nlayers {:#04b}\nreserved {:?}\nschema version {}\npayload length = rest of file: {}\nkey derivation {} (0 = raw key)\nkdf reserved {:?}\nargon2 cost {:?}",
            &bytes[..8],
            bytes[8],
            bytes[9],
            &bytes[10..12],
            u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
            u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize == bytes.len() - 80,
            bytes[24],
            &bytes[25..28],
            &bytes[28..40],
        )
    );
}

#[cfg(feature = "zstd")]
#[test]
fn a_compressed_file_header_and_zstd_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compressed.state");
    Options::new().compress(3).save(&sample(), &path).unwrap();
    let bytes = fs::read(&path).unwrap();
    // Nothing random in an unencrypted frame: the whole header is pinned.
    insta::assert_snapshot!(
        "compressed_header",
        format!(
            "{:02x?}\nthen zstd frame magic {:02x?}",
            &bytes[..24],
            &bytes[24..28]
        )
    );
}
