//! Steering: what the controller has decided about each route (the share of users on green,
//! a throttle, a model downgrade), read by the data path with one atomic load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;

/// One route's live decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steer {
    /// The upstream being rolled out, and the share of users (0..=1) it serves.
    pub green: Option<Arc<str>>,
    pub green_share: f64,
    /// Admitted requests per second while a rule throttles the route.
    pub throttle_rps: Option<f64>,
    /// The model every request is rewritten to while a downgrade is in force.
    pub downgrade_to: Option<Arc<str>>,
}

/// Every route's decisions. Writers are the controller and the admin API; each change is one
/// atomic store of a new map, so a request sees a decision whole or not at all.
#[derive(Debug, Default)]
pub struct Steering {
    current: ArcSwap<HashMap<String, Arc<Steer>>>,
    writer: Mutex<()>,
}

impl Steering {
    pub fn new() -> Arc<Self> {
        Arc::new(Steering::default())
    }

    /// The route's decisions, if any. The data path's only read.
    pub fn get(&self, route: &str) -> Option<Arc<Steer>> {
        self.current.load().get(route).cloned()
    }

    /// Changes one route's decisions; returns the moment the change became visible.
    pub fn update(&self, route: &str, change: impl FnOnce(&mut Steer)) -> Instant {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.current.load());
        let mut steer = map
            .get(route)
            .map_or_else(Steer::default, |s| Steer::clone(s));
        change(&mut steer);
        if steer == Steer::default() {
            map.remove(route);
        } else {
            map.insert(route.to_owned(), Arc::new(steer));
        }
        self.current.store(Arc::new(map));
        switchyard_core::clock::now()
    }

    /// Drops the decisions of routes no longer configured.
    pub fn retain(&self, routes: &[String]) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.current.load());
        map.retain(|route, _| routes.contains(route));
        self.current.store(Arc::new(map));
    }
}
