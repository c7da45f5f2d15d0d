//! Hot reload: a new gateway.toml is parsed, validated and compiled off the data path, then
//! put in force with one atomic swap. Anything wrong and the old config keeps serving.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchyard_admin::{ReloadOutcome, Reloader};
use switchyard_config::{Config, UpstreamTarget};
use switchyard_control::budget::GateSettings;
use switchyard_control::controller::Controller;
use switchyard_control::fleet::budget::GateFleet;
use switchyard_control::{Alerts, Event, KillBoard, Notifier, Signals};
use switchyard_proxy::{Gateway, Table};
use switchyard_sim::Sim;
use tokio::sync::Mutex;

use crate::{alert_settings, validate_runtime, StartError};

/// The embedded simulators by upstream name, with their addresses and profile names.
pub type Sims = HashMap<String, (Sim, SocketAddr, String)>;

/// What a reload changes, and the config it compares against.
pub struct ConfigReloader {
    pub(crate) path: Option<PathBuf>,
    pub(crate) live: Mutex<Live>,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) alerts: Arc<Alerts>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) kills: Arc<KillBoard>,
    pub(crate) controller: Arc<Controller>,
    /// Gets the new webhooks, and is told of every reload that was applied or rejected.
    pub(crate) notifier: Notifier,
}

/// The config in force and the simulators it runs.
pub struct Live {
    pub config: Config,
    pub sims: Sims,
}

/// Starts (or reuses, by upstream name) an embedded simulator for every `sim` upstream.
pub async fn ensure_sims(config: &Config, sims: &mut Sims) -> Result<(), StartError> {
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
        if let Some((sim, _, running)) = sims.get_mut(name) {
            if running != profile {
                sim.set_profile(p);
                running.clone_from(profile);
            }
            continue;
        }
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
        sims.insert(name.clone(), (sim, addr, profile.clone()));
    }
    Ok(())
}

pub fn sim_addrs(sims: &Sims) -> HashMap<String, SocketAddr> {
    sims.iter()
        .map(|(name, (_, addr, _))| (name.clone(), *addr))
        .collect()
}

impl ConfigReloader {
    /// Reloads from the config file; counts and logs the outcome.
    pub async fn reload_now(&self) -> Result<ReloadOutcome, String> {
        self.reload_from(None).await
    }

    /// Reloads from `text` when given (what the file watcher read once the file stopped
    /// changing), else from the file; counts and logs the outcome.
    async fn reload_from(&self, text: Option<&str>) -> Result<ReloadOutcome, String> {
        let mut live = self.live.lock().await;
        let result = self.try_reload(&mut live, text).await;
        let label = match &result {
            Ok(outcome) if outcome.version == outcome.previous => "unchanged",
            Ok(_) => "applied",
            Err(_) => "rejected",
        };
        metrics::counter!(switchyard_core::metrics::CONFIG_RELOADS_TOTAL, "result" => label)
            .increment(1);
        match &result {
            Ok(outcome) => {
                tracing::info!(result = label, version = %outcome.version, previous = %outcome.previous, "config reload")
            }
            Err(error) => {
                tracing::warn!(result = label, %error, version = %live.config.version, "config reload rejected; the old config keeps serving")
            }
        }
        // Every trigger (file watch, SIGHUP, the admin API) comes through here, so this is
        // the one place that tells the webhooks; an unchanged file is not news.
        match &result {
            Ok(o) if label == "applied" => {
                self.notifier
                    .notify(Event::reload(&o.version, &o.previous, None));
            }
            Ok(_) => {}
            Err(error) => {
                let in_force = &live.config.version;
                let event = Event::reload(in_force, in_force, Some(error));
                self.notifier.notify(event);
            }
        }
        result
    }

    async fn try_reload(
        &self,
        live: &mut Live,
        text: Option<&str>,
    ) -> Result<ReloadOutcome, String> {
        let Some(path) = &self.path else {
            return Err("the gateway was started without a config file; nothing to reload".into());
        };
        // A file without [server] or without routes is refused here (Config::load_text), so
        // an empty or half-written file never replaces a working config.
        let mut config = match text {
            Some(text) => Config::load_text(path, text),
            None => Config::load(path),
        }
        .map_err(|e| e.to_string())?;
        let previous = live.config.version.clone();
        // Applied even when the text is unchanged: token and fallback files it names may
        // have changed (a revoked token must stop working on reload).
        validate_runtime(&config).await.map_err(|e| e.to_string())?;
        self.check_kill_switches(&config)?;
        warn_fixed_at_start(&live.config, &config);
        // The HTTP/1.1 engine serves both sides of an exchange (the listener's and, for plain
        // http endpoints, the upstream's): the one started with stays, whole, until a restart.
        config.server.http1 = live.config.server.http1;
        ensure_sims(&config, &mut live.sims)
            .await
            .map_err(|e| e.to_string())?;
        let snapshot = self
            .gateway
            .prepare(&config, &sim_addrs(&live.sims))
            .map_err(|e| format!("{}: {e}", config.origin))?;
        self.put_in_force(snapshot, &config);
        let version = config.version.clone();
        live.config = config;
        Ok(ReloadOutcome { version, previous })
    }

    /// The infallible half of a reload: the new config is all in force, or none of it is. The
    /// snapshot (routes, tokens, kill plans) is swapped in and the boards adopt it; the
    /// control plane's parts that keep settings of their own are told in the same step.
    fn put_in_force(&self, snapshot: Table, config: &Config) {
        self.gateway.swap(snapshot);
        configure(self.control_plane(), config);
    }

    pub(crate) fn control_plane(&self) -> ControlPlane<'_> {
        ControlPlane {
            gateway: &self.gateway,
            alerts: &self.alerts,
            signals: &self.signals,
            kills: &self.kills,
            controller: &self.controller,
            notifier: &self.notifier,
        }
    }

    /// A kill switch is a route's permanent property: a reload may not drop an engaged one.
    fn check_kill_switches(&self, config: &Config) -> Result<(), String> {
        for switch in self.kills.all() {
            if !config.routes.iter().any(|r| r.name == switch.route) {
                return Err(format!(
                    "{}: route {:?} is missing, but its kill switch is engaged ({}); keep the route, \
                     or revive it first with `switchyard ctl revive {}`",
                    config.origin, switch.route, switch.reason, switch.route
                ));
            }
        }
        Ok(())
    }
}

/// The parts of a running gateway that keep settings of their own, outside the snapshot.
pub(crate) struct ControlPlane<'a> {
    pub(crate) gateway: &'a Gateway,
    pub(crate) alerts: &'a Alerts,
    pub(crate) signals: &'a Signals,
    pub(crate) kills: &'a KillBoard,
    pub(crate) controller: &'a Controller,
    pub(crate) notifier: &'a Notifier,
}

/// Gives the control plane its settings from `config`: the controller's plans, alert
/// thresholds, the budget, webhooks, telemetry, the kill board's routes. The start runs it
/// once everything is assembled and every reload after its swap, so a setting added here is
/// in force from the start and follows every reload. Running it twice with one config
/// changes nothing (it is what a reload of an unchanged file does).
pub(crate) fn configure(plane: ControlPlane<'_>, config: &Config) {
    plane.controller.apply(config);
    plane.alerts.set_settings(alert_settings(config));
    let now = switchyard_control::signals::now_secs();
    plane
        .signals
        .budget()
        .set_reset_at(config.budgets.reset_at, now);
    if let Some(gate) = plane.gateway.budget() {
        let settings = GateSettings::from_config(&config.budgets);
        if let Some(fleet) = gate.fleet() {
            fleet.configure(settings.clone());
        }
        gate.configure(settings);
    }
    plane.notifier.set_webhooks(config.notify.webhooks.clone());
    plane.signals.set_telemetry(&config.telemetry);
    plane.kills.publish(
        &config
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
    );
}

/// Listeners and TLS are bound at start; say so instead of pretending they moved.
fn warn_fixed_at_start(old: &Config, new: &Config) {
    let fixed = [
        ("server.listen", old.server.listen != new.server.listen),
        ("admin.listen", old.admin.listen != new.admin.listen),
        (
            "admin.allowed_hosts",
            old.admin.allowed_hosts != new.admin.allowed_hosts,
        ),
        ("server.tls", old.server.tls != new.server.tls),
        ("server.http1", old.server.http1 != new.server.http1),
        (
            "admin.state_dir",
            old.admin.state_dir != new.admin.state_dir,
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!(key, "changed in the config, but only a restart applies it");
        }
    }
}

impl Reloader for ConfigReloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadOutcome, String>> + Send + '_>> {
        Box::pin(self.reload_now())
    }
}

/// Reloads on SIGHUP until the task is dropped.
pub async fn on_sighup(reloader: Arc<ConfigReloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be watched; reload with POST /admin/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            let _ = reloader.reload_now().await;
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

/// Watches the config file's directory (editors and config maps replace files by rename)
/// and reloads shortly after the file changes. The returned watcher must be kept alive.
pub fn watch(reloader: Arc<ConfigReloader>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let path = reloader.path.clone()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    // Any change in the directory counts: a config map swaps a `..data` symlink, not the file
    // itself. The file's text decides below whether anything changed.
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config file; reload with SIGHUP or POST /admin/reload");
            return None;
        }
    };
    if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(%error, dir = %dir.display(), "cannot watch the config directory");
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let settled = settle(&path, &mut rx).await;
            let current = reloader.live.lock().await.config.version.clone();
            match settled {
                Ok(text) if switchyard_config::version_of(&text) == current => {}
                Ok(text) => {
                    let _ = reloader.reload_from(Some(&text)).await;
                }
                // Unreadable (gone, not UTF-8): the reload from the file says why, and counts
                // it as rejected.
                Err(_) => {
                    let _ = reloader.reload_now().await;
                }
            }
        }
    });
    Some(watcher)
}

/// How long the config file must stay byte for byte the same before the watcher parses it.
/// An editor that truncates the file and writes it in parts passes through states that are
/// not the config the operator means (empty, cut mid-table); 200 ms is far longer than the
/// gap between such writes and short enough that a save is in force well within a second.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Reads the file until two reads `SETTLE` apart agree byte for byte, and returns that text.
/// Change events that arrive meanwhile are taken up here: the reads decide.
async fn settle(
    path: &std::path::Path,
    events: &mut tokio::sync::mpsc::Receiver<()>,
) -> std::io::Result<String> {
    let read = || async { tokio::fs::read(path).await.map_err(|e| (e.kind(), e)) };
    let mut before = read().await;
    loop {
        tokio::time::sleep(SETTLE).await;
        while events.try_recv().is_ok() {}
        let now = read().await;
        let same = match (&before, &now) {
            (Ok(a), Ok(b)) => a == b,
            (Err((a, _)), Err((b, _))) => a == b,
            _ => false,
        };
        if same {
            return match now {
                Ok(bytes) => String::from_utf8(bytes).map_err(std::io::Error::other),
                Err((_, e)) => Err(e),
            };
        }
        before = now;
    }
}
