//! A fixed log-scale latency histogram small enough to keep one per second per route.

use std::time::Duration;

/// Bucket `i` holds latencies up to `FLOOR_MS * RATIO^i` milliseconds.
const FLOOR_MS: f64 = 1.0;
const RATIO: f64 = 1.2;
/// 1 ms · 1.2^76 ≈ 1,000 s: the longest agent turn we expect to measure.
pub const BUCKETS: usize = 77;

/// Latency counts by bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

fn bucket_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms <= FLOOR_MS {
        return 0;
    }
    let index = ((ms / FLOOR_MS).ln() / RATIO.ln()).ceil();
    (index as usize).min(BUCKETS - 1)
}

fn upper_bound_ms(index: usize) -> f64 {
    FLOOR_MS * RATIO.powi(index as i32)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let index = bucket_of(latency);
        self.counts[index] = self.counts[index].saturating_add(1);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The non-empty buckets as (index, count): a second's histogram in a few numbers.
    pub fn sparse(&self) -> Vec<(usize, u32)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
            .collect()
    }

    /// The histogram [`Histogram::sparse`] described; unknown indexes are ignored.
    pub fn from_sparse(buckets: &[(usize, u32)]) -> Self {
        let mut h = Histogram::default();
        for (index, count) in buckets {
            if let Some(slot) = h.counts.get_mut(*index) {
                *slot = slot.saturating_add(*count);
            }
        }
        h
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0..=1), interpolated inside its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0);
        let mut seen = 0.0;
        for (index, &count) in self.counts.iter().enumerate() {
            let count = f64::from(count);
            if count > 0.0 && seen + count >= rank {
                let low = if index == 0 {
                    0.0
                } else {
                    upper_bound_ms(index - 1)
                };
                let high = upper_bound_ms(index);
                let ms = low + (high - low) * ((rank - seen) / count);
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
            seen += count;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_one_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((p50 - 500.0).abs() / 500.0 < 0.2, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.2, "p99 {p99}");
    }

    #[test]
    fn empty_has_no_quantile_and_extremes_are_clamped() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), None);
        h.record(Duration::from_secs(100_000));
        h.record(Duration::ZERO);
        assert_eq!(h.count(), 2);
        assert!(h.quantile(1.0).unwrap() > Duration::from_secs(500));
    }
}
