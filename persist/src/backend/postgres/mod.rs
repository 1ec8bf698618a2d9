//! A collection in a PostgreSQL table (feature `postgres`), through tokio-postgres.
//!
//! One row per entry:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS <table> (
//!     name TEXT COLLATE "C" PRIMARY KEY,  -- the entry name (FORMAT.md, section 5)
//!     data BYTEA NOT NULL,                -- the entry's bytes, exactly as put
//!     schema_version INTEGER NOT NULL,    -- the schema version they hold
//!     version BIGINT NOT NULL,            -- the entry's tag: larger at every write
//!     key TEXT,                           -- the key, for queries (NULL: see below)
//!     value JSONB                         -- the envelope's `data`, for queries (NULL: see below)
//! );
//! CREATE INDEX ON <table> (key);
//! ```
//!
//! The backend addresses rows by `name`, whose bytewise (`"C"`) order is the order of
//! [`scan`](Backend::scan)'s keyset pages. `data` is the truth and what [`get`](Backend::get)
//! returns, byte for byte; `key` and `value` are views of it kept for SQL (`SELECT value->'theme'
//! FROM users WHERE key = 'alice'`), written with it by every put and never read by persist:
//!
//! - `key` is NULL where text cannot hold the key (a key with a NUL character, U+0000), where it
//!   is not known (a hashed name written by [`put_native`](Backend::put_native) with bytes
//!   that are not plain JSON), in a database whose encoding is not UTF-8, and for a row whose
//!   name is not the name of the key it was given;
//! - `key` is unique without a constraint: a row's key is the key its name spells, and names
//!   are unique. A unique constraint would fail one of two processes putting the same new key at
//!   once (`ON CONFLICT (name)` settles the race on `name` only), so an open drops the one an
//!   earlier persist made and indexes the column instead;
//! - `value` is NULL unless the bytes are a plain JSON envelope (no frame: not compressed, not
//!   encrypted; a checksum member is fine) whose `data` `jsonb` can hold: no `\u0000` in a
//!   string, no lone surrogate, no number beyond PostgreSQL's `numeric`, at most 64 MiB.
//!
//! `version` is the entry's [`Tag`]: each write sets it to the server's clock in microseconds
//! since 1970, or to one more than the row's version when that is larger, so a name's tags only
//! grow, across a delete and a new insert too (earlier versions of persist counted each row's
//! writes from 1, so a row deleted and written again took back tag 1, and a reader holding the
//! old row's tag had its conditional write land on the new row). No sequence or other object
//! is needed, so a role with the table's rights alone writes, and writers of earlier versions
//! sharing the table (which add one) never meet a tag given before. A conditional write is an
//! `UPDATE … WHERE version = $tag` (or an `INSERT … ON CONFLICT DO NOTHING`), so
//! compare-and-swap needs no lock.
//!
//! Opening a table of the earlier layout (`name`, `data`, `schema_version`, `version` only, `name`
//! in the database's collation) upgrades it in one transaction, under an advisory lock so that
//! processes opening it at once upgrade it once: `name` takes the `"C"` collation, `key` and
//! `value` are added and filled from each row's name and bytes (a hashed name's key from the
//! envelope, when plain). Row versions (tags) are left as they were. Rows written later by an
//! earlier persist get no `key` or `value` (and keep a stale `value` if they had one): upgrade
//! every writer of a table.
//!
//! Each open also makes the table's change trigger when it is missing (and the role may): each
//! row's write and delete is published with `NOTIFY` on [`Postgres::channel`], which
//! [`Backend::watch`] listens to (see `feed`).
//!
//! The backend owns its connections (a small pool, each with its statements prepared once)
//! and a small runtime (two threads) that drives them, so it works from sync code and from any
//! executor.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::value::RawValue;
use tokio_postgres::{Client, NoTls, Statement};

mod feed;

use super::runtime::Runtime;
use super::{Backend, BackendFuture, Condition, Entry, Feed, Names, Stored, Tag, Written};
use crate::Error;
use crate::collection::key;
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
    /// Whether the database's encoding is UTF-8: the `key` and `value` columns are filled only
    /// then (another encoding may not hold every key).
    utf8: AtomicBool,
    /// Whether the table has its trigger, which publishes each change for feeds (see
    /// [`Backend::watch`]).
    notifies: AtomicBool,
    /// The channel of the table's changes.
    channel: String,
    /// The table's listener while any feed of it is held: one connection for them all.
    hub: std::sync::Mutex<std::sync::Weak<feed::Hub>>,
    runtime: Runtime,
}

/// A connection and its prepared statements.
struct Connection {
    client: Client,
    get: Statement,
    /// The row's write count alone.
    tag: Statement,
    upsert: Statement,
    insert: Statement,
    update_if: Statement,
    delete: Statement,
    delete_if: Statement,
    list: Statement,
    /// A page of names from `$1` (inclusive) on.
    scan_from: Statement,
    /// A page of names from `$1` (inclusive) to `$2` (exclusive).
    scan_range: Statement,
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

/// TCP keepalive on every connection, sooner than the operating system's two hours where the
/// configuration leaves it at its defaults (`keepalives_idle`, `keepalives_interval`,
/// `keepalives_retries`): a connection whose route is gone fails its query within about a
/// minute instead of waiting hours.
fn keep_alive(config: &mut tokio_postgres::Config) {
    if !config.get_keepalives() {
        return;
    }
    if config.get_keepalives_idle() == std::time::Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(std::time::Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(std::time::Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

/// Quotes `name` as an SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The names a [`Backend::scan`] page holds at most: the page every store's scan reads.
const SCAN_PAGE: usize = super::PAGE;

/// The rows an upgrade fills per statement.
const UPGRADE_PAGE: i64 = 500;

/// The first key of the advisory lock held while a table is created or upgraded (`pers`); the
/// second is the hash of the table's quoted name.
const LOCK_CLASS: i32 = 0x7065_7273;

/// The largest `data` member copied into the `value` column.
const MAX_VALUE_BYTES: usize = 64 << 20;

/// The columns of a row beside its bytes: what SQL queries read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shown {
    /// The key the row is stored under.
    key: Option<String>,
    /// The JSON text of the envelope's `data` member.
    value: Option<String>,
}

/// The members of a plain envelope that a row shows.
struct Envelope<'a> {
    key: Option<String>,
    data: &'a RawValue,
}

impl<'a> Envelope<'a> {
    /// The envelope `bytes` hold, if they are one JSON object with an integer `version` and a
    /// `data` member (a `key` member a string), each once.
    fn parse(bytes: &'a [u8]) -> Option<Envelope<'a>> {
        use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};

        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = Envelope<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an envelope")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let (mut version, mut key, mut data) = (None, None, None);
                let mut twice = false;
                while let Some(member) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*member {
                        "version" => twice |= version.replace(map.next_value::<u64>()?).is_some(),
                        "key" => twice |= key.replace(map.next_value::<String>()?).is_some(),
                        "data" => {
                            twice |= data.replace(map.next_value::<&'de RawValue>()?).is_some();
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match (twice, version, data) {
                    (false, Some(_), Some(data)) => Ok(Envelope { key, data }),
                    _ => Err(A::Error::custom("not an envelope")),
                }
            }
        }

        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let envelope = serde::Deserializer::deserialize_map(&mut deserializer, Members).ok()?;
        deserializer.end().ok()?;
        Some(envelope)
    }
}

impl Shown {
    /// What the row of the entry `name` holding `bytes` shows: its key (`given` when `name`
    /// is its name, else the key the name spells, else for a hashed name the envelope's key
    /// when it hashes to the name; never one with a NUL) and the envelope's `data` when the
    /// bytes are a plain envelope and `jsonb` can hold it. Nothing when the database is not
    /// UTF-8.
    fn of(name: &str, given: Option<&str>, bytes: &[u8], utf8: bool) -> Shown {
        if !utf8 {
            return Shown::default();
        }
        let plain = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let envelope = match plain.first() {
            Some(b'{' | b' ' | b'\t' | b'\n' | b'\r') => Envelope::parse(plain),
            _ => None,
        };
        let key = given
            .filter(|given| key::name_of(given) == name)
            .map(str::to_owned)
            .or_else(|| key::key_of(name))
            .or_else(|| {
                let stored = envelope.as_ref()?.key.as_ref()?;
                (key::is_hashed(name) && key::name_of(stored) == name).then(|| stored.clone())
            })
            .filter(|key| !key.contains('\0'));
        let value = envelope
            .map(|envelope| envelope.data.get())
            .filter(|data| jsonb_holds(data))
            .map(str::to_owned);
        Shown { key, value }
    }
}

/// Whether PostgreSQL's `jsonb` takes the JSON text `json` (valid JSON, as serde_json found
/// it): no `\u0000` escape (text cannot hold NUL), no lone surrogate escape, no number with an
/// exponent of four digits or more or longer than 1,000 characters (`numeric` overflows), at
/// most [`MAX_VALUE_BYTES`]. Cautious: a document refused here only goes without a `value`.
fn jsonb_holds(json: &str) -> bool {
    let bytes = json.as_bytes();
    if bytes.len() > MAX_VALUE_BYTES {
        return false;
    }
    let hex = |at: usize| {
        json.get(at..at + 4)
            .and_then(|digits| u16::from_str_radix(digits, 16).ok())
    };
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                // A string: its escapes.
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    if bytes[at] != b'\\' {
                        at += 1;
                        continue;
                    }
                    if bytes.get(at + 1) != Some(&b'u') {
                        at += 2;
                        continue;
                    }
                    match hex(at + 2) {
                        Some(0) | None => return false,
                        Some(0xD800..=0xDBFF) => {
                            let low = (bytes.get(at + 6..at + 8) == Some(b"\\u"))
                                .then(|| hex(at + 8))
                                .flatten();
                            if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                return false;
                            }
                            at += 12;
                        }
                        Some(0xDC00..=0xDFFF) => return false,
                        Some(_) => at += 6,
                    }
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                let mut exponent_digits = None;
                while at < bytes.len()
                    && matches!(bytes[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    match (bytes[at], exponent_digits.as_mut()) {
                        (b'e' | b'E', _) => exponent_digits = Some(0),
                        (b'0'..=b'9', Some(digits)) => *digits += 1,
                        _ => {}
                    }
                    at += 1;
                }
                if at - start > 1000 || exponent_digits.is_some_and(|digits| digits > 3) {
                    return false;
                }
            }
            _ => at += 1,
        }
    }
    true
}

/// The least string above every string that begins with `prefix` (its last character raised
/// by one), or `None` when there is none: the exclusive end of a prefix's range in bytewise
/// (code point) order.
fn end_of_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
        let mut config: tokio_postgres::Config = config.parse().map_err(|error| Error::Remote {
            path: PathBuf::from("postgres:"),
            op: RemoteOp::Connect,
            server: "PostgreSQL (the connection string is not valid)".to_owned(),
            transient: false,
            source: Box::new(error),
        })?;
        keep_alive(&mut config);
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
                utf8: AtomicBool::new(false),
                notifies: AtomicBool::new(false),
                channel: feed::channel(&quote_identifier(table)),
                hub: std::sync::Mutex::new(std::sync::Weak::new()),
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

    /// The channel the table's trigger publishes each change on (`NOTIFY`): what a feed
    /// listens to, and what a program of your own can `LISTEN` to. Each payload is
    /// `P <write count> <entry name>` for a put (followed by ` <key>` for a name too long to
    /// spell its key), `D <entry name>` for a delete, `R` for a `TRUNCATE`.
    pub fn channel(&self) -> &str {
        &self.inner.channel
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
    /// `future` run on the backend's own runtime (its connections' I/O is registered there),
    /// awaited from any executor: the caller's needs no tokio reactor.
    fn spawned<R: Send + 'static>(
        &self,
        name: &str,
        future: impl Future<Output = Result<R, Error>> + Send + 'static,
    ) -> BackendFuture<R> {
        let task = self.inner.runtime.handle().spawn(future);
        let path = self.locate(name);
        Box::pin(async move {
            task.await.map_err(|error| Error::Io {
                path,
                op: crate::error::IoOp::BlockingTask,
                source: std::io::Error::other(error),
            })?
        })
    }

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

/// Writes the entry `name` on `connection` if `condition` holds, with the columns `shown`.
fn put_query(
    connection: &Connection,
    name: String,
    bytes: Vec<u8>,
    version: u32,
    shown: Shown,
    condition: Condition,
) -> Query<'_, Written> {
    let schema = i32::try_from(version).unwrap_or(i32::MAX);
    Box::pin(async move {
        let Shown { key, value } = &shown;
        let row = match &condition {
            Condition::Always => {
                connection
                    .client
                    .query_opt(&connection.upsert, &[&name, &bytes, &schema, key, value])
                    .await?
            }
            Condition::Absent => {
                connection
                    .client
                    .query_opt(&connection.insert, &[&name, &bytes, &schema, key, value])
                    .await?
            }
            Condition::Matches(tag) => match version_of(tag) {
                Some(expected) => {
                    connection
                        .client
                        .query_opt(
                            &connection.update_if,
                            &[&name, &bytes, &schema, &expected, key, value],
                        )
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
        // The tag of a new row, and of a row written again (see the module's documentation).
        let first = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";
        let next = format!("greatest(t.version + 1, {first})");
        let get = client
            .prepare(&format!(
                "SELECT data, version FROM {table} WHERE name = $1"
            ))
            .await?;
        let tag = client
            .prepare(&format!("SELECT version FROM {table} WHERE name = $1"))
            .await?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {table} AS t (name, data, schema_version, version, key, value) \
                 VALUES ($1, $2, $3, {first}, $4, $5::text::jsonb) ON CONFLICT (name) DO UPDATE \
                 SET data = EXCLUDED.data, schema_version = EXCLUDED.schema_version, \
                 version = {next}, key = EXCLUDED.key, value = EXCLUDED.value \
                 RETURNING version"
            ))
            .await?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {table} (name, data, schema_version, version, key, value) \
                 VALUES ($1, $2, $3, {first}, $4, $5::text::jsonb) \
                 ON CONFLICT (name) DO NOTHING RETURNING version"
            ))
            .await?;
        let update_if = client
            .prepare(&format!(
                "UPDATE {table} AS t SET data = $2, schema_version = $3, version = {next}, \
                 key = $5, value = $6::text::jsonb \
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
        let scan_from = client
            .prepare(&format!(
                "SELECT name FROM {table} WHERE name >= $1 ORDER BY name LIMIT {SCAN_PAGE}"
            ))
            .await?;
        let scan_range = client
            .prepare(&format!(
                "SELECT name FROM {table} WHERE name >= $1 AND name < $2 ORDER BY name \
                 LIMIT {SCAN_PAGE}"
            ))
            .await?;
        Ok(Connection {
            client,
            get,
            tag,
            upsert,
            insert,
            update_if,
            delete,
            delete_if,
            list,
            scan_from,
            scan_range,
        })
    }

    /// Creates the table if it does not exist, or upgrades one of the earlier layout (see the
    /// module's documentation), and finds out whether the database is UTF-8.
    async fn create_table(&self) -> Result<(), Error> {
        let path = PathBuf::from(&self.label);
        let (mut client, connection) = self.config.connect(NoTls).await.map_err(db_error(
            path.clone(),
            RemoteOp::Connect,
            self.server.clone(),
        ))?;
        self.runtime.handle().spawn(async move {
            let _ = connection.await;
        });
        // Processes opening the table at once wait for each other on the advisory lock; a
        // program other than persist creating it meanwhile may still fail the first attempt
        // (a unique violation on the catalog): look again.
        let (utf8, notifies) = match self.set_up(&mut client).await {
            Ok(facts) => facts,
            Err(_) => self.set_up(&mut client).await.map_err(db_error(
                path,
                RemoteOp::Setup,
                self.server.clone(),
            ))?,
        };
        self.utf8.store(utf8, Ordering::Relaxed);
        self.notifies.store(notifies, Ordering::Relaxed);
        Ok(())
    }

    /// One attempt of [`create_table`](Inner::create_table), in one transaction: whether the
    /// database is UTF-8, and whether the table has its trigger (made here if missing, when
    /// the role may: without it, feeds poll). A table that exists is not made again: a role
    /// with the table's rights alone (no `CREATE` on its schema) opens it.
    async fn set_up(&self, client: &mut Client) -> Result<(bool, bool), tokio_postgres::Error> {
        let table = &self.table;
        let mut transaction = client.transaction().await?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_CLASS, table],
            )
            .await?;
        // (`CREATE TABLE IF NOT EXISTS` asks for `CREATE` on the schema even when the table is
        // there.)
        let exists = transaction
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[table])
            .await?
            .get::<_, bool>(0);
        if !exists {
            transaction
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (name TEXT COLLATE \"C\" PRIMARY KEY, \
                     data BYTEA NOT NULL, schema_version INTEGER NOT NULL, \
                     version BIGINT NOT NULL, key TEXT, value JSONB)"
                ))
                .await?;
        }
        let utf8 = transaction
            .query_one("SELECT current_setting('server_encoding') = 'UTF8'", &[])
            .await?
            .get::<_, bool>(0);
        let columns = transaction
            .query(
                "SELECT a.attname::text, coalesce(c.collname::text, '') FROM pg_attribute a \
                 LEFT JOIN pg_collation c ON c.oid = a.attcollation \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[table],
            )
            .await?;
        let column = |name: &str| {
            columns
                .iter()
                .find(|row| row.get::<_, &str>(0) == name)
                .map(|row| row.get::<_, String>(1))
        };
        if column("key").is_none() || column("value").is_none() {
            // A table of the earlier layout: upgraded, and its rows' columns filled.
            if column("name").as_deref() != Some("C") {
                transaction
                    .batch_execute(&format!(
                        "ALTER TABLE {table} ALTER COLUMN name TYPE TEXT COLLATE \"C\""
                    ))
                    .await?;
            }
            transaction
                .batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS key TEXT, \
                     ADD COLUMN IF NOT EXISTS value JSONB"
                ))
                .await?;
            let page = transaction
                .prepare(&format!(
                    "SELECT name, data FROM {table} WHERE name > $1 ORDER BY name \
                     LIMIT {UPGRADE_PAGE}"
                ))
                .await?;
            let fill = transaction
                .prepare(&format!(
                    "UPDATE {table} AS t SET key = v.key, value = v.value::jsonb \
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS v(name, key, value) \
                     WHERE t.name = v.name"
                ))
                .await?;
            let mut after = String::new();
            loop {
                let rows = transaction.query(&page, &[&after]).await?;
                let Some(last) = rows.last() else { break };
                after = last.get(0);
                let (mut names, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
                for row in &rows {
                    let name: &str = row.get(0);
                    let shown = Shown::of(name, None, row.get(1), utf8);
                    if shown != Shown::default() {
                        names.push(name);
                        keys.push(shown.key);
                        values.push(shown.value);
                    }
                }
                if !names.is_empty() {
                    transaction
                        .execute(&fill, &[&names, &keys, &values])
                        .await?;
                }
            }
        }
        // In a savepoint: a role that does not own the table (which may not make or drop an
        // index) still opens it as it is.
        {
            let savepoint = transaction.savepoint("persist_index").await?;
            match index_keys(&savepoint, table).await {
                Ok(()) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
        }
        let mut notifies = transaction
            .query_opt(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = $1::text::regclass \
                 AND tgname = 'persist_notify'",
                &[table],
            )
            .await?
            .is_some();
        if !notifies {
            // In a savepoint: a role that may not make triggers still opens the table.
            let savepoint = transaction.savepoint("persist_trigger").await?;
            if savepoint
                .batch_execute(&feed::trigger_sql(table))
                .await
                .is_ok()
            {
                savepoint.commit().await?;
                notifies = true;
            }
        }
        transaction.commit().await?;
        Ok((utf8, notifies))
    }
}

/// Gives the `key` column a plain index, dropping the unique constraint an earlier persist put
/// on it (see the module's documentation): two processes putting one new key at once both
/// succeed, as they do on every other store.
async fn index_keys(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    // The single-column indexes on `key`, each with whether it is unique and the name of the
    // constraint it backs, if any.
    let indexes = transaction
        .query(
            "SELECT i.indisunique, coalesce(k.conname::text, '') FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid \
             WHERE i.indrelid = $1::text::regclass AND i.indnatts = 1 AND a.attname = 'key'",
            &[&table],
        )
        .await?;
    let mut plain = false;
    for row in &indexes {
        let (unique, constraint): (bool, &str) = (row.get(0), row.get(1));
        if unique && !constraint.is_empty() {
            transaction
                .batch_execute(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {}",
                    quote_identifier(constraint)
                ))
                .await?;
        } else if !unique {
            plain = true;
        }
    }
    if !plain {
        transaction
            .batch_execute(&format!("CREATE INDEX ON {table} (key)"))
            .await?;
    }
    Ok(())
}

impl Postgres {
    /// The columns beside its bytes of the row of the entry `name`.
    fn shown(&self, name: &str, key: Option<&str>, bytes: &[u8]) -> Shown {
        Shown::of(name, key, bytes, self.inner.utf8.load(Ordering::Relaxed))
    }

    /// A page of a [`Backend::scan`]: the names from `from` (below `end`, if any), in order,
    /// at most [`PAGE`](super::PAGE) of them.
    fn scan_page(&self, from: String, end: Option<String>) -> Result<Vec<String>, Error> {
        self.with_connection("", RemoteOp::List, move |connection| {
            Box::pin(async move {
                let rows = match &end {
                    Some(end) => {
                        connection
                            .client
                            .query(&connection.scan_range, &[&from, end])
                            .await?
                    }
                    None => {
                        connection
                            .client
                            .query(&connection.scan_from, &[&from])
                            .await?
                    }
                };
                Ok(rows.into_iter().map(|row| row.get(0)).collect())
            })
        })
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

    /// The row's write count, without its bytes.
    fn tag(&self, name: &str) -> Result<Option<Tag>, Error> {
        let key = name.to_owned();
        self.with_connection(name, RemoteOp::Read, move |connection| {
            Box::pin(async move {
                let row = connection
                    .client
                    .query_opt(&connection.tag, &[&key])
                    .await?;
                Ok(row.map(|row| Tag::new(row.get::<_, i64>(0).to_string())))
            })
        })
    }

    /// The table's trigger publishes each row's change (`NOTIFY` on a channel of the table's
    /// own: the name and tag), and one connection of this backend listens for every feed of
    /// it (made with the first feed, closed with the last). A lost connection (or one silent
    /// past a heartbeat every 5 seconds) is replaced at once, and every feed told
    /// [`Notice::Resync`](super::Notice::Resync) once it listens again (`NOTIFY` keeps
    /// nothing for a listener that is gone); each attempt that fails is an error told once by
    /// each feed. `None` when the table has no trigger (the role could not make it): the
    /// collection then polls.
    fn watch(
        &self,
        prefixes: &[String],
        _poll: Option<std::time::Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        if !self.inner.notifies.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(Box::new(feed::PostgresFeed::new(
            &self.inner,
            prefixes,
        )?)))
    }

    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        let key = name.to_owned();
        self.with_connection(name, RemoteOp::Read, move |connection| {
            get_query(connection, key)
        })
    }

    fn get_native(&self, name: &str) -> Option<BackendFuture<Option<Stored>>> {
        let key = name.to_owned();
        Some(self.spawned(
            name,
            self.on_connection(name, RemoteOp::Read, move |connection| {
                get_query(connection, key)
            }),
        ))
    }

    /// Stores the entry's bytes, with its key and its `data` in the row's `key` and `value`
    /// columns (see the module's documentation).
    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        let shown = self.shown(name, Some(entry.key), entry.bytes);
        let (owned, bytes, version) = (name.to_owned(), entry.bytes.to_vec(), entry.version);
        let condition = condition.clone();
        self.with_connection(name, RemoteOp::Write, move |connection| {
            put_query(connection, owned, bytes, version, shown, condition)
        })
    }

    fn put_native(
        &self,
        name: &str,
        key: String,
        bytes: Vec<u8>,
        version: u32,
        condition: Condition,
    ) -> Option<BackendFuture<Written>> {
        let shown = self.shown(name, Some(&key), &bytes);
        let owned = name.to_owned();
        Some(self.spawned(
            name,
            self.on_connection(name, RemoteOp::Write, move |connection| {
                put_query(connection, owned, bytes, version, shown, condition)
            }),
        ))
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

    /// In name order (bytewise), a page of 1,000 names at a time: each page is a query from
    /// the last name read on (keyset pagination on the primary key), run when the names before
    /// it have been consumed. The first page is read before `scan` returns. A prefix with a
    /// NUL character (which no row can hold) has no names.
    fn scan(&self, prefix: &str) -> Result<Names, Error> {
        // Text holds no NUL: no name begins with a prefix that has one.
        if prefix.contains('\0') {
            return Ok(Box::new(std::iter::empty()));
        }
        let (backend, prefix, end) = (self.clone(), prefix.to_owned(), end_of_prefix(prefix));
        super::paged(move |after| {
            // The least string after `after`: text holds no NUL, so U+0001 is the least
            // character.
            let from = after.map_or_else(|| prefix.clone(), |last| format!("{last}\u{1}"));
            backend.scan_page(from, end.clone())
        })
    }

    /// One transaction: every entry or none.
    fn put_many(&self, entries: &[(&str, Entry<'_>)]) -> Result<(), Error> {
        let rows: Vec<(String, Vec<u8>, i32, Shown)> = entries
            .iter()
            .map(|(name, entry)| {
                let schema = i32::try_from(entry.version).unwrap_or(i32::MAX);
                let shown = self.shown(name, Some(entry.key), entry.bytes);
                ((*name).to_owned(), entry.bytes.to_vec(), schema, shown)
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
                for (name, bytes, schema, Shown { key, value }) in &rows {
                    transaction
                        .execute(&*upsert, &[name, bytes, schema, key, value])
                        .await?;
                }
                transaction.commit().await
            }
            .await;
            result.map_err(db_error(path, RemoteOp::Write, inner.server.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_at_its_last_character_raised() {
        assert_eq!(end_of_prefix("a").as_deref(), Some("b"));
        assert_eq!(end_of_prefix("a~").as_deref(), Some("a\u{7f}"));
        assert_eq!(end_of_prefix("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(end_of_prefix("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(end_of_prefix("\u{10ffff}"), None);
        assert_eq!(end_of_prefix(""), None);
    }

    #[test]
    fn only_what_jsonb_takes_is_shown() {
        for json in [
            r#"{"a":[1,-2.5e-300,1E+308],"b":"\"\\u0000\" \u00e9 \ud83d\ude00"}"#,
            "123456789012345678901234567890",
            r#""\\u0000""#,
        ] {
            assert!(jsonb_holds(json), "{json}");
        }
        for json in [
            r#""a\u0000b""#,
            r#""\ud800""#,
            r#""\ud800x""#,
            r#""\udc00""#,
            "1e-20000",
            "1E1000",
            &"9".repeat(1001),
        ] {
            assert!(!jsonb_holds(json), "{json}");
        }
    }

    #[test]
    fn rows_show_the_key_and_plain_data() {
        let shown = |name, key, bytes: &[u8]| Shown::of(name, key, bytes, true);
        let plain = br#"{"version":1,"key":"Hi","data":{"b":1,"a":2},"crc32c":"00000000"}"#;
        assert_eq!(
            shown("~48i", Some("Hi"), plain),
            Shown {
                key: Some("Hi".into()),
                value: Some(r#"{"b":1,"a":2}"#.into()),
            }
        );
        // The key the name spells, whatever is given; none for a name no key has.
        assert_eq!(
            shown("~48i", Some("other"), plain).key.as_deref(),
            Some("Hi")
        );
        assert_eq!(shown("~48i", None, plain).key.as_deref(), Some("Hi"));
        assert_eq!(shown("nul", Some("nul"), plain).key, None);
        // A hashed name: the given key, or the envelope's, when it hashes to the name.
        let long = "K".repeat(300);
        let name = key::name_of(&long);
        let envelope = format!(r#"{{"version":1,"key":"{long}","data":1}}"#);
        assert_eq!(
            shown(&name, None, envelope.as_bytes()).key,
            Some(long.clone())
        );
        assert_eq!(
            shown(&name, Some(&long), b"\x89pst").key.as_ref(),
            Some(&long)
        );
        assert_eq!(shown(&name, None, plain).key, None);
        // No NUL in text.
        assert_eq!(shown("~00", Some("\0"), plain).key, None);
        assert_eq!(
            shown("~00", Some("\0"), plain).value.as_deref(),
            Some(r#"{"b":1,"a":2}"#)
        );
        // Not plain: no value.
        for bytes in [
            &b"\x89pst\r\n\x1a\n"[..],
            br#"{"version":1,"data":1} x"#,
            br#"{"version":"1","data":1}"#,
            br#"{"version":1,"key":"a","key":"b","data":1}"#,
            b"[]",
        ] {
            assert_eq!(shown("a", Some("a"), bytes).value, None, "{bytes:?}");
        }
        assert_eq!(Shown::of("a", Some("a"), plain, false), Shown::default());
    }
}
