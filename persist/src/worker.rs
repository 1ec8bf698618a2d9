//! The threads the `_async` methods run their file work on: persist's own small pool rather
//! than tokio's `spawn_blocking`.
//!
//! Why not tokio's blocking pool: with glibc's malloc, a value built on one of its threads and
//! freed makes the next load fault its pages in again, where the same load on a long-lived
//! plain thread does not (BENCHMARKS.md, "Async loads and glibc's arenas", with the figures and
//! `bench/examples/arena.rs` to reproduce them). The pool below is such threads:
//!
//! - a job goes to the thread that became idle last (warm caches, warm malloc arena), a new
//!   thread is started only when none is idle, up to [`MAX_THREADS`]; beyond that jobs queue;
//! - a worker marks itself idle *before* it hands its result over, so a caller that awaits one
//!   job and then submits the next (the common sequence) gets the same thread again;
//! - a thread idle for [`KEEP_ALIVE`] exits.
//!
//! Independent of any runtime: the result comes back through a oneshot channel, so the
//! futures work under tokio or any other executor.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What a worker runs: computes, then returns the hand-over of the result, which the worker
/// calls once it is idle again.
pub(crate) type Job = Box<dyn FnOnce() -> Box<dyn FnOnce() + Send> + Send>;

/// At most this many threads at once; more concurrent jobs wait in the queue. File work spends
/// most of its time waiting for the disk, so more threads than cores pay off (concurrent fsyncs
/// share the journal commit), up to a point.
const MAX_THREADS: usize = 64;

/// An idle thread exits after this long.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

struct Pool {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Idle workers, the most recently idle last.
    idle: Vec<Arc<Worker>>,
    /// Jobs waiting for a thread (only when [`MAX_THREADS`] are busy).
    queue: VecDeque<Job>,
    threads: usize,
}

#[derive(Default)]
struct Worker {
    slot: Mutex<Option<Job>>,
    wake: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
    })
}

/// Runs `job` on a worker thread.
pub(crate) fn submit(job: Job) {
    let pool = pool();
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(worker) = state.idle.pop() {
        drop(state);
        *worker.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(job);
        worker.wake.notify_one();
        return;
    }
    if state.threads >= MAX_THREADS {
        state.queue.push_back(job);
        return;
    }
    state.threads += 1;
    drop(state);
    let worker = Arc::new(Worker::default());
    let spawned = std::thread::Builder::new()
        .name("persist-io".into())
        .spawn(move || run(pool, &worker, job));
    if let Err(error) = spawned {
        // Out of threads or memory: the job (and with it the caller's channel) is dropped, which
        // the caller reports as a failed blocking task.
        pool.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .threads -= 1;
        drop(error);
    }
}

fn run(pool: &Pool, worker: &Arc<Worker>, first: Job) {
    let mut job = first;
    loop {
        // A panic inside the work is the caller's: the job catches it and hands it over. This
        // only guards the thread against a panic in the hand-over itself.
        let deliver = catch_unwind(AssertUnwindSafe(job));
        let next = {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            match state.queue.pop_front() {
                Some(next) => Some(next),
                None => {
                    state.idle.push(Arc::clone(worker));
                    None
                }
            }
        };
        if let Ok(deliver) = deliver {
            let _ = catch_unwind(AssertUnwindSafe(deliver));
        }
        job = match next {
            Some(next) => next,
            None => match wait_for_job(pool, worker) {
                Some(next) => next,
                None => return,
            },
        };
    }
}

/// Waits for a job in `worker`'s slot; `None` after [`KEEP_ALIVE`] without one, once the
/// worker is off the idle list (so that nobody hands it a job after it has gone).
fn wait_for_job(pool: &Pool, worker: &Arc<Worker>) -> Option<Job> {
    let mut slot = worker.slot.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = slot.take() {
            return Some(job);
        }
        let (guard, timeout) = worker
            .wake
            .wait_timeout(slot, KEEP_ALIVE)
            .unwrap_or_else(PoisonError::into_inner);
        slot = guard;
        if timeout.timed_out() && slot.is_none() {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(position) = state.idle.iter().position(|w| Arc::ptr_eq(w, worker)) {
                state.idle.remove(position);
                state.threads -= 1;
                return None;
            }
            // Taken off the idle list by a submitter a moment ago: its job is on the way.
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::thread::ThreadId;

    use super::{Job, MAX_THREADS, submit};

    /// The pool's tests one at a time: the thread-reuse test counts threads, and a test that
    /// floods the pool beside it made a sequence of jobs meet other idle threads (seen in CI:
    /// 9 threads for 50 jobs).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs `work` on the pool and waits for its result, as a future would.
    fn run_on_pool<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
        let (sender, receiver) = mpsc::channel();
        let job: Job = Box::new(move || {
            let result = work();
            Box::new(move || drop(sender.send(result)))
        });
        submit(job);
        receiver.recv().expect("the job ran")
    }

    #[test]
    fn one_job_after_another_reuses_one_thread() {
        let _serial = serial();
        let threads: HashSet<ThreadId> = (0..50)
            .map(|_| run_on_pool(|| std::thread::current().id()))
            .collect();
        // Other tests share the pool, so another thread may take a turn; never one per job.
        assert!(threads.len() <= 3, "{} threads for 50 jobs", threads.len());
    }

    #[test]
    fn concurrent_jobs_all_finish_even_beyond_the_thread_cap() {
        let _serial = serial();
        let (sender, receiver) = mpsc::channel();
        let jobs = MAX_THREADS * 3;
        for i in 0..jobs {
            let sender = sender.clone();
            submit(Box::new(move || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                Box::new(move || {
                    let _ = sender.send(i);
                })
            }));
        }
        let mut done: Vec<usize> = receiver.iter().take(jobs).collect();
        done.sort_unstable();
        assert_eq!(done, (0..jobs).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let _serial = serial();
        let (sender, receiver) = mpsc::channel::<()>();
        submit(Box::new(move || {
            let _keep = sender;
            panic!("job failed on purpose");
        }));
        // The panicking job's hand-over never ran: its sender was dropped with it.
        assert!(receiver.recv().is_err());
        assert_eq!(run_on_pool(|| 7), 7);
    }
}
