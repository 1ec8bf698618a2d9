//! Settings shared by two processes: each keeps the same collection entry as a `Live` value,
//! edits it, and prints the other's edits as they arrive.
//!
//! ```sh
//! # through PostgreSQL (`.ci/postgres` starts a throwaway server and prints its address):
//! cargo run --example shared_settings --features postgres -- "$(bash .ci/postgres)"
//! # through a directory on this machine:
//! cargo run --example shared_settings
//! ```
//!
//! The program starts a second copy of itself; the two ("A" and "B") make five edits each,
//! a moment apart. Each edit is a compare-and-swap on the entry, made again on the newer value
//! when the other process got there first, so none is lost: both end at ten edits.

use std::time::{Duration, Instant};

use persist::{ChangeOrigin, Collection, Persisted};
use serde::{Deserialize, Serialize};

/// What the two processes share.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Settings {
    volume: u32,
    theme: String,
    edited_by: String,
}

/// How many edits each process makes.
const EDITS: u32 = 5;

/// Tells the second process its name and where the settings are.
const ROLE: &str = "PERSIST_EXAMPLE_ROLE";
const PLACE: &str = "PERSIST_EXAMPLE_PLACE";

fn main() -> Result<(), persist::Error> {
    if let (Ok(role), Ok(place)) = (std::env::var(ROLE), std::env::var(PLACE)) {
        return edit(&role, &place);
    }
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let place = match std::env::args().nth(1) {
        Some(config) => config,
        None => temporary.path().join("settings").display().to_string(),
    };
    // The entry starts afresh (a table keeps what earlier runs left), before the second
    // process opens it.
    open(&place)?.put("shared", &Settings::default())?;
    let mut other = std::process::Command::new(std::env::current_exe().expect("this program"))
        .env(ROLE, "B")
        .env(PLACE, &place)
        .spawn()
        .expect("the second process");
    let edited = edit("A", &place);
    let status = other.wait().expect("the second process ends");
    edited?;
    assert!(status.success(), "the second process failed");
    Ok(())
}

/// The collection at `place`: a PostgreSQL table when `place` is a connection string, else a
/// directory.
fn open(place: &str) -> Result<Collection<Settings>, persist::Error> {
    if place.starts_with("postgres") || place.contains("host=") {
        return on_postgres(place);
    }
    Collection::open(place)
}

#[cfg(feature = "postgres")]
fn on_postgres(config: &str) -> Result<Collection<Settings>, persist::Error> {
    let table = persist::backend::Postgres::connect(config, "shared_settings")?;
    Ok(Collection::with_backend(
        std::sync::Arc::new(table),
        persist::Options::new(),
    ))
}

#[cfg(not(feature = "postgres"))]
fn on_postgres(_config: &str) -> Result<Collection<Settings>, persist::Error> {
    eprintln!(
        "PostgreSQL needs the postgres feature: cargo run --example shared_settings --features \
         postgres -- URL"
    );
    std::process::exit(2);
}

/// One process: five edits of the shared entry, printing the other's as they arrive, then
/// waiting until the other's last edit is in.
fn edit(me: &str, place: &str) -> Result<(), persist::Error> {
    let settings = open(place)?;
    let shared = settings.live("shared")?;
    let me_too = me.to_owned();
    let _printer = shared.on_change(move |event| {
        if event.origin() != ChangeOrigin::Local && event.value().edited_by != me_too {
            let value = event.value();
            println!(
                "[{me_too}] {} set volume {} and theme {:?}",
                value.edited_by, value.volume, value.theme
            );
        }
    });
    for n in 1..=EDITS {
        let after = shared.update({
            let me = me.to_owned();
            move |settings| {
                settings.volume += 1;
                settings.theme = format!("{me}-{n}");
                settings.edited_by.clone_from(&me);
            }
        })?;
        println!("[{me}] edit {n}: volume {}", after.volume);
        std::thread::sleep(Duration::from_millis(150));
    }
    // The other process's edits come through the collection's feed.
    let waited = Instant::now();
    while shared.get().volume < 2 * EDITS && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let volume = shared.get().volume;
    println!(
        "[{me}] done: volume {volume} (both processes' {} edits)",
        2 * EDITS
    );
    assert_eq!(volume, 2 * EDITS, "an edit is missing");
    Ok(())
}
