//! Releases rolled back, both ways: a file of version 4 read by the version 3 program under
//! each `OnNewer` mode, and a value written at an older version through its declared
//! downgrade steps (`Options::save_as_version`, `persist::cli` `migrate --to`, the kit's
//! round trips).

use std::fs;
use std::path::Path;

use persist::testing::Fixtures;
use persist::{Error, ErrorKind, LoadOutcome, OnNewer, Options, Persisted};
use serde::{Deserialize, Serialize};

/// The program, at version 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3)]
struct Settings {
    theme: String,
    window: Window,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    width: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Server {
    host: String,
}

/// The next release, version 4: a field at the top, one in a nested struct, one in each list
/// item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 4, migrate_from = Settings)]
struct SettingsV4 {
    theme: String,
    font: String,
    window: WindowV4,
    servers: Vec<ServerV4>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct WindowV4 {
    width: u32,
    maximized: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ServerV4 {
    host: String,
    weight: u32,
}

impl From<Settings> for SettingsV4 {
    fn from(old: Settings) -> Self {
        SettingsV4 {
            theme: old.theme,
            font: "mono".into(),
            window: WindowV4 {
                width: old.window.width,
                maximized: false,
            },
            servers: old
                .servers
                .into_iter()
                .map(|server| ServerV4 {
                    host: server.host,
                    weight: 1,
                })
                .collect(),
        }
    }
}

fn v4() -> SettingsV4 {
    SettingsV4 {
        theme: "dark".into(),
        font: "serif".into(),
        window: WindowV4 {
            width: 800,
            maximized: true,
        },
        servers: vec![
            ServerV4 {
                host: "a".into(),
                weight: 5,
            },
            ServerV4 {
                host: "b".into(),
                weight: 7,
            },
        ],
    }
}

/// A v4 file written by the next release.
fn newer_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("settings.json");
    v4().save(&path).unwrap();
    path
}

#[test]
fn refuse_is_the_default_and_keeps_today_s_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let path = newer_file(dir.path());
    for options in [Options::new(), Options::new().on_newer(OnNewer::Refuse)] {
        let error = options.load::<Settings>(&path).unwrap_err();
        assert!(
            matches!(
                error,
                Error::FutureVersion {
                    found: 4,
                    supported: 3,
                    ..
                }
            ),
            "{error:?}"
        );
    }
    assert!(matches!(
        Settings::load(&path),
        Err(Error::FutureVersion { .. })
    ));
}

#[test]
fn read_only_loads_a_newer_file_and_refuses_every_save_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = newer_file(dir.path());
    let before = fs::read(&path).unwrap();
    let options = Options::new().on_newer(OnNewer::ReadOnly);

    let loaded = options.load_reported::<Settings>(&path).unwrap();
    assert_eq!(loaded.value.theme, "dark");
    assert_eq!(loaded.value.window.width, 800);
    assert_eq!(loaded.value.servers[1].host, "b");
    let LoadOutcome::Newer(newer) = &loaded.outcome else {
        panic!("{:?}", loaded.outcome)
    };
    assert_eq!((newer.found, newer.supported), (4, 3));
    assert_eq!(
        newer.unknown,
        [
            "font",
            "window.maximized",
            "servers[0].weight",
            "servers[1].weight"
        ]
    );
    assert_eq!(options.load::<Settings>(&path).unwrap(), loaded.value);
    assert_eq!(
        options.load_or_default::<Settings>(&path).unwrap(),
        loaded.value
    );

    let error = options.save(&loaded.value, &path).unwrap_err();
    assert!(
        matches!(
            error,
            Error::ReadOnly {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::ReadOnly);
    assert_eq!(error.path(), path);
    assert!(
        error.to_string().contains("OnNewer::KeepUnknown"),
        "{error}"
    );
    let error = options
        .update::<Settings>(&path, |settings| settings.theme = "light".into())
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly { .. }), "{error:?}");
    let mut transaction = options.transaction(dir.path()).unwrap();
    assert!(matches!(
        transaction.save(&loaded.value, "settings.json"),
        Err(Error::ReadOnly { .. })
    ));
    drop(transaction);
    // A save at an older version over it is still a save over it. (Settings is the oldest
    // version of its chain: version 3 itself is the only one it can be written at, so a type
    // with an older version is used.)
    let error = options
        .clone()
        .save_as_version(1)
        .save(&note(&[]), &path)
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly { .. }), "{error:?}");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the newer file is untouched"
    );
    // The next release still reads everything it wrote.
    assert_eq!(SettingsV4::load(&path).unwrap(), v4());
}

#[test]
fn keep_unknown_writes_the_newer_members_back_at_the_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = newer_file(dir.path());
    let options = Options::new().on_newer(OnNewer::KeepUnknown);

    let saved = options
        .update::<Settings>(&path, |settings| {
            settings.theme = "light".into();
            settings.window.width = 1024;
            settings.servers[0].host = "a2".into();
        })
        .unwrap();
    assert_eq!(saved.theme, "light");
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        stored["version"], 4,
        "the stored version stays the newer one"
    );

    // The next release reads its own fields back untouched, and the program's changes.
    let read = SettingsV4::load(&path).unwrap();
    assert_eq!(read.theme, "light");
    assert_eq!(read.font, "serif");
    assert_eq!(
        read.window,
        WindowV4 {
            width: 1024,
            maximized: true
        }
    );
    assert_eq!(read.servers[0].host, "a2");
    assert_eq!(read.servers[0].weight, 5);
    assert_eq!(read.servers[1].weight, 7);

    // Items of a list whose length the save changed cannot be matched to the file's: their
    // unknown members are not kept (documented); everything else is.
    options
        .update::<Settings>(&path, |settings| {
            settings.servers.push(Server { host: "c".into() })
        })
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(stored["version"], 4);
    assert_eq!(stored["data"]["font"], "serif");
    assert_eq!(stored["data"]["window"]["maximized"], true);
    assert_eq!(
        stored["data"]["servers"],
        serde_json::json!([{"host": "a2"}, {"host": "b"}, {"host": "c"}])
    );
}

#[test]
fn keep_unknown_over_a_file_of_this_version_or_none_is_an_ordinary_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let options = Options::new().on_newer(OnNewer::KeepUnknown);
    let value = Settings {
        theme: "t".into(),
        ..Settings::default()
    };
    options.save(&value, &path).unwrap();
    let plain = fs::read(&path).unwrap();
    Options::new().save(&value, &path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), plain);
    options.save(&value, &path).unwrap();
    assert_eq!(options.load::<Settings>(&path).unwrap(), value);
    assert!(matches!(
        options.load_reported::<Settings>(&path).unwrap().outcome,
        LoadOutcome::Intact
    ));
}

#[test]
fn a_newer_file_whose_data_this_version_cannot_read_is_still_refused() {
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 3)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        theme: String,
    }

    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 3)]
    struct Retyped {
        theme: u32,
    }

    let dir = tempfile::tempdir().unwrap();
    let path = newer_file(dir.path());
    let before = fs::read(&path).unwrap();
    for policy in [OnNewer::ReadOnly, OnNewer::KeepUnknown] {
        let options = Options::new().on_newer(policy);
        assert!(matches!(
            options.load::<Strict>(&path),
            Err(Error::FutureVersion { found: 4, .. })
        ));
        assert!(matches!(
            options.load::<Retyped>(&path),
            Err(Error::FutureVersion { found: 4, .. })
        ));
        // Nor is it saved over: nothing of it could be kept by name.
        assert!(matches!(
            options.save(&Retyped { theme: 1 }, &path),
            Err(Error::ReadOnly { .. })
        ));
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn layers_and_styles_are_kept_on_a_newer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let writer = Options::new().compress(3).checksum(true).pretty(true);
    writer.save(&v4(), &path).unwrap();
    let options = Options::new()
        .compress(3)
        .checksum(true)
        .on_newer(OnNewer::KeepUnknown);
    let mut value = options.load::<Settings>(&path).unwrap();
    value.theme = "solarized".into();
    options.save(&value, &path).unwrap();
    let info = Options::new().file_info(&path).unwrap();
    assert_eq!(info.version, Some(4), "{info:?}");
    let read = writer.load::<SettingsV4>(&path).unwrap();
    assert_eq!(read.theme, "solarized");
    assert_eq!(read.font, "serif");
}

#[test]
fn live_opens_a_newer_file_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = newer_file(dir.path());
    let live = Options::new()
        .on_newer(OnNewer::ReadOnly)
        .live::<Settings>(&path)
        .unwrap();
    assert_eq!(live.get().theme, "dark");
}

// ---- Downgrades ------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct NotesV1 {
    text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = NotesV1, downgrade)]
struct NotesV2 {
    text: String,
    pinned: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = NotesV2, downgrade)]
struct Notes {
    text: String,
    pinned: bool,
    tags: Vec<String>,
}

impl From<NotesV1> for NotesV2 {
    fn from(old: NotesV1) -> Self {
        NotesV2 {
            text: old.text,
            pinned: false,
        }
    }
}

impl From<NotesV2> for NotesV1 {
    fn from(new: NotesV2) -> Self {
        NotesV1 { text: new.text }
    }
}

impl From<NotesV2> for Notes {
    fn from(old: NotesV2) -> Self {
        Notes {
            text: old.text,
            pinned: old.pinned,
            tags: Vec::new(),
        }
    }
}

/// A downgrade that can refuse: version 2 has no room for more than one tag.
impl TryFrom<Notes> for NotesV2 {
    type Error = String;

    fn try_from(new: Notes) -> Result<Self, String> {
        match new.tags.len() {
            0 | 1 => Ok(NotesV2 {
                text: match new.tags.first() {
                    Some(tag) => format!("{} #{tag}", new.text),
                    None => new.text,
                },
                pinned: new.pinned,
            }),
            n => Err(format!("{n} tags do not fit version 2")),
        }
    }
}

fn note(tags: &[&str]) -> Notes {
    Notes {
        text: "buy milk".into(),
        pinned: true,
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
    }
}

#[test]
fn save_as_version_walks_every_downgrade_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    note(&[]).save(&path).unwrap();

    Options::new()
        .save_as_version(2)
        .save(&note(&["home"]), &path)
        .unwrap();
    assert_eq!(
        NotesV2::load(&path).unwrap(),
        NotesV2 {
            text: "buy milk #home".into(),
            pinned: true
        }
    );
    // The version 3 file it replaced is kept as a backup of its version.
    let backups = Options::new().backups_of(&path).unwrap();
    assert_eq!(
        backups
            .iter()
            .map(|backup| backup.version)
            .collect::<Vec<_>>(),
        [3]
    );

    Options::new()
        .save_as_version(1)
        .save(&note(&[]), &path)
        .unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        r#"{"version":1,"data":{"text":"buy milk"}}"#
    );
    assert_eq!(NotesV1::load(&path).unwrap().text, "buy milk");
    // The current program reads the rolled-back file as usual.
    assert!(!Notes::load(&path).unwrap().pinned);

    // Its own version is an ordinary save.
    Options::new()
        .save_as_version(3)
        .save(&note(&["a", "b"]), &path)
        .unwrap();
    assert_eq!(Notes::load(&path).unwrap(), note(&["a", "b"]));
}

#[test]
fn save_as_version_writes_nothing_when_it_cannot_go_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    note(&[]).save(&path).unwrap();
    let before = fs::read(&path).unwrap();

    let error = Options::new()
        .save_as_version(1)
        .save(&note(&["a", "b"]), &path)
        .unwrap_err();
    match &error {
        Error::Downgrade {
            from, to, source, ..
        } => {
            assert_eq!((*from, *to), (3, 2));
            assert_eq!(source.to_string(), "2 tags do not fit version 2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error.kind(), ErrorKind::Downgrade);
    assert!(error.to_string().contains("nothing was written"), "{error}");

    for version in [4, 0, 7] {
        let error = Options::new()
            .save_as_version(version)
            .save(&note(&[]), &path)
            .unwrap_err();
        assert!(
            matches!(error, Error::Downgrade { .. }),
            "{version}: {error:?}"
        );
    }
    // A version without a declared step down.
    let error = Options::new()
        .save_as_version(1)
        .save(&NoStepDown { text: "x".into() }, &path)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Downgrade { from: 2, to: 1, source, .. }
            if source.to_string().contains("declares no step down")),
        "{error:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing beside it");
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = NotesV1)]
struct NoStepDown {
    text: String,
}

impl From<NotesV1> for NoStepDown {
    fn from(old: NotesV1) -> Self {
        NoStepDown { text: old.text }
    }
}

#[test]
fn save_as_version_is_followed_by_the_async_and_layered_saves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    let options = Options::new().save_as_version(1).compress(3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(options.save_async(note(&[]), &path))
        .unwrap();
    assert_eq!(Options::new().file_info(&path).unwrap().version, Some(1));
    assert_eq!(
        Options::new()
            .compress(3)
            .load::<NotesV1>(&path)
            .unwrap()
            .text,
        "buy milk"
    );
}

#[test]
fn the_cli_migrates_down_with_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    note(&["home"]).save(&path).unwrap();
    let run = |args: &[&str]| {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = persist::cli::run_with::<Notes>(&Options::new(), args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let file = path.to_str().unwrap();

    let (code, out, _) = run(&["migrate", file, "--to", "1", "--dry-run"]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(
        out.contains("would write version 1 (down 3 -> 2 -> 1)"),
        "{out}"
    );
    assert_eq!(Notes::load(&path).unwrap(), note(&["home"]));

    let (code, out, _) = run(&["migrate", "--to", "1", file]);
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.contains("written at version 1"), "{out}");
    assert_eq!(NotesV1::load(&path).unwrap().text, "buy milk #home");
    assert_eq!(
        Options::new()
            .backups_of(&path)
            .unwrap()
            .iter()
            .map(|backup| backup.version)
            .collect::<Vec<_>>(),
        [3]
    );

    let (code, out, _) = run(&["migrate", file, "--to", "1"]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(out.contains("already at version 1"), "{out}");

    // From version 1 to 2: up the chain as a load does, then down.
    let (code, out, _) = run(&["migrate", file, "--to", "2", "--dry-run"]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(
        out.contains("would write version 2 (up 1 -> 2 -> 3, then down 3 -> 2)"),
        "{out}"
    );
    // To the current version: an ordinary migrate.
    let (code, out, _) = run(&["migrate", file, "--to", "3"]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(
        out.contains("migrated from version 1 to version 3"),
        "{out}"
    );
    assert_eq!(Notes::load(&path).unwrap().text, "buy milk #home");

    note(&["a", "b"]).save(&path).unwrap();
    let before = fs::read(&path).unwrap();
    let (code, _, err) = run(&["migrate", file, "--to", "2"]);
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert!(err.contains("2 tags do not fit version 2"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);

    for bad in [
        &["migrate", file, "--to"][..],
        &["migrate", file, "--to", "x"],
        &["migrate", file, "--to", "0"],
        &["migrate", "--to", "1"],
        &["migrate", file, "--to", "1", "--to", "2"],
    ] {
        let (code, _, err) = run(bad);
        assert_eq!(code, std::process::ExitCode::from(2), "{bad:?}: {err}");
    }
    let (code, _, err) = run(&["migrate", file, "--to", "9"]);
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert!(err.contains("newer than this program's version 3"), "{err}");
}

#[test]
fn the_kit_takes_every_fixture_down_and_up_and_reports_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<Notes>::new(dir.path());
    fixtures
        .write("plain", &NotesV1 { text: "t".into() })
        .unwrap();
    fixtures
        .write(
            "pinned",
            &NotesV2 {
                text: "t".into(),
                pinned: true,
            },
        )
        .unwrap();
    fixtures.write("untagged", &note(&[])).unwrap();
    fixtures.write("one-tag", &note(&["home"])).unwrap();
    fixtures.write("two-tags", &note(&["a", "b"])).unwrap();

    let trips = fixtures.downgrade_round_trips().unwrap();
    let text: Vec<String> = trips.iter().map(|trip| trip.snapshot()).collect();
    assert_eq!(
        text,
        [
            "fixture v2/pinned.json, down to version 1 and up again: lost or changed\n  \
             pinned: true became false\n",
            "fixture v3/one-tag.json, down to version 2 and up again: lost or changed\n  \
             tags: [\"home\"] became []\n  text: \"buy milk\" became \"buy milk #home\"\n",
            "fixture v3/two-tags.json, down to version 2 and up again: failed: the downgrade \
             3 -> 2 failed: 2 tags do not fit version 2\n",
            "fixture v3/untagged.json, down to version 2 and up again: nothing lost\n",
        ]
    );
}

#[test]
fn every_rollback_path_writes_through_the_one_shell() {
    // The file written at an older version is private from its creation, like every save.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.json");
    Options::new()
        .save_as_version(1)
        .save(&note(&[]), &path)
        .unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let newer = newer_file(dir.path());
    let mut value = Options::new()
        .on_newer(OnNewer::KeepUnknown)
        .load::<Settings>(&newer)
        .unwrap();
    value.theme = "x".into();
    Options::new()
        .on_newer(OnNewer::KeepUnknown)
        .save(&value, &newer)
        .unwrap();
    assert_eq!(
        fs::metadata(&newer).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn keep_unknown_writes_unknown_members_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    // Written by a newer release: numbers no f64 holds, an exponent, a string with escapes, a
    // nested object of its own, in an order of its own, indented.
    let written = r#"{
  "version": 4,
  "data": {
    "serial": 340282366920938463463374607431768211455,
    "theme": "dark",
    "ratio": 1.50e+3,
    "window": {"width": 800, "opaque": {"b": [1, 2], "a": "\u00e9\n"}},
    "servers": [],
    "quota": -12345678901234567890123
  }
}
"#;
    fs::write(&path, written).unwrap();
    let options = Options::new().on_newer(OnNewer::KeepUnknown);
    let loaded = options.load_reported::<Settings>(&path).unwrap();
    let LoadOutcome::Newer(newer) = &loaded.outcome else {
        panic!("{:?}", loaded.outcome)
    };
    assert_eq!(
        newer.unknown,
        ["serial", "ratio", "window.opaque", "quota"],
        "in the file's order"
    );
    options
        .update::<Settings>(&path, |settings| settings.theme = "light".into())
        .unwrap();
    let saved = fs::read_to_string(&path).unwrap();
    assert_eq!(
        saved,
        r#"{"version":4,"data":{"theme":"light","window":{"width":800,"opaque":{"b": [1, 2], "a": "\u00e9\n"}},"servers":[],"serial":340282366920938463463374607431768211455,"ratio":1.50e+3,"quota":-12345678901234567890123}}"#
    );
}

#[test]
fn a_newer_file_that_cannot_be_read_whole_is_not_saved_over_either() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    // Larger than the cap, and a newer version.
    let mut big = v4();
    big.theme = "x".repeat(4096);
    big.save(&path).unwrap();
    let before = fs::read(&path).unwrap();
    for policy in [OnNewer::ReadOnly, OnNewer::KeepUnknown] {
        let options = Options::new().on_newer(policy).max_size(1024);
        let error = options.save(&Settings::default(), &path).unwrap_err();
        assert!(
            matches!(error, Error::ReadOnly { found: 4, .. }),
            "{policy:?}: {error:?}"
        );
    }
    assert_eq!(fs::read(&path).unwrap(), before);

    // Encrypted with a key this program does not have: its version is in the clear header.
    let right = persist::Key::from_bytes([1; 32]);
    let wrong = persist::Key::from_bytes([2; 32]);
    Options::new().encrypt(right).save(&v4(), &path).unwrap();
    let before = fs::read(&path).unwrap();
    for policy in [OnNewer::ReadOnly, OnNewer::KeepUnknown] {
        let options = Options::new().on_newer(policy).encrypt(wrong.clone());
        let error = options.save(&Settings::default(), &path).unwrap_err();
        assert!(
            matches!(error, Error::ReadOnly { found: 4, .. }),
            "{policy:?}: {error:?}"
        );
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}
