//! Collections on the network backends with [`Options`](crate::Options): what
//! [`Options::postgres`](crate::Options::postgres) and [`Options::s3`](crate::Options::s3) (and
//! the defaults' shorthands [`Collection::postgres`] and [`Collection::s3`]) open.
#![cfg(any(feature = "postgres", feature = "s3"))]

#[cfg(feature = "postgres")]
use std::path::PathBuf;
use std::sync::Arc;

use super::{CacheSettings, Collection};
use crate::settings::Settings;
use crate::{Error, Persisted};

impl<T: Persisted + Clone + Send + Sync + 'static> Collection<T> {
    /// The collection in the PostgreSQL table `table` (created, or upgraded, if needed) of the
    /// database `config` describes, with these settings; connected on persist's worker threads.
    #[cfg(feature = "postgres")]
    pub(crate) async fn postgres_with(
        settings: Settings,
        cache: Option<CacheSettings>,
        config: &str,
        table: &str,
    ) -> Result<Self, Error> {
        let (config, table) = (config.to_owned(), table.to_owned());
        let connected = crate::Pending::new(PathBuf::from("postgres:"), move |_| {
            crate::backend::Postgres::connect(&config, &table)
        })
        .await?;
        Ok(Collection::on(Arc::new(connected), settings, cache))
    }

    /// The collection in the objects under `prefix` of `store`, with these settings, once a
    /// listing of the prefix has shown that the store answers ([`S3::check`]).
    ///
    /// [`S3::check`]: crate::backend::S3::check
    #[cfg(feature = "s3")]
    pub(crate) async fn s3_with(
        settings: Settings,
        cache: Option<CacheSettings>,
        store: Arc<dyn crate::backend::object_store::ObjectStore>,
        prefix: &str,
    ) -> Result<Self, Error> {
        let backend = crate::backend::S3::new(store, prefix)?;
        backend.check_async().await?;
        Ok(Collection::on(Arc::new(backend), settings, cache))
    }
}
