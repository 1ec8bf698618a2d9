//! The table's feed: a trigger publishes each row's change with `NOTIFY` (its name and write
//! count), and a feed listens on a connection of its own. `NOTIFY` is not kept for a listener
//! that is not connected, so a lost connection is a [`Notice::Resync`] once the feed has
//! connected and listens again: nothing is missed silently.
//!
//! The trigger is the table's (`persist_notify`, made by the first open that finds it missing):
//! it tells the writes of every writer, persist or SQL by hand, in the order of their commits.
//! A `TRUNCATE` is told as a resync.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::{AsyncMessage, NoTls};

use super::{Inner, db_error};
use crate::Error;
use crate::backend::Tag;
use crate::backend::feed::{self, BOUND, Feed, Notice, Popped, Queue};
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
    // Names never hold a space: what follows the first one is the key.
    let (name, key) = match rest.split_once(' ') {
        Some((name, key)) => (name, Some(key.to_owned())),
        None => (rest, None),
    };
    Some(Notice::Put {
        name: name.to_owned(),
        tag: Tag::new(version),
        key,
    })
}

/// One listening connection: its notifications go to `queue`, which is closed (after what it
/// holds is read) when the connection ends, with `lost` set.
struct Listener {
    queue: Arc<Queue<Notice>>,
    lost: Arc<AtomicBool>,
    /// The connection's client: dropping it closes the connection.
    _client: tokio_postgres::Client,
}

/// The feed of a [`Postgres`](super::Postgres) table.
pub(super) struct PostgresFeed {
    inner: Arc<Inner>,
    prefixes: Vec<String>,
    listener: Listener,
}

impl fmt::Debug for PostgresFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFeed")
            .field("table", &self.inner.label)
            .field("prefixes", &self.prefixes)
            .finish_non_exhaustive()
    }
}

impl PostgresFeed {
    /// A feed of the table's rows under `prefixes`, listening when this returns.
    pub(super) fn new(inner: Arc<Inner>, prefixes: Vec<String>) -> Result<Self, Error> {
        let listener = listen(&inner)?;
        Ok(PostgresFeed {
            inner,
            prefixes,
            listener,
        })
    }
}

/// Connects a listener of the table's channel (a connection of its own, driven by the
/// backend's runtime), and returns once it listens.
fn listen(inner: &Arc<Inner>) -> Result<Listener, Error> {
    let queue = Arc::new(Queue::new(BOUND));
    let lost = Arc::new(AtomicBool::new(false));
    let config = inner.config.clone();
    let statement = format!("LISTEN {}", inner.channel);
    let path = PathBuf::from(&inner.label);
    let server = inner.server.clone();
    let (queued, ended) = (Arc::clone(&queue), Arc::clone(&lost));
    let client = inner.runtime.block(async move {
        let (client, mut connection) = config.connect(NoTls).await.map_err(db_error(
            path.clone(),
            RemoteOp::Connect,
            server.clone(),
        ))?;
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        if let Some(notice) = parse(notification.payload())
                            && !queued.push(notice)
                        {
                            // The feed is gone.
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    // The connection ended: dropped by the feed, or lost.
                    Some(Err(_)) | None => break,
                }
            }
            ended.store(true, Ordering::Release);
            queued.close();
        });
        client
            .batch_execute(&statement)
            .await
            .map_err(db_error(path, RemoteOp::Watch, server))?;
        Ok::<_, Error>(client)
    })?;
    Ok(Listener {
        queue,
        lost,
        _client: client,
    })
}

impl Feed for PostgresFeed {
    fn next(&mut self, wait: Duration) -> Result<Option<Notice>, Error> {
        loop {
            let notice = match self.listener.queue.pop(wait) {
                Popped::Item(notice) => notice,
                Popped::Lagged => Notice::Resync,
                Popped::Empty => return Ok(None),
                Popped::Closed if self.listener.lost.load(Ordering::Acquire) => {
                    // Notifications sent while no one listened are gone: listen again, then
                    // have the reader read the state again.
                    self.listener = listen(&self.inner)?;
                    return Ok(Some(Notice::Resync));
                }
                Popped::Closed => return Ok(None),
            };
            match &notice {
                Notice::Put { name, .. } | Notice::Deleted { name }
                    if !feed::matches(&self.prefixes, name) =>
                {
                    continue;
                }
                _ => return Ok(Some(notice)),
            }
        }
    }
}

impl Drop for PostgresFeed {
    fn drop(&mut self) {
        // The listening task ends at its next notification; the connection closes with it.
        self.listener.queue.close();
    }
}
