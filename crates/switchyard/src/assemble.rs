//! The steps of start-up that `start_layered` takes, one function each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_admin::{AdminParts, AdminState};
use switchyard_config::Config;
use switchyard_control::budget::{BudgetGate, BudgetStore, GateSettings};
use switchyard_control::controller::Controller;
use switchyard_control::fleet::budget::FleetBudget;
use switchyard_control::fleet::streams::{Sink, Stream};
use switchyard_control::fleet::Fleet;
use switchyard_control::rollout::{RolloutState, RolloutStore};
use switchyard_control::steer::Steering;
use switchyard_control::{Alerts, Incidents, KillBoard, Notifier, Signals};
use switchyard_proxy::{Boards, Gateway, Listener, Table};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::reload::{self, Live, Sims};
use crate::{alert_settings, ConfigReloader, StartError, BUDGET_SAVE_EVERY};

/// Starts the embedded simulators and prepares the first snapshot against them; the gateway's
/// boards adopt it when the gateway is made.
pub(crate) async fn compile_data_plane(
    config: &Config,
) -> Result<(Sims, Arc<Signals>, Table), StartError> {
    let mut sims = Sims::new();
    reload::ensure_sims(config, &mut sims).await?;
    let signals = Signals::new();
    signals.set_telemetry(&config.telemetry);
    let table = Boards::new(signals.clone()).prepare(config, &reload::sim_addrs(&sims))?;
    Ok((sims, signals, table))
}

fn state_error(config: &Config, source: std::io::Error) -> StartError {
    StartError::State {
        dir: config.admin.state_dir.display().to_string(),
        source,
    }
}

/// Opens the persisted kill switches and tells the board which routes exist.
pub(crate) fn open_kill_board(config: &Config) -> Result<Arc<KillBoard>, StartError> {
    let kills =
        KillBoard::open(&config.admin.state_dir).map_err(|source| state_error(config, source))?;
    kills.publish(
        &config
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
    );
    Ok(kills)
}

/// What start-up reads back from state_dir.
pub(crate) struct Stores {
    /// What the controller takes over.
    pub(crate) control: ControlStores,
    pub(crate) budget: Arc<BudgetStore>,
}

/// The controller's persisted state: rollouts and incidents.
pub(crate) struct ControlStores {
    rollout_store: RolloutStore,
    rollouts: BTreeMap<String, RolloutState>,
    incidents: Arc<Incidents>,
}

/// Reads rollouts, the token budget and incidents from state_dir; in fleet mode incidents
/// are also shared with the other replicas.
pub(crate) fn open_stores(
    config: &Config,
    signals: &Arc<Signals>,
    fleet: Option<&Arc<Fleet>>,
) -> Result<Stores, StartError> {
    let state_error = |source| state_error(config, source);
    let (rollout_store, rollouts) =
        RolloutStore::open(&config.admin.state_dir).map_err(state_error)?;
    let now = switchyard_control::signals::now_secs();
    signals.budget().set_reset_at(config.budgets.reset_at, now);
    let budget =
        BudgetStore::open(&config.admin.state_dir, signals.clone()).map_err(state_error)?;
    let incidents = Arc::new(
        Incidents::open(&config.admin.state_dir)
            .map_err(|e| state_error(std::io::Error::other(e.to_string())))?,
    );
    if let Some(fleet) = fleet {
        // Every replica's incidents, readable from any replica.
        let fleet = fleet.clone();
        incidents.set_sink(Sink::new(move |incident| {
            fleet.append(Stream::Incidents, incident);
        }));
    }
    Ok(Stores {
        control: ControlStores {
            rollout_store,
            rollouts,
            incidents,
        },
        budget,
    })
}

/// The gateway over the compiled table and the live boards, with its token budget gate; in
/// fleet mode it reports its config version and shares the budget with the fleet.
pub(crate) fn assemble_gateway(
    config: &Config,
    table: Table,
    (signals, kills, steering): (&Arc<Signals>, &Arc<KillBoard>, &Arc<Steering>),
    fleet: Option<&Arc<Fleet>>,
) -> (Arc<Gateway>, Option<Arc<FleetBudget>>) {
    let gateway = Gateway::with_boards(table, signals.clone(), kills.clone(), steering.clone());
    if let Some(fleet) = fleet {
        gateway.join_fleet(fleet.clone());
        let gateway = gateway.clone();
        fleet.set_config_version(Box::new(move || gateway.table().version.to_string()));
    }
    let budget_settings = GateSettings::from_config(&config.budgets);
    let gate = BudgetGate::new(budget_settings.clone(), signals.clone());
    let fleet_budget = fleet.map(|fleet| FleetBudget::new(fleet.clone(), budget_settings));
    if let Some(fleet_budget) = &fleet_budget {
        gate.join_fleet(fleet_budget.clone());
    }
    gateway.set_budget(gate);
    (gateway, fleet_budget)
}

/// Alerts, their webhooks and the controller, with the rollouts and rules of `config` in
/// force; in fleet mode rollouts are decided once for the fleet.
pub(crate) fn assemble_control(
    config: &Config,
    signals: &Arc<Signals>,
    stores: ControlStores,
    steering: Arc<Steering>,
    fleet: Option<&Arc<Fleet>>,
) -> (Arc<Alerts>, Notifier, Arc<Controller>) {
    let alerts = Alerts::new(signals.clone(), alert_settings(config));
    let notifier = Notifier::new(config.notify.webhooks.clone());
    alerts.set_notifier(notifier.clone());
    let controller = Controller::new(
        (
            signals.clone(),
            alerts.clone(),
            notifier.clone(),
            stores.incidents,
            steering,
        ),
        stores.rollout_store,
        stores.rollouts,
    );
    controller.apply(config);
    if let Some(fleet) = fleet {
        // Rollouts are decided once for the fleet: registered, advanced and rolled back
        // through the shared state.
        controller.join_fleet(fleet.clone());
    }
    (alerts, notifier, controller)
}

/// The traffic listener, ready to serve, and where it is bound.
pub(crate) struct TrafficListener {
    pub(crate) listener: Listener,
    pub(crate) addr: SocketAddr,
}

/// The admin listener and where it is bound.
pub(crate) struct AdminListener {
    pub(crate) tcp: TcpListener,
    pub(crate) addr: SocketAddr,
}

/// Loads the TLS files, then binds the traffic listener and the admin listener.
pub(crate) async fn bind_listeners(
    config: &Config,
) -> Result<(TrafficListener, AdminListener), StartError> {
    let tls = match &config.server.tls {
        Some(files) => Some(switchyard_proxy::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let traffic = bind("the traffic listener", config.server.listen).await?;
    let admin = bind("the admin listener", config.admin.listen).await?;
    let (traffic_addr, admin_addr) = (
        local(&traffic, config.server.listen),
        local(&admin, config.admin.listen),
    );
    let listener = Listener {
        tcp: traffic,
        tls,
        header_read_timeout: config.server.header_read_timeout,
        max_header_bytes: config.server.max_header_bytes,
        builtin_http1: config.server.http1 == switchyard_config::Http1Engine::Builtin,
        max_body_bytes: config.server.max_body_bytes,
    };
    Ok((
        TrafficListener {
            listener,
            addr: traffic_addr,
        },
        AdminListener {
            tcp: admin,
            addr: admin_addr,
        },
    ))
}

/// The pieces built so far that the reloader and the admin API hold on to.
pub(crate) struct Assembled {
    pub(crate) sims: Sims,
    pub(crate) signals: Arc<Signals>,
    pub(crate) kills: Arc<KillBoard>,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) alerts: Arc<Alerts>,
    pub(crate) notifier: Notifier,
    pub(crate) controller: Arc<Controller>,
    pub(crate) fleet: Option<Arc<Fleet>>,
}

/// The config reloader, which takes over the config, and the admin API's state.
pub(crate) fn admin_state(
    config: Config,
    path: Option<PathBuf>,
    parts: Assembled,
) -> Result<(Arc<ConfigReloader>, AdminState), StartError> {
    let state_dir = config.admin.state_dir.clone();
    let allowed_hosts = config.admin.allowed_hosts.clone();
    let plane = reload::ControlPlane {
        gateway: &parts.gateway,
        alerts: &parts.alerts,
        signals: &parts.signals,
        kills: &parts.kills,
        controller: &parts.controller,
        notifier: &parts.notifier,
    };
    // The same settings a reload gives, so the two can never differ.
    reload::configure(plane, &config);
    let reloader = Arc::new(ConfigReloader {
        path,
        live: tokio::sync::Mutex::new(Live {
            config,
            sims: parts.sims,
        }),
        gateway: parts.gateway.clone(),
        alerts: parts.alerts.clone(),
        signals: parts.signals,
        kills: parts.kills.clone(),
        controller: parts.controller.clone(),
        notifier: parts.notifier.clone(),
    });
    let admin_parts = AdminParts {
        gateway: parts.gateway,
        alerts: parts.alerts,
        // The recorder installed at the start (installing again returns the same handle).
        metrics: switchyard_admin::exposition::install(),
        kills: parts.kills,
        reloader: reloader.clone(),
        notifier: parts.notifier,
        controller: parts.controller,
        fleet: parts.fleet,
    };
    let state = AdminState::new(admin_parts, &state_dir)
        .map_err(|e| StartError::State {
            dir: state_dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?
        .with_allowed_hosts(allowed_hosts);
    Ok((reloader, state))
}

/// The loops that run beside the listeners: alerts, the controller's tick, SIGHUP reloads,
/// budget saves and, in fleet mode, the fleet's sync and budget leases.
pub(crate) fn spawn_background(
    (alerts, tick): (&Arc<Alerts>, Duration),
    controller: &Arc<Controller>,
    reloader: &Arc<ConfigReloader>,
    budget: &Arc<BudgetStore>,
    (fleet, fleet_budget): (Option<&Arc<Fleet>>, Option<Arc<FleetBudget>>),
) -> Vec<JoinHandle<()>> {
    let mut background = vec![
        tokio::spawn(alerts.clone().run(tick)),
        tokio::spawn(controller.clone().run()),
        tokio::spawn(reload::on_sighup(reloader.clone())),
        tokio::spawn(budget.clone().run(BUDGET_SAVE_EVERY)),
    ];
    if let Some(fleet) = fleet {
        background.push(tokio::spawn(fleet.clone().run()));
    }
    if let Some(fleet_budget) = fleet_budget {
        background.push(tokio::spawn(fleet_budget.run()));
    }
    background
}

/// How long start-up waits for Redis before serving degraded from the persisted state.
const FLEET_LOAD_BOUND: Duration = Duration::from_secs(2);

/// In fleet mode, loads the fleet's state into the kill board before anything listens, so
/// the first request already sees a kill engaged elsewhere.
pub(crate) async fn join_fleet(
    config: &Config,
    kills: &Arc<KillBoard>,
) -> Result<Option<Arc<Fleet>>, StartError> {
    let Some(settings) = &config.fleet else {
        return Ok(None);
    };
    let fleet = Fleet::new(
        settings.clone(),
        kills.clone(),
        Some(&config.admin.state_dir),
    )
    .map_err(StartError::Fleet)?;
    fleet.load(FLEET_LOAD_BOUND).await;
    Ok(Some(fleet))
}

fn local(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}
