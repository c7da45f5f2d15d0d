//! The fleet's traffic on a rollout: every replica publishes, once a second, what blue and
//! green did on each rolling-out route in the last complete second (requests, errors by
//! class, latency histogram, cost), and the replica holding the lease judges the stage on
//! the sum over the live replicas.
//!
//! `{ns}:v1:counts:{route}:{second}` is a hash: field `{replica}|{side}`, value the second's
//! [`Counts`] as JSON. It expires after [`TTL_SECS`]: only the judged windows are kept.
//! The control-plane tick writes it; requests never do.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::window::Bucket;

/// How long a second's counts are kept (longer than any judged window).
pub const TTL_SECS: u64 = 900;

/// Which upstream of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Blue,
    Green,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Blue => "blue",
            Side::Green => "green",
        }
    }
}

/// One second of one side, as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub answered: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub cost_usd: f64,
    /// Errors by class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<(String, u64)>,
    /// The latency histogram's non-empty buckets: (index, count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<(usize, u32)>,
}

impl From<&Bucket> for Counts {
    fn from(b: &Bucket) -> Self {
        Counts {
            requests: b.requests,
            answered: b.answered,
            errors: b.errors,
            cost_usd: b.cost_usd,
            classes: b.classes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            latency: b.latency.sparse(),
        }
    }
}

impl Counts {
    /// Adds this second to a window.
    pub fn add_to(&self, window: &mut Bucket) {
        window.requests += self.requests;
        window.answered += self.answered;
        window.errors += self.errors;
        window.cost_usd += self.cost_usd;
        for (class, n) in &self.classes {
            window.add_class(&Arc::from(class.as_str()), *n);
        }
        window.latency.merge(&Histogram::from_sparse(&self.latency));
    }
}

/// The field of one replica's side in a second's hash.
pub fn field(replica: &str, side: Side) -> String {
    format!("{replica}|{}", side.as_str())
}

fn parse_field(field: &str) -> Option<(&str, Side)> {
    let (replica, side) = field.rsplit_once('|')?;
    let side = match side {
        "blue" => Side::Blue,
        "green" => Side::Green,
        _ => return None,
    };
    Some((replica, side))
}

/// The fleet's windows on one rollout, summed from the seconds read.
#[derive(Debug, Clone, Default)]
pub struct FleetWindow {
    pub green: Bucket,
    pub blue: Bucket,
    /// Each replica's green over the window: a failing green one replica sees holds the
    /// stage even when the fleet's sum hides it.
    pub green_by_replica: BTreeMap<String, Bucket>,
    /// Live replicas that published nothing in the window's last second read: their
    /// traffic is unknown, so the stage is not judged.
    pub silent: Vec<String>,
}

/// Sums the seconds read (`seconds[i]` is one second's hash as (field, JSON) pairs, oldest
/// first) over the live replicas; entries of other replicas (gone, or not members) are left
/// out.
pub fn sum(seconds: &[Vec<(String, String)>], live: &[String]) -> FleetWindow {
    let mut window = FleetWindow::default();
    for second in seconds {
        for (field, text) in second {
            let Some((replica, side)) = parse_field(field) else {
                continue;
            };
            if !live.iter().any(|l| l == replica) {
                continue;
            }
            let Ok(counts) = serde_json::from_str::<Counts>(text) else {
                continue;
            };
            match side {
                Side::Green => {
                    counts.add_to(&mut window.green);
                    let mine = window
                        .green_by_replica
                        .entry(replica.to_owned())
                        .or_default();
                    counts.add_to(mine);
                }
                Side::Blue => counts.add_to(&mut window.blue),
            }
        }
    }
    let last = seconds.last().map(Vec::as_slice).unwrap_or_default();
    window.silent = live
        .iter()
        .filter(|l| {
            !last
                .iter()
                .any(|(f, _)| parse_field(f).is_some_and(|(r, _)| r == l.as_str()))
        })
        .cloned()
        .collect();
    window
}

impl super::Fleet {
    fn counts_key(&self, route: &str, second: u64) -> String {
        format!("{}:{route}:{second}", self.names.counts)
    }

    /// Publishes this replica's blue and green of `second` on `route`, without waiting; a
    /// second that could not be written is skipped (the holder then sees this replica
    /// silent, and does not advance).
    pub fn publish_counts(self: &Arc<Self>, route: &str, second: u64, green: Counts, blue: Counts) {
        let (Some(mut conn), Ok(runtime)) =
            (self.connection(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let key = self.counts_key(route, second);
        let me = &self.settings.instance_id;
        let (Ok(g), Ok(b)) = (serde_json::to_string(&green), serde_json::to_string(&blue)) else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(field(me, Side::Green))
            .arg(g)
            .arg(field(me, Side::Blue))
            .arg(b)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(TTL_SECS)
            .ignore();
        runtime.spawn(async move {
            if let Err(error) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(%error, "fleet: a second's counts were not published");
            }
        });
    }

    /// Every replica's counts of seconds `from..=to` on `route`, oldest first.
    pub async fn read_counts(
        &self,
        route: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<(String, String)>>, super::FleetError> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut conn = self
            .connection()
            .ok_or_else(|| super::FleetError::Unavailable("not connected".into()))?;
        let mut pipe = redis::pipe();
        for second in from..=to {
            pipe.cmd("HGETALL").arg(self.counts_key(route, second));
        }
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| super::FleetError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn second(replica: &str, side: Side, requests: u64, errors: u64, ms: u64) -> (String, String) {
        let mut b = Bucket {
            requests,
            answered: requests - errors,
            errors,
            cost_usd: 0.01 * requests as f64,
            ..Bucket::default()
        };
        if errors > 0 {
            b.add_class(&Arc::from("server_error"), errors);
        }
        for _ in 0..requests {
            b.latency.record(Duration::from_millis(ms));
        }
        (
            field(replica, side),
            serde_json::to_string(&Counts::from(&b)).unwrap(),
        )
    }

    #[test]
    fn the_fleet_window_is_the_sum_over_live_replicas() {
        let live = vec!["g0".to_owned(), "g1".to_owned()];
        let seconds = vec![
            vec![
                second("g0", Side::Green, 10, 0, 100),
                second("g1", Side::Green, 5, 5, 100),
                second("g0", Side::Blue, 30, 0, 100),
                second("gone", Side::Green, 100, 0, 100),
            ],
            vec![
                second("g0", Side::Green, 10, 0, 2_000),
                second("g1", Side::Blue, 1, 0, 100),
            ],
        ];
        let w = sum(&seconds, &live);
        assert_eq!((w.green.requests, w.green.errors), (25, 5));
        assert_eq!(w.blue.requests, 31);
        assert_eq!(w.green.classes, vec![(Arc::from("server_error"), 5)]);
        assert!((w.green.cost_usd - 0.25).abs() < 1e-9);
        // The slow second is in the histogram: p99 is near 2 s.
        let p99 = w.green.latency.quantile(0.99).unwrap();
        assert!(p99 > Duration::from_millis(1_500), "{p99:?}");
        assert_eq!(w.green_by_replica["g1"].error_rate(), 1.0);
        assert!(w.silent.is_empty(), "both published in the last second");
    }

    #[test]
    fn a_live_replica_that_published_nothing_is_silent() {
        let live = vec!["g0".to_owned(), "g1".to_owned()];
        let seconds = vec![vec![second("g0", Side::Green, 1, 0, 10)]];
        assert_eq!(sum(&seconds, &live).silent, vec!["g1".to_owned()]);
        assert_eq!(sum(&[], &live).silent.len(), 2);
    }
}
