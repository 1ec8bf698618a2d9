//! TOML files (feature `toml`): the envelope, loads of any TOML, errors at their line, and saves
//! that keep what a person wrote (comments, blank lines, key order, quoting) through `save`,
//! `update`, migrations and `Live`.
#![cfg(feature = "toml")]

mod common;

use std::path::{Path, PathBuf};

use persist::{Error, Format, Options, Persisted};
use serde::{Deserialize, Serialize};

/// Any TOML document, as its table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
#[serde(transparent)]
struct Doc(toml::Table);

/// Any TOML document, with or without `persist-version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml", accept_unversioned)]
#[serde(transparent)]
struct Plain(toml::Table);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
struct Settings {
    theme: String,
    font_size: u32,
    #[serde(default)]
    recent: Vec<String>,
}

/// The same fields, JSON by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct JsonSettings {
    theme: String,
    font_size: u32,
    #[serde(default)]
    recent: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Whether two documents hold the same data (NaN equal to NaN).
fn same(a: &toml::Table, b: &toml::Table) -> bool {
    toml::to_string(a).unwrap() == toml::to_string(b).unwrap()
}

/// The commented documents of `tests/data/toml/commented`, by name.
fn commented() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toml/commented");
    let mut documents: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    documents.sort();
    documents
}

#[test]
fn a_new_file_is_the_version_then_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    let settings = Settings {
        theme: "dark".into(),
        font_size: 14,
        recent: vec!["a.txt".into()],
    };
    settings.save(&path).unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 1\n\ntheme = \"dark\"\nfont_size = 14\nrecent = [\"a.txt\"]\n"
    );
    assert_eq!(Settings::load(&path).unwrap(), settings);

    // A JSON type asked for TOML for one call; its load needs no option.
    let json = dir.path().join("json.toml");
    let value = JsonSettings {
        theme: "light".into(),
        font_size: 9,
        recent: Vec::new(),
    };
    Options::new()
        .format(Format::Toml)
        .save(&value, &json)
        .unwrap();
    assert!(read(&json).starts_with("persist-version = 1\n"));
    assert_eq!(JsonSettings::load(&json).unwrap(), value);
    // And a TOML type asked for JSON.
    Options::new()
        .format(Format::Json)
        .save(&settings, &path)
        .unwrap();
    assert!(read(&path).starts_with("{\"version\":1,"));
    assert_eq!(Settings::load(&path).unwrap(), settings);
}

#[test]
fn thirty_commented_documents_round_trip_byte_for_byte() {
    let documents = commented();
    assert!(documents.len() >= 30, "{} documents", documents.len());
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &documents {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let doc = Doc::load(&path).unwrap_or_else(|error| panic!("{name}: {error}"));
        doc.save(&path).unwrap();
        assert_eq!(read(&path), *text, "{name}: save");
        Doc::update(&path, |_| {}).unwrap();
        assert_eq!(read(&path), *text, "{name}: update");
        // With a checksum the file gains its line, and nothing else changes.
        Options::new().checksum(true).save(&doc, &path).unwrap();
        let summed = read(&path);
        assert!(same(&Doc::load(&path).unwrap().0, &doc.0), "{name}");
        let without: String = summed
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("persist-crc32c = "))
            .collect();
        assert_eq!(without, *text, "{name}: checksum");
    }
}

/// The first integer or boolean of `table` (in key order), changed: its path.
fn change_a_leaf(table: &mut toml::Table) -> Option<Vec<String>> {
    for (key, value) in table.iter_mut() {
        if key == "persist-version" {
            continue;
        }
        match value {
            toml::Value::Integer(n) => {
                *n += 1;
                return Some(vec![key.clone()]);
            }
            toml::Value::Boolean(b) => {
                *b = !*b;
                return Some(vec![key.clone()]);
            }
            toml::Value::Table(inner) => {
                if let Some(mut path) = change_a_leaf(inner) {
                    path.insert(0, key.clone());
                    return Some(path);
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::Integer(n) => {
                            *n += 1;
                            return Some(vec![n.to_string()]);
                        }
                        toml::Value::Table(inner) => {
                            if let Some(mut path) = change_a_leaf(inner) {
                                path.insert(0, key.clone());
                                return Some(path);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn one_changed_value_changes_its_line_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in commented() {
        let path = dir.path().join(&name);
        std::fs::write(&path, &text).unwrap();
        let mut doc = Doc::load(&path).unwrap();
        let changed = change_a_leaf(&mut doc.0).unwrap_or_else(|| panic!("{name}: no leaf"));
        doc.save(&path).unwrap();
        let after = read(&path);
        let (before, after): (Vec<&str>, Vec<&str>) =
            (text.lines().collect(), after.lines().collect());
        assert_eq!(
            before.len(),
            after.len(),
            "{name}: {changed:?}\n{}",
            after.join("\n")
        );
        let differing: Vec<(&&str, &&str)> = before
            .iter()
            .zip(after.iter())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(differing.len(), 1, "{name}: {changed:?}: {differing:?}");
        let leaf = changed.last().unwrap();
        assert!(
            differing[0].1.contains(leaf.as_str()),
            "{name}: {differing:?}"
        );
        assert!(same(&Doc::load(&path).unwrap().0, &doc.0), "{name}");
    }
}

#[test]
fn keys_added_and_removed_keep_every_other_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        "# my settings\npersist-version = 1\n\n# colours\ntheme = 'dark' # or light\n\n# gone soon\nfont_size = 0x0E\n",
    )
    .unwrap();
    let mut doc = Doc::load(&path).unwrap();
    doc.0.remove("font_size");
    doc.0.insert("zoom".into(), 2.into());
    doc.save(&path).unwrap();
    assert_eq!(
        read(&path),
        "# my settings\npersist-version = 1\n\n# colours\ntheme = 'dark' # or light\nzoom = 2\n"
    );
    // A value the file spells another way is the same value: left as written.
    let settings = Settings {
        theme: "dark".into(),
        font_size: 14,
        recent: Vec::new(),
    };
    std::fs::write(
        &path,
        "persist-version = 1\ntheme = 'dark'\nfont_size = 0x0E # hex\nrecent = [ ] # none yet\n",
    )
    .unwrap();
    settings.save(&path).unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 1\ntheme = 'dark'\nfont_size = 0x0E # hex\nrecent = [ ] # none yet\n"
    );
    Settings::update(&path, |s| s.recent.push("b.txt".into())).unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 1\ntheme = 'dark'\nfont_size = 0x0E # hex\nrecent = [\"b.txt\"] # none yet\n"
    );
}

#[test]
fn a_file_a_person_wrote_without_a_version_gets_one_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.toml");
    std::fs::write(&path, "# written by hand\ntheme = \"dark\" # mine\n").unwrap();
    let plain = Plain::load(&path).unwrap();
    plain.save(&path).unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 1\n\n# written by hand\ntheme = \"dark\" # mine\n"
    );
    // A type that does not accept unversioned files says what is missing.
    std::fs::write(&path, "theme = \"dark\"\n").unwrap();
    let error = Doc::load(&path).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { reason, .. } if reason.contains("persist-version")),
        "{error}"
    );
}

#[test]
fn parse_errors_name_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let original = "persist-version = 1\ntheme = \"dark\"\nfont_size = = 3\n";
    std::fs::write(&path, original).unwrap();
    let error = Settings::load(&path).unwrap_err();
    match &error {
        Error::Corrupt {
            path: named,
            line,
            column,
            ..
        } => {
            assert_eq!(named, &path);
            assert_eq!((*line, *column), (3, 13), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("line 3"), "{error}");
    // A value of the wrong type: its line, and the field.
    std::fs::write(
        &path,
        "persist-version = 1\ntheme = \"dark\"\nfont_size = \"big\"\n",
    )
    .unwrap();
    match Settings::load(&path).unwrap_err() {
        Error::Corrupt {
            line,
            column,
            field,
            ..
        } => {
            assert_eq!((line, column), (3, 13));
            assert_eq!(field.as_deref(), Some("font_size"));
        }
        other => panic!("{other:?}"),
    }
    // The version must be a number.
    std::fs::write(
        &path,
        "persist-version = \"one\"\ntheme = \"dark\"\nfont_size = 1\n",
    )
    .unwrap();
    match Settings::load(&path).unwrap_err() {
        Error::Corrupt { line, field, .. } => {
            assert_eq!(line, 1);
            assert_eq!(field.as_deref(), Some("persist-version"));
        }
        other => panic!("{other:?}"),
    }
    // A file that could not be read is never replaced by `update` or `load_or_default`.
    std::fs::write(&path, original).unwrap();
    assert!(Settings::update(&path, |s| s.font_size = 1).is_err());
    assert!(Settings::load_or_default(&path).is_err());
    assert_eq!(read(&path), original);
}

#[test]
fn a_newer_or_unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.toml");
    std::fs::write(&path, "persist-version = 9\ntheme = \"x\"\nfont_size = 1\n").unwrap();
    assert!(matches!(
        Settings::load(&path).unwrap_err(),
        Error::FutureVersion { found: 9, .. }
    ));
    std::fs::write(&path, "persist-version = 0\ntheme = \"x\"\nfont_size = 1\n").unwrap();
    assert!(matches!(
        Settings::load(&path).unwrap_err(),
        Error::UnknownVersion { found: 0, .. }
    ));
}

#[test]
fn a_field_named_version_is_data_and_envelope_names_are_refused() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
    #[persist(version = 2, format = "toml")]
    struct Release {
        version: String,
        data: u32,
    }
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Clash {
        #[serde(rename = "persist-version")]
        mine: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("release.toml");
    let release = Release {
        version: "2.4.1".into(),
        data: 7,
    };
    release.save(&path).unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 2\n\nversion = \"2.4.1\"\ndata = 7\n"
    );
    assert_eq!(Release::load(&path).unwrap(), release);
    let clash = dir.path().join("clash.toml");
    let error = Clash { mine: 1 }.save(&clash).unwrap_err();
    assert!(
        matches!(&error, Error::Serialize { .. }) && error.to_string().contains("persist-version"),
        "{error}"
    );
    assert!(!clash.exists());
}

#[test]
fn non_finite_floats_are_written_as_toml_spells_them() {
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Floats {
        nan: f64,
        up: f64,
        down: f32,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floats.toml");
    Floats {
        nan: f64::NAN,
        up: f64::INFINITY,
        down: f32::NEG_INFINITY,
    }
    .save(&path)
    .unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 1\n\nnan = nan\nup = inf\ndown = -inf\n"
    );
    let loaded = Floats::load(&path).unwrap();
    assert!(loaded.nan.is_nan());
    assert_eq!(loaded.up, f64::INFINITY);
    assert_eq!(loaded.down, f32::NEG_INFINITY);
}

#[test]
fn a_checksum_covers_everything_after_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summed.toml");
    let settings = Settings {
        theme: "dark".into(),
        font_size: 14,
        recent: Vec::new(),
    };
    Options::new()
        .checksum(true)
        .save(&settings, &path)
        .unwrap();
    let text = read(&path);
    let (head, data) = text.split_at(text.find("\n\n").unwrap() + 1);
    let crc = format!("{:08x}", crc32c::crc32c(data.as_bytes()));
    assert_eq!(
        head,
        format!("persist-version = 1\npersist-crc32c = \"{crc}\"\n")
    );
    assert_eq!(Settings::load(&path).unwrap(), settings);
    // An edit by hand fails the checksum, and the file stays as it is.
    std::fs::write(&path, text.replace("14", "15")).unwrap();
    let error = Settings::load(&path).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{error}"
    );
    // The comment-keeping save rewrites the checksum.
    std::fs::write(&path, &text).unwrap();
    Options::new()
        .checksum(true)
        .update(&path, |s: &mut Settings| s.font_size = 20)
        .unwrap();
    assert_eq!(Settings::load(&path).unwrap().font_size, 20);
}

#[test]
fn a_format_change_reads_the_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moved");
    let json = JsonSettings {
        theme: "dark".into(),
        font_size: 3,
        recent: Vec::new(),
    };
    json.save(&path).unwrap();
    // The same fields, now a TOML type: the JSON file loads, and the next save is TOML.
    let settings = Settings::load(&path).unwrap();
    assert_eq!(settings.font_size, 3);
    settings.save(&path).unwrap();
    assert!(read(&path).starts_with("persist-version = 1\n"));
    assert_eq!(JsonSettings::load(&path).unwrap(), json);
}

/// The schema before the migration of [`a_migration_keeps_the_comments_of_surviving_keys`].
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
struct AppV1 {
    name: String,
    legacy_mode: bool,
    port: u16,
}

/// Version 2: `name` renamed `title` (declared with `alias`), `legacy_mode` removed, `workers`
/// added.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = AppV1, format = "toml")]
struct App {
    #[serde(alias = "name")]
    title: String,
    port: u16,
    workers: u32,
}

impl From<AppV1> for App {
    fn from(old: AppV1) -> Self {
        App {
            title: old.name,
            port: old.port,
            workers: 4,
        }
    }
}

#[test]
fn a_migration_keeps_the_comments_of_surviving_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(
        &path,
        "# The demo app's settings.\npersist-version = 1\n\n# Shown in the title bar.\nname = \"demo\" # keep it short\n\n# Old behaviour, going away.\nlegacy_mode = true\n\n# Where it listens.\nport = 8080 # 1024 and up\n",
    )
    .unwrap();
    let app = App::load(&path).unwrap();
    app.save(&path).unwrap();
    insta::assert_snapshot!(read(&path), @r###"
    # The demo app's settings.
    persist-version = 2

    # Shown in the title bar.
    title = "demo" # keep it short

    # Where it listens.
    port = 8080 # 1024 and up
    workers = 4
    "###);
    assert_eq!(App::load(&path).unwrap().workers, 4);
    // The version before is kept as a backup, as the JSON files' are.
    assert_eq!(Options::new().backups_of(&path).unwrap()[0].version, 1);
}

#[test]
fn backups_of_toml_files_are_made_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    let v1 = "persist-version = 1\n# comment\nname = \"x\"\nlegacy_mode = false\nport = 1\n";
    std::fs::write(&path, v1).unwrap();
    // A save of the same version over a TOML file keeps no copy of it.
    AppV1::load(&path).unwrap().save(&path).unwrap();
    assert!(Options::new().backups_of(&path).unwrap().is_empty());
    App::load(&path).unwrap().save(&path).unwrap();
    let backups = Options::new().backups_of(&path).unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(read(&backups[0].path), v1);
    Options::new().restore_backup(&path, 1).unwrap();
    assert_eq!(read(&path), v1);
}

#[test]
fn live_keeps_a_hand_edits_comment_through_the_apps_update() {
    for policy in [
        persist::SavePolicy::Immediate,
        persist::SavePolicy::Coalesce {
            debounce: std::time::Duration::from_millis(20),
            max_wait: std::time::Duration::from_millis(100),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.toml");
        Settings {
            theme: "dark".into(),
            font_size: 12,
            recent: Vec::new(),
        }
        .save(&path)
        .unwrap();
        let live = Options::new()
            .save_policy(policy)
            .live::<Settings>(&path)
            .unwrap();
        // A person adds a comment and changes a value while the app runs (written aside and
        // renamed over, as editors do).
        let edited = "persist-version = 1\n\n# my favourite\ntheme = \"solarized\" # set by hand\nfont_size = 12\nrecent = []\n";
        let aside = dir.path().join("edit.tmp");
        std::fs::write(&aside, edited).unwrap();
        std::fs::rename(&aside, &path).unwrap();
        wait_for(|| live.get().theme == "solarized");
        live.update(|s| s.font_size = 13).unwrap();
        live.flush().unwrap();
        assert_eq!(
            read(&path),
            edited.replace("font_size = 12", "font_size = 13"),
            "{policy:?}"
        );
    }
}

fn wait_for(condition: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "not seen in 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Where the corpus of toml-test is vendored.
fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/toml/toml-test")
        .join(kind);
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_valid_document_of_toml_test_loads_and_saves_as_it_was() {
    let files = corpus("valid");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toml/toml-test/valid");
    assert!(files.len() > 100, "{} files", files.len());
    let dir = tempfile::tempdir().unwrap();
    let mut rewritten = Vec::new();
    for file in &files {
        let text = std::fs::read(file).unwrap();
        // An empty file is one a crash or a full disk left: persist refuses it (see
        // tests/corrupt.rs), whatever TOML allows.
        if text.iter().all(u8::is_ascii_whitespace) {
            let path = dir.path().join("blank.toml");
            std::fs::write(&path, &text).unwrap();
            assert!(matches!(Plain::load(&path), Err(Error::Corrupt { .. })));
            continue;
        }
        let path = dir.path().join("doc.toml");
        std::fs::write(&path, &text).unwrap();
        let plain =
            Plain::load(&path).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let expected: toml::Table = toml::from_slice(&text).unwrap();
        assert!(same(&plain.0, &expected), "{}", file.display());
        // Saved, the document is the version on top of the file as it was.
        plain.save(&path).unwrap();
        let saved = read(&path);
        // A byte-order mark stays first.
        let original = String::from_utf8(text).unwrap();
        assert_eq!(
            saved.starts_with('\u{feff}'),
            original.starts_with('\u{feff}'),
            "{}",
            file.display()
        );
        let saved = saved.strip_prefix('\u{feff}').unwrap_or(&saved);
        let body = saved
            .strip_prefix("persist-version = 1\n\n")
            .or_else(|| saved.strip_prefix("persist-version = 1\r\n\r\n"))
            .or_else(|| saved.strip_prefix("persist-version = 1\n"));
        let original = original.strip_prefix('\u{feff}').unwrap_or(&original);
        if body != Some(original) {
            let name = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            rewritten.push(name);
        }
        assert!(
            same(&Plain::load(&path).unwrap().0, &plain.0),
            "{}",
            file.display()
        );
    }
    // What the document editor (toml_edit) writes its own way, data unchanged: a key part
    // spelled differently in two places (`count.a`, `"count" . b`) is written as its first
    // place spells it, dotted keys of two tables interleaved are grouped by table, and a
    // last line without its line end gets one.
    let known = [
        "key/dotted-01.toml",
        "key/dotted-02.toml",
        "spec-1.1.0/common-7.toml",
        "spec-1.1.0/common-9.toml",
        "table/empty-name.toml",
        "table/no-eol-01.toml",
        "table/no-eol-02.toml",
        "table/with-literal-string.toml",
        "table/with-single-quotes.toml",
    ];
    assert_eq!(rewritten, known, "saved otherwise than written");
}

#[test]
fn every_invalid_document_of_toml_test_is_an_error_naming_the_file() {
    let files = corpus("invalid");
    assert!(files.len() > 100, "{} files", files.len());
    let dir = tempfile::tempdir().unwrap();
    for file in &files {
        let path = dir.path().join("doc.toml");
        std::fs::copy(file, &path).unwrap();
        match Plain::load(&path) {
            Err(Error::Corrupt { path: named, .. }) => assert_eq!(named, path),
            other => panic!("{}: {other:?}", file.display()),
        }
    }
}

#[test]
fn collection_entries_are_toml_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let users: persist::Collection<Settings> = persist::Collection::open(dir.path()).unwrap();
    let alice = Settings {
        theme: "dark".into(),
        font_size: 11,
        recent: Vec::new(),
    };
    users.put("alice", &alice).unwrap();
    users.put(&"k".repeat(300), &alice).unwrap();
    assert_eq!(users.get("alice").unwrap(), Some(alice.clone()));
    assert_eq!(users.get(&"k".repeat(300)).unwrap(), Some(alice.clone()));
    let mut keys = users.keys().unwrap().sorted().unwrap();
    keys.sort();
    assert_eq!(keys, ["alice".to_owned(), "k".repeat(300)]);
    users.update("alice", |s| s.font_size = 12).unwrap();
    assert_eq!(users.get("alice").unwrap().unwrap().font_size, 12);
    // The entry's file is the TOML envelope with the key after the version.
    let mut files = vec![dir.path().to_owned()];
    let mut entry = None;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read_to_string(&path).is_ok_and(|text| text.contains("\"alice\"")) {
            entry = Some(read(&path));
        }
    }
    let entry = entry.expect("the entry's file");
    assert!(
        entry.starts_with("persist-version = 1\npersist-key = \"alice\"\n\n"),
        "{entry}"
    );
    // A JSON type's collection asked for TOML.
    let json: persist::Collection<JsonSettings> = Options::new()
        .format(Format::Toml)
        .collection(dir.path().join("json"))
        .unwrap();
    let value = JsonSettings::default();
    json.put("bob", &value).unwrap();
    assert_eq!(json.get("bob").unwrap(), Some(value));
}

#[test]
fn the_migration_kit_reads_and_writes_toml_fixtures() {
    use persist::testing::Fixtures;

    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<App>::new(dir.path());
    // A fixture a person wrote, with comments, and one the kit writes.
    std::fs::create_dir_all(fixtures.version_dir(1)).unwrap();
    std::fs::write(
        fixtures.version_dir(1).join("hand.toml"),
        "# by hand\npersist-version = 1\nname = \"demo\" # short\nlegacy_mode = false\nport = 80\n",
    )
    .unwrap();
    let written = fixtures
        .write(
            "basic",
            &App {
                title: "kit".into(),
                port: 8080,
                workers: 2,
            },
        )
        .unwrap();
    assert_eq!(written, fixtures.version_dir(2).join("basic.toml"));
    assert!(read(&written).starts_with("persist-version = 2\n"));
    // Schema locks are the same whatever the format.
    let loaded = common::kit::run_the_kit(&fixtures);
    let hand = loaded
        .iter()
        .find(|fixture| fixture.name == "hand")
        .unwrap();
    assert_eq!(
        hand.snapshot(),
        "fixture v1/hand.toml, migrated 1 -> 2\n(TOML)\ntitle = \"demo\"\nport = 80\nworkers = 4\n"
    );
}

#[test]
fn what_toml_cannot_hold_is_refused_and_nothing_is_written() {
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct List(Vec<u32>);
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Holes {
        items: Vec<Option<u32>>,
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.toml");
    let error = List(vec![1, 2]).save(&list).unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert!(!list.exists());
    let holes = dir.path().join("holes.toml");
    let error = Holes {
        items: vec![Some(1), None],
    }
    .save(&holes)
    .unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert!(!holes.exists());
}

#[cfg(all(feature = "zstd", feature = "encryption"))]
#[test]
fn compression_and_encryption_wrap_the_toml_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.toml");
    let key = persist::Key::from_bytes([7; 32]);
    let options = Options::new().compress(3).encrypt(key).checksum(true);
    let settings = Settings {
        theme: "dark".into(),
        font_size: 14,
        recent: vec!["x".into()],
    };
    options.save(&settings, &path).unwrap();
    assert!(
        !std::fs::read(&path)
            .unwrap()
            .starts_with(b"persist-version")
    );
    assert_eq!(options.load::<Settings>(&path).unwrap(), settings);
    options
        .update(&path, |s: &mut Settings| s.font_size = 15)
        .unwrap();
    assert_eq!(options.load::<Settings>(&path).unwrap().font_size, 15);
    let info = options.file_info(&path).unwrap();
    assert_eq!(info.format, Format::Toml);
    assert!(info.checksummed);
    assert_eq!(info.version, Some(1));
    assert!(info.data.contains("font_size = 15"), "{}", info.data);
}

/// Version 1 of [`nested_renames_and_moved_entries_keep_their_comments`]'s schema.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
struct LayoutV1 {
    window: WindowV1,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowV1 {
    old_width: u32,
}

/// Version 2: `window.old_width` renamed `window.width`, declared with `renamed(...)` (a field
/// of a nested struct, whose serde aliases the derive cannot see).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(
    version = 2,
    migrate_from = LayoutV1,
    format = "toml",
    renamed("window.old_width" => "window.width")
)]
struct Layout {
    window: Window2,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Window2 {
    width: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Server {
    name: String,
    port: u16,
}

impl From<LayoutV1> for Layout {
    fn from(old: LayoutV1) -> Self {
        Layout {
            window: Window2 {
                width: old.window.old_width,
            },
            servers: old.servers,
        }
    }
}

#[test]
fn nested_renames_and_moved_entries_keep_their_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout.toml");
    std::fs::write(
        &path,
        "persist-version = 1\n\n[window]\n# the width\nold_width = 5 # px\n\n# primary\n[[servers]]\nname = 'alpha' # main one\nport = 1\n\n# fallback\n[[servers]]\nname = \"beta\" # spare\nport = 2\n",
    )
    .unwrap();
    Layout::update(&path, |layout| {
        layout.window.width = 6;
        layout.servers.remove(0);
    })
    .unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 2\n\n[window]\n# the width\nwidth = 6 # px\n\n# fallback\n[[servers]]\nname = \"beta\" # spare\nport = 2\n"
    );
    // An entry added in front, one changed: each keeps its own comments; a literal string
    // that changes stays a literal string.
    std::fs::write(
        &path,
        "persist-version = 2\n\n[window]\nwidth = 6\n\n# first\n[[servers]]\nname = 'alpha' # main\nport = 1\n\n# second\n[[servers]]\nname = 'beta' # spare\nport = 2\n",
    )
    .unwrap();
    Layout::update(&path, |layout| {
        layout.servers.insert(
            0,
            Server {
                name: "new".into(),
                port: 0,
            },
        );
        layout.servers[2].name = "gamma".into();
    })
    .unwrap();
    assert_eq!(
        read(&path),
        "persist-version = 2\n\n[window]\nwidth = 6\n\n[[servers]]\nname = \"new\"\nport = 0\n\n# first\n[[servers]]\nname = 'alpha' # main\nport = 1\n\n# second\n[[servers]]\nname = 'gamma' # spare\nport = 2\n"
    );
}

#[test]
fn arrays_keep_their_layout_when_elements_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arrays.toml");
    let cases = [
        // (file's array, new values, expected array)
        ("[1, 2, 3]", vec![2, 3], "[2, 3]"),
        ("[1, 2, 3]", vec![1, 3], "[1, 3]"),
        ("[1, 2, 3]", vec![0, 1, 2, 3], "[0, 1, 2, 3]"),
        ("[1, 2, 3]", vec![1, 2, 3, 4], "[1, 2, 3, 4]"),
        ("[ 1,2 ]", vec![2], "[ 2 ]"),
        (
            "[\n  1, # one\n  2, # two\n  3,\n]",
            vec![1, 3],
            "[\n  1, # one\n  3,\n]",
        ),
        ("[\n  1,\n  2,\n]", vec![1, 2, 5], "[\n  1,\n  2,\n  5,\n]"),
    ];
    for (array, values, expected) in cases {
        std::fs::write(
            &path,
            format!("persist-version = 1\nitems = {array} # kept\n"),
        )
        .unwrap();
        let mut doc = Doc::load(&path).unwrap();
        doc.0.insert(
            "items".into(),
            toml::Value::Array(values.iter().map(|v| toml::Value::Integer(*v)).collect()),
        );
        doc.save(&path).unwrap();
        assert_eq!(
            read(&path),
            format!("persist-version = 1\nitems = {expected} # kept\n"),
            "{array} -> {values:?}"
        );
    }
}

#[test]
fn what_the_attack_found_holds() {
    let dir = tempfile::tempdir().unwrap();

    // An envelope name as a table (or a map's key) is refused like one as a value.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Meta {
        x: u32,
    }
    #[derive(Debug, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Reserved {
        name: String,
        #[serde(rename = "persist-version")]
        meta: Meta,
    }
    let path = dir.path().join("reserved.toml");
    let error = Reserved {
        name: "x".into(),
        meta: Meta::default(),
    }
    .save(&path)
    .unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert!(!path.exists());
    // Over an existing file too.
    std::fs::write(&path, "persist-version = 1\nname = \"x\"\n").unwrap();
    let mut map = toml::Table::new();
    map.insert(
        "persist-crc32c".into(),
        toml::Value::Table(toml::Table::new()),
    );
    let error = Doc(map).save(&path).unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert_eq!(read(&path), "persist-version = 1\nname = \"x\"\n");

    // A table the save leaves empty stays in the file, dotted or implicit.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Prefs {
        theme: String,
        profiles: std::collections::BTreeMap<String, toml::Table>,
    }
    let path = dir.path().join("profiles.toml");
    std::fs::write(
        &path,
        "persist-version = 1\ntheme = \"dark\"\n\n[profiles.work]\nemail = \"a@b.c\"\n",
    )
    .unwrap();
    Prefs::update(&path, |prefs| prefs.profiles.clear()).unwrap();
    assert!(Prefs::load(&path).unwrap().profiles.is_empty());
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Served {
        server: ServerBlock,
    }
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct ServerBlock {
        port: u16,
        tls: Tls,
    }
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Tls {
        cert: Option<String>,
    }
    let path = dir.path().join("dotted.toml");
    std::fs::write(
        &path,
        "persist-version = 1\nserver.port = 8080 # port\nserver.tls.cert = \"a.pem\"\n",
    )
    .unwrap();
    Served::update(&path, |served| served.server.tls.cert = None).unwrap();
    assert_eq!(Served::load(&path).unwrap().server.tls.cert, None);
    assert!(
        read(&path).contains("server.port = 8080 # port"),
        "{}",
        read(&path)
    );

    // In a CRLF file a string's line breaks are the string's.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Note {
        title: String,
        body: String,
    }
    let path = dir.path().join("crlf.toml");
    std::fs::write(
        &path,
        "persist-version = 1\r\ntitle = \"t\"\r\nbody = \"\"\r\n",
    )
    .unwrap();
    Note::update(&path, |note| note.body = "line one\nline two".into()).unwrap();
    assert_eq!(Note::load(&path).unwrap().body, "line one\nline two");
    assert!(read(&path).starts_with("persist-version = 1\r\ntitle = \"t\"\r\n"));
    std::fs::write(
        &path,
        "persist-version = 1\r\ntitle = \"t\"\r\nbody = \"\"\"\nA\nB\"\"\"\r\n",
    )
    .unwrap();
    Note::update(&path, |note| note.title = "u".into()).unwrap();
    assert_eq!(Note::load(&path).unwrap().body, "A\nB");

    // What a save writes, a load reads: nesting past the parser's limit is refused at save.
    #[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
    #[persist(version = 1, format = "toml")]
    struct Tree {
        name: String,
        children: Vec<Tree>,
    }
    let mut tree = Tree::default();
    for depth in 0..100 {
        tree = Tree {
            name: format!("level {depth}"),
            children: vec![tree],
        };
    }
    let path = dir.path().join("deep.toml");
    let error = tree.save(&path).unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert!(!path.exists());

    // A TOML file whose checksum fails is kept aside by the save that replaces it.
    let path = dir.path().join("summed.toml");
    std::fs::write(
        &path,
        "persist-version = 1\npersist-crc32c = \"00000000\"\n\ntheme = \"x\"\nfont_size = 1\n",
    )
    .unwrap();
    assert!(Settings::load(&path).is_err());
    Settings::default().save(&path).unwrap();
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("summed.toml.") && name.contains("corrupt"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}
