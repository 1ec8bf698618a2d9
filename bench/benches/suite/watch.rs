//! Change latency of `Collection::watch` (issue 26): puts made here one at a time, a few
//! milliseconds apart, watched by a collection handle in another process (`--watch-child`):
//! the time from a put's return to its event there, on the monotonic clock both processes share
//! (negative when the event came before the put returned: the local directory's rename is seen
//! before its directory is synced), median and 99th percentile. On the local directory (file
//! events), PostgreSQL (the table's NOTIFY) and S3 (a listing every 100 ms), each when its
//! server is there.

use std::io::{BufRead, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use persist::backend::{Postgres, S3};
use persist::{ChangeOrigin, Collection, Options, Persisted, WatchEvent, WatchOptions};
use persist_bench::Settings;
use serde::{Deserialize, Serialize};

use super::Mode;
use super::journal::monotonic_nanos;

/// How often the S3 feed lists the prefix.
const S3_POLL: Duration = Duration::from_millis(100);

/// The collection a store spec names: `local <dir>`, `postgres <config>|<table>`,
/// `s3 <endpoint>|<prefix>`.
fn open(kind: &str, spec: &str) -> Collection<Settings> {
    match kind {
        "local" => Collection::open(spec).unwrap(),
        "postgres" => {
            let (config, table) = spec.split_once('|').unwrap();
            Collection::with_backend(
                Arc::new(Postgres::connect(config, table).unwrap()),
                Options::new(),
            )
        }
        "s3" => {
            let (endpoint, prefix) = spec.split_once('|').unwrap();
            Collection::with_backend(
                Arc::new(S3::new(super::s3::store(endpoint), prefix).unwrap()),
                Options::new(),
            )
        }
        other => panic!("unknown store {other}"),
    }
}

/// The stores measured here: their kind, spec and target median in milliseconds.
fn stores(dir: &Path) -> Vec<(&'static str, String, Option<f64>)> {
    let mut stores = vec![(
        "local",
        dir.join("watched").to_str().unwrap().to_owned(),
        Some(50.0),
    )];
    if let Some(config) = super::postgres::server() {
        let table = format!("persist_bench_watch_{}", std::process::id());
        stores.push(("postgres", format!("{config}|{table}"), Some(20.0)));
    }
    if let Some(endpoint) = super::s3::server() {
        let prefix = format!("bench-watch-{}/", std::process::id());
        stores.push(("s3", format!("{endpoint}|{prefix}"), None));
    }
    stores
}

/// Measures and prints each store's line.
pub(super) fn rows(dir: &Path, mode: Mode) {
    for (kind, spec, target) in stores(dir) {
        let count = match (mode, kind) {
            (Mode::Smoke, _) => 10,
            (_, "s3") => 60,
            _ => 300,
        };
        let watched = open(kind, &spec);
        let reporter = Reporter::start(&["--watch-child", kind, &spec, &count.to_string()]);
        let settings = Settings::sample();
        let mut put_at = std::collections::HashMap::new();
        for n in 0..count {
            let key = format!("k{n:04}");
            watched.put(&key, &settings).unwrap();
            put_at.insert(key, monotonic_nanos());
            std::thread::sleep(Duration::from_millis(if kind == "s3" { 40 } else { 5 }));
        }
        let (_, at) = reporter.latencies(&put_at);
        let verdict = match target {
            Some(target) if at(0.5) <= target => format!(" (target median <= {target} ms: holds)"),
            Some(target) => format!(" (target median <= {target} ms: MISSED)"),
            None => format!(" (a listing every {} ms)", S3_POLL.as_millis()),
        };
        println!(
            "watch latency on {kind}, put returned -> event in another process, {count} puts: \
             median {:.2} ms, p99 {:.2} ms{verdict}",
            at(0.5),
            at(0.99),
        );
    }
}

/// A child process of this bench that says `ready`, then a line `<label> <monotonic ns>` for
/// each thing it saw, read as it goes.
struct Reporter {
    child: std::process::Child,
    lines: std::thread::JoinHandle<Vec<(String, i128)>>,
}

impl Reporter {
    /// Starts this program with `args`, and waits for it to be ready.
    fn start(args: &[&str]) -> Reporter {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let lines = std::thread::spawn(move || {
            lines
                .map(|line| {
                    let line = line.unwrap();
                    let (label, at) = line.split_once(' ').unwrap();
                    (label.to_owned(), at.parse::<i128>().unwrap())
                })
                .collect()
        });
        Reporter { child, lines }
    }

    /// Waits for the child to end: how many of the labels of `done` it saw, and the quantile
    /// function of the milliseconds from each one's time in `done` to the child's.
    fn latencies(
        mut self,
        done: &std::collections::HashMap<String, i128>,
    ) -> (usize, impl Fn(f64) -> f64) {
        let seen = self.lines.join().unwrap();
        assert!(self.child.wait().unwrap().success());
        let mut latencies: Vec<f64> = seen
            .iter()
            .filter_map(|(label, at)| Some((at - done.get(label)?) as f64 / 1e6))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let seen = latencies.len();
        let at = move |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        (seen, at)
    }
}

/// A value updated through live handles on one entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Tick {
    n: u64,
}

/// `Live` over a PostgreSQL entry: updates made one at a time through a live handle here,
/// seen by a live handle on the same entry in another process (`--live-entry-child`): the time
/// from an update's return to the other handle's change event, median and p99.
pub(super) fn live_entry_row(mode: Mode) {
    let Some(config) = super::postgres::server() else {
        return;
    };
    let count = if mode == Mode::Smoke { 10 } else { 100 };
    let spec = format!("{config}|persist_bench_live_{}", std::process::id());
    let (config, table) = spec.split_once('|').unwrap();
    let ticks: Collection<Tick> = Collection::with_backend(
        Arc::new(Postgres::connect(config, table).unwrap()),
        Options::new(),
    );
    ticks.put("shared", &Tick::default()).unwrap();
    let live = ticks.live("shared").unwrap();
    let reporter = Reporter::start(&["--live-entry-child", &spec, &count.to_string()]);
    let mut updated = std::collections::HashMap::new();
    for n in 1..=count {
        live.update(move |tick| tick.n = n).unwrap();
        updated.insert(n.to_string(), monotonic_nanos());
        // Apart enough that each update is seen on its own (not merged into the next).
        std::thread::sleep(Duration::from_millis(30));
    }
    let (seen, at) = reporter.latencies(&updated);
    println!(
        "Live over a PostgreSQL entry, update returned -> visible to a live handle in another \
         process, {} of {count} updates seen: median {:.2} ms, p99 {:.2} ms (target: well under \
         100 ms: {})",
        seen,
        at(0.5),
        at(0.99),
        if at(0.5) < 100.0 { "holds" } else { "MISSED" }
    );
}

/// The child of [`live_entry_row`]: a live handle on the entry, printing each value it is
/// given from elsewhere with the monotonic time, until the last update.
pub(super) fn live_entry_child(spec: &str, count: u64) {
    let (config, table) = spec.split_once('|').unwrap();
    let ticks: Collection<Tick> = Collection::with_backend(
        Arc::new(Postgres::connect(config, table).unwrap()),
        Options::new(),
    );
    let live = ticks.live("shared").unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let _guard = live.on_change(move |event| {
        if event.origin() != ChangeOrigin::Local {
            let _ = sender.send((event.value().n, monotonic_nanos()));
        }
    });
    println!("ready");
    let mut out = std::io::stdout().lock();
    while let Ok((n, at)) = receiver.recv_timeout(Duration::from_secs(20)) {
        writeln!(out, "{n} {at}").unwrap();
        out.flush().unwrap();
        if n >= count {
            break;
        }
    }
}

/// The child of [`rows`]: watches the store and prints, for each of `count` puts, its key and
/// the monotonic time its event came.
pub(super) fn watch_child(kind: &str, spec: &str, count: usize) {
    let watched = open(kind, spec);
    let mut watch = watched
        .watch_with("", WatchOptions::new().poll_every(S3_POLL))
        .unwrap();
    println!("ready");
    let mut out = std::io::stdout().lock();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < count {
        if let WatchEvent::Put { key, .. } = watch.next().unwrap().unwrap()
            && seen.insert(key.clone())
        {
            writeln!(out, "{key} {}", monotonic_nanos()).unwrap();
            out.flush().unwrap();
        }
    }
}
