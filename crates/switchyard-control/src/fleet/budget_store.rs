//! The budget's layout in Redis and the scripts that change it, kept apart from the shared
//! state document: a budget day is a handful of keys, changed only by versioned scripts.
//!
//! Under `{ns}:v1:budget:{day}` (the day's start, Unix seconds):
//! - `:totals`, a hash: `used` (settled tokens) and `reserved` (held by requests in flight
//!   and by leases);
//! - `:holds`, a hash: reservation id → tokens held;
//! - `:expiry`, a sorted set: reservation id → expiry (Redis time, ms), swept by every script;
//! - `:expired`, a set: reservations swept unsettled, so a late settlement counts once;
//! - `:flushed`, a set: ids of tokens spent without a reservation (while Redis was out of
//!   reach), so a flush retried after a lost reply counts once;
//! - `:closed`, a set: ids settled while not held. A reservation whose call timed out is
//!   released this way; if the call itself reaches Redis later (it was queued behind a
//!   pause), it finds its id closed and holds nothing.
//!
//! Every key expires two days after its last write.

use std::sync::LazyLock;

use redis::aio::MultiplexedConnection;
use redis::Script;

use super::store::LAYOUT;

/// How long a day's keys outlive their last write, in milliseconds.
const KEEP_MS: u64 = 2 * 86_400 * 1000;

/// The keys of one budget day.
#[derive(Debug, Clone)]
pub struct DayKeys([String; 6]);

impl DayKeys {
    pub fn new(namespace: &str, day: u64) -> Self {
        let p = format!("{namespace}:{LAYOUT}:budget:{day}");
        DayKeys(
            ["totals", "holds", "expiry", "expired", "flushed", "closed"]
                .map(|k| format!("{p}:{k}")),
        )
    }
}

/// Shared by every script: KEYS as in the module documentation, ARGV[1] the keys' life.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function sweep(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(gone) do
    local held = tonumber(redis.call('HGET', KEYS[2], id) or '0')
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HINCRBY', KEYS[1], 'reserved', -held)
    redis.call('SADD', KEYS[4], id)
  end
end
local function settle(id, tokens)
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held))
  elseif redis.call('SREM', KEYS[4], id) == 0 then
    redis.call('SADD', KEYS[6], id)
    return 0
  end
  redis.call('HINCRBY', KEYS[1], 'used', tokens)
  return 1
end
local function reserve(id, tokens, budget, expires)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then return 1 end
  if redis.call('SISMEMBER', KEYS[6], id) == 1 then return 0 end
  local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
  if used + reserved + tokens > budget then return 0 end
  redis.call('HINCRBY', KEYS[1], 'reserved', tokens)
  redis.call('HSET', KEYS[2], id, tokens)
  redis.call('ZADD', KEYS[3], expires, id)
  return 1
end
local function reply(ok)
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
  return {ok, used, reserved}
end
local now = now_ms()
sweep(now)
";

/// `switchyard_budget_reserve_v1`: ARGV id, tokens, budget, ttl_ms. Holds the tokens if
/// used + reserved + tokens stays within the budget.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "-- switchyard_budget_reserve_v1\n{PRELUDE}\
         return reply(reserve(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now + tonumber(ARGV[5])))\n"
    ))
});

/// `switchyard_budget_settle_v1`: ARGV n, then n pairs (reservation id, tokens spent), then
/// pairs (flush id, tokens spent without a reservation). Each counts once.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "-- switchyard_budget_settle_v1\n{PRELUDE}\
local counted = 0
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  counted = counted + settle(ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
while i < #ARGV do
  if redis.call('SADD', KEYS[5], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'used', tonumber(ARGV[i + 1]))
    counted = counted + 1
  end
  i = i + 2
end
return reply(counted)
"
    ))
});

/// `switchyard_budget_lease_v1`: ARGV closing lease id (or ''), its tokens spent, new lease
/// id (or ''), its tokens, budget, ttl_ms. Closes the old lease (its unused part returns to
/// the budget) and opens the new one if it fits, in one round trip.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "-- switchyard_budget_lease_v1\n{PRELUDE}\
if ARGV[2] ~= '' then settle(ARGV[2], tonumber(ARGV[3])) end
if ARGV[4] == '' then return reply(1) end
return reply(reserve(ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), now + tonumber(ARGV[7])))
"
    ))
});

/// A script's answer: whether it admitted (or how many it counted), and the day's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub ok: u64,
    pub used: u64,
    pub reserved: u64,
}

fn reply(values: Vec<i64>) -> redis::RedisResult<Reply> {
    match values.as_slice() {
        [ok, used, reserved] => Ok(Reply {
            ok: (*ok).max(0) as u64,
            used: (*used).max(0) as u64,
            reserved: (*reserved).max(0) as u64,
        }),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::TypeError,
            "unexpected budget script reply",
        ))),
    }
}

fn keys<'a, 'b>(
    invocation: &'b mut redis::ScriptInvocation<'a>,
    day: &DayKeys,
) -> &'b mut redis::ScriptInvocation<'a> {
    for key in &day.0 {
        invocation.key(key);
    }
    invocation.arg(KEEP_MS)
}

pub async fn reserve(
    conn: &mut MultiplexedConnection,
    day: &DayKeys,
    id: &str,
    tokens: u64,
    (budget, ttl_ms): (u64, u64),
) -> redis::RedisResult<Reply> {
    let mut invocation = RESERVE.prepare_invoke();
    keys(&mut invocation, day)
        .arg(id)
        .arg(tokens)
        .arg(budget)
        .arg(ttl_ms);
    reply(invocation.invoke_async(conn).await?)
}

/// One settlement call: reservations settled, then tokens spent without one.
pub async fn settle(
    conn: &mut MultiplexedConnection,
    day: &DayKeys,
    settled: &[(&str, u64)],
    flushed: &[(&str, u64)],
) -> redis::RedisResult<Reply> {
    let mut invocation = SETTLE.prepare_invoke();
    keys(&mut invocation, day).arg(settled.len());
    for (id, tokens) in settled.iter().chain(flushed) {
        invocation.arg(*id).arg(*tokens);
    }
    reply(invocation.invoke_async(conn).await?)
}

/// Closes a lease (id, tokens spent) and opens another (id, tokens), either optional.
pub async fn lease(
    conn: &mut MultiplexedConnection,
    day: &DayKeys,
    close: Option<(&str, u64)>,
    open: Option<(&str, u64)>,
    (budget, ttl_ms): (u64, u64),
) -> redis::RedisResult<Reply> {
    let (close_id, spent) = close.unwrap_or(("", 0));
    let (open_id, tokens) = open.unwrap_or(("", 0));
    let mut invocation = LEASE.prepare_invoke();
    keys(&mut invocation, day)
        .arg(close_id)
        .arg(spent)
        .arg(open_id)
        .arg(tokens)
        .arg(budget)
        .arg(ttl_ms);
    reply(invocation.invoke_async(conn).await?)
}
