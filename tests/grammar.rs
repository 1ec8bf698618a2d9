//! The API's one grammar: handles open with `open`, recovery and reading are associated
//! functions, sync calls borrow and async calls own their values, every `_async` call returns a
//! spawnable `Pending` (and every async scan a `Streamed`).

use persist::{
    AuditLog, Collection, Journal, Live, Options, Pending, Persisted, Recovery, Streamed,
    Transaction,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Note {
    text: String,
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

/// Compiles only for a `'static + Send` future: it can be spawned.
fn spawnable<F: std::future::Future + Send + 'static>(future: F) -> F {
    future
}

#[test]
fn handles_open_with_open() {
    let dir = tempfile::tempdir().unwrap();
    let live: Live<Note> = Live::open(dir.path().join("live.json")).unwrap();
    live.update(|note| note.text = "live".into()).unwrap();
    live.flush().unwrap();
    assert_eq!(
        Note::load(dir.path().join("live.json")).unwrap(),
        note("live")
    );

    let notes: Collection<Note> = Collection::open(dir.path().join("notes")).unwrap();
    notes.put("a", &note("a")).unwrap();
    let journal: Journal<Note> = Journal::open(dir.path().join("notes.log")).unwrap();
    journal.append(&note("a")).unwrap();

    let root = dir.path().join("txn");
    let mut txn = Transaction::open(&root).unwrap();
    txn.save(&note("one"), "one.json").unwrap();
    txn.commit().unwrap();
    let mut txn = Transaction::begin(&root).unwrap();
    txn.save(&note("two"), "two.json").unwrap();
    txn.commit().unwrap();
    assert!(matches!(
        Transaction::recover(&root).unwrap(),
        Recovery::Clean
    ));
    assert_eq!(Note::load(root.join("two.json")).unwrap(), note("two"));
}

#[test]
fn readers_are_associated_functions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    Options::new()
        .audit(&log)
        .save(&note("a"), dir.path().join("a.json"))
        .unwrap();
    assert_eq!(AuditLog::read(&log).unwrap().count(), 1);
}

#[tokio::test]
async fn async_calls_own_their_values_and_return_spawnable_futures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("note.json");
    let save: Pending<()> = spawnable(note("saved").save_async(path.clone()));
    tokio::spawn(save).await.unwrap().unwrap();
    assert_eq!(Note::load(&path).unwrap(), note("saved"));

    let journal: Journal<Note> = Journal::open(dir.path().join("log")).unwrap();
    let appended: Pending<u64> = spawnable(journal.append_async(note("first")));
    assert_eq!(tokio::spawn(appended).await.unwrap().unwrap(), 0);
    let many = spawnable(journal.append_many_async(vec![note("b"), note("c")]));
    assert_eq!(many.await.unwrap(), 1);

    let notes: Collection<Note> = Collection::open(dir.path().join("notes")).unwrap();
    tokio::spawn(spawnable(notes.put_async("a", note("a"))))
        .await
        .unwrap()
        .unwrap();
    assert!(notes.contains_async("a").await.unwrap());
    let mut keys: Streamed<_> = notes.keys_async();
    assert_eq!(keys.next().await.unwrap().unwrap(), "a");
    let report = notes.migrate_all_async().await.unwrap();
    assert_eq!(report.total, 1);
    notes.clear_async().await.unwrap();
    assert!(!notes.contains_async("a").await.unwrap());

    let mut txn = Transaction::open(dir.path().join("txn")).unwrap();
    txn.save(&note("t"), "t.json").unwrap();
    tokio::spawn(spawnable(txn.commit_async()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Note::load(dir.path().join("txn/t.json")).unwrap(),
        note("t")
    );
}
