//! Parses one workload many times with one parser, for a profiler: where the time of a load
//! goes once the file is in memory (BENCHMARKS.md, "The simd feature").
//!
//! ```text
//! cargo build --release -p persist-bench --example parse_profile
//! perf record -g target/release/examples/parse_profile sonic medium 300
//! perf report --no-children --sort symbol
//! ```
//!
//! Arguments: the parser (`json` for serde_json, `sonic` for sonic-rs), the workload (`medium`,
//! `geometry`, `catalogue`, `social`) and how many times to parse it.

use std::hint::black_box;
use std::time::Instant;

use persist_bench::Records;
use persist_bench::shapes::{Catalogue, Geometry, Social};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn run<T: Serialize + DeserializeOwned>(value: &T, parser: &str, times: u32) {
    let bytes = serde_json::to_vec(value).unwrap();
    let start = Instant::now();
    for _ in 0..times {
        match parser {
            "json" => drop(black_box(serde_json::from_slice::<T>(&bytes).unwrap())),
            "sonic" => drop(black_box(sonic_rs::from_slice::<T>(&bytes).unwrap())),
            other => panic!("unknown parser {other}: json or sonic"),
        }
    }
    let each = start.elapsed() / times;
    println!(
        "{parser}: {each:?} per parse of {} bytes ({:.0} MB/s)",
        bytes.len(),
        bytes.len() as f64 / each.as_secs_f64() / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [parser, workload, times] = args.as_slice() else {
        panic!("usage: parse_profile json|sonic medium|geometry|catalogue|social TIMES");
    };
    let times = times.parse().unwrap();
    match workload.as_str() {
        "medium" => run(&Records::medium(), parser, times),
        "geometry" => run(&Geometry::sample(), parser, times),
        "catalogue" => run(&Catalogue::sample(), parser, times),
        "social" => run(&Social::sample(), parser, times),
        other => panic!("unknown workload {other}"),
    }
}
