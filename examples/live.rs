//! Live settings: the app keeps its settings in memory, changes them as it runs, and sees the
//! edits you make to the file while it runs.
//!
//! ```sh
//! cargo run --example live                        # a new settings file in a temporary folder
//! cargo run --example live -- settings.json 60    # that file, for 60 seconds
//! ```
//!
//! While it runs, edit the file from another terminal, for instance
//!
//! ```sh
//! echo '{"version":2,"data":{"theme":"dark","font_size":20,"ticks":0}}' > settings.json
//! ```
//!
//! and the app prints the new value (a version 1 file is migrated on the way in). Write
//! something that is not a settings file and the app keeps its last good settings, prints the
//! error, and refuses to save over your file until it is readable again. The app also makes
//! one such edit itself after two seconds, with `sh -c "echo ... > file"`, so that a run
//! without a second terminal shows it too.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use persist::{ChangeOrigin, Options, Persisted, SavePolicy};
use serde::{Deserialize, Serialize};

/// Version 1 of the app stored only a theme.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    theme: String,
}

/// Version 2: a font size, and a counter the app raises every second.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
struct Settings {
    theme: String,
    font_size: u32,
    ticks: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            theme: "light".into(),
            font_size: 14,
            ticks: 0,
        }
    }
}

impl From<SettingsV1> for Settings {
    fn from(old: SettingsV1) -> Self {
        Settings {
            theme: old.theme,
            ..Settings::default()
        }
    }
}

fn main() -> Result<(), persist::Error> {
    let mut args = std::env::args().skip(1);
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let path = args
        .next()
        .map_or_else(|| temporary.path().join("settings.json"), PathBuf::from);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);

    // Each update is durable when it returns (SavePolicy::Immediate, the default). An app that
    // changes its state many times a second would pick SavePolicy::Coalesce { debounce,
    // max_wait }: published at once, saved at most once per max_wait.
    let live = Options::new()
        .save_policy(SavePolicy::Immediate)
        .live::<Settings>(&path)?;
    println!("settings: {}", path.display());
    println!("now: {:?}", live.get());
    println!(
        "try: echo '{{\"version\":2,\"data\":{{\"theme\":\"dark\",\"font_size\":20,\"ticks\":0}}}}' > {}",
        path.display()
    );

    let _printer = live.on_change(|event| match (event.origin(), event.error()) {
        (_, Some(error)) => println!("! {error}"),
        (ChangeOrigin::External, None) => println!("edited outside: {:?}", event.value()),
        (_, None) => {}
    });

    let started = Instant::now();
    let mut edited = false;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        match live.update(|settings| settings.ticks += 1) {
            Ok(settings) => println!("tick {} (font size {})", settings.ticks, settings.font_size),
            Err(error) => println!("not saved: {error}"),
        }
        if !edited && started.elapsed() >= Duration::from_secs(2) {
            edited = true;
            // The same edit you would make by hand: a version 1 file, written in place.
            Command::new("sh")
                .arg("-c")
                .arg(r#"echo '{"version":1,"data":{"theme":"solarized"}}' > "$0""#)
                .arg(&path)
                .status()
                .expect("sh runs");
        }
    }
    live.flush()?;
    println!("saved: {:?}", Settings::load(&path)?);
    Ok(())
}
