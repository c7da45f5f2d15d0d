//! What the admin API reads and acts on, and the hooks the binary provides.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_control::controller::Controller;
use switchyard_control::fleet::streams::{Sink, Stream};
use switchyard_control::fleet::Fleet;
use switchyard_control::{Alerts, KillBoard, Notifier};
use switchyard_proxy::Gateway;

use crate::audit::{AuditEntry, AuditError, AuditLog};
use switchyard_control::incidents::Incidents;

/// A configuration reload that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The version now in force.
    pub version: String,
    /// The version it replaced.
    pub previous: String,
}

/// Re-reads the configuration and puts it in force (parse, validate, compile, swap). The
/// binary implements it; `Err` carries the message shown to the operator, e.g.
/// `gateway.toml:12: routes[0].upstream: …`, and means the old configuration stays.
pub trait Reloader: Send + Sync {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadOutcome, String>> + Send + '_>>;
}

/// What the binary hands over to build an [`AdminState`].
pub struct AdminParts {
    pub gateway: Arc<Gateway>,
    pub alerts: Arc<Alerts>,
    pub metrics: PrometheusHandle,
    pub kills: Arc<KillBoard>,
    pub reloader: Arc<dyn Reloader>,
    /// Told of kills, revives, incidents and acknowledgements once they took effect.
    pub notifier: Notifier,
    /// Rollouts, rules and experiments; owns the incident store.
    pub controller: Arc<Controller>,
    /// Present in fleet mode: kill switches change through Redis.
    pub fleet: Option<Arc<Fleet>>,
}

/// Everything the admin API serves from.
#[derive(Clone)]
pub struct AdminState {
    pub gateway: Arc<Gateway>,
    pub alerts: Arc<Alerts>,
    pub metrics: PrometheusHandle,
    pub kills: Arc<KillBoard>,
    pub reloader: Arc<dyn Reloader>,
    pub notifier: Notifier,
    pub audit: Arc<AuditLog>,
    pub incidents: Arc<Incidents>,
    pub controller: Arc<Controller>,
    /// `[admin] allowed_hosts`: names a mutation's `Host` may carry besides IP addresses and
    /// `localhost`. Fixed at start.
    pub allowed_hosts: Arc<Vec<String>>,
    pub fleet: Option<Arc<Fleet>>,
}

/// The audit log or the incident store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("opening the audit log: {0}")]
    Audit(#[from] AuditError),
}

impl AdminState {
    /// Opens (creating it if needed) `state_dir/audit.jsonl`.
    pub fn new(parts: AdminParts, state_dir: &Path) -> Result<Self, StateError> {
        let audit = Arc::new(AuditLog::open(state_dir)?);
        if let Some(fleet) = &parts.fleet {
            // Every replica's audit entries, readable from any replica.
            let fleet = fleet.clone();
            audit.set_sink(Sink::new(move |entry| fleet.append(Stream::Audit, entry)));
            // The decisions the controller takes for the fleet are audited like an operator's.
            let log = audit.clone();
            parts
                .controller
                .set_decision_sink(Sink::new(move |decided| {
                    let entry = AuditEntry::decided(decided);
                    if let Err(error) =
                        switchyard_control::state_file::off_the_workers(|| log.append(&entry))
                    {
                        tracing::error!(%error, action = %entry.action, "audit entry not written");
                    }
                }));
        }
        let incidents = parts.controller.incidents().clone();
        Ok(AdminState {
            gateway: parts.gateway,
            alerts: parts.alerts,
            metrics: parts.metrics,
            kills: parts.kills,
            reloader: parts.reloader,
            notifier: parts.notifier,
            audit,
            incidents,
            controller: parts.controller,
            allowed_hosts: Arc::default(),
            fleet: parts.fleet,
        })
    }

    /// The host names from `[admin] allowed_hosts`.
    pub fn with_allowed_hosts(mut self, names: Vec<String>) -> Self {
        self.allowed_hosts = Arc::new(names);
        self
    }
}
