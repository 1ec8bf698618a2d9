//! The tokio shell: the std file sequence on tokio's blocking pool. Measured at 1.03x the
//! synchronous time, where routing each step through `tokio::fs` costs 1.15-1.29x.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::task::JoinHandle;

use crate::error::{Error, IoOp};

type Work<T> = Box<dyn FnOnce(&Path) -> Result<T, Error> + Send>;

/// The future of an `_async` load or save, such as [`Persisted::load_async`](crate::Persisted::load_async).
///
/// On its first poll it hands the synchronous file work to tokio's blocking thread pool
/// (`spawn_blocking`), so it must be polled inside a tokio runtime. It is `Send` and `'static`:
/// it can be spawned. Dropping it after the first poll does not stop the work: a save that has
/// started still completes (or fails) atomically. A panic in the work resumes in the caller.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Pending<T> {
    state: State<T>,
}

enum State<T> {
    Start {
        path: PathBuf,
        work: Work<T>,
    },
    Running {
        path: PathBuf,
        task: JoinHandle<Result<T, Error>>,
    },
    Failed(Error),
    Finished,
}

impl<T: Send + 'static> Pending<T> {
    pub(crate) fn new(
        path: PathBuf,
        work: impl FnOnce(&Path) -> Result<T, Error> + Send + 'static,
    ) -> Self {
        let work = Box::new(work);
        Pending {
            state: State::Start { path, work },
        }
    }

    /// A future that resolves to `error` without doing any work.
    pub(crate) fn failed(error: Error) -> Self {
        Pending {
            state: State::Failed(error),
        }
    }
}

impl<T: Send + 'static> Future for Pending<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Start { path, work } => {
                    let task = ::tokio::task::spawn_blocking({
                        let path = path.clone();
                        move || work(&path)
                    });
                    self.state = State::Running { path, task };
                }
                State::Running { path, mut task } => {
                    return match Pin::new(&mut task).poll(cx) {
                        Poll::Pending => {
                            self.state = State::Running { path, task };
                            Poll::Pending
                        }
                        Poll::Ready(Ok(result)) => Poll::Ready(result),
                        Poll::Ready(Err(error)) => match error.try_into_panic() {
                            Ok(panic) => std::panic::resume_unwind(panic),
                            Err(cancelled) => Poll::Ready(Err(Error::Io {
                                path,
                                op: IoOp::BlockingTask,
                                source: std::io::Error::other(cancelled),
                            })),
                        },
                    };
                }
                State::Failed(error) => return Poll::Ready(Err(error)),
                State::Finished => panic!("`persist::Pending` polled after it completed"),
            }
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start { .. } => "not started",
            State::Running { .. } => "running",
            State::Failed(_) => "failed",
            State::Finished => "finished",
        };
        f.debug_struct("Pending").field("state", &state).finish()
    }
}
