//! Retrying transient failures ([`Options::retry`](crate::Options::retry)): bounded attempts,
//! exponential backoff with jitter, and only for errors that may go away by themselves.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::Error;

/// How often and how patiently a call retries; attempts = 1 means no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
}

impl Retry {
    pub(crate) const NONE: Retry = Retry {
        attempts: 1,
        backoff: Duration::ZERO,
    };

    /// Runs `operation` until it succeeds, fails with an error that is not transient, or has run
    /// `attempts` times; returns its last result. Waits `backoff`, then twice that, ... (at most
    /// 32x), each wait jittered to 50-150 % so that processes that failed together do not retry
    /// together.
    pub(crate) fn run<R>(
        self,
        mut operation: impl FnMut() -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut attempt = 1;
        loop {
            match operation() {
                Err(error) if attempt < self.attempts && error.is_transient() => {
                    crate::telemetry::retried(&error);
                    std::thread::sleep(self.delay(attempt));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn delay(self, attempt: u32) -> Duration {
        let base = self.backoff.saturating_mul(1 << (attempt - 1).min(5));
        // 50-150 % of the base, from a per-call random seed (std's hasher keys are random).
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        let jitter = 0.5 + (hasher.finish() % 1_000) as f64 / 1_000.0;
        base.mul_f64(jitter)
    }
}

/// A random wait between zero and `ceiling` ("full jitter"): what writers that lost a
/// compare-and-swap to each other sleep before trying again, so that they spread out instead of
/// colliding again in step.
#[cfg(any(feature = "collection", feature = "live"))]
pub(crate) fn full_jitter(ceiling: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(ceiling.as_nanos() as u64);
    ceiling.mul_f64((hasher.finish() % 10_000) as f64 / 10_000.0)
}

impl Error {
    /// Whether the failure may go away by itself, so that trying again makes sense: an
    /// interrupted or busy system call (EINTR, EAGAIN, EBUSY, ETXTBSY), a stale NFS handle
    /// (ESTALE), a time-out, a lock held too long by another process, a remote store that
    /// cannot be reached for now ([`ErrorKind::is_transient`](crate::ErrorKind::is_transient)).
    /// Never for what a retry cannot change: a missing, corrupt, newer or undecryptable file, a refused migration, a
    /// value that cannot be saved, a full or read-only disk.
    ///
    /// [`Options::retry`](crate::Options::retry) retries exactly these.
    ///
    /// # Examples
    ///
    /// ```
    /// let busy = persist::Error::Io {
    ///     path: "state.json".into(),
    ///     op: persist::IoOp::Rename,
    ///     source: std::io::ErrorKind::ResourceBusy.into(),
    /// };
    /// assert!(busy.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }
}

#[cfg(test)]
mod tests {
    //! Transient failures injected for real through the file shell's fault seam.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use crate::shell::commit::tests::entries;
    use crate::shell::faults::plan;
    use crate::{BoxError, Error, IoOp, Options, Origin, Persisted};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Count {
        n: u32,
    }

    impl Persisted for Count {
        const VERSION: u32 = 1;
        type Previous = Origin;
        fn migrate(previous: Origin) -> Result<Self, BoxError> {
            match previous {}
        }
    }

    fn retrying(attempts: u32) -> Options {
        Options::new().retry(attempts, Duration::from_millis(1))
    }

    #[test]
    fn a_save_that_meets_transient_errors_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count.json");
        let _fault = plan(dir.path(), IoOp::Write, libc::EAGAIN, 0, 2);
        retrying(3).save(&Count { n: 7 }, &path).unwrap();
        assert_eq!(Count::load(&path).unwrap(), Count { n: 7 });
        assert_eq!(entries(dir.path()), ["count.json"]);

        // One attempt too few: the last error is returned, the old file kept, no temp left.
        let _fault = plan(dir.path(), IoOp::Rename, libc::EBUSY, 0, 2);
        match retrying(2).save(&Count { n: 8 }, &path) {
            Err(Error::Io { op, source, .. }) => {
                assert_eq!(op, IoOp::Rename);
                assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Count::load(&path).unwrap(), Count { n: 7 });
        assert_eq!(entries(dir.path()), ["count.json"]);
    }

    #[test]
    fn a_load_that_meets_transient_errors_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count.json");
        Count { n: 3 }.save(&path).unwrap();
        let _fault = plan(dir.path(), IoOp::Open, libc::EINTR, 0, 3);
        assert_eq!(retrying(4).load::<Count>(&path).unwrap(), Count { n: 3 });
        let _fault = plan(dir.path(), IoOp::Open, libc::ESTALE, 0, 1);
        assert!(matches!(
            Options::new().load::<Count>(&path),
            Err(Error::Io { op: IoOp::Open, .. })
        ));
    }

    #[test]
    fn errors_a_retry_cannot_change_are_returned_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count.json");
        // Two EIO in a row: a retry would succeed at the third attempt; none is made.
        let fault = plan(dir.path(), IoOp::SyncFile, libc::EIO, 0, 2);
        assert!(matches!(
            retrying(5).save(&Count { n: 1 }, &path),
            Err(Error::Io {
                op: IoOp::SyncFile,
                ..
            })
        ));
        drop(fault);
        for errno in [libc::EIO, libc::ENOSPC, libc::EROFS, libc::EACCES] {
            let error = Error::Io {
                path: path.clone(),
                op: IoOp::Write,
                source: std::io::Error::from_raw_os_error(errno),
            };
            assert!(!error.is_transient(), "{errno}");
        }
        for errno in [
            libc::EINTR,
            libc::EAGAIN,
            libc::EBUSY,
            libc::ETXTBSY,
            libc::ESTALE,
        ] {
            let error = Error::Io {
                path: path.clone(),
                op: IoOp::Write,
                source: std::io::Error::from_raw_os_error(errno),
            };
            assert!(error.is_transient(), "{errno}");
        }
        std::fs::write(&path, br#"{"version":1,"data":{"n":"x"}}"#).unwrap();
        let corrupt = retrying(3).load::<Count>(&path).unwrap_err();
        assert!(matches!(corrupt, Error::Corrupt { .. }));
        assert!(!corrupt.is_transient());
    }

    #[test]
    fn an_update_waits_out_a_lock_held_too_long_for_one_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count.json");
        let held = crate::shell::lock::exclusive(&path, None).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            drop(held);
        });
        // Each attempt waits 10 ms for the lock; ten attempts with backoff outlast the holder.
        let options = Options::new()
            .lock_timeout(Some(Duration::from_millis(10)))
            .retry(10, Duration::from_millis(10));
        let count = options
            .update(&path, |count: &mut Count| count.n += 1)
            .unwrap();
        assert_eq!(count.n, 1);
        releaser.join().unwrap();
        let timeout = Error::LockTimeout {
            path: path.clone(),
            lock_path: path,
            waited: Duration::from_millis(10),
        };
        assert!(timeout.is_transient());
    }
}
