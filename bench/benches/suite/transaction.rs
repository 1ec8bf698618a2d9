//! The rows of `Transaction` (issue 14): commits of 2, 10 and 100 small files against the same
//! files saved one by one and against a hand-written batch that is not atomic across files
//! (write and fsync every temporary file, rename them all, one directory fsync).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use persist::{Options, Transaction};
use persist_bench::Settings;

use super::{Contender, Mode, RowResult, Target, Workload, measure};

/// The batch by hand: every file written and synced, then renamed, then one directory sync.
fn batch(dir: &Path, names: &[String], bytes: &[u8]) {
    for name in names {
        let mut file = File::create(dir.join(format!("{name}.tmp"))).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
    }
    for name in names {
        std::fs::rename(dir.join(format!("{name}.tmp")), dir.join(name)).unwrap();
    }
    File::open(dir).unwrap().sync_all().unwrap();
}

pub(super) fn rows(dir: &Path, mode: Mode, small: Workload) -> Vec<RowResult> {
    let settings = Settings::sample();
    let bytes = serde_json::to_vec(&serde_json::json!({"version": 1, "data": &settings})).unwrap();
    let sizes: &[usize] = if mode == Mode::Smoke {
        &[2, 10]
    } else {
        &[2, 10, 100]
    };
    let mut rows = Vec::new();
    for &files in sizes {
        let names: Vec<String> = (0..files).map(|n| format!("file-{n}.json")).collect();
        let [one, hand, txn] = ["one", "batch", "txn"].map(|kind| {
            let path = dir.join(format!("transaction-{files}-{kind}"));
            std::fs::create_dir_all(&path).unwrap();
            path
        });
        let options = Options::new();
        let workload = Workload {
            rounds: if files >= 100 {
                small.rounds.min(11)
            } else {
                small.rounds
            },
            batch: 1,
            ..small
        };
        let at_most = if files >= 10 { 1.25 } else { 2.0 };
        rows.push(measure(
            &format!("transaction of {files} files"),
            workload,
            bytes.len() as u64,
            vec![
                Contender::new("non-atomic batch (hand-written)", || {
                    batch(&hand, &names, &bytes)
                }),
                Contender::new("one by one (Options::save)", || {
                    for name in &names {
                        options.save(&settings, one.join(name)).unwrap();
                    }
                }),
                Contender::new("persist Transaction", || {
                    let mut transaction = Transaction::open(&txn).unwrap();
                    for name in &names {
                        transaction.save(&settings, name).unwrap();
                    }
                    transaction.commit().unwrap();
                }),
            ],
            vec![Target::new(
                "persist Transaction",
                "non-atomic batch (hand-written)",
                at_most,
            )],
        ));
    }
    rows
}
