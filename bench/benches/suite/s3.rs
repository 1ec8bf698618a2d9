//! The rows of `Collection<T>` on S3 (issue 13): `get`, `put` and `update` of one entry, and 8
//! concurrent tasks reading, each against hand-written object_store code doing the same work
//! (serde_json, the same conditional PUT), on the real server `.ci/s3` starts (moto).

use std::path::Path;
use std::sync::Arc;

use persist::backend::S3;
use persist::backend::object_store::aws::AmazonS3Builder;
use persist::backend::object_store::path::Path as ObjectPath;
use persist::backend::object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use persist::{Collection, Options};
use persist_bench::Settings;

use super::{Contender, RowResult, Target, Workload, measure};

/// The server: `PERSIST_TEST_S3`, or one started with `.ci/s3`.
pub(super) fn server() -> Option<String> {
    if let Ok(endpoint) = std::env::var("PERSIST_TEST_S3") {
        return Some(endpoint);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/s3");
    let output = std::process::Command::new("bash")
        .arg(script)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "SKIPPED: the S3 rows: .ci/s3 could not start a server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub(super) fn store(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name("persist-test")
            .with_region("us-east-1")
            .with_access_key_id("bench")
            .with_secret_access_key("bench")
            .build()
            .unwrap(),
    )
}

pub(super) fn rows(rt: &tokio::runtime::Runtime, small: Workload) -> Vec<RowResult> {
    let Some(endpoint) = server() else {
        return Vec::new();
    };
    let settings = Settings::sample();
    let file_bytes = serde_json::to_vec(&settings).unwrap().len() as u64;
    let prefix = format!("bench-{}/", std::process::id());
    let collection: Collection<Settings> = Collection::with_backend(
        Arc::new(S3::new(store(&endpoint), &prefix).unwrap()),
        Options::new(),
    );
    collection.put("alice", &settings).unwrap();
    let hand = store(&endpoint);
    let hand_path = ObjectPath::from(format!("{prefix}hand-alice"));
    rt.block_on(hand.put(
        &hand_path,
        PutPayload::from(serde_json::to_vec(&settings).unwrap()),
    ))
    .unwrap();
    let few = Workload {
        rounds: small.rounds.min(11),
        batch: 1,
        ..small
    };

    let mut rows = Vec::new();
    rows.push(measure(
        "s3 get",
        few,
        file_bytes,
        vec![
            Contender::new("hand-written object_store", || {
                rt.block_on(async {
                    let bytes = hand.get(&hand_path).await.unwrap().bytes().await.unwrap();
                    std::hint::black_box(serde_json::from_slice::<Settings>(&bytes).unwrap());
                });
            }),
            Contender::new("persist Collection::get", || {
                std::hint::black_box(collection.get("alice").unwrap());
            }),
        ],
        vec![Target::new(
            "persist Collection::get",
            "hand-written object_store",
            1.10,
        )],
    ));
    rows.push(measure(
        "s3 put",
        few,
        file_bytes,
        vec![
            Contender::new("hand-written object_store", || {
                rt.block_on(async {
                    let bytes = serde_json::to_vec(&settings).unwrap();
                    hand.put(&hand_path, PutPayload::from(bytes)).await.unwrap();
                });
            }),
            Contender::new("persist Collection::put", || {
                collection.put("alice", &settings).unwrap();
            }),
        ],
        vec![Target::new(
            "persist Collection::put",
            "hand-written object_store",
            1.10,
        )],
    ));
    let mut counter = 0_u32;
    rows.push(measure(
        "s3 update (compare-and-swap)",
        few,
        file_bytes,
        vec![
            Contender::new("hand-written object_store", || {
                rt.block_on(async {
                    let got = hand.get(&hand_path).await.unwrap();
                    let e_tag = got.meta.e_tag.clone();
                    let mut value: Settings =
                        serde_json::from_slice(&got.bytes().await.unwrap()).unwrap();
                    value.autosave_secs += 1;
                    let options = PutOptions {
                        mode: PutMode::Update(UpdateVersion {
                            e_tag,
                            version: None,
                        }),
                        ..PutOptions::default()
                    };
                    let bytes = serde_json::to_vec(&value).unwrap();
                    hand.put_opts(&hand_path, PutPayload::from(bytes), options)
                        .await
                        .unwrap();
                });
            }),
            Contender::new("persist Collection::update", || {
                counter += 1;
                collection
                    .update("alice", |value| value.autosave_secs = counter)
                    .unwrap();
            }),
        ],
        vec![Target::new(
            "persist Collection::update",
            "hand-written object_store",
            1.10,
        )],
    ));

    const TASKS: usize = 8;
    const READS: usize = 5;
    rows.push(measure(
        &format!("s3 {TASKS} tasks x {READS} gets"),
        few,
        file_bytes,
        vec![
            Contender::new("hand-written object_store", || {
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..TASKS {
                        let (hand, path) = (Arc::clone(&hand), hand_path.clone());
                        tasks.spawn(async move {
                            for _ in 0..READS {
                                let bytes = hand.get(&path).await.unwrap().bytes().await.unwrap();
                                std::hint::black_box(
                                    serde_json::from_slice::<Settings>(&bytes).unwrap(),
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
            "hand-written object_store",
            1.10,
        )],
    ));
    rows
}
