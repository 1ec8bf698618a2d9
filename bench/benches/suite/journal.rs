//! The rows of `Journal` (issue 14): an append with its own fsync against hand-written
//! `O_APPEND` + `fdatasync`; 100 appenders sharing fsyncs (threads, and tasks with
//! `append_async`) against the same appends made one after the other, each with its own fsync;
//! a replay of 100,000 small records against JSON lines read and parsed by hand; a checkpoint
//! of 10,000 keys against a save of the same snapshot.

use std::collections::BTreeMap;
use std::fs;
use std::hint::black_box;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use persist::{Journal, Options, Persisted};
use persist_bench::journal::{Event, RECORD_BYTES, replay_fixture};
use persist_bench::{Settings, baseline};
use serde::{Deserialize, Serialize};

use super::{Contender, Mode, RowResult, Target, Workload, measure};

const APPENDERS: usize = 100;
const REPLAYED: u64 = 100_000;
const KEYS: usize = 10_000;

pub(super) fn rows(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    mode: Mode,
    small: Workload,
) -> Vec<RowResult> {
    let workload = Workload {
        batch: 1,
        rounds: if mode == Mode::Full {
            small.rounds.min(21)
        } else {
            small.rounds
        },
        ..small
    };
    let replay = replay_row(dir, workload);
    let mut seconds = replay.times[1].clone();
    seconds.sort_by(f64::total_cmp);
    let per_second = REPLAYED as f64 / seconds[seconds.len() / 2];
    println!(
        "journal replay: {:.2} M records/s of {RECORD_BYTES} bytes (target >= 1 M/s: {})",
        per_second / 1e6,
        if per_second >= 1e6 { "holds" } else { "MISSED" }
    );
    follow_latency(dir, mode);
    vec![
        append_row(dir, small),
        threads_row(dir, workload),
        tasks_row(dir, rt, workload),
        replay,
        lean_replay_row(dir, workload),
        rewrite_row(dir, workload),
        checkpoint_row(dir, workload),
    ]
}

/// Replay of 100,000 small records against a lean hand-written reader of the same envelopes:
/// JSON lines read into one reused buffer and parsed where they lie, no checksums, no
/// versions dispatched (issue 24: at most 1.15x).
fn lean_replay_row(dir: &Path, workload: Workload) -> RowResult {
    let lines_path = dir.join("lean-replay.jsonl");
    let (journal, lines) = replay_fixture(&dir.join("lean-replay.log"), &lines_path, REPLAYED);
    measure(
        &format!("journal replay {REPLAYED} records, lean reader"),
        workload,
        lines,
        vec![
            Contender::new("lean hand-written reader (one buffer, from_slice)", || {
                let mut file = std::io::BufReader::with_capacity(
                    64 << 10,
                    fs::File::open(&lines_path).unwrap(),
                );
                let mut line = Vec::new();
                while file.read_until(b'\n', &mut line).unwrap() > 0 {
                    let value: baseline::Envelope<Event> = serde_json::from_slice(&line).unwrap();
                    black_box(value);
                    line.clear();
                }
            }),
            Contender::new("persist Journal::replay", || {
                for record in journal.replay().unwrap() {
                    black_box(record.unwrap());
                }
            }),
        ],
        vec![Target::new(
            "persist Journal::replay",
            "lean hand-written reader (one buffer, from_slice)",
            1.15,
        )],
    )
}

/// The record before [`Event`]: version 1 of it, which version 2 renames a field of.
#[derive(Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct EventV1 {
    id: u64,
    kind: String,
    body: String,
}

/// [`Event`] one version later: what [`rewrite_row`] migrates to.
#[derive(Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = EventV1)]
struct EventV2 {
    id: u64,
    kind: String,
    text: String,
}

impl From<EventV1> for EventV2 {
    fn from(old: EventV1) -> EventV2 {
        EventV2 {
            id: old.id,
            kind: old.kind,
            text: old.body,
        }
    }
}

/// A rewrite of 100,000 version 1 records at version 2 (each record migrated and stored again,
/// the old log kept as a backup, the new one put in place durably) against the same by hand: a
/// replay into memory and one `append_many` into a new journal (issue 24: at most 1.2x). Each
/// round starts from a copy of the same version 1 log, in both.
fn rewrite_row(dir: &Path, workload: Workload) -> RowResult {
    let old = dir.join("rewrite-v1.log");
    let _ = fs::remove_file(&old);
    {
        let journal = Journal::<EventV1>::open(&old).unwrap();
        let events: Vec<EventV1> = (0..REPLAYED)
            .map(|id| EventV1 {
                id,
                kind: "item-added".to_owned(),
                body: "x".repeat(128),
            })
            .collect();
        journal.append_many(&events).unwrap();
    }
    let bytes = fs::metadata(&old).unwrap().len();
    let by_hand = dir.join("rewrite-hand.log");
    let rewritten = dir.join("rewrite-persist.log");
    let fresh = |path: &Path| {
        for leftover in [path.to_owned(), path.with_extension("log.v1.bak")] {
            let _ = fs::remove_file(leftover);
        }
        fs::copy(&old, path).unwrap();
    };
    measure(
        &format!("journal rewrite {REPLAYED} records"),
        workload,
        bytes,
        vec![
            Contender::new("replay + append_many by hand", || {
                fresh(&by_hand);
                let events: Vec<EventV2> = Journal::<EventV2>::open(&by_hand)
                    .unwrap()
                    .replay()
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let target = by_hand.with_extension("new.log");
                let _ = fs::remove_file(&target);
                Journal::<EventV2>::open(&target)
                    .unwrap()
                    .append_many(&events)
                    .unwrap();
            }),
            Contender::new("persist Journal::rewrite", || {
                fresh(&rewritten);
                let journal = Journal::<EventV2>::open(&rewritten).unwrap();
                black_box(journal.rewrite().unwrap());
            }),
        ],
        vec![Target::new(
            "persist Journal::rewrite",
            "replay + append_many by hand",
            1.2,
        )],
    )
}

/// How many records the follower latency is measured over.
const FOLLOWED: usize = 400;

/// Follower latency: a follower in another process (`--follow-child`), woken by file events,
/// against appends made here one at a time (each synced), a few milliseconds apart. The time
/// from an append's return to the record's delivery in the other process, on the system's
/// monotonic clock both processes share (negative when the follower saw the record before the
/// fsync returned), median and 99th percentile (issue 24: median at most 50 ms).
fn follow_latency(dir: &Path, mode: Mode) {
    let count = if mode == Mode::Smoke { 20 } else { FOLLOWED };
    let path = dir.join("follow.log");
    let _ = fs::remove_file(&path);
    let journal = Journal::<Event>::open(&path).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--follow-child", path.to_str().unwrap(), &count.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let reader = std::thread::spawn(move || {
        lines
            .map(|line| line.unwrap().parse::<i128>().unwrap())
            .collect::<Vec<_>>()
    });
    let mut appended = Vec::with_capacity(count);
    for id in 0..count as u64 {
        journal.append(&Event::sample(id)).unwrap();
        appended.push(monotonic_nanos());
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let delivered = reader.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(delivered.len(), count);
    let mut latencies: Vec<f64> = delivered
        .iter()
        .zip(&appended)
        .map(|(delivered, appended)| (delivered - appended) as f64 / 1e6)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "journal follower latency, append returned -> delivered in another process, {count} \
         records: median {:.2} ms, p99 {:.2} ms (target median <= 50 ms: {})",
        at(0.5),
        at(0.99),
        if at(0.5) <= 50.0 { "holds" } else { "MISSED" }
    );
}

/// The child of [`follow_latency`]: follows the journal at `path` and prints, for each of
/// `count` records, the monotonic time it was delivered at.
pub(super) fn follow_child(path: &Path, count: usize) {
    let mut follow = Options::new().journal_follow::<Event>(path, 0).unwrap();
    println!("ready");
    let mut out = std::io::stdout().lock();
    for _ in 0..count {
        let _ = follow.next().unwrap().unwrap();
        writeln!(out, "{}", monotonic_nanos()).unwrap();
        out.flush().unwrap();
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
pub(super) fn monotonic_nanos() -> i128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec)
}

/// One append of a 1 KiB record, synced, against the same bytes by hand.
fn append_row(dir: &Path, small: Workload) -> RowResult {
    let settings = Settings::sample();
    let record = serde_json::to_vec(&serde_json::json!({"version": 1, "data": &settings})).unwrap();
    let hand = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hand.log"))
        .unwrap();
    let journal = Journal::<Settings>::open(dir.join("append.log")).unwrap();
    measure(
        "journal append",
        small,
        record.len() as u64,
        vec![
            Contender::new("hand-written O_APPEND + fdatasync", || {
                (&hand).write_all(&record).unwrap();
                hand.sync_data().unwrap();
            }),
            Contender::new("persist Journal::append", || {
                journal.append(&settings).unwrap();
            }),
        ],
        vec![Target::new(
            "persist Journal::append",
            "hand-written O_APPEND + fdatasync",
            1.0,
        )],
    )
}

/// 100 threads that live across rounds: each round releases them through a barrier, each
/// appends one record, and the round ends when all have. The reference takes a lock around
/// each append, so that every record gets its own fsync.
fn threads_row(dir: &Path, workload: Workload) -> RowResult {
    let per_record = Journal::<Event>::open(dir.join("threads-per-record.log")).unwrap();
    let one_at_a_time = Mutex::new(());
    let grouped = Journal::<Event>::open(dir.join("threads-grouped.log")).unwrap();
    let stop = AtomicBool::new(false);
    let gates: Vec<(Barrier, Barrier)> = (0..2)
        .map(|_| (Barrier::new(APPENDERS + 1), Barrier::new(APPENDERS + 1)))
        .collect();
    let event = Event::sample(0);
    std::thread::scope(|scope| {
        for (serialized, (start, done)) in [true, false].into_iter().zip(&gates) {
            for _ in 0..APPENDERS {
                let (event, stop, per_record, grouped, one_at_a_time) =
                    (&event, &stop, &per_record, &grouped, &one_at_a_time);
                scope.spawn(move || {
                    loop {
                        start.wait();
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if serialized {
                            let _turn = one_at_a_time.lock().unwrap();
                            per_record.append(event).unwrap();
                        } else {
                            grouped.append(event).unwrap();
                        }
                        done.wait();
                    }
                });
            }
        }
        let round = |(start, done): &(Barrier, Barrier)| {
            start.wait();
            done.wait();
        };
        let row = measure(
            &format!("journal {APPENDERS} threads"),
            workload,
            RECORD_BYTES * APPENDERS as u64,
            vec![
                Contender::new(format!("{APPENDERS} threads, an fsync per record"), || {
                    round(&gates[0])
                }),
                Contender::new(format!("{APPENDERS} threads, group commit"), || {
                    round(&gates[1])
                }),
            ],
            vec![Target::new(
                &format!("{APPENDERS} threads, group commit"),
                &format!("{APPENDERS} threads, an fsync per record"),
                0.02,
            )],
        );
        stop.store(true, Ordering::Relaxed);
        for (start, _) in &gates {
            start.wait();
        }
        row
    })
}

/// 100 tasks each awaiting `append_async` of one record, against 100 appends one after the
/// other (an fsync each).
fn tasks_row(dir: &Path, rt: &tokio::runtime::Runtime, workload: Workload) -> RowResult {
    let per_record = Journal::<Event>::open(dir.join("tasks-per-record.log")).unwrap();
    // No window: the flush that runs while tasks arrive carries everything queued meanwhile
    // (a window of 100 us measured the same or slower here).
    let grouped = Arc::new(Journal::<Event>::open(dir.join("tasks-grouped.log")).unwrap());
    let event = Event::sample(0);
    measure(
        &format!("journal {APPENDERS} tasks"),
        workload,
        RECORD_BYTES * APPENDERS as u64,
        vec![
            Contender::new(format!("{APPENDERS} appends, an fsync each"), || {
                for _ in 0..APPENDERS {
                    per_record.append(&event).unwrap();
                }
            }),
            Contender::new(
                format!("{APPENDERS} tasks, append_async (group commit)"),
                || {
                    rt.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..APPENDERS {
                            let (journal, event) = (Arc::clone(&grouped), event.clone());
                            tasks.spawn(async move { journal.append_async(event).await });
                        }
                        while let Some(appended) = tasks.join_next().await {
                            appended.unwrap().unwrap();
                        }
                    })
                },
            ),
        ],
        vec![Target::new(
            &format!("{APPENDERS} tasks, append_async (group commit)"),
            &format!("{APPENDERS} appends, an fsync each"),
            0.02,
        )],
    )
}

/// Replay of 100,000 small records against JSON lines of the same envelopes (persist also
/// checks two CRCs per record and dispatches on its version).
fn replay_row(dir: &Path, workload: Workload) -> RowResult {
    let lines_path = dir.join("replay.jsonl");
    let (journal, lines) = replay_fixture(&dir.join("replay.log"), &lines_path, REPLAYED);
    measure(
        &format!("journal replay {REPLAYED} records"),
        workload,
        lines,
        vec![
            Contender::new("hand-written JSON lines (BufReader + from_str)", || {
                let file = std::io::BufReader::new(fs::File::open(&lines_path).unwrap());
                for line in file.lines() {
                    let value: baseline::Envelope<Event> =
                        serde_json::from_str(&line.unwrap()).unwrap();
                    black_box(value);
                }
            }),
            Contender::new("persist Journal::replay", || {
                for record in journal.replay().unwrap() {
                    black_box(record.unwrap());
                }
            }),
        ],
        // The target is the throughput (printed by `rows`), not a ratio.
        Vec::new(),
    )
}

/// A snapshot of 10,000 keys.
#[derive(Clone, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Totals {
    by_key: BTreeMap<String, u64>,
}

/// A checkpoint with a snapshot of 10,000 keys (the snapshot saved, the log replaced by an
/// empty one, the previous snapshot removed) against a save of the same snapshot.
fn checkpoint_row(dir: &Path, workload: Workload) -> RowResult {
    let totals = Totals {
        by_key: (0..KEYS as u64)
            .map(|key| (format!("user-{key:06}"), key * 7))
            .collect(),
    };
    let journal = Journal::<Event, Totals>::open(dir.join("checkpoint.log")).unwrap();
    let saved = dir.join("totals.json");
    let bytes = {
        totals.save(&saved).unwrap();
        fs::metadata(&saved).unwrap().len()
    };
    measure(
        &format!("journal checkpoint of {KEYS} keys"),
        workload,
        bytes,
        vec![
            Contender::new("Options::save of the snapshot", || {
                totals.save(&saved).unwrap();
            }),
            Contender::new("persist Journal::checkpoint", || {
                journal.checkpoint(&totals).unwrap();
            }),
        ],
        Vec::new(),
    )
}
