//! Telemetry of each operation (features `tracing` and `metrics`): what was done to which file,
//! from which version to which, how many bytes, how long it took and how it ended; never the
//! data. Without either feature everything here is empty and inlined away.

use std::path::Path;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::time::Instant;

use crate::Error;

/// One load, save, update, restore or removal being measured.
pub(crate) struct Operation {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    name: &'static str,
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    started: Instant,
}

/// What an operation did, recorded when it ends (read only by the telemetry features).
#[derive(Default, Clone, Copy)]
#[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
pub(crate) struct Facts {
    /// The schema version found in the file, if any.
    pub(crate) from: Option<u64>,
    /// The schema version the program reads and writes.
    pub(crate) to: Option<u32>,
    /// Bytes read from the file.
    pub(crate) read: Option<u64>,
    /// Bytes written to the file.
    pub(crate) written: Option<u64>,
}

impl Operation {
    /// Starts measuring `name` (`load`, `save`, `update`, `restore`, `remove`) on `path`; under
    /// `tracing`, opens a span that the work runs in (enter it with [`Operation::in_span`]).
    #[inline]
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn start(name: &'static str, path: &Path) -> Operation {
        Operation {
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(
                "persist",
                op = name,
                path = %path.display(),
                from_version = tracing::field::Empty,
                to_version = tracing::field::Empty,
                bytes_read = tracing::field::Empty,
                bytes_written = tracing::field::Empty,
            ),
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            name,
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            started: Instant::now(),
        }
    }

    /// Runs `work` inside the operation's span.
    #[inline]
    pub(crate) fn in_span<R>(&self, work: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        work()
    }

    /// Ends the operation with its result.
    #[inline]
    pub(crate) fn finish<R>(self, result: &Result<R, Error>, facts: Facts) {
        match result {
            Ok(_) => self.end("ok", None, facts),
            Err(error) => self.end(outcome_of(error), Some(error), facts),
        }
    }

    /// Ends the operation with `outcome` (`ok`, an error kind from [`outcome_of`], or
    /// `refused` when a caller's closure declined).
    #[cfg_attr(
        not(any(feature = "tracing", feature = "metrics")),
        allow(unused_variables)
    )]
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn end(self, outcome: &'static str, error: Option<&Error>, facts: Facts) {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        let seconds = self.started.elapsed().as_secs_f64();
        #[cfg(feature = "tracing")]
        {
            let span = &self.span;
            if let Some(from) = facts.from {
                span.record("from_version", from);
            }
            if let Some(to) = facts.to {
                span.record("to_version", to);
            }
            if let Some(read) = facts.read {
                span.record("bytes_read", read);
            }
            if let Some(written) = facts.written {
                span.record("bytes_written", written);
            }
            let _entered = span.enter();
            match error {
                None => tracing::debug!(outcome, seconds, "persist {} ended", self.name),
                Some(error) => {
                    tracing::warn!(outcome, seconds, %error, "persist {} failed", self.name)
                }
            }
        }
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("persist_operations_total", "op" => self.name, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("persist_operation_seconds", "op" => self.name).record(seconds);
            if let Some(read) = facts.read {
                metrics::counter!("persist_bytes_read_total").increment(read);
            }
            if let Some(written) = facts.written {
                metrics::counter!("persist_bytes_written_total").increment(written);
            }
            if let (Some(from), Some(to), "ok") = (facts.from, facts.to, outcome)
                && from < u64::from(to)
            {
                metrics::counter!(
                    "persist_migrations_total",
                    "from" => from.to_string(),
                    "to" => to.to_string()
                )
                .increment(1);
            }
        }
    }
}

/// Counts one compare-and-swap that lost to another writer (and is tried again).
#[cfg(feature = "collection")]
#[inline]
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn conflicted(path: &Path) {
    #[cfg(feature = "tracing")]
    tracing::debug!(path = %path.display(), "persist: another writer changed the entry first, trying again");
    #[cfg(feature = "metrics")]
    metrics::counter!("persist_conflicts_total").increment(1);
}

/// Counts one read a collection's cache answered (`hit`) or did not.
#[cfg(feature = "cache")]
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn cache_read(hit: bool) {
    #[cfg(feature = "metrics")]
    if hit {
        metrics::counter!("persist_cache_hits_total").increment(1);
    } else {
        metrics::counter!("persist_cache_misses_total").increment(1);
    }
}

/// Counts one retry of an operation that failed with a transient error.
#[inline]
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn retried(error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::debug!(%error, "persist: transient failure, trying again");
    #[cfg(feature = "metrics")]
    metrics::counter!("persist_retries_total").increment(1);
}

/// A short name for an error's kind, for the `outcome` label (never the message).
pub(crate) fn outcome_of(error: &Error) -> &'static str {
    error.kind().as_str()
}
