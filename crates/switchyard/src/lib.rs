//! Assembly: turns a validated config into a running gateway (listeners, simulators, alerts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{Config, UpstreamTarget};
use switchyard_control::alerts::AlertSettings;
use switchyard_control::budget::BudgetStore;
use switchyard_control::controller::Controller;
use switchyard_control::fleet::budget::GateFleet;
use switchyard_control::fleet::Fleet;
use switchyard_control::steer::Steering;
use switchyard_control::Alerts;
use switchyard_proxy::Gateway;
use switchyard_sim::Sim;

mod assemble;
pub mod reload;

use assemble::{
    admin_state, assemble_control, assemble_gateway, bind_listeners, compile_data_plane,
    join_fleet, open_kill_board, open_stores, spawn_background, Assembled,
};
pub use reload::ConfigReloader;
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
        for task in &self.background {
            task.abort();
        }
        // An aborted task stops at its next await: a controller tick that decided a moment
        // ago is still writing the state file it decided, and must finish before the state
        // dir is handed to whatever starts next.
        for task in self.background {
            let _ = task.await;
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
// Long on purpose: the order of start-up's effects (state read, fleet joined, listeners
// bound, loops spawned, then ready) reads top to bottom here; each step is in `assemble`.
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
    let (alerts, notifier, controller) =
        assemble_control(&config, &signals, stores.control, steering, fleet.as_ref());
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
