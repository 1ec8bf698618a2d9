//! The fault seam: every step of the shell that touches the disk (open, create, write, sync,
//! rename, remove, ...) asks [`fault`] first, so tests can make any step fail for real with any
//! `errno` and check what the failure leaves. A fault is scoped to a directory (it hits only
//! operations on files under it, from any thread), so tests running side by side do not see
//! each other's faults.
//!
//! Compiled in for the crate's own tests and with the `testing` feature
//! ([`testing::inject_fault`](crate::testing::inject_fault)); otherwise [`fault`] is an empty
//! inline function.

use std::io;
use std::path::Path;

use crate::error::IoOp;

#[cfg(any(test, feature = "testing"))]
mod seam {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::error::IoOp;

    /// One planned failure.
    #[derive(Debug)]
    pub(crate) struct Planned {
        pub(crate) id: u64,
        pub(crate) under: PathBuf,
        pub(crate) op: IoOp,
        pub(crate) errno: i32,
        /// Matching steps to let through first.
        pub(crate) skip: u32,
        /// Matching steps to fail after that.
        pub(crate) times: u32,
        /// How many steps failed.
        pub(crate) hits: u32,
    }

    /// How many faults are planned: the fast path of every step reads only this.
    pub(crate) static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    pub(crate) static PLANS: Mutex<Vec<Planned>> = Mutex::new(Vec::new());

    pub(crate) fn plans() -> std::sync::MutexGuard<'static, Vec<Planned>> {
        PLANS.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn check(op: IoOp, path: &Path) -> std::io::Result<()> {
        if ACTIVE.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut plans = plans();
        for plan in plans.iter_mut() {
            if plan.op != op || !path.starts_with(&plan.under) {
                continue;
            }
            if plan.skip > 0 {
                plan.skip -= 1;
                continue;
            }
            if plan.times > 0 {
                plan.times -= 1;
                plan.hits += 1;
                return Err(std::io::Error::from_raw_os_error(plan.errno));
            }
        }
        Ok(())
    }
}

/// Fails with the planned error if a fault is planned for `op` on a file under `path`'s
/// directory.
#[cfg(any(test, feature = "testing"))]
#[inline]
pub(crate) fn fault(op: IoOp, path: &Path) -> io::Result<()> {
    seam::check(op, path)
}

#[cfg(not(any(test, feature = "testing")))]
#[inline(always)]
pub(crate) fn fault(_op: IoOp, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// A planned fault ([`testing::inject_fault`](crate::testing::inject_fault)), withdrawn when
/// dropped.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
#[must_use = "the fault is withdrawn when this is dropped"]
pub struct Fault {
    id: u64,
}

#[cfg(any(test, feature = "testing"))]
impl Fault {
    /// How many steps this fault made fail so far.
    pub fn hits(&self) -> u32 {
        seam::plans()
            .iter()
            .find(|plan| plan.id == self.id)
            .map_or(0, |plan| plan.hits)
    }
}

#[cfg(any(test, feature = "testing"))]
impl Drop for Fault {
    fn drop(&mut self) {
        let mut plans = seam::plans();
        let before = plans.len();
        plans.retain(|plan| plan.id != self.id);
        if plans.len() < before {
            seam::ACTIVE.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Plans a fault: after letting `skip` matching steps through, the next `times` steps `op` on
/// files under `under` fail with `errno`.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn plan(under: &Path, op: IoOp, errno: i32, skip: u32, times: u32) -> Fault {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let under = std::path::absolute(under).unwrap_or_else(|_| under.to_owned());
    seam::plans().push(seam::Planned {
        id,
        under,
        op,
        errno,
        skip,
        times,
        hits: 0,
    });
    seam::ACTIVE.fetch_add(1, Ordering::AcqRel);
    Fault { id }
}

/// The crate's unit tests: `errno`-EIO faults, once.
#[cfg(test)]
pub(crate) fn inject_fault(under: &Path, op: IoOp) -> Fault {
    plan(under, op, libc::EIO, 0, 1)
}
