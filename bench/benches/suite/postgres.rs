//! The rows of `Collection<T>` on PostgreSQL (issue 13): `get`, `put` and `update` of one
//! entry, and 8 concurrent tasks reading, each against hand-written tokio-postgres code doing
//! the same work (prepared statements, serde_json, the same compare-and-swap), on the real
//! server `.ci/postgres` starts.

use std::path::Path;
use std::sync::Arc;

use persist::backend::Postgres;
use persist::{Collection, Options};
use persist_bench::Settings;
use tokio_postgres::{Client, NoTls, Statement};

use super::{Contender, RowResult, Target, Workload, measure};

/// The server: `PERSIST_TEST_POSTGRES`, or one started with `.ci/postgres`.
pub(super) fn server() -> Option<String> {
    if let Ok(config) = std::env::var("PERSIST_TEST_POSTGRES") {
        return Some(config);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/postgres");
    let output = std::process::Command::new("bash")
        .arg(script)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "SKIPPED: the PostgreSQL rows: .ci/postgres could not start a server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The hand-written side: its own table, clients and statements.
struct Hand {
    clients: Vec<Client>,
    get: Vec<Statement>,
    upsert: Vec<Statement>,
    update_if: Vec<Statement>,
}

async fn hand(config: &str, table: &str, connections: usize) -> Hand {
    let mut hand = Hand {
        clients: Vec::new(),
        get: Vec::new(),
        upsert: Vec::new(),
        update_if: Vec::new(),
    };
    for n in 0..connections {
        let (client, connection) = tokio_postgres::connect(config, NoTls).await.unwrap();
        tokio::spawn(connection);
        if n == 0 {
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (name TEXT PRIMARY KEY, \
                     data BYTEA NOT NULL, version BIGINT NOT NULL)"
                ))
                .await
                .unwrap();
        }
        hand.get.push(
            client
                .prepare(&format!(
                    "SELECT data, version FROM {table} WHERE name = $1"
                ))
                .await
                .unwrap(),
        );
        hand.upsert.push(
            client
                .prepare(&format!(
                    "INSERT INTO {table} AS t (name, data, version) VALUES ($1, $2, 1) \
                     ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, \
                     version = t.version + 1"
                ))
                .await
                .unwrap(),
        );
        hand.update_if.push(
            client
                .prepare(&format!(
                    "UPDATE {table} SET data = $2, version = version + 1 \
                     WHERE name = $1 AND version = $3"
                ))
                .await
                .unwrap(),
        );
        hand.clients.push(client);
    }
    hand
}

pub(super) fn rows(rt: &tokio::runtime::Runtime, small: Workload) -> Vec<RowResult> {
    let Some(config) = server() else {
        return Vec::new();
    };
    let settings = Settings::sample();
    let file_bytes = serde_json::to_vec(&settings).unwrap().len() as u64;
    let table = format!("persist_bench_{}", std::process::id());
    let backend = Postgres::connect(&config, &table).unwrap();
    let collection: Collection<Settings> =
        Collection::with_backend(Arc::new(backend), Options::new());
    collection.put("alice", &settings).unwrap();
    let hand = Arc::new(rt.block_on(hand(&config, &format!("{table}_hand"), 4)));
    let bytes = serde_json::to_vec(&settings).unwrap();
    rt.block_on(hand.clients[0].execute(&hand.upsert[0], &[&"alice", &bytes]))
        .unwrap();

    let mut rows = Vec::new();
    let hand_get = |hand: &Hand| {
        rt.block_on(async {
            let row = hand.clients[0]
                .query_one(&hand.get[0], &[&"alice"])
                .await
                .unwrap();
            let data: &[u8] = row.get(0);
            std::hint::black_box(serde_json::from_slice::<Settings>(data).unwrap());
        });
    };
    rows.push(measure(
        "postgres get",
        small,
        file_bytes,
        vec![
            Contender::new("hand-written tokio-postgres", || hand_get(&hand)),
            Contender::new("persist Collection::get", || {
                std::hint::black_box(collection.get("alice").unwrap());
            }),
        ],
        vec![Target::new(
            "persist Collection::get",
            "hand-written tokio-postgres",
            1.10,
        )],
    ));
    rows.push(measure(
        "postgres put",
        small,
        file_bytes,
        vec![
            Contender::new("hand-written tokio-postgres", || {
                rt.block_on(async {
                    let bytes = serde_json::to_vec(&settings).unwrap();
                    hand.clients[0]
                        .execute(&hand.upsert[0], &[&"alice", &bytes])
                        .await
                        .unwrap();
                });
            }),
            Contender::new("persist Collection::put", || {
                collection.put("alice", &settings).unwrap();
            }),
        ],
        vec![Target::new(
            "persist Collection::put",
            "hand-written tokio-postgres",
            1.10,
        )],
    ));
    rows.push(measure(
        "postgres update (compare-and-swap)",
        small,
        file_bytes,
        vec![
            Contender::new("hand-written tokio-postgres", || {
                rt.block_on(async {
                    let row = hand.clients[0]
                        .query_one(&hand.get[0], &[&"alice"])
                        .await
                        .unwrap();
                    let mut value: Settings = serde_json::from_slice(row.get(0)).unwrap();
                    let version: i64 = row.get(1);
                    value.autosave_secs += 1;
                    let bytes = serde_json::to_vec(&value).unwrap();
                    let written = hand.clients[0]
                        .execute(&hand.update_if[0], &[&"alice", &bytes, &version])
                        .await
                        .unwrap();
                    assert_eq!(written, 1);
                });
            }),
            Contender::new("persist Collection::update", || {
                collection
                    .update("alice", |value| value.autosave_secs += 1)
                    .unwrap();
            }),
        ],
        vec![Target::new(
            "persist Collection::update",
            "hand-written tokio-postgres",
            1.10,
        )],
    ));

    // 8 tasks reading at once, 25 reads each: throughput.
    const TASKS: usize = 8;
    const READS: usize = 25;
    rows.push(measure(
        &format!("postgres {TASKS} tasks x {READS} gets"),
        Workload { batch: 1, ..small },
        file_bytes,
        vec![
            Contender::new("hand-written tokio-postgres, 4 connections", || {
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for task in 0..TASKS {
                        let hand = Arc::clone(&hand);
                        tasks.spawn(async move {
                            let slot = task % hand.clients.len();
                            for _ in 0..READS {
                                let row = hand.clients[slot]
                                    .query_one(&hand.get[slot], &[&"alice"])
                                    .await
                                    .unwrap();
                                std::hint::black_box(
                                    serde_json::from_slice::<Settings>(row.get(0)).unwrap(),
                                );
                            }
                        });
                    }
                    tasks.join_all().await;
                });
            }),
            Contender::new("persist Collection::get_async", || {
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..TASKS {
                        let collection = collection.clone();
                        tasks.spawn(async move {
                            for _ in 0..READS {
                                std::hint::black_box(collection.get_async("alice").await.unwrap());
                            }
                        });
                    }
                    tasks.join_all().await;
                });
            }),
        ],
        vec![Target::new(
            "persist Collection::get_async",
            "hand-written tokio-postgres, 4 connections",
            1.10,
        )],
    ));
    rows
}
