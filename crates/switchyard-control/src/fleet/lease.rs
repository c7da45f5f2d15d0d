//! The rollout lease: one replica at a time judges stages on the fleet's counts.
//!
//! `{ns}:v1:lease:rollouts` holds the holder's instance id with a time to live of three
//! reconcile intervals. The holder renews it every interval; anyone takes it when it is free
//! (`switchyard_lease_v1`: `SET NX PX`, or `PEXPIRE` when already ours). The holder counts
//! its lease from the moment it *sent* the command and trusts it for two thirds of the time
//! to live only, so two replicas never both believe they hold it, even with a slow answer.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Script;

/// `switchyard_lease_v1`: takes the lease if free, renews it if ours; `1` if held.
const LEASE: &str = r"
-- switchyard_lease_v1
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
  return 1
end
return 0
";

/// What this replica knows of the lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    /// Until when this replica may act as the holder; `None` when it does not hold it.
    until: Option<Instant>,
}

impl Lease {
    /// Whether this replica holds the lease at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Redis answered the lease command sent at `sent` for `ttl`.
    pub fn answered(&mut self, sent: Instant, ttl: Duration, granted: bool) {
        self.until = granted.then(|| sent + ttl * 2 / 3);
    }

    /// Redis did not answer: the lease is not counted on.
    pub fn lost(&mut self) {
        self.until = None;
    }
}

/// Takes or renews the lease for `me`; `true` when held.
pub async fn take(
    conn: &mut MultiplexedConnection,
    key: &str,
    me: &str,
    ttl: Duration,
) -> redis::RedisResult<bool> {
    let held: i64 = Script::new(LEASE)
        .key(key)
        .arg(me)
        .arg(ttl.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(held == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_trusted_for_two_thirds_of_its_life_from_the_send() {
        let sent = switchyard_core::clock::now();
        let ttl = Duration::from_millis(1_500);
        let mut lease = Lease::default();
        assert!(!lease.held(sent));
        lease.answered(sent, ttl, true);
        assert!(lease.held(sent + Duration::from_millis(999)));
        assert!(!lease.held(sent + Duration::from_millis(1_000)));
        lease.answered(sent, ttl, false);
        assert!(!lease.held(sent), "refused: someone else holds it");
        lease.answered(sent, ttl, true);
        lease.lost();
        assert!(!lease.held(sent), "no answer: not counted on");
    }
}
