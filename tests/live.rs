//! `Live<T>`: a value kept in memory, saved on change, reloaded on external edits. Real files,
//! real processes and the save patterns of real editors (atomic rename, vim, `sed -i`, `echo >`,
//! JetBrains / VS Code safe write).

mod common;
mod editors;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use persist::{ChangeOrigin, Error, Live, LiveEvent, Options, Persisted, SavePolicy};
use serde::{Deserialize, Serialize};

use editors::Pattern;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct SettingsV1 {
    size: u32,
}

/// `left == right` in every value an update publishes: a reader that sees them differ saw a
/// half-applied change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = SettingsV1)]
#[serde(default)]
struct Settings {
    font_size: u32,
    theme: String,
    left: u64,
    right: u64,
    by_worker: BTreeMap<String, u64>,
    ratio: f64,
}

impl From<SettingsV1> for Settings {
    fn from(old: SettingsV1) -> Self {
        Settings {
            font_size: old.size,
            theme: "migrated".into(),
            ..Settings::default()
        }
    }
}

/// A version-2 document as an editor would write it.
fn document(font_size: u32) -> String {
    format!(r#"{{"version":2,"data":{{"font_size":{font_size},"theme":"edited"}}}}"#)
}

const CHILD: &str = "PERSIST_TEST_LIVE_CHILD";
const CHILD_FILE: &str = "PERSIST_TEST_LIVE_FILE";

/// How long a test waits for something that must happen at all (not a performance bound).
const EVENTUALLY: Duration = Duration::from_secs(10);

/// The issue's bound on seeing an external edit. The machine is shared, so each pattern gets
/// three tries to show it once; every try must see the edit at all.
const SEEN_WITHIN: Duration = Duration::from_millis(500);

/// Polls `live.get()` until `done` holds; returns how long it took, `None` after
/// [`EVENTUALLY`].
fn wait_until(live: &Live<Settings>, done: impl Fn(&Settings) -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < EVENTUALLY {
        if done(&live.get()) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Collects the events a handle delivers.
fn record(live: &Live<Settings>) -> (Arc<Mutex<Vec<LiveEvent<Settings>>>>, persist::Subscription) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let guard = live.on_change(move |event| sink.lock().unwrap().push(event.clone()));
    (seen, guard)
}

fn wait_for_event(
    events: &Mutex<Vec<LiveEvent<Settings>>>,
    found: impl Fn(&LiveEvent<Settings>) -> bool,
) -> LiveEvent<Settings> {
    let started = Instant::now();
    while started.elapsed() < EVENTUALLY {
        if let Some(event) = events.lock().unwrap().iter().find(|event| found(event)) {
            return event.clone();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!(
        "no such event within {EVENTUALLY:?}; got {:?}",
        events.lock().unwrap()
    );
}

fn coalesce(debounce_ms: u64, max_wait_ms: u64) -> Options {
    Options::new().save_policy(SavePolicy::Coalesce {
        debounce: Duration::from_millis(debounce_ms),
        max_wait: Duration::from_millis(max_wait_ms),
    })
}

fn spawn_child(mode: &str, path: &Path, extra: &[(&str, String)]) -> std::process::Child {
    let mut command = common::child(
        "child",
        &[(CHILD, mode.as_ref()), (CHILD_FILE, path.as_os_str())],
    );
    command.stdout(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// The body of the child processes; does nothing when run directly by `cargo test`.
#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    let (Ok(mode), Ok(path)) = (std::env::var(CHILD), std::env::var(CHILD_FILE)) else {
        return;
    };
    match mode.as_str() {
        // persist's own atomic save from another process.
        "save" => {
            let font_size = std::env::var("FONT_SIZE").unwrap().parse().unwrap();
            let settings = Settings {
                font_size,
                theme: "other process".into(),
                ..Settings::default()
            };
            settings.save(&path).unwrap();
        }
        // 500 updates through a Live handle with the default policy.
        "updates" => {
            let id = std::env::var("WORKER").unwrap();
            let live = Settings::live(&path).unwrap();
            for _ in 0..500 {
                let id = id.clone();
                live.update(move |settings| {
                    settings.left += 1;
                    settings.right += 1;
                    *settings.by_worker.entry(id.clone()).or_default() += 1;
                })
                .unwrap();
            }
        }
        // Coalesced updates, a flush, then wait to be killed with nothing saved after it.
        "flush-then-wait" => {
            let live = coalesce(3_600_000, 3_600_000)
                .live::<Settings>(&path)
                .unwrap();
            for n in 1..=1_000 {
                live.update(move |settings| {
                    settings.left = n;
                    settings.right = n;
                })
                .unwrap();
            }
            live.flush().unwrap();
            // Changes after the flush are pending only: the kill loses them, by design.
            live.update(|settings| settings.theme = "unflushed".into())
                .unwrap();
            println!("flushed");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        // 200 coalesced increments (debounce 20 ms, max_wait 100 ms), spread over ~200 ms so
        // that the saves of the processes interleave; the drop saves the rest.
        "coalesced-increments" => {
            let live = coalesce(20, 100).live::<Settings>(&path).unwrap();
            for _ in 0..200 {
                live.update(|settings| {
                    settings.left += 1;
                    settings.right += 1;
                })
                .unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn get_and_update_with_the_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    assert_eq!(*live.get(), Settings::default());
    assert!(!path.exists(), "opening writes nothing");

    let before = live.get();
    let after = live.update(|settings| settings.font_size = 14).unwrap();
    assert_eq!(after.font_size, 14);
    assert_eq!(before.font_size, 0, "a snapshot does not change");
    assert_eq!(live.get().font_size, 14);
    // Immediate: durable when update returns.
    assert_eq!(Settings::load(&path).unwrap().font_size, 14);
    live.flush().unwrap();
    assert_eq!(live.stats().saves, 1);
    assert_eq!(live.path(), path);
}

#[test]
fn opening_migrates_and_refuses_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    SettingsV1 { size: 11 }.save(&path).unwrap();
    let live = Settings::live(&path).unwrap();
    assert_eq!(
        (live.get().font_size, live.get().theme.as_str()),
        (11, "migrated")
    );
    drop(live);

    std::fs::write(&path, "{not json").unwrap();
    let error = Settings::live(&path).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
}

/// The ways of saving a file the tests go through: persist's own save from another process,
/// then the editors' patterns.
#[derive(Debug, Clone, Copy)]
enum Writer {
    OtherProcess,
    Editor(Pattern),
}

fn writers() -> impl Iterator<Item = Writer> {
    let editors = Pattern::ALL.into_iter().filter(|pattern| {
        pattern.program().is_none_or(|program| {
            common::needs(
                &format!("{program} ({})", pattern.name()),
                pattern.available(),
            )
        })
    });
    std::iter::once(Writer::OtherProcess).chain(editors.map(Writer::Editor))
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::OtherProcess => f.write_str("persist's save from another process"),
            Writer::Editor(pattern) => f.write_str(pattern.name()),
        }
    }
}

/// Writes version 2 with `font_size` the way `writer` saves a file; returns when the writer
/// closed it.
fn edit(writer: Writer, path: &Path, font_size: u32) {
    match writer {
        Writer::OtherProcess => {
            let child = spawn_child("save", path, &[("FONT_SIZE", font_size.to_string())]);
            assert!(child.wait_with_output().unwrap().status.success());
        }
        Writer::Editor(pattern) => pattern.write(path, &document(font_size)),
    }
}

fn external_edits_are_seen_with(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = options.live::<Settings>(&path).unwrap();
    live.update(|settings| settings.font_size = 1).unwrap();
    // Saved before the edits: an edit while a change is pending is a conflict (tested below).
    live.flush().unwrap();
    let (events, _guard) = record(&live);
    let mut font_size = 100;
    for writer in writers() {
        let mut latencies = Vec::new();
        for _ in 0..3 {
            font_size += 1;
            edit(writer, &path, font_size);
            let latency = wait_until(&live, |settings| settings.font_size == font_size)
                .unwrap_or_else(|| {
                    panic!(
                        "{writer}: the edit was never seen (value {:?}, {:?}, file {:?})",
                        live.get(),
                        live.stats(),
                        std::fs::read_to_string(&path)
                    )
                });
            latencies.push(latency);
            if latency <= SEEN_WITHIN {
                break;
            }
        }
        assert!(
            latencies.iter().any(|latency| *latency <= SEEN_WITHIN),
            "{writer}: seen after {latencies:?}"
        );
        let event = wait_for_event(&events, |event| event.value().font_size == font_size);
        assert_eq!(event.origin(), ChangeOrigin::External, "{writer}");
        assert!(event.error().is_none());
        // The handle saves over the edited file from the edited value.
        let after = live.update(|settings| settings.left += 1).unwrap();
        assert_eq!(after.font_size, font_size, "{writer}");
        live.flush().unwrap();
        assert_eq!(Settings::load(&path).unwrap().font_size, font_size);
    }
    let errors: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| event.error().map(ToString::to_string))
        .collect();
    assert!(
        errors.is_empty(),
        "no pattern was read half-written: {errors:?}"
    );
}

#[test]
fn external_edits_are_seen_for_every_save_pattern() {
    external_edits_are_seen_with(Options::new());
}

#[test]
fn external_edits_are_seen_with_coalesced_saves() {
    external_edits_are_seen_with(coalesce(5, 20));
}

#[test]
fn polling_sees_edits_without_file_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Options::new()
        .watch(false)
        .refresh_every(Duration::from_millis(20))
        .live::<Settings>(&path)
        .unwrap();
    for (n, writer) in writers().enumerate() {
        let font_size = 200 + n as u32;
        edit(writer, &path, font_size);
        assert!(
            wait_until(&live, |settings| settings.font_size == font_size).is_some(),
            "{writer}"
        );
    }
}

#[test]
fn without_watching_or_polling_the_value_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Options::new().watch(false).live::<Settings>(&path).unwrap();
    std::fs::write(&path, document(7)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(live.get().font_size, 0);
    // An update still reloads first: the edit is not overwritten.
    let after = live.update(|settings| settings.left = 1).unwrap();
    assert_eq!((after.font_size, after.left), (7, 1));
}

fn unreadable_edits_keep_the_last_good_value_with(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = options.live::<Settings>(&path).unwrap();
    live.update(|settings| settings.font_size = 12).unwrap();
    live.flush().unwrap();
    let (events, _guard) = record(&live);

    let newer = r#"{"version":9,"data":{"font_size":99}}"#;
    for (contents, is_expected) in [
        (
            "{\"version\":2,\"data\":{\"font_",
            (|error: &Error| matches!(error, Error::Corrupt { .. })) as fn(&Error) -> bool,
        ),
        (newer, |error: &Error| {
            matches!(error, Error::FutureVersion { found: 9, .. })
        }),
        (r#"{"version":1,"data":{"size":"big"}}"#, |error: &Error| {
            matches!(error, Error::Corrupt { .. })
        }),
    ] {
        events.lock().unwrap().clear();
        std::fs::write(&path, contents).unwrap();
        let event = wait_for_event(&events, |event| event.error().is_some());
        let reported = event.error().unwrap();
        assert!(is_expected(reported), "{reported}");
        assert_eq!(event.value().font_size, 12, "the last good value stays");
        assert_eq!(live.get().font_size, 12);

        let refused = live.update(|settings| settings.font_size = 13).unwrap_err();
        assert!(is_expected(&refused), "{refused}");
        assert_eq!(
            live.get().font_size,
            12,
            "a refused update publishes nothing"
        );
        live.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            contents,
            "not overwritten"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            contents,
            "not overwritten"
        );
        let errors = events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.error().is_some())
            .count();
        assert_eq!(errors, 1, "each broken state is reported once");
    }

    // Readable again: reloaded, and updates save again.
    std::fs::write(&path, document(30)).unwrap();
    assert!(wait_until(&live, |settings| settings.font_size == 30).is_some());
    live.update(|settings| settings.left = 5).unwrap();
    live.flush().unwrap();
    assert_eq!(Settings::load(&path).unwrap().left, 5);
    assert!(live.stats().failed_reloads >= 3);
}

#[test]
fn unreadable_edits_keep_the_last_good_value() {
    unreadable_edits_keep_the_last_good_value_with(Options::new());
}

#[test]
fn unreadable_edits_keep_the_last_good_value_coalesced() {
    unreadable_edits_keep_the_last_good_value_with(coalesce(5, 20));
}

#[test]
fn two_processes_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|id| spawn_child("updates", &path, &[("WORKER", id.into())]))
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
    }
    let settings = Settings::load(&path).unwrap();
    assert_eq!((settings.left, settings.right), (1_000, 1_000));
    assert_eq!(settings.by_worker["a"], 500);
    assert_eq!(settings.by_worker["b"], 500);
}

#[test]
fn own_saves_cause_no_reload_and_readers_never_see_half_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    let (events, _guard) = record(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (live, stop, reads) = (live.clone(), Arc::clone(&stop), Arc::clone(&reads));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let settings = live.get();
                assert_eq!(settings.left, settings.right, "half-applied value");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for _ in 0..1_000 {
        live.update(|settings| {
            settings.left += 1;
            // Between the two fields, long enough for a reader to look.
            std::hint::black_box(&settings.left);
            settings.right += 1;
        })
        .unwrap();
    }
    // A barrier instead of a sleep: another writer's change, made after the last save. The
    // watcher hands events over in order, so once this one is loaded, every event the
    // handle's own saves caused has been seen, and none may have become a reload.
    let sentinel = Settings {
        left: 5_000,
        right: 5_000,
        ..Settings::default()
    };
    Options::new().save(&sentinel, &path).unwrap();
    wait_for_event(&events, |event| event.value().left == 5_000);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);
    let stats = live.stats();
    assert_eq!((stats.saves, stats.reloads), (1_000, 1), "{stats:?}");
    let events = events.lock().unwrap();
    assert_eq!(
        events.len(),
        1_001,
        "each value once, then the other writer's"
    );
    assert!(
        events[..1_000]
            .iter()
            .all(|event| event.origin() == ChangeOrigin::Local)
    );
    assert_eq!(events[1_000].origin(), ChangeOrigin::External);
    let values: Vec<u64> = events[..1_000]
        .iter()
        .map(|event| event.value().left)
        .collect();
    assert_eq!(values, (1..=1_000).collect::<Vec<_>>(), "in order");
}

#[test]
fn flush_then_sigkill_keeps_the_flushed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let mut child = spawn_child("flush-then-wait", &path, &[]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The test harness prints its own lines first.
    assert!(
        lines.any(|line| line.unwrap() == "flushed"),
        "the child flushed"
    );
    // SAFETY: kill(2) on the child's pid, which has not been waited for.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
        0
    );
    child.wait().unwrap();
    let settings = Settings::load(&path).unwrap();
    assert_eq!((settings.left, settings.right), (1_000, 1_000));
    assert_eq!(settings.theme, "", "nothing after the flush was saved");
}

#[test]
fn dropping_the_last_handle_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(3_600_000, 3_600_000)
        .live::<Settings>(&path)
        .unwrap();
    let clone = live.clone();
    clone.update(|settings| settings.font_size = 21).unwrap();
    drop(clone);
    assert!(!path.exists(), "still pending while a handle is left");
    drop(live);
    assert_eq!(Settings::load(&path).unwrap().font_size, 21);
}

#[test]
fn a_pending_change_that_cannot_be_saved_is_kept_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(3_600_000, 3_600_000)
        .watch(false)
        .live::<Settings>(&path)
        .unwrap();
    live.update(|settings| settings.font_size = 22).unwrap();
    std::fs::write(&path, "{broken").unwrap();
    let refused = live.flush().unwrap_err();
    assert!(matches!(refused, Error::Corrupt { .. }), "{refused}");
    drop(live);
    assert_eq!(std::fs::read(&path).unwrap(), b"{broken", "not overwritten");
    let unsaved: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|entry| {
            entry
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("settings.json.unsaved-")
        })
        .collect();
    assert_eq!(unsaved.len(), 1, "{:?}", common::names(dir.path()));
    assert_eq!(Settings::load(&unsaved[0]).unwrap().font_size, 22);
}

#[test]
fn an_external_change_while_changes_are_pending_gets_them_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(3_600_000, 3_600_000)
        .live::<Settings>(&path)
        .unwrap();
    live.update(|settings| settings.font_size = 1).unwrap();
    live.flush().unwrap();
    let (events, _guard) = record(&live);
    // Pending for an hour: this handle sets `font_size` and `left`; another program sets
    // `font_size` and `theme`.
    live.update(|settings| settings.font_size = 2).unwrap();
    live.update(|settings| settings.left += 9).unwrap();
    edit(Writer::Editor(Pattern::SafeWrite), &path, 50);

    let event = wait_for_event(&events, |event| event.origin() == ChangeOrigin::Rebased);
    assert!(event.error().is_none(), "{:?}", event.error());
    // Theirs, with this handle's changes made again on top, in order.
    let rebased = live.get();
    assert_eq!(
        (rebased.font_size, rebased.theme.as_str(), rebased.left),
        (2, "edited", 9)
    );
    // Published, not saved early: the save stays due when it was (an hour here).
    assert_eq!(Settings::load(&path).unwrap().left, 0);
    live.flush().unwrap();
    assert_eq!(Settings::load(&path).unwrap(), *rebased);
    let stats = live.stats();
    assert_eq!((stats.conflicts, stats.reloads), (0, 1), "{stats:?}");
    // Nothing kept aside: nothing was lost.
    assert_eq!(
        common::names(dir.path()),
        ["settings.json", "settings.json.lock"]
    );
}

#[test]
fn a_pending_change_that_fails_on_the_newer_value_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(3_600_000, 3_600_000)
        .live::<Settings>(&path)
        .unwrap();
    live.update(|settings| settings.theme = "mine".into())
        .unwrap();
    live.flush().unwrap();
    let (events, _guard) = record(&live);
    // Succeeds on this handle's value, panics once the theme is no longer "mine".
    live.update(|settings| {
        assert!(
            settings.theme == "mine",
            "the theme is {:?} now",
            settings.theme
        );
        settings.left = 7;
    })
    .unwrap();
    assert_eq!(live.get().left, 7);
    live.update(|settings| settings.right = 3).unwrap();
    edit(Writer::Editor(Pattern::SafeWrite), &path, 50);

    let event = wait_for_event(&events, |event| event.error().is_some());
    let Some(Error::Conflict { path: file, reason }) = event.error() else {
        panic!("{:?}", event.error());
    };
    assert_eq!(file, &path);
    assert_eq!(
        reason.to_string(),
        r#"the change panicked on the newer value: the theme is "edited" now"#
    );
    // The other change made it, on top of theirs; the failed one left no trace.
    let value = live.get();
    assert_eq!(
        (
            value.font_size,
            value.theme.as_str(),
            value.left,
            value.right
        ),
        (50, "edited", 0, 3)
    );
    let Err(Error::Conflict { reason, .. }) = live.flush() else {
        panic!("the flush returns the dropped change");
    };
    assert!(reason.to_string().ends_with(r#"the theme is "edited" now"#));
    assert_eq!(Settings::load(&path).unwrap(), *value);
    live.flush().unwrap();
    assert_eq!(live.stats().conflicts, 1);
}

#[test]
fn coalesce_bounds_saves_and_the_loss_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let max_wait = Duration::from_millis(250);
    let live = coalesce(50, 250).live::<Settings>(&path).unwrap();
    // How late this machine wakes a sleeping thread while the test runs: the part of a save's
    // delay that is the scheduler's, not persist's.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut late = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let asleep = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                late = late.max(asleep.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            late
        })
    };
    // 10,000 updates a second for 2 s.
    let started = Instant::now();
    let mut updates = 0_u64;
    let mut durable_lag = Duration::ZERO;
    let mut last_saved = (Instant::now(), 0_u64);
    while started.elapsed() < Duration::from_secs(2) {
        updates += 1;
        live.update(move |settings| {
            settings.left = updates;
            settings.right = updates;
        })
        .unwrap();
        let saves = live.stats().saves;
        if saves != last_saved.1 {
            last_saved = (Instant::now(), saves);
        }
        durable_lag = durable_lag.max(last_saved.0.elapsed());
        let next = started + Duration::from_micros(100) * u32::try_from(updates).unwrap();
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let woke_late = probe.join().unwrap();
    let stats = live.stats();
    let saves = stats.saves;
    // The saver writes at most once per max_wait under a steady stream (it never waits for a
    // quiet moment that does not come), and it does write: the loss window is bounded.
    let windows = elapsed.as_millis() / max_wait.as_millis() + 1;
    assert!(saves >= 2, "{saves} saves in {elapsed:?}");
    assert!(
        u128::from(saves) <= windows,
        "{saves} saves in {windows} windows"
    );
    // The saver's own deadline: on disk `max_wait` after the first change not yet saved,
    // the save started early by the length of the one before. What may come on top is the
    // machine's (a thread woken late, here and on the updating thread that measures) and a
    // save slower than the one before; the bound holds whatever the machine's load, and a
    // scheduler that waited for a quiet moment, or twice `max_wait`, would not meet it.
    let bound = max_wait + stats.longest_save + woke_late * 2 + Duration::from_millis(10);
    assert!(
        durable_lag <= bound,
        "the longest a change waited to be durable: {durable_lag:?}, beyond {bound:?} \
         (max_wait {max_wait:?}, slowest save {:?}, threads woken up to {woke_late:?} late)",
        stats.longest_save
    );
    live.flush().unwrap();
    assert_eq!(Settings::load(&path).unwrap().left, updates);
    eprintln!(
        "{updates} updates in {elapsed:?}: {saves} saves, longest wait for a save \
         {durable_lag:?} (bound {bound:?}: slowest save {:?}, threads woken up to \
         {woke_late:?} late)",
        stats.longest_save
    );
}

#[test]
fn a_panicking_update_publishes_nothing() {
    for options in [Options::new(), coalesce(5, 20)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.live::<Settings>(&path).unwrap();
        live.update(|settings| settings.left = 1).unwrap();
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            live.update(|settings| {
                settings.left = 2;
                panic!("in the middle of a change");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(live.get().left, 1);
        // The handle still works.
        assert_eq!(live.update(|settings| settings.left = 3).unwrap().left, 3);
        live.flush().unwrap();
        assert_eq!(Settings::load(&path).unwrap().left, 3);
    }
}

#[test]
fn a_value_that_fails_to_save_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    live.update(|settings| settings.ratio = 0.5).unwrap();
    let error = live
        .update(|settings| settings.ratio = f64::NAN)
        .unwrap_err();
    assert!(matches!(error, Error::Serialize { .. }), "{error}");
    assert_eq!(live.get().ratio, 0.5);
    assert_eq!(live.stats().failed_saves, 1);
}

#[test]
fn a_failing_background_save_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(5, 20).live::<Settings>(&path).unwrap();
    let (events, _guard) = record(&live);
    live.update(|settings| settings.ratio = f64::INFINITY)
        .unwrap();
    let event = wait_for_event(&events, |event| event.error().is_some());
    assert!(matches!(event.error(), Some(Error::Serialize { .. })));
    assert_eq!(event.origin(), ChangeOrigin::Local);
    // Fixed by the next change: the retry saves it.
    live.update(|settings| settings.ratio = 1.5).unwrap();
    live.flush().unwrap();
    assert_eq!(Settings::load(&path).unwrap().ratio, 1.5);
    assert!(live.stats().failed_saves >= 1);
}

#[test]
fn a_slow_callback_never_blocks_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(5, 20).live::<Settings>(&path).unwrap();
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&delivered);
    let _guard = live.on_change(move |_| {
        // The first event holds the dispatcher until the test lets go.
        let _ = blocked.lock().unwrap().recv();
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for n in 0..2_000 {
        live.update(move |settings| settings.left = n).unwrap();
    }
    assert_eq!(live.get().left, 1_999);
    drop(release);
    live.flush().unwrap();
    let started = Instant::now();
    while delivered.load(Ordering::Relaxed) < 1_024 && started.elapsed() < EVENTUALLY {
        std::thread::sleep(Duration::from_millis(5));
    }
    // At most the backlog waited (intermediate values skipped); the newest got through.
    let delivered = delivered.load(Ordering::Relaxed);
    assert!((1_024..=1_025).contains(&delivered), "{delivered}");
}

#[test]
fn a_panicking_callback_stays_registered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let _guard = live.on_change(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        panic!("callback bug");
    });
    let (events, _other) = record(&live);
    live.update(|settings| settings.left = 1).unwrap();
    live.update(|settings| settings.left = 2).unwrap();
    wait_for_event(&events, |event| event.value().left == 2);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[test]
fn dropping_the_subscription_stops_the_callback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    let (events, guard) = record(&live);
    live.update(|settings| settings.left = 1).unwrap();
    wait_for_event(&events, |event| event.value().left == 1);
    drop(guard);
    let (others, _guard) = record(&live);
    live.update(|settings| settings.left = 2).unwrap();
    wait_for_event(&others, |event| event.value().left == 2);
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_updates_and_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = coalesce(5, 20).live::<Settings>(&path).unwrap();
    let mut values = live.subscribe();
    let mut events = live.subscribe_events();
    let after = live
        .update_async(|settings| settings.theme = "dark".into())
        .await
        .unwrap();
    assert_eq!(after.theme, "dark");
    values.changed().await.unwrap();
    assert_eq!(values.borrow_and_update().theme, "dark");
    live.flush_async().await.unwrap();
    assert_eq!(Settings::load(&path).unwrap().theme, "dark");

    // Another program's edit reaches the subscribers, marked as external.
    let writer = path.clone();
    tokio::task::spawn_blocking(move || edit(Writer::Editor(Pattern::SafeWrite), &writer, 77))
        .await
        .unwrap();
    tokio::time::timeout(EVENTUALLY, async {
        loop {
            events.changed().await.unwrap();
            let event = events.borrow_and_update().clone();
            if event.value().font_size == 77 {
                assert_eq!(event.origin(), ChangeOrigin::External);
                break;
            }
        }
    })
    .await
    .expect("the edit reached the subscriber");
    assert_eq!(values.borrow_and_update().font_size, 77);

    // try_update_async: Ok returns the closure's value; Err writes and publishes nothing.
    let size = live
        .try_update_async(|settings| {
            settings.font_size += 1;
            Ok::<_, Error>(settings.font_size)
        })
        .await
        .unwrap();
    assert_eq!(size, 78);
    let before = live.get();
    let refused = live
        .try_update_async(|settings| {
            settings.font_size = 0;
            Err::<(), persist::BoxError>("refused".into())
        })
        .await;
    assert_eq!(refused.unwrap_err().to_string(), "refused");
    assert!(Arc::ptr_eq(&before, &live.get()));
    live.flush_async().await.unwrap();
    assert_eq!(Settings::load(&path).unwrap().font_size, 78);
}

#[test]
fn works_in_a_program_without_a_runtime_and_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = Settings::live(&path).unwrap();
    assert_send_sync(&live);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let live = live.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    live.update(|settings| {
                        settings.left += 1;
                        settings.right += 1;
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(live.get().left, 100);
    assert_eq!(Settings::load(&path).unwrap().left, 100);
}

#[test]
fn many_handles_share_one_watcher() {
    // More than Linux's default 128 inotify instances per user: one watcher serves them all.
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<Live<Settings>> = (0..200)
        .map(|n| {
            let folder = dir.path().join(format!("app-{}", n % 50));
            Settings::live(folder.join(format!("settings-{n}.json"))).unwrap()
        })
        .collect();
    let path = handles[123].path().to_owned();
    Pattern::AtomicRename.write(&path, &document(5));
    assert!(wait_until(&handles[123], |settings| settings.font_size == 5).is_some());
    // Another file of the same folder was not touched.
    assert_eq!(handles[173].get().font_size, 0);

    // Two handles on one file; the folder stays watched while any is left.
    let second = Settings::live(&path).unwrap();
    let third = Settings::live(handles[23].path()).unwrap();
    drop(handles);
    Pattern::SafeWrite.write(&path, &document(6));
    assert!(wait_until(&second, |settings| settings.font_size == 6).is_some());
    drop(second);
    Pattern::AtomicRename.write(third.path(), &document(7));
    assert!(wait_until(&third, |settings| settings.font_size == 7).is_some());
}

/// How another program edits the file in the middle of [`coalesced_processes`].
#[derive(Clone, Copy, PartialEq)]
enum Sed {
    /// No edit.
    None,
    /// `sed -i` as it is: it takes no lock, so a save landing between its read and its rename
    /// is lost (by sed), and only its own edit is certain to be kept.
    Plain,
    /// `sed -i` under the file's lock (`flock settings.json.lock sed -i ...`), as a cooperating
    /// program would: both its edit and every increment are kept.
    Locked,
}

/// `processes` children each make 200 coalesced increments of one file at once, while `sed`
/// changes another field.
fn coalesced_processes(processes: usize, sed: Sed) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    Settings {
        theme: "start".into(),
        ..Settings::default()
    }
    .save(&path)
    .unwrap();
    let children: Vec<_> = (0..processes)
        .map(|_| spawn_child("coalesced-increments", &path, &[]))
        .collect();
    if sed != Sed::None {
        std::thread::sleep(Duration::from_millis(150));
        let mut command = match sed {
            Sed::Locked => {
                let mut command = std::process::Command::new("flock");
                command
                    .arg(dir.path().join("settings.json.lock"))
                    .arg("sed");
                command
            }
            _ => std::process::Command::new("sed"),
        };
        let status = command
            .args(["-i", "s/\"start\"/\"by sed\"/"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let settings = Settings::load(&path).unwrap();
    let total = 200 * processes as u64;
    if sed != Sed::Plain {
        assert_eq!(
            (settings.left, settings.right),
            (total, total),
            "every increment kept"
        );
    }
    assert_eq!(settings.left, settings.right, "{settings:?}");
    if sed != Sed::None {
        assert_eq!(settings.theme, "by sed", "and the other program's edit too");
    }
    let aside: Vec<String> = common::names(dir.path())
        .into_iter()
        .filter(|name| name.contains(".conflict-") || name.contains(".unsaved-"))
        .collect();
    assert!(aside.is_empty(), "nothing set aside: {aside:?}");
}

#[test]
fn coalesced_handles_in_several_processes_lose_no_change() {
    for _ in 0..20 {
        coalesced_processes(2, Sed::None);
        coalesced_processes(3, Sed::None);
    }
}

#[test]
fn coalesced_handles_keep_an_edit_made_in_the_middle() {
    if !common::needs(
        "sed and flock",
        common::has_tool("sed") && common::has_tool("flock"),
    ) {
        return;
    }
    for _ in 0..5 {
        for processes in [2, 3] {
            coalesced_processes(processes, Sed::Locked);
            coalesced_processes(processes, Sed::Plain);
        }
    }
}

/// Points the link `link` at `target` the way a program that swaps profiles would: a new link
/// renamed over the old one.
#[cfg(unix)]
fn repoint(link: &Path, target: &Path) {
    let fresh = link.with_extension("new-link");
    std::os::unix::fs::symlink(target, &fresh).unwrap();
    std::fs::rename(&fresh, link).unwrap();
}

#[cfg(unix)]
fn symlink_repointed_with(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let home = profiles.join("home.json");
    let work = profiles.join("work.json");
    let profile = |theme: &str, font_size| Settings {
        theme: theme.into(),
        font_size,
        ..Settings::default()
    };
    profile("home", 10).save(&home).unwrap();
    profile("work", 20).save(&work).unwrap();
    let link = dir.path().join("settings.json");
    std::os::unix::fs::symlink("profiles/home.json", &link).unwrap();
    let live = options.live::<Settings>(&link).unwrap();
    assert_eq!(live.get().theme, "home");
    live.update(|settings| settings.left = 1).unwrap();
    live.flush().unwrap();
    let home_bytes = std::fs::read(&home).unwrap();

    repoint(&link, Path::new("profiles/work.json"));
    let seen = wait_until(&live, |settings| settings.theme == "work");
    assert!(seen.is_some_and(|seen| seen < SEEN_WITHIN), "{seen:?}");
    // A hand edit of the new target is seen: its directory is watched now.
    Pattern::AtomicRename.write(&work, &document(33));
    assert!(wait_until(&live, |settings| settings.font_size == 33).is_some());
    live.update(|settings| settings.right = 2).unwrap();
    live.flush().unwrap();
    let saved = Settings::load(&work).unwrap();
    assert_eq!(
        (
            saved.theme.as_str(),
            saved.font_size,
            saved.left,
            saved.right
        ),
        ("edited", 33, 0, 2),
        "the new target keeps its own data, with the update"
    );
    assert_eq!(
        std::fs::read(&home).unwrap(),
        home_bytes,
        "the old target is untouched"
    );
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_symlink(),
        "still a link"
    );
}

#[cfg(unix)]
#[test]
fn a_repointed_symlink_is_followed() {
    symlink_repointed_with(Options::new());
    symlink_repointed_with(coalesce(20, 100));
}

#[cfg(unix)]
#[test]
fn an_update_after_a_repoint_never_writes_the_old_target_into_the_new() {
    // No watching and no polling: the update itself must look the link up again.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home.json");
    let work = dir.path().join("work.json");
    std::fs::write(&home, document(10)).unwrap();
    std::fs::write(&work, document(20)).unwrap();
    let link = dir.path().join("settings.json");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let live = Options::new().watch(false).live::<Settings>(&link).unwrap();
    live.update(|settings| settings.left = 5).unwrap();
    let home_bytes = std::fs::read(&home).unwrap();
    repoint(&link, &work);
    live.update(|settings| settings.right = 6).unwrap();
    let saved = Settings::load(&work).unwrap();
    assert_eq!(
        (saved.font_size, saved.left, saved.right),
        (20, 0, 6),
        "the new target's data, with the update: {saved:?}"
    );
    assert_eq!(
        std::fs::read(&home).unwrap(),
        home_bytes,
        "the old target is untouched"
    );
}

#[cfg(unix)]
#[test]
fn pending_changes_go_to_the_file_they_were_made_against_when_the_link_moves() {
    for watch in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home.json");
        let work = dir.path().join("work.json");
        let profile = |left| Settings {
            left,
            ..Settings::default()
        };
        profile(0).save(&work).unwrap();
        profile(100).save(&home).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&work, &link).unwrap();
        let live = coalesce(3_600_000, 3_600_000)
            .watch(watch)
            .live::<Settings>(&link)
            .unwrap();
        let (events, _guard) = record(&live);
        for _ in 0..3 {
            live.update(|settings| settings.left += 1).unwrap();
        }
        repoint(&link, &home);
        if watch {
            // Seen: the pending changes are saved to work, then home is loaded.
            assert!(wait_until(&live, |settings| settings.left == 100).is_some());
            let event = wait_for_event(&events, |event| event.value().left == 100);
            assert_eq!(event.origin(), ChangeOrigin::External);
        }
        live.flush().unwrap();
        assert_eq!(Settings::load(&work).unwrap().left, 3, "watch {watch}");
        assert_eq!(Settings::load(&home).unwrap().left, 100, "watch {watch}");
        drop(live);
        assert_eq!(Settings::load(&home).unwrap().left, 100, "watch {watch}");
    }
}

fn corrupt_edit_while_pending(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let live = options.live::<Settings>(&path).unwrap();
    live.update(|settings| settings.font_size = 1).unwrap();
    live.flush().unwrap();
    let (events, _guard) = record(&live);
    live.update(|settings| settings.left = 4).unwrap();
    let loads = live.stats().loads;
    std::fs::write(&path, "{broken").unwrap();
    let started = Instant::now();
    let event = wait_for_event(&events, |event| event.error().is_some());
    assert!(started.elapsed() < SEEN_WITHIN, "{:?}", started.elapsed());
    assert!(
        matches!(event.error(), Some(Error::Corrupt { .. })),
        "{event:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let errors = events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.error().is_some())
        .count();
    assert_eq!(errors, 1, "reported once");
    let _ = &_guard;
    let stats = live.stats();
    assert!(stats.loads - loads < 20, "{stats:?}");
    assert_eq!(stats.failed_reloads, 1, "{stats:?}");
    assert!(matches!(live.flush(), Err(Error::Corrupt { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"{broken");
    assert_eq!(live.get().left, 4, "the change is still pending");
    drop(live);
    let event = wait_for_event(&events, |event| {
        matches!(event.error(), Some(Error::Unsaved { .. }))
    });
    assert!(
        matches!(event.error(), Some(Error::Unsaved { kept: Some(_), .. })),
        "{event:?}"
    );
    drop(_guard);
    let unsaved: Vec<String> = common::names(dir.path())
        .into_iter()
        .filter(|name| name.starts_with("settings.json.unsaved-"))
        .collect();
    assert_eq!(unsaved.len(), 1, "{:?}", common::names(dir.path()));
    let kept = Settings::load(dir.path().join(&unsaved[0])).unwrap();
    assert_eq!((kept.font_size, kept.left), (1, 4));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{broken",
        "never written over"
    );
}

#[test]
fn a_corrupt_edit_while_a_change_is_pending_is_reported_once_and_not_read_in_a_loop() {
    corrupt_edit_while_pending(coalesce(20, 100));
    corrupt_edit_while_pending(coalesce(20, 100).refresh_every(Duration::from_millis(100)));
}

#[test]
fn a_corrupt_edit_is_reported_once_without_pending_changes() {
    for options in [Options::new(), coalesce(20, 100)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.live::<Settings>(&path).unwrap();
        live.update(|settings| settings.font_size = 1).unwrap();
        live.flush().unwrap();
        let (events, _guard) = record(&live);
        let loads = live.stats().loads;
        std::fs::write(&path, "{broken").unwrap();
        wait_for_event(&events, |event| event.error().is_some());
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            events.lock().unwrap().len(),
            1,
            "{:?}",
            events.lock().unwrap()
        );
        assert!(live.stats().loads - loads < 5, "{:?}", live.stats());
    }
}

#[cfg(unix)]
#[test]
fn metadata_changes_and_rewrites_with_the_same_value_send_no_event() {
    use std::os::unix::fs::PermissionsExt;
    for options in [Options::new(), coalesce(20, 100)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.live::<Settings>(&path).unwrap();
        live.update(|settings| settings.font_size = 1).unwrap();
        live.flush().unwrap();
        let (events, _guard) = record(&live);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        if common::needs("sed", common::has_tool("sed")) {
            let sed = std::process::Command::new("sed")
                .args(["-i", "s/no such text/nothing/"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(sed.success());
        }
        // The same value, written by another program in another layout.
        let same = Settings::load(&path).unwrap();
        let pretty = serde_json::to_string_pretty(&serde_json::json!({
            "version": 2,
            "data": same,
        }))
        .unwrap();
        Pattern::AtomicRename.write(&path, &pretty);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            events.lock().unwrap().is_empty(),
            "{:?}",
            events.lock().unwrap()
        );
        assert!(live.stats().unchanged_reloads >= 1, "{:?}", live.stats());

        Pattern::AtomicRename.write(&path, &document(9));
        wait_for_event(&events, |event| event.value().font_size == 9);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(events.lock().unwrap().len(), 1, "a real edit: one event");
    }
}

#[test]
fn try_update_that_fails_writes_and_publishes_nothing() {
    for options in [Options::new(), coalesce(20, 100)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.live::<Settings>(&path).unwrap();
        live.update(|settings| settings.font_size = 3).unwrap();
        live.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let before = live.get();
        let (events, _guard) = record(&live);
        let refused: Result<(), persist::BoxError> = live.try_update(|settings| {
            settings.font_size = 99;
            Err("not today".into())
        });
        assert!(refused.unwrap_err().to_string().contains("not today"));
        assert!(Arc::ptr_eq(&live.get(), &before), "nothing published");
        live.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");
        assert!(events.lock().unwrap().is_empty());

        let font_size = live
            .try_update(|settings| {
                settings.font_size += 1;
                Ok::<_, Error>(settings.font_size)
            })
            .unwrap();
        assert_eq!(font_size, 4);
        live.flush().unwrap();
        assert_eq!(Settings::load(&path).unwrap().font_size, 4);
    }
}

#[test]
fn a_value_that_can_be_saved_nowhere_is_reported_when_the_last_handle_drops() {
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("mnt");
    let Some(_mounted) = common::small_ext4(dir.path(), &point, 2048) else {
        return;
    };
    let path = point.join("settings.json");
    Settings::default().save(&path).unwrap();
    let live = coalesce(3_600_000, 3_600_000)
        .watch(false)
        .live::<Settings>(&path)
        .unwrap();
    let (events, guard) = record(&live);
    guard.keep();
    // Fill the disk: data blocks, then inodes.
    let mut filler = std::fs::File::create(point.join("filler")).unwrap();
    let mut chunk = vec![0xEE; 64 << 10];
    while chunk.len() >= 512 {
        if filler.write_all(&chunk).is_err() {
            let half = chunk.len() / 2;
            chunk.truncate(half);
        }
    }
    filler.sync_all().unwrap();
    for n in 0.. {
        if std::fs::File::create(point.join(format!("inode-{n}"))).is_err() {
            break;
        }
    }
    live.update(|settings| settings.theme = "x".repeat(64 << 10))
        .unwrap();
    let refused = live.flush().unwrap_err();
    assert!(refused.to_string().contains("No space left"), "{refused}");
    drop(live);
    let event = wait_for_event(&events, |event| {
        matches!(event.error(), Some(Error::Unsaved { .. }))
    });
    let Some(Error::Unsaved {
        kept: None, reason, ..
    }) = event.error()
    else {
        panic!("{:?}", event.error());
    };
    assert!(reason.contains("No space left"), "{reason}");
    assert!(
        common::names(&point)
            .iter()
            .all(|name| !name.contains(".unsaved-")),
        "{:?}",
        common::names(&point)
    );
}

/// Threads of this process, from `/proc`.
#[cfg(target_os = "linux")]
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_hundred_thousand_handles_share_a_few_threads() {
    let dir = tempfile::tempdir().unwrap();
    let before = threads();
    let options = coalesce(20, 100);
    let handles: Vec<Live<Settings>> = (0..100_000)
        .map(|n| {
            let folder = dir.path().join(format!("app-{}", n % 10));
            options
                .live::<Settings>(folder.join(format!("settings-{n}.json")))
                .unwrap()
        })
        .collect();
    // Every handle has a job: a change through any of them is saved by the shared threads.
    for handle in handles.iter().step_by(1_000) {
        handle.update(|settings| settings.left += 1).unwrap();
    }
    let (events, _guard) = record(&handles[99_999]);
    Pattern::AtomicRename.write(handles[99_999].path(), &document(8));
    wait_for_event(&events, |event| event.value().font_size == 8);
    assert!(
        saved_within(handles[0].path(), EVENTUALLY, |_| true),
        "saved by the pool"
    );
    let during = threads();
    assert!(
        during <= before + 40,
        "{during} threads for 100,000 handles (before: {before})"
    );
    drop(handles);
    assert_eq!(
        Settings::load(dir.path().join("app-0/settings-1000.json"))
            .unwrap()
            .left,
        1
    );
}

/// Whether the file at `path` loads as a value for which `done` holds within `within`.
fn saved_within(path: &Path, within: Duration, done: impl Fn(&Settings) -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if Settings::load(path).is_ok_and(|settings| done(&settings)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Runs `body` on a thread and fails the test if it has not returned within [`EVENTUALLY`]
/// (a deadlock), rather than hanging the test run.
fn within_time(what: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(EVENTUALLY).is_ok(),
        "{what}: still running after {EVENTUALLY:?} (a deadlock?)"
    );
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Queue {
    jobs: Vec<String>,
}

#[test]
fn try_update_saves_at_once_so_its_result_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.json");
    let live = coalesce(3_600_000, 3_600_000)
        .watch(false)
        .live::<Queue>(&path)
        .unwrap();
    live.update(|queue| queue.jobs.push("mine".into())).unwrap(); // pending
    // Another program adds a job meanwhile.
    Queue::update(&path, |queue| queue.jobs.push("theirs".into())).unwrap();
    let taken: Result<String, persist::BoxError> =
        live.try_update(|queue| queue.jobs.pop().ok_or_else(|| "empty".into()));
    // Rebased first: theirs, then mine; the job taken is the last of those.
    assert_eq!(taken.unwrap(), "mine");
    assert_eq!(
        Queue::load(&path).unwrap().jobs,
        ["theirs"],
        "saved at once"
    );
    assert_eq!(live.get().jobs, ["theirs"]);
    live.flush().unwrap();
    assert_eq!(
        Queue::load(&path).unwrap().jobs,
        ["theirs"],
        "nothing replayed after"
    );
}

#[test]
fn closures_and_callbacks_that_hold_the_last_handle_never_hang() {
    for options in [Options::new(), coalesce(5, 20)] {
        // An update closure that owns a clone: dropped once the save is done, outside the
        // locks, where it drops the last handle.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.clone().live::<Settings>(&path).unwrap();
        let held = live.clone();
        live.update(move |settings| {
            let _ = &held;
            settings.left += 1;
        })
        .unwrap();
        within_time("dropping the handle", move || drop(live));
        assert!(
            saved_within(&path, EVENTUALLY, |settings| settings.left == 1),
            "the change is saved"
        );
        // And the file's lock is free again.
        Settings::update(&path, |settings| settings.left += 1).unwrap();

        // A callback that owns a clone: removed by dropping its subscription.
        let live = options.clone().live::<Settings>(&path).unwrap();
        let held = live.clone();
        let guard = live.on_change(move |_| {
            let _ = &held;
        });
        drop(live);
        within_time("dropping the subscription", move || drop(guard));
    }
}

#[test]
fn calling_the_same_handle_from_inside_its_update_closure_panics_instead_of_hanging() {
    for options in [Options::new(), coalesce(3_600_000, 3_600_000)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = options.live::<Settings>(&path).unwrap();
        let inner = live.clone();
        within_time("an update inside an update", move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                live.update(move |settings| {
                    settings.left = 1;
                    let _ = inner.update(|settings| settings.right = 1);
                })
            }));
            let panic = outcome.expect_err("the inner update panics");
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            assert!(message.contains("inside an update closure"), "{message}");
            assert_eq!(live.get().left, 0, "nothing published");
            // The handle still works.
            live.update(|settings| settings.left = 2).unwrap();
            live.flush().unwrap();
        });
    }
}

#[test]
fn blocked_callbacks_never_hold_up_saves() {
    let dir = tempfile::tempdir().unwrap();
    let (release, blocked) = mpsc::channel::<()>();
    let blocked = Arc::new(Mutex::new(blocked));
    // More callbacks that never return (until the end) than the pool has threads.
    let handles: Vec<(Live<Settings>, persist::Subscription)> = (0..40)
        .map(|n| {
            let live = Settings::live(dir.path().join(format!("blocked-{n}.json"))).unwrap();
            let blocked = Arc::clone(&blocked);
            let guard = live.on_change(move |_| {
                let _ = blocked.lock().unwrap().recv();
            });
            live.update(|settings| settings.left = 1).unwrap();
            (live, guard)
        })
        .collect();
    let path = dir.path().join("other.json");
    let live = coalesce(5, 20).live::<Settings>(&path).unwrap();
    live.update(|settings| settings.left = 9).unwrap();
    assert!(
        saved_within(&path, Duration::from_secs(5), |settings| settings.left == 9),
        "the coalesced save waits for blocked callbacks"
    );
    for _ in 0..40 {
        let _ = release.send(());
    }
    drop(release);
    drop(handles);
}

#[cfg(unix)]
#[test]
fn a_pending_value_is_kept_beside_the_file_whatever_now_stands_at_the_path() {
    for planted in ["directory", "fifo", "broken link"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let live = coalesce(3_600_000, 3_600_000)
            .watch(false)
            .live::<Settings>(&path)
            .unwrap();
        live.update(|settings| settings.left = 4).unwrap();
        let (events, guard) = record(&live);
        guard.keep();
        match planted {
            "directory" => std::fs::create_dir(&path).unwrap(),
            "fifo" => common::run("mkfifo", &[path.to_str().unwrap()]),
            _ => std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap(),
        }
        within_time("dropping the handle", move || drop(live));
        let event = wait_for_event(&events, |event| event.error().is_some());
        let Some(Error::Unsaved {
            kept: Some(kept), ..
        }) = event.error()
        else {
            panic!("{planted}: {:?}", event.error());
        };
        assert_eq!(Settings::load(kept).unwrap().left, 4, "{planted}");
        assert!(
            kept.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("settings.json.unsaved-")
        );
    }
}
