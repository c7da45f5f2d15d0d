//! Kill switches: a permanent property of every route, engaged and released at run time,
//! read by the data path through one atomic load, and kept across restarts in state_dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// Kill only the requests whose header has this value (a tenant, a region, a client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    pub header: String,
    pub value: String,
}

/// An engaged kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillSwitch {
    pub route: String,
    pub reason: String,
    /// Kill only this percentage of users (by the sticky split hash); `None` kills all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Kill only requests in this segment; `None` kills regardless of headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// Unix milliseconds when it took effect.
    pub engaged_at_ms: u64,
    /// The admin token's name.
    pub by: String,
}

impl KillSwitch {
    /// The split name partial kills hash users by: the same users stay killed.
    pub fn split_name(&self) -> String {
        format!("kill:{}", self.route)
    }

    /// Whether this request is killed. `user_key` places it in a partial kill; without one,
    /// a partial kill draws per request.
    pub fn applies(&self, headers: &http::HeaderMap, user_key: Option<&str>) -> bool {
        if let Some(segment) = &self.segment {
            let value = headers
                .get(segment.header.as_str())
                .and_then(|v| v.to_str().ok());
            if value != Some(segment.value.as_str()) {
                return false;
            }
        }
        match self.percent {
            None => true,
            Some(percent) => {
                let share = percent / 100.0;
                match user_key {
                    Some(user) => switchyard_core::split::within(user, &self.split_name(), share),
                    None => fastrand::f64() < share,
                }
            }
        }
    }
}

/// What an engage or a release did.
#[derive(Debug, Clone)]
pub struct Flip {
    pub before: Option<KillSwitch>,
    pub after: Option<KillSwitch>,
    /// Unix milliseconds when the new state became visible to requests.
    pub effective_at_ms: u64,
    /// Microseconds from the call to the atomic store.
    pub took_us: u64,
    /// Whether the new state reached the disk; the switch is in force either way.
    pub persisted: Result<(), String>,
}

/// Every route's kill switch.
#[derive(Debug)]
pub struct KillBoard {
    current: ArcSwap<BTreeMap<String, Arc<KillSwitch>>>,
    path: Option<PathBuf>,
    /// Serialises writers so two flips never race on the map or the file.
    writer: Mutex<()>,
}

const FILE: &str = "kill_switches.json";

/// Milliseconds since the Unix epoch on the wall clock: kill switches are stamped in it.
pub fn now_ms() -> u64 {
    switchyard_core::clock::unix_ms()
}

impl KillBoard {
    /// A board kept only in memory (tests, `state_dir`-less embedding).
    pub fn in_memory() -> Arc<Self> {
        Arc::new(KillBoard {
            current: ArcSwap::from_pointee(BTreeMap::new()),
            path: None,
            writer: Mutex::new(()),
        })
    }

    /// Opens the board persisted in `state_dir`, creating the directory if needed.
    pub fn open(state_dir: &Path) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(FILE);
        let map = crate::state_file::read_list::<KillSwitch>(&path)?
            .into_iter()
            .map(|k| (k.route.clone(), Arc::new(k)))
            .collect();
        Ok(Arc::new(KillBoard {
            current: ArcSwap::from_pointee(map),
            path: Some(path),
            writer: Mutex::new(()),
        }))
    }

    /// The route's switch, if engaged. One atomic load: the data path's only read.
    pub fn get(&self, route: &str) -> Option<Arc<KillSwitch>> {
        self.current.load().get(route).cloned()
    }

    /// Every engaged switch, by route.
    pub fn all(&self) -> Vec<KillSwitch> {
        self.current
            .load()
            .values()
            .map(|k| (**k).clone())
            .collect()
    }

    /// Engages (or replaces) a route's switch.
    pub fn engage(&self, switch: KillSwitch) -> Flip {
        let route = switch.route.clone();
        self.flip(&route, Some(switch))
    }

    /// Releases a route's switch.
    pub fn release(&self, route: &str) -> Flip {
        self.flip(route, None)
    }

    fn flip(&self, route: &str, after: Option<KillSwitch>) -> Flip {
        let started = switchyard_core::clock::now();
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = (**self.current.load()).clone();
        let before = match &after {
            Some(switch) => map.insert(route.to_string(), Arc::new(switch.clone())),
            None => map.remove(route),
        };
        let snapshot: Vec<KillSwitch> = map.values().map(|k| (**k).clone()).collect();
        // Stop the bleeding first: the swap is what requests see; the file follows.
        self.current.store(Arc::new(map));
        let took_us = started.elapsed().as_micros() as u64;
        let effective_at_ms = now_ms();
        metrics::gauge!(switchyard_core::metrics::KILL_SWITCH_ENGAGED, "route" => route.to_string())
            .set(if after.is_some() { 1.0 } else { 0.0 });
        let persisted = self.persist(&snapshot);
        Flip {
            before: before.map(|k| (*k).clone()),
            after,
            effective_at_ms,
            took_us,
            persisted,
        }
    }

    /// Puts a whole set of switches in force at once (the fleet's shared state), keeping the
    /// engaged gauge right for routes that were released. Returns whether it reached the disk.
    pub fn replace(&self, switches: Vec<KillSwitch>) -> Result<(), String> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let map: BTreeMap<String, Arc<KillSwitch>> = switches
            .iter()
            .map(|k| (k.route.clone(), Arc::new(k.clone())))
            .collect();
        let old = self.current.swap(Arc::new(map));
        for route in old
            .keys()
            .filter(|r| !switches.iter().any(|k| &k.route == *r))
        {
            metrics::gauge!(switchyard_core::metrics::KILL_SWITCH_ENGAGED, "route" => route.clone())
                .set(0.0);
        }
        for switch in &switches {
            metrics::gauge!(switchyard_core::metrics::KILL_SWITCH_ENGAGED, "route" => switch.route.clone())
                .set(1.0);
        }
        self.persist(&switches)
    }

    fn persist(&self, switches: &[KillSwitch]) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        crate::state_file::off_the_workers(|| crate::state_file::write_list(path, switches))
    }

    /// Sets the engaged gauge for every route (at start-up and after a reload).
    pub fn publish(&self, routes: &[String]) {
        let current = self.current.load();
        for route in routes {
            let engaged = if current.contains_key(route) {
                1.0
            } else {
                0.0
            };
            metrics::gauge!(switchyard_core::metrics::KILL_SWITCH_ENGAGED, "route" => route.clone()).set(engaged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(route: &str, percent: Option<f64>) -> KillSwitch {
        KillSwitch {
            route: route.into(),
            reason: "test".into(),
            percent,
            segment: None,
            engaged_at_ms: 1,
            by: "t".into(),
        }
    }

    #[test]
    fn engaged_state_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("switchyard-kill-{}", std::process::id()));
        let board = KillBoard::open(&dir).unwrap();
        assert!(board.engage(switch("a", None)).persisted.is_ok());
        board.engage(switch("b", Some(10.0)));
        board.release("a");
        let reopened = KillBoard::open(&dir).unwrap();
        assert!(reopened.get("a").is_none());
        assert_eq!(reopened.get("b").unwrap().percent, Some(10.0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn partial_kills_are_sticky_and_segments_filter() {
        let k = switch("r", Some(30.0));
        let headers = http::HeaderMap::new();
        let killed: Vec<bool> = (0..1000)
            .map(|i| k.applies(&headers, Some(&format!("u{i}"))))
            .collect();
        let again: Vec<bool> = (0..1000)
            .map(|i| k.applies(&headers, Some(&format!("u{i}"))))
            .collect();
        assert_eq!(killed, again);
        let share = killed.iter().filter(|k| **k).count();
        assert!((240..360).contains(&share), "{share}");
        let seg = KillSwitch {
            segment: Some(Segment {
                header: "x-tenant".into(),
                value: "acme".into(),
            }),
            ..switch("r", None)
        };
        let mut acme = http::HeaderMap::new();
        acme.insert("x-tenant", "acme".parse().unwrap());
        assert!(seg.applies(&acme, None));
        assert!(!seg.applies(&headers, None));
    }
}
