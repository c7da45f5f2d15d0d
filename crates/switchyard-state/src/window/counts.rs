//! Request counts over a long span (the traffic baseline) in bounded memory: one-second
//! buckets for the last 15 minutes, one-minute buckets for the last day, hours beyond.
//!
//! Each bucket holds a prefix sum (the requests recorded before it began), so the requests in
//! any span are two lookups and a subtraction, however long the span: the alert evaluator
//! reads a 7-day baseline in O(1) under the route's lock. A span edge that falls where only
//! minutes (or hours) are still held is counted pro rata within that minute (or hour), as if
//! its requests were spread evenly over it.

use std::time::Duration;

/// Buckets kept at one-second resolution: 15 minutes and the two partial ones at the edges.
const SECOND_SLOTS: u64 = 15 * 60 + 2;
/// Buckets kept at one-minute resolution: a day and the two partial ones at the edges.
const MINUTE_SLOTS: u64 = 24 * 60 + 2;

/// One resolution: the prefix sums of its last `starts.len()` buckets, in a ring.
#[derive(Debug)]
struct Tier {
    /// Seconds per bucket.
    width: u64,
    starts: Vec<u64>,
}

impl Tier {
    /// Enough buckets to cover `span` seconds whatever its alignment, at most `cap`.
    fn new(width: u64, span: u64, cap: u64) -> Self {
        let len = (span / width + 2).min(cap);
        Tier {
            width,
            starts: vec![0; usize::try_from(len).unwrap_or(usize::MAX)],
        }
    }

    fn len(&self) -> u64 {
        self.starts.len() as u64
    }

    fn slot(&self, bucket: u64) -> u64 {
        self.starts
            .get((bucket % self.len()) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Opens the buckets after second `prev`'s up to second `now`'s, each beginning at
    /// `total`. Quiet buckets are opened too (at most one ring's worth), so every bucket the
    /// ring covers holds its prefix sum.
    fn open(&mut self, prev: Option<u64>, now: u64, total: u64) {
        let to = now / self.width;
        let from = prev
            .map_or(to, |prev| prev / self.width + 1)
            .max((to + 1).saturating_sub(self.len()));
        let len = self.len();
        for bucket in from..=to {
            if let Some(start) = self.starts.get_mut((bucket % len) as usize) {
                *start = total;
            }
        }
    }

    /// Requests recorded before second `t`, if this tier still holds `t`'s bucket.
    fn before(&self, t: u64, latest: u64, total: u64) -> Option<u64> {
        let (bucket, into) = (t / self.width, t % self.width);
        let newest = latest / self.width;
        if bucket + self.len() <= newest {
            return None;
        }
        let start = self.slot(bucket);
        if into == 0 {
            return Some(start);
        }
        // The newest bucket has only run until `latest`.
        let (end, elapsed) = if bucket == newest {
            (total, latest % self.width + 1)
        } else {
            (self.slot(bucket + 1), self.width)
        };
        let part = u128::from(end.saturating_sub(start)) * u128::from(into.min(elapsed))
            / u128::from(elapsed);
        Some(start + u64::try_from(part).unwrap_or(0))
    }

    /// Requests recorded before the oldest bucket held.
    fn oldest(&self, latest: u64) -> u64 {
        self.slot((latest / self.width + 1).saturating_sub(self.len()))
    }
}

/// Requests per second over a long span, in three resolutions. Memory is 8 bytes a bucket:
/// at most 902 + 1,442 + (span in hours + 2) buckets, about 20 KB for 7 days.
#[derive(Debug)]
pub struct CountRing {
    /// Seconds, minutes, hours.
    tiers: [Tier; 3],
    /// Requests recorded so far.
    total: u64,
    /// The newest second recorded.
    latest: Option<u64>,
}

impl CountRing {
    /// Holds at least `span` seconds back from the newest record.
    pub fn new(span: Duration) -> Self {
        let span = span.as_secs().max(1);
        CountRing {
            tiers: [
                Tier::new(1, span, SECOND_SLOTS),
                Tier::new(60, span, MINUTE_SLOTS),
                Tier::new(3_600, span, u64::MAX),
            ],
            total: 0,
            latest: None,
        }
    }

    /// Counts `n` requests in second `now`. Amortised O(1): a record after a quiet spell
    /// opens the buckets it skipped, at most one ring's worth.
    pub fn add(&mut self, now: u64, n: u64) {
        // A record that lost the race for the lock to a later second counts in that second.
        let now = self.latest.map_or(now, |latest| now.max(latest));
        for tier in &mut self.tiers {
            tier.open(self.latest, now, self.total);
        }
        self.latest = Some(now);
        self.total = self.total.saturating_add(n);
    }

    /// Requests in seconds `from..=to` that the ring still holds; O(1).
    pub fn requests(&self, from: u64, to: u64) -> u64 {
        if from > to {
            return 0;
        }
        self.before(to.saturating_add(1))
            .saturating_sub(self.before(from))
    }

    /// Requests recorded in the seconds before `t`: exact where seconds are held, pro rata
    /// within `t`'s minute or hour beyond.
    fn before(&self, t: u64) -> u64 {
        let Some(latest) = self.latest else {
            return 0;
        };
        if t > latest {
            return self.total;
        }
        let [seconds, minutes, hours] = &self.tiers;
        seconds
            .before(t, latest, self.total)
            .or_else(|| minutes.before(t, latest, self.total))
            .or_else(|| hours.before(t, latest, self.total))
            // Older than anything held: counting starts at the oldest hour.
            .unwrap_or_else(|| hours.oldest(latest))
    }

    /// Bytes the ring keeps on the heap.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.tiers
            .iter()
            .map(|tier| tier.starts.capacity() * std::mem::size_of::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests;
