//! Loads of large files (at least 1 MiB), which persist maps instead of reading on Linux: they
//! load like small ones, keep every guarantee of the read path, and survive another program
//! truncating the file while it is parsed (which would otherwise kill the process with SIGBUS).

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use persist::{Error, IoOp, Options, Persisted};
use serde::{Deserialize, Deserializer, Serialize};

/// Well past the 1 MiB from which a load maps the file.
const ENTRIES: u64 = 40_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Big {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    id: Trigger,
    name: String,
    score: f64,
}

impl Big {
    fn new() -> Big {
        Big {
            entries: (0..ENTRIES)
                .map(|i| Entry {
                    id: Trigger(i),
                    name: format!("entry number {i} with some text to make it longer"),
                    score: i as f64 / 7.0,
                })
                .collect(),
        }
    }
}

/// The file a [`Trigger`] truncates, with the length it truncates it to, when the id it
/// deserializes is [`TRUNCATE_AT`]: the other program, acting at a known moment of the parse.
static TRUNCATE: Mutex<Option<(PathBuf, u64)>> = Mutex::new(None);
const TRUNCATE_AT: u64 = ENTRIES / 4;
/// Serializes the tests that arm [`TRUNCATE`].
static ARMED: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Trigger(u64);

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Trigger, D::Error> {
        let id = u64::deserialize(deserializer)?;
        if id == TRUNCATE_AT
            && let Some((path, len)) = TRUNCATE.lock().unwrap().take()
        {
            OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(len)
                .unwrap();
        }
        Ok(Trigger(id))
    }
}

fn saved(dir: &Path) -> PathBuf {
    let path = dir.join("big.json");
    Big::new().save(&path).unwrap();
    assert!(fs::metadata(&path).unwrap().len() > 2 << 20);
    path
}

fn assert_truncation_reported(result: Result<Big, Error>, path: &Path) {
    match result {
        Err(Error::Io {
            path: named,
            op: IoOp::Read,
            source,
        }) => {
            assert_eq!(named, path);
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(source.to_string().contains("truncated"), "{source}");
        }
        other => panic!(
            "expected the truncation to be reported, got {:?}",
            other.map(|_| "a value")
        ),
    }
}

#[test]
fn a_large_file_loads_like_a_small_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    assert_eq!(Big::load(&path).unwrap(), Big::new());
    // And through the layers that unwrap a frame first.
    let checked = dir.path().join("checked.json");
    Options::new()
        .checksum(true)
        .save(&Big::new(), &checked)
        .unwrap();
    assert_eq!(Big::load(&checked).unwrap(), Big::new());
}

#[test]
fn a_damaged_large_file_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    let colon = middle
        + bytes[middle..]
            .windows(8)
            .position(|window| window == br#""score":"#)
            .unwrap()
        + 7;
    bytes[colon] = b'#';
    fs::write(&path, &bytes).unwrap();
    match Big::load(&path) {
        Err(Error::Corrupt { path: named, .. }) => assert_eq!(named, path),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| "a value")),
    }
    // Cut short before the load: an ordinary torn file, not a truncation during the read.
    fs::write(&path, &bytes[..middle]).unwrap();
    assert!(matches!(Big::load(&path), Err(Error::Corrupt { .. })));
    assert!(fs::metadata(&path).unwrap().len() > 1 << 20, "still mapped");
    assert_eq!(fs::read(&path).unwrap(), &bytes[..middle]);
}

#[test]
fn the_size_cap_holds_for_large_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let size = fs::metadata(&path).unwrap().len();
    match Options::new().max_size(size - 1).load::<Big>(&path) {
        Err(Error::TooLarge { size: found, .. }) => assert_eq!(found, size),
        other => panic!("expected TooLarge, got {:?}", other.map(|_| "a value")),
    }
    assert!(Options::new().max_size(size).load::<Big>(&path).is_ok());
}

#[test]
fn a_truncation_during_the_parse_is_an_error_not_a_crash() {
    let _armed = ARMED.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for keep in [0, 4096, 1 << 20] {
        let path = saved(dir.path());
        *TRUNCATE.lock().unwrap() = Some((path.clone(), keep));
        assert_truncation_reported(Big::load(&path), &path);
        assert!(
            TRUNCATE.lock().unwrap().is_none(),
            "the trigger did not fire"
        );
        // The process lives on, and so do later loads of the same file once it is whole.
        Big::new().save(&path).unwrap();
        assert_eq!(Big::load(&path).unwrap(), Big::new());
    }
}

#[test]
fn a_truncation_during_an_async_load_is_an_error_not_a_crash() {
    let _armed = ARMED.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    *TRUNCATE.lock().unwrap() = Some((path.clone(), 100));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_truncation_reported(runtime.block_on(Big::load_async(&path)), &path);
}

#[test]
fn loads_racing_a_program_that_rewrites_the_file_in_place_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let whole = fs::read(&path).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // What a careless editor does: truncate, then write the file again.
            while !stop.load(Ordering::Relaxed) {
                fs::write(&path, &whole[..whole.len() / 3]).unwrap();
                fs::write(&path, &whole).unwrap();
            }
        });
        for _ in 0..40 {
            match Big::load(&path) {
                Ok(big) => assert_eq!(big, Big::new()),
                Err(Error::Corrupt { .. } | Error::Io { .. }) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

const FOREIGN_FAULT: &str = "PERSIST_TEST_FOREIGN_SIGBUS";

/// The body of `a_fault_outside_persists_mappings_still_kills_the_process`: after a large
/// load has installed persist's handler, reads a page of its own mapping past the end of a
/// truncated file. Does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn foreign_fault() {
    let Ok(dir) = std::env::var(FOREIGN_FAULT) else {
        return;
    };
    let path = saved(Path::new(&dir));
    Big::load(&path).unwrap();
    let file = fs::File::open(&path).unwrap();
    // SAFETY: a read-only shared mapping of a file this process owns; the fault it provokes is
    // the point of the test.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let byte = std::ptr::read_volatile(map.cast::<u8>().add(8192));
        println!("read {byte} from a truncated mapping and lived");
    }
}

#[test]
fn a_fault_outside_persists_mappings_still_kills_the_process() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: persist maps files (and guards against SIGBUS) on Linux only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = common::child("foreign_fault", &[(FOREIGN_FAULT, dir.path())])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGBUS),
        "the child should die of SIGBUS: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
}
