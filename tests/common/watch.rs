//! What a test's watcher knows of a collection: the value of each key, kept from a
//! [`Watch`]'s events, with the order of each key's events checked as they come.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use persist::{Collection, Persisted, Watch, WatchEvent};

/// The values a watch told, by key.
pub struct Mirror<T> {
    pub values: BTreeMap<String, T>,
    /// The events seen, in order, as text.
    pub events: Vec<String>,
    pub resyncs: usize,
    /// The writer of a value and its place in that writer's sequence: a key's values from one
    /// writer must never go back.
    order: fn(&T) -> (u64, u64),
}

impl<T: Debug + PartialEq> Mirror<T> {
    pub fn new(order: fn(&T) -> (u64, u64)) -> Self {
        Mirror {
            values: BTreeMap::new(),
            events: Vec::new(),
            resyncs: 0,
            order,
        }
    }

    /// Applies one event; panics on a value that goes back in its writer's sequence (events
    /// of one key out of order).
    pub fn apply(&mut self, event: WatchEvent<T>) {
        match event {
            WatchEvent::Put { key, value, .. } => {
                let value = value.expect("the watch reads values");
                let (writer, seq) = (self.order)(&value);
                if let Some(before) = self.values.get(&key) {
                    let (before_writer, before_seq) = (self.order)(before);
                    assert!(
                        before_writer != writer || seq >= before_seq,
                        "{key}: writer {writer} went from {before_seq} back to {seq}"
                    );
                }
                self.events.push(format!("put {key} {writer}/{seq}"));
                self.values.insert(key, value);
            }
            WatchEvent::Deleted { key } => {
                self.events.push(format!("delete {key}"));
                self.values.remove(&key);
            }
            WatchEvent::Resync => {
                self.resyncs += 1;
                self.events.push("resync".into());
                self.values.clear();
            }
            WatchEvent::Synced => self.events.push("synced".into()),
            other => panic!("an event this test does not know: {other:?}"),
        }
    }

    /// Reads `watch` until the mirror equals `expected` or `within` has passed.
    pub fn follow_until(
        &mut self,
        watch: &mut Watch<T>,
        expected: &BTreeMap<String, T>,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        while self.values != *expected {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the watch did not reach the store's state within {within:?}: {} keys seen, \
                 {} stored; last events {:?}",
                self.values.len(),
                expected.len(),
                &self.events[self.events.len().saturating_sub(5)..]
            );
            if let Some(event) = watch.next_timeout(left.min(Duration::from_millis(200))) {
                self.apply(event.unwrap());
            }
        }
    }
}

/// Every value of `collection`, read now.
pub fn state<T: Persisted + Clone + Send + Sync + 'static>(
    collection: &Collection<T>,
) -> BTreeMap<String, T> {
    collection
        .iter()
        .unwrap()
        .map(|(key, value)| (key, value.unwrap()))
        .collect()
}

/// Waits until `done` (for at most 5 s, looking every 10 ms): a cached handle seeing another
/// process's `what`.
pub fn seen_within_5_s(what: &str, done: &dyn Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cached handle did not see the other process's {what} within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("{what} seen after {:?}", started.elapsed());
}
