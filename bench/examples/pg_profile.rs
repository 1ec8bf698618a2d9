//! Where the time of a PostgreSQL `get` goes: the backend's raw read, the collection's decode,
//! and hand-written tokio-postgres, one after another in rounds.
//!
//! `PERSIST_TEST_POSTGRES="$(bash .ci/postgres)" cargo run --release -p persist-bench --example pg_profile`

use std::sync::Arc;
use std::time::Instant;

use persist::backend::{Backend, Postgres};
use persist::{Collection, Options};
use persist_bench::Settings;

fn main() {
    let config = std::env::var("PERSIST_TEST_POSTGRES").expect("PERSIST_TEST_POSTGRES");
    let table = format!("persist_profile_{}", std::process::id());
    let backend = Arc::new(Postgres::connect(&config, &table).unwrap());
    let collection: Collection<Settings> =
        Collection::with_backend(backend.clone(), Options::new());
    let settings = Settings::sample();
    collection.put("alice", &settings).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, connection) = rt
        .block_on(tokio_postgres::connect(&config, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(connection);
    let statement = rt
        .block_on(client.prepare(&format!(
            "SELECT data, version FROM \"{table}\" WHERE name = $1"
        )))
        .unwrap();
    let bytes = backend.get("alice").unwrap().unwrap().bytes;
    const N: u32 = 2_000;
    for round in 0..5 {
        let started = Instant::now();
        for _ in 0..N {
            std::hint::black_box(backend.get("alice").unwrap());
        }
        let raw = started.elapsed() / N;
        let started = Instant::now();
        for _ in 0..N {
            std::hint::black_box(collection.get("alice").unwrap());
        }
        let full = started.elapsed() / N;
        let started = Instant::now();
        for _ in 0..N {
            rt.block_on(async {
                let row = client.query_one(&statement, &[&"alice"]).await.unwrap();
                let data: &[u8] = row.get(0);
                std::hint::black_box(data.len());
            });
        }
        let hand_raw = started.elapsed() / N;
        let started = Instant::now();
        for _ in 0..N {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
        }
        let parse = started.elapsed() / N;
        println!(
            "round {round}: backend.get {raw:?}, Collection::get {full:?}, hand query {hand_raw:?}, a serde_json parse of the entry {parse:?}"
        );
    }
}
