//! A journal replay, with persist or with a lean hand-written reader of the same envelopes,
//! for a quick comparison and for an instruction count (the suite's rows are the reference).
//!
//! ```text
//! cargo build --release -p persist-bench --example journal_profile
//! target/release/examples/journal_profile compare 15        # interleaved rounds, median ratio
//! valgrind --tool=callgrind target/release/examples/journal_profile persist 3
//! ```

use std::hint::black_box;
use std::io::BufRead;
use std::time::Instant;

use persist_bench::baseline;
use persist_bench::journal::{Event, replay_fixture};

const RECORDS: u64 = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [who, times] = args.as_slice() else {
        panic!("usage: journal_profile persist|lean|compare <times>");
    };
    let times: usize = times.parse().expect("a number");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let lines = dir.path().join("events.jsonl");
    let (journal, _) = replay_fixture(&log, &lines, RECORDS);
    let persist = || {
        for record in journal.replay().unwrap() {
            black_box(record.unwrap());
        }
    };
    let lean = || {
        let mut file =
            std::io::BufReader::with_capacity(64 << 10, std::fs::File::open(&lines).unwrap());
        let mut line = Vec::new();
        while file.read_until(b'\n', &mut line).unwrap() > 0 {
            let value: baseline::Envelope<Event> = serde_json::from_slice(&line).unwrap();
            black_box(value);
            line.clear();
        }
    };
    match who.as_str() {
        "persist" => (0..times).for_each(|_| persist()),
        "lean" => (0..times).for_each(|_| lean()),
        "compare" => {
            let mut ratios = Vec::new();
            for round in 0..=times {
                let time = |f: &dyn Fn()| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                };
                let (a, b) = if round % 2 == 0 {
                    let a = time(&persist);
                    (a, time(&lean))
                } else {
                    let b = time(&lean);
                    (time(&persist), b)
                };
                if round > 0 {
                    ratios.push(a / b);
                }
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "persist / lean: median {:.3} (p25 {:.3}, p75 {:.3})",
                ratios[ratios.len() / 2],
                ratios[ratios.len() / 4],
                ratios[ratios.len() * 3 / 4]
            );
        }
        other => panic!("unknown mode {other}"),
    }
}
