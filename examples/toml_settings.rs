//! A TOML settings file with comments, changed by the program (through a `Live` value) and by
//! `sed` while the program runs: every comment is still there at the end.
//!
//! ```sh
//! cargo run --example toml_settings --features toml
//! ```
//!
//! The program writes a commented file as a person would, prints it, changes a value, lets
//! `sed` change another (as a person in an editor would, while the program runs), waits until
//! its `Live` value has reloaded that edit, changes one more value, and prints the file again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use persist::{Live, Persisted};
use serde::{Deserialize, Serialize};

/// The program's settings, saved in TOML.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1, format = "toml")]
struct Settings {
    theme: String,
    font_size: u32,
    autosave_seconds: u32,
    window: Window,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Window {
    width: u32,
    height: u32,
}

/// The file as a person wrote it.
const WRITTEN_BY_HAND: &str = r#"# Settings of the demo editor.
# Edit them while it runs: it picks the changes up.
persist-version = 1

# "light" or "dark".
theme = "light"
font_size = 13          # points
autosave_seconds = 30   # 0 turns autosave off

# The main window, in pixels.
[window]
width = 1024
height = 768
"#;

fn main() -> Result<(), persist::Error> {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let path = temporary.path().join("settings.toml");
    std::fs::write(&path, WRITTEN_BY_HAND).expect("the settings file");
    println!(
        "--- {} as written by hand:\n{}",
        path.display(),
        read(&path)
    );

    let live: Live<Settings> = Settings::live(&path)?;

    // The program changes a value: only that value's text changes.
    live.update(|settings| settings.theme = "dark".into())?;

    // A person changes another one with sed, while the program runs.
    edit_by_hand(&path);
    let started = Instant::now();
    while live.get().font_size != 15 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the edit was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "the program reloaded the edit: font_size = {}",
        live.get().font_size
    );

    // The program changes one more value, over the file as the person left it.
    live.update(|settings| settings.window.width = 1280)?;
    drop(live);

    let after = read(&path);
    println!("--- the file after both edits:\n{after}");
    for line in WRITTEN_BY_HAND.lines() {
        if let Some(at) = line.find('#') {
            let comment = &line[at..];
            assert!(after.contains(comment), "lost: {comment}");
        }
    }
    println!("every comment is still there");
    Ok(())
}

/// `sed -i 's/^font_size = 13/font_size = 15/'` on the file (sed writes a new file and renames
/// it over, as editors do); the same edit in Rust where there is no sed.
fn edit_by_hand(path: &Path) {
    let sed = Command::new("sed")
        .args(["-i", "s/^font_size = 13/font_size = 15/"])
        .arg(path)
        .status();
    match sed {
        Ok(status) if status.success() => println!("sed changed font_size to 15"),
        _ => {
            println!("(no sed here: the same edit made in Rust)");
            let edited = read(path).replace("font_size = 13", "font_size = 15");
            let aside = path.with_extension("edit");
            std::fs::write(&aside, edited).expect("the edited file");
            std::fs::rename(&aside, path).expect("the edited file in place");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("the settings file")
}
