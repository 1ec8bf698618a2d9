//! Loads the small workload (1 KiB) many times, with persist or with the hand-written baseline,
//! for an instruction count: what a load costs in user space beside the same system calls.
//!
//! ```text
//! cargo build --release -p persist-bench --example load_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/persist.cg \
//!     target/release/examples/load_profile persist 10000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/baseline.cg \
//!     target/release/examples/load_profile baseline 10000
//! callgrind_annotate /tmp/persist.cg | head -40
//! ```
//!
//! Arguments: `persist` or `baseline`, and how many loads; `save` or `save-baseline` and how many
//! saves (for `strace -c`: the system calls of a save); or `compare` and a number of rounds,
//! which times rounds of 1,000 loads of each, interleaved in a random order, and prints the
//! median of the per-round ratios (persist / baseline).

use std::hint::black_box;

use persist::Persisted;
use persist_bench::{Settings, baseline};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (who, times) = match args.as_slice() {
        [who, times] => (
            who.as_str(),
            times.parse::<u32>().expect("a number of loads"),
        ),
        _ => panic!("usage: load_profile persist|baseline <loads>"),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    Settings::sample().save(&path).unwrap();
    if who == "compare" {
        compare(&path, times);
        return;
    }
    if let Some(who) = who.strip_prefix("geometry-") {
        // A large file's CPU work: saves without fsync of the geometry shape.
        let geometry = persist_bench::shapes::Geometry::sample();
        let path = dir.path().join("geometry.json");
        let options = persist::Options::new().durability(persist::Durability::None);
        let started = std::time::Instant::now();
        for _ in 0..times {
            match who {
                "persist" => options.save(&geometry, &path).unwrap(),
                _ => baseline::save_unsynced(1, &geometry, &path).unwrap(),
            }
        }
        println!("{who}: {:?} per save", started.elapsed() / times);
        return;
    }
    if who == "batch-compare" {
        // Interleaved rounds, as the suite runs them: 1,000 puts against a put_many of the
        // same 1,000 keys (replacing the entries of earlier rounds), the median ratio.
        let single: persist::Collection<Settings> =
            persist::Collection::open(dir.path().join("single")).unwrap();
        let batched: persist::Collection<Settings> =
            persist::Collection::open(dir.path().join("batched")).unwrap();
        let value = Settings::sample();
        let keys: Vec<String> = (0..1_000).map(|i| format!("key-{i}")).collect();
        let mut ratios = Vec::new();
        for round in 0..=times {
            let puts = || {
                let started = std::time::Instant::now();
                for key in &keys {
                    single.put(key, &value).unwrap();
                }
                started.elapsed().as_secs_f64()
            };
            let batch = || {
                let started = std::time::Instant::now();
                batched
                    .put_many(keys.iter().map(|key| (key.as_str(), &value)))
                    .unwrap();
                started.elapsed().as_secs_f64()
            };
            let (p, b) = if fastrand::bool() {
                let p = puts();
                (p, batch())
            } else {
                let b = batch();
                (puts(), b)
            };
            if round > 0 {
                ratios.push(b / p);
            }
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "put_many / 1000 puts: median {:.3}x [{:.3} - {:.3}] over {} rounds",
            ratios[ratios.len() / 2],
            ratios[ratios.len() / 4],
            ratios[3 * ratios.len() / 4],
            ratios.len()
        );
        return;
    }
    if who == "sizes" {
        println!(
            "Error {} B, Result<String, Error> {} B",
            std::mem::size_of::<persist::Error>(),
            std::mem::size_of::<Result<String, persist::Error>>()
        );
        return;
    }
    if who == "redb-parts" {
        // A get of one record on redb, by parts: redb by hand (read and decode), the backend's
        // read alone, the collection's get.
        #[derive(Clone, serde::Serialize, serde::Deserialize, persist::Persisted)]
        #[serde(transparent)]
        #[persist(version = 1)]
        struct Item {
            record: persist_bench::Record,
        }
        use persist::backend::Backend as _;
        use redb::{ReadableDatabase as _, TableDefinition};
        const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
        let item = Item {
            record: persist_bench::Records::generate(1).records.remove(0),
        };
        let hand = redb::Database::create(dir.path().join("hand.redb")).unwrap();
        let txn = hand.begin_write().unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert("key-000001", serde_json::to_vec(&item).unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
        let backend =
            std::sync::Arc::new(persist::backend::Redb::open(dir.path().join("c.redb")).unwrap());
        let collection: persist::Collection<Item> =
            persist::Collection::with_backend(backend.clone(), persist::Options::new());
        collection.put("key-000001", &item).unwrap();
        let time = |what: &str, f: &dyn Fn()| {
            let started = std::time::Instant::now();
            for _ in 0..times {
                f();
            }
            println!("{what}: {:?}", started.elapsed() / times);
        };
        if std::env::var_os("PROFILE_LIST").is_some() {
            // keys() of 100,000 entries against redb's own iteration, for perf record.
            let keys: Vec<String> = (0..100_000).map(|n| format!("key-{n:06}")).collect();
            let listed: persist::Collection<Item> = persist::Options::new()
                .durability(persist::Durability::None)
                .redb(dir.path().join("listed.redb"))
                .unwrap();
            for chunk in keys.chunks(5_000) {
                listed
                    .put_many(chunk.iter().map(|key| (key, &item)))
                    .unwrap();
            }
            let hand = redb::Database::create(dir.path().join("hand-list.redb")).unwrap();
            let txn = hand.begin_write().unwrap();
            {
                let mut table = txn.open_table(TABLE).unwrap();
                let bytes = serde_json::to_vec(&item).unwrap();
                for key in &keys {
                    table.insert(key.as_str(), bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
            let backend = persist::backend::Redb::open(dir.path().join("listed.redb")).unwrap();
            if std::env::var("PROFILE_LIST").unwrap() == "keys" {
                for _ in 0..times {
                    assert_eq!(listed.keys().unwrap().map(Result::unwrap).count(), 100_000);
                }
                return;
            }
            // The listing by hand: one read transaction over every name.
            let hand_list = || {
                let txn = hand.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let mut count = 0;
                for row in redb::ReadableTable::iter(&table).unwrap() {
                    let (key, _) = row.unwrap();
                    black_box(key.value().to_owned());
                    count += 1;
                }
                assert_eq!(count, 100_000);
            };
            if std::env::var("PROFILE_LIST").unwrap() == "hand" {
                for _ in 0..times {
                    hand_list();
                }
                return;
            }
            if std::env::var("PROFILE_LIST").unwrap() == "scan" {
                for _ in 0..times {
                    assert_eq!(
                        backend.scan("").unwrap().map(Result::unwrap).count(),
                        100_000
                    );
                }
                return;
            }
            for _ in 0..times {
                let started = std::time::Instant::now();
                assert_eq!(listed.keys().unwrap().map(Result::unwrap).count(), 100_000);
                let keys_took = started.elapsed();
                let started = std::time::Instant::now();
                assert_eq!(
                    backend.scan("").unwrap().map(Result::unwrap).count(),
                    100_000
                );
                let scan_took = started.elapsed();
                let started = std::time::Instant::now();
                hand_list();
                println!(
                    "keys() {keys_took:?}, scan {scan_took:?}, hand {:?}",
                    started.elapsed()
                );
            }
            return;
        }
        if let Some(which) = std::env::var_os("PROFILE_MANY_GETS") {
            // Gets of random entries among 10,000 records, as the bench's get row makes them
            // (PROFILE_MANY_GETS=hand|p).
            let records = persist_bench::Records::generate(10_000).records;
            let keys: Vec<String> = (0..records.len()).map(|n| format!("user-{n:06}")).collect();
            let items: Vec<Item> = records.into_iter().map(|record| Item { record }).collect();
            let many_hand = redb::Database::create(dir.path().join("many-hand.redb")).unwrap();
            let txn = many_hand.begin_write().unwrap();
            {
                let mut table = txn.open_table(TABLE).unwrap();
                for (key, item) in keys.iter().zip(&items) {
                    let bytes = serde_json::to_vec(item).unwrap();
                    table.insert(key.as_str(), bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
            let many: persist::Collection<Item> = persist::Options::new()
                .redb(dir.path().join("many.redb"))
                .unwrap();
            many.put_many(keys.iter().zip(&items)).unwrap();
            let mut rng = persist_bench::Rng::new(0x6E7);
            let picks: Vec<&str> = (0..4_096)
                .map(|_| keys[rng.below(keys.len() as u64) as usize].as_str())
                .collect();
            let hand_get = |key: &str| {
                let txn = many_hand.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let row = table.get(key).unwrap().unwrap();
                drop(black_box(
                    serde_json::from_slice::<Item>(row.value()).unwrap(),
                ));
            };
            if which == "both" {
                // Alternating rounds of 2,000 gets, the median ratio.
                let mut ratios = Vec::new();
                for round in 0..times as usize {
                    let mut took = [std::time::Duration::ZERO; 2];
                    for side in [round % 2, 1 - round % 2] {
                        let started = std::time::Instant::now();
                        for at in 0..2_000 {
                            let key = picks[(round * 2_000 + at) % picks.len()];
                            match side {
                                0 => hand_get(key),
                                _ => drop(black_box(many.get(key).unwrap())),
                            }
                        }
                        took[side] = started.elapsed();
                    }
                    ratios.push(took[1].as_secs_f64() / took[0].as_secs_f64());
                }
                ratios.sort_by(f64::total_cmp);
                println!(
                    "median ratio {:.3} over {} rounds",
                    ratios[ratios.len() / 2],
                    ratios.len()
                );
                return;
            }
            let started = std::time::Instant::now();
            for at in 0..times as usize * 5 {
                let key = picks[at % picks.len()];
                match which == "hand" {
                    true => hand_get(key),
                    false => drop(black_box(many.get(key).unwrap())),
                }
            }
            println!("{:?} per get", started.elapsed() / (times * 5));
            return;
        }
        if let Some(which) = std::env::var_os("PROFILE_PUT_MANY") {
            // Batches of 1,000 without a sync, for perf record (PROFILE_PUT_MANY=hand: redb by
            // hand, without a sync too).
            let keys: Vec<String> = (0..1_000).map(|n| format!("key-{n:06}")).collect();
            if which == "hand" {
                let quick = redb::Database::create(dir.path().join("quick-hand.redb")).unwrap();
                let started = std::time::Instant::now();
                for _ in 0..times {
                    let mut txn = quick.begin_write().unwrap();
                    txn.set_durability(redb::Durability::None).unwrap();
                    {
                        let mut table = txn.open_table(TABLE).unwrap();
                        let mut bytes = Vec::new();
                        for key in &keys {
                            bytes.clear();
                            serde_json::to_writer(&mut bytes, &item).unwrap();
                            table.insert(key.as_str(), bytes.as_slice()).unwrap();
                        }
                    }
                    txn.commit().unwrap();
                }
                println!("hand put_many of 1000: {:?}", started.elapsed() / times);
                return;
            }
            let quick: persist::Collection<Item> = persist::Options::new()
                .durability(persist::Durability::None)
                .redb(dir.path().join("quick.redb"))
                .unwrap();
            let started = std::time::Instant::now();
            for _ in 0..times {
                quick.put_many(keys.iter().map(|key| (key, &item))).unwrap();
            }
            println!("put_many of 1000: {:?}", started.elapsed() / times);
            return;
        }
        for _ in 0..3 {
            time("hand read+decode", &|| {
                let txn = hand.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let row = table.get("key-000001").unwrap().unwrap();
                black_box(serde_json::from_slice::<Item>(row.value()).unwrap());
            });
            time("hand read only", &|| {
                let txn = hand.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let row = table.get("key-000001").unwrap().unwrap();
                black_box(row.value().len());
            });
            let entry_bytes = backend.read("key-000001").unwrap().unwrap();
            let data_bytes = serde_json::to_vec(&item).unwrap();
            time("decode of the entry (persist's codec)", &|| {
                black_box(persist::__private::decode::<Item>(&entry_bytes).unwrap());
            });
            if let Some(which) = std::env::var_os("PROFILE_GET") {
                let started = std::time::Instant::now();
                for _ in 0..times * 5 {
                    match which == "hand" {
                        true => {
                            let txn = hand.begin_read().unwrap();
                            let table = txn.open_table(TABLE).unwrap();
                            let row = table.get("key-000001").unwrap().unwrap();
                            drop(black_box(
                                serde_json::from_slice::<Item>(row.value()).unwrap(),
                            ));
                        }
                        false => drop(black_box(collection.get("key-000001").unwrap())),
                    }
                }
                println!("{:?} per get", started.elapsed() / (times * 5));
                return;
            }
            if let Some(which) = std::env::var_os("PROFILE_DECODE") {
                for _ in 0..times * 5 {
                    match which == "hand" {
                        true => drop(black_box(
                            serde_json::from_slice::<Item>(&data_bytes).unwrap(),
                        )),
                        false => drop(black_box(
                            persist::__private::decode::<Item>(&entry_bytes).unwrap(),
                        )),
                    }
                }
                return;
            }
            time("serde_json of the data alone", &|| {
                black_box(serde_json::from_slice::<Item>(&data_bytes).unwrap());
            });
            time("backend read", &|| {
                black_box(backend.read("key-000001").unwrap());
            });
            time("collection get", &|| {
                black_box(collection.get("key-000001").unwrap());
            });
        }
        return;
    }
    if who == "redb-get" {
        // Gets of one entry of a collection on redb (for perf record).
        let backend = persist::backend::Redb::open(dir.path().join("c.redb")).unwrap();
        let collection: persist::Collection<Settings> = persist::Collection::with_backend(
            std::sync::Arc::new(backend),
            persist::Options::new(),
        );
        collection.put("alice", &Settings::sample()).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..times {
            black_box(collection.get("alice").unwrap());
        }
        println!("{who}: {:?} per get", started.elapsed() / times);
        return;
    }
    if who == "put-many-again" || who == "puts-again" {
        // The same, replacing entries the first pass wrote: the timed pass is the second.
        let collection: persist::Collection<Settings> =
            persist::Collection::open(dir.path().join("c")).unwrap();
        let value = Settings::sample();
        let keys: Vec<String> = (0..times).map(|i| format!("key-{i}")).collect();
        let pass = || match who {
            "put-many-again" => collection
                .put_many(keys.iter().map(|key| (key.as_str(), &value)))
                .unwrap(),
            _ => {
                for key in &keys {
                    collection.put(key, &value).unwrap();
                }
            }
        };
        pass();
        let started = std::time::Instant::now();
        pass();
        println!("{who}: {:?}", started.elapsed());
        return;
    }
    if who == "put-many" || who == "puts" {
        // A collection batch against the same entries put one by one (for strace -c -w).
        let collection: persist::Collection<Settings> =
            persist::Collection::open(dir.path().join("c")).unwrap();
        let value = Settings::sample();
        let keys: Vec<String> = (0..times).map(|i| format!("key-{i}")).collect();
        let started = std::time::Instant::now();
        match who {
            "put-many" => collection
                .put_many(keys.iter().map(|key| (key.as_str(), &value)))
                .unwrap(),
            _ => {
                for key in &keys {
                    collection.put(key, &value).unwrap();
                }
            }
        }
        println!("{who}: {:?}", started.elapsed());
        return;
    }
    let value = Settings::sample();
    for _ in 0..times {
        match who {
            "save" => value.save(&path).unwrap(),
            "save-baseline" => baseline::save(1, &value, &path).unwrap(),
            "persist" => drop(black_box(Settings::load(&path).unwrap())),
            "baseline" => drop(black_box(baseline::load::<Settings>(&path).unwrap())),
            other => panic!("unknown contender {other}: persist, baseline, save or save-baseline"),
        }
    }
}

fn compare(path: &std::path::Path, rounds: u32) {
    use std::time::Instant;
    let time = |persist: bool| {
        let started = Instant::now();
        for _ in 0..1_000 {
            match persist {
                true => drop(black_box(Settings::load(path).unwrap())),
                false => drop(black_box(baseline::load::<Settings>(path).unwrap())),
            }
        }
        started.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    for round in 0..=rounds {
        let persist_first = fastrand::bool();
        let (p, b) = match persist_first {
            true => {
                let p = time(true);
                (p, time(false))
            }
            false => {
                let b = time(false);
                (time(true), b)
            }
        };
        if round > 0 {
            ratios.push(p / b);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q) as usize];
    println!(
        "persist / baseline, 1 KiB load: median {:.3}x [p25 {:.3} - p75 {:.3}] over {} rounds",
        at(0.5),
        at(0.25),
        at(0.75),
        ratios.len()
    );
}
