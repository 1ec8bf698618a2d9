//! SIGKILL at random moments of a save loop, 1,000 times: the file always loads, never goes
//! backwards, and the temporary files the killed saves left behind are swept by the next save.
//!
//! SIGKILL cannot show durability (the page cache survives a killed process; that is the
//! power-cut harness's job), but it does show atomicity: a reader never sees a torn file.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Rng;
use persist::Persisted;
use serde::{Deserialize, Serialize};

const KILLS: usize = 1_000;
const SAVER_FILE: &str = "PERSIST_TEST_SAVER_FILE";

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Progress {
    step: u64,
    /// Makes each save a few pages, so that a kill can land in the middle of writing it.
    padding: Vec<String>,
}

impl Progress {
    fn at(step: u64) -> Self {
        Progress {
            step,
            padding: (0..200)
                .map(|i| format!("line {i} of step {step}"))
                .collect(),
        }
    }
}

/// The body of each child of `kills_never_tear_the_file`: saves ever higher steps until
/// killed. Does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn saver() {
    let Ok(path) = std::env::var(SAVER_FILE) else {
        return;
    };
    let mut step = Progress::load(&path).unwrap().step;
    loop {
        step += 1;
        Progress::at(step).save(&path).unwrap();
    }
}

fn temp_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".tmp")
        })
        .count()
}

#[test]
fn kills_never_tear_the_file() {
    let (mut rng, seed) = Rng::from_env();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("progress.json");
    // Written by hand, so that this process's first save (which sweeps) is the one at the end.
    fs::write(&path, br#"{"version":1,"data":{"step":0,"padding":[]}}"#).unwrap();

    let reference_dir = tempfile::tempdir().unwrap();
    let reference = reference_dir.path().join("reference.json");
    let mut last_step = 0;
    let mut killed_mid_run = 0;
    for _ in 0..KILLS {
        let mut child = common::child("saver", &[(SAVER_FILE, &path)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        child.kill().unwrap();
        child.wait().unwrap();

        let progress = Progress::load(&path)
            .unwrap_or_else(|error| panic!("torn file after a kill (seed {seed}): {error}"));
        assert!(
            progress.step >= last_step,
            "went back from {last_step} to {}",
            progress.step
        );
        // One whole save: byte for byte what a save of that step writes.
        if progress.step > 0 {
            assert_eq!(progress, Progress::at(progress.step));
            Progress::at(progress.step).save(&reference).unwrap();
            assert!(
                fs::read(&path).unwrap() == fs::read(&reference).unwrap(),
                "the file is not one whole save of step {} (seed {seed})",
                progress.step
            );
        }
        if progress.step > last_step {
            killed_mid_run += 1;
        }
        last_step = progress.step;
    }
    let left_behind = temp_files(dir.path());
    println!(
        "{KILLS} kills, {killed_mid_run} after at least one save, final step {last_step}, \
         {left_behind} temporary files left by killed saves"
    );
    assert!(
        killed_mid_run > KILLS / 2,
        "most kills should land while saving"
    );

    // The sweep leaves temporary files younger than a second alone (they may be live).
    std::thread::sleep(Duration::from_millis(1_100));
    Progress::at(last_step + 1).save(&path).unwrap();
    assert_eq!(
        temp_files(dir.path()),
        0,
        "the save did not sweep stale temporary files"
    );
}
