//! The threads every [`Live`](super::Live) handle of the process shares.
//!
//! A handle's background work (settling file events, polling, the coalescing saver) and the
//! delivery of its events to callbacks are *jobs*: a job runs on one of a few pool threads
//! when it is woken or when the time it asked for comes, never on two threads at once, and
//! says when it wants to run next. A handle costs no thread of its own, so an application may
//! keep 100,000 of them open.
//!
//! There are two pools, alike: one for the handles' background work, one for the delivery of
//! events to callbacks, so that callbacks that block (they are the application's code) never
//! hold up a save or a reload. A pool starts one thread on first use and adds one when a job
//! is ready and every thread is busy (a callback that sleeps, a save that waits for another
//! process's lock), up to [`MAX_THREADS`]; a thread that found nothing to do for [`IDLE_EXIT`]
//! ends, down to one. A thread the system refuses to create is not fatal while another runs;
//! with none at all, registering a job fails with
//! [`IoOp::BlockingTask`](crate::IoOp::BlockingTask).

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The most threads a pool runs.
pub(super) const MAX_THREADS: usize = 32;

/// How long a thread beyond the first waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(5);

/// When a job wants to run again.
pub(super) enum Next {
    /// When woken, or at this time, whichever comes first.
    At(Instant),
    /// Only when woken.
    Idle,
    /// Never: the job is removed.
    Done,
}

/// Work the pool runs.
pub(super) trait Job: Send + Sync {
    /// Does what is due. A panic is caught (the job stays, idle until woken).
    fn run(&self) -> Next;
}

/// Which pool a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Settling file events, polling, saving.
    Background,
    /// Calling `on_change` callbacks.
    Callbacks,
}

/// A registered job: its pool and its number (unique in the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JobId {
    kind: Kind,
    id: u64,
}

/// The next job number.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

struct Entry {
    job: Arc<dyn Job>,
    /// The time the job asked to run at (the heap may hold older times: those are stale).
    due: Option<Instant>,
    /// In `ready`.
    queued: bool,
    /// On a thread now.
    running: bool,
    /// Woken while it ran: it runs again.
    woken: bool,
    /// Cancelled from its own run: removed when the run returns.
    cancelled: bool,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    ready: VecDeque<u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    threads: usize,
    idle: usize,
}

struct Pool {
    kind: Kind,
    table: Mutex<Table>,
    /// Threads wait here for ready jobs and timers.
    work: Condvar,
    /// A job finished a run (for [`cancel`]).
    finished: Condvar,
}

static BACKGROUND: LazyLock<Pool> = LazyLock::new(|| Pool::new(Kind::Background));
static CALLBACKS: LazyLock<Pool> = LazyLock::new(|| Pool::new(Kind::Callbacks));

thread_local! {
    /// The job this pool thread is running.
    static RUNNING: Cell<Option<u64>> = const { Cell::new(None) };
}

impl Pool {
    fn new(kind: Kind) -> Pool {
        Pool {
            kind,
            table: Mutex::new(Table::default()),
            work: Condvar::new(),
            finished: Condvar::new(),
        }
    }

    fn of(kind: Kind) -> &'static Pool {
        match kind {
            Kind::Background => &BACKGROUND,
            Kind::Callbacks => &CALLBACKS,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Registers `job` on the pool of `kind`, idle until woken. Fails only when the pool has no
/// thread and the system refuses to create one.
pub(super) fn register(kind: Kind, job: Arc<dyn Job>) -> std::io::Result<JobId> {
    let pool = Pool::of(kind);
    let mut table = pool.table();
    if table.threads == 0 {
        spawn(pool, &mut table)?;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    table.entries.insert(
        id,
        Entry {
            job,
            due: None,
            queued: false,
            running: false,
            woken: false,
            cancelled: false,
        },
    );
    Ok(JobId { kind, id })
}

/// Makes the job run soon (at once if a thread is free). A job woken while it runs runs
/// again after.
pub(super) fn wake(job: JobId) {
    let pool = Pool::of(job.kind);
    let mut table = pool.table();
    let Some(entry) = table.entries.get_mut(&job.id) else {
        return;
    };
    if entry.running {
        entry.woken = true;
        return;
    }
    if entry.queued {
        return;
    }
    entry.queued = true;
    table.ready.push_back(job.id);
    if table.idle == 0 && table.threads < MAX_THREADS {
        // Refused: the threads there are take it when they are free.
        let _ = spawn(pool, &mut table);
    }
    drop(table);
    pool.work.notify_one();
}

/// Removes the job, after its current run if it is running on another thread (called from
/// its own run, it is removed when that run returns).
pub(super) fn cancel(job: JobId) {
    let pool = Pool::of(job.kind);
    let mut table = pool.table();
    if RUNNING.with(Cell::get) == Some(job.id) {
        if let Some(entry) = table.entries.get_mut(&job.id) {
            entry.cancelled = true;
        }
        return;
    }
    while table
        .entries
        .get(&job.id)
        .is_some_and(|entry| entry.running)
    {
        table = pool
            .finished
            .wait(table)
            .unwrap_or_else(PoisonError::into_inner);
    }
    table.entries.remove(&job.id);
    table.ready.retain(|queued| *queued != job.id);
}

fn spawn(pool: &'static Pool, table: &mut Table) -> std::io::Result<()> {
    let name = match pool.kind {
        Kind::Background => "persist-live",
        Kind::Callbacks => "persist-live-events",
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(pool))?;
    table.threads += 1;
    Ok(())
}

/// A pool thread: takes ready jobs and due timers until it has been idle too long.
fn serve(pool: &'static Pool) {
    let mut table = pool.table();
    let mut idle_since = Instant::now();
    loop {
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = table.timers.peek() {
            if at > now {
                break;
            }
            table.timers.pop();
            let Some(entry) = table.entries.get_mut(&id) else {
                continue;
            };
            if entry.due != Some(at) {
                continue;
            }
            entry.due = None;
            if !entry.running && !entry.queued {
                entry.queued = true;
                table.ready.push_back(id);
            } else if entry.running {
                entry.woken = true;
            }
        }
        let Some(id) = table.ready.pop_front() else {
            if table.threads > 1 && now.duration_since(idle_since) >= IDLE_EXIT {
                table.threads -= 1;
                return;
            }
            let timer = table.timers.peek().map(|Reverse((at, _))| *at - now);
            let wait = timer.map_or(IDLE_EXIT, |timer| timer.min(IDLE_EXIT));
            table.idle += 1;
            table = pool
                .work
                .wait_timeout(table, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            table.idle -= 1;
            continue;
        };
        let Some(entry) = table.entries.get_mut(&id) else {
            continue;
        };
        entry.queued = false;
        entry.running = true;
        let job = Arc::clone(&entry.job);
        if !table.ready.is_empty() && table.idle == 0 && table.threads < MAX_THREADS {
            let _ = spawn(pool, &mut table);
        }
        drop(table);
        RUNNING.with(|running| running.set(Some(id)));
        let next = catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or(Next::Idle);
        RUNNING.with(|running| running.set(None));
        drop(job);
        table = pool.table();
        finish(pool, &mut table, id, next);
        pool.finished.notify_all();
        idle_since = Instant::now();
    }
}

/// Books the end of a run of `id`.
fn finish(pool: &Pool, table: &mut Table, id: u64, next: Next) {
    let Some(entry) = table.entries.get_mut(&id) else {
        return;
    };
    entry.running = false;
    if entry.cancelled || matches!(next, Next::Done) {
        table.entries.remove(&id);
        return;
    }
    if std::mem::take(&mut entry.woken) {
        entry.queued = true;
        table.ready.push_back(id);
        pool.work.notify_one();
        return;
    }
    if let Next::At(at) = next {
        entry.due = Some(at);
        table.timers.push(Reverse((at, id)));
        pool.work.notify_one();
    }
}
