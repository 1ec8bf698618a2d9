//! The local directory's feed: file events on the collection's directory and its shard
//! directories (the process's one watcher, shared with `Live` handles), each named file's tag
//! compared with the one last seen; a listing of every entry compared whole after lost events,
//! when a shard directory appears, and at an interval where file events cannot be had.

use std::collections::{BTreeSet, VecDeque};
#[cfg(feature = "live")]
use std::ffi::OsStr;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Local;
use super::feed::{self, Feed, Notice, Seen};
use crate::Error;

/// How often the directory is listed whole where file events cannot be had.
pub(super) const POLL: Duration = Duration::from_millis(500);

/// What the file events asked for since the feed last looked.
#[derive(Default)]
struct Asked {
    /// Entry names whose files changed.
    names: BTreeSet<String>,
    /// Events were lost, or a shard directory appeared: list everything.
    everything: bool,
    /// Shard directories that appeared, to watch.
    shards: Vec<String>,
}

/// Where the watcher's callbacks leave what they saw, for the feed's reader to act on.
#[derive(Default)]
struct Wake {
    asked: Mutex<Asked>,
    ready: Condvar,
}

impl Wake {
    #[cfg(feature = "live")]
    fn ask(&self, change: impl FnOnce(&mut Asked)) {
        change(&mut self.asked.lock().unwrap_or_else(PoisonError::into_inner));
        self.ready.notify_all();
    }
}

/// A shard directory's events: the names of entries.
#[cfg(feature = "live")]
struct ShardEvents(Arc<Wake>);

#[cfg(feature = "live")]
impl crate::live::watcher::Watched for ShardEvents {
    fn changed(&self, name: Option<&OsStr>) {
        self.0.ask(|asked| match name.and_then(OsStr::to_str) {
            Some(name) => {
                // Lock files, backups and temporary files hold a dot; entry names never do.
                if !name.contains('.') {
                    asked.names.insert(name.to_owned());
                }
            }
            None => asked.everything = true,
        });
    }
}

/// The collection directory's events: shard directories appearing.
#[cfg(feature = "live")]
struct RootEvents(Arc<Wake>);

#[cfg(feature = "live")]
impl crate::live::watcher::Watched for RootEvents {
    fn changed(&self, name: Option<&OsStr>) {
        self.0.ask(|asked| match name {
            Some(name) if super::local::is_shard_name(name) => {
                if let Some(name) = name.to_str() {
                    asked.shards.push(name.to_owned());
                }
            }
            Some(_) => {}
            None => asked.everything = true,
        });
    }
}

/// The watches a feed holds (none without the `live` feature).
#[derive(Default)]
struct Watches {
    /// By directory: `""` for the collection's, else the shard's name.
    #[cfg(feature = "live")]
    held: std::collections::HashMap<String, crate::live::watcher::Registration>,
    /// Whether file events come: when they cannot, the feed lists at an interval.
    working: bool,
}

/// Whether `path` is a directory itself, not a symbolic link to one.
#[cfg(feature = "live")]
fn is_real_dir(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir())
}

/// The feed of a [`Local`] directory.
pub(super) struct LocalFeed {
    local: Local,
    prefixes: Vec<String>,
    seen: Seen,
    wake: Arc<Wake>,
    /// The sinks of the directory's events and of its shards' (the watcher holds them weakly).
    #[cfg(feature = "live")]
    events: [Arc<dyn crate::live::watcher::Watched>; 2],
    watches: Watches,
    pending: VecDeque<Notice>,
    next_poll: Instant,
}

impl fmt::Debug for LocalFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFeed")
            .field("dir", &self.local.dir())
            .field("prefixes", &self.prefixes)
            .field("file_events", &self.watches.working)
            .finish_non_exhaustive()
    }
}

impl LocalFeed {
    /// A feed of `local`'s entries under `prefixes`: the directories watched, then every entry
    /// listed (so that a change after this returns is told, by an event or by the listing).
    pub(super) fn new(local: Local, prefixes: Vec<String>) -> Result<Self, Error> {
        let wake = Arc::new(Wake::default());
        let mut feed = LocalFeed {
            local,
            prefixes,
            seen: Seen::default(),
            #[cfg(feature = "live")]
            events: [
                Arc::new(RootEvents(Arc::clone(&wake))),
                Arc::new(ShardEvents(Arc::clone(&wake))),
            ],
            wake,
            watches: Watches::default(),
            pending: VecDeque::new(),
            next_poll: Instant::now() + POLL,
        };
        feed.watch_all();
        let listing = feed::listing(&feed.local, &feed.prefixes)?;
        feed.seen.diff(listing);
        Ok(feed)
    }

    /// Watches the directory and each shard directory there is (never through a symbolic
    /// link: a link where a shard belongs is no shard, and the backend never follows it);
    /// `working` tells whether every watch could be made. Each watch is asked of the system
    /// again, even where another feed or handle of the process holds it: a directory removed
    /// and made again lost its watch with the old one.
    fn watch_all(&mut self) {
        #[cfg(feature = "live")]
        {
            use crate::live::watcher::{self, EVERY_FILE};
            let Ok(root) = std::fs::canonicalize(self.local.dir()) else {
                return;
            };
            let root_events = Arc::downgrade(&self.events[0]);
            let Ok(registration) =
                watcher::register_with(&root, EVERY_FILE.into(), root_events, true)
            else {
                self.not_watching();
                return;
            };
            self.watches.held.insert(String::new(), registration);
            self.watches.working = true;
            let shards: Vec<String> = (0..256)
                .map(|index| format!("{index:02x}"))
                .filter(|shard| is_real_dir(&root.join(shard)))
                .collect();
            for shard in shards {
                self.watch_shard(&root, &shard);
            }
        }
    }

    /// Watches the shard directory `shard` of `root` (again, if it was watched: a shard
    /// removed by a `clear` and made again lost its watch).
    #[cfg(feature = "live")]
    fn watch_shard(&mut self, root: &std::path::Path, shard: &str) {
        use crate::live::watcher::{self, EVERY_FILE};
        if !self.watches.working {
            return;
        }
        let path = root.join(shard);
        if !is_real_dir(&path) {
            return;
        }
        let shard_events = Arc::downgrade(&self.events[1]);
        match watcher::register_with(&path, EVERY_FILE.into(), shard_events, true) {
            Ok(registration) => {
                // The watch it replaces goes after the new one holds the directory.
                self.watches.held.insert(shard.to_owned(), registration);
            }
            // (A shard removed meanwhile, by a clear: its successor is seen appearing.)
            Err(_) if !is_real_dir(&path) => {}
            Err(_) => self.not_watching(),
        }
    }

    /// File events cannot be had (the system's limit on watches, say): the watches made are
    /// dropped, and the feed lists the directory at an interval.
    #[cfg(feature = "live")]
    fn not_watching(&mut self) {
        self.watches.working = false;
        self.watches.held.clear();
        #[cfg(feature = "tracing")]
        tracing::warn!(
            dir = %self.local.dir().display(),
            "persist: the collection's directory cannot be watched (file events); its feed \
             lists it at an interval instead"
        );
    }

    /// Watches the shard directories that appeared; whether there were any.
    fn watch_new(&mut self, shards: &[String]) -> bool {
        #[cfg(feature = "live")]
        if !shards.is_empty()
            && let Ok(root) = std::fs::canonicalize(self.local.dir())
        {
            for shard in shards {
                self.watch_shard(&root, shard);
            }
        }
        !shards.is_empty()
    }

    /// Takes what the events asked for, waiting until `until` for something to do.
    fn asked(&self, until: Instant) -> Asked {
        let mut asked = self
            .wake
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            let anything = asked.everything || !asked.names.is_empty() || !asked.shards.is_empty();
            let now = Instant::now();
            if anything || now >= until {
                return std::mem::take(&mut *asked);
            }
            asked = self
                .wake
                .ready
                .wait_timeout(asked, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Feed for LocalFeed {
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(notice) = self.pending.pop_front() {
                return Ok(Some(notice));
            }
            let polls = !self.watches.working;
            let until = if polls {
                deadline.min(self.next_poll)
            } else {
                deadline
            };
            let asked = self.asked(until);
            // A shard that appeared may hold entries written before its watch began.
            let everything = asked.everything || self.watch_new(&asked.shards);
            let poll_due = polls && Instant::now() >= self.next_poll;
            if everything || poll_due {
                let started = Instant::now();
                let listing = feed::listing(&self.local, &self.prefixes)?;
                self.pending.extend(self.seen.diff(listing));
                if polls {
                    // A large directory is listed less often: at most a twentieth of the
                    // time goes to listing it.
                    self.next_poll = Instant::now() + POLL.max(started.elapsed() * 20);
                }
            } else {
                for name in asked.names {
                    if !feed::matches(&self.prefixes, &name) {
                        continue;
                    }
                    let tag = super::Backend::tag(&self.local, &name)?;
                    self.pending.extend(self.seen.note(&name, tag));
                }
            }
            if self.pending.is_empty() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}
