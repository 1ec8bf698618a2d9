//! `#[persist(validate = ...)]`: every value a load returns is checked after the last migration
//! step; a refusal is `Error::Migration` carrying a `ValidationError`, and the file stays as it
//! was, through every verb that loads (load, load_or_default, update, collections, the kit).

use std::fs;

use persist::testing::Fixtures;
use persist::{Error, Options, Persisted, ValidationError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct PortsV1 {
    port: i64,
}

/// Version 2 keeps the port in range; version 1 never checked it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = PortsV1, validate = check_ports)]
struct Ports {
    port: i64,
    host: String,
}

impl From<PortsV1> for Ports {
    fn from(old: PortsV1) -> Self {
        Ports {
            port: old.port,
            host: "localhost".into(),
        }
    }
}

fn check_ports(ports: &Ports) -> Result<(), String> {
    match ports.port {
        1..=65535 => Ok(()),
        port => Err(format!("port {port} is outside 1..=65535")),
    }
}

/// A validation whose error is a typed error of the application.
#[derive(Debug, thiserror::Error)]
#[error("the name is empty")]
struct EmptyName;

mod checks {
    pub(super) fn name(named: &super::Named) -> Result<(), super::EmptyName> {
        match named.name.is_empty() {
            true => Err(super::EmptyName),
            false => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, validate = checks::name)]
struct Named {
    name: String,
}

fn refusal(error: &Error) -> (u32, u32, String) {
    match error {
        Error::Migration {
            from, to, source, ..
        } => {
            let refused = source
                .downcast_ref::<ValidationError>()
                .unwrap_or_else(|| panic!("not a validation refusal: {error}"));
            (*from, *to, refused.reason.to_string())
        }
        other => panic!("expected Error::Migration, got {other:?}"),
    }
}

#[test]
fn a_value_migrated_from_an_older_file_is_checked_after_the_last_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ports.json");
    PortsV1 { port: 70000 }.save(&path).unwrap();
    let before = fs::read(&path).unwrap();

    let error = Ports::load(&path).unwrap_err();
    assert_eq!(
        refusal(&error),
        (1, 2, "port 70000 is outside 1..=65535".into())
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("migrated from version 1 to version 2 was refused by its validation"),
        "{message}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the file was left as it was"
    );
    // The older version has no check: the file is its own.
    assert_eq!(PortsV1::load(&path).unwrap().port, 70000);

    PortsV1 { port: 8080 }.save(&path).unwrap();
    assert_eq!(Ports::load(&path).unwrap().port, 8080);
}

#[test]
fn a_file_of_the_current_version_is_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ports.json");
    fs::write(&path, br#"{"version":2,"data":{"port":0,"host":"h"}}"#).unwrap();
    let error = Ports::load(&path).unwrap_err();
    assert_eq!(
        refusal(&error),
        (2, 2, "port 0 is outside 1..=65535".into())
    );
    assert!(
        error
            .to_string()
            .contains("the value of version 2 was refused by its validation: port 0"),
        "{error}"
    );
    // Pretty, reordered and checksummed files take other decode paths: each is checked.
    for bytes in [
        "{\n  \"version\": 2,\n  \"data\": {\"port\": 0, \"host\": \"h\"}\n}\n",
        r#"{"data":{"port":0,"host":"h"},"version":2}"#,
    ] {
        fs::write(&path, bytes).unwrap();
        assert_eq!(refusal(&Ports::load(&path).unwrap_err()).0, 2, "{bytes}");
    }
    Options::new()
        .checksum(true)
        .save(
            &Ports {
                port: 0,
                host: "h".into(),
            },
            &path,
        )
        .unwrap();
    assert_eq!(refusal(&Ports::load(&path).unwrap_err()).0, 2);
}

#[test]
fn saves_are_not_checked_and_the_error_type_is_the_application_s() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("named.json");
    // A save writes what it is given; the next load refuses it.
    Named::default().save(&path).unwrap();
    let error = Named::load(&path).unwrap_err();
    match &error {
        Error::Migration { source, .. } => {
            let refused = source.downcast_ref::<ValidationError>().unwrap();
            assert!(refused.reason.downcast_ref::<EmptyName>().is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("the name is empty"), "{error}");
}

#[test]
fn every_verb_that_loads_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ports.json");
    PortsV1 { port: -1 }.save(&path).unwrap();
    let before = fs::read(&path).unwrap();

    assert_eq!(refusal(&Ports::load_or_default(&path).unwrap_err()).0, 1);
    assert_eq!(
        refusal(&Ports::update(&path, |ports| ports.port = 80).unwrap_err()).0,
        1
    );
    assert_eq!(
        refusal(&Options::new().load_reported::<Ports>(&path).unwrap_err()).0,
        1
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        refusal(&runtime.block_on(Ports::load_async(&path)).unwrap_err()).0,
        1
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    // `update` took the file's lock; nothing else was written beside it (no backup, no
    // temporary file).
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ports.json", "ports.json.lock"]);
}

#[test]
fn a_collection_entry_is_checked_as_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let collection = Options::new().collection::<Named>(dir.path()).unwrap();
    collection.put("ok", &Named { name: "n".into() }).unwrap();
    collection.put("empty", &Named::default()).unwrap();
    assert_eq!(collection.get("ok").unwrap().unwrap().name, "n");
    let error = collection.get("empty").unwrap_err();
    assert!(
        matches!(&error, Error::Migration { source, .. } if source.is::<ValidationError>()),
        "{error:?}"
    );
}

#[test]
fn the_kit_runs_the_check_on_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::<Ports>::new(dir.path());
    fixtures.write("good", &PortsV1 { port: 443 }).unwrap();
    fixtures
        .write("out-of-range", &PortsV1 { port: 0 })
        .unwrap();
    fixtures
        .write(
            "good",
            &Ports {
                port: 1,
                host: "h".into(),
            },
        )
        .unwrap();
    let loaded = fixtures.load_all().unwrap();
    let refused = loaded
        .iter()
        .find(|fixture| fixture.name == "out-of-range")
        .unwrap();
    assert_eq!(
        refused.snapshot().lines().next().unwrap(),
        "fixture v1/out-of-range.json, migrated 1 -> 2, then refused by `validate`"
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fixtures.assert_outcomes(&loaded)
    }));
    let message = *outcome.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("fixture v1/out-of-range.json does not load")
            && message.contains("refused by its validation: port 0"),
        "{message}"
    );

    // Declared to fail, it passes.
    let from = fixtures.version_dir(1).join("out-of-range.json");
    fs::rename(&from, from.with_file_name("out-of-range.fails.json")).unwrap();
    fixtures.assert_outcomes(&fixtures.load_all().unwrap());
}
