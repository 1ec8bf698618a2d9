//! The rows of `Live<T>` (issues 12 and 23): `get` beside a writer, `update` with `Immediate`
//! against a plain save, `update` with `Coalesce` (it publishes and keeps the closure), coalesced
//! saves and the loss window under a stream of updates, two processes replaying their coalesced
//! changes on each other's saves, and how long an external edit takes to reach the value, per
//! editor save pattern.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use persist::{Live, Options, Persisted, SavePolicy};
use persist_bench::Settings;
use serde::{Deserialize, Serialize};

use super::editors::Pattern;
use super::{Contender, Mode, RowResult, Target, Workload, format_time, measure};

/// The document of the external-edit rows: a counter each edit raises.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Counter {
    edits: u64,
}

/// What the rows that are not ratios measured.
#[derive(Serialize)]
pub(super) struct LiveResult {
    /// Median time of one `Live::get`, in seconds, beside a 1 kHz writer.
    get_seconds: f64,
    /// Median time of one `Live::update` with `Coalesce`, in seconds.
    coalesce_update_seconds: f64,
    /// The coalescing saver under a steady stream of updates.
    coalesce: CoalesceResult,
    /// Two processes of coalesced updates on one file.
    processes: ProcessesResult,
    /// Per save pattern: the time from the writer's close to the new value, in seconds.
    edits: Vec<(String, Vec<f64>)>,
}

#[derive(Serialize)]
struct CoalesceResult {
    updates_per_second: f64,
    seconds: f64,
    debounce: f64,
    max_wait: f64,
    saves: u64,
    /// The longest time any update waited for a save that included it to be on disk.
    loss_window: f64,
    /// The median time of one plain durable save of the same value, measured beside it.
    one_save: f64,
}

/// Two processes making coalesced updates of one file at once.
#[derive(Serialize)]
struct ProcessesResult {
    seconds: f64,
    max_wait: f64,
    /// Per process: updates made, saves done.
    processes: Vec<(u64, u64)>,
    /// The count in the file at the end: the sum of the updates when nothing was lost.
    saved_total: u64,
}

const GET_AT_MOST: f64 = 50e-9;
const COALESCE_UPDATE_AT_MOST: f64 = 2e-6;
const EDIT_AT_MOST: f64 = 0.2;

pub(super) fn rows(
    dir: &std::path::Path,
    mode: Mode,
    small: Workload,
) -> (Vec<RowResult>, LiveResult) {
    let settings = Settings::sample();
    let mut rows = Vec::new();

    // get beside a writer that publishes a new value every millisecond.
    let live: Live<Settings> = Options::new()
        .save_policy(SavePolicy::Coalesce {
            debounce: Duration::from_millis(50),
            max_wait: Duration::from_millis(250),
        })
        .live(dir.join("live-get.json"))
        .unwrap();
    let initial = settings.clone();
    live.update(move |value| *value = initial.clone()).unwrap();
    let locked = RwLock::new(Arc::new(settings.clone()));
    let stop = AtomicBool::new(false);
    let get_row = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                live.update(move |value| value.autosave_secs = n).unwrap();
                let mut next = Settings::clone(&locked.read().unwrap());
                next.autosave_secs = n;
                *locked.write().unwrap() = Arc::new(next);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let row = measure(
            "live get, 1 kHz writer",
            Workload {
                batch: 100_000,
                ..small
            },
            0,
            vec![
                Contender::new("RwLock<Arc<T>> read", || {
                    std::hint::black_box(Arc::clone(&locked.read().unwrap()));
                }),
                Contender::new("persist Live::get", || {
                    std::hint::black_box(live.get());
                }),
            ],
            Vec::new(),
        );
        stop.store(true, Ordering::Relaxed);
        row
    });
    let get_seconds = get_row.median_time("persist Live::get");
    rows.push(get_row);
    drop(live);

    // update with Immediate against the save it does.
    let path = dir.join("live-update.json");
    let plain_path = dir.join("live-plain.json");
    let live: Live<Settings> = Options::new().live(&path).unwrap();
    let initial = settings.clone();
    live.update(move |value| *value = initial.clone()).unwrap();
    let mut plain = settings.clone();
    let options = Options::new();
    let update_row = measure(
        "live update, Immediate",
        small,
        serde_json::to_vec(&settings).unwrap().len() as u64,
        vec![
            Contender::new("persist save", || {
                plain.autosave_secs += 1;
                options.save(&plain, &plain_path).unwrap();
            }),
            Contender::new("persist Live::update", || {
                live.update(|value| value.autosave_secs += 1).unwrap();
            }),
        ],
        vec![Target::new("persist Live::update", "persist save", 1.10)],
    );
    let one_save = update_row.median_time("persist save");
    rows.push(update_row);
    drop(live);

    // update with Coalesce: a copy, the closure kept, the value published; the saver writes
    // once per window meanwhile. The reference publishes a copy behind a lock.
    let live: Live<Settings> = Options::new()
        .save_policy(SavePolicy::Coalesce {
            debounce: Duration::from_millis(50),
            max_wait: Duration::from_millis(250),
        })
        .live(dir.join("live-coalesce-update.json"))
        .unwrap();
    let locked = RwLock::new(Arc::new(settings.clone()));
    let coalesce_row = measure(
        "live update, Coalesce",
        small,
        serde_json::to_vec(&settings).unwrap().len() as u64,
        vec![
            Contender::new("RwLock<Arc<T>> copy and publish", || {
                let mut copy = Settings::clone(&locked.read().unwrap());
                copy.autosave_secs += 1;
                *locked.write().unwrap() = Arc::new(copy);
            }),
            Contender::new("persist Live::update, Coalesce", || {
                live.update(|value| value.autosave_secs += 1).unwrap();
            }),
        ],
        vec![],
    );
    let coalesce_update_seconds = coalesce_row.median_time("persist Live::update, Coalesce");
    rows.push(coalesce_row);
    live.flush().unwrap();
    drop(live);

    let coalesce = coalesce(dir, mode, one_save);
    let processes = processes(dir, mode);
    let edits = edits(dir, mode);
    (
        rows,
        LiveResult {
            get_seconds,
            coalesce_update_seconds,
            coalesce,
            processes,
            edits,
        },
    )
}

/// The body of `--live-child PATH SECONDS`: 10,000 coalesced increments a second for
/// `SECONDS`, then the last handle dropped (which saves the rest); prints the updates made
/// and the saves done.
pub(super) fn live_child(path: &std::path::Path, seconds: f64) {
    let live: Live<Counter> = Options::new()
        .save_policy(SavePolicy::Coalesce {
            debounce: Duration::from_millis(50),
            max_wait: Duration::from_millis(250),
        })
        .live(path)
        .unwrap();
    let started = Instant::now();
    let mut n = 0_u32;
    while started.elapsed().as_secs_f64() < seconds {
        n += 1;
        live.update(|counter| counter.edits += 1).unwrap();
        let next = started + Duration::from_micros(100) * n;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    live.flush().unwrap();
    println!("{n} {}", live.stats().saves);
}

/// Two processes (`--live-child`) at 10,000 coalesced increments a second each on one file:
/// each replays its pending increments on the other's saves, so the file ends at the sum.
fn processes(dir: &std::path::Path, mode: Mode) -> ProcessesResult {
    let seconds = if mode == Mode::Smoke { 0.6 } else { 2.0 };
    let path = dir.join("live-processes.json");
    Counter::default().save(&path).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--live-child", path.to_str().unwrap(), &seconds.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let processes = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let line = String::from_utf8(output.stdout).unwrap();
            let mut numbers = line.split_whitespace().map(|n| n.parse::<u64>().unwrap());
            (numbers.next().unwrap(), numbers.next().unwrap())
        })
        .collect();
    ProcessesResult {
        seconds,
        max_wait: 0.25,
        processes,
        saved_total: Counter::load(&path).unwrap().edits,
    }
}

/// 10,000 updates a second through a `Coalesce` handle, while another thread reads the file
/// every millisecond: the saves done, and the longest any update waited to be on disk.
fn coalesce(dir: &std::path::Path, mode: Mode, one_save: f64) -> CoalesceResult {
    let (debounce, max_wait) = (Duration::from_millis(50), Duration::from_millis(250));
    let seconds = if mode == Mode::Smoke { 0.6 } else { 2.0 };
    let path = dir.join("live-coalesce.json");
    let live: Live<Counter> = Options::new()
        .save_policy(SavePolicy::Coalesce { debounce, max_wait })
        .live(&path)
        .unwrap();
    // published[n - 1]: when update n was published.
    let published = Mutex::new(Vec::<Instant>::with_capacity(30_000));
    let newest = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let loss_window = std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            let mut longest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let now = Instant::now();
                let newest = newest.load(Ordering::Acquire);
                let durable = Counter::load(&path).map_or(0, |counter| counter.edits);
                if newest > durable {
                    // The oldest update not on disk yet was published at published[durable].
                    let since = published.lock().unwrap()[durable as usize];
                    longest = longest.max(now.saturating_duration_since(since));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            longest
        });
        let mut n = 0_u64;
        while started.elapsed().as_secs_f64() < seconds {
            n += 1;
            published.lock().unwrap().push(Instant::now());
            live.update(move |counter| counter.edits = n).unwrap();
            newest.store(n, Ordering::Release);
            let next = started + Duration::from_micros(100) * u32::try_from(n).unwrap();
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        live.flush().unwrap();
        done.store(true, Ordering::Relaxed);
        observer.join().unwrap()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let updates = published.lock().unwrap().len() as f64;
    CoalesceResult {
        updates_per_second: updates / elapsed,
        seconds: elapsed,
        debounce: debounce.as_secs_f64(),
        max_wait: max_wait.as_secs_f64(),
        saves: live.stats().saves,
        loss_window: loss_window.as_secs_f64(),
        one_save,
    }
}

/// For each save pattern: write, then spin on `get` until the new value is there.
fn edits(dir: &std::path::Path, mode: Mode) -> Vec<(String, Vec<f64>)> {
    let rounds = match mode {
        Mode::Full => 20,
        Mode::Quick => 7,
        Mode::Smoke => 1,
    };
    let path = dir.join("live-edits.json");
    Counter::default().save(&path).unwrap();
    let live: Live<Counter> = Options::new().live(&path).unwrap();
    let mut edits = 0;
    Pattern::ALL
        .into_iter()
        .filter(|pattern| pattern.available())
        .map(|pattern| {
            let latencies = (0..rounds)
                .map(|_| {
                    edits += 1;
                    pattern.write(
                        &path,
                        &format!(r#"{{"version":1,"data":{{"edits":{edits}}}}}"#),
                    );
                    let written = Instant::now();
                    while live.get().edits != edits {
                        assert!(
                            written.elapsed() < Duration::from_secs(10),
                            "{}",
                            pattern.name()
                        );
                        std::hint::spin_loop();
                    }
                    let latency = written.elapsed().as_secs_f64();
                    // Quiet between rounds, so that each edit is its own burst of events.
                    std::thread::sleep(Duration::from_millis(60));
                    latency
                })
                .collect();
            (pattern.name().to_owned(), latencies)
        })
        .collect()
}

fn verdict(holds: bool) -> &'static str {
    if holds { "holds" } else { "MISSED" }
}

/// The lines of the measurements that are not ratios.
pub(super) fn lines(live: &LiveResult) -> String {
    let mut out = format!(
        "live get beside a 1 kHz writer: {} per get (median), target ≤ {}: {}\n",
        format_time(live.get_seconds),
        format_time(GET_AT_MOST),
        verdict(live.get_seconds <= GET_AT_MOST),
    );
    out.push_str(&format!(
        "live update under Coalesce: {} per update (median), target ≤ {}: {}\n",
        format_time(live.coalesce_update_seconds),
        format_time(COALESCE_UPDATE_AT_MOST),
        verdict(live.coalesce_update_seconds <= COALESCE_UPDATE_AT_MOST),
    ));
    let p = &live.processes;
    let made: u64 = p.processes.iter().map(|(updates, _)| updates).sum();
    let windows = (p.seconds / p.max_wait).ceil();
    let per_window = p
        .processes
        .iter()
        .map(|(_, saves)| format!("{:.2}", *saves as f64 / windows))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!(
        "live Coalesce in 2 processes at 10,000 updates/s each for {:.1} s: {made} increments \
         made, {} in the file (exact: {}); saves per max_wait per process {per_window} (the \
         last one is the final flush; target ≤ 1 plus it: {})\n",
        p.seconds,
        p.saved_total,
        verdict(p.saved_total == made),
        verdict(
            p.processes
                .iter()
                .all(|(_, saves)| *saves as f64 <= windows + 1.0)
        ),
    ));
    let c = &live.coalesce;
    let windows = (c.seconds / c.max_wait).ceil();
    let loss_at_most = c.max_wait + c.one_save;
    out.push_str(&format!(
        "live Coalesce {{ debounce {}, max_wait {} }} at {:.0} updates/s for {:.1} s: {} saves \
         ({:.2} per max_wait, target ≤ 1: {}); loss window {} (target ≤ max_wait + one save = \
         {}: {})\n",
        format_time(c.debounce),
        format_time(c.max_wait),
        c.updates_per_second,
        c.seconds,
        c.saves,
        c.saves as f64 / windows,
        verdict(c.saves as f64 <= windows),
        format_time(c.loss_window),
        format_time(loss_at_most),
        verdict(c.loss_window <= loss_at_most),
    ));
    for (pattern, latencies) in &live.edits {
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        out.push_str(&format!(
            "live external edit, {pattern}: writer's close to the new value {} (median of {}; \
             max {}), target ≤ {}: {}\n",
            format_time(median),
            sorted.len(),
            format_time(max),
            format_time(EDIT_AT_MOST),
            verdict(median <= EDIT_AT_MOST),
        ));
    }
    out
}
