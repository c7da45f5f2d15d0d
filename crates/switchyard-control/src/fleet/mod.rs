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
pub mod counts;
pub mod lease;
pub mod members;
pub mod rollouts;
pub mod store;
pub mod streams;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::kill::{now_ms, Flip, KillBoard, KillSwitch};
use crate::rollout::RolloutState;
use members::Member;
use rollouts::{Proposal, Refusal, RolloutHost, SharedDowngrade, SharedThrottle};
use store::{Names, SharedState, Versioned, Written};
use switchyard_core::metrics as names;

/// One change to the shared state, kept as such so a local override can be replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Engage {
        switch: KillSwitch,
    },
    Release {
        route: String,
    },
    /// Registers this replica's rollout: a new epoch when the fleet has none for its green.
    StartRollout {
        rollout: RolloutState,
        replica: String,
    },
    /// A decision on a rollout, applied only if its epoch's outcome is still open.
    Decide {
        proposal: Proposal,
    },
    /// An operator approved a rule's model downgrade on a route.
    Downgrade {
        route: String,
        downgrade: SharedDowngrade,
    },
    /// An operator lifted the downgrade on a route.
    Lift {
        route: String,
    },
    /// A rule's throttle in force on a route, held by the replica where the rule fires
    /// (replaces the same holder's earlier one).
    Throttle {
        throttle: SharedThrottle,
    },
    /// A throttle's holder lifts it (its rule cleared), or the rollout lease's holder removes
    /// the throttle of a replica no longer in the fleet.
    Unthrottle {
        throttle: SharedThrottle,
    },
}

/// What a change did to the shared state.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Kill {
        before: Option<KillSwitch>,
        after: Option<KillSwitch>,
    },
    Rollout {
        before: RolloutState,
        after: RolloutState,
    },
    Started {
        epoch: u64,
    },
    Downgrade {
        before: Option<SharedDowngrade>,
    },
    Throttles,
}

impl Change {
    /// Applies the change to the state of `version`, or says why it changes nothing (and
    /// is not written).
    fn apply(&self, state: &mut SharedState, version: u64) -> Result<Applied, Refusal> {
        match self {
            Change::Engage { switch } => Ok(kill_change(state, &switch.route, Some(switch))),
            Change::Release { route } => Ok(kill_change(state, route, None)),
            Change::StartRollout { rollout, replica } => {
                rollouts::start(&mut state.rollouts, rollout, replica, version)
                    .map(|epoch| Applied::Started { epoch })
                    .ok_or_else(|| Refusal::Registered(rollout.route.clone()))
            }
            Change::Decide { proposal } => proposal
                .apply(&mut state.rollouts)
                .map(|(before, after)| Applied::Rollout { before, after }),
            Change::Downgrade { route, downgrade } => {
                let before = state.downgrades.insert(route.clone(), downgrade.clone());
                Ok(Applied::Downgrade { before })
            }
            Change::Lift { route } => match state.downgrades.remove(route) {
                Some(before) => Ok(Applied::Downgrade {
                    before: Some(before),
                }),
                None => Err(Refusal::NotInForce(route.clone())),
            },
            Change::Throttle { throttle } => {
                if state.throttles.contains(throttle) {
                    return Err(Refusal::Throttled(throttle.route.clone()));
                }
                state.throttles.retain(|t| !t.same_holder(throttle));
                state.throttles.push(throttle.clone());
                Ok(Applied::Throttles)
            }
            Change::Unthrottle { throttle } => {
                let before = state.throttles.len();
                state.throttles.retain(|t| !t.same_holder(throttle));
                if state.throttles.len() == before {
                    return Err(Refusal::NoThrottle(throttle.route.clone()));
                }
                Ok(Applied::Throttles)
            }
        }
    }
}

/// Puts `switch` in force on `route` (or releases it); returns the switch before and after.
fn kill_change(state: &mut SharedState, route: &str, switch: Option<&KillSwitch>) -> Applied {
    let index = state.kills.iter().position(|k| k.route == route);
    let before = index.map(|i| state.kills.remove(i));
    if let Some(switch) = switch {
        state.kills.push(switch.clone());
        state.kills.sort_by(|a, b| a.route.cmp(&b.route));
    }
    Applied::Kill {
        before,
        after: switch.cloned(),
    }
}

/// Why a fleet-wide change was not made.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("Redis is unreachable: {0}")]
    Unavailable(String),
    #[error("the shared state kept changing under this write; try again")]
    Contended,
    /// The change was not written: it would change nothing, or its outcome was taken.
    #[error("{0}")]
    Refused(#[from] Refusal),
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
    /// Whether this replica holds the rollout lease: it alone advances stages.
    pub rollout_lease: bool,
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
    /// The last shared state applied (kills as Redis held them, and the rollouts).
    shared: Mutex<SharedState>,
    /// The controller, which puts the fleet's rollouts in force.
    host: OnceLock<Weak<dyn RolloutHost>>,
    /// Stream entries waiting for Redis, and the one writer of them.
    backlog: Mutex<streams::Backlog>,
    flushing: tokio::sync::Mutex<()>,
    /// Whether this replica holds the rollout lease, and until when.
    lease: Mutex<lease::Lease>,
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
            shared: Mutex::new(SharedState::default()),
            host: OnceLock::new(),
            backlog: Mutex::new(streams::Backlog::default()),
            flushing: tokio::sync::Mutex::new(()),
            lease: Mutex::new(lease::Lease::default()),
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
        let rollout_lease = self.leads();
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
            rollout_lease,
        }
    }

    /// Whether this replica holds the rollout lease now (and Redis answers).
    pub fn leads(&self) -> bool {
        self.is_up() && lock(&self.lease).held(switchyard_core::clock::now())
    }

    /// The live replicas' ids, as of the last heartbeat.
    pub fn live_members(&self) -> Vec<String> {
        lock(&self.members)
            .iter()
            .map(|m| m.instance_id.clone())
            .collect()
    }

    /// Takes or renews the rollout lease; its time to live is three reconcile intervals.
    async fn renew_lease(&self) -> redis::RedisResult<()> {
        let Some(mut conn) = self.connection() else {
            lock(&self.lease).lost();
            return Ok(());
        };
        let ttl = 3 * self.settings.reconcile_interval;
        let sent = switchyard_core::clock::now();
        let me = &self.settings.instance_id;
        match lease::take(&mut conn, &self.names.lease, me, ttl).await {
            Ok(granted) => {
                let mut lease = lock(&self.lease);
                if granted && !lease.held(sent) {
                    tracing::info!("fleet: this replica holds the rollout lease");
                }
                lease.answered(sent, ttl, granted);
                Ok(())
            }
            Err(error) => {
                lock(&self.lease).lost();
                Err(error)
            }
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
        lock(&self.lease).lost();
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
        *lock(&self.shared) = remote.state.clone();
        if let Some(host) = self.host() {
            host.adopt(&remote.state);
        }
        if measure && remote.written_ms > 0 {
            let delay = now_ms().saturating_sub(remote.written_ms) as f64 / 1000.0;
            metrics::histogram!(names::FLEET_PROPAGATION_SECONDS).record(delay);
        }
        self.publish_gauges();
        true
    }

    /// Tells the fleet which controller puts its rollouts in force.
    pub fn set_host(&self, host: Weak<dyn RolloutHost>) {
        let _ = self.host.set(host);
    }

    fn host(&self) -> Option<Arc<dyn RolloutHost>> {
        self.host.get().and_then(Weak::upgrade)
    }

    /// The fleet's rollout records as last applied.
    pub fn shared_rollouts(&self) -> std::collections::BTreeMap<String, rollouts::SharedRollout> {
        lock(&self.shared).rollouts.clone()
    }

    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }

    /// Makes a kill-switch change fleet-wide: answered once Redis accepted it and this
    /// replica applied it.
    pub async fn change(&self, change: Change) -> Result<Flip, FleetError> {
        let started = switchyard_core::clock::now();
        let (before, after) = match self.commit(change).await? {
            Applied::Kill { before, after } => (before, after),
            _ => (None, None),
        };
        Ok(Flip {
            before,
            after,
            effective_at_ms: now_ms(),
            took_us: started.elapsed().as_micros() as u64,
            persisted: Ok(()),
        })
    }

    /// Makes a downgrade approval or lift fleet-wide: answered once Redis accepted it and
    /// this replica applied it.
    pub async fn downgrade(&self, change: Change) -> Result<(), FleetError> {
        self.commit(change).await.map(|_| ())
    }

    /// Shares a rule's throttle, or lifts it: answered once Redis accepted it and this
    /// replica applied it. A change that would change nothing is refused.
    pub async fn throttle(&self, change: Change) -> Result<(), FleetError> {
        self.commit(change).await.map(|_| ())
    }

    /// Makes a rollout decision fleet-wide: answered once Redis accepted it and this replica
    /// applied it; a decision whose outcome was already taken is refused, and this replica
    /// takes the fleet's state instead.
    pub async fn decide(
        &self,
        proposal: Proposal,
    ) -> Result<(RolloutState, RolloutState), FleetError> {
        match self.commit(Change::Decide { proposal }).await? {
            Applied::Rollout { before, after } => Ok((before, after)),
            other => Err(FleetError::Unavailable(format!("unexpected {other:?}"))),
        }
    }

    /// Writes `change` by compare-and-set and applies the version written.
    async fn commit(&self, change: Change) -> Result<Applied, FleetError> {
        let _writer = self.writer.lock().await;
        let mut conn = self
            .connection()
            .ok_or_else(|| FleetError::Unavailable("not connected".into()))?;
        self.commit_locked(&mut conn, &change).await
    }

    /// [`Fleet::commit`] with the writer lock already held.
    async fn commit_locked(
        &self,
        conn: &mut MultiplexedConnection,
        change: &Change,
    ) -> Result<Applied, FleetError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = match store::read(conn, &self.names).await {
                Ok(current) => current,
                Err(error) => return Err(self.unavailable(&error)),
            };
            let mut state = current.state.clone();
            let applied = match change.apply(&mut state, current.version) {
                Ok(applied) => applied,
                Err(refusal) => {
                    // Someone decided first: take what the fleet holds.
                    self.adopt(&current, false);
                    return Err(FleetError::Refused(refusal));
                }
            };
            let by = &self.settings.instance_id;
            let written =
                store::compare_and_set(conn, &self.names, current.version, &state, by).await;
            match written {
                Ok(Written::Accepted {
                    version,
                    written_ms,
                }) => {
                    let remote = Versioned {
                        version,
                        written_ms,
                        state,
                    };
                    self.adopt(&remote, false);
                    return Ok(applied);
                }
                Ok(Written::Refused { .. }) => {}
                Err(error) => return Err(self.unavailable(&error)),
            }
        }
        Err(FleetError::Contended)
    }

    fn unavailable(&self, error: &redis::RedisError) -> FleetError {
        self.lost(error);
        FleetError::Unavailable(error.to_string())
    }

    /// A change made on this replica only, while Redis is out of reach: in force at once,
    /// marked divergent, replayed into Redis when it is back.
    pub fn change_locally(&self, change: Change) -> Flip {
        let flip = match &change {
            Change::Engage { switch } => self.kills.engage(switch.clone()),
            Change::Release { route } => self.kills.release(route),
            _ => Flip {
                before: None,
                after: None,
                effective_at_ms: now_ms(),
                took_us: 0,
                persisted: Ok(()),
            },
        };
        self.keep_pending(change);
        flip
    }

    /// Keeps a change the caller already put in force on this replica, to replay into Redis
    /// when it is back; the replica is divergent until then.
    pub fn keep_pending(&self, change: Change) {
        let mut local = lock(&self.local);
        local.pending.push(change);
        self.save(&local);
        drop(local);
        tracing::warn!("fleet: local override made; this replica diverges from the fleet until Redis accepts it");
        self.publish_gauges();
    }
}

impl switchyard_state::fleet::FleetStanding for Fleet {
    fn mode(&self) -> &'static str {
        if self.is_up() {
            "shared"
        } else {
            "degraded"
        }
    }
}
