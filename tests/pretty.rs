//! Pretty files: `Options::pretty` and `#[persist(pretty)]` write indented JSON that loads like
//! a compact file, with checksums over the bytes as written and every other guarantee kept.

mod common;

use std::fs;

use common::listing;
use persist::{Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct PanelV1 {
    theme: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = PanelV1, pretty)]
struct Panel {
    theme: String,
    sizes: Vec<u32>,
    empty: Vec<u32>,
    note: Option<String>,
    ratio: f64,
}

impl From<PanelV1> for Panel {
    fn from(old: PanelV1) -> Self {
        Panel {
            theme: old.theme,
            sizes: vec![1, 2],
            empty: Vec::new(),
            note: None,
            ratio: 0.5,
        }
    }
}

fn panel() -> Panel {
    PanelV1 {
        theme: "dark".into(),
    }
    .into()
}

const PRETTY: &str = r#"{
  "version": 2,
  "data": {
    "theme": "dark",
    "sizes": [
      1,
      2
    ],
    "empty": [],
    "note": null,
    "ratio": 0.5
  }
}
"#;

#[test]
fn the_derive_key_writes_indented_json_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panel.json");
    panel().save(&path).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), PRETTY);
    assert_eq!(Panel::load(&path).unwrap(), panel());
    // Edited by hand, it still loads.
    fs::write(&path, PRETTY.replace("\"dark\"", "\"light\"")).unwrap();
    assert_eq!(Panel::load(&path).unwrap().theme, "light");
}

#[test]
fn the_option_indents_any_type_and_the_checksum_covers_the_bytes_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.json");
    let options = Options::new().pretty(true).checksum(true);
    options
        .save(
            &PanelV1 {
                theme: "dark".into(),
            },
            &path,
        )
        .unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let data = "{\n    \"theme\": \"dark\"\n  }";
    assert_eq!(
        text,
        format!(
            "{{\n  \"version\": 1,\n  \"data\": {data},\n  \"crc32c\": \"{:08x}\"\n}}\n",
            crc32c::crc32c(data.as_bytes())
        )
    );
    assert_eq!(PanelV1::load(&path).unwrap().theme, "dark");
    // A changed byte inside the data is caught, indentation or not.
    fs::write(&path, text.replace("dark", "dork")).unwrap();
    assert!(matches!(
        PanelV1::load(&path),
        Err(Error::Corrupt { reason, .. }) if reason.starts_with("checksum mismatch")
    ));
    // Compact saves of a pretty type are not possible by option: the type decides.
    Options::new().pretty(false).save(&panel(), &path).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), PRETTY);
}

#[test]
fn pretty_saves_keep_the_other_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panel.json");
    // A version-1 pretty file is recognised as such: the first save of version 2 backs it up.
    Options::new()
        .pretty(true)
        .save(
            &PanelV1 {
                theme: "dark".into(),
            },
            &path,
        )
        .unwrap();
    let v1 = fs::read(&path).unwrap();
    let migrated = Panel::load(&path).unwrap();
    migrated.save(&path).unwrap();
    assert_eq!(fs::read(dir.path().join("panel.json.v1.bak")).unwrap(), v1);
    // NaN is refused before anything is replaced.
    let before = listing(dir.path());
    let mut bad = panel();
    bad.ratio = f64::NAN;
    assert!(matches!(
        bad.save(&path),
        Err(Error::Serialize { field: Some(field), .. }) if field == "data.ratio"
    ));
    assert_eq!(listing(dir.path()), before);
}
