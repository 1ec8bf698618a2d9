//! The rows of `Collection<T>` on redb (issue 28): persist on `backend::Redb` against redb
//! called by hand (a `&str -> &[u8]` table of serde_json values, the same durability), with the
//! local directory (`Collection::open`) beside them, on records of the medium workload
//! (~260 bytes of JSON each): a durable put, a get, a batch of 1,000 in one commit, an open
//! and a listing at 100,000 entries, and the bytes on disk per entry.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use persist::backend::Redb;
use persist::{Collection, Durability, Options, Persisted};
use persist_bench::{Record, Records};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Contender, Mode, RowResult, Target, Timed, Workload, measure, measure_timed};

/// A record as a collection's value.
#[derive(Clone, Serialize, Deserialize, Persisted)]
#[serde(transparent)]
#[persist(version = 1)]
struct Item {
    record: Record,
}

/// The hand-written side's table: name to serde_json bytes.
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

const HAND: &str = "redb by hand (serde_json)";
const PERSIST: &str = "persist on redb";
const LOCAL: &str = "persist, local directory";
const SCAN_ALONE: &str = "persist on redb, Backend::scan alone";

/// What the rows that are not times measured: bytes on disk per entry.
#[derive(serde::Serialize)]
pub(super) struct RedbResult {
    /// `(entries, [hand, persist on redb, local directory])`.
    bytes_per_entry: Vec<(usize, [f64; 3])>,
}

/// redb by hand: a database with the table.
struct Hand {
    db: Database,
}

impl Hand {
    fn create(path: &Path) -> Hand {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap();
        txn.commit().unwrap();
        Hand { db }
    }

    fn put(&self, key: &str, item: &Item) {
        let bytes = serde_json::to_vec(item).unwrap();
        let txn = self.db.begin_write().unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert(key, bytes.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    fn put_many<'a>(&self, items: impl Iterator<Item = (&'a String, &'a Item)>) {
        self.put_many_with(items, Durability::Full);
    }

    /// [`put_many`](Hand::put_many) committed with `durability`, as persist's backend commits
    /// with it: without a sync for [`Durability::None`].
    fn put_many_with<'a>(
        &self,
        items: impl Iterator<Item = (&'a String, &'a Item)>,
        durability: Durability,
    ) {
        let mut txn = self.db.begin_write().unwrap();
        if durability == Durability::None {
            txn.set_durability(redb::Durability::None).unwrap();
        }
        {
            let mut table = txn.open_table(TABLE).unwrap();
            let mut bytes = Vec::new();
            for (key, item) in items {
                bytes.clear();
                serde_json::to_writer(&mut bytes, item).unwrap();
                table.insert(key.as_str(), bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn get(&self, key: &str) -> Option<Item> {
        let txn = self.db.begin_read().unwrap();
        let table = txn.open_table(TABLE).unwrap();
        let row = table.get(key).unwrap()?;
        Some(serde_json::from_slice(row.value()).unwrap())
    }

    fn count(&self) -> usize {
        let txn = self.db.begin_read().unwrap();
        let table = txn.open_table(TABLE).unwrap();
        let mut count = 0;
        for row in table.iter().unwrap() {
            let (key, _) = row.unwrap();
            black_box(key.value().to_owned());
            count += 1;
        }
        count
    }
}

/// The three stores of one size, filled with `items` under `keys`.
struct Stores {
    hand: Hand,
    persist: Collection<Item>,
    local: Collection<Item>,
}

impl Stores {
    fn fill(
        dir: &Path,
        name: &str,
        keys: &[String],
        items: &[Item],
        durability: Durability,
    ) -> Stores {
        let hand = Hand::create(&dir.join(format!("{name}-hand.redb")));
        let backend = Redb::open(dir.join(format!("{name}-persist.redb")))
            .unwrap()
            .durability(durability);
        let persist = Collection::with_backend(Arc::new(backend), Options::new());
        let local = Options::new()
            .durability(durability)
            .collection(dir.join(format!("{name}-local")))
            .unwrap();
        let pairs: Vec<(&String, &Item)> = keys.iter().zip(items.iter().cycle()).collect();
        for chunk in pairs.chunks(5_000) {
            // Each store's commits as durable as the others' (the store of 100,000 entries is
            // written without a sync by all three).
            hand.put_many_with(chunk.iter().copied(), durability);
            persist.put_many(chunk.iter().copied()).unwrap();
            local.put_many(chunk.iter().copied()).unwrap();
        }
        Stores {
            hand,
            persist,
            local,
        }
    }
}

/// Bytes allocated on disk under `path` (a file, or a directory's files).
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::symlink_metadata(path).unwrap();
    if !metadata.is_dir() {
        return metadata.blocks() * 512;
    }
    fs::read_dir(path)
        .unwrap()
        .map(|entry| disk_bytes(&entry.unwrap().path()))
        .sum()
}

fn bytes_per_entry(dir: &Path, name: &str, entries: usize) -> (usize, [f64; 3]) {
    let per = |path: &str| disk_bytes(&dir.join(format!("{name}-{path}"))) as f64 / entries as f64;
    (
        entries,
        [per("hand.redb"), per("persist.redb"), per("local")],
    )
}

fn targets() -> Vec<Target> {
    vec![Target::new(PERSIST, HAND, 1.10)]
}

pub(super) fn rows(dir: &Path, mode: Mode, small: Workload) -> (Vec<RowResult>, RedbResult) {
    let dir = dir.join("redb");
    fs::create_dir_all(&dir).unwrap();
    let (entries, many) = match mode {
        Mode::Smoke => (200, 1_000),
        _ => (10_000, 100_000),
    };
    let items: Vec<Item> = Records::generate(entries)
        .records
        .into_iter()
        .map(|record| Item { record })
        .collect();
    let file_bytes = items
        .iter()
        .map(|item| serde_json::to_vec(item).unwrap().len())
        .sum::<usize>() as u64
        / entries as u64;
    let keys: Vec<String> = (0..entries).map(|n| format!("user-{n:06}")).collect();
    let stores = Stores::fill(&dir, "small", &keys, &items, Durability::Full);
    let mut result = RedbResult {
        bytes_per_entry: vec![bytes_per_entry(&dir, "small", entries)],
    };
    let mut rows = Vec::new();

    // A durable put of one entry (a record put under a key that holds another).
    let puts = Workload { batch: 5, ..small };
    let turn = std::cell::Cell::new([0_usize; 3]);
    let next = |which: usize| {
        let mut at = turn.get();
        at[which] = (at[which] + 7) % entries;
        turn.set(at);
        (&keys[at[which]], &items[(at[which] + 1) % entries])
    };
    rows.push(measure(
        "redb put (durable)",
        puts,
        file_bytes,
        vec![
            Contender::new(HAND, || {
                let (key, item) = next(0);
                stores.hand.put(key, item);
            }),
            Contender::new(PERSIST, || {
                let (key, item) = next(1);
                stores.persist.put(key, item).unwrap();
            }),
            Contender::new(LOCAL, || {
                let (key, item) = next(2);
                stores.local.put(key, item).unwrap();
            }),
        ],
        targets(),
    ));

    // A get of a random entry.
    let gets = Workload {
        batch: 2_000,
        ..small
    };
    let mut rng = persist_bench::Rng::new(0x6E7);
    let picks: Vec<usize> = (0..4_096)
        .map(|_| rng.below(entries as u64) as usize)
        .collect();
    let cursor = std::cell::Cell::new([0_usize; 3]);
    let pick = |which: usize| {
        let mut at = cursor.get();
        at[which] = (at[which] + 1) % picks.len();
        cursor.set(at);
        &keys[picks[at[which]]]
    };
    rows.push(measure(
        "redb get",
        gets,
        file_bytes,
        vec![
            Contender::new(HAND, || {
                black_box(stores.hand.get(pick(0)).unwrap());
            }),
            Contender::new(PERSIST, || {
                black_box(stores.persist.get(pick(1)).unwrap().unwrap());
            }),
            Contender::new(LOCAL, || {
                black_box(stores.local.get(pick(2)).unwrap().unwrap());
            }),
        ],
        targets(),
    ));

    // 1,000 entries in one commit (a batch of the local directory: its shell's batch).
    let batch = if mode == Mode::Smoke { 100 } else { 1_000 };
    let batches = Workload {
        rounds: small.rounds.min(15),
        batch: 1,
        ..small
    };
    let start = std::cell::Cell::new([0_usize; 3]);
    let chunk = |which: usize| {
        let mut at = start.get();
        at[which] = (at[which] + batch) % entries;
        start.set(at);
        let from = at[which];
        keys[from..(from + batch).min(entries)]
            .iter()
            .zip(items.iter().cycle().skip(from + 3))
    };
    rows.push(measure(
        &format!("redb put_many of {batch} (durable)"),
        batches,
        file_bytes * batch as u64,
        vec![
            Contender::new(HAND, || stores.hand.put_many(chunk(0))),
            Contender::new(PERSIST, || stores.persist.put_many(chunk(1)).unwrap()),
            Contender::new(LOCAL, || stores.local.put_many(chunk(2)).unwrap()),
        ],
        targets(),
    ));
    drop(stores);

    // 100,000 entries (1,000 in the smoke run), written without a sync: an open followed by
    // one get, and a listing of every name.
    let many_keys: Vec<String> = (0..many).map(|n| format!("user-{n:06}")).collect();
    drop(Stores::fill(
        &dir,
        "many",
        &many_keys,
        &items,
        Durability::None,
    ));
    result
        .bytes_per_entry
        .push(bytes_per_entry(&dir, "many", many));
    let opens = Workload {
        rounds: small.rounds.min(21),
        batch: 1,
        ..small
    };
    let key = &many_keys[many / 2];
    let (hand_path, persist_path, local_path) = (
        dir.join("many-hand.redb"),
        dir.join("many-persist.redb"),
        dir.join("many-local"),
    );
    rows.push(measure_timed(
        &format!("redb open at {many} entries, then a get"),
        opens,
        file_bytes,
        vec![
            Timed::new(HAND, || {
                let started = Instant::now();
                let hand = Hand {
                    db: Database::create(&hand_path).unwrap(),
                };
                black_box(hand.get(key).unwrap());
                let elapsed = started.elapsed();
                // Closing commits (redb writes its allocator state): not timed.
                drop(hand);
                elapsed
            }),
            Timed::new(PERSIST, || {
                let started = Instant::now();
                let backend = Arc::new(Redb::open(&persist_path).unwrap());
                let collection = Collection::<Item>::with_backend(backend, Options::new());
                black_box(collection.get(key).unwrap().unwrap());
                let elapsed = started.elapsed();
                drop(collection);
                elapsed
            }),
            Timed::new(LOCAL, || {
                let started = Instant::now();
                let collection = Collection::<Item>::open(&local_path).unwrap();
                black_box(collection.get(key).unwrap().unwrap());
                started.elapsed()
            }),
        ],
        targets(),
    ));

    let hand = Hand {
        db: Database::create(&hand_path).unwrap(),
    };
    let persist: Collection<Item> =
        Collection::with_backend(Arc::new(Redb::open(&persist_path).unwrap()), Options::new());
    let local: Collection<Item> = Collection::open(&local_path).unwrap();
    let lists = Workload {
        rounds: small.rounds.min(15),
        batch: 1,
        ..small
    };
    rows.push(measure(
        &format!("redb list {many} names"),
        lists,
        file_bytes,
        vec![
            Contender::new(HAND, || assert_eq!(hand.count(), many)),
            Contender::new(PERSIST, || {
                assert_eq!(persist.keys().unwrap().map(Result::unwrap).count(), many);
            }),
            Contender::new(LOCAL, || {
                assert_eq!(local.keys().unwrap().map(Result::unwrap).count(), many);
            }),
            // Where the difference lies: the backend's names, without the collection's
            // decoding of each into its key.
            Contender::new(SCAN_ALONE, || {
                let names = persist.backend().scan("").unwrap();
                assert_eq!(names.map(Result::unwrap).count(), many);
            }),
        ],
        targets(),
    ));
    (rows, result)
}

/// The lines of the measurements that are not times.
pub(super) fn lines(result: &RedbResult) -> String {
    let mut out = String::new();
    for (entries, [hand, persist, local]) in &result.bytes_per_entry {
        out.push_str(&format!(
            "redb bytes on disk per entry at {entries} entries: {HAND} {hand:.0} B, {PERSIST} \
             {persist:.0} B ({:.3}x, target ≤ 1.10: {}), {LOCAL} {local:.0} B\n",
            persist / hand,
            if persist / hand <= 1.10 {
                "holds"
            } else {
                "MISSED"
            },
        ));
    }
    out
}
