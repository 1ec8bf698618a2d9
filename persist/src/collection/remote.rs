//! Collections on the network backends with [`Options`](crate::Options): what
//! [`Options::postgres`](crate::Options::postgres) and [`Options::s3`](crate::Options::s3) (and
//! the defaults' shorthands [`Collection::postgres`] and [`Collection::s3`]) open.
#![cfg(any(feature = "postgres", feature = "s3"))]

#[cfg(feature = "postgres")]
use std::path::PathBuf;
use std::sync::Arc;

use super::{CacheSettings, Collection};
use crate::Persisted;
use crate::settings::Settings;

impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// The collection in the PostgreSQL table `table` (created, or upgraded, if needed) of the
    /// database `config` describes, with these settings; connected on persist's worker threads.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_with(
        settings: Settings,
        cache: Option<CacheSettings>,
        config: String,
        table: String,
    ) -> crate::Pending<Self> {
        crate::Pending::new(PathBuf::from("postgres:"), move |_| {
            let connected = crate::backend::Postgres::connect(&config, &table)?;
            Ok(Collection::on(Arc::new(connected), settings, cache))
        })
    }

    /// The collection in the objects under `prefix` of `store`, with these settings, once a
    /// listing of the prefix has shown that the store answers ([`S3::check`]).
    ///
    /// [`S3::check`]: crate::backend::S3::check
    #[cfg(feature = "s3")]
    pub(crate) fn s3_with(
        settings: Settings,
        cache: Option<CacheSettings>,
        store: Arc<dyn crate::backend::object_store::ObjectStore>,
        prefix: String,
    ) -> crate::Pending<Self> {
        let backend = match crate::backend::S3::new(store, &prefix) {
            Ok(backend) => backend,
            Err(error) => return crate::Pending::failed(error),
        };
        let checked = backend.check_async();
        crate::Pending::native(async move {
            checked.await?;
            Ok(Collection::on(Arc::new(backend), settings, cache))
        })
    }
}
