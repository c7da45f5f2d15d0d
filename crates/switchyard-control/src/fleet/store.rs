//! The shared state's layout in Redis and the scripts that change it atomically.
//!
//! `{ns}:v1:state` is a hash: `version` (a counter that only grows), `written_ms` (Redis's
//! clock when the version was written), `by` (the replica that wrote it) and `state` (the
//! JSON document). `{ns}:v1:changes` carries `version:written_ms` after each write, a hint
//! only. The `v1` in every name lets a rolling upgrade run a `v2` layout beside this one.

use redis::aio::MultiplexedConnection;
use redis::Script;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::kill::KillSwitch;

use super::rollouts::{SharedDowngrade, SharedRollout, SharedThrottle};

/// The layout's version, part of every key, channel and script name.
pub const LAYOUT: &str = "v1";

/// The runtime state every replica of a fleet shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedState {
    /// Engaged kill switches, by route.
    #[serde(default)]
    pub kills: Vec<KillSwitch>,
    /// Rollouts by route, with their epoch and decisions. Absent from documents written
    /// before rollouts were shared; a replica that does not know the field still reads the
    /// kills.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, SharedRollout>,
    /// Model downgrades an operator approved, by route.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub downgrades: BTreeMap<String, SharedDowngrade>,
    /// Throttles the rules firing on each replica put in force, in force on every replica.
    /// Absent from documents written before throttles were shared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttles: Vec<SharedThrottle>,
}

/// A version of the shared state as Redis holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned {
    pub version: u64,
    /// Redis's clock (Unix milliseconds) when this version was written.
    pub written_ms: u64,
    pub state: SharedState,
}

/// Key and channel names of one namespace.
#[derive(Debug, Clone)]
pub struct Names {
    pub state: String,
    pub changes: String,
    pub members: String,
    /// Streams of the fleet's incidents and audit entries.
    pub incidents: String,
    pub audit: String,
    /// The rollout lease, and the prefix of the per-second counts.
    pub lease: String,
    pub counts: String,
}

impl Names {
    pub fn new(namespace: &str) -> Self {
        Names {
            state: format!("{namespace}:{LAYOUT}:state"),
            changes: format!("{namespace}:{LAYOUT}:changes"),
            members: format!("{namespace}:{LAYOUT}:members"),
            incidents: format!("{namespace}:{LAYOUT}:incidents"),
            audit: format!("{namespace}:{LAYOUT}:audit"),
            lease: format!("{namespace}:{LAYOUT}:lease:rollouts"),
            counts: format!("{namespace}:{LAYOUT}:counts"),
        }
    }
}

/// `switchyard_cas_v1`: writes the state only if the version is still the one it was read
/// at; returns `{1, version, written_ms}` or `{0, current}`.
const CAS: &str = r"
-- switchyard_cas_v1
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return {0, cur} end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = cur + 1
redis.call('HSET', KEYS[1], 'version', v, 'written_ms', ms, 'by', ARGV[3], 'state', ARGV[2])
redis.call('PUBLISH', KEYS[2], v .. ':' .. ms)
return {1, v, ms}
";

/// `switchyard_restore_v1`: puts a replica's last known state back when Redis holds an older
/// version (restarted empty, or from an old snapshot); the highest version offered wins.
const RESTORE: &str = r"
-- switchyard_restore_v1
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur >= tonumber(ARGV[1]) then return {0, cur} end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'written_ms', ms, 'by', ARGV[3], 'state', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. ':' .. ms)
return {1, tonumber(ARGV[1]), ms}
";

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Accepted as this version, at this Redis time.
    Accepted { version: u64, written_ms: u64 },
    /// Refused: Redis holds this version.
    Refused { current: u64 },
}

fn written(reply: Vec<u64>) -> redis::RedisResult<Written> {
    match reply.as_slice() {
        [1, version, written_ms] => Ok(Written::Accepted {
            version: *version,
            written_ms: *written_ms,
        }),
        [0, current] => Ok(Written::Refused { current: *current }),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::TypeError,
            "unexpected script reply",
        ))),
    }
}

fn encode(state: &SharedState) -> redis::RedisResult<String> {
    serde_json::to_string(state).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::TypeError, "encoding", e.to_string()))
    })
}

/// Reads the current version; a missing key is version 0 with an empty state.
pub async fn read(
    conn: &mut MultiplexedConnection,
    names: &Names,
) -> redis::RedisResult<Versioned> {
    let (version, written_ms, state): (Option<u64>, Option<u64>, Option<String>) =
        redis::cmd("HMGET")
            .arg(&names.state)
            .arg("version")
            .arg("written_ms")
            .arg("state")
            .query_async(conn)
            .await?;
    let state = match state {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::TypeError, "decoding", e.to_string()))
        })?,
        None => SharedState::default(),
    };
    Ok(Versioned {
        version: version.unwrap_or(0),
        written_ms: written_ms.unwrap_or(0),
        state,
    })
}

/// Writes `state` as the version after `expected`, if Redis still holds `expected`.
pub async fn compare_and_set(
    conn: &mut MultiplexedConnection,
    names: &Names,
    expected: u64,
    state: &SharedState,
    by: &str,
) -> redis::RedisResult<Written> {
    let reply: Vec<u64> = Script::new(CAS)
        .key(&names.state)
        .key(&names.changes)
        .arg(expected)
        .arg(encode(state)?)
        .arg(by)
        .invoke_async(conn)
        .await?;
    written(reply)
}

/// Writes `state` as `version` if Redis holds an older one.
pub async fn restore(
    conn: &mut MultiplexedConnection,
    names: &Names,
    version: u64,
    state: &SharedState,
    by: &str,
) -> redis::RedisResult<Written> {
    let reply: Vec<u64> = Script::new(RESTORE)
        .key(&names.state)
        .key(&names.changes)
        .arg(version)
        .arg(encode(state)?)
        .arg(by)
        .invoke_async(conn)
        .await?;
    written(reply)
}
