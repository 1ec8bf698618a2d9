//! The rows of TOML files (issue 27), on a settings file of about 2 KiB: persist's load and save
//! against `toml::from_str` / `toml::to_string` with the same durable write by hand, and the
//! save that keeps a person's comments (written into the file's document) against a plain
//! `toml::to_string` save, with and without the syncs (without them the row shows the work of
//! keeping the comments alone).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use persist::{Durability, Options, Persisted};
use persist_bench::baseline;
use serde::{Deserialize, Serialize};

use super::{Contender, RowResult, Target, Workload, measure};

/// Settings of an editor, about 2 KiB of TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
struct EditorSettings {
    theme: String,
    font_family: String,
    font_size: u32,
    line_numbers: bool,
    autosave_seconds: u32,
    recent: Vec<String>,
    window: Window,
    keys: BTreeMap<String, String>,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    width: u32,
    height: u32,
    maximized: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Server {
    name: String,
    host: String,
    port: u16,
    tls: bool,
}

impl EditorSettings {
    fn sample() -> Self {
        EditorSettings {
            theme: "solarized-dark".into(),
            font_family: "Iosevka Term".into(),
            font_size: 14,
            line_numbers: true,
            autosave_seconds: 30,
            recent: (0..12)
                .map(|n| format!("/home/user/projects/demo/src/module_{n}.rs"))
                .collect(),
            window: Window {
                width: 1280,
                height: 800,
                maximized: false,
            },
            keys: (0..24)
                .map(|n| (format!("command-{n:02}"), format!("ctrl+shift+{n}")))
                .collect(),
            servers: (0..5)
                .map(|n| Server {
                    name: format!("server-{n}"),
                    host: format!("10.0.0.{n}"),
                    port: 8000 + n,
                    tls: n % 2 == 0,
                })
                .collect(),
        }
    }
}

/// `text` as a person keeps it: a comment above every table and every fifth line, and one
/// after every seventh value.
fn commented(text: &str) -> String {
    let mut out = String::from("# Settings of the demo editor; edit while it runs.\n");
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('[') || n % 5 == 0 {
            out.push_str(&format!("\n# about line {n}\n"));
        }
        out.push_str(line);
        if n % 7 == 3 && line.contains(" = ") && !line.ends_with('[') {
            out.push_str("   # set by hand");
        }
        out.push('\n');
    }
    out
}

pub(super) fn rows(dir: &Path, small: Workload) -> Vec<RowResult> {
    let settings = EditorSettings::sample();
    let dir = dir.join("toml");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = format!(
        "persist-version = 1\n\n{}",
        toml::to_string(&settings).unwrap()
    );
    let file = commented(&plain);
    let bytes = file.len() as u64;
    let load_path = dir.join("load.toml");
    std::fs::write(&load_path, &file).unwrap();
    assert_eq!(EditorSettings::load(&load_path).unwrap(), settings);
    let workload = Workload {
        batch: 1,
        rounds: small.rounds.min(31),
        ..small
    };
    let mut rows = Vec::new();

    const HAND_LOAD: &str = "fs::read_to_string + toml::from_str (hand)";
    const PERSIST_LOAD: &str = "persist load";
    rows.push(measure(
        "toml load 2 KiB",
        Workload {
            batch: 20,
            ..workload
        },
        bytes,
        vec![
            Contender::new(HAND_LOAD, || {
                let text = std::fs::read_to_string(&load_path).unwrap();
                let read: EditorSettings = toml::from_str(&text).unwrap();
                std::hint::black_box(read);
            }),
            Contender::new(PERSIST_LOAD, || {
                std::hint::black_box(EditorSettings::load(&load_path).unwrap());
            }),
        ],
        vec![Target::new(PERSIST_LOAD, HAND_LOAD, 1.10)],
    ));

    // A save that makes a new file: each call writes a file of its own name.
    const HAND_SAVE: &str = "toml::to_string + durable write (hand)";
    const PERSIST_SAVE: &str = "persist save";
    let made = AtomicUsize::new(0);
    let fresh = |kind: &str| {
        let n = made.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("new-{kind}-{n}.toml"))
    };
    rows.push(measure(
        "toml save 2 KiB, new file",
        workload,
        bytes,
        vec![
            Contender::new(HAND_SAVE, || {
                let text = format!(
                    "persist-version = 1\n\n{}",
                    toml::to_string(&settings).unwrap()
                );
                baseline::write_durably(text.as_bytes(), &fresh("hand")).unwrap();
            }),
            Contender::new(PERSIST_SAVE, || {
                settings.save(fresh("persist")).unwrap();
            }),
        ],
        vec![Target::new(PERSIST_SAVE, HAND_SAVE, 1.10)],
    ));

    // Over the commented file: persist writes into its document, the hand save replaces it.
    const HAND_OVER: &str = "toml::to_string + atomic write over the file (hand)";
    const PERSIST_OVER: &str = "persist save keeping comments";
    for (durable, name) in [
        (true, "toml save over a commented 2 KiB file"),
        (false, "toml save over a commented 2 KiB file, no sync"),
    ] {
        let hand_path = dir.join(format!("hand-{durable}.toml"));
        let persist_path = dir.join(format!("persist-{durable}.toml"));
        std::fs::write(&hand_path, &file).unwrap();
        std::fs::write(&persist_path, &file).unwrap();
        let options = match durable {
            true => Options::new(),
            false => Options::new().durability(Durability::None),
        };
        let mut changed = settings.clone();
        let mut hand_changed = settings.clone();
        rows.push(measure(
            name,
            workload,
            bytes,
            vec![
                Contender::new(HAND_OVER, || {
                    hand_changed.font_size += 1;
                    let text = format!(
                        "persist-version = 1\n\n{}",
                        toml::to_string(&hand_changed).unwrap()
                    );
                    match durable {
                        true => baseline::write_durably(text.as_bytes(), &hand_path).unwrap(),
                        false => baseline::write_unsynced(text.as_bytes(), &hand_path).unwrap(),
                    }
                }),
                Contender::new(PERSIST_OVER, || {
                    changed.font_size += 1;
                    options.save(&changed, &persist_path).unwrap();
                }),
            ],
            // The target is the save's (durable, as saves are by default); without the syncs
            // the row shows what keeping the comments costs the processor, reported only.
            match durable {
                true => vec![Target::new(PERSIST_OVER, HAND_OVER, 2.0)],
                false => Vec::new(),
            },
        ));
        // Every comment is still in the file.
        let saved = std::fs::read_to_string(&persist_path).unwrap();
        assert_eq!(saved.matches('#').count(), file.matches('#').count());
    }
    rows
}
