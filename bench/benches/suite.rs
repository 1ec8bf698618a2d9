//! persist's benchmark suite: persist, the hand-written baseline and the peers, measured in one
//! run and reported as ratios.
//!
//! ```text
//! cargo bench                      # every row (about ten minutes)
//! cargo bench -- medium            # rows whose name contains "medium"
//! cargo bench -- --quick           # fewer rounds, no large workload
//! cargo bench -- gap               # only the runtime-stall row (large workload)
//! cargo bench -- memory            # only the peak-memory lines (medium and large)
//! cargo bench --features simd      # persist built with its `simd` feature, against sonic-rs
//! cargo bench -- --loads           # only the load rows
//! cargo bench -- live              # only the rows of Live<T>
//! cargo bench -- collection        # only the rows of Collection<T> (local directory)
//! cargo bench -- postgres          # only the rows of Collection<T> on PostgreSQL (a server is
//!                                  #   started with .ci/postgres unless PERSIST_TEST_POSTGRES is set)
//! cargo bench -- redb              # only the rows of Collection<T> on redb (backend::Redb), against
//!                                  #   redb by hand and the local directory
//! cargo bench -- transaction       # only the rows of Transaction (2, 10, 100 files)
//! cargo bench -- toml              # only the rows of TOML files (load, save, comment-keeping save)
//! cargo bench -- journal           # only the rows of Journal (append, group commit, replay,
//!                                  #   rewrite, checkpoint, follower latency)
//! cargo bench -- s3                # only the rows of Collection<T> on S3 (moto, via .ci/s3
//!                                  #   unless PERSIST_TEST_S3 is set)
//! PERSIST_BENCH_KEEP=1 cargo bench # keep the files in target/tmp/persist-bench/data
//! ```
//!
//! Why not criterion or divan: both measure one function to the end before the next begins, and
//! on a shared machine the time of an fsync drifts 15-20x from one minute to the next, so two
//! functions measured a minute apart cannot be compared. Here every round runs each contender of
//! a row once, in a fresh random order (seeded: `PERSIST_BENCH_SEED`, so a run can be repeated),
//! a ratio is taken inside each round, and the table reports the median of those per-round
//! ratios: drift that hits a whole round cancels out. The order is shuffled, not rotated: with a
//! rotation every contender always runs right after the same neighbour and inherits its cache
//! and allocator state, which measured persist's saves 1.06-1.14x where shuffled rounds of the
//! same code measured 0.97-1.04x.
//!
//! Results also go to `target/tmp/persist-bench/results.json`, which `bench/chart.py` draws.
//! Run as a test (`cargo test --benches`), the suite does one round of the small and medium rows
//! so that it cannot rot.

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use persist::{Durability, Options, Persisted};
use persist_bench::shapes::{Catalogue, Geometry, Social};
use persist_bench::{Records, RecordsV1, Rng, Settings, baseline};
use rustbreak::PathDatabase;
use rustbreak::deser::Ron;
use serde::{Deserialize, Serialize};

#[path = "suite/collection.rs"]
mod collection;
#[path = "../../tests/editors/mod.rs"]
mod editors;
#[path = "suite/journal.rs"]
mod journal;
#[path = "suite/live.rs"]
mod live;
#[path = "suite/postgres.rs"]
mod postgres;
#[path = "suite/redb.rs"]
mod redb;
#[path = "suite/s3.rs"]
mod s3;
#[path = "suite/toml.rs"]
mod toml_files;
#[path = "suite/transaction.rs"]
mod transaction;
#[path = "suite/watch.rs"]
mod watch;

/// native_model needs its attribute on the type it encodes: a newtype around the same records.
#[derive(Serialize, Deserialize)]
#[native_model::native_model(id = 1, version = 1)]
struct NativeRecords(Records);

/// How long the suite runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `cargo bench`: every row, enough rounds for a stable median.
    Full,
    /// `cargo bench -- --quick`: fewer rounds, no large workload.
    Quick,
    /// `cargo test --benches`: one round, small and medium, to check that every row still runs.
    Smoke,
}

/// The size of one workload and how often to measure it.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    /// Rounds per row; the median is taken over them.
    rounds: usize,
    /// Operations per contender per round, timed together (short operations need a few).
    batch: usize,
}

/// One thing measured in a row.
struct Contender<'a> {
    name: String,
    run: Box<dyn FnMut() + 'a>,
}

impl<'a> Contender<'a> {
    fn new(name: impl Into<String>, run: impl FnMut() + 'a) -> Self {
        Contender {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// What a row must show: `contender` against `reference`.
#[derive(Clone, Serialize)]
struct Target {
    contender: String,
    reference: String,
    /// The ratio `contender / reference` must be at most this.
    at_most: f64,
}

impl Target {
    fn new(contender: &str, reference: &str, at_most: f64) -> Self {
        Target {
            contender: contender.into(),
            reference: reference.into(),
            at_most,
        }
    }
}

/// The times of one row: `times[contender][round]`, in seconds per operation.
#[derive(Serialize)]
struct RowResult {
    operation: String,
    workload: String,
    /// Bytes of the file the row reads or writes.
    file_bytes: u64,
    reference: String,
    contenders: Vec<String>,
    times: Vec<Vec<f64>>,
    targets: Vec<Target>,
}

impl RowResult {
    fn index(&self, name: &str) -> usize {
        self.contenders
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no contender {name} in {}", self.operation))
    }

    /// Median of the per-round ratios `a / b`.
    fn ratio(&self, a: &str, b: &str) -> Quartiles {
        let (a, b) = (&self.times[self.index(a)], &self.times[self.index(b)]);
        Quartiles::of(a.iter().zip(b).map(|(a, b)| a / b).collect())
    }

    fn median_time(&self, name: &str) -> f64 {
        Quartiles::of(self.times[self.index(name)].clone()).median
    }
}

/// Median and interquartile range of a sample.
#[derive(Clone, Copy, Serialize)]
struct Quartiles {
    p25: f64,
    median: f64,
    p75: f64,
}

impl Quartiles {
    fn of(mut sample: Vec<f64>) -> Quartiles {
        sample.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let position = q * (sample.len() - 1) as f64;
            let (low, high) = (position.floor() as usize, position.ceil() as usize);
            sample[low] + (sample[high] - sample[low]) * (position - low as f64)
        };
        Quartiles {
            p25: at(0.25),
            median: at(0.5),
            p75: at(0.75),
        }
    }
}

/// The seed of the round orders: `PERSIST_BENCH_SEED`, or a fixed default.
static SEED: OnceLock<u64> = OnceLock::new();

/// The random order of one row's rounds: the same for the same seed, row and workload.
fn round_order(operation: &str, workload: &str) -> Rng {
    let seed = *SEED.get_or_init(|| {
        std::env::var("PERSIST_BENCH_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0x0BE7_C5EE)
    });
    // FNV-1a of the row's name, so that rows do not share one order.
    let name = operation.bytes().chain([0]).chain(workload.bytes());
    let hash = name.fold(0xCBF2_9CE4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    });
    Rng::new(seed ^ hash)
}

/// Runs `contenders` for `workload.rounds` rounds after one warm-up round, in a new random
/// order each round, each run timed over `workload.batch` calls.
fn measure(
    operation: &str,
    workload: Workload,
    file_bytes: u64,
    contenders: Vec<Contender<'_>>,
    targets: Vec<Target>,
) -> RowResult {
    let batch = workload.batch;
    let timed = contenders
        .into_iter()
        .map(|mut contender| Timed {
            name: contender.name,
            run: Box::new(move || {
                let start = Instant::now();
                for _ in 0..batch {
                    (contender.run)();
                }
                start.elapsed().as_secs_f64() / batch as f64
            }),
        })
        .collect();
    measure_timed(operation, workload, file_bytes, timed, targets)
}

/// A contender that times itself: its name, and a run that returns the time of the part to
/// measure (leaving out what it drops after it), in seconds.
struct Timed<'a> {
    name: String,
    run: Box<dyn FnMut() -> f64 + 'a>,
}

impl<'a> Timed<'a> {
    fn new(name: impl Into<String>, mut run: impl FnMut() -> Duration + 'a) -> Self {
        Timed {
            name: name.into(),
            run: Box::new(move || run().as_secs_f64()),
        }
    }
}

/// [`measure`] for contenders that time themselves: one warm-up round, then
/// `workload.rounds` rounds, in a new random order each round.
fn measure_timed(
    operation: &str,
    workload: Workload,
    file_bytes: u64,
    mut contenders: Vec<Timed<'_>>,
    targets: Vec<Target>,
) -> RowResult {
    let count = contenders.len();
    let mut times = vec![Vec::with_capacity(workload.rounds); count];
    let mut order: Vec<usize> = (0..count).collect();
    let mut rng = round_order(operation, workload.name);
    eprint!("{operation} {}: ", workload.name);
    for round in 0..=workload.rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            let elapsed = (contenders[i].run)();
            // Round 0 warms caches and allocators and is not kept.
            if round > 0 {
                times[i].push(elapsed);
            }
        }
        eprint!(".");
    }
    eprintln!();
    let reference = contenders[0].name.clone();
    RowResult {
        operation: operation.into(),
        workload: workload.name.into(),
        file_bytes,
        reference,
        contenders: contenders.into_iter().map(|c| c.name).collect(),
        times,
        targets,
    }
}

fn format_time(seconds: f64) -> String {
    match seconds {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        s if s >= 1e-6 => format!("{:.1} µs", s * 1e6),
        s => format!("{:.1} ns", s * 1e9),
    }
}

fn format_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The rows of one workload as Markdown table lines.
fn table_lines(row: &RowResult) -> String {
    let mut out = String::new();
    for name in &row.contenders {
        let ratio = row.ratio(name, &row.reference);
        let verdicts: Vec<String> = row
            .targets
            .iter()
            .filter(|t| &t.contender == name)
            .map(|t| {
                let r = row.ratio(&t.contender, &t.reference).median;
                let mark = if r <= t.at_most { "holds" } else { "MISSED" };
                format!("{mark}: {r:.3}x of {} (≤ {})", t.reference, t.at_most)
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} | {} | {:.3}x [{:.3}–{:.3}] | {} |",
            row.operation,
            row.workload,
            format_bytes(row.file_bytes),
            name,
            format_time(row.median_time(name)),
            ratio.median,
            ratio.p25,
            ratio.p75,
            verdicts.join("; "),
        );
    }
    out
}

const TABLE_HEAD: &str = "| operation | workload | contender | median time | vs first row [p25–p75] | target |\n|---|---|---|---|---|---|\n";

/// Everything one workload's rows need: values, files, options.
struct Bench<'a> {
    dir: &'a Path,
    workload: Workload,
    with_peers: bool,
    rt: &'a tokio::runtime::Runtime,
}

impl Bench<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}-{name}", self.workload.name))
    }

    /// Saves of `value`: the baseline, persist at each durability, async, and the peers.
    fn save_row<T>(&self, value: &T) -> RowResult
    where
        T: Persisted + Clone + Default + Send + Sync + 'static,
    {
        let paths = [
            "baseline.json",
            "persist.json",
            "filesync.json",
            "none.json",
            "async.json",
            "baseline-async.json",
            "async-owned.json",
            "generations.json",
        ]
        .map(|name| self.path(name));
        for path in &paths {
            let _ = fs::remove_file(path);
        }
        let full = Options::new();
        let file_sync = Options::new().durability(Durability::FileSync);
        let none = Options::new().durability(Durability::None);
        let generations = Options::new().generations(3);
        let shared = Arc::new(value.clone());
        let mut contenders = vec![
            Contender::new("hand-written", || {
                baseline::save(T::VERSION, value, &paths[0]).unwrap()
            }),
            Contender::new("persist", || full.save(value, &paths[1]).unwrap()),
            Contender::new("persist FileSync", || {
                file_sync.save(value, &paths[2]).unwrap()
            }),
            Contender::new("persist None", || none.save(value, &paths[3]).unwrap()),
            // Each save keeps the file it replaces as a generation (a hard link) and removes
            // the fourth oldest.
            Contender::new("persist generations(3)", || {
                generations.save(value, &paths[7]).unwrap()
            }),
            // A clone handed over (async calls own their values): the clone is made on the
            // caller's thread, the serialization on a worker thread.
            Contender::new("persist async", || {
                self.rt
                    .block_on(full.save_async(value.clone(), &paths[4]))
                    .unwrap()
            }),
            // The value handed over (an `Arc` clone: no copy of the value), serialized on the
            // blocking pool.
            Contender::new("persist async owned", || {
                self.rt
                    .block_on(full.save_shared_async(Arc::clone(&shared), &paths[6]))
                    .unwrap()
            }),
            // The baseline's blocking work moved to tokio's blocking pool, as async code
            // without persist would do it.
            Contender::new("hand-written async (spawn_blocking)", || {
                let envelope = baseline::Envelope {
                    version: T::VERSION,
                    data: value,
                };
                let bytes = serde_json::to_vec(&envelope).unwrap();
                let path = paths[5].clone();
                self.rt
                    .block_on(
                        self.rt
                            .spawn_blocking(move || baseline::write_durably(&bytes, &path)),
                    )
                    .unwrap()
                    .unwrap()
            }),
        ];
        let mut targets = vec![
            Target::new("persist", "hand-written", 1.05),
            Target::new("persist async", "persist", 1.10),
            Target::new("persist async owned", "persist", 1.10),
            Target::new("persist generations(3)", "persist", 1.10),
        ];
        if self.with_peers {
            self.peer_savers(value, &mut contenders, &mut targets);
        }
        let file_bytes = persist_bytes(value);
        measure("save", self.workload, file_bytes, contenders, targets)
    }

    fn peer_savers<'v, T>(
        &self,
        value: &'v T,
        contenders: &mut Vec<Contender<'v>>,
        targets: &mut Vec<Target>,
    ) where
        T: Persisted + Clone + Default + Send + Sync + 'static,
    {
        let records = any_records(value);
        let rustbreak_path = self.path("rustbreak.ron");
        let _ = fs::remove_file(&rustbreak_path);
        let db =
            PathDatabase::<Records, Ron>::create_at_path(rustbreak_path, records.clone()).unwrap();
        contenders.push(Contender::new("rustbreak 2.0 (RON)", move || {
            db.save().unwrap()
        }));
        let confy_path = self.path("confy.toml");
        let confy_records = records.clone();
        contenders.push(Contender::new("confy 2.0 (TOML)", move || {
            confy::store_path(&confy_path, &confy_records).unwrap()
        }));
        let native = NativeRecords(records);
        let native_path = self.path("native_model.bin");
        contenders.push(Contender::new("native_model 0.6 (bincode)", move || {
            fs::write(&native_path, native_model::encode(&native).unwrap()).unwrap()
        }));
        for peer in ["rustbreak 2.0 (RON)", "confy 2.0 (TOML)"] {
            targets.push(Target::new("persist", peer, 1.0));
        }
    }

    /// Loads of the file `value` saves as: the baseline, persist sync and async, and the peers.
    fn load_row<T>(&self, value: &T) -> RowResult
    where
        T: Persisted + Clone + Default + Send + Sync + 'static,
    {
        let path = self.path("load.json");
        value.save(&path).unwrap();
        let last_good = Options::new().on_corrupt(persist::OnCorrupt::LastGood);
        let mut contenders = vec![
            Contender::new("hand-written", || {
                black_box(baseline::load::<T>(&path).unwrap());
            }),
            Contender::new("persist", || {
                black_box(T::load(&path).unwrap());
            }),
            Contender::new("persist async", || {
                black_box(self.rt.block_on(T::load_async(&path)).unwrap());
            }),
            // The recovery policy on an intact file: nothing to do.
            Contender::new("persist OnCorrupt::LastGood", || {
                black_box(last_good.load::<T>(&path).unwrap());
            }),
            // The other way to keep the file's bytes out of memory (issue 16): parse from a reader
            // with a large buffer. persist maps the file instead.
            Contender::new("hand-written from_reader (1 MiB buffer)", || {
                let file =
                    std::io::BufReader::with_capacity(1 << 20, fs::File::open(&path).unwrap());
                let value: baseline::Envelope<T> = serde_json::from_reader(file).unwrap();
                black_box(value);
            }),
            // What async code without persist pays for the same thread hand-off.
            Contender::new("hand-written async (tokio::fs::read)", || {
                let bytes = self.rt.block_on(tokio::fs::read(&path)).unwrap();
                let value: baseline::Envelope<T> = serde_json::from_slice(&bytes).unwrap();
                black_box(value);
            }),
        ];
        let mut targets = vec![
            Target::new("persist", "hand-written", LOAD_TARGET),
            Target::new("persist async", "persist", 1.10),
            Target::new("persist OnCorrupt::LastGood", "persist", 1.02),
        ];
        if cfg!(feature = "simd") {
            contenders.push(sonic_by_hand::<T>(&path));
            targets.push(Target::new("persist", SONIC_BY_HAND, 1.05));
        }
        if let Some(records) = records_of(value) {
            // The same records three migrations back, loaded as the current version.
            let v1_path = self.path("load-v1.json");
            RecordsV1::from_current(records).save(&v1_path).unwrap();
            eprintln!(
                "  version 1 file {} bytes, version 4 file {} bytes",
                fs::metadata(&v1_path).unwrap().len(),
                fs::metadata(&path).unwrap().len()
            );
            let v1 = v1_path.clone();
            contenders.push(Contender::new("persist, v1 file via 3 steps", move || {
                black_box(Records::load(&v1).unwrap());
            }));
            // The same file read as the version it holds: the difference to the row above is
            // the three conversions (the user's `From`/`TryFrom` code).
            contenders.push(Contender::new(
                "persist, v1 file as v1 (no steps)",
                move || {
                    black_box(RecordsV1::load(&v1_path).unwrap());
                },
            ));
            targets.push(Target::new("persist, v1 file via 3 steps", "persist", 1.15));
        }
        if self.with_peers {
            let records = any_records(value);
            let rustbreak_path = self.path("rustbreak.ron");
            PathDatabase::<Records, Ron>::create_at_path(rustbreak_path.clone(), records.clone())
                .unwrap()
                .save()
                .unwrap();
            contenders.push(Contender::new("rustbreak 2.0 (RON)", move || {
                let db = PathDatabase::<Records, Ron>::load_from_path(rustbreak_path.clone());
                black_box(db.unwrap());
            }));
            let confy_path = self.path("confy.toml");
            confy::store_path(&confy_path, records.clone()).unwrap();
            contenders.push(Contender::new("confy 2.0 (TOML)", move || {
                black_box(confy::load_path::<Records>(&confy_path).unwrap());
            }));
            let native_path = self.path("native_model.bin");
            fs::write(
                &native_path,
                native_model::encode(&NativeRecords(records.clone())).unwrap(),
            )
            .unwrap();
            contenders.push(Contender::new("native_model 0.6 (bincode)", move || {
                let bytes = fs::read(&native_path).unwrap();
                black_box(native_model::decode::<NativeRecords>(bytes).unwrap());
            }));
            for peer in ["rustbreak 2.0 (RON)", "confy 2.0 (TOML)"] {
                targets.push(Target::new("persist", peer, 1.0));
            }
        }
        let file_bytes = fs::metadata(&path).unwrap().len();
        measure("load", self.workload, file_bytes, contenders, targets)
    }

    /// `tasks` saves of `value` to `tasks` different files: one after another with the sync
    /// API, then all at once as tokio tasks.
    fn concurrency_row<T>(&self, value: &T, tasks: usize) -> RowResult
    where
        T: Persisted + Clone + Send + Sync + 'static,
    {
        let sequential: Vec<PathBuf> = (0..tasks)
            .map(|i| self.path(&format!("sequential-{i}.json")))
            .collect();
        let concurrent: Vec<PathBuf> = (0..tasks)
            .map(|i| self.path(&format!("concurrent-{i}.json")))
            .collect();
        let operation = format!("save {tasks} files");
        let contenders = vec![
            Contender::new("persist, one after another", || {
                for path in &sequential {
                    value.save(path).unwrap();
                }
            }),
            Contender::new(format!("persist async, {tasks} tokio tasks"), || {
                let handles: Vec<_> = concurrent
                    .iter()
                    .map(|path| self.rt.spawn(value.clone().save_async(path)))
                    .collect();
                self.rt.block_on(async {
                    for handle in handles {
                        handle.await.unwrap().unwrap();
                    }
                });
            }),
        ];
        let file_bytes = persist_bytes(value);
        measure(
            &operation,
            self.workload,
            file_bytes,
            contenders,
            Vec::new(),
        )
    }

    /// Saves and loads of a real-world shape against the hand-written code, with fsync and
    /// without (`Durability::None` against the same code without its fsyncs: the CPU work
    /// alone, where a difference in serializing would show).
    fn shape_rows<T>(&self, value: &T) -> [RowResult; 2]
    where
        T: Persisted + Clone + Default + Send + Sync + 'static,
    {
        let paths = [
            "baseline.json",
            "persist.json",
            "baseline-nosync.json",
            "none.json",
        ]
        .map(|name| self.path(name));
        let none = Options::new().durability(Durability::None);
        let save = vec![
            Contender::new("hand-written", || {
                baseline::save(T::VERSION, value, &paths[0]).unwrap()
            }),
            Contender::new("persist", || value.save(&paths[1]).unwrap()),
            Contender::new("hand-written, no fsync", || {
                baseline::save_unsynced(T::VERSION, value, &paths[2]).unwrap()
            }),
            Contender::new("persist None", || none.save(value, &paths[3]).unwrap()),
        ];
        let save_targets = vec![
            Target::new("persist", "hand-written", 1.05),
            Target::new("persist None", "hand-written, no fsync", 1.05),
        ];
        let file_bytes = persist_bytes(value);
        let save = measure("save", self.workload, file_bytes, save, save_targets);

        let path = self.path("load.json");
        value.save(&path).unwrap();
        let mut load = vec![
            Contender::new("hand-written", || {
                black_box(baseline::load::<T>(&path).unwrap());
            }),
            Contender::new("persist", || {
                black_box(T::load(&path).unwrap());
            }),
            Contender::new("persist async", || {
                black_box(self.rt.block_on(T::load_async(&path)).unwrap());
            }),
        ];
        let mut load_targets = vec![Target::new("persist", "hand-written", LOAD_TARGET)];
        if cfg!(feature = "simd") {
            load.push(sonic_by_hand::<T>(&path));
            load_targets.push(Target::new("persist", SONIC_BY_HAND, 1.05));
        }
        let load = measure("load", self.workload, file_bytes, load, load_targets);
        [save, load]
    }

    /// The optional layers (checksum, pretty layout, zstd levels, encryption) on saves and loads
    /// of `value`,
    /// without fsync (`Durability::None`) so that the rows show the CPU cost of each layer,
    /// not the disk's.
    fn layer_rows<T>(&self, value: &T) -> [RowResult; 2]
    where
        T: Persisted + Clone + Default + Send + Sync + 'static,
    {
        let base = Options::new().durability(Durability::None).backups(0);
        let key = persist::Key::from_bytes([42; 32]);
        let variants: Vec<(&str, Options)> = vec![
            ("persist, no layer", base.clone()),
            ("+ checksum", base.clone().checksum(true)),
            ("+ pretty", base.clone().pretty(true)),
            ("+ zstd 1", base.clone().compress(1)),
            ("+ zstd 3", base.clone().compress(3)),
            ("+ zstd 19", base.clone().compress(19)),
            ("+ encryption", base.clone().encrypt(key.clone())),
            (
                "+ all (checksum, zstd 3, encryption)",
                base.clone().checksum(true).compress(3).encrypt(key),
            ),
        ];
        let paths: Vec<PathBuf> = (0..variants.len())
            .map(|i| self.path(&format!("layer-{i}.state")))
            .collect();
        for ((name, options), path) in variants.iter().zip(&paths) {
            options.save(value, path).unwrap();
            eprintln!("  {name}: {} bytes", fs::metadata(path).unwrap().len());
        }
        let savers = variants
            .iter()
            .zip(&paths)
            .map(|((name, options), path)| {
                Contender::new(*name, move || options.save(value, path).unwrap())
            })
            .collect();
        let loaders = variants
            .iter()
            .zip(&paths)
            .map(|((name, options), path)| {
                Contender::new(*name, move || {
                    black_box(options.load::<T>(path).unwrap());
                })
            })
            .collect();
        let file_bytes = persist_bytes(value);
        [
            measure(
                "save, layers (no fsync)",
                self.workload,
                file_bytes,
                savers,
                Vec::new(),
            ),
            measure(
                "load, layers",
                self.workload,
                file_bytes,
                loaders,
                Vec::new(),
            ),
        ]
    }
}

/// The bytes persist writes for `value`.
fn persist_bytes<T: Persisted>(value: &T) -> u64 {
    serde_json::to_vec(&baseline::Envelope {
        version: T::VERSION,
        data: value,
    })
    .unwrap()
    .len() as u64
}

fn records_of<T: 'static>(value: &T) -> Option<&Records> {
    (value as &dyn std::any::Any).downcast_ref::<Records>()
}

fn any_records<T: 'static>(value: &T) -> Records {
    records_of(value)
        .expect("peers are measured on the record workloads")
        .clone()
}

/// What a child process of [`memory`] measured, in bytes.
#[derive(Serialize, Clone, Copy, Default)]
struct Peaks {
    /// The process's peak resident set (VmHWM): anonymous memory and mapped file pages.
    hwm: u64,
    /// The highest anonymous resident memory seen (resident minus file-backed and shared pages,
    /// from /proc/self/statm, sampled every 100 µs and once more at the end of the work).
    anon: u64,
    /// Anonymous resident memory before the work began: for a save, the value already built.
    before: u64,
}

/// Runs a child process that does `which` with `path` and returns what it measured.
fn peaks(which: &str, path: &Path) -> Peaks {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--rss-child", which])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(|number| number.parse().unwrap())
        .collect();
    let [hwm, anon, before] = numbers[..] else {
        panic!("unexpected child output {text:?}");
    };
    Peaks { hwm, anon, before }
}

/// Anonymous resident memory of this process, in bytes: resident minus shared (file-backed and
/// shared memory) pages, from /proc/self/statm.
fn anon_now() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap();
    let pages: Vec<u64> = statm
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect();
    (pages[1] - pages[2]) * 4096
}

/// Runs `work` while a thread samples [`anon_now`], and returns the anonymous memory just
/// before the work (with the sampler already running, so that its own stack and buffers are
/// not counted as the work's) and the highest value seen during it.
fn peak_anon_during(work: impl FnOnce()) -> (u64, u64) {
    let started = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = anon_now();
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(anon_now());
                std::thread::sleep(Duration::from_micros(100));
            }
            peak
        });
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let before = anon_now();
        work();
        let last = anon_now();
        stop.store(true, Ordering::Relaxed);
        (before, sampler.join().unwrap().max(last))
    })
}

/// The child of [`peaks`]: does `which` with `path`, then prints its peak resident set, its
/// peak anonymous memory and its anonymous memory before the work, in bytes.
fn rss_child(which: &str, path: &Path) {
    let (before, anon) = match which {
        "persist" | "persist-v1" => {
            peak_anon_during(|| drop(black_box(Records::load(path).unwrap())))
        }
        "hand-written" => {
            peak_anon_during(|| drop(black_box(baseline::load::<Records>(path).unwrap())))
        }
        "persist-save" => {
            let records = Records::load(path).unwrap();
            let target = path.with_extension("saved.json");
            let peaks = peak_anon_during(|| records.save(&target).unwrap());
            fs::remove_file(&target).unwrap();
            peaks
        }
        "idle" => peak_anon_during(|| {}),
        other => panic!("unknown child {other}"),
    };
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    println!("{} {anon} {before}", kib * 1024);
}

#[derive(Serialize)]
struct MemoryResult {
    workload: String,
    file_bytes: u64,
    idle: Peaks,
    hand_written: Peaks,
    persist: Peaks,
    /// Only for the large workload, whose v1 file shows what a migration chain costs.
    persist_v1: Option<Peaks>,
    save: Peaks,
}

impl MemoryResult {
    /// What persist's load holds at its peak beside an idle process, against the hand-written
    /// load's.
    fn load_ratio(&self) -> f64 {
        (self.persist.anon - self.idle.anon) as f64
            / (self.hand_written.anon - self.idle.anon) as f64
    }

    /// What a save holds beside the value it saves, in bytes.
    fn save_extra(&self) -> u64 {
        self.save.anon.saturating_sub(self.save.before)
    }
}

/// The load target against `fs::read` + `serde_json::from_slice`: at par without the `simd`
/// feature, 0.85x with it.
const LOAD_TARGET: f64 = if cfg!(feature = "simd") { 0.85 } else { 1.05 };

const SONIC_BY_HAND: &str = "fs::read + sonic_rs::from_slice";

/// The `simd` feature's baseline: the file read and parsed by sonic-rs by hand.
fn sonic_by_hand<T: Persisted + 'static>(path: &Path) -> Contender<'static> {
    let path = path.to_owned();
    Contender::new(SONIC_BY_HAND, move || {
        let bytes = fs::read(&path).unwrap();
        let value: baseline::Envelope<T> = sonic_rs::from_slice(&bytes).unwrap();
        black_box(value);
    })
}

/// Peak memory of a load of the workload (persist against the hand-written load) and of a save
/// (against the value's own size), each in a child process of its own, interleaved over three
/// rounds; the maximum of each is its peak.
fn memory(dir: &Path, workload: &str, records: &Records, with_v1: bool) -> MemoryResult {
    let path = dir.join(format!("{workload}-rss.json"));
    records.save(&path).unwrap();
    let v1_path = dir.join(format!("{workload}-rss-v1.json"));
    if with_v1 {
        RecordsV1::from_current(records).save(&v1_path).unwrap();
    }
    let mut result = MemoryResult {
        workload: workload.to_owned(),
        file_bytes: fs::metadata(&path).unwrap().len(),
        idle: Peaks::default(),
        hand_written: Peaks::default(),
        persist: Peaks::default(),
        persist_v1: with_v1.then(Peaks::default),
        save: Peaks::default(),
    };
    fn keep_max(kept: &mut Peaks, new: Peaks) {
        if new.anon > kept.anon {
            *kept = Peaks {
                hwm: kept.hwm.max(new.hwm),
                ..new
            };
        } else {
            kept.hwm = kept.hwm.max(new.hwm);
        }
    }
    for _ in 0..3 {
        keep_max(&mut result.idle, peaks("idle", &path));
        keep_max(&mut result.hand_written, peaks("hand-written", &path));
        keep_max(&mut result.persist, peaks("persist", &path));
        keep_max(&mut result.save, peaks("persist-save", &path));
        if let Some(v1) = &mut result.persist_v1 {
            keep_max(v1, peaks("persist-v1", &v1_path));
        }
    }
    result
}

/// The memory lines of the report.
fn memory_lines(m: &MemoryResult) -> String {
    let load_target = if m.workload == "large" { 0.80 } else { 1.0 };
    let save_limit = 4 << 20;
    let mut text = format!(
        "peak memory loading {} ({}), beside an idle process ({} anonymous): hand-written {} \
         anonymous ({} resident), persist {} anonymous ({} resident): {:.3}x, target ≤ {:.2}: {}",
        m.workload,
        format_bytes(m.file_bytes),
        format_bytes(m.idle.anon),
        format_bytes(m.hand_written.anon - m.idle.anon),
        format_bytes(m.hand_written.hwm),
        format_bytes(m.persist.anon - m.idle.anon),
        format_bytes(m.persist.hwm),
        m.load_ratio(),
        load_target,
        if m.load_ratio() <= load_target {
            "holds"
        } else {
            "MISSED"
        },
    );
    if let Some(v1) = &m.persist_v1 {
        text.push_str(&format!(
            "; persist from a v1 file through 3 steps {} anonymous",
            format_bytes(v1.anon - m.idle.anon)
        ));
    }
    text.push_str(&format!(
        "\npeak memory saving {}: the value {} anonymous, the save {} more (target ≤ {}): {}",
        m.workload,
        format_bytes(m.save.before - m.idle.anon),
        format_bytes(m.save_extra()),
        format_bytes(save_limit),
        if m.save_extra() <= save_limit {
            "holds"
        } else {
            "MISSED"
        },
    ));
    text
}

/// How long a 1 ms ticking task on a current-thread runtime went without running while a
/// save of the workload ran on the same runtime, per round, for the borrowing `save_async`
/// (which serializes on the caller's thread) and the owned save (which serializes on the
/// blocking pool).
#[derive(Serialize)]
struct GapResult {
    workload: String,
    file_bytes: u64,
    /// Longest gap in seconds, per round: with no save at all (the machine's own jitter), during
    /// the borrowing save, during the owned save.
    idle: Vec<f64>,
    borrowed: Vec<f64>,
    owned: Vec<f64>,
    /// The target for the owned save, in seconds.
    owned_at_most: f64,
}

/// The longest time between two ticks of a task that sleeps 1 ms in a loop, while `save` runs
/// on the same current-thread runtime.
fn longest_gap(save: impl AsyncFnOnce()) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async move {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let done = Arc::clone(&done);
            async move {
                let mut longest = Duration::ZERO;
                let mut last = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let now = Instant::now();
                    longest = longest.max(now - last);
                    last = now;
                }
                longest
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        save().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        done.store(true, Ordering::Relaxed);
        ticker.await.unwrap().as_secs_f64()
    })
}

fn tick_gaps<T>(dir: &Path, workload: Workload, value: &T) -> GapResult
where
    T: Persisted + Clone + Send + Sync + 'static,
{
    let path = dir.join(format!("{}-gap.json", workload.name));
    let shared = Arc::new(value.clone());
    let mut result = GapResult {
        workload: workload.name.into(),
        file_bytes: persist_bytes(value),
        idle: Vec::new(),
        borrowed: Vec::new(),
        owned: Vec::new(),
        owned_at_most: 0.005,
    };
    let mut rng = round_order("tick gap", workload.name);
    let mut order = [0, 1, 2];
    eprint!("tick gap {}: ", workload.name);
    // Round 0 warms the worker thread, the allocator and the page cache and is not kept.
    for round in 0..=workload.rounds {
        rng.shuffle(&mut order);
        for &which in &order {
            let gap = match which {
                0 => longest_gap(async || tokio::time::sleep(Duration::from_millis(100)).await),
                1 => longest_gap(async || value.clone().save_async(&path).await.unwrap()),
                _ => {
                    let shared = Arc::clone(&shared);
                    longest_gap(async || {
                        Options::new()
                            .save_shared_async(shared, &path)
                            .await
                            .unwrap()
                    })
                }
            };
            if round > 0 {
                [&mut result.idle, &mut result.borrowed, &mut result.owned][which].push(gap);
            }
        }
        eprint!(".");
    }
    eprintln!();
    result
}

fn gap_line(gap: &GapResult) -> String {
    let borrowed = Quartiles::of(gap.borrowed.clone());
    let owned = Quartiles::of(gap.owned.clone());
    let worst_owned = gap.owned.iter().copied().fold(0.0, f64::max);
    format!(
        "longest stall of a 1 ms ticker on a current-thread runtime during a save of {} ({}): \
         no save {} (max), save_async of a clone {} (median; max {}), save_shared_async {} (median; max {}) \
         -- target: owned max <= {}: {}",
        gap.workload,
        format_bytes(gap.file_bytes),
        format_time(gap.idle.iter().copied().fold(0.0, f64::max)),
        format_time(borrowed.median),
        format_time(gap.borrowed.iter().copied().fold(0.0, f64::max)),
        format_time(owned.median),
        format_time(worst_owned),
        format_time(gap.owned_at_most),
        if worst_owned <= gap.owned_at_most {
            "holds"
        } else {
            "MISSED"
        },
    )
}

/// The real-world shapes of `persist_bench::shapes`.
#[derive(Clone, Copy)]
enum Shape {
    Geometry,
    Catalogue,
    Social,
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    rows: Vec<RowResult>,
    memory: Vec<MemoryResult>,
    gaps: Vec<GapResult>,
    live: Option<live::LiveResult>,
    collection: Option<collection::CollectionResult>,
    redb: Option<redb::RedbResult>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, which, path] = args.as_slice()
        && flag == "--rss-child"
    {
        rss_child(which, Path::new(path));
        return;
    }
    if let [flag, path, seconds] = args.as_slice()
        && flag == "--live-child"
    {
        live::live_child(Path::new(path), seconds.parse().unwrap());
        return;
    }
    if let [flag, spec, count] = args.as_slice()
        && flag == "--live-entry-child"
    {
        watch::live_entry_child(spec, count.parse().unwrap());
        return;
    }
    if let [flag, kind, spec, count] = args.as_slice()
        && flag == "--watch-child"
    {
        watch::watch_child(kind, spec, count.parse().unwrap());
        return;
    }
    if let [flag, path, count] = args.as_slice()
        && flag == "--follow-child"
    {
        journal::follow_child(Path::new(path), count.parse().unwrap());
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let mode = if !args.iter().any(|a| a == "--bench") {
        Mode::Smoke
    } else if args.iter().any(|a| a == "--quick") {
        Mode::Quick
    } else {
        Mode::Full
    };
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));

    let root = std::env::var_os("PERSIST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("persist-bench"));
    let data = root.join("data");
    let _ = fs::remove_dir_all(&data);
    fs::create_dir_all(&data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (small, medium, large) = match mode {
        Mode::Full => (
            Workload {
                name: "small",
                rounds: 41,
                batch: 10,
            },
            Workload {
                name: "medium",
                rounds: 21,
                batch: 2,
            },
            Some(Workload {
                name: "large",
                rounds: 5,
                batch: 1,
            }),
        ),
        Mode::Quick => (
            Workload {
                name: "small",
                rounds: 11,
                batch: 5,
            },
            Workload {
                name: "medium",
                rounds: 7,
                batch: 1,
            },
            None,
        ),
        Mode::Smoke => (
            Workload {
                name: "small",
                rounds: 1,
                batch: 1,
            },
            Workload {
                name: "medium",
                rounds: 1,
                batch: 1,
            },
            None,
        ),
    };

    let mut rows = Vec::new();
    // `--loads`: only the load rows (for the `simd` feature's figures).
    let loads_only = args.iter().any(|a| a == "--loads");
    let bench = |workload, with_peers| Bench {
        dir: &data,
        workload,
        with_peers,
        rt: &rt,
    };
    if selected("small") {
        let settings = Settings::sample();
        let b = bench(small, false);
        if !loads_only {
            rows.push(b.save_row(&settings));
        }
        rows.push(b.load_row(&settings));
        if !loads_only {
            rows.push(b.concurrency_row(&settings, 8));
            rows.extend(b.layer_rows(&settings));
        }
    }
    let mut memory_results = Vec::new();
    if selected("medium") {
        let records = Records::medium();
        let b = bench(medium, true);
        if !loads_only {
            rows.push(b.save_row(&records));
        }
        rows.push(b.load_row(&records));
        if !loads_only {
            rows.push(b.concurrency_row(&records, 8));
            rows.extend(b.layer_rows(&records));
        }
        if mode != Mode::Smoke && !loads_only {
            memory_results.push(memory(&data, "medium", &records, false));
        }
    }
    for (name, shape) in [
        ("geometry", Shape::Geometry),
        ("catalogue", Shape::Catalogue),
        ("social", Shape::Social),
    ] {
        if !selected(name) && !selected("shapes") {
            continue;
        }
        let b = bench(Workload { name, ..medium }, false);
        let [save, load] = match shape {
            Shape::Geometry => b.shape_rows(&Geometry::sample()),
            Shape::Catalogue => b.shape_rows(&Catalogue::sample()),
            Shape::Social => b.shape_rows(&Social::sample()),
        };
        if !loads_only {
            rows.push(save);
        }
        rows.push(load);
    }
    if !filters.is_empty() && filters.iter().all(|filter| *filter == "memory") {
        // `cargo bench -- memory`: only the peak-memory lines.
        memory_results.push(memory(&data, "medium", &Records::medium(), false));
        if large.is_some() {
            memory_results.push(memory(&data, "large", &Records::large(), true));
        }
    }
    let mut gaps = Vec::new();
    if let Some(large) = large
        && selected("large")
    {
        let records = Records::large();
        let b = bench(large, true);
        if loads_only {
            rows.push(b.load_row(&records));
        } else {
            rows.push(b.save_row(&records));
            rows.push(b.load_row(&records));
            rows.extend(b.layer_rows(&records));
            memory_results.push(memory(&data, "large", &records, true));
            gaps.push(tick_gaps(&data, large, &records));
        }
    } else if let Some(large) = large
        && selected("gap")
        && !loads_only
    {
        gaps.push(tick_gaps(&data, large, &Records::large()));
    } else if (selected("medium") || selected("gap")) && !loads_only {
        // Without the large workload (--quick, the smoke test), the stall row runs on medium.
        gaps.push(tick_gaps(&data, medium, &Records::medium()));
    }

    let mut live_result = None;
    if selected("live") && !loads_only {
        let (live_rows, result) = live::rows(&data, mode, small);
        rows.extend(live_rows);
        live_result = Some(result);
    }

    let mut collection_result = None;
    if selected("collection") && !loads_only {
        let (collection_rows, result) = collection::rows(&data, mode, small);
        rows.extend(collection_rows);
        collection_result = Some(result);
    }

    if selected("postgres") && !loads_only {
        rows.extend(postgres::rows(&rt, small));
    }
    let mut redb_result = None;
    if selected("redb") && !loads_only {
        let (redb_rows, result) = redb::rows(&data, mode, small);
        rows.extend(redb_rows);
        redb_result = Some(result);
    }
    if selected("s3") && !loads_only {
        rows.extend(s3::rows(&rt, small));
    }
    if selected("transaction") && !loads_only {
        rows.extend(transaction::rows(&data, mode, small));
    }
    if selected("toml") && !loads_only {
        rows.extend(toml_files::rows(&data, small));
    }
    if selected("watch") && !loads_only {
        watch::rows(&data, mode);
        watch::live_entry_row(mode);
    }
    if selected("journal") && !loads_only {
        let dir = data.join("journal");
        fs::create_dir_all(&dir).unwrap();
        rows.extend(journal::rows(&dir, &rt, mode, small));
    }

    let mut table = String::from(TABLE_HEAD);
    for row in &rows {
        table.push_str(&table_lines(row));
    }
    println!("\n{table}");
    for gap in &gaps {
        println!("{}", gap_line(gap));
    }
    for m in &memory_results {
        println!("{}", memory_lines(m));
    }
    if let Some(live) = &live_result {
        print!("{}", live::lines(live));
    }
    if let Some(result) = &collection_result {
        print!("{}", collection::lines(result));
    }
    if let Some(result) = &redb_result {
        print!("{}", redb::lines(result));
    }
    let report = Report {
        mode: match mode {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        },
        rows,
        memory: memory_results,
        gaps,
        live: live_result,
        collection: collection_result,
        redb: redb_result,
    };
    // A smoke run's single round says nothing; it does not replace the last real results.
    if mode != Mode::Smoke {
        let results = root.join("results.json");
        fs::write(&results, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
        println!("results: {}", results.display());
    }
    if std::env::var_os("PERSIST_BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&data);
    }
}
