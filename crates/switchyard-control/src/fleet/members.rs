//! Membership: every replica writes a heartbeat into `{ns}:v1:members` each reconcile
//! interval; the live ones (heard from within three intervals) are the fleet's members.

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::kill::now_ms;

/// A replica as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub instance_id: String,
    /// The shared state's version it has applied.
    pub state_version: u64,
    /// Its config file's hash: two replicas with different hashes run different configs.
    pub config_version: String,
    /// Local overrides not yet in Redis.
    pub divergent: bool,
    /// Unix milliseconds of its last heartbeat.
    pub seen_ms: u64,
}

/// Writes this replica's heartbeat and reads everyone's; drops the members silent for longer
/// than `stale_ms`.
pub async fn beat(
    conn: &mut MultiplexedConnection,
    key: &str,
    me: &Member,
    stale_ms: u64,
) -> redis::RedisResult<Vec<Member>> {
    let text = serde_json::to_string(me).unwrap_or_default();
    let (_, all): ((), Vec<(String, String)>) = redis::pipe()
        .cmd("HSET")
        .arg(key)
        .arg(&me.instance_id)
        .arg(text)
        .cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await?;
    let now = now_ms();
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for (id, text) in all {
        match serde_json::from_str::<Member>(&text) {
            Ok(m) if now.saturating_sub(m.seen_ms) <= stale_ms => live.push(m),
            _ => gone.push(id),
        }
    }
    if !gone.is_empty() {
        let _: () = redis::cmd("HDEL")
            .arg(key)
            .arg(&gone)
            .query_async(conn)
            .await?;
    }
    live.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(live)
}
