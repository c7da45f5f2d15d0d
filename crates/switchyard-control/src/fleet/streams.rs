//! Incidents and audit entries, fleet-wide: every replica also appends its own to a Redis
//! stream (`{ns}:v1:incidents`, `{ns}:v1:audit`, trimmed to about [`MAXLEN`] entries), so any
//! replica's admin API can list the fleet's. The local files stay the record of each replica.
//!
//! Appending never waits on Redis: the entry joins a bounded backlog that a task writes out
//! in order; while Redis is out of reach the backlog waits, and is written when it is back.

use std::collections::VecDeque;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::{lock, Fleet, FleetError};

/// Entries a stream keeps (trimmed approximately, `MAXLEN ~`).
pub const MAXLEN: usize = 10_000;
/// Entries waiting for Redis at most; the oldest are dropped past it (they stay in the
/// replica's files).
pub const BACKLOG: usize = 1_000;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Incidents,
    Audit,
}

/// One entry as a stream holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// The replica that wrote it.
    pub replica: String,
    /// The JSON document (an incident, or an audit entry).
    pub body: String,
}

/// Where a store sends each record it writes (fleet mode: to the fleet's stream).
pub struct Sink<T>(Box<dyn Fn(&T) + Send + Sync>);

impl<T> Sink<T> {
    pub fn new(f: impl Fn(&T) + Send + Sync + 'static) -> Self {
        Sink(Box::new(f))
    }

    pub fn send(&self, record: &T) {
        (self.0)(record);
    }
}

impl<T> std::fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// The entries waiting for Redis.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    queue: VecDeque<(Stream, String)>,
    dropped: u64,
}

impl Backlog {
    /// Adds an entry; past [`BACKLOG`] the oldest goes.
    pub(super) fn push(&mut self, stream: Stream, body: String) {
        if self.queue.len() >= BACKLOG {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back((stream, body));
    }
}

impl Fleet {
    fn stream_key(&self, stream: Stream) -> &str {
        match stream {
            Stream::Incidents => &self.names.incidents,
            Stream::Audit => &self.names.audit,
        }
    }

    /// Appends `entry` to the fleet's stream, without waiting: written at once if Redis is
    /// there, kept in the backlog otherwise.
    pub fn append(self: &Arc<Self>, stream: Stream, entry: &impl Serialize) {
        let Ok(body) = serde_json::to_string(entry) else {
            return;
        };
        lock(&self.backlog).push(stream, body);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let fleet = self.clone();
            runtime.spawn(async move { fleet.flush().await });
        }
    }

    /// Writes the backlog out, oldest first; stops at the first failure (kept for later).
    pub(super) async fn flush(&self) {
        let _flushing = self.flushing.lock().await;
        let Some(mut conn) = self.connection() else {
            return;
        };
        loop {
            let next = lock(&self.backlog).queue.front().cloned();
            let Some((stream, body)) = next else {
                break;
            };
            if let Err(error) = self.xadd(&mut conn, stream, &body).await {
                tracing::debug!(%error, "fleet: stream entry kept for later");
                self.lost(&error);
                return;
            }
            lock(&self.backlog).queue.pop_front();
        }
        let dropped = std::mem::take(&mut lock(&self.backlog).dropped);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "fleet: stream entries dropped while Redis was out of reach (they are in the replica's files)"
            );
        }
    }

    async fn xadd(
        &self,
        conn: &mut MultiplexedConnection,
        stream: Stream,
        body: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(self.stream_key(stream))
            .arg("MAXLEN")
            .arg("~")
            .arg(MAXLEN)
            .arg("*")
            .arg("replica")
            .arg(&self.settings.instance_id)
            .arg("entry")
            .arg(body)
            .query_async::<String>(conn)
            .await
            .map(|_| ())
    }

    /// The stream's last `count` entries, newest first.
    pub async fn read_stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<StreamEntry>, FleetError> {
        let mut conn = self
            .connection()
            .ok_or_else(|| FleetError::Unavailable("not connected".into()))?;
        let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(self.stream_key(stream))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| FleetError::Unavailable(e.to_string()))?;
        Ok(reply.into_iter().filter_map(|(_, f)| entry(f)).collect())
    }
}

fn entry(fields: Vec<(String, String)>) -> Option<StreamEntry> {
    let mut replica = None;
    let mut body = None;
    for (key, value) in fields {
        match key.as_str() {
            "replica" => replica = Some(value),
            "entry" => body = Some(value),
            _ => {}
        }
    }
    Some(StreamEntry {
        replica: replica.unwrap_or_default(),
        body: body?,
    })
}

/// Keeps the newest entry of each id (streams are read newest first): an incident appended
/// again when acknowledged is listed once, as it is now.
pub fn newest_per_id<T>(entries: Vec<(String, T)>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_keeps_the_newest() {
        let mut backlog = Backlog::default();
        for i in 0..BACKLOG + 5 {
            backlog.push(Stream::Audit, i.to_string());
        }
        assert_eq!(backlog.queue.len(), BACKLOG);
        assert_eq!(backlog.dropped, 5);
        assert_eq!(backlog.queue.front().map(|e| e.1.as_str()), Some("5"));
    }

    #[test]
    fn an_incident_appended_twice_is_listed_once_as_it_is_now() {
        let entries = vec![
            ("inc-2".to_owned(), "acked"),
            ("inc-1".to_owned(), "one"),
            ("inc-2".to_owned(), "open"),
        ];
        assert_eq!(newest_per_id(entries), vec!["acked", "one"]);
    }

    #[test]
    fn fields_in_any_order() {
        let fields = vec![
            ("entry".to_owned(), "{}".to_owned()),
            ("replica".to_owned(), "g1".to_owned()),
        ];
        let e = entry(fields);
        assert_eq!(e.map(|e| e.replica), Some("g1".to_owned()));
        assert_eq!(entry(vec![]), None);
    }
}
