//! The state of a small app through three schema versions (1, 2 and 4: versions need not be
//! consecutive), shared by the integration tests.

#![allow(dead_code)] // each test binary uses its own part

pub mod around;
pub mod kit;
pub mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use persist::Persisted;
use serde::{Deserialize, Serialize};

/// Version 1 predates persist: its files may be plain JSON without the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
pub struct AppStateV1 {
    pub user: String,
    pub dark_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = AppStateV1)]
pub struct AppStateV2 {
    pub user: String,
    pub theme: String,
    pub window: Option<(u32, u32)>,
}

impl From<AppStateV1> for AppStateV2 {
    fn from(old: AppStateV1) -> Self {
        AppStateV2 {
            user: old.user,
            theme: if old.dark_mode { "dark" } else { "light" }.to_owned(),
            window: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 4, migrate_from = AppStateV2)]
pub struct AppState {
    pub user: String,
    pub theme: Theme,
    pub window: Option<Window>,
    pub recent: Vec<PathBuf>,
    pub shortcuts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    #[default]
    Light,
    Dark,
    Custom {
        accent: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub width: u32,
    pub height: u32,
}

/// Version 4 refuses a theme name it cannot map, rather than guessing.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("unknown theme (expected light, dark or custom:<accent>)")]
pub struct UnknownTheme;

impl TryFrom<AppStateV2> for AppState {
    type Error = UnknownTheme;

    fn try_from(old: AppStateV2) -> Result<Self, UnknownTheme> {
        let theme = match old.theme.as_str() {
            "light" => Theme::Light,
            "dark" => Theme::Dark,
            other => match other.strip_prefix("custom:") {
                Some(accent) => Theme::Custom {
                    accent: accent.to_owned(),
                },
                None => return Err(UnknownTheme),
            },
        };
        Ok(AppState {
            user: old.user,
            theme,
            window: old.window.map(|(width, height)| Window { width, height }),
            recent: Vec::new(),
            shortcuts: BTreeMap::new(),
        })
    }
}

pub fn sample() -> AppState {
    AppState {
        user: "ada".to_owned(),
        theme: Theme::Custom {
            accent: "#ff8800".to_owned(),
        },
        window: Some(Window {
            width: 1280,
            height: 800,
        }),
        recent: vec![PathBuf::from("/home/ada/notes.md")],
        shortcuts: BTreeMap::from([("save".to_owned(), "Ctrl+S".to_owned())]),
    }
}

/// Every entry of a directory tree with its bytes (or `<dir>`), sorted: two listings are equal
/// when nothing was created, removed or changed.
pub fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let file_type = fs::symlink_metadata(&path).unwrap().file_type();
            let contents = if file_type.is_dir() {
                stack.push(path.clone());
                b"<dir>".to_vec()
            } else if file_type.is_file() {
                fs::read(&path).unwrap()
            } else {
                format!("<{file_type:?}>").into_bytes()
            };
            entries.push((path, contents));
        }
    }
    entries.sort();
    entries
}

/// The names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/app_state")
        .join(name)
}

/// A fresh directory holding a copy of a fixture, so tests never touch the committed files.
pub fn copy_of_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::copy(fixture(name), &path).unwrap();
    (dir, path)
}

/// xorshift64*: enough randomness for the kill delays of the crash tests, seeded from
/// `PERSIST_CRASH_SEED` or the clock, with the seed printed so that a failing run can be
/// repeated.
pub struct Rng(u64);

impl Rng {
    /// The generator and its seed.
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("PERSIST_CRASH_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("PERSIST_CRASH_SEED={seed}");
        (Rng(seed), seed)
    }

    /// A number below `bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// A command that runs the test named `test` of this same test binary, alone, in a child
/// process, with the variables `vars` set: the one way the integration tests start child
/// processes. A child's body is an ignored test (`#[ignore]`, so that it never counts as a
/// passing test of its own; `--ignored` runs it here); it reads its instructions from the
/// variables and does nothing without them. `--nocapture`: what the child prints reaches its
/// stdout, for the parent to read.
pub fn child<V: AsRef<std::ffi::OsStr>>(test: &str, vars: &[(&str, V)]) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        test,
        "--ignored",
        "--test-threads=1",
        "--nocapture",
        "--quiet",
    ]);
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// Whether this run is CI's (`CI` is set): there a test that needs root or a tool must run,
/// never skip.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether a test that needs `what` (root, loop devices, a tool, a server) can run: `true` if
/// `available`. Otherwise the test must not pass in silence: under CI (`CI` set) it fails, and
/// elsewhere it says `SKIPPED <test>: needs <what>` on the terminal of every `cargo test` run
/// (written to the stderr handle itself, which libtest does not capture, where an `eprintln!`
/// of a passing test is hidden). Every check is also appended to the file
/// `PERSIST_REQUIREMENTS_LOG` names, if set: `.ci/run` prints how many ran and how many skipped.
pub fn needs(what: &str, available: bool) -> bool {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map_or_else(
            || {
                std::env::args()
                    .next()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            },
            str::to_owned,
        );
    if let Some(log) = std::env::var_os("PERSIST_REQUIREMENTS_LOG") {
        let line = format!(
            "{} {test}: {what}\n",
            if available { "ran" } else { "skipped" }
        );
        // One write of one line to a file opened for appending: lines of tests running side by
        // side do not mix.
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut file| file.write_all(line.as_bytes()));
    }
    if available {
        return true;
    }
    assert!(
        !under_ci(),
        "{test}: {what} is missing under CI, where this test must run (.ci/run installs and \
         starts what the tests need)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs {what} (under CI=true this fails instead)"
    );
    false
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the program `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Runs a command, panicking with its output if it fails.
pub fn run(command: &str, args: &[&str]) {
    let output = std::process::Command::new(command)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{command}: {error}"));
    assert!(
        output.status.success(),
        "{command} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A mount that is undone when dropped, even if the test fails.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A small ext4 file system of `size_kib` KiB, loop-mounted at `point` (created): for tests of
/// a full disk. `None` (skipped, or a failure under CI) without root or `mkfs.ext4`.
pub fn small_ext4(image_dir: &Path, point: &Path, size_kib: u32) -> Option<Mounted> {
    if !needs("root", is_root()) || !needs("mkfs.ext4", has_tool("mkfs.ext4")) {
        return None;
    }
    let image = image_dir.join("fs.img");
    let file = fs::File::create(&image).unwrap();
    file.set_len(u64::from(size_kib) * 1024).unwrap();
    drop(file);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-O", "^has_journal", image.to_str().unwrap()],
    );
    fs::create_dir_all(point).unwrap();
    run(
        "mount",
        &[
            "-o",
            "loop",
            image.to_str().unwrap(),
            point.to_str().unwrap(),
        ],
    );
    Some(Mounted(point.to_owned()))
}

/// Bind-mounts `source` at `point` (a directory or a file, created empty if missing): for the
/// tests that plant a mount where persist writes. `None` (skipped, or a failure under CI)
/// without root.
pub fn bind_mount(source: &Path, point: &Path) -> Option<Mounted> {
    if !needs("root", is_root()) {
        return None;
    }
    if !point.exists() {
        if source.is_dir() {
            fs::create_dir_all(point).unwrap();
        } else {
            fs::write(point, b"").unwrap();
        }
    }
    run(
        "mount",
        &["--bind", source.to_str().unwrap(), point.to_str().unwrap()],
    );
    Some(Mounted(point.to_owned()))
}

/// The smallest executor: polls on this thread, parks until woken. No tokio runtime anywhere.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
