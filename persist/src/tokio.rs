//! The async shell: the std file sequence on persist's worker threads ([`crate::worker`]),
//! awaited through a oneshot channel. One thread hand-off for the whole sequence, not one per
//! system call as `tokio::fs` would make (BENCHMARKS.md has the comparison).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::sync::oneshot;

use crate::error::{Error, IoOp};
use crate::worker;

type Work<T, E> = Box<dyn FnOnce(&Path) -> Result<T, E> + Send>;

/// The future of an `_async` load or save, such as [`Persisted::load_async`](crate::Persisted::load_async).
///
/// On its first poll it hands the synchronous file work to one of persist's worker threads
/// (a small pool of its own, not tokio's blocking pool: see BENCHMARKS.md, "Async loads and
/// glibc's arenas"), so no worker thread of the runtime waits for the disk. It needs no
/// particular runtime: tokio, or any executor. It is `Send` and `'static`: it can be spawned.
/// Dropping it after the first poll does not stop the work: a save that has started still
/// completes (or fails) atomically. A panic in the work resumes in the caller.
///
/// Its output is `Result<T, E>`: `E` is [`Error`], except for the `try_update` family, whose
/// closure chooses its own error type (one that a persist [`Error`] converts into).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Pending<T, E = Error> {
    state: State<T, E>,
}

enum State<T, E> {
    Start {
        path: PathBuf,
        work: Work<T, E>,
    },
    Running {
        path: PathBuf,
        result: oneshot::Receiver<std::thread::Result<Result<T, E>>>,
    },
    /// An operation that is async by nature (a collection's network backend, a journal's wait
    /// for its group commit), polled on the caller's executor.
    Native(Pin<Box<dyn Future<Output = Result<T, E>> + Send>>),
    Failed(E),
    Finished,
}

impl<T: Send + 'static, E: From<Error> + Send + 'static> Pending<T, E> {
    pub(crate) fn new(
        path: PathBuf,
        work: impl FnOnce(&Path) -> Result<T, E> + Send + 'static,
    ) -> Self {
        let work = Box::new(work);
        Pending {
            state: State::Start { path, work },
        }
    }

    /// A future that runs `future` itself, on the caller's executor, instead of handing work
    /// to a worker thread.
    pub(crate) fn native(future: impl Future<Output = Result<T, E>> + Send + 'static) -> Self {
        Pending {
            state: State::Native(Box::pin(future)),
        }
    }

    /// A future that resolves to `error` without doing any work.
    pub(crate) fn failed(error: E) -> Self {
        Pending {
            state: State::Failed(error),
        }
    }
}

// Nothing in a `Pending` is ever pinned: its state is moved in and out whole, so it is `Unpin`
// whatever `T` and `E` are.
impl<T, E> Unpin for Pending<T, E> {}

impl<T: Send + 'static, E: From<Error> + Send + 'static> Future for Pending<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Start { path, work } => {
                    let (sender, result) = oneshot::channel();
                    let job_path = path.clone();
                    worker::submit(Box::new(move || {
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                work(&job_path)
                            }));
                        // Handed over once the worker is idle again (see `worker`). A caller
                        // that dropped the future no longer wants the result.
                        Box::new(move || drop(sender.send(outcome)))
                    }));
                    self.state = State::Running { path, result };
                }
                State::Running { path, mut result } => {
                    return match Pin::new(&mut result).poll(cx) {
                        Poll::Pending => {
                            self.state = State::Running { path, result };
                            Poll::Pending
                        }
                        Poll::Ready(Ok(Ok(result))) => Poll::Ready(result),
                        Poll::Ready(Ok(Err(panic))) => std::panic::resume_unwind(panic),
                        Poll::Ready(Err(gone)) => Poll::Ready(Err(Error::Io {
                            path,
                            op: IoOp::BlockingTask,
                            source: std::io::Error::other(gone),
                        }
                        .into())),
                    };
                }
                State::Native(mut future) => {
                    return match future.as_mut().poll(cx) {
                        Poll::Pending => {
                            self.state = State::Native(future);
                            Poll::Pending
                        }
                        ready => ready,
                    };
                }
                State::Failed(error) => return Poll::Ready(Err(error)),
                State::Finished => panic!("`persist::Pending` polled after it completed"),
            }
        }
    }
}

impl<T, E> fmt::Debug for Pending<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start { .. } => "not started",
            State::Running { .. } => "running",
            State::Native(_) => "running",
            State::Failed(_) => "failed",
            State::Finished => "finished",
        };
        f.debug_struct("Pending").field("state", &state).finish()
    }
}
