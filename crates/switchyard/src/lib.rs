//! Assembly: turns a validated config into a running gateway (listeners, simulators, alerts).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use switchyard_admin::{AdminParts, AdminState};
use switchyard_config::{Config, UpstreamTarget};
use switchyard_control::alerts::AlertSettings;
use switchyard_control::budget::{BudgetGate, BudgetStore, GateSettings};
use switchyard_control::controller::Controller;
use switchyard_control::fleet::budget::FleetBudget;
use switchyard_control::fleet::budget::GateFleet;
use switchyard_control::fleet::streams::{Sink, Stream};
use switchyard_control::fleet::Fleet;
use switchyard_control::rollout::{RolloutState, RolloutStore};
use switchyard_control::steer::Steering;
use switchyard_control::{Alerts, Incidents, KillBoard, Notifier, Signals};
use switchyard_proxy::{Gateway, Listener, Table};
use switchyard_sim::Sim;
use tokio::net::TcpListener;

pub mod reload;

pub use reload::ConfigReloader;
use reload::{Live, Sims};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{origin}:{line}: upstreams.{name}.sim.profile: unknown profile {profile:?} (known: {known})")]
    UnknownProfile {
        origin: String,
        line: usize,
        name: String,
        profile: String,
        known: String,
    },
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Compile(#[from] switchyard_proxy::CompileError),
    #[error(transparent)]
    Tls(#[from] switchyard_proxy::ServeError),
    #[error("state_dir {dir}: {source}")]
    State { dir: String, source: std::io::Error },
    #[error("[fleet]: {0}")]
    Fleet(String),
}

/// A running gateway.
pub struct Running {
    /// Where the traffic listener is bound.
    pub traffic: SocketAddr,
    /// Where the admin listener is bound.
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub alerts: Arc<Alerts>,
    pub controller: Arc<Controller>,
    pub reloader: Arc<ConfigReloader>,
    /// Present in fleet mode.
    pub fleet: Option<Arc<Fleet>>,
    /// Closes the traffic listener; carries how long requests in flight may still take.
    close_traffic: watch::Sender<Option<Duration>>,
    /// Resolves with the number of connections cut at the drain timeout.
    traffic_task: JoinHandle<usize>,
    /// The admin listener stays up until the traffic is drained (metrics during a drain).
    close_admin: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    budget: Arc<BudgetStore>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// How often the token budget's count is written to state_dir while it changes.
const BUDGET_SAVE_EVERY: Duration = Duration::from_secs(2);

/// The longest shutdown waits for queued budget settlements to reach Redis.
const BUDGET_SETTLE_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections whose requests were still in flight at `drain_timeout`, and were cut.
    pub cut: usize,
}

impl Running {
    /// The graceful drain (SIGTERM, SIGINT): `/ready` answers 503 at once; the traffic
    /// listener keeps accepting for `[server] drain_delay`, so load balancers take the
    /// replica out; then it closes and requests in flight get up to `drain_timeout` to
    /// finish before the rest are cut. Returns when the listeners are down. Both keys are
    /// read from the config in force, so a reload changes them.
    pub async fn drain(self) -> Drained {
        let server = self.reloader.live.lock().await.config.server.clone();
        self.gateway.lifecycle().drain();
        tracing::info!(
            drain_delay = ?server.drain_delay,
            drain_timeout = ?server.drain_timeout,
            "draining: /ready answers 503; new connections are accepted until drain_delay has passed"
        );
        tokio::time::sleep(server.drain_delay).await;
        self.close(server.drain_timeout).await
    }

    /// Stops accepting at once, lets open requests finish (up to `drain_timeout`), and
    /// returns when the listeners are down.
    pub async fn stop(self) {
        let timeout = self.reloader.live.lock().await.config.server.drain_timeout;
        self.gateway.lifecycle().drain();
        self.close(timeout).await;
    }

    async fn close(self, drain_timeout: Duration) -> Drained {
        let _ = self.close_traffic.send(Some(drain_timeout));
        let cut = self.traffic_task.await.unwrap_or(0);
        // The lease's unused part goes back to the fleet, and settlements still queued get
        // a moment to reach Redis.
        if let Some(fleet) = self.gateway.budget().and_then(|g| g.fleet()) {
            fleet.close(BUDGET_SETTLE_AT_SHUTDOWN).await;
        }
        let _ = self.close_admin.send(true);
        let _ = self.admin_task.await;
        for task in self.background {
            task.abort();
        }
        // The last tokens counted since the periodic save.
        let budget = self.budget;
        match tokio::task::spawn_blocking(move || budget.save()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "token budget not saved at shutdown"),
            Err(error) => tracing::error!(%error, "token budget save at shutdown did not finish"),
        }
        tracing::info!(cut, "drained: the listeners are closed");
        Drained { cut }
    }

    /// The embedded simulator of an upstream, if it has one.
    pub async fn sim(&self, upstream: &str) -> Option<(Sim, SocketAddr)> {
        let live = self.reloader.live.lock().await;
        live.sims
            .get(upstream)
            .map(|(sim, addr, _)| (sim.clone(), *addr))
    }
}

/// The alert thresholds a config sets.
pub fn alert_settings(config: &Config) -> AlertSettings {
    let a = &config.alerts;
    AlertSettings {
        p99_latency: a.p99_latency,
        error_rate: a.error_rate,
        window: a.window,
        traffic_spike: a.traffic_spike,
        baseline: a.baseline,
        min_requests: a.min_requests,
        queue_depth: a.queue_depth,
        context_fill: a.context_fill,
        daily_tokens: config.budgets.daily_tokens,
        budget_alert_at: config.budgets.alert_at,
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Starts everything the config describes; reloads read the file the config came from.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let path = Some(PathBuf::from(&config.origin)).filter(|p| p.is_file());
    start_with(config, path).await
}

/// Starts everything the config describes; `path` is the file reloads read, if any.
pub async fn start_with(config: Config, path: Option<PathBuf>) -> Result<Running, StartError> {
    start_layered(config, path, tower_layer::Identity::new()).await
}

/// Starts everything the config describes, with `layer` around the gateway's request path
/// on the traffic listener: the embedding program's own middleware (tracing, headers,
/// authentication), outermost. It wraps a [`switchyard_proxy::Proxy`] per connection.
pub async fn start_layered<L, S, B>(
    config: Config,
    path: Option<PathBuf>,
    layer: L,
) -> Result<Running, StartError>
where
    L: tower_layer::Layer<switchyard_proxy::Proxy, Service = S> + Send + Sync + 'static,
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The recorder goes in first, so every metric described from here on is exported.
    switchyard_admin::exposition::install();
    let (sims, signals, table) = compile_data_plane(&config).await?;
    let kills = open_kill_board(&config)?;
    let fleet = join_fleet(&config, &kills).await?;
    let stores = open_stores(&config, &signals, fleet.as_ref())?;
    let steering = Steering::new();
    let (gateway, fleet_budget) = assemble_gateway(
        &config,
        table,
        (&signals, &kills, &steering),
        fleet.as_ref(),
    );
    let alerts = Alerts::new(signals.clone(), alert_settings(&config));
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
    controller.apply(&config);
    if let Some(fleet) = &fleet {
        // Rollouts are decided once for the fleet: registered, advanced and rolled back
        // through the shared state.
        controller.join_fleet(fleet.clone());
    }
    let (listener, admin) = bind_listeners(&config).await?;
    let (traffic_addr, admin_addr) = (listener.addr, admin.addr);
    let tick = (config.alerts.window / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let version = config.version.clone();
    let (reloader, state) = admin_state(
        config,
        path,
        Assembled {
            sims,
            signals,
            kills,
            gateway: gateway.clone(),
            alerts: alerts.clone(),
            notifier,
            controller: controller.clone(),
            fleet: fleet.clone(),
        },
    )?;
    let (close_traffic, traffic_closed) = watch::channel(None);
    let (close_admin, admin_closed) = watch::channel(false);
    let background = spawn_background(
        (&alerts, tick),
        &controller,
        &reloader,
        &stores.budget,
        (fleet.as_ref(), fleet_budget),
    );
    let traffic_task = tokio::spawn(switchyard_proxy::serve(
        listener.listener,
        gateway.clone(),
        layer,
        drain_timeout(traffic_closed),
    ));
    let admin_task = tokio::spawn(switchyard_admin::serve(
        admin.tcp,
        state,
        stopped(admin_closed),
    ));
    let file_watcher = reload::watch(reloader.clone());
    // Kill switches and rollouts were read from state_dir and put in force above, before
    // either listener served a request: only now may /ready say ready.
    gateway.lifecycle().serving();
    tracing::info!(traffic = %traffic_addr, admin = %admin_addr, config_version = %version, "switchyard serving");
    Ok(Running {
        traffic: traffic_addr,
        admin: admin_addr,
        gateway,
        alerts,
        controller,
        reloader,
        fleet,
        close_traffic,
        traffic_task,
        close_admin,
        admin_task,
        background,
        budget: stores.budget,
        _watcher: file_watcher,
    })
}

/// Starts the embedded simulators and compiles the routing table against them.
async fn compile_data_plane(config: &Config) -> Result<(Sims, Arc<Signals>, Table), StartError> {
    let mut sims = Sims::new();
    reload::ensure_sims(config, &mut sims).await?;
    let signals = Signals::new();
    signals.set_telemetry(&config.telemetry);
    let table = Table::compile(config, &reload::sim_addrs(&sims), &signals)?;
    Ok((sims, signals, table))
}

fn state_error(config: &Config, source: std::io::Error) -> StartError {
    StartError::State {
        dir: config.admin.state_dir.display().to_string(),
        source,
    }
}

/// Opens the persisted kill switches and tells the board which routes exist.
fn open_kill_board(config: &Config) -> Result<Arc<KillBoard>, StartError> {
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
struct Stores {
    rollout_store: RolloutStore,
    rollouts: BTreeMap<String, RolloutState>,
    budget: Arc<BudgetStore>,
    incidents: Arc<Incidents>,
}

/// Reads rollouts, the token budget and incidents from state_dir; in fleet mode incidents
/// are also shared with the other replicas.
fn open_stores(
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
        rollout_store,
        rollouts,
        budget,
        incidents,
    })
}

/// The gateway over the compiled table and the live boards, with its token budget gate; in
/// fleet mode it reports its config version and shares the budget with the fleet.
fn assemble_gateway(
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

/// The traffic listener, ready to serve, and where it is bound.
struct TrafficListener {
    listener: Listener,
    addr: SocketAddr,
}

/// The admin listener and where it is bound.
struct AdminListener {
    tcp: TcpListener,
    addr: SocketAddr,
}

/// Loads the TLS files, then binds the traffic listener and the admin listener.
async fn bind_listeners(config: &Config) -> Result<(TrafficListener, AdminListener), StartError> {
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
struct Assembled {
    sims: Sims,
    signals: Arc<Signals>,
    kills: Arc<KillBoard>,
    gateway: Arc<Gateway>,
    alerts: Arc<Alerts>,
    notifier: Notifier,
    controller: Arc<Controller>,
    fleet: Option<Arc<Fleet>>,
}

/// The config reloader, which takes over the config, and the admin API's state.
fn admin_state(
    config: Config,
    path: Option<PathBuf>,
    parts: Assembled,
) -> Result<(Arc<ConfigReloader>, AdminState), StartError> {
    let tokens = Arc::new(ArcSwap::from_pointee(config.admin.tokens.clone()));
    let fallbacks = Arc::new(ArcSwap::from_pointee(switchyard_admin::fallback_kinds(
        &config,
    )));
    let state_dir = config.admin.state_dir.clone();
    let allowed_hosts = config.admin.allowed_hosts.clone();
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
        tokens: tokens.clone(),
        fallbacks: fallbacks.clone(),
        notifier: parts.notifier.clone(),
    });
    let admin_parts = AdminParts {
        gateway: parts.gateway,
        alerts: parts.alerts,
        // The recorder installed at the start (installing again returns the same handle).
        metrics: switchyard_admin::exposition::install(),
        kills: parts.kills,
        tokens,
        fallbacks,
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
fn spawn_background(
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
async fn join_fleet(
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

async fn stopped(mut watcher: watch::Receiver<bool>) {
    let _ = watcher.wait_for(|stop| *stop).await;
}

/// Resolves when the traffic listener is to close, with the time requests in flight get.
async fn drain_timeout(mut watcher: watch::Receiver<Option<Duration>>) -> Duration {
    match watcher.wait_for(Option::is_some).await {
        Ok(timeout) => timeout.unwrap_or_default(),
        // The `Running` is gone without a drain: close now, cut at once.
        Err(_) => Duration::ZERO,
    }
}

/// Checks what only the running gateway would otherwise find out: simulator profiles and
/// TLS files.
pub async fn validate_runtime(config: &Config) -> Result<(), StartError> {
    for (name, upstream) in &config.upstreams {
        if let UpstreamTarget::Sim { profile } = &upstream.target {
            if switchyard_sim::named(profile).is_none() {
                return Err(StartError::UnknownProfile {
                    origin: config.origin.clone(),
                    line: upstream.line,
                    name: name.clone(),
                    profile: profile.clone(),
                    known: switchyard_sim::PROFILE_NAMES.join(", "),
                });
            }
        }
    }
    if let Some(files) = &config.server.tls {
        switchyard_proxy::tls_acceptor(&files.cert, &files.key)?;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    match ShutdownSignals::new() {
        Ok(mut signals) => signals.recv().await,
        Err(_) => std::future::pending().await,
    }
}

/// SIGTERM and SIGINT (Ctrl-C), watched from creation on: the first starts the drain, a
/// second one ends the process at once. Once created, these signals no longer kill the
/// process by themselves.
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
