//! How programs people use replace a file, done for real: the writers of the external-edit
//! tests (`tests/live.rs`) and of the bench rows that time them (`bench/benches/suite.rs`
//! includes this file).

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// One way of writing a new version of a file another program keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// A temporary file in the same directory, fsynced, renamed over the file: what persist,
    /// and most careful programs, do.
    AtomicRename,
    /// vim with `backupcopy=yes`: a backup copy, then the file truncated and rewritten in place,
    /// then the backup removed.
    VimBackupCopy,
    /// vim's default on Unix (`writebackup`, `backupcopy=auto` choosing a rename): the file
    /// renamed to `<name>~`, a new file written under the name, the backup removed.
    VimRename,
    /// Real vim (`vim -Es`, no vimrc), whatever its build does by default.
    RealVim,
    /// GNU `sed -i`: a temporary file renamed over the file.
    SedInPlace,
    /// A shell's `echo ... > file`: truncated and written in place, no fsync.
    EchoTruncate,
    /// JetBrains / VS Code "safe write": a temporary file, the original deleted, the temporary
    /// renamed into place.
    SafeWrite,
}

impl Pattern {
    /// Every pattern.
    pub const ALL: [Pattern; 7] = [
        Pattern::AtomicRename,
        Pattern::VimBackupCopy,
        Pattern::VimRename,
        Pattern::RealVim,
        Pattern::SedInPlace,
        Pattern::EchoTruncate,
        Pattern::SafeWrite,
    ];

    /// How the pattern is called in test messages and bench rows.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::AtomicRename => "atomic rename",
            Pattern::VimBackupCopy => "vim backupcopy=yes (backup, truncate, write)",
            Pattern::VimRename => "vim default (rename to name~, write, remove backup)",
            Pattern::RealVim => "vim -Es",
            Pattern::SedInPlace => "sed -i",
            Pattern::EchoTruncate => "echo > file (truncate, write in place)",
            Pattern::SafeWrite => "safe write (temp, delete, rename)",
        }
    }

    /// The program the pattern runs, if it runs one: the tests need it installed.
    pub fn program(self) -> Option<&'static str> {
        match self {
            Pattern::RealVim => Some("vim"),
            Pattern::SedInPlace => Some("sed"),
            Pattern::EchoTruncate => Some("sh"),
            _ => None,
        }
    }

    /// Whether the pattern's program (if any) is on the `PATH`.
    pub fn available(self) -> bool {
        self.program().is_none_or(|program| {
            std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
            })
        })
    }

    /// Replaces the contents of the existing file at `path` with `contents` (one line of
    /// text without a backslash or a single quote), returning once the writer has closed the
    /// file.
    pub fn write(self, path: &Path, contents: &str) {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        match self {
            Pattern::AtomicRename => {
                let temp = dir.join(format!(".{name}.writer"));
                let mut file = std::fs::File::create(&temp).unwrap();
                file.write_all(contents.as_bytes()).unwrap();
                file.sync_all().unwrap();
                drop(file);
                std::fs::rename(&temp, path).unwrap();
            }
            Pattern::VimBackupCopy => {
                let backup = dir.join(format!("{name}~"));
                std::fs::copy(path, &backup).unwrap();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .unwrap();
                file.write_all(contents.as_bytes()).unwrap();
                file.sync_all().unwrap();
                drop(file);
                std::fs::remove_file(backup).unwrap();
            }
            Pattern::VimRename => {
                let backup = dir.join(format!("{name}~"));
                std::fs::rename(path, &backup).unwrap();
                let mut file = std::fs::File::create(path).unwrap();
                file.write_all(contents.as_bytes()).unwrap();
                file.sync_all().unwrap();
                drop(file);
                std::fs::remove_file(backup).unwrap();
            }
            Pattern::RealVim => {
                let status = Command::new("vim")
                    .args(["-Es", "-u", "NONE", "-i", "NONE", "-n", "-c"])
                    .arg(format!("call setline(1, '{contents}')"))
                    .args(["-c", "wq"])
                    .arg(path)
                    .stdin(std::process::Stdio::null())
                    .status()
                    .expect("vim is installed");
                assert!(status.success(), "vim -Es failed on {}", path.display());
            }
            Pattern::SedInPlace => {
                // `1c\TEXT` replaces the first (only) line with TEXT.
                let status = Command::new("sed")
                    .arg("-i")
                    .arg(format!("1c\\{contents}"))
                    .arg(path)
                    .status()
                    .expect("sed is installed");
                assert!(status.success());
            }
            Pattern::EchoTruncate => {
                let status = Command::new("sh")
                    .arg("-c")
                    .arg(format!("echo '{contents}' > \"$0\""))
                    .arg(path)
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            Pattern::SafeWrite => {
                let temp = dir.join(format!("{name}___jb_tmp___"));
                std::fs::write(&temp, contents).unwrap();
                std::fs::remove_file(path).unwrap();
                std::fs::rename(&temp, path).unwrap();
            }
        }
    }
}
