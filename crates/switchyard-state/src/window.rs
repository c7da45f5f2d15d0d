//! A ring of one-second buckets: the sliding windows alerts and rollbacks read.

use std::sync::Arc;
use std::time::Duration;

use crate::histogram::Histogram;

mod counts;
pub use counts::CountRing;

/// What one second of one route's (or one upstream's) traffic looked like.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub requests: u64,
    /// Requests answered 2xx: what tokens and cost per request are judged over, so requests
    /// the gateway refused (a throttle, a full queue) do not dilute them.
    pub answered: u64,
    pub errors: u64,
    pub tokens: u64,
    pub fill_over: u64,
    pub latency: Histogram,
    pub cost_usd: f64,
    /// Sum and count of the requests' context fill (requests of known models only).
    pub fill_sum: f64,
    pub fill_n: u64,
    /// Requests that completed by their finish reason (see `Exchange::completed`).
    pub completed: u64,
    /// Feedback that overturned the finish reason's judgment: +1 for a success reported on
    /// a request that had not completed, −1 for a failure on one that had. Counted in the
    /// second the report arrives.
    pub completion_adjust: i64,
    /// Sum and count of the `score`s applications reported through feedback.
    pub score_sum: f64,
    pub score_n: u64,
    /// Errors by class label; a handful at most, allocated only when errors happen.
    pub classes: Vec<(Arc<str>, u64)>,
}

impl Bucket {
    pub fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.answered += other.answered;
        self.errors += other.errors;
        self.tokens += other.tokens;
        self.fill_over += other.fill_over;
        self.latency.merge(&other.latency);
        self.cost_usd += other.cost_usd;
        self.fill_sum += other.fill_sum;
        self.fill_n += other.fill_n;
        self.completed += other.completed;
        self.completion_adjust += other.completion_adjust;
        self.score_sum += other.score_sum;
        self.score_n += other.score_n;
        for (class, n) in &other.classes {
            self.add_class(class, *n);
        }
    }

    pub fn add_class(&mut self, class: &Arc<str>, n: u64) {
        if let Some((_, count)) = self.classes.iter_mut().find(|(c, _)| c == class) {
            *count += n;
        } else if self.classes.len() < 32 {
            self.classes.push((class.clone(), n));
        }
    }

    pub fn error_rate(&self) -> f64 {
        ratio(self.errors as f64, self.requests)
    }

    /// Per answered request.
    pub fn cost_per_request(&self) -> f64 {
        ratio(self.cost_usd, self.answered)
    }

    /// Per answered request.
    pub fn tokens_per_request(&self) -> f64 {
        ratio(self.tokens as f64, self.answered)
    }

    pub fn mean_fill(&self) -> f64 {
        ratio(self.fill_sum, self.fill_n)
    }

    /// Mean feedback score; 0 without reports (rules wait for `min_requests` reports).
    pub fn mean_score(&self) -> f64 {
        ratio(self.score_sum, self.score_n)
    }

    /// Completed requests (finish reason, overturned by feedback) over requests, in 0..=1.
    pub fn completion_rate(&self) -> f64 {
        let completed = (self.completed as i64 + self.completion_adjust).max(0) as f64;
        ratio(completed, self.requests).min(1.0)
    }
}

fn ratio(x: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x / n as f64
    }
}

/// Per-second buckets for the last `len` seconds.
#[derive(Debug)]
pub struct Ring {
    slots: Vec<(u64, Bucket)>,
}

impl Ring {
    pub fn new(span: Duration) -> Self {
        let len = span.as_secs().max(1) as usize + 1;
        Ring {
            slots: vec![(u64::MAX, Bucket::default()); len],
        }
    }

    /// The bucket for second `now`, cleared if it last held an older second.
    pub fn bucket(&mut self, now: u64) -> &mut Bucket {
        let len = self.slots.len();
        let slot = &mut self.slots[(now % len as u64) as usize];
        if slot.0 != now {
            *slot = (now, Bucket::default());
        }
        &mut slot.1
    }

    /// The sum of seconds `from..=to` that are still held.
    pub fn sum(&self, from: u64, to: u64) -> Bucket {
        let mut total = Bucket::default();
        for (second, bucket) in &self.slots {
            if *second != u64::MAX && *second >= from && *second <= to {
                total.merge(bucket);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_seconds_fall_out_of_the_window() {
        let mut ring = Ring::new(Duration::from_secs(3));
        ring.bucket(10).requests += 1;
        ring.bucket(11).requests += 2;
        assert_eq!(ring.sum(10, 11).requests, 3);
        ring.bucket(14).requests += 5; // reuses second 10's slot
        assert_eq!(ring.sum(11, 14).requests, 7);
    }
}
