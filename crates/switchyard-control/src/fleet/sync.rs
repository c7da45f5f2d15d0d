//! The task that keeps this replica on the fleet's version: dial, subscribe, reconcile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::AsyncConnectionConfig;

use super::store::{self, SharedState, Written};
use super::{lock, Fleet};

/// The longest a dial (TCP and handshake) may take; a paused Redis accepts connections
/// without ever answering.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

impl Fleet {
    async fn dial(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(DIAL_TIMEOUT)
            .set_response_timeout(self.settings.command_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn subscribe(&self) -> redis::RedisResult<PubSubStream> {
        let timeout =
            || redis::RedisError::from((redis::ErrorKind::IoError, "subscribe timed out"));
        let subscribed = tokio::time::timeout(DIAL_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.names.changes).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        })
        .await;
        subscribed.unwrap_or_else(|_| Err(timeout()))
    }

    /// Dials if not connected; `true` when a connection is there.
    async fn ensure_connected(&self) -> bool {
        if self.connection().is_some() {
            return true;
        }
        match self.dial().await {
            Ok(conn) => {
                *lock(&self.conn) = Some(conn);
                true
            }
            Err(error) => {
                tracing::debug!(%error, "fleet: Redis not reachable yet");
                false
            }
        }
    }

    /// Brings this replica and Redis to the same version: puts our state back if Redis went
    /// backwards, replays local overrides, then applies whatever Redis holds if it is newer.
    pub(super) async fn reconcile(&self) -> redis::RedisResult<()> {
        let Some(mut conn) = self.connection() else {
            return Ok(());
        };
        let _writer = self.writer.lock().await;
        let remote = store::read(&mut conn, &self.names).await?;
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                version = remote.version,
                "fleet: Redis reached; sharing the fleet's state"
            );
            self.publish_gauges();
        }
        let (version, pending) = {
            let local = lock(&self.local);
            (local.version, local.pending.clone())
        };
        if remote.version >= version && pending.is_empty() {
            self.adopt(&remote, true);
            return self.register_rollouts(&mut conn).await;
        }
        if remote.version < version {
            self.restore(&mut conn, remote.version, version).await?;
        }
        if !pending.is_empty() {
            self.replay(&mut conn, &pending).await?;
        }
        let remote = store::read(&mut conn, &self.names).await?;
        self.adopt(&remote, true);
        self.register_rollouts(&mut conn).await
    }

    /// Writes this replica's rollouts the fleet does not have yet (a new green in its
    /// config) as new epochs; the writer lock is held.
    async fn register_rollouts(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let Some(host) = self.host() else {
            return Ok(());
        };
        if !lock(&self.local).pending.is_empty() {
            return Ok(());
        }
        // A version applied before the controller joined (at start) reaches it here.
        let known = lock(&self.shared).clone();
        host.adopt(&known);
        let replica = self.settings.instance_id.clone();
        for rollout in host.local_rollouts() {
            let mut shared = lock(&self.shared).rollouts.clone();
            if super::rollouts::start(&mut shared, &rollout, &replica, 0).is_none() {
                continue;
            }
            let change = super::Change::StartRollout {
                rollout,
                replica: replica.clone(),
            };
            match self.commit_locked(conn, &change).await {
                Ok(applied) => tracing::info!(?applied, "fleet: rollout registered"),
                Err(super::FleetError::Unavailable(error)) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "registering a rollout",
                        error,
                    )))
                }
                Err(error) => tracing::debug!(%error, "fleet: rollout not registered"),
            }
        }
        Ok(())
    }

    /// Redis holds an older version than this replica applied: it restarted empty or from an
    /// old snapshot. Writing ours back (if no replica offered a newer one) keeps the fleet's
    /// kills engaged; a version that went backwards is never applied.
    async fn restore(
        &self,
        conn: &mut MultiplexedConnection,
        remote: u64,
        version: u64,
    ) -> redis::RedisResult<()> {
        // One lock, taken and released before anything else: the rest of the last state
        // applied, with the kill board's (which holds local overrides too).
        let known = lock(&self.shared).clone();
        let state = SharedState {
            kills: self.kills.all(),
            ..known
        };
        let by = &self.settings.instance_id;
        let written = store::restore(conn, &self.names, version, &state, by).await?;
        tracing::warn!(
            redis_version = remote,
            local_version = version,
            restored = matches!(written, Written::Accepted { .. }),
            "fleet: Redis lost the shared state (version went backwards); republished this replica's last state"
        );
        Ok(())
    }

    /// Writes the local overrides into the shared state, in the order they were made.
    async fn replay(
        &self,
        conn: &mut MultiplexedConnection,
        pending: &[super::Change],
    ) -> redis::RedisResult<()> {
        for change in pending {
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > super::CAS_ATTEMPTS {
                    // Kept pending: the next reconcile tries again.
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::TryAgain,
                        "the shared state kept changing during the replay",
                    )));
                }
                let current = store::read(conn, &self.names).await?;
                let mut state = current.state;
                if let Err(refusal) = change.apply(&mut state, current.version) {
                    // Decided elsewhere meanwhile (a rollback another replica took first):
                    // nothing to write, and nothing is counted twice.
                    tracing::info!(%refusal, "fleet: a local change was already in the shared state");
                    break;
                }
                let by = &self.settings.instance_id;
                let written =
                    store::compare_and_set(conn, &self.names, current.version, &state, by).await?;
                if matches!(written, Written::Accepted { .. }) {
                    break;
                }
            }
        }
        let mut local = lock(&self.local);
        let done = pending.len().min(local.pending.len());
        local.pending.drain(..done);
        self.save(&local);
        drop(local);
        tracing::info!(
            changes = pending.len(),
            "fleet: local overrides accepted by Redis; no longer divergent"
        );
        Ok(())
    }

    /// Connects and loads the fleet's state before the replica serves; without Redis (within
    /// `bound`) it starts degraded on its last persisted state, and says so.
    pub async fn load(&self, bound: Duration) {
        let loaded = tokio::time::timeout(bound, async {
            if !self.ensure_connected().await {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "cannot connect",
                )));
            }
            self.reconcile().await
        })
        .await;
        let error = match loaded {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        *lock(&self.conn) = None;
        let status = self.status();
        tracing::error!(
            %error,
            redis_url = %self.settings.redis_url,
            version = status.state_version,
            "fleet: Redis unreachable at start; serving DEGRADED from the last persisted state"
        );
        self.publish_gauges();
    }

    /// Follows the fleet until the task is dropped: a pub/sub hint or a tick of
    /// `reconcile_interval` compares versions; a lost connection is dialled again.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hints: Option<PubSubStream> = None;
        loop {
            let fresh = self.connection().is_none() || hints.is_none();
            if self.ensure_connected().await && hints.is_none() {
                hints = self.subscribe().await.ok();
            }
            if fresh && self.connection().is_some() {
                let done = match self.reconcile().await {
                    Ok(()) => self.heartbeat().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = done {
                    self.lost(&error);
                }
            }
            tokio::select! {
                hint = next(&mut hints) => match hint {
                    Some(msg) => {
                        if self.is_news(&msg) {
                            if let Err(error) = self.reconcile().await {
                                self.lost(&error);
                            }
                        }
                    }
                    // The subscription was cut: resubscribe and reconcile at once.
                    None => hints = None,
                },
                _ = tick.tick() => {
                    let done = match self.reconcile().await {
                        Ok(()) => self.heartbeat().await,
                        Err(error) => Err(error),
                    };
                    let done = match done {
                        Ok(()) => self.renew_lease().await,
                        Err(error) => Err(error),
                    };
                    match done {
                        // Stream entries kept while Redis was away go out now.
                        Ok(()) => self.flush().await,
                        Err(error) => self.lost(&error),
                    }
                }
            }
        }
    }

    /// Whether a hint names a version newer than the applied one.
    fn is_news(&self, msg: &redis::Msg) -> bool {
        let payload: String = msg.get_payload().unwrap_or_default();
        let version = payload
            .split(':')
            .next()
            .and_then(|v| v.parse::<u64>().ok());
        match version {
            Some(v) => v > lock(&self.local).version,
            None => true,
        }
    }
}

async fn next(hints: &mut Option<PubSubStream>) -> Option<redis::Msg> {
    match hints {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
