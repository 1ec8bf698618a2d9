//! Many values by key: a user directory kept in a collection on the local disk.
//!
//! ```sh
//! cargo run --example collection                  # a collection in a temporary folder
//! cargo run --example collection -- data/users    # that folder (run it twice: logins go up)
//! # a PostgreSQL table, given a connection string or URL (`.ci/postgres` starts a server):
//! cargo run --example collection --features postgres -- "$(bash .ci/postgres)"
//! ```
//!
//! It stores a few users, one batch among them, counts logins with `update` (no lost update,
//! even from several processes at once), lists the keys (any UTF-8 string is a key), and
//! migrates entries an older version of the program wrote.

use std::path::PathBuf;

use persist::{Collection, Persisted};
use serde::{Deserialize, Serialize};

/// What the first release stored.
#[derive(Debug, Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct UserV1 {
    name: String,
}

/// The current version counts logins.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = UserV1)]
struct User {
    name: String,
    logins: u64,
}

impl From<UserV1> for User {
    fn from(old: UserV1) -> Self {
        User {
            name: old.name,
            logins: 0,
        }
    }
}

fn main() -> Result<(), persist::Error> {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let place = std::env::args().nth(1);
    let is_database = |place: &str| place.starts_with("postgres") || place.contains("host=");
    if let Some(config) = place.as_deref().filter(|place| is_database(place)) {
        return on_postgres(config);
    }
    let dir = place.map_or_else(|| temporary.path().join("users"), PathBuf::from);
    let old: Collection<UserV1> = Collection::open(&dir)?;
    let users: Collection<User> = Collection::open(&dir)?;
    run(&old, &users)?;
    println!("stored in {}", dir.display());
    Ok(())
}

#[cfg(feature = "postgres")]
fn on_postgres(config: &str) -> Result<(), persist::Error> {
    use std::sync::Arc;

    use persist::Options;
    use persist::backend::Postgres;

    let backend = Arc::new(Postgres::connect(config, "users")?);
    let old: Collection<UserV1> = Collection::with_backend(backend.clone(), Options::new());
    let users: Collection<User> = Collection::with_backend(backend, Options::new());
    run(&old, &users)?;
    println!("stored in the table users of {config}");
    Ok(())
}

#[cfg(not(feature = "postgres"))]
fn on_postgres(_config: &str) -> Result<(), persist::Error> {
    eprintln!(
        "PostgreSQL needs the postgres feature: cargo run --example collection --features postgres -- URL"
    );
    std::process::exit(2);
}

fn run(old: &Collection<UserV1>, users: &Collection<User>) -> Result<(), persist::Error> {
    // An entry the first release wrote, still at version 1.
    if !old.contains("grace")? {
        old.put(
            "grace",
            &UserV1 {
                name: "Grace Hopper".into(),
            },
        )?;
    }

    users.put_many([
        (
            "ada",
            &User {
                name: "Ada Lovelace".into(),
                logins: 0,
            },
        ),
        (
            "Alan Turing",
            &User {
                name: "Alan Turing".into(),
                logins: 0,
            },
        ),
        (
            "エミー",
            &User {
                name: "Emmy Noether".into(),
                logins: 0,
            },
        ),
    ])?;
    let report = users.migrate_all()?;
    println!(
        "migrate_all: {} entries, {} rewritten at version 2, {} already current, {} failed",
        report.total,
        report.migrated,
        report.current,
        report.failed.len()
    );
    for key in ["ada", "ada", "grace"] {
        let user = users.update(key, |user| user.logins += 1)?;
        println!("{key}: {} has logged in {} time(s)", user.name, user.logins);
    }
    println!("keys: {:?}", users.keys()?.sorted()?);

    for (key, user) in users.iter()? {
        println!("{key:>12} -> {:?}", user?);
    }
    Ok(())
}
