//! Collections in one redb database file with [`Options`](crate::Options): what
//! [`Options::redb`](crate::Options::redb) (and the defaults' shorthand [`Collection::redb`])
//! open.
#![cfg(feature = "redb")]

use std::path::Path;
use std::sync::Arc;

use super::{CacheSettings, Collection};
use crate::backend::Redb;
use crate::settings::Settings;
use crate::{Error, Persisted};

impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// A collection in the redb database file `path` (created if missing, mode 0600), with
    /// the default [`Options`](crate::Options); see [`backend::Redb`](crate::backend::Redb).
    /// [`Options::redb`](crate::Options::redb) is this with other options.
    ///
    /// # Errors
    ///
    /// See [`Redb::open`].
    pub fn redb(path: impl AsRef<Path>) -> Result<Self, Error> {
        Collection::redb_with(&Settings::DEFAULT, None, path.as_ref())
    }

    /// The collection in the database file `path`, opened waiting up to the settings' lock
    /// timeout for another process, committing with their durability.
    pub(crate) fn redb_with(
        settings: &Settings,
        cache: Option<CacheSettings>,
        path: &Path,
    ) -> Result<Self, Error> {
        let backend = Redb::open_waiting(path, settings.disk.lock_timeout)?
            .durability(settings.disk.durability);
        Ok(Collection::on(Arc::new(backend), settings.clone(), cache))
    }
}
