//! Simulated power cuts: a process saves ever higher steps to a file on a loop-mounted ext4
//! image; at a random moment the file system is shut down with `FS_IOC_SHUTDOWN`
//! (`NOLOGFLUSH`: what the journal had not committed is lost, as in a power cut), then it is
//! remounted and the file must hold the last acknowledged step or the one after: never torn,
//! never rolled back.
//!
//! Root only (mount, loop devices, the ioctl): anywhere else each test prints that it is
//! skipped, and under `CI` it fails instead. `PERSIST_POWERCUT_CUTS` overrides the number of cuts (300 by default).
//!
//! The same harness runs against the weaker `Durability` levels, to show that it catches what
//! they give up, and against transactions (several files) and journals (appends and
//! checkpoints), each with a control that fails. `cargo test --test powercut -- --nocapture`
//! prints the counts.
//!
//! A child stamps each acknowledgement with the machine's monotonic clock, taken after the step
//! returned, and the parent stamps the cut right before it shuts the file system down. Unlike
//! a real power cut, the simulated one lets the process run on, and an fsync racing the
//! shutdown can report success for data ext4 never committed (seen about once in 100 cuts of
//! the journal scenario): such a step returns after the cut began, so only acknowledgements
//! stamped after the cut are set aside; every one stamped before it must be on disk. Each
//! scenario counts and prints what it set aside and asserts it stays at about one per cut (a
//! systematic loss cannot hide there). A child that fails before the cut fails the test.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use persist::{Durability, Options, Persisted};
use serde::{Deserialize, Serialize};

const SAVER_FILE: &str = "PERSIST_POWERCUT_FILE";
const SAVER_DURABILITY: &str = "PERSIST_POWERCUT_DURABILITY";
/// Set: the saver keeps three generations, with checksums.
const SAVER_GENERATIONS: &str = "PERSIST_POWERCUT_GENERATIONS";

/// `_IOR('X', 125, __u32)` from linux/fs.h, and its "do not flush the log" flag.
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
const FS_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Journal {
    step: u64,
    /// About 20 KiB, so that a save spans several file-system blocks and a torn write shows.
    entries: Vec<String>,
}

impl Journal {
    fn at(step: u64) -> Self {
        Journal {
            step,
            entries: (0..400)
                .map(|i| format!("entry {i:04} written at step {step:08}"))
                .collect(),
        }
    }

    fn is_consistent(&self) -> bool {
        self.step == 0 && self.entries.is_empty() || self.entries == Journal::at(self.step).entries
    }
}

fn durability(name: &str) -> Durability {
    match name {
        "full" => Durability::Full,
        "file-sync" => Durability::FileSync,
        "none" => Durability::None,
        other => panic!("unknown durability {other}"),
    }
}

/// The child process: saves the steps after the one stored, and prints each one after its
/// save returned.
/// Does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn saver() {
    let (Ok(path), Ok(level)) = (std::env::var(SAVER_FILE), std::env::var(SAVER_DURABILITY)) else {
        return;
    };
    let mut options = Options::new().durability(durability(&level));
    if std::env::var_os(SAVER_GENERATIONS).is_some() {
        options = options.generations(3).checksum(true);
    }
    let mut step = match Journal::load(&path) {
        Ok(journal) => journal.step,
        Err(error) => return failed(error),
    };
    loop {
        step += 1;
        if let Err(error) = options.save(&Journal::at(step), &path) {
            return failed(error); // the file system was shut down under us, if after the cut
        }
        if !acknowledge(step) {
            return;
        }
    }
}

struct Outcome {
    cuts: usize,
    torn: usize,
    rolled_back: usize,
    acknowledged: u64,
    set_aside: usize,
}

fn run(command: &str, args: &[&str]) -> bool {
    Command::new(command)
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether the harness can run here (it fails under CI where it cannot, and says so elsewhere).
fn supported() -> bool {
    common::needs(
        "root (mount, loop devices, FS_IOC_SHUTDOWN)",
        common::is_root(),
    ) && common::needs(
        "loop devices (/dev/loop-control)",
        Path::new("/dev/loop-control").exists(),
    ) && common::needs(
        "mkfs.ext4 (Debian package e2fsprogs)",
        run("mkfs.ext4", &["-V"]),
    )
}

struct Mount {
    point: PathBuf,
}

impl Mount {
    fn new(image: &Path, point: &Path) -> Mount {
        assert!(
            run(
                "mount",
                &[
                    "-o",
                    "loop",
                    image.to_str().unwrap(),
                    point.to_str().unwrap()
                ]
            ),
            "mount failed"
        );
        Mount {
            point: point.to_owned(),
        }
    }

    fn shut_down(&self) {
        let dir = fs::File::open(&self.point).unwrap();
        let flags = FS_GOING_FLAGS_NOLOGFLUSH;
        let result = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
        assert_eq!(
            result,
            0,
            "FS_IOC_SHUTDOWN failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        for _ in 0..50 {
            if run("umount", &[self.point.to_str().unwrap()]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("umount {} failed", self.point.display());
    }
}

/// A 64 MiB ext4 image and an empty mount point beside it, in a temporary directory; `None`,
/// after saying why, where the harness cannot run.
fn new_image() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !supported() {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("ext4.img");
    let point = work.path().join("mnt");
    fs::create_dir(&point).unwrap();
    fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
    assert!(run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]));
    Some((work, image, point))
}

/// This test binary run as the child `test` of a scenario, on `file`, with `mode` in the
/// environment variable `mode_var`.
fn child(test: &str, file: &Path, mode_var: &str, mode: &str) -> Command {
    common::child(
        test,
        &[(SAVER_FILE, file.as_os_str()), (mode_var, mode.as_ref())],
    )
}

/// When to cut: between 2 and 40 ms into the child's run, long enough for some steps to be
/// acknowledged.
fn cut_delay(rng: &mut common::Rng) -> u64 {
    2_000 + rng.below(38_000)
}

/// What a saver acknowledged around a cut: the last step stamped before the cut began
/// (`before` if none), the last step of all, and how many acknowledgements were set aside.
struct Acknowledged {
    before_cut: u64,
    any: u64,
    set_aside: usize,
}

/// Runs `child` (a saver acknowledging each step) on the mounted image, shuts the file system
/// down after `micros`, kills the child and unmounts: see [`Acknowledged`].
fn cut_during(mount: Mount, child: Command, before: u64, micros: u64) -> Acknowledged {
    let reports = cut_during_lines(mount, child, micros);
    let last = |lines: &[String]| {
        lines
            .iter()
            .map(|line| line.parse::<u64>().expect("a step"))
            .max()
            .unwrap_or(before)
            .max(before)
    };
    let before_cut = last(&reports.before);
    Acknowledged {
        before_cut,
        any: last(&reports.after).max(before_cut),
        set_aside: reports.after.len(),
    }
}

/// Runs `child` on the mounted image, shuts the file system down after `micros`, kills the
/// child and unmounts: what the child reported, in order (see [`Reports`]). Panics if the child
/// failed before the cut began.
fn cut_during_lines(mount: Mount, mut child: Command, micros: u64) -> Reports {
    let mut child = child
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = {
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        })
    };
    std::thread::sleep(Duration::from_micros(micros));
    let cut = monotonic_ns();
    mount.shut_down();
    // Everything the child printed is in the pipe: read it all.
    let _ = child.kill();
    child.wait().unwrap();
    let lines = reader.join().unwrap();
    drop(mount);
    let mut reports = Reports {
        before: Vec::new(),
        after: Vec::new(),
    };
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(Ok(at)), Some(rest)) = (
            parts.next(),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) else {
            continue; // the test harness's own lines
        };
        match kind {
            "ack" if at < cut => reports.before.push(rest.to_owned()),
            "ack" => reports.after.push(rest.to_owned()),
            "error" => assert!(at >= cut, "the child failed before the cut: {rest}"),
            _ => {}
        }
    }
    reports
}

fn power_cuts(level: &str, cuts: usize) -> Option<Outcome> {
    let (_work, image, point) = new_image()?;
    let file = point.join("journal.json");
    {
        let _mount = Mount::new(&image, &point);
        Journal::at(0).save(&file).unwrap();
    }

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut outcome = Outcome {
        cuts,
        torn: 0,
        rolled_back: 0,
        acknowledged: 0,
        set_aside: 0,
    };
    for _ in 0..cuts {
        let mount = Mount::new(&image, &point);
        let before = match Journal::load(&file) {
            Ok(journal) => journal.step,
            Err(_) => {
                // Left torn by the previous cut (counted there): start over.
                Journal::at(0).save(&file).unwrap();
                0
            }
        };
        let child = child("saver", &file, SAVER_DURABILITY, level);
        // Cut between 2 and 40 ms into the run: long enough for some saves to be acknowledged.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let acked = cut_during(mount, child, before, 2_000 + seed % 38_000);
        outcome.acknowledged += acked.before_cut - before;
        outcome.set_aside += acked.set_aside;
        let _mount = Mount::new(&image, &point);
        match Journal::load(&file) {
            Ok(journal) if journal.is_consistent() => {
                if journal.step < acked.before_cut {
                    outcome.rolled_back += 1;
                }
                assert!(
                    journal.step <= acked.any + 1,
                    "a step that was never written"
                );
            }
            _ => outcome.torn += 1,
        }
    }
    println!(
        "durability {level}: {} cuts, {} saves acknowledged before the cut, {} set aside (stamped \
         after it began), {} files torn, {} rolled back",
        outcome.cuts, outcome.acknowledged, outcome.set_aside, outcome.torn, outcome.rolled_back
    );
    few_set_aside(level != "none", outcome.set_aside, outcome.cuts);
    Some(outcome)
}

/// Acknowledgements stamped after the cut began are set aside (the file system may still take
/// the step that returned). A step that syncs takes milliseconds, so at most about one per cut
/// lands between the stamp and the shutdown; more would mean the harness sets aside what it
/// should count. A control that never syncs finishes several steps in that window: not
/// bounded.
fn few_set_aside(syncs: bool, set_aside: usize, cuts: usize) {
    assert!(
        !syncs || set_aside <= cuts,
        "{set_aside} acknowledgements set aside in {cuts} cuts"
    );
}

/// `default` cuts, scaled as `PERSIST_POWERCUT_CUTS` scales the 300 of the main scenario.
fn cuts_of(default: usize) -> usize {
    (cuts() * default).div_ceil(300)
}

fn cuts() -> usize {
    std::env::var("PERSIST_POWERCUT_CUTS")
        .ok()
        .and_then(|cuts| cuts.parse().ok())
        .unwrap_or(300)
}

#[test]
fn full_durability_survives_every_power_cut() {
    if let Some(outcome) = power_cuts("full", cuts()) {
        assert_eq!((outcome.torn, outcome.rolled_back), (0, 0));
        assert!(
            outcome.acknowledged > 0,
            "no save was acknowledged before a cut"
        );
    }
}

/// After each cut the file is destroyed (zeroed, cut short, a bit flipped inside its data),
/// as a disk or another program may: `OnCorrupt::LastGood` loads the newest generation, which
/// is whole and at most one save older than the last acknowledged one; `Fail` reports the
/// damage and changes nothing.
#[test]
fn the_newest_generation_loads_after_a_power_cut_and_a_destroyed_file() {
    let Some((_work, image, point)) = new_image() else {
        return;
    };
    let file = point.join("journal.json");
    let options = Options::new().generations(3).checksum(true);
    {
        let _mount = Mount::new(&image, &point);
        options.save(&Journal::at(0), &file).unwrap();
        options.save(&Journal::at(0), &file).unwrap();
    }
    let (mut rng, seed) = common::Rng::from_env();
    println!("seed {seed} (PERSIST_CRASH_SEED)");
    let (mut cuts, mut acknowledged) = (0, 0);
    for round in 0..cuts_of(50) {
        let mount = Mount::new(&image, &point);
        let before = Journal::load(&file).unwrap().step;
        let mut child = child("saver", &file, SAVER_DURABILITY, "full");
        child.env(SAVER_GENERATIONS, "3");
        let acked = cut_during(mount, child, before, cut_delay(&mut rng));
        acknowledged += acked.before_cut - before;
        cuts += 1;
        let _mount = Mount::new(&image, &point);
        // Each recovery puts its generation back in the file's place (it is the file now), so
        // rounds whose saver was cut before its first save (a loaded machine starts it slowly)
        // use the generations up: when none is left, one save outside the cut makes one, of
        // the file as the cut left it.
        let generations = fs::read_dir(&point)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("journal.json.gen-")
            })
            .count();
        if generations == 0 {
            options.save(&Journal::load(&file).unwrap(), &file).unwrap();
        }
        let mut bytes = fs::read(&file).unwrap();
        let how = ["zeroed", "truncated", "bit flipped"][round % 3];
        match how {
            "zeroed" => bytes.iter_mut().for_each(|byte| *byte = 0),
            "truncated" => bytes.truncate(bytes.len() / 3),
            _ => {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
            }
        }
        fs::write(&file, &bytes).unwrap();
        let failed = Options::new().load::<Journal>(&file).unwrap_err();
        assert!(
            matches!(failed, persist::Error::Corrupt { .. }),
            "{how}: {failed}"
        );
        assert_eq!(fs::read(&file).unwrap(), bytes, "Fail changed the file");
        let loaded = options
            .clone()
            .on_corrupt(persist::OnCorrupt::LastGood)
            .load_reported::<Journal>(&file)
            .unwrap_or_else(|error| panic!("round {round}, {how}: {error}"));
        assert!(
            loaded.value.is_consistent(),
            "round {round}: a torn generation"
        );
        assert!(
            loaded.value.step + 1 >= acked.before_cut,
            "round {round}, {how}: generation of step {} after step {} was acknowledged",
            loaded.value.step,
            acked.before_cut
        );
        assert!(matches!(loaded.outcome, persist::LoadOutcome::LastGood(_)));
        // The file holds the generation now.
        assert_eq!(Journal::load(&file).unwrap().step, loaded.value.step);
    }
    println!(
        "generations: {cuts} cuts, {acknowledged} saves acknowledged before the cut, the file \
         destroyed after each and the newest generation loaded every time"
    );
    assert!(acknowledged > 0, "no save was acknowledged before a cut");
}

/// The harness catches a broken save: without the directory fsync, about half of the cuts roll
/// back an acknowledged save (152 of 300 in one run here).
#[test]
fn skipping_the_directory_fsync_loses_acknowledged_saves() {
    if let Some(outcome) = power_cuts("file-sync", cuts() / 3) {
        assert_eq!(outcome.torn, 0);
        assert!(
            outcome.rolled_back > 0,
            "the harness did not catch the missing dir fsync"
        );
    }
}

/// Without any fsync, ext4 (data=ordered, `auto_da_alloc`, the image's defaults) rolls the
/// file back to the last committed version at nearly every cut rather than tearing it: what
/// `Durability::None` documents.
#[test]
fn skipping_every_fsync_loses_acknowledged_saves() {
    if let Some(outcome) = power_cuts("none", cuts() / 3) {
        assert_eq!(outcome.torn, 0, "a torn file under auto_da_alloc");
        assert!(outcome.rolled_back > 0, "the harness caught nothing");
    }
}

/// The files of the transaction scenario, under the root `state/` on the image.
const TXN_FILES: [&str; 3] = ["index.json", "a/one.json", "b/c/two.json"];
const TXN_MODE: &str = "PERSIST_POWERCUT_TXN_MODE";

/// The child process of the transaction scenario: commits the steps after the one stored to
/// every file of [`TXN_FILES`] (in one `Transaction`, or as the control one save after the
/// other), and prints each step after its commit returned. Does nothing when run directly.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn txn_saver() {
    let (Ok(root), Ok(mode)) = (std::env::var(SAVER_FILE), std::env::var(TXN_MODE)) else {
        return;
    };
    let root = Path::new(&root);
    let mut step = match Journal::load(root.join(TXN_FILES[0])) {
        Ok(journal) => journal.step,
        Err(error) => return failed(error),
    };
    loop {
        step += 1;
        let journal = Journal::at(step);
        let committed = match mode.as_str() {
            "transaction" => persist::Transaction::open(root).and_then(|mut txn| {
                for file in TXN_FILES {
                    txn.save(&journal, file)?;
                }
                txn.commit()
            }),
            _ => TXN_FILES
                .iter()
                .try_for_each(|file| journal.save(root.join(file))),
        };
        if let Err(error) = committed {
            return failed(error);
        }
        if !acknowledge(step) {
            return;
        }
    }
}

/// What the transaction scenario saw after its cuts: states where the files disagree, where
/// an acknowledged commit was lost, where a file was torn.
struct TxnOutcome {
    mixed: usize,
    rolled_back: usize,
    torn: usize,
    acknowledged: u64,
    set_aside: usize,
}

fn txn_power_cuts(mode: &str, cuts: usize) -> Option<TxnOutcome> {
    let (_work, image, point) = new_image()?;
    let root = point.join("state");
    let start_over = |root: &Path| {
        let mut txn = persist::Transaction::open(root).unwrap();
        for file in TXN_FILES {
            txn.save(&Journal::at(0), file).unwrap();
        }
        txn.commit().unwrap();
    };
    {
        let _mount = Mount::new(&image, &point);
        start_over(&root);
    }
    let (mut rng, _) = common::Rng::from_env();
    let mut outcome = TxnOutcome {
        mixed: 0,
        rolled_back: 0,
        torn: 0,
        acknowledged: 0,
        set_aside: 0,
    };
    for _ in 0..cuts {
        let mount = Mount::new(&image, &point);
        let before = match Journal::load(root.join(TXN_FILES[0])) {
            Ok(journal) => journal.step,
            Err(_) => {
                start_over(&root);
                0
            }
        };
        let child = child("txn_saver", &root, TXN_MODE, mode);
        let acked = cut_during(mount, child, before, cut_delay(&mut rng));
        outcome.acknowledged += acked.before_cut - before;
        outcome.set_aside += acked.set_aside;
        let _mount = Mount::new(&image, &point);
        if mode == "transaction" {
            persist::Transaction::recover(&root).unwrap();
        }
        let steps: Vec<Option<u64>> = TXN_FILES
            .iter()
            .map(|file| match Journal::load(root.join(file)) {
                Ok(journal) if journal.is_consistent() => Some(journal.step),
                _ => None,
            })
            .collect();
        if steps.iter().any(Option::is_none) {
            outcome.torn += 1;
            continue;
        }
        let steps: Vec<u64> = steps.into_iter().flatten().collect();
        if steps.iter().any(|step| *step != steps[0]) {
            outcome.mixed += 1;
        }
        if steps.iter().any(|step| *step < acked.before_cut) {
            outcome.rolled_back += 1;
        }
        assert!(
            steps.iter().all(|step| *step <= acked.any + 1),
            "a step that was never written: {steps:?}"
        );
    }
    println!(
        "{mode}: {cuts} cuts, {} commits acknowledged before the cut, {} set aside, {} mixed, \
         {} rolled back, {} torn",
        outcome.acknowledged, outcome.set_aside, outcome.mixed, outcome.rolled_back, outcome.torn
    );
    few_set_aside(true, outcome.set_aside, cuts);
    Some(outcome)
}

/// Transactions of 3 files through power cuts: after recovery every file holds the same,
/// acknowledged (or the next) step.
#[test]
fn transactions_survive_every_power_cut() {
    if let Some(outcome) = txn_power_cuts("transaction", cuts() / 3) {
        assert_eq!(
            (outcome.mixed, outcome.rolled_back, outcome.torn),
            (0, 0, 0)
        );
        assert!(
            outcome.acknowledged > 0,
            "no commit was acknowledged before a cut"
        );
    }
}

/// The control: the same files saved one after the other leave mixed states in the same
/// harness.
#[test]
fn saving_the_files_one_by_one_leaves_mixed_states() {
    if let Some(outcome) = txn_power_cuts("one-by-one", cuts() / 6) {
        assert!(outcome.mixed > 0, "the harness caught no mixed state");
    }
}

/// A record of the journal scenario: its index, and about 5 KiB so that a record spans pages
/// and a torn append shows.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Event {
    id: u64,
    padding: String,
}

impl Event {
    fn at(id: u64) -> Event {
        Event {
            id,
            padding: format!("{id:>20}").repeat(250),
        }
    }
}

/// The journal scenario's snapshot: the records it covers.
#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Tally {
    covered: u64,
}

const JOURNAL_MODE: &str = "PERSIST_POWERCUT_JOURNAL_MODE";

/// The child process of the journal scenario: appends ever higher ids (one at a time and in
/// batches of three), checkpoints every 16 records, and prints how many records are durable
/// after each append and checkpoint returned. Does nothing when run directly.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn journal_appender() {
    let (Ok(path), Ok(mode)) = (std::env::var(SAVER_FILE), std::env::var(JOURNAL_MODE)) else {
        return;
    };
    let options = Options::new().durability(durability(&mode));
    let journal = match options.journal::<Event, Tally>(&path) {
        Ok(journal) => journal,
        Err(error) => return failed(error),
    };
    let mut next = journal.len();
    let mut checkpointed = next;
    loop {
        let appended = if next.is_multiple_of(2) {
            journal.append(&Event::at(next)).map(|_| 1)
        } else {
            let batch = [Event::at(next), Event::at(next + 1), Event::at(next + 2)];
            journal.append_many(&batch).map(|_| 3)
        };
        let appended = match appended {
            Ok(appended) => appended,
            Err(error) => return failed(error),
        };
        next += appended;
        if next - checkpointed >= 16 {
            if let Err(error) = journal.checkpoint(&Tally { covered: next }) {
                return failed(error);
            }
            checkpointed = next;
        }
        if !acknowledge(next) {
            return;
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine, so that a
/// child's acknowledgement and the parent's cut can be put in order.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A child's report that the step `what` returned, stamped after it did: `ack <ns> <what>`,
/// straight to the pipe (`println!` in a test is captured by the harness). `false` once the
/// parent is gone.
fn acknowledge(what: impl std::fmt::Display) -> bool {
    let now = monotonic_ns();
    writeln!(std::io::stdout().lock(), "ack {now} {what}").is_ok()
}

/// A child's report that a step failed, `error <ns> <error>`: expected once the cut began (the
/// file system refuses everything then), a failure of the test before.
fn failed(error: impl std::fmt::Display) {
    let now = monotonic_ns();
    let error = error.to_string().replace('\n', " ");
    let _ = writeln!(std::io::stdout().lock(), "error {now} {error}");
}

/// What a child reported around a cut: the acknowledgements stamped before the cut began
/// (each must be on disk), and those stamped after (set aside: an fsync racing the shutdown
/// may have reported success for data ext4 dropped).
struct Reports {
    before: Vec<String>,
    after: Vec<String>,
}

/// What the journal scenario saw after its cuts.
struct JournalOutcome {
    /// Cuts after which an acknowledged record was missing.
    lost: usize,
    acknowledged: u64,
}

/// Recovers the journal at `path` and checks what it holds: a snapshot covering records
/// `0..n` (or none), then exactly the records `n, n + 1, ...`, each whole. Returns how many
/// records the journal holds. Panics on anything else: a failed open or recovery, a gap, a
/// repeat, a partial record.
fn recovered(path: &Path) -> u64 {
    let journal = open_events(path);
    let (tally, tail) = journal
        .recover()
        .unwrap_or_else(|error| panic!("recovery failed: {error}"));
    let mut count = tally.map_or(0, |tally| tally.covered);
    for event in tail {
        let event = event.unwrap_or_else(|error| panic!("a record failed to replay: {error}"));
        assert_eq!(event.id, count, "a gap or a repeat in the journal");
        assert_eq!(event.padding, Event::at(count).padding, "a partial record");
        count += 1;
    }
    assert_eq!(count, journal.len(), "the snapshot and the log disagree");
    count
}

/// The scenario's journal, opened (a torn tail cut off) with the default options.
fn open_events(path: &Path) -> persist::Journal<Event, Tally> {
    persist::Journal::<Event, Tally>::open(path)
        .unwrap_or_else(|error| panic!("opening the journal after a cut failed: {error}"))
}

fn journal_power_cuts(mode: &str, cuts: usize) -> Option<JournalOutcome> {
    let (_work, image, point) = new_image()?;
    let path = point.join("events.log");
    let (mut rng, _) = common::Rng::from_env();
    let mut outcome = JournalOutcome {
        lost: 0,
        acknowledged: 0,
    };
    let mut set_aside = 0;
    for _ in 0..cuts {
        let mount = Mount::new(&image, &point);
        let before = recovered(&path);
        let child = child("journal_appender", &path, JOURNAL_MODE, mode);
        let acked = cut_during(mount, child, before, cut_delay(&mut rng));
        outcome.acknowledged += acked.before_cut - before;
        set_aside += acked.set_aside;
        let _mount = Mount::new(&image, &point);
        let held = recovered(&path);
        if held < acked.before_cut {
            outcome.lost += 1;
            if mode != "none" {
                eprintln!(
                    "lost: acknowledged {} records, {held} held after the cut",
                    acked.before_cut
                );
            }
        }
        // At most the batch in flight at the cut is there beyond what was acknowledged.
        assert!(held <= acked.any + 3, "records that were never appended");
    }
    println!(
        "journal, durability {mode}: {cuts} cuts, {} records acknowledged before the cut, \
         {set_aside} acknowledgements set aside, {} cuts lost some",
        outcome.acknowledged, outcome.lost
    );
    few_set_aside(mode != "none", set_aside, cuts);
    Some(outcome)
}

/// Appends and checkpoints through power cuts: every acknowledged record is replayed (or in
/// the snapshot), no partial record is, and opening after a cut never fails on the torn tail.
#[test]
fn journals_survive_every_power_cut() {
    if let Some(outcome) = journal_power_cuts("full", cuts() / 3) {
        assert_eq!(outcome.lost, 0);
        assert!(
            outcome.acknowledged > 0,
            "no append was acknowledged before a cut"
        );
    }
}

/// The control: appends without an fsync lose acknowledged records in the same harness.
#[test]
fn appending_without_fsync_loses_acknowledged_records() {
    if let Some(outcome) = journal_power_cuts("none", cuts() / 6) {
        assert!(outcome.lost > 0, "the harness caught no lost record");
    }
}

/// The threads of the group-commit scenario's child.
const GROUP_THREADS: usize = 4;

/// The child process of the group-commit scenario: 4 threads append to one journal with a
/// group-commit window, each record `thread << 32 | seq`, and each thread prints `thread seq`
/// after its append returned. Does nothing when run directly.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn group_appender() {
    let (Ok(path), Ok(mode)) = (std::env::var(SAVER_FILE), std::env::var(JOURNAL_MODE)) else {
        return;
    };
    let journal = match Options::new()
        .durability(durability(&mode))
        .group_commit(Duration::from_micros(200))
        .journal::<Event, Tally>(&path)
    {
        Ok(journal) => journal,
        Err(error) => return failed(error),
    };
    let counts = match per_thread(&journal) {
        Ok(counts) => counts,
        Err(error) => return failed(error),
    };
    std::thread::scope(|scope| {
        for (thread, mut seq) in counts.into_iter().enumerate() {
            let journal = &journal;
            scope.spawn(move || {
                loop {
                    if let Err(error) = journal.append(&Event::at((thread as u64) << 32 | seq)) {
                        return failed(error);
                    }
                    if !acknowledge(format_args!("{thread} {seq}")) {
                        return;
                    }
                    seq += 1;
                }
            });
        }
    });
}

/// How many records of each thread the journal holds, after checking that each thread's are
/// `0, 1, 2, ...` without gap or repeat, and whole.
fn per_thread(
    journal: &persist::Journal<Event, Tally>,
) -> Result<[u64; GROUP_THREADS], persist::Error> {
    let mut counts = [0; GROUP_THREADS];
    for event in journal.replay()? {
        let event = event?;
        let (thread, seq) = ((event.id >> 32) as usize, event.id & 0xFFFF_FFFF);
        assert_eq!(
            seq, counts[thread],
            "a gap or a repeat in thread {thread}'s records"
        );
        assert_eq!(
            event.padding,
            Event::at(event.id).padding,
            "a partial record"
        );
        counts[thread] += 1;
    }
    Ok(counts)
}

/// What the group-commit scenario saw after `cuts` cuts: cuts that lost an acknowledged record,
/// and how many records were acknowledged.
fn group_power_cuts(mode: &str, cuts: usize) -> Option<(usize, u64)> {
    let (_work, image, point) = new_image()?;
    let path = point.join("events.log");
    let (mut rng, _) = common::Rng::from_env();
    let (mut lost, mut acknowledged, mut set_aside) = (0, 0, 0);
    for _ in 0..cuts {
        let mount = Mount::new(&image, &point);
        let before = per_thread(&open_events(&path)).unwrap();
        let child = child("group_appender", &path, JOURNAL_MODE, mode);
        let reports = cut_during_lines(mount, child, cut_delay(&mut rng));
        set_aside += reports.after.len();
        let count = |lines: &[String]| {
            let mut acked = before;
            for line in lines {
                let (thread, seq) = line.split_once(' ').expect("thread seq");
                let (thread, seq) = (
                    thread.parse::<usize>().unwrap(),
                    seq.parse::<u64>().unwrap(),
                );
                acked[thread] = acked[thread].max(seq + 1);
            }
            acked
        };
        let acked = count(&reports.before);
        let any = count(&[reports.before, reports.after].concat());
        acknowledged += acked.iter().zip(&before).map(|(a, b)| a - b).sum::<u64>();
        let _mount = Mount::new(&image, &point);
        let held = per_thread(&open_events(&path))
            .unwrap_or_else(|error| panic!("recovery failed: {error}"));
        if held.iter().zip(&acked).any(|(held, acked)| held < acked) {
            lost += 1;
            if mode != "none" {
                eprintln!("lost: acknowledged {acked:?}, held {held:?}");
            }
        }
        for (held, any) in held.iter().zip(&any) {
            // At most the record each thread had in flight.
            assert!(*held <= any + 1, "records that were never appended");
        }
    }
    println!(
        "group commit, {GROUP_THREADS} threads, durability {mode}: {cuts} cuts, {acknowledged} \
         records acknowledged before the cut, {set_aside} set aside, {lost} cuts lost some"
    );
    // One flush racing the cut may carry one append of each thread.
    few_set_aside(mode != "none", set_aside, cuts * GROUP_THREADS);
    Some((lost, acknowledged))
}

/// Concurrent appends sharing fsyncs (group commit) through power cuts: every acknowledged
/// record of every thread is there after the cut, none partial, none out of order.
#[test]
fn group_commits_survive_every_power_cut() {
    if let Some((lost, acknowledged)) = group_power_cuts("full", cuts() / 3) {
        assert_eq!(lost, 0);
        assert!(acknowledged > 0, "no append was acknowledged before a cut");
    }
}

/// The control: the same threads without fsync lose acknowledged records.
#[test]
fn group_appends_without_fsync_lose_acknowledged_records() {
    if let Some((lost, _)) = group_power_cuts("none", cuts() / 6) {
        assert!(lost > 0, "the harness caught no lost record");
    }
}
