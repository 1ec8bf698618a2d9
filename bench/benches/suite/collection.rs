//! The rows of `Collection<T>` on the local directory (issue 13): a batch against single puts
//! and against one save, a cold `get` against a single-file `load`, a cached `get` and `keys()`
//! at 100,000 entries.

use std::path::Path;
use std::time::{Duration, Instant};

use persist::{Collection, Durability, Options};
use persist_bench::{Settings, baseline};

use super::{Contender, Mode, RowResult, Target, Workload, format_time, measure};

/// What the rows that are not ratios measured.
#[derive(serde::Serialize)]
pub(super) struct CollectionResult {
    entries: usize,
    /// Seconds per cached `get`, median of the rounds.
    cached_get: f64,
    /// Seconds per `keys()` of every entry, median of the rounds.
    keys: f64,
}

const CACHED_GET_AT_MOST: f64 = 10e-6;

pub(super) fn rows(dir: &Path, mode: Mode, small: Workload) -> (Vec<RowResult>, CollectionResult) {
    let settings = Settings::sample();
    let file_bytes = serde_json::to_vec(&settings).unwrap().len() as u64;
    let mut rows = Vec::new();

    // 1,000 entries: one batch, one by one, and one save of a single file.
    let batch_size = if mode == Mode::Smoke { 50 } else { 1_000 };
    let batch = Workload {
        rounds: small.rounds.min(7),
        batch: 1,
        ..small
    };
    let keys: Vec<String> = (0..batch_size).map(|n| format!("user-{n}")).collect();
    let batched: Collection<Settings> = Collection::open(dir.join("batched")).unwrap();
    let single: Collection<Settings> = Collection::open(dir.join("single")).unwrap();
    let one_file = dir.join("one-save.json");
    let options = Options::new();
    let by_hand = HandBatch::new(&dir.join("by-hand"));
    let envelope = serde_json::to_vec(&baseline::Envelope {
        version: 1,
        data: &settings,
    })
    .unwrap();
    rows.push(measure(
        &format!("collection put_many of {batch_size}"),
        batch,
        file_bytes,
        vec![
            Contender::new(format!("{batch_size} x Collection::put"), || {
                for key in &keys {
                    single.put(key, &settings).unwrap();
                }
            }),
            Contender::new("Collection::put_many", || {
                batched
                    .put_many(keys.iter().map(|key| (key, &settings)))
                    .unwrap();
            }),
            Contender::new("one Options::save", || {
                options.save(&settings, &one_file).unwrap();
            }),
            Contender::new("the same batch by hand", || {
                by_hand.write(keys.iter().map(|key| (key.as_str(), envelope.as_slice())));
            }),
        ],
        vec![
            Target::new(
                "Collection::put_many",
                &format!("{batch_size} x Collection::put"),
                0.25,
            ),
            Target::new("Collection::put_many", "one Options::save", 250.0),
        ],
    ));

    // A get of one entry against a load of the same value from a file of its own.
    let reads: Collection<Settings> = Collection::open(dir.join("reads")).unwrap();
    reads.put("alice", &settings).unwrap();
    let file = dir.join("alice.json");
    options.save(&settings, &file).unwrap();
    rows.push(measure(
        "collection get (cold)",
        small,
        file_bytes,
        vec![
            Contender::new("Options::load of one file", || {
                std::hint::black_box(options.load::<Settings>(&file).unwrap());
            }),
            Contender::new("Collection::get", || {
                std::hint::black_box(reads.get("alice").unwrap());
            }),
        ],
        vec![Target::new(
            "Collection::get",
            "Options::load of one file",
            1.10,
        )],
    ));

    // 100,000 entries (1,000 in the smoke run), written without fsync: the rows read them.
    let entries = if mode == Mode::Smoke { 1_000 } else { 100_000 };
    let many_dir = dir.join("many");
    let writer: Collection<Settings> = Options::new()
        .durability(Durability::None)
        .collection(&many_dir)
        .unwrap();
    let many_keys: Vec<String> = (0..entries).map(|n| format!("key-{n:06}")).collect();
    for chunk in many_keys.chunks(5_000) {
        writer
            .put_many(chunk.iter().map(|key| (key, &settings)))
            .unwrap();
    }
    let cached: Collection<Settings> = Options::new()
        .cache(entries as u64, Duration::from_secs(3_600))
        .collection(&many_dir)
        .unwrap();
    for key in &many_keys {
        cached.get(key).unwrap();
    }
    let rounds = if mode == Mode::Smoke { 1 } else { 7 };
    let mut cached_gets = Vec::new();
    let mut listings = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        for key in many_keys.iter().skip(round).step_by(7) {
            std::hint::black_box(cached.get(key).unwrap());
        }
        let gets = many_keys.iter().skip(round).step_by(7).count();
        cached_gets.push(started.elapsed().as_secs_f64() / gets as f64);
        let started = Instant::now();
        assert_eq!(cached.keys().unwrap().map(Result::unwrap).count(), entries);
        listings.push(started.elapsed().as_secs_f64());
    }
    cached_gets.sort_by(f64::total_cmp);
    listings.sort_by(f64::total_cmp);
    (
        rows,
        CollectionResult {
            entries,
            cached_get: cached_gets[cached_gets.len() / 2],
            keys: listings[listings.len() / 2],
        },
    )
}

/// The lines of the measurements that are not ratios.
pub(super) fn lines(result: &CollectionResult) -> String {
    format!(
        "collection cached get at {} entries: {} (median), target ≤ {}: {}\n\
         collection keys() of {} entries: {} (median)\n",
        result.entries,
        format_time(result.cached_get),
        format_time(CACHED_GET_AT_MOST),
        if result.cached_get <= CACHED_GET_AT_MOST {
            "holds"
        } else {
            "MISSED"
        },
        result.entries,
        format_time(result.keys),
    )
}

/// The floor of an all-or-nothing batch on this disk, written by hand: every file staged
/// (created, written, closed) in one directory, one `syncfs` for them all, a commit record
/// written and synced, each file renamed into its shard directory, one `syncfs` again, the
/// record removed. What persist's batch does, without its checks, backups and telemetry.
struct HandBatch {
    dir: std::path::PathBuf,
}

impl HandBatch {
    fn new(dir: &Path) -> HandBatch {
        std::fs::create_dir_all(dir.join("staging")).unwrap();
        for shard in 0..256 {
            std::fs::create_dir_all(dir.join(format!("{shard:02x}"))).unwrap();
        }
        HandBatch {
            dir: dir.to_owned(),
        }
    }

    fn write<'a>(&self, entries: impl Iterator<Item = (&'a str, &'a [u8])>) {
        use std::io::Write as _;
        let staging = self.dir.join("staging");
        let mut staged = Vec::new();
        for (number, (key, bytes)) in entries.enumerate() {
            let path = staging.join(number.to_string());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            file.write_all(bytes).unwrap();
            let shard = key
                .bytes()
                .fold(0u8, |hash, byte| hash.wrapping_mul(31) ^ byte);
            staged.push((path, self.dir.join(format!("{shard:02x}")).join(key)));
        }
        let root = std::fs::File::open(&self.dir).unwrap();
        sync_fs(&root);
        let record = staging.join("commit");
        let mut file = std::fs::File::create(&record).unwrap();
        for (from, to) in &staged {
            writeln!(file, "{} {}", from.display(), to.display()).unwrap();
        }
        file.sync_all().unwrap();
        std::fs::File::open(&staging).unwrap().sync_all().unwrap();
        for (from, to) in &staged {
            std::fs::rename(from, to).unwrap();
        }
        sync_fs(&root);
        std::fs::remove_file(&record).unwrap();
    }
}

/// Every write of the file system `file` is on, made durable at once.
fn sync_fs(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the descriptor is open for the duration of the call.
        assert_eq!(unsafe { libc::syncfs(file.as_raw_fd()) }, 0);
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
}
