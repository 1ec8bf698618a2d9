//! Files persist creates are 0600 from creation whatever the umask. Alone in its test binary
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
fn state_lock_and_backup_files_are_private_under_any_umask() {
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
        for file in ["secret.json", "secret.json.lock", "secret.json.v1.bak"] {
            assert_eq!(
                mode(&dir.path().join(file)),
                0o600,
                "{file} under umask {umask:o}"
            );
        }
    }
}
