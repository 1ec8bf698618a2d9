//! Many values by key: a user directory kept in a collection on the local disk.
//!
//! ```sh
//! cargo run --example collection                  # a collection in a temporary folder
//! cargo run --example collection -- data/users    # that folder (run it twice: logins go up)
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
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temporary.path().join("users"), PathBuf::from);

    // An entry the first release wrote, still at version 1 on disk.
    let old: Collection<UserV1> = Collection::open(&dir)?;
    if !old.contains("grace")? {
        old.put(
            "grace",
            &UserV1 {
                name: "Grace Hopper".into(),
            },
        )?;
    }

    let users: Collection<User> = Collection::open(&dir)?;
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
    println!("keys: {:?}", users.keys()?);

    for (key, user) in users.iter()? {
        println!("{key:>12} -> {:?}", user?);
    }
    println!("stored in {}", dir.display());
    Ok(())
}
