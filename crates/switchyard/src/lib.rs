//! Assembly: turns a validated config into a running gateway (listeners, simulators, alerts).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{Config, UpstreamTarget};
use switchyard_control::alerts::AlertSettings;
use switchyard_control::{Alerts, Signals};
use switchyard_proxy::{Gateway, Listener, Table};
use switchyard_sim::Sim;
use tokio::net::TcpListener;
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
}

/// A running gateway.
pub struct Running {
    /// Where the traffic listener is bound.
    pub traffic: SocketAddr,
    /// Where the admin listener is bound.
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub alerts: Arc<Alerts>,
    /// The embedded simulators by upstream name.
    pub sims: HashMap<String, (Sim, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish, and returns when the listeners are down.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for task in self.background {
            task.abort();
        }
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

async fn start_sims(config: &Config) -> Result<HashMap<String, (Sim, SocketAddr)>, StartError> {
    let mut sims = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let UpstreamTarget::Sim { profile } = &upstream.target else {
            continue;
        };
        let Some(p) = switchyard_sim::named(profile) else {
            return Err(StartError::UnknownProfile {
                origin: config.origin.clone(),
                line: upstream.line,
                name: name.clone(),
                profile: profile.clone(),
                known: switchyard_sim::PROFILE_NAMES.join(", "),
            });
        };
        let sim = Sim::new(p);
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (addr, _task) =
            switchyard_sim::spawn(loopback, sim.clone())
                .await
                .map_err(|source| StartError::Bind {
                    what: "embedded simulator",
                    addr: loopback,
                    source,
                })?;
        tracing::info!(upstream = %name, %addr, profile = %profile, "embedded simulator listening");
        sims.insert(name.clone(), (sim, addr));
    }
    Ok(sims)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Starts everything the config describes.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = switchyard_admin::exposition::install();
    let sims = start_sims(&config).await?;
    let sim_addrs = sims
        .iter()
        .map(|(name, (_, addr))| (name.clone(), *addr))
        .collect();
    let signals = Signals::new();
    let table = Table::compile(&config, &sim_addrs, &signals)?;
    let gateway = Gateway::new(table, signals.clone());
    let alerts = Alerts::new(signals, alert_settings(&config));
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
    let (shutdown, watcher) = watch::channel(false);
    let listener = Listener {
        tcp: traffic,
        tls,
        header_read_timeout: config.server.header_read_timeout,
        max_header_bytes: config.server.max_header_bytes,
    };
    let tick = (config.alerts.window / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let background = vec![tokio::spawn(alerts.clone().run(tick))];
    let state = switchyard_admin::AdminState {
        gateway: gateway.clone(),
        alerts: alerts.clone(),
        metrics,
    };
    let tasks = vec![
        tokio::spawn(switchyard_proxy::serve(
            listener,
            gateway.clone(),
            stopped(watcher.clone()),
        )),
        tokio::spawn(switchyard_admin::serve(admin, state, stopped(watcher))),
    ];
    tracing::info!(traffic = %traffic_addr, admin = %admin_addr, config_version = %config.version, "switchyard serving");
    Ok(Running {
        traffic: traffic_addr,
        admin: admin_addr,
        gateway,
        alerts,
        sims,
        shutdown,
        tasks,
        background,
    })
}

fn local(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

async fn stopped(mut watcher: watch::Receiver<bool>) {
    let _ = watcher.wait_for(|stop| *stop).await;
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
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
