//! The two halves of a reload against the boards: `prepare`, fallible and without effects on
//! anything in force, and `reconcile`, infallible, run when the table is swapped in.

use std::collections::HashMap;
use std::net::SocketAddr;

use switchyard_config::Config;

use crate::boards::Boards;
use crate::table::{CompileError, Table};

impl Boards {
    /// A table for `config` that keeps the live state of every route, experiment and endpoint
    /// still configured. Nothing in force changes, whether it succeeds or not. `sims` holds
    /// the addresses of embedded simulators.
    pub fn prepare(
        &self,
        config: &Config,
        sims: &HashMap<String, SocketAddr>,
    ) -> Result<Table, CompileError> {
        Table::prepare(config, sims, &self.signals, &self.health)
    }

    /// Makes the boards match a table about to serve: its route signals are registered with
    /// their window spans, experiments and feedback setting; its experiments are the registry
    /// (figures of experiments no longer configured go); its endpoints' health is the health
    /// registry, and the probes follow. Infallible, off the data path.
    pub fn reconcile(&self, table: &Table) {
        let mut experiments = Vec::new();
        for route in &table.routes {
            self.signals.adopt_route(&route.signals, route.spans);
            route
                .signals
                .set_experiments(route.variants.iter().map(|v| v.stats.clone()).collect());
            route.signals.set_takes_feedback(route.takes_feedback);
            experiments.extend(
                route
                    .variants
                    .iter()
                    .map(|v| (v.stats.clone(), v.share, v.alpha)),
            );
        }
        self.signals.experiments().adopt(&experiments);
        self.health.adopt(&table.upstreams);
    }
}

#[cfg(test)]
mod tests;
