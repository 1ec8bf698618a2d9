//! Readers that follow a journal another process appends to: [`Follow`] yields every record
//! from an index on, then waits for the next ones (file events where the `live` feature has
//! them, polling otherwise), and goes on across checkpoints by index, never repeating or
//! skipping a record.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::format::FILE_HEADER;
use super::reader::{Failure, Reader, Step};
use super::records::{RawRecord, raw_record, read_header};
use super::recovery;
use crate::Persisted;
use crate::error::{Error, IoOp};
use crate::settings::Settings;
use crate::shell::dir::Dir;
use crate::shell::io_error;
use crate::shell::read::open_regular_file;

/// How long a reader waits between looks at the file when no file event can wake it.
const POLL: Duration = Duration::from_millis(10);

/// How long it waits between looks when file events wake it (in case one is lost).
#[cfg(feature = "live")]
const POLL_WATCHED: Duration = Duration::from_millis(250);

/// How long an entry that fails its checks may stay so before the reader looks whether it is
/// damage (a later flush follows it) rather than a flush still being written.
const SETTLE: Duration = Duration::from_secs(1);

/// A reader that follows a journal: see [`Options::journal_follow`](crate::Options::journal_follow).
/// An iterator that never ends by itself: each item is a record's index and value, or an
/// error; [`next`](Iterator::next) blocks until there is one.
pub struct Follow<T> {
    path: PathBuf,
    settings: Settings,
    /// The log being read, once there is one.
    log: Option<Followed>,
    /// Logs that replaced it (checkpoints), opened as soon as they were seen so that a
    /// checkpoint after them cannot take their records away: read next, in order.
    later: VecDeque<Followed>,
    /// When the path was last looked at for a new log.
    looked: Option<Instant>,
    /// A log was read before the one read now: a log that starts before the next record is
    /// then another history, not records to skip.
    moved_on: bool,
    /// An encrypted record was read (see [`check_sealing`](super::records::check_sealing)).
    encrypted_seen: bool,
    /// The index of the next record to deliver.
    next: u64,
    /// Values decoded and not yet delivered (an upcast record may make several).
    ready: VecDeque<(u64, T)>,
    decode: Decode<T>,
    wake: Arc<Wake>,
    #[cfg(feature = "live")]
    _watch: Option<crate::live::watcher::Registration>,
    /// How long to wait between looks.
    poll: Duration,
    /// An entry that failed its checks, and since when.
    failing: Option<(u64, Instant)>,
    marker: PhantomData<fn() -> T>,
}

/// How a record's envelope becomes items.
type Decode<T> = fn(&Settings, &Path, u64, u64, &[u8]) -> Result<Vec<T>, Error>;

impl<T> std::fmt::Debug for Follow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("path", &self.path)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// One log file as a follower reads it.
struct Followed {
    reader: Reader,
    /// The file's identity (device, inode): a checkpoint replaces it.
    identity: (u64, u64),
    /// The index of the record at the reader's offset.
    index: u64,
    /// A later log replaced it: it is read to its end once more, then left.
    replaced: bool,
}

/// How often a reader busy with records looks whether a checkpoint replaced the log.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// What file events tell a waiting reader: a count of changes.
#[derive(Default)]
struct Wake {
    changes: Mutex<u64>,
    changed: Condvar,
}

impl Wake {
    fn seen(&self) -> u64 {
        *self
            .changes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Waits until a change after `seen`, or `timeout`.
    fn wait(&self, seen: u64, timeout: Duration) {
        let changes = self
            .changes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(changes, timeout, |changes| *changes == seen);
    }
}

#[cfg(feature = "live")]
impl crate::live::watcher::Watched for Wake {
    fn changed(&self, _name: Option<&std::ffi::OsStr>) {
        *self
            .changes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) += 1;
        self.changed.notify_all();
    }
}

impl<E: Persisted> Follow<E> {
    pub(crate) fn typed(settings: &Settings, path: &Path, from: u64) -> Result<Follow<E>, Error> {
        Follow::new(settings, path, from, decode_typed::<E>)
    }
}

impl Follow<RawRecord> {
    pub(crate) fn raw(
        settings: &Settings,
        path: &Path,
        from: u64,
    ) -> Result<Follow<RawRecord>, Error> {
        Follow::new(settings, path, from, decode_raw)
    }
}

impl<T> Follow<T> {
    fn new(
        settings: &Settings,
        path: &Path,
        from: u64,
        decode: Decode<T>,
    ) -> Result<Follow<T>, Error> {
        let wake = Arc::new(Wake::default());
        #[cfg(feature = "live")]
        let watch = watch(path, &wake);
        #[cfg(feature = "live")]
        let poll = if watch.is_some() { POLL_WATCHED } else { POLL };
        #[cfg(not(feature = "live"))]
        let poll = POLL;
        let follow = Follow {
            path: path.to_owned(),
            settings: settings.clone(),
            log: None,
            later: VecDeque::new(),
            looked: None,
            moved_on: false,
            encrypted_seen: false,
            next: from,
            ready: VecDeque::new(),
            decode,
            wake,
            #[cfg(feature = "live")]
            _watch: watch,
            poll,
            failing: None,
            marker: PhantomData,
        };
        // A file that is there but not a journal (or not a file) is an error now, not a wait.
        match open_regular_file(path, false) {
            Ok((file, _)) => drop(read_header(path, &file)?),
            Err(Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        Ok(follow)
    }

    /// The index of the next record this reader delivers.
    pub fn position(&self) -> u64 {
        self.ready.front().map_or(self.next, |(index, _)| *index)
    }

    /// The next record if one is there now, without waiting: `None` when the reader has
    /// delivered every record the journal holds.
    ///
    /// # Errors
    ///
    /// As [`next`](Iterator::next).
    pub fn try_next(&mut self) -> Option<Result<(u64, T), Error>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// The next record, waiting at most `timeout` for one: `None` when none came.
    ///
    /// # Errors
    ///
    /// As [`next`](Iterator::next).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<(u64, T), Error>> {
        let deadline = Instant::now() + timeout;
        loop {
            // A directory that did not exist yet at first (the writer creates it): watched as
            // soon as it does, so that the reader stops polling and keeps up.
            #[cfg(feature = "live")]
            if self._watch.is_none() {
                self._watch = watch(&self.path, &self.wake);
                if self._watch.is_some() {
                    self.poll = POLL_WATCHED;
                }
            }
            let seen = self.wake.seen();
            if let Some(item) = self.try_next() {
                return Some(item);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.wake.wait(seen, self.poll.min(deadline - now));
        }
    }

    /// Reads the log as far as it goes now: `true` when it delivered something (or moved on
    /// to a new log), `false` when there is nothing new.
    fn step(&mut self) -> Result<bool, Error> {
        if self.log.is_none() {
            if let Some(later) = self.later.pop_front() {
                self.log = Some(later);
                self.check_base(true)?;
            } else {
                match self.open_log()? {
                    Some(log) => {
                        self.log = Some(log);
                        self.check_base(self.moved_on)?;
                    }
                    None => return Ok(false),
                }
            }
        }
        // A reader busy with records looks for a new log now and then, so that it holds each
        // log a checkpoint puts in place before the next checkpoint replaces it.
        if self
            .looked
            .is_none_or(|looked| looked.elapsed() >= LOOK_EVERY)
        {
            self.look_for_later()?;
        }
        let Some(log) = self.log.as_mut() else {
            return Ok(false);
        };
        let mut size = log.size(&self.path)?;
        if size < log.reader.offset() {
            // The writer cut records off that this reader read (their write or sync failed).
            return self.rewind(size).map(|()| true);
        }
        log.reader.set_end(size);
        loop {
            let Some(log) = self.log.as_mut() else {
                return Ok(false);
            };
            let failure = match log.reader.next()? {
                Step::Record(_) => {
                    self.failing = None;
                    let index = log.index;
                    log.index += 1;
                    if index < self.next {
                        continue;
                    }
                    self.next = index + 1;
                    let offset = log.reader.last_offset();
                    super::records::check_sealing(
                        &self.settings,
                        &mut self.encrypted_seen,
                        log.reader.data(),
                        &self.path,
                        offset,
                    )?;
                    let values = (self.decode)(
                        &self.settings,
                        &self.path,
                        index,
                        offset,
                        log.reader.data(),
                    )?;
                    self.ready
                        .extend(values.into_iter().map(|value| (index, value)));
                    if !self.ready.is_empty() {
                        return Ok(true);
                    }
                    continue;
                }
                Step::Mark => continue,
                Step::End => None,
                Step::Failed(failure) => Some(failure),
            };
            if let Some(failure) = failure {
                // A flush being written (readers may see part of its one write), a torn tail
                // its writer will cut, or damage, which a later flush proves.
                let offset = log.reader.offset();
                if let Failure::OverLimit(..) = failure {
                    return Err(Error::DamagedJournal {
                        path: self.path.clone(),
                        offset,
                        reason: failure.reason(),
                    });
                }
                match self.failing {
                    Some((at, since)) if at == offset && since.elapsed() >= SETTLE => {
                        self.failing = Some((offset, Instant::now()));
                        recovery::check_damage(
                            &self.path,
                            log.reader.file(),
                            offset,
                            size,
                            failure,
                        )?;
                    }
                    Some((at, _)) if at == offset => {}
                    _ => self.failing = Some((offset, Instant::now())),
                }
            }
            // At the end of what the log holds. Once a later log replaced it, nothing writes
            // to it any more: what it holds past the reader (in its preallocated space, which
            // its size does not tell) was written before the later log was put in place, and
            // is read in one more pass before moving on.
            if !log.replaced {
                if self.later.is_empty() {
                    self.look_for_later()?;
                }
                if self.later.is_empty() {
                    return Ok(false);
                }
                let Some(log) = self.log.as_mut() else {
                    return Ok(true);
                };
                log.replaced = true;
                size = log.size(&self.path)?;
                log.reader.set_end(size);
                continue;
            }
            self.log = None;
            self.failing = None;
            self.moved_on = true;
            return Ok(true);
        }
    }

    /// Opens the log the path names now if it is not one this reader holds (a checkpoint
    /// put it in place), to be read after those.
    fn look_for_later(&mut self) -> Result<(), Error> {
        self.looked = Some(Instant::now());
        let Some(current) = std::fs::metadata(&self.path)
            .ok()
            .map(|metadata| identity_of(&metadata))
        else {
            return Ok(());
        };
        let held = |log: &Followed| log.identity == current;
        if self.log.as_ref().is_some_and(held) || self.later.iter().any(held) {
            return Ok(());
        }
        if let Some(log) = self.open_log()? {
            // Replaced again between the look and the open: that one is the newest.
            if !(self
                .log
                .as_ref()
                .is_some_and(|held| held.identity == log.identity)
                || self.later.iter().any(|held| held.identity == log.identity))
            {
                self.later.push_back(log);
            }
        }
        Ok(())
    }

    /// The log now read was cut to `size`, before records this reader delivered: reads it
    /// again up to the cut, to know the first record there, and reports
    /// [`Error::Rewound`]; reading goes on at the cut.
    fn rewind(&mut self, size: u64) -> Result<(), Error> {
        let Some(mut log) = self.open_log()? else {
            self.log = None;
            return Ok(());
        };
        log.reader.set_end(size);
        while log.reader.offset() < size {
            match log.reader.next()? {
                Step::Record(_) => log.index += 1,
                Step::Mark => {}
                Step::End | Step::Failed(_) => break,
            }
        }
        let to = log.index;
        self.log = Some(log);
        self.failing = None;
        // Values read and not delivered yet: those of the records before the cut are still
        // to be delivered.
        self.ready.retain(|(index, _)| *index < to);
        let delivered = self.ready.front().map_or(self.next, |(index, _)| *index);
        self.next = self.next.min(to);
        if delivered <= to {
            return Ok(());
        }
        Err(Error::Rewound {
            path: self.path.clone(),
            from: delivered,
            to,
        })
    }

    /// When the log now read starts after the next record to deliver, a checkpoint covered
    /// those: [`Error::Checkpointed`], and reading goes on at its first record. A log that
    /// replaced the one read and starts before it (the journal was deleted and created
    /// again) numbers other records as ones this reader delivered: [`Error::Rewound`], and
    /// reading goes on at its first record.
    fn check_base(&mut self, replacing: bool) -> Result<(), Error> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        if replacing && log.index < self.next {
            let from = std::mem::replace(&mut self.next, log.index);
            return Err(Error::Rewound {
                path: self.path.clone(),
                from,
                to: log.index,
            });
        }
        if log.index > self.next {
            let from = std::mem::replace(&mut self.next, log.index);
            return Err(Error::Checkpointed {
                path: self.path.clone(),
                from,
                to: log.index,
            });
        }
        Ok(())
    }

    /// Opens the log at the path, if there is one (`None` when there is none yet).
    fn open_log(&self) -> Result<Option<Followed>, Error> {
        let file = match open_regular_file(&self.path, false) {
            Ok((file, _)) => file,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let header = read_header(&self.path, &file)?;
        let identity = Dir::stat_file(&file)
            .ok()
            .map(|stat| (stat.dev, stat.ino))
            .unwrap_or_default();
        let reader = Reader::new(
            &self.path,
            file,
            FILE_HEADER as u64,
            FILE_HEADER as u64,
            self.settings.disk.max_size,
        )?;
        Ok(Some(Followed {
            reader,
            identity,
            index: header.base,
            replaced: false,
        }))
    }
}

impl Followed {
    /// The log file's size now.
    fn size(&self, path: &Path) -> Result<u64, Error> {
        Ok(self
            .reader
            .file()
            .metadata()
            .map_err(io_error(path, IoOp::Metadata))?
            .len())
    }
}

impl<T> Iterator for Follow<T> {
    type Item = Result<(u64, T), Error>;

    /// The next record (its index and value), waiting for it as long as it takes; never
    /// `None`. Errors: [`Error::Checkpointed`] when a checkpoint covered records before they
    /// were read (reading goes on after them), [`Error::DamagedJournal`], a record's decoding
    /// error (reading goes on after it), [`Error::Io`].
    fn next(&mut self) -> Option<Result<(u64, T), Error>> {
        loop {
            if let Some(item) = self.next_timeout(Duration::from_secs(3600)) {
                return Some(item);
            }
        }
    }
}

/// Registers the directory of the journal at `path` with the process's watcher, so that its
/// changes wake `wake`; `None` where file events are not to be had (then the reader polls).
#[cfg(feature = "live")]
fn watch(path: &Path, wake: &Arc<Wake>) -> Option<crate::live::watcher::Registration> {
    // The file itself where a link points to it: its writer replaces the file there.
    let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let name = file.file_name()?.to_owned();
    let directory = std::fs::canonicalize(crate::shell::parent_dir(&file)).ok()?;
    let watched: Arc<dyn crate::live::watcher::Watched> = Arc::clone(wake) as _;
    crate::live::watcher::register(&directory, name, Arc::downgrade(&watched)).ok()
}

/// The device and inode of a file's metadata.
fn identity_of(metadata: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        (0, 0)
    }
}

/// A record's values as `E` (an upcast may make any number).
fn decode_typed<E: Persisted>(
    settings: &Settings,
    path: &Path,
    _index: u64,
    offset: u64,
    data: &[u8],
) -> Result<Vec<E>, Error> {
    super::records::decode_values(settings, path, offset, data)
}

/// A record as the untyped reader gives it.
fn decode_raw(
    settings: &Settings,
    path: &Path,
    index: u64,
    offset: u64,
    data: &[u8],
) -> Result<Vec<RawRecord>, Error> {
    let envelope = settings.unframe(data).map_err(|error| error.at(path))?;
    raw_record(path, index, offset, &envelope).map(|record| vec![record])
}

#[cfg(feature = "tokio")]
pub use self::asynchronous::AsyncFollow;

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;

    /// A [`Follow`] for async code: see [`Follow::into_async`].
    #[derive(Debug)]
    pub struct AsyncFollow<T> {
        receiver: ::tokio::sync::mpsc::Receiver<Result<(u64, T), Error>>,
    }

    impl<T: Send + 'static> Follow<T> {
        /// This reader for async code: a thread of its own waits for the records (file events
        /// or polling) and hands them over; [`AsyncFollow::next`] awaits the next. Dropping
        /// the `AsyncFollow` stops the thread at its next look at the file.
        ///
        /// # Errors
        ///
        /// [`Error::Io`] with [`IoOp::BlockingTask`] when the thread cannot be started.
        pub fn into_async(mut self) -> Result<AsyncFollow<T>, Error> {
            let (sender, receiver) = ::tokio::sync::mpsc::channel(64);
            let path = self.path.clone();
            std::thread::Builder::new()
                .name("persist-follow".to_owned())
                .spawn(move || {
                    while !sender.is_closed() {
                        if let Some(item) = self.next_timeout(Duration::from_millis(250))
                            && sender.blocking_send(item).is_err()
                        {
                            return;
                        }
                    }
                })
                .map_err(io_error(&path, IoOp::BlockingTask))?;
            Ok(AsyncFollow { receiver })
        }
    }

    impl<T> AsyncFollow<T> {
        /// The next record (its index and value), as [`Follow`]'s iterator gives it.
        ///
        /// # Errors
        ///
        /// As [`Follow`]'s iterator.
        pub async fn next(&mut self) -> Result<(u64, T), Error> {
            match self.receiver.recv().await {
                Some(item) => item,
                // The thread ended: it only does when this end is dropped, or it panicked.
                None => Err(Error::Io {
                    path: PathBuf::new(),
                    op: IoOp::BlockingTask,
                    source: std::io::Error::other("the follower's thread ended"),
                }),
            }
        }
    }
}
