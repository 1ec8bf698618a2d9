//! Telemetry (features `tracing` and `metrics`): each load, save and update reports its path,
//! versions, bytes and outcome through a recording subscriber and recorder; the data never.
#![cfg(all(feature = "tracing", feature = "metrics"))]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{AppState, AppStateV1};
use persist::{Options, Persisted};

/// Every span's and event's fields, as text.
#[derive(Default)]
struct Recorded {
    spans: Vec<BTreeMap<String, String>>,
    events: Vec<BTreeMap<String, String>>,
}

#[derive(Clone, Default)]
struct Subscriber(Arc<Mutex<Recorded>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Subscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut recorded = self.0.lock().unwrap();
        recorded.spans.push(fields);
        tracing::span::Id::from_u64(recorded.spans.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut recorded = self.0.lock().unwrap();
        let fields = &mut recorded.spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(fields));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push(fields);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every counter and histogram update, by name and labels.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<String, f64>>>);

struct Handle {
    key: String,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl metrics::CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.values
            .lock()
            .unwrap()
            .insert(self.key.clone(), value as f64);
    }
}

impl metrics::HistogramFn for Handle {
    fn record(&self, value: f64) {
        *self
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value;
    }
}

impl Recorder {
    fn handle(&self, key: &metrics::Key) -> Arc<Handle> {
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name.push_str(&format!(",{}={}", label.key(), label.value()));
        }
        Arc::new(Handle {
            key: name,
            values: Arc::clone(&self.0),
        })
    }

    fn value(&self, key: &str) -> f64 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0.0)
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.handle(key))
    }
}

/// The tests of this file one at a time: tracing caches per call site whether anyone listens,
/// and a test running without a subscriber (the retries test) beside one that installs a scoped
/// subscriber made the latter record nothing (seen once in CI).
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes [`SERIAL`], whatever an earlier test's panic left it as.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[test]
fn loads_saves_and_updates_report_what_they_did_and_never_the_data() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let subscriber = Subscriber::default();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(subscriber.clone(), || {
        // Call sites first seen while no subscriber listened cached "nobody listens".
        tracing::callsite::rebuild_interest_cache();
        metrics::with_local_recorder(&recorder, || {
            AppStateV1 {
                user: "s3cret-user".into(),
                dark_mode: true,
            }
            .save(&path)
            .unwrap();
            let state = AppState::load(&path).unwrap(); // migrates 1 -> 4
            state.save(&path).unwrap();
            AppState::update(&path, |state| state.user = "s3cret-two".into()).unwrap();
            let refused = Options::new().try_update(&path, |_: &mut AppState| {
                Err::<(), _>(persist::Error::KeyRequired { path: "x".into() })
            });
            assert!(refused.is_err());
            assert!(AppState::load(dir.path().join("absent.json")).is_err());
        })
    });
    let file_size = std::fs::metadata(&path).unwrap().len() as f64;

    let recorded = subscriber.0.lock().unwrap();
    let ops: Vec<(&str, &str)> = recorded
        .spans
        .iter()
        .map(|span| {
            (
                span["op"].as_str(),
                span.get("from_version").map_or("", String::as_str),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("save", ""),
            ("load", "1"),
            ("save", ""),
            ("update", ""),
            ("load", "4"),
            ("save", ""),
            ("update", ""),
            ("load", "4"),
            ("load", ""),
        ]
    );
    let first_load = &recorded.spans[1];
    assert_eq!(first_load["path"], path.display().to_string());
    assert_eq!(first_load["to_version"], "4");
    assert!(first_load["bytes_read"].parse::<u64>().unwrap() > 0);
    assert!(recorded.spans[2]["bytes_written"].parse::<u64>().unwrap() > 0);
    let outcomes: Vec<&str> = recorded
        .events
        .iter()
        .map(|event| event["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "ok",
            "refused",
            "not_found"
        ]
    );
    for fields in recorded.spans.iter().chain(&recorded.events) {
        for value in fields.values() {
            assert!(!value.contains("s3cret"), "data in telemetry: {fields:?}");
        }
    }

    assert_eq!(
        recorder.value("persist_operations_total,op=load,outcome=ok"),
        3.0
    );
    assert_eq!(
        recorder.value("persist_operations_total,op=save,outcome=ok"),
        3.0
    );
    assert_eq!(
        recorder.value("persist_operations_total,op=update,outcome=ok"),
        1.0
    );
    assert_eq!(
        recorder.value("persist_operations_total,op=update,outcome=refused"),
        1.0
    );
    assert_eq!(
        recorder.value("persist_operations_total,op=load,outcome=not_found"),
        1.0
    );
    assert_eq!(recorder.value("persist_migrations_total,from=1,to=4"), 1.0);
    assert!(recorder.value("persist_operation_seconds,op=save") > 0.0);
    assert!(recorder.value("persist_bytes_written_total") >= file_size);
    assert!(recorder.value("persist_bytes_read_total") > 0.0);
}

#[test]
fn retries_are_counted() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let lock_path = dir.path().join("state.json.lock");
    let recorder = Recorder::default();
    // Another holder of the update lock for 60 ms; each attempt waits 10 ms.
    let holder = std::fs::File::create(&lock_path).unwrap();
    holder.lock().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(60));
        drop(holder);
    });
    metrics::with_local_recorder(&recorder, || {
        Options::new()
            .lock_timeout(Some(std::time::Duration::from_millis(10)))
            .retry(10, std::time::Duration::from_millis(10))
            .update(&path, |state: &mut AppState| state.user = "u".into())
            .unwrap();
    });
    releaser.join().unwrap();
    assert!(recorder.value("persist_retries_total") >= 1.0);
    assert_eq!(
        recorder.value("persist_operations_total,op=update,outcome=ok"),
        1.0
    );
}

#[test]
fn journal_operations_report_what_they_did() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let subscriber = Subscriber::default();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(subscriber.clone(), || {
        // Call sites first seen while no subscriber listened cached "nobody listens".
        tracing::callsite::rebuild_interest_cache();
        metrics::with_local_recorder(&recorder, || {
            let journal = persist::Journal::<AppState, AppState>::open(&path).unwrap();
            let state = AppState::default();
            journal.append(&state).unwrap();
            journal.append_many([&state, &state]).unwrap();
            journal.checkpoint(&state).unwrap();
        })
    });
    let recorded = subscriber.0.lock().unwrap();
    let ops: Vec<&str> = recorded
        .spans
        .iter()
        .map(|span| span["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        [
            "journal_open",
            "journal_append",
            "journal_append",
            "journal_checkpoint",
            "save"
        ]
    );
    assert_eq!(recorded.spans[1]["path"], path.display().to_string());
    assert!(recorded.spans[2]["bytes_written"].parse::<u64>().unwrap() > 0);
    assert_eq!(
        recorder.value("persist_operations_total,op=journal_append,outcome=ok"),
        2.0
    );
    assert_eq!(
        recorder.value("persist_operations_total,op=journal_checkpoint,outcome=ok"),
        1.0
    );
}

#[test]
fn collection_operations_report_what_they_did() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let subscriber = Subscriber::default();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(subscriber.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        metrics::with_local_recorder(&recorder, || {
            let states: persist::Collection<AppState> =
                persist::Collection::open(dir.path()).unwrap();
            let state = AppState {
                user: "secret-user-7f3a".into(),
                ..AppState::default()
            };
            states.put("alice", &state).unwrap();
            states.get("alice").unwrap();
            states.update("alice", |_| {}).unwrap();
            states.put_many([("bob", &state)]).unwrap();
            states.delete("bob").unwrap();
            states.migrate_all().unwrap();
            states.clear().unwrap();
        })
    });
    let recorded = subscriber.0.lock().unwrap();
    let ops: Vec<&str> = recorded
        .spans
        .iter()
        .map(|span| span["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        [
            "collection_put",
            "collection_get",
            "collection_update",
            "collection_put_many",
            "collection_delete",
            "collection_migrate_all",
            "collection_clear"
        ]
    );
    assert!(
        recorded.spans[0]["path"].ends_with("alice"),
        "{:?}",
        recorded.spans[0]
    );
    assert!(recorded.spans[1]["bytes_read"].parse::<u64>().unwrap() > 0);
    assert_eq!(
        recorder.value("persist_operations_total,op=collection_get,outcome=ok"),
        1.0
    );
    // Never the data: no field of any span or event holds a value from the state.
    for fields in recorded.spans.iter().chain(&recorded.events) {
        for value in fields.values() {
            assert!(!value.contains("secret-user-7f3a"), "{value}");
        }
    }
}

#[cfg(feature = "cache")]
#[test]
fn collection_caches_and_conflicts_are_counted() {
    let _serial = serial();
    let recorder = Recorder::default();
    metrics::with_local_recorder(&recorder, || {
        let dir = tempfile::tempdir().unwrap();
        let cached: persist::Collection<AppState> = Options::new()
            .cache(10, std::time::Duration::from_secs(60))
            .collection(dir.path())
            .unwrap();
        cached.put("a", &AppState::default()).unwrap();
        cached.get("a").unwrap();
        cached.get("a").unwrap();

        let store = Arc::new(persist::backend::Memory::new());
        let memory: persist::Collection<AppState> =
            persist::Collection::with_backend(store.clone(), Options::new());
        store.inject(persist::backend::Fault::Conflict { nth: 1 });
        memory.update("a", |_| {}).unwrap();
    });
    assert_eq!(recorder.value("persist_cache_hits_total"), 1.0);
    assert_eq!(recorder.value("persist_cache_misses_total"), 1.0);
    assert_eq!(recorder.value("persist_conflicts_total"), 1.0);
}

#[test]
fn a_transaction_commit_reports_what_it_did() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let subscriber = Subscriber::default();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(subscriber.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        metrics::with_local_recorder(&recorder, || {
            let mut txn = persist::Transaction::open(dir.path()).unwrap();
            txn.save(&AppState::default(), "a.json").unwrap();
            txn.commit().unwrap();
        })
    });
    let recorded = subscriber.0.lock().unwrap();
    let ops: Vec<&str> = recorded
        .spans
        .iter()
        .map(|span| span["op"].as_str())
        .collect();
    assert_eq!(ops, ["transaction_commit"]);
    assert_eq!(recorded.spans[0]["path"], dir.path().display().to_string());
    assert_eq!(
        recorder.value("persist_operations_total,op=transaction_commit,outcome=ok"),
        1.0
    );
}
