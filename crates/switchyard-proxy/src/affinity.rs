//! Endpoint affinity: a ketama ring per upstream, so a user key keeps its endpoint (and the
//! replica's prompt cache stays warm), and an endpoint that leaves moves only its own users.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use pingora_ketama::{Bucket, Continuum, DEFAULT_POINT_MULTIPLE};

/// The consistent-hash ring of one upstream's endpoints, plus the round-robin cursor for
/// requests without a user key.
pub struct Ring {
    continuum: Continuum,
    /// Each endpoint's name on the ring; the position is the endpoint's index.
    nodes: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring").field("nodes", &self.nodes).finish()
    }
}

/// The ring knows nodes only as socket addresses, and endpoints are URLs (often host names):
/// each gets a stable synthetic address from its URL, so its points do not depend on its
/// position in the list or on the other endpoints.
fn node_name(label: &str) -> SocketAddr {
    let bits = xxhash_rust::xxh3::xxh3_128(label.as_bytes());
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(bits)), 0)
}

impl Ring {
    /// A ring over endpoints named by their URLs, each with the same weight.
    pub fn new<S: AsRef<str>>(labels: &[S]) -> Ring {
        let nodes: Vec<SocketAddr> = labels.iter().map(|l| node_name(l.as_ref())).collect();
        let buckets: Vec<Bucket> = nodes.iter().map(|n| Bucket::new(*n, 1)).collect();
        Ring {
            continuum: Continuum::new(&buckets),
            nodes,
            next: AtomicUsize::new(0),
        }
    }

    /// The first endpoint clockwise from the key's point that `accept` takes. Skipping an
    /// endpoint's points is the same as removing it from the ring: keys of others stay put.
    pub fn by_key(&self, key: &[u8], accept: impl Fn(usize) -> bool) -> Option<usize> {
        let points = self.nodes.len() * DEFAULT_POINT_MULTIPLE as usize;
        self.continuum
            .node_iter(key)
            .take(points)
            .filter_map(|node| self.nodes.iter().position(|n| n == node))
            .find(|&i| accept(i))
    }

    /// The next endpoint in turn that `accept` takes.
    pub fn round_robin(&self, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| accept(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://10.0.0.1:8000";
    const B: &str = "http://10.0.0.2:8000";
    const C: &str = "http://replica-c.internal:8000";

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("user-{i}"))
    }

    #[test]
    fn same_key_same_endpoint() {
        let ring = Ring::new(&[A, B, C]);
        let again = Ring::new(&[A, B, C]);
        for key in keys() {
            let first = ring.by_key(key.as_bytes(), |_| true);
            assert!(first.is_some());
            assert_eq!(first, ring.by_key(key.as_bytes(), |_| true));
            assert_eq!(first, again.by_key(key.as_bytes(), |_| true), "{key}");
        }
    }

    #[test]
    fn skipping_an_endpoint_moves_only_its_keys() {
        let ring = Ring::new(&[A, B, C]);
        let mut moved = 0;
        for key in keys() {
            let before = ring.by_key(key.as_bytes(), |_| true).unwrap();
            let after = ring.by_key(key.as_bytes(), |i| i != 1).unwrap();
            if before == 1 {
                assert_ne!(after, 1);
                moved += 1;
            } else {
                assert_eq!(before, after, "{key} moved off a healthy endpoint");
            }
        }
        assert!(moved > 2_000, "B had only {moved} keys");
    }

    #[test]
    fn removing_an_endpoint_from_the_list_moves_only_its_keys() {
        let full = Ring::new(&[A, B, C]);
        let without_b = Ring::new(&[A, C]);
        // Without B, A is index 0 and C index 1.
        let names = [A, B, C];
        let rest = [A, C];
        for key in keys() {
            let before = names[full.by_key(key.as_bytes(), |_| true).unwrap()];
            let after = rest[without_b.by_key(key.as_bytes(), |_| true).unwrap()];
            if before != B {
                assert_eq!(before, after, "{key} moved although its endpoint stayed");
            }
        }
    }

    #[test]
    fn keys_spread_roughly_evenly() {
        let ring = Ring::new(&[A, B, C]);
        let mut counts = [0u32; 3];
        for key in keys() {
            counts[ring.by_key(key.as_bytes(), |_| true).unwrap()] += 1;
        }
        // 160 points per endpoint keep each share within a few points of a third.
        for count in counts {
            assert!((2_500..=4_200).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn nothing_accepted_is_none() {
        let ring = Ring::new(&[A, B]);
        assert_eq!(ring.by_key(b"user-1", |_| false), None);
        assert_eq!(ring.round_robin(|_| false), None);
    }

    #[test]
    fn round_robin_takes_turns_and_skips() {
        let ring = Ring::new(&[A, B, C]);
        let picks: Vec<usize> = (0..6).filter_map(|_| ring.round_robin(|_| true)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<usize> = (0..4)
            .filter_map(|_| ring.round_robin(|i| i != 1))
            .collect();
        assert!(picks.iter().all(|&i| i != 1), "{picks:?}");
    }
}
