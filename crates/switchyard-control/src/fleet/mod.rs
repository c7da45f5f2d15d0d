//! Fleet mode: replicas behind one load balancer share their runtime state through Redis.
//!
//! The data path never talks to Redis: it reads the local [`KillBoard`] snapshot, which this
//! module replaces whenever the shared state's version moves. A change is a compare-and-set
//! on the versioned state ([`store`]); the other replicas hear of it by pub/sub (a hint) and
//! by comparing versions every `reconcile_interval` and on every reconnect ([`sync`]).
//! Without Redis the replica keeps its last known state (degraded mode): admin changes are
//! refused unless forced locally, and such a local override is replayed into Redis once it
//! is back.

pub mod budget;
mod budget_store;
pub mod members;
pub mod store;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::kill::{now_ms, Flip, KillBoard, KillSwitch};
use members::Member;
use store::{Names, SharedState, Versioned, Written};
use switchyard_core::metrics as names;

/// One change to the shared state, kept as such so a local override can be replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Engage { switch: KillSwitch },
    Release { route: String },
}

impl Change {
    fn route(&self) -> &str {
        match self {
            Change::Engage { switch } => &switch.route,
            Change::Release { route } => route,
        }
    }

    /// Applies the change; returns the route's switch before and after.
    fn apply(&self, state: &mut SharedState) -> (Option<KillSwitch>, Option<KillSwitch>) {
        let route = self.route().to_owned();
        let index = state.kills.iter().position(|k| k.route == route);
        let before = index.map(|i| state.kills.remove(i));
        let after = match self {
            Change::Engage { switch } => {
                state.kills.push(switch.clone());
                state.kills.sort_by(|a, b| a.route.cmp(&b.route));
                Some(switch.clone())
            }
            Change::Release { .. } => None,
        };
        (before, after)
    }
}

/// Why a fleet-wide change was not made.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("Redis is unreachable: {0}")]
    Unavailable(String),
    #[error("the shared state kept changing under this write; try again")]
    Contended,
}

/// What this replica keeps of the fleet in `state_dir/fleet.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Local {
    version: u64,
    written_ms: u64,
    /// Local overrides made without Redis, replayed when it is back.
    #[serde(default)]
    pending: Vec<Change>,
}

/// How the replica stands with the fleet, for `/admin/status` and `/ready`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetStatus {
    /// `shared` or `degraded`.
    pub mode: &'static str,
    pub redis_up: bool,
    pub instance_id: String,
    pub namespace: String,
    pub state_version: u64,
    /// Redis time of the applied version, Unix milliseconds.
    pub state_written_ms: u64,
    /// Local overrides Redis has not accepted yet.
    pub divergent: bool,
    pub pending_changes: usize,
    /// The replicas heard from lately, this one included, as of the last heartbeat.
    pub members: Vec<Member>,
}

/// Tells the heartbeat which config this replica runs (its hash, `Config::version`).
pub type ConfigVersion = Box<dyn Fn() -> String + Send + Sync>;

/// This replica's membership in a fleet.
pub struct Fleet {
    settings: switchyard_config::Fleet,
    names: Names,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    kills: Arc<KillBoard>,
    local: Mutex<Local>,
    path: Option<PathBuf>,
    up: AtomicBool,
    /// Serialises this replica's writes to Redis (admin changes, replays, restores).
    writer: tokio::sync::Mutex<()>,
    members: Mutex<Vec<Member>>,
    config_version: Mutex<Option<ConfigVersion>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance_id", &self.settings.instance_id)
            .field("namespace", &self.settings.namespace)
            .finish_non_exhaustive()
    }
}

const FILE: &str = "fleet.json";
/// Retries of a compare-and-set that lost a race.
const CAS_ATTEMPTS: usize = 16;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// Prepares the fleet (nothing is dialled yet); `state_dir` keeps the last applied version.
    pub fn new(
        settings: switchyard_config::Fleet,
        kills: Arc<KillBoard>,
        state_dir: Option<&Path>,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| format!("fleet.redis_url: {e}"))?;
        let path = state_dir.map(|d| d.join(FILE));
        let local = match &path {
            Some(p) => crate::state_file::load::<Local>(p)
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
            None => Local::default(),
        };
        let fleet = Arc::new(Fleet {
            names: Names::new(&settings.namespace),
            settings,
            client,
            conn: Mutex::new(None),
            kills,
            local: Mutex::new(local),
            path,
            up: AtomicBool::new(false),
            writer: tokio::sync::Mutex::new(()),
            members: Mutex::new(Vec::new()),
            config_version: Mutex::new(None),
        });
        fleet.publish_gauges();
        Ok(fleet)
    }

    pub fn settings(&self) -> &switchyard_config::Fleet {
        &self.settings
    }

    /// Whether Redis answered the last command.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> FleetStatus {
        let local = lock(&self.local);
        let up = self.is_up();
        FleetStatus {
            mode: if up { "shared" } else { "degraded" },
            redis_up: up,
            instance_id: self.settings.instance_id.clone(),
            namespace: self.settings.namespace.clone(),
            state_version: local.version,
            state_written_ms: local.written_ms,
            divergent: !local.pending.is_empty(),
            pending_changes: local.pending.len(),
            members: lock(&self.members).clone(),
        }
    }

    /// Where the heartbeat reads this replica's config hash from.
    pub fn set_config_version(&self, source: ConfigVersion) {
        *lock(&self.config_version) = Some(source);
    }

    fn me(&self) -> Member {
        let local = lock(&self.local);
        let config_version = lock(&self.config_version)
            .as_ref()
            .map(|f| f())
            .unwrap_or_default();
        Member {
            instance_id: self.settings.instance_id.clone(),
            state_version: local.version,
            config_version,
            divergent: !local.pending.is_empty(),
            seen_ms: now_ms(),
        }
    }

    /// Writes this replica's heartbeat and takes note of the others'.
    async fn heartbeat(&self) -> redis::RedisResult<()> {
        let Some(mut conn) = self.connection() else {
            return Ok(());
        };
        let stale = 3 * self.settings.reconcile_interval.as_millis() as u64;
        let live = members::beat(&mut conn, &self.names.members, &self.me(), stale).await?;
        metrics::gauge!(names::FLEET_MEMBERS).set(live.len() as f64);
        *lock(&self.members) = live;
        Ok(())
    }

    fn publish_gauges(&self) {
        let status = self.status();
        let up = if status.redis_up { 1.0 } else { 0.0 };
        metrics::gauge!(names::FLEET_REDIS_UP).set(up);
        metrics::gauge!(names::FLEET_MODE, "mode" => "shared").set(up);
        metrics::gauge!(names::FLEET_MODE, "mode" => "degraded").set(1.0 - up);
        metrics::gauge!(names::FLEET_STATE_VERSION).set(status.state_version as f64);
        let divergent = if status.divergent { 1.0 } else { 0.0 };
        metrics::gauge!(names::FLEET_DIVERGENT).set(divergent);
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        lock(&self.conn).clone()
    }

    /// Marks Redis lost: the next loop of the sync task dials again.
    fn lost(&self, error: &redis::RedisError) {
        *lock(&self.conn) = None;
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, "fleet: Redis lost; serving the last known state (degraded)");
            self.publish_gauges();
        }
    }

    fn save(&self, local: &Local) {
        if let Some(path) = &self.path {
            let saved = crate::state_file::off_the_workers(|| crate::state_file::save(path, local));
            if let Err(error) = saved {
                tracing::error!(%error, "fleet: the applied version was not saved");
            }
        }
    }

    /// Puts a version read from Redis in force if it is newer than the one applied; `measure`
    /// records how long it took to arrive.
    fn adopt(&self, remote: &Versioned, measure: bool) -> bool {
        let mut local = lock(&self.local);
        if remote.version <= local.version || !local.pending.is_empty() {
            return false;
        }
        let persisted = self.kills.replace(remote.state.kills.clone());
        if let Err(error) = persisted {
            tracing::error!(%error, "fleet: kill switches applied but not saved");
        }
        local.version = remote.version;
        local.written_ms = remote.written_ms;
        self.save(&local);
        drop(local);
        if measure && remote.written_ms > 0 {
            let delay = now_ms().saturating_sub(remote.written_ms) as f64 / 1000.0;
            metrics::histogram!(names::FLEET_PROPAGATION_SECONDS).record(delay);
        }
        self.publish_gauges();
        true
    }

    /// Makes `change` fleet-wide: answered once Redis accepted it and this replica applied it.
    pub async fn change(&self, change: Change) -> Result<Flip, FleetError> {
        let started = Instant::now();
        let _writer = self.writer.lock().await;
        let mut conn = self
            .connection()
            .ok_or_else(|| FleetError::Unavailable("not connected".into()))?;
        for _ in 0..CAS_ATTEMPTS {
            let (remote, before, after, written) = match self.attempt(&mut conn, &change).await {
                Ok(done) => done,
                Err(error) => {
                    self.lost(&error);
                    return Err(FleetError::Unavailable(error.to_string()));
                }
            };
            if let Written::Accepted {
                version,
                written_ms,
            } = written
            {
                self.adopt(
                    &Versioned {
                        version,
                        written_ms,
                        state: remote,
                    },
                    false,
                );
                return Ok(Flip {
                    before,
                    after,
                    effective_at_ms: now_ms(),
                    took_us: started.elapsed().as_micros() as u64,
                    persisted: Ok(()),
                });
            }
        }
        Err(FleetError::Contended)
    }

    /// Reads, applies and tries to write once.
    async fn attempt(
        &self,
        conn: &mut MultiplexedConnection,
        change: &Change,
    ) -> redis::RedisResult<(SharedState, Option<KillSwitch>, Option<KillSwitch>, Written)> {
        let current = store::read(conn, &self.names).await?;
        let mut state = current.state;
        let (before, after) = change.apply(&mut state);
        let by = &self.settings.instance_id;
        let written =
            store::compare_and_set(conn, &self.names, current.version, &state, by).await?;
        Ok((state, before, after, written))
    }

    /// A change made on this replica only, while Redis is out of reach: in force at once,
    /// marked divergent, replayed into Redis when it is back.
    pub fn change_locally(&self, change: Change) -> Flip {
        let flip = match &change {
            Change::Engage { switch } => self.kills.engage(switch.clone()),
            Change::Release { route } => self.kills.release(route),
        };
        let mut local = lock(&self.local);
        local.pending.push(change);
        self.save(&local);
        drop(local);
        tracing::warn!("fleet: local override made; this replica diverges from the fleet until Redis accepts it");
        self.publish_gauges();
        flip
    }
}
