//! Read-modify-write of a state file under its lock: one sequence behind every form of
//! [`Options::update`](crate::Options::update): lock, load (or start from the initial value),
//! change, save, unlock.

use std::path::Path;

use crate::settings::Settings;
use crate::shell::{AuditOp, lock};
use crate::telemetry::{Facts, Operation, outcome_of};
use crate::{Error, Persisted};

/// The one read-modify-write: lock, load or `initial()`, `change`, save unless `change`
/// failed, unlock (when the guard drops, also on a panic in `change`). With
/// [`Options::retry`](crate::Options::retry), taking the lock and loading are retried together,
/// and the save by itself; `change` runs once.
pub(crate) fn modify<T: Persisted, R, E: From<Error>>(
    settings: &Settings,
    path: &Path,
    initial: impl FnOnce() -> T,
    change: impl FnOnce(&mut T) -> Result<R, E>,
) -> Result<(T, R), E> {
    let operation = Operation::start("update", path);
    let mut outcome = "ok";
    // The nested load and save are operations of their own, with the versions and sizes.
    let facts = Facts {
        to: Some(T::VERSION),
        ..Facts::default()
    };
    let failed = |outcome: &mut &'static str, error: Error| {
        *outcome = outcome_of(&error);
        E::from(error)
    };
    let result = operation.in_span(|| {
        let (_lock, loaded) = settings
            .disk
            .retry
            .run(|| {
                let lock = lock::exclusive(path, settings.disk.lock_timeout)?;
                // No file (or, under `OnCorrupt::Default`, no copy of it that loads): the
                // initial value.
                let loaded = super::recover::load::<T>(settings, path, true, true)?;
                Ok((lock, loaded.value))
            })
            .map_err(|error| failed(&mut outcome, error))?;
        let mut value = match loaded {
            Some(value) => value,
            None => initial(),
        };
        let result = change(&mut value).inspect_err(|_| outcome = "refused")?;
        super::save(settings, &value, path, AuditOp::Update)
            .map_err(|error| failed(&mut outcome, error))?;
        Ok((value, result))
    });
    operation.end(outcome, None, facts);
    result
}
