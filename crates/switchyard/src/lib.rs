//! Assembly: turns a validated config into a running gateway (listeners, simulators, alerts).

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
use switchyard_control::rollout::RolloutStore;
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
    let metrics = switchyard_admin::exposition::install();
    let mut sims = Sims::new();
    reload::ensure_sims(&config, &mut sims).await?;
    let signals = Signals::new();
    signals.set_telemetry(&config.telemetry);
    let table = Table::compile(&config, &reload::sim_addrs(&sims), &signals)?;
    let kills = KillBoard::open(&config.admin.state_dir).map_err(|source| StartError::State {
        dir: config.admin.state_dir.display().to_string(),
        source,
    })?;
    kills.publish(
        &config
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
    );
    let fleet = join_fleet(&config, &kills).await?;
    let state_error = |source: std::io::Error| StartError::State {
        dir: config.admin.state_dir.display().to_string(),
        source,
    };
    let (store, rollouts) = RolloutStore::open(&config.admin.state_dir).map_err(state_error)?;
    let now = switchyard_control::signals::now_secs();
    signals.budget().set_reset_at(config.budgets.reset_at, now);
    let budget =
        BudgetStore::open(&config.admin.state_dir, signals.clone()).map_err(state_error)?;
    let incidents = Arc::new(
        Incidents::open(&config.admin.state_dir)
            .map_err(|e| state_error(std::io::Error::other(e.to_string())))?,
    );
    if let Some(fleet) = &fleet {
        // Every replica's incidents, readable from any replica.
        let fleet = fleet.clone();
        incidents.set_sink(Sink::new(move |incident| {
            fleet.append(Stream::Incidents, incident);
        }));
    }
    let steering = Steering::new();
    let gateway = Gateway::with_boards(table, signals.clone(), kills.clone(), steering.clone());
    if let Some(fleet) = &fleet {
        gateway.join_fleet(fleet.clone());
        let gateway = gateway.clone();
        fleet.set_config_version(Box::new(move || gateway.table().version.to_string()));
    }
    let budget_settings = GateSettings::from_config(&config.budgets);
    let gate = BudgetGate::new(budget_settings.clone(), signals.clone());
    let fleet_budget = fleet
        .as_ref()
        .map(|fleet| FleetBudget::new(fleet.clone(), budget_settings));
    if let Some(fleet_budget) = &fleet_budget {
        gate.join_fleet(fleet_budget.clone());
    }
    gateway.set_budget(gate);
    let alerts = Alerts::new(signals.clone(), alert_settings(&config));
    let notifier = Notifier::new(config.notify.webhooks.clone());
    alerts.set_notifier(notifier.clone());
    let controller = Controller::new(
        (
            signals.clone(),
            alerts.clone(),
            notifier.clone(),
            incidents,
            steering,
        ),
        store,
        rollouts,
    );
    controller.apply(&config);
    if let Some(fleet) = &fleet {
        // Rollouts are decided once for the fleet: registered, advanced and rolled back
        // through the shared state.
        controller.join_fleet(fleet.clone());
    }
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
    let tick = (config.alerts.window / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let tokens = Arc::new(ArcSwap::from_pointee(config.admin.tokens.clone()));
    let fallbacks = Arc::new(ArcSwap::from_pointee(switchyard_admin::fallback_kinds(
        &config,
    )));
    let state_dir = config.admin.state_dir.clone();
    let allowed_hosts = config.admin.allowed_hosts.clone();
    let version = config.version.clone();
    let reloader = Arc::new(ConfigReloader {
        path,
        live: tokio::sync::Mutex::new(Live { config, sims }),
        gateway: gateway.clone(),
        alerts: alerts.clone(),
        signals,
        kills: kills.clone(),
        controller: controller.clone(),
        tokens: tokens.clone(),
        fallbacks: fallbacks.clone(),
        notifier: notifier.clone(),
    });
    let parts = AdminParts {
        gateway: gateway.clone(),
        alerts: alerts.clone(),
        metrics,
        kills,
        tokens,
        fallbacks,
        reloader: reloader.clone(),
        notifier,
        controller: controller.clone(),
        fleet: fleet.clone(),
    };
    let state = AdminState::new(parts, &state_dir)
        .map_err(|e| StartError::State {
            dir: state_dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?
        .with_allowed_hosts(allowed_hosts);
    let (close_traffic, traffic_closed) = watch::channel(None);
    let (close_admin, admin_closed) = watch::channel(false);
    let mut background = vec![
        tokio::spawn(alerts.clone().run(tick)),
        tokio::spawn(controller.clone().run()),
        tokio::spawn(reload::on_sighup(reloader.clone())),
        tokio::spawn(budget.clone().run(BUDGET_SAVE_EVERY)),
    ];
    if let Some(fleet) = &fleet {
        background.push(tokio::spawn(fleet.clone().run()));
    }
    if let Some(fleet_budget) = fleet_budget {
        background.push(tokio::spawn(fleet_budget.run()));
    }
    let traffic_task = tokio::spawn(switchyard_proxy::serve(
        listener,
        gateway.clone(),
        layer,
        drain_timeout(traffic_closed),
    ));
    let admin_task = tokio::spawn(switchyard_admin::serve(admin, state, stopped(admin_closed)));
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
        budget,
        _watcher: file_watcher,
    })
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
