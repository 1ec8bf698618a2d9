//! The tokio runtime a network backend owns (PostgreSQL, S3): two worker threads that drive
//! its connections, so that the backend works from sync code and from any executor.

use std::future::Future;
use std::io;

/// A backend's own runtime; shut down without waiting when dropped.
pub(super) struct Runtime {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// Starts the two threads, named `name`.
    pub(super) fn start(name: &str) -> io::Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Runtime {
            runtime: Some(runtime),
        })
    }

    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .unwrap_or_else(|| unreachable!("the runtime lives as long as the backend"))
    }

    /// Runs `future` on this runtime and waits for it: on the calling thread when it is not
    /// inside a runtime (no hand-off: it sleeps until the connection task answers), otherwise
    /// on a worker of this runtime, with a plain blocking wait (a nested `block_on` would
    /// panic there).
    pub(super) fn block<R: Send + 'static>(
        &self,
        future: impl Future<Output = R> + Send + 'static,
    ) -> R {
        let handle = self.handle();
        if tokio::runtime::Handle::try_current().is_err() {
            return handle.block_on(future);
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver
            .recv()
            .unwrap_or_else(|_| panic!("the runtime of a persist backend stopped"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Without waiting: the last handle may be dropped on a thread of another runtime,
        // where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
