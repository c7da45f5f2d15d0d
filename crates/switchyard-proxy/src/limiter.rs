//! Exact rate limits: GCRA (the generic cell rate algorithm), one number per key.
//!
//! A limit of `r` requests per second lets one request through every `T = 1/r` seconds and
//! tolerates a burst of `b = max(1, ceil(r))` requests at once. Each key keeps its theoretical
//! arrival time (TAT): a request at `now` is admitted when `max(TAT, now) + T <= now + b·T`,
//! and then moves the TAT to `max(TAT, now) + T`. A key is refused only when its own requests
//! ran ahead of its rate, never because of other keys. A key whose TAT has passed is exactly a
//! key never seen, so it can be forgotten: that is what keeps the keyed map bounded.
//!
//! Times are nanoseconds from an origin of the caller's choosing (tests pass their own clock).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One rate: the emission interval and how far ahead of now a TAT may run, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval: u64,
    /// burst × interval.
    tolerance: u64,
}

impl Gcra {
    /// `per_second` is finite and > 0 (config validation sees to it). The interval is rounded
    /// down to the nanosecond, so a rounding error admits, never refuses.
    pub fn new(per_second: f64) -> Self {
        // Float-to-int casts saturate: a vanishing rate gets the longest interval there is.
        let interval = (1e9 / per_second) as u64;
        Gcra {
            interval,
            tolerance: interval.saturating_mul(Self::burst(per_second)),
        }
    }

    /// Requests admitted at once from rest: one second's worth, rounded up, at least one.
    pub fn burst(per_second: f64) -> u64 {
        per_second.ceil().max(1.0) as u64
    }

    /// The key's TAT after a request at `now`: `Ok` when admitted, `Err` when refused.
    fn next(self, tat: u64, now: u64) -> Result<u64, u64> {
        // A TAT further ahead than a full burst can only have been left by a slower rate (a
        // throttle that changed): it counts, and is kept, as a full burst of the current rate.
        let limit = now.saturating_add(self.tolerance);
        let tat = tat.clamp(now, limit);
        let next = tat.saturating_add(self.interval);
        if next <= limit {
            Ok(next)
        } else {
            Err(tat)
        }
    }
}

/// One key's limit without a lock: the route-wide limit and a rule's throttle.
#[derive(Debug, Default)]
pub struct Single {
    tat: AtomicU64,
}

impl Single {
    pub fn admit(&self, gcra: Gcra, now: u64) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (admitted, next) = match gcra.next(tat, now) {
                Ok(next) => (true, next),
                Err(kept) => (false, kept),
            };
            // A refusal changes the TAT only to trim a slower rate's debt (or a past TAT to
            // now, which means the same).
            if !admitted && next >= tat {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return admitted,
                Err(seen) => tat = seen,
            }
        }
    }
}

const SHARDS: usize = 64;
/// Keys one keyed limit keeps at most. At 17 bytes a bucket (a 16-byte entry and a control
/// byte), a limit's tables never exceed 64 shards × 4,096 buckets × 17 B ≈ 4.5 MB.
pub const MAX_KEYS: usize = 114_688;
/// Keys one shard keeps at most (1,792): half of a 4,096-bucket table's capacity, so churn
/// at the cap rehashes the table in place instead of doubling it.
const SHARD_KEYS: usize = MAX_KEYS / SHARDS;
/// A shard sweeps its passed keys when it holds twice what its last sweep left, and at least
/// this many.
const SWEEP_MIN: usize = 64;
/// A shard sweeps at most once in this long (ns), so a shard full of live keys does not rescan
/// itself for every new key.
const SWEEP_GAP: u64 = 100_000_000;
/// Keys looked at to choose one to forget when a shard is full of live keys.
const EVICT_SAMPLE: usize = 8;

/// A limit per key (the per-user limit), exact for every key and bounded in memory.
///
/// Keys are kept as a 64-bit SipHash-1-3 of the key under a random per-process key
/// (`RandomState`): two live keys share an allowance only if their hashes collide, which for
/// `n` live keys has probability below n²/2⁶⁵ (under 4·10⁻¹⁰ at `MAX_KEYS`), and nobody can
/// pick keys that collide on purpose without the process's secret.
pub struct Keyed {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").finish_non_exhaustive()
    }
}

impl Default for Keyed {
    fn default() -> Self {
        Keyed {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl Keyed {
    pub fn admit(&self, key: &str, gcra: Gcra, now: u64) -> bool {
        let hash = self.hasher.hash_one(key);
        // The table uses the low bits (bucket) and the top seven (tag); shard on others.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(hash, gcra, now)
    }

    /// Keys held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.each(|shard| shard.tats.len())
    }

    /// Entries the tables have room for now: what their memory is proportional to.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.each(|shard| shard.tats.capacity())
    }

    #[cfg(test)]
    fn each(&self, f: impl Fn(&Shard) -> usize) -> usize {
        self.shards
            .iter()
            .map(|shard| f(&shard.lock().unwrap_or_else(PoisonError::into_inner)))
            .sum()
    }
}

struct Shard {
    /// Key hash → TAT.
    tats: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    /// Size at which the next sweep is due.
    sweep_at: usize,
    swept: Option<u64>,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            tats: HashMap::default(),
            sweep_at: SWEEP_MIN,
            swept: None,
        }
    }
}

impl Shard {
    fn admit(&mut self, hash: u64, gcra: Gcra, now: u64) -> bool {
        if let Some(tat) = self.tats.get_mut(&hash) {
            let (admitted, next) = match gcra.next(*tat, now) {
                Ok(next) => (true, next),
                Err(kept) => (false, kept),
            };
            *tat = next;
            return admitted;
        }
        // A key at rest always has a burst of at least one.
        let Ok(next) = gcra.next(0, now) else {
            return false;
        };
        self.make_room(now);
        self.tats.insert(hash, next);
        true
    }

    /// Sweeps amortised over inserts: a sweep costs what the shard holds, and the next one
    /// waits until the shard has doubled (and at least `SWEEP_GAP`).
    fn make_room(&mut self, now: u64) {
        if self.tats.len() < self.sweep_at {
            return;
        }
        if self
            .swept
            .is_none_or(|at| now.saturating_sub(at) >= SWEEP_GAP)
        {
            // A passed TAT is the same as no entry: dropping it changes no answer.
            self.tats.retain(|_, tat| *tat > now);
            self.swept = Some(now);
            self.sweep_at = (self.tats.len() * 2).clamp(SWEEP_MIN, SHARD_KEYS);
            if self.tats.capacity() > 4 * self.sweep_at {
                self.tats.shrink_to(self.sweep_at);
            }
        }
        if self.tats.len() >= SHARD_KEYS {
            // Full of live keys: forget the one nearest to rest among a few. Its next request
            // is judged as from rest, so that key may get up to one burst more than its rate;
            // nobody is refused for it.
            let victim = self
                .tats
                .iter()
                .take(EVICT_SAMPLE)
                .min_by_key(|(_, tat)| **tat)
                .map(|(hash, _)| *hash);
            if let Some(hash) = victim {
                self.tats.remove(&hash);
            }
        }
    }
}

/// The map's keys are already SipHash outputs: hashing them again would only cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}

#[cfg(test)]
mod tests;
