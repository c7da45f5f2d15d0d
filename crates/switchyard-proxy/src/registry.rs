//! Endpoint health kept across tables: the cells by (upstream, endpoint) and their probes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::health::EndpointHealth;
use crate::probe::{self, Probes};
use crate::upstream::{Endpoint, Upstream};

/// Health by (upstream name, endpoint URL), owned by the gateway so it outlives any one
/// table: a reload that keeps an endpoint keeps its health and its probe.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cells: HashMap<(Arc<str>, Arc<str>), Arc<EndpointHealth>>,
    probes: Probes,
}

impl HealthRegistry {
    /// The health of an upstream's endpoints, for a table being prepared: the live cell of
    /// each endpoint still configured (health follows the URL, not the position), a new one
    /// for the others. Changes nothing in force.
    pub fn cells_for(
        &self,
        upstream: &Arc<str>,
        endpoints: &[Endpoint],
    ) -> Box<[Arc<EndpointHealth>]> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        endpoints
            .iter()
            .map(|endpoint| {
                let key = (upstream.clone(), endpoint.label.clone());
                inner
                    .cells
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointHealth::new(key.0.clone(), key.1.clone())))
            })
            .collect()
    }

    /// Puts the health of a table's upstreams in force: their cells are the registry from
    /// now on (endpoints no longer configured are forgotten, and start over if they come
    /// back); starts, keeps, restarts or stops the probes. Runs on swaps only, off the data
    /// path.
    pub fn adopt(&self, upstreams: &[Arc<Upstream>]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.cells = upstreams
            .iter()
            .flat_map(|upstream| {
                upstream
                    .endpoints
                    .iter()
                    .zip(upstream.health.iter())
                    .map(|(endpoint, cell)| {
                        (
                            (upstream.name.clone(), endpoint.label.clone()),
                            cell.clone(),
                        )
                    })
            })
            .collect();
        probe::reconcile(&mut inner.probes, upstreams);
    }
}

impl Drop for HealthRegistry {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        probe::stop_all(&mut inner.probes);
    }
}
