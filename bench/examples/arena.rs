//! Why persist's `_async` methods run on persist's own worker threads rather than tokio's
//! `spawn_blocking`: with glibc's malloc, a value built on a tokio blocking thread and freed
//! makes the next one fault its pages in again (BENCHMARKS.md, "Async loads and glibc's
//! arenas").
//!
//! ```text
//! cargo run --release -p persist-bench --example arena -- sync            # Records::load
//! cargo run --release -p persist-bench --example arena -- async           # Records::load_async
//! cargo run --release -p persist-bench --example arena -- spawn_blocking  # load in tokio's pool
//! cargo run --release -p persist-bench --example arena -- thread          # load on one plain thread
//! MALLOC_ARENA_MAX=1 cargo run --release -p persist-bench --example arena -- spawn_blocking
//! ```
//!
//! Each prints the time per load of the medium workload (1.3 MiB) and the minor page faults
//! per load (from /proc/self/stat), over 20 loads after one warm-up load; `-- async 5 large`
//! makes that 5 loads of the large workload (106 MiB), `-- async 40 catalogue` 40 loads of the
//! map-heavy catalogue (sync and async only).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use persist::Persisted;
use persist_bench::Records;

fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Field 10 (minflt), counted after the command name, which ends with ')'.
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "async".into());
    let loads: u32 = std::env::args()
        .nth(2)
        .map_or(20, |n| n.parse().expect("a number of loads"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("records.json");
    match std::env::args().nth(3).as_deref() {
        Some("large") => Records::large().save(&path),
        Some("catalogue") => persist_bench::shapes::Catalogue::sample().save(&path),
        _ => Records::medium().save(&path),
    }
    .expect("saved");
    let catalogue = std::env::args().nth(3).as_deref() == Some("catalogue");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");

    // One long-lived plain thread that loads on request.
    let (request, requests) = mpsc::channel::<PathBuf>();
    let (reply, replies) = mpsc::channel();
    std::thread::spawn(move || {
        for path in requests {
            let _ = reply.send(Records::load(&path).expect("loaded"));
        }
    });

    let load = || {
        if catalogue {
            use persist_bench::shapes::Catalogue;
            let value = match which.as_str() {
                "sync" => Catalogue::load(&path).expect("loaded"),
                _ => rt.block_on(Catalogue::load_async(&path)).expect("loaded"),
            };
            drop(black_box(value));
            return;
        }
        let records = match which.as_str() {
            "sync" => Records::load(&path).expect("loaded"),
            "async" => rt.block_on(Records::load_async(&path)).expect("loaded"),
            "spawn_blocking" => {
                let path = path.clone();
                rt.block_on(rt.spawn_blocking(move || Records::load(&path)))
                    .expect("joined")
                    .expect("loaded")
            }
            "thread" => {
                request.send(path.clone()).expect("the thread runs");
                replies.recv().expect("a value")
            }
            other => panic!("`{other}`: say sync, async, spawn_blocking or thread"),
        };
        drop(black_box(records));
    };
    load();
    let faults = minor_faults();
    let started = Instant::now();
    for _ in 0..loads {
        load();
    }
    println!(
        "{which}: {:?} per load, {} minor faults per load",
        started.elapsed() / loads,
        (minor_faults() - faults) / u64::from(loads)
    );
}
