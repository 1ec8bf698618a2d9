//! A collection in a PostgreSQL table (feature `postgres`), through tokio-postgres.
//!
//! One row per entry: `name TEXT PRIMARY KEY, data BYTEA, schema_version INTEGER, version
//! BIGINT`, where `version` counts the row's writes and is the entry's [`Tag`]: a conditional
//! write is an `UPDATE … WHERE version = $tag` (or an `INSERT … ON CONFLICT DO NOTHING`), so
//! compare-and-swap needs no lock. The backend owns its connections (a small pool, each with
//! its statements prepared once) and a small runtime (two threads) that drives them, so it
//! works from sync code and from any executor.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::{Client, NoTls, Statement};

use super::runtime::Runtime;
use super::{Backend, BackendFuture, Condition, Entry, Stored, Tag, Written};
use crate::Error;
use crate::error::{IoOp, RemoteOp};

/// How many connections a backend opens at most, by default.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// A PostgreSQL table as a [`Backend`]; [`Collection::postgres`](crate::Collection::postgres)
/// opens a collection on one.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    /// The table, quoted as an identifier.
    table: String,
    /// `postgres://host/database/table`: where entries are, for errors.
    label: String,
    /// `host:port`: the server, for errors.
    server: String,
    /// Each connection is shared by the queries that use it at once (tokio-postgres pipelines
    /// them) and taken whole by a transaction or a reconnection.
    slots: Vec<tokio::sync::RwLock<Option<Connection>>>,
    /// Queries under way on each connection: a query takes the least busy one, so that
    /// concurrent callers spread over the pool while a single caller keeps one warm
    /// connection (and one server process).
    busy: Vec<AtomicUsize>,
    /// When each connection was last taken (a tick of `ticks`): among equally busy ones the
    /// most recently used is warmest.
    taken: Vec<AtomicUsize>,
    ticks: AtomicUsize,
    runtime: Runtime,
}

/// A connection and its prepared statements.
struct Connection {
    client: Client,
    get: Statement,
    upsert: Statement,
    insert: Statement,
    update_if: Statement,
    delete: Statement,
    delete_if: Statement,
    list: Statement,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("table", &self.inner.label)
            .field("connections", &self.inner.slots.len())
            .finish()
    }
}

/// A PostgreSQL error as persist's: [`Error::Remote`] naming the entry, the operation and the
/// server (`host:port`), with the client's error (and its causes: the OS error of a refused
/// connection, the server's message and SQLSTATE).
fn db_error(
    path: PathBuf,
    op: RemoteOp,
    server: String,
) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |error| Error::Remote {
        path,
        op,
        server: format!("the PostgreSQL server at {server}"),
        transient: transient(&error),
        source: Box::new(error),
    }
}

/// Whether a PostgreSQL failure may go away by itself: anything on the way to the server (no
/// connection, a closed one, a time-out), and the server's own "try again" classes (connection
/// exceptions, insufficient resources, an operator intervention such as a shutdown, a
/// serialization failure or a deadlock).
fn transient(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
        None => true,
    }
}

/// Quotes `name` as an SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Postgres {
    /// Connects to the database `config` describes (a libpq connection string such as
    /// `host=localhost user=app dbname=app`, or a `postgresql://` URL), creates the table if
    /// it does not exist, and opens up to [`DEFAULT_CONNECTIONS`] connections as needed.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] for a malformed `config` (not transient), when the server cannot be
    /// reached or refuses to create the table; [`Error::InvalidPath`] for an empty table name.
    pub fn connect(config: &str, table: &str) -> Result<Postgres, Error> {
        Postgres::connect_with(config, table, DEFAULT_CONNECTIONS)
    }

    /// [`connect`](Postgres::connect) with at most `connections` connections (at least 1).
    ///
    /// # Errors
    ///
    /// See [`connect`](Postgres::connect).
    pub fn connect_with(config: &str, table: &str, connections: usize) -> Result<Postgres, Error> {
        let config: tokio_postgres::Config = config.parse().map_err(|error| Error::Remote {
            path: PathBuf::from("postgres:"),
            op: RemoteOp::Connect,
            server: "PostgreSQL (the connection string is not valid)".to_owned(),
            transient: false,
            source: Box::new(error),
        })?;
        let host = config
            .get_hosts()
            .first()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let server = format!("{host}:{port}");
        let label = format!(
            "postgres://{host}/{}/{table}",
            config.get_dbname().unwrap_or_default(),
        );
        if table.is_empty() {
            return Err(Error::InvalidPath {
                path: PathBuf::from(label),
                reason: "the table name is empty".into(),
            });
        }
        let runtime = Runtime::start("persist-postgres").map_err(|source| Error::Io {
            path: PathBuf::from(&label),
            op: IoOp::BlockingTask,
            source,
        })?;
        let postgres = Postgres {
            inner: Arc::new(Inner {
                config,
                table: quote_identifier(table),
                label,
                server,
                slots: (0..connections.max(1))
                    .map(|_| tokio::sync::RwLock::new(None))
                    .collect(),
                busy: (0..connections.max(1))
                    .map(|_| AtomicUsize::new(0))
                    .collect(),
                taken: (0..connections.max(1))
                    .map(|_| AtomicUsize::new(0))
                    .collect(),
                ticks: AtomicUsize::new(0),
                runtime,
            }),
        };
        let inner = Arc::clone(&postgres.inner);
        postgres
            .inner
            .runtime
            .block(async move { inner.create_table().await })?;
        Ok(postgres)
    }

    /// Runs `work` with one of the pooled connections (connected first if needed), waiting
    /// for it; see [`on_connection`](Postgres::on_connection).
    fn with_connection<R, F>(&self, name: &str, op: RemoteOp, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c Connection) -> Query<'c, R> + Send + 'static,
    {
        self.inner.runtime.block(self.on_connection(name, op, work))
    }

    /// The future of `work` on one of the pooled connections, shared with other queries
    /// (connected first if needed); a connection that failed is closed, and its next use
    /// connects again. It runs on any executor: the connections are driven by the backend's
    /// own runtime.
    fn on_connection<R, F>(
        &self,
        name: &str,
        op: RemoteOp,
        work: F,
    ) -> impl Future<Output = Result<R, Error>> + Send + 'static
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c Connection) -> Query<'c, R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        // The entry's path is built only for an error.
        let backend = self.clone();
        let name = name.to_owned();
        let path = move || backend.locate(&name);
        async move {
            let (index, _busy) = inner.least_busy();
            let slot = &inner.slots[index];
            let guard = inner.connected(slot).await.map_err(|error| {
                db_error(path(), RemoteOp::Connect, inner.server.clone())(error)
            })?;
            let connection = guard.as_ref().expect("connected");
            // A connection that failed is closed: its next use connects again.
            work(connection)
                .await
                .map_err(|error| db_error(path(), op, inner.server.clone())(error))
        }
    }
}

/// The future of one piece of work on a connection.
type Query<'c, R> =
    std::pin::Pin<Box<dyn Future<Output = Result<R, tokio_postgres::Error>> + Send + 'c>>;

/// Reads the entry `key` on `connection`.
fn get_query(connection: &Connection, key: String) -> Query<'_, Option<Stored>> {
    Box::pin(async move {
        let row = connection
            .client
            .query_opt(&connection.get, &[&key])
            .await?;
        Ok(row.map(|row| Stored {
            bytes: row.get(0),
            tag: Tag::new(row.get::<_, i64>(1).to_string()),
        }))
    })
}

/// Writes the entry `key` on `connection` if `condition` holds.
fn put_query(
    connection: &Connection,
    key: String,
    bytes: Vec<u8>,
    version: u32,
    condition: Condition,
) -> Query<'_, Written> {
    let schema = i32::try_from(version).unwrap_or(i32::MAX);
    Box::pin(async move {
        let row = match &condition {
            Condition::Always => {
                connection
                    .client
                    .query_opt(&connection.upsert, &[&key, &bytes, &schema])
                    .await?
            }
            Condition::Absent => {
                connection
                    .client
                    .query_opt(&connection.insert, &[&key, &bytes, &schema])
                    .await?
            }
            Condition::Matches(tag) => match version_of(tag) {
                Some(expected) => {
                    connection
                        .client
                        .query_opt(&connection.update_if, &[&key, &bytes, &schema, &expected])
                        .await?
                }
                None => None,
            },
        };
        Ok(match row {
            Some(row) => Written::Done(Tag::new(row.get::<_, i64>(0).to_string())),
            None => Written::Conflict,
        })
    })
}

/// Counts a query on a connection until dropped (also when its future is dropped).
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    /// The connection with the fewest queries under way (of equals, the one taken last),
    /// counted as busy with one more until the returned guard drops.
    fn least_busy(&self) -> (usize, Busy<'_>) {
        let index = (0..self.busy.len())
            .min_by_key(|&index| {
                let busy = self.busy[index].load(Ordering::Relaxed);
                let taken = self.taken[index].load(Ordering::Relaxed);
                (busy, std::cmp::Reverse(taken))
            })
            .unwrap_or(0);
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        self.taken[index].store(tick, Ordering::Relaxed);
        self.busy[index].fetch_add(1, Ordering::Relaxed);
        (index, Busy(&self.busy[index]))
    }

    /// A shared hold on the connection of `slot`, connecting it first if it has none (or a
    /// closed one).
    async fn connected<'s>(
        &self,
        slot: &'s tokio::sync::RwLock<Option<Connection>>,
    ) -> Result<tokio::sync::RwLockReadGuard<'s, Option<Connection>>, tokio_postgres::Error> {
        {
            let shared = slot.read().await;
            if shared
                .as_ref()
                .is_some_and(|connection| !connection.client.is_closed())
            {
                return Ok(shared);
            }
        }
        Ok(self.connected_whole(slot).await?.downgrade())
    }

    /// The whole connection of `slot` (no other query may use it meanwhile), connected first
    /// if it has none or a closed one.
    async fn connected_whole<'s>(
        &self,
        slot: &'s tokio::sync::RwLock<Option<Connection>>,
    ) -> Result<tokio::sync::RwLockWriteGuard<'s, Option<Connection>>, tokio_postgres::Error> {
        let mut exclusive = slot.write().await;
        if exclusive
            .as_ref()
            .is_none_or(|connection| connection.client.is_closed())
        {
            *exclusive = Some(self.connect().await?);
        }
        Ok(exclusive)
    }

    async fn connect(&self) -> Result<Connection, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        // Driven by the backend's runtime, whichever executor this runs on.
        self.runtime.handle().spawn(async move {
            let _ = connection.await;
        });
        let table = &self.table;
        let get = client
            .prepare(&format!(
                "SELECT data, version FROM {table} WHERE name = $1"
            ))
            .await?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {table} AS t (name, data, schema_version, version) \
                 VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, \
                 schema_version = EXCLUDED.schema_version, version = t.version + 1 \
                 RETURNING version"
            ))
            .await?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {table} (name, data, schema_version, version) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (name) DO NOTHING RETURNING version"
            ))
            .await?;
        let update_if = client
            .prepare(&format!(
                "UPDATE {table} SET data = $2, schema_version = $3, version = version + 1 \
                 WHERE name = $1 AND version = $4 RETURNING version"
            ))
            .await?;
        let delete = client
            .prepare(&format!("DELETE FROM {table} WHERE name = $1"))
            .await?;
        let delete_if = client
            .prepare(&format!(
                "DELETE FROM {table} WHERE name = $1 AND version = $2"
            ))
            .await?;
        let list = client.prepare(&format!("SELECT name FROM {table}")).await?;
        Ok(Connection {
            client,
            get,
            upsert,
            insert,
            update_if,
            delete,
            delete_if,
            list,
        })
    }

    async fn create_table(&self) -> Result<(), Error> {
        let path = PathBuf::from(&self.label);
        let (client, connection) = self.config.connect(NoTls).await.map_err(db_error(
            path.clone(),
            RemoteOp::Connect,
            self.server.clone(),
        ))?;
        self.runtime.handle().spawn(async move {
            let _ = connection.await;
        });
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, data BYTEA NOT NULL, \
             schema_version INTEGER NOT NULL, version BIGINT NOT NULL)",
            self.table
        );
        // Two processes creating the table at once: one of them gets a unique violation on
        // the catalog, and the table is there; look again.
        match client.batch_execute(&create).await {
            Ok(()) => Ok(()),
            Err(_) => client.batch_execute(&create).await.map_err(db_error(
                path,
                RemoteOp::Setup,
                self.server.clone(),
            )),
        }
    }
}

/// The row version of a tag, if it is one.
fn version_of(tag: &Tag) -> Option<i64> {
    tag.as_str().parse().ok()
}

impl Backend for Postgres {
    fn root(&self) -> PathBuf {
        PathBuf::from(&self.inner.label)
    }

    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.inner.label))
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        let key = name.to_owned();
        self.with_connection(name, RemoteOp::Read, move |connection| {
            get_query(connection, key)
        })
    }

    fn get_native(&self, name: &str) -> Option<BackendFuture<Option<Stored>>> {
        let key = name.to_owned();
        Some(Box::pin(self.on_connection(
            name,
            RemoteOp::Read,
            move |connection| get_query(connection, key),
        )))
    }

    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let (key, bytes, version) = (name.to_owned(), entry.bytes.to_vec(), entry.version);
        let condition = condition.clone();
        self.with_connection(name, RemoteOp::Write, move |connection| {
            put_query(connection, key, bytes, version, condition)
        })
    }

    fn put_native(
        &self,
        name: &str,
        _key: String,
        bytes: Vec<u8>,
        version: u32,
        condition: Condition,
    ) -> Option<BackendFuture<Written>> {
        let key = name.to_owned();
        Some(Box::pin(self.on_connection(
            name,
            RemoteOp::Write,
            move |connection| put_query(connection, key, bytes, version, condition),
        )))
    }

    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        let key = name.to_owned();
        let condition = condition.clone();
        self.with_connection(name, RemoteOp::Delete, move |connection| {
            Box::pin(async move {
                let removed = match &condition {
                    Condition::Always => {
                        connection
                            .client
                            .execute(&connection.delete, &[&key])
                            .await?
                    }
                    Condition::Absent => 0,
                    Condition::Matches(tag) => match version_of(tag) {
                        Some(expected) => {
                            connection
                                .client
                                .execute(&connection.delete_if, &[&key, &expected])
                                .await?
                        }
                        None => 0,
                    },
                };
                Ok(removed > 0)
            })
        })
    }

    fn list(&self) -> Result<Vec<String>, Error> {
        self.with_connection("", RemoteOp::List, |connection| {
            Box::pin(async move {
                let rows = connection.client.query(&connection.list, &[]).await?;
                Ok(rows.into_iter().map(|row| row.get(0)).collect())
            })
        })
    }

    /// One transaction: every entry or none.
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        let rows: Vec<(String, Vec<u8>, i32)> = entries
            .iter()
            .map(|(name, entry)| {
                let schema = i32::try_from(entry.version).unwrap_or(i32::MAX);
                ((*name).to_owned(), entry.bytes.to_vec(), schema)
            })
            .collect();
        let inner = Arc::clone(&self.inner);
        let path = self.root();
        self.inner.runtime.block(async move {
            let (index, _busy) = inner.least_busy();
            let slot = &inner.slots[index];
            // The whole connection: no other query may land inside the transaction.
            let mut guard = inner.connected_whole(slot).await.map_err(db_error(
                path.clone(),
                RemoteOp::Connect,
                inner.server.clone(),
            ))?;
            let Connection { client, upsert, .. } = guard.as_mut().expect("connected above");
            let result = async {
                let transaction = client.transaction().await?;
                for (key, bytes, schema) in &rows {
                    transaction.execute(&*upsert, &[key, bytes, schema]).await?;
                }
                transaction.commit().await
            }
            .await;
            result.map_err(db_error(path, RemoteOp::Write, inner.server.clone()))
        })
    }
}
