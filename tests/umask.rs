//! Files persist creates are 0600 from creation (directories 0700) whatever the umask, and a
//! file it replaces keeps its mode. Alone in its test binary
//! because the umask is per process.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 2)]
struct Secret {
    token: String,
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn what_persist_creates_is_private_under_any_umask() {
    for umask in [0o000, 0o022, 0o077] {
        unsafe { libc::umask(umask) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        fs::write(&path, br#"{"version":1,"data":{"token":"old"}}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        Secret::update(&path, |secret| secret.token = "t0ken".into()).unwrap_err();
        // Version 1 is not in this chain: overwrite it on purpose, which keeps a backup.
        Secret {
            token: "t0ken".into(),
        }
        .save(&path)
        .unwrap();
        Secret::update(&path, |secret| secret.token.push('!')).unwrap();
        // The file the user made 0644 stays 0644 (a save keeps the mode of the file it
        // replaces); what persist creates is 0600.
        assert_eq!(mode(&path), 0o644, "secret.json under umask {umask:o}");
        for file in ["secret.json.lock", "secret.json.v1.bak"] {
            assert_eq!(
                mode(&dir.path().join(file)),
                0o600,
                "{file} under umask {umask:o}"
            );
        }
        let new = dir.path().join("sub").join("new.json");
        Secret::default().save(&new).unwrap();
        assert_eq!(mode(&new), 0o600, "a new file under umask {umask:o}");
        assert_eq!(
            mode(&dir.path().join("sub")),
            0o700,
            "a new directory under umask {umask:o}"
        );
    }
}
