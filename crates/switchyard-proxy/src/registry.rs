//! Endpoint health kept across tables: the cells by (upstream, endpoint) and their probes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::health::EndpointHealth;
use crate::probe::{self, Probes};
use crate::table::Table;

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
    /// Gives every upstream of a table about to be put in force its endpoints' health, kept
    /// from earlier tables; forgets endpoints no longer configured; starts, keeps, restarts or
    /// stops the probes. Runs on swaps only, off the data path.
    pub fn adopt(&self, table: &Table) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::new();
        for upstream in &table.upstreams {
            let cells: Box<[Arc<EndpointHealth>]> = upstream
                .endpoints
                .iter()
                .map(|endpoint| {
                    let key = (upstream.name.clone(), endpoint.label.clone());
                    let cell = inner.cells.get(&key).cloned().unwrap_or_else(|| {
                        Arc::new(EndpointHealth::new(key.0.clone(), key.1.clone()))
                    });
                    kept.insert(key, cell.clone());
                    cell
                })
                .collect();
            // Set once: a table is adopted before it serves and never again.
            let _ = upstream.health.set(cells);
        }
        inner.cells = kept;
        probe::reconcile(&mut inner.probes, table);
    }
}

impl Drop for HealthRegistry {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        probe::stop_all(&mut inner.probes);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::HealthPolicy;

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_after: 3,
        eject_for: Duration::from_secs(10),
    };

    fn table(endpoints: &str) -> Table {
        let text = format!("[upstreams.up]\nendpoints = [{endpoints}]\n");
        let config =
            switchyard_config::Config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        let signals = switchyard_state::Signals::new();
        Table::compile(&config, &std::collections::HashMap::new(), &signals).unwrap()
    }

    #[test]
    fn health_outlives_a_table_for_endpoints_still_configured() {
        let registry = HealthRegistry::default();
        let first = table("\"http://a:1\", \"http://b:1\"");
        registry.adopt(&first);
        let up = &first.upstreams[0];
        for _ in 0..3 {
            up.health_of(1).unwrap().failure(POLICY);
        }
        // b is listed first now: health follows the URL, not the position.
        let second = table("\"http://b:1\", \"http://a:1\", \"http://c:1\"");
        registry.adopt(&second);
        let up2 = &second.upstreams[0];
        assert!(Arc::ptr_eq(
            up.health_of(1).unwrap(),
            up2.health_of(0).unwrap()
        ));
        assert!(!up2.health_of(0).unwrap().healthy());
        assert!(up2.health_of(1).unwrap().healthy());
        // An endpoint that leaves the config and comes back starts over.
        registry.adopt(&table("\"http://a:1\""));
        let third = table("\"http://a:1\", \"http://b:1\"");
        registry.adopt(&third);
        assert!(third.upstreams[0].health_of(1).unwrap().healthy());
    }
}
