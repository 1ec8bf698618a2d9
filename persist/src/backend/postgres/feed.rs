//! The table's feed: a trigger publishes each row's change with `NOTIFY` (its name and tag),
//! and one connection of the backend listens for every feed of the table (the [`Hub`]),
//! checked by a heartbeat. `NOTIFY` is not kept for a listener that is not connected, so a
//! lost connection is a [`Notice::Resync`] to every feed once the hub listens again: nothing
//! is missed silently. A feed also sends `S <token>` on the channel when it begins (its
//! marker, which other listeners ignore), and is subscribed where the marker comes back.
//!
//! The trigger is the table's (`persist_notify`, made by the first open that finds it missing):
//! it tells the writes of every writer, persist or SQL by hand, in the order of their commits.
//! A `TRUNCATE` is told as a resync.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{Inner, db_error};
use crate::Error;
use crate::backend::Tag;
use crate::backend::feed::{Feed, Notice, Subscribers};
use crate::error::RemoteOp;

/// The channel a table's changes are published on: an identifier of its own for each table
/// (a hash of its quoted name, so that any table name fits in 63 bytes).
pub(super) fn channel(table: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and processes.
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("persist_{hash:016x}")
}

/// The statements that make the table's trigger: a function of its own that publishes each
/// row's change on the table's channel, and the triggers that call it.
pub(super) fn trigger_sql(table: &str) -> String {
    let channel = channel(table);
    format!(
        "CREATE OR REPLACE FUNCTION {channel}() RETURNS trigger LANGUAGE plpgsql AS $persist$ \
         BEGIN \
           IF TG_OP = 'TRUNCATE' THEN \
             PERFORM pg_notify('{channel}', 'R'); RETURN NULL; \
           END IF; \
           IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN \
             PERFORM pg_notify('{channel}', 'D ' || OLD.name); \
           END IF; \
           IF TG_OP <> 'DELETE' THEN \
             PERFORM pg_notify('{channel}', 'P ' || NEW.version || ' ' || NEW.name || \
               CASE WHEN NEW.name LIKE '~~%' AND NEW.key IS NOT NULL \
                 AND octet_length(NEW.key) < 7000 THEN ' ' || NEW.key ELSE '' END); \
           END IF; \
           RETURN NULL; \
         END $persist$; \
         CREATE TRIGGER persist_notify AFTER INSERT OR UPDATE OR DELETE ON {table} \
           FOR EACH ROW EXECUTE FUNCTION {channel}(); \
         CREATE TRIGGER persist_notify_truncate AFTER TRUNCATE ON {table} \
           FOR EACH STATEMENT EXECUTE FUNCTION {channel}();"
    )
}

/// What a notification's payload tells: `P <version> <name>[ <key>]`, `D <name>` or `R`.
fn parse(payload: &str) -> Option<Notice> {
    if payload == "R" {
        return Some(Notice::Resync);
    }
    if let Some(name) = payload.strip_prefix("D ") {
        return Some(Notice::Deleted {
            name: name.to_owned(),
        });
    }
    let rest = payload.strip_prefix("P ")?;
    let (version, rest) = rest.split_once(' ')?;
    version.parse::<i64>().ok()?;
    // The trigger follows a hashed name (`~~…`, never a space in it) with its key; any other
    // name is the rest, spaces and all (a row written by hand is still told by its name).
    let (name, key) = match rest.split_once(' ') {
        Some((name, key)) if name.starts_with("~~") => (name, Some(key.to_owned())),
        _ => (rest, None),
    };
    Some(Notice::Put {
        name: name.to_owned(),
        tag: Tag::new(version),
        key,
    })
}

/// How often the listener asks the server whether its connection still works: a connection
/// lost without a word (a dropped route, a proxy or load balancer that forgets idle
/// connections) is found within this and [`HEARTBEAT_WAIT`], not after the operating
/// system's keepalive (two hours by default).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long the heartbeat's query may take before the connection is taken as lost.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(5);

/// How long the listener's attempt to connect and listen may take.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// How long a new feed waits for its marker to come back through the listener.
const MARK_WAIT: Duration = Duration::from_secs(2);

/// How long the listener waits before it connects again after a failed attempt.
const RECONNECT: Duration = Duration::from_secs(1);

/// The table's one listener in this backend, shared by every feed of it (each watch, live
/// entry and cache of the table in this process): one connection, whatever the number of
/// feeds. It stops when the last feed is dropped.
pub(super) struct Hub {
    shared: Arc<Shared>,
    /// Dropped with the hub: the listener's task sees it and closes its connection.
    _stop: oneshot::Sender<()>,
}

/// What the hub's task and its feeds share.
struct Shared {
    subscribers: Subscribers,
    /// The feeds waiting for their marker (`S <token>` on the channel), with their prefixes
    /// and where their subscription goes: made when the marker comes, in the order of the
    /// notifications, so that a feed is told exactly the changes committed after it began.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// How many times the listener lost its connection or failed to connect again, and the
    /// last failure's words: each feed tells each failure once, as an error.
    failures: AtomicU64,
    failure: Mutex<String>,
}

/// A feed waiting for its marker: its prefixes, and where its subscription goes.
type Waiting = (Vec<String>, std::sync::mpsc::SyncSender<Box<dyn Feed>>);

impl Shared {
    /// Subscribes the feed whose marker `token` came, if one waits for it.
    fn marked(&self, token: &str) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
        if let Some((prefixes, subscription)) = waiting {
            let _ = subscription.send(self.subscribers.subscribe(&prefixes));
        }
    }

    fn failed(&self, why: String) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = why;
        self.failures.fetch_add(1, Ordering::AcqRel);
    }
}

/// A listening connection: its client (for the heartbeat), and the task that drives it and
/// tells each notification to the subscribers, which ends when the connection does.
type Listening = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// Connects and listens on the table's channel, within [`CONNECT_WAIT`] (a connection may be
/// accepted and then told nothing: a wait without end).
async fn listen(
    config: tokio_postgres::Config,
    statement: String,
    shared: Arc<Shared>,
    place: &Place,
) -> Result<Listening, Error> {
    match tokio::time::timeout(CONNECT_WAIT, connect(config, statement, shared)).await {
        Ok(Ok(listening)) => Ok(listening),
        Ok(Err(error)) => Err(db_error(place.0.clone(), RemoteOp::Watch, place.1.clone())(
            error,
        )),
        Err(_) => Err(unheard(place, format!("no answer in {CONNECT_WAIT:?}"))),
    }
}

/// The error of a listener that cannot listen (`why`): transient, as a server away is.
fn unheard(place: &Place, why: String) -> Error {
    Error::Remote {
        path: place.0.clone(),
        op: RemoteOp::Watch,
        server: format!("the PostgreSQL server at {}", place.1),
        transient: true,
        source: why.into(),
    }
}

/// The table's label and its server, for errors.
type Place = (PathBuf, String);

fn place_of(inner: &Inner) -> Place {
    (PathBuf::from(&inner.label), inner.server.clone())
}

async fn connect(
    config: tokio_postgres::Config,
    statement: String,
    shared: Arc<Shared>,
) -> Result<Listening, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    let payload = notification.payload();
                    if let Some(token) = payload.strip_prefix("S ") {
                        shared.marked(token);
                    } else if let Some(notice) = parse(payload) {
                        shared.subscribers.tell(&notice);
                    }
                }
                Some(Ok(_)) => {}
                // The connection ended: closed by the hub, or lost.
                Some(Err(_)) | None => return,
            }
        }
    });
    match client.batch_execute(&statement).await {
        Ok(()) => Ok((client, driver)),
        Err(error) => {
            driver.abort();
            Err(error)
        }
    }
}

/// What ended a wait of the hub's task.
enum Woken {
    Stopped,
    Lost,
    Beat,
}

impl Hub {
    /// The hub of `inner`'s table: the running one, or a new one listening when this returns.
    pub(super) fn of(inner: &Arc<Inner>) -> Result<Arc<Hub>, Error> {
        let mut slot = inner.hub.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = slot.upgrade() {
            return Ok(hub);
        }
        let hub = Arc::new(Hub::start(inner)?);
        *slot = Arc::downgrade(&hub);
        Ok(hub)
    }

    fn start(inner: &Arc<Inner>) -> Result<Hub, Error> {
        let shared = Arc::new(Shared {
            subscribers: Subscribers::default(),
            waiting: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            failure: Mutex::new(String::new()),
        });
        let statement = format!("LISTEN {}", inner.channel);
        let config = inner.config.clone();
        let place = place_of(inner);
        // The first connection before this returns: a feed listens once it is made.
        let first = inner.runtime.block({
            let (config, statement, shared, place) = (
                config.clone(),
                statement.clone(),
                Arc::clone(&shared),
                place.clone(),
            );
            async move { listen(config, statement, shared, &place).await }
        })?;
        let (stop, stopped) = oneshot::channel();
        inner.runtime.handle().spawn(run(
            first,
            stopped,
            (config, statement, place),
            Arc::clone(&shared),
        ));
        Ok(Hub {
            shared,
            _stop: stop,
        })
    }
}

/// The hub's task: keeps a listening connection until the hub is dropped. A connection lost
/// (or silent past the heartbeat) is replaced at once; once one listens again, every feed is
/// told [`Notice::Resync`] (`NOTIFY` keeps nothing for a listener that is gone). Each attempt
/// that fails is a failure told to the feeds, and the next is made a second later.
async fn run(
    first: Listening,
    mut stopped: oneshot::Receiver<()>,
    (config, statement, place): (tokio_postgres::Config, String, Place),
    shared: Arc<Shared>,
) {
    let mut listening = Some(first);
    // Whether the last attempt to listen again failed: the next waits a while.
    let mut refused = false;
    loop {
        let Some((client, mut driver)) = listening.take() else {
            // Not connected: try again (after a while, if the last attempt failed), unless the
            // hub is gone.
            let pause = if refused { RECONNECT } else { Duration::ZERO };
            let mut pause = std::pin::pin!(tokio::time::sleep(pause));
            let stop = std::future::poll_fn(|cx| {
                if Pin::new(&mut stopped).poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                pause.as_mut().poll(cx).map(|()| false)
            });
            if stop.await {
                return;
            }
            match listen(
                config.clone(),
                statement.clone(),
                Arc::clone(&shared),
                &place,
            )
            .await
            {
                Ok(again) => {
                    listening = Some(again);
                    refused = false;
                    shared.subscribers.tell(&Notice::Resync);
                }
                Err(error) => {
                    refused = true;
                    // Its cause: each feed tells it in an error of its own.
                    shared.failed(match &error {
                        Error::Remote { source, .. } => source.to_string(),
                        other => other.to_string(),
                    });
                }
            }
            continue;
        };
        let mut beat = std::pin::pin!(tokio::time::sleep(HEARTBEAT));
        let woken = std::future::poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(Woken::Stopped);
            }
            if Pin::new(&mut driver).poll(cx).is_ready() {
                return Poll::Ready(Woken::Lost);
            }
            beat.as_mut().poll(cx).map(|()| Woken::Beat)
        })
        .await;
        match woken {
            Woken::Stopped => {
                driver.abort();
                return;
            }
            // Listened to again at once: a failure is told only if that fails.
            Woken::Lost => {}
            Woken::Beat => {
                // The heartbeat is the `LISTEN` again (a no-op for the server), so that the
                // connection only ever runs that statement: `pg_stat_activity` shows it as the
                // listener (`query = 'LISTEN <channel>'`).
                let beat = client.batch_execute(&statement);
                match tokio::time::timeout(HEARTBEAT_WAIT, beat).await {
                    Ok(Ok(())) => listening = Some((client, driver)),
                    Ok(Err(_)) | Err(_) => driver.abort(),
                }
            }
        }
    }
}

/// The feed of a [`Postgres`](super::Postgres) table: a subscription to the table's [`Hub`].
pub(super) struct PostgresFeed {
    hub: Arc<Hub>,
    received: Box<dyn Feed>,
    /// Whether a [`Notice::Resync`] is told first (the feed could not mark where it began).
    resync: bool,
    /// The hub's failures told so far.
    told: u64,
    place: Place,
}

impl fmt::Debug for PostgresFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFeed")
            .field("table", &self.place.0)
            .finish_non_exhaustive()
    }
}

impl PostgresFeed {
    /// A feed of the table's rows under `prefixes`, listening when this returns.
    ///
    /// The listener is shared, so notifications of changes committed before this call may
    /// still be on their way to it: the feed sends a marker on the channel (through a pooled
    /// connection) and is subscribed when the marker comes back, after every notification
    /// committed before it. Where the marker cannot be had in time (the
    /// listener is connecting again), the feed is subscribed at once and begins with
    /// [`Notice::Resync`].
    pub(super) fn new(inner: &Arc<Inner>, prefixes: &[String]) -> Result<Self, Error> {
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let hub = Hub::of(inner)?;
        let shared = &hub.shared;
        let told = shared.failures.load(Ordering::Acquire);
        let token = format!(
            "{}.{}",
            std::process::id(),
            TOKENS.fetch_add(1, Ordering::Relaxed)
        );
        let (subscription, subscribed) = std::sync::mpsc::sync_channel(1);
        shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), (prefixes.to_vec(), subscription));
        let sent = {
            let (pool, marker) = (Arc::clone(inner), format!("S {token}"));
            inner.runtime.block(async move {
                let marked = async {
                    let (index, _busy) = pool.least_busy();
                    let connection = pool.connected(&pool.slots[index]).await?;
                    let Some(connection) = connection.as_ref() else {
                        return Ok(0);
                    };
                    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                        [&pool.channel, &marker];
                    connection
                        .client
                        .execute("SELECT pg_notify($1, $2)", &parameters)
                        .await
                };
                matches!(tokio::time::timeout(MARK_WAIT, marked).await, Ok(Ok(1)))
            })
        };
        let marked = match sent {
            true => subscribed.recv_timeout(MARK_WAIT).ok(),
            false => None,
        };
        let (received, resync) = match marked {
            Some(received) => (received, false),
            None => {
                let waited = shared
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&token);
                match (waited, subscribed.try_recv()) {
                    // Subscribed just now, after all.
                    (None, Ok(received)) => (received, false),
                    _ => (shared.subscribers.subscribe(prefixes), true),
                }
            }
        };
        Ok(PostgresFeed {
            hub,
            received,
            resync,
            told,
            place: place_of(inner),
        })
    }
}

impl Feed for PostgresFeed {
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error> {
        if std::mem::take(&mut self.resync) {
            return Ok(Some(Notice::Resync));
        }
        let failures = self.hub.shared.failures.load(Ordering::Acquire);
        if failures != self.told {
            self.told = failures;
            let why = self
                .hub
                .shared
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return Err(unheard(&self.place, why));
        }
        self.received.next(wait)
    }
}
