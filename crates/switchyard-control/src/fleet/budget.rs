//! The fleet's token budget: reservations held in Redis ([`super::budget_store`]), so every
//! replica admits against the same used + reserved count.
//!
//! Exact mode reserves each request's estimate with one script call on the request path
//! (bounded by `command_timeout`). Lease mode (`lease_tokens = L`) reserves L tokens at a
//! time and admits from that lease locally; the unused part returns to the budget when the
//! lease is closed (renewal, day change, shutdown). Settlements never wait on the request
//! path: they queue for the settler task, which retries them, with the same ids, until
//! Redis accepts them, so nothing is counted twice.
//!
//! While Redis is out of reach (a call failed or the circuit breaker is open) the
//! `outage_policy` decides; what was spent meanwhile is flushed into Redis once it is back.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_config::OutagePolicy;
use switchyard_core::metrics as names;
use tokio::sync::mpsc;

use self::breaker::Breaker;
use super::budget_store::{self as store, DayKeys, Reply};
use super::{lock, Fleet};
use crate::budget::gate::{SharedBudget, Ticket, TicketKind as Kind};
use crate::budget::ledger::Ledger;
use crate::budget::{BudgetGate, GateSettings};
use crate::kill::now_ms;

/// Settlements sent in one script call at most.
const MAX_BATCH: usize = 256;

/// Settlements to send if a call does not come back with an answer: it failed, or its
/// request was dropped while it waited. Each is idempotent, so sending one whose call did
/// reach Redis counts nothing twice.
struct Unanswered<'a> {
    budget: &'a FleetBudget,
    items: Vec<Item>,
}

impl Unanswered<'_> {
    /// The call was answered: nothing to send.
    fn answered(mut self) {
        self.items.clear();
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        for item in self.items.drain(..) {
            self.budget.push(item);
        }
    }
}

/// The local allowance while Redis is out of reach (`local_share`).
#[derive(Debug)]
struct Outage {
    epoch: u64,
    allowance: u64,
    ledger: Ledger,
}

/// This replica's lease.
#[derive(Debug, Default)]
struct Lease {
    id: Option<Box<str>>,
    day: u64,
    /// Tokens of the lease not handed out yet.
    left: u64,
    /// Tokens settled since the lease was opened, reported when it closes.
    spent: u64,
    /// Estimates of requests admitted from leases and not settled yet: each new lease holds
    /// them again, so a closed lease never leaves requests in flight uncovered.
    outstanding: u64,
}

/// Something the settler must bring to Redis.
#[derive(Debug)]
struct Item {
    day: u64,
    id: Box<str>,
    tokens: u64,
    /// Tokens spent without a reservation in Redis (flushed under a unique id).
    flush: bool,
    /// Sent at least once: its tokens may no longer change.
    sent: bool,
}

/// The used and reserved count last read from Redis.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    day: u64,
    used: u64,
    reserved: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FleetBudget {
    fleet: Arc<Fleet>,
    /// Prefix of this replica's lease and flush ids: instance id and a start-up nonce.
    me: String,
    seq: AtomicU64,
    breaker: Breaker,
    seen: Mutex<Seen>,
    outage: Mutex<Option<Outage>>,
    lease: Mutex<Lease>,
    /// One lease renewal at a time; the others wait and take from the new lease.
    renewing: tokio::sync::Mutex<()>,
    tx: mpsc::UnboundedSender<Item>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Item>>>,
    pending: AtomicU64,
    settings: arc_swap::ArcSwap<GateSettings>,
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, "budget call timed out"))
}

/// The fleet budget a gate joined: what the assembly closes at shutdown and reconfigures on
/// reload.
pub trait GateFleet {
    fn fleet(&self) -> Option<&FleetBudget>;
}

impl GateFleet for BudgetGate {
    fn fleet(&self) -> Option<&FleetBudget> {
        self.shared()?.as_any().downcast_ref()
    }
}

impl SharedBudget for FleetBudget {
    fn admit<'a>(
        &'a self,
        settings: &'a GateSettings,
        budget: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Ticket>, ()>> + Send + 'a>> {
        Box::pin(FleetBudget::admit(self, settings, budget, id, tokens))
    }

    fn settle(&self, ticket: Ticket, tokens: u64) {
        FleetBudget::settle(self, ticket, tokens);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl FleetBudget {
    pub fn new(fleet: Arc<Fleet>, settings: GateSettings) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = format!("{}:{:08x}", fleet.settings().instance_id, fastrand::u32(..));
        metrics::gauge!(names::BUDGET_BREAKER_OPEN).set(0.0);
        Arc::new(FleetBudget {
            fleet,
            me,
            seq: AtomicU64::new(0),
            breaker: Breaker::default(),
            seen: Mutex::new(Seen::default()),
            outage: Mutex::new(None),
            lease: Mutex::new(Lease::default()),
            renewing: tokio::sync::Mutex::new(()),
            tx,
            rx: Mutex::new(Some(rx)),
            pending: AtomicU64::new(0),
            settings: arc_swap::ArcSwap::from_pointee(settings),
        })
    }

    /// The settings the settler uses (the gate passes its own to each admission).
    pub fn configure(&self, settings: GateSettings) {
        self.settings.store(Arc::new(settings));
    }

    fn keys(&self, day: u64) -> DayKeys {
        DayKeys::new(&self.fleet.settings().namespace, day)
    }

    fn next_id(&self, what: &str) -> Box<str> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}:{what}:{n}", self.me).into()
    }

    /// Runs one budget script under `command_timeout`.
    async fn timed(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<Reply>>,
    ) -> redis::RedisResult<Reply> {
        let timeout = self.fleet.settings().command_timeout;
        let result = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(names::BUDGET_REDIS_CALLS_TOTAL, "op" => op, "result" => outcome)
            .increment(1);
        if let Ok(reply) = &result {
            self.saw(reply);
        }
        result
    }

    /// The fleet's connection; none while the fleet task redials.
    fn conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.fleet
            .connection()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::IoError, "not connected")))
    }

    fn saw(&self, reply: &Reply) {
        let day = self.settings.load().day(now_ms());
        *lock(&self.seen) = Seen {
            day,
            used: reply.used,
            reserved: reply.reserved,
        };
        metrics::gauge!(names::BUDGET_USED_TOKENS).set(reply.used as f64);
        metrics::gauge!(names::BUDGET_RESERVED_TOKENS).set(reply.reserved as f64);
    }

    /// Redis answered: the outage (if any) is over; its spending is already queued.
    fn answered(&self, settings: &GateSettings) {
        self.breaker.success(settings.enforcement.breaker_failures);
        if lock(&self.outage).take().is_some() {
            tracing::info!("token budget: Redis back; what was spent meanwhile is being settled");
        }
    }

    fn failed(&self, settings: &GateSettings, error: &redis::RedisError) {
        tracing::debug!(%error, "token budget: Redis call failed");
        let e = &settings.enforcement;
        self.breaker
            .failure(now_ms(), e.breaker_failures, e.breaker_cooldown);
    }

    /// Reserves `tokens` for request `id`: `Ok(Some)` admitted, `Ok(None)` exhausted,
    /// `Err` refused because Redis is out of reach and the policy is `fail_closed`.
    pub async fn admit(
        &self,
        settings: &GateSettings,
        budget: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Result<Option<Ticket>, ()> {
        let day = settings.day(now_ms());
        match settings.enforcement.lease_tokens {
            Some(lease) => {
                self.admit_leased(settings, (budget, lease), day, id, tokens)
                    .await
            }
            None => self.admit_exact(settings, budget, day, id, tokens).await,
        }
    }

    async fn admit_exact(
        &self,
        settings: &GateSettings,
        budget: u64,
        day: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Result<Option<Ticket>, ()> {
        let e = &settings.enforcement;
        if self
            .breaker
            .allow(now_ms(), e.breaker_failures, e.breaker_cooldown)
        {
            // The call may still reach Redis after it failed here (queued behind a pause):
            // releasing its id makes sure it holds nothing, whichever arrives first.
            let unanswered = Unanswered {
                budget: self,
                items: vec![Item::settle(day, id.clone(), 0)],
            };
            let keys = self.keys(day);
            let ttl = e.reservation_ttl.as_millis() as u64;
            let reply = match self.conn() {
                Ok(mut conn) => {
                    let call = store::reserve(&mut conn, &keys, &id, tokens, (budget, ttl));
                    self.timed("reserve", call).await
                }
                Err(error) => Err(error),
            };
            match reply {
                Ok(reply) => {
                    unanswered.answered();
                    self.answered(settings);
                    let ticket = Ticket {
                        kind: Kind::Exact,
                        day,
                        id,
                        tokens,
                    };
                    return Ok((reply.ok == 1).then_some(ticket));
                }
                Err(error) => self.failed(settings, &error),
            }
        }
        self.outage_admit(settings, budget, day, tokens)
    }

    /// Takes `tokens` from the lease of `day`, if it has them.
    fn take_from_lease(&self, day: u64, id: &str, tokens: u64) -> Option<Ticket> {
        let mut lease = lock(&self.lease);
        if lease.id.is_none() || lease.day != day || lease.left < tokens {
            return None;
        }
        lease.left -= tokens;
        lease.outstanding = lease.outstanding.saturating_add(tokens);
        Some(Ticket {
            kind: Kind::Lease,
            day,
            id: id.into(),
            tokens,
        })
    }

    // Long on purpose: a renewal is one protocol read top to bottom (look again under the
    // renewal lock, close the old lease and open the next in one script call, settle both if
    // the call goes unanswered).
    async fn admit_leased(
        &self,
        settings: &GateSettings,
        (budget, lease_tokens): (u64, u64),
        day: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Result<Option<Ticket>, ()> {
        if let Some(ticket) = self.take_from_lease(day, &id, tokens) {
            return Ok(Some(ticket));
        }
        let _renewing = self.renewing.lock().await;
        if let Some(ticket) = self.take_from_lease(day, &id, tokens) {
            return Ok(Some(ticket));
        }
        let e = &settings.enforcement;
        if !self
            .breaker
            .allow(now_ms(), e.breaker_failures, e.breaker_cooldown)
        {
            return self.outage_admit(settings, budget, day, tokens);
        }
        let close = self.close_lease(day);
        let want = lease_tokens.max(tokens);
        let outstanding = lock(&self.lease).outstanding;
        let open = (self.next_id("lease"), want.saturating_add(outstanding));
        // Unanswered, whether the old lease closed and the new one opened is unknown: the
        // settler closes both (the new one with nothing spent), which counts once either way.
        let mut unanswered = Unanswered {
            budget: self,
            items: vec![Item::settle(day, open.0.clone(), 0)],
        };
        if let Some((id, spent)) = &close {
            unanswered.items.push(Item::settle(day, id.clone(), *spent));
        }
        let keys = self.keys(day);
        let ttl = e.reservation_ttl.as_millis() as u64;
        let reply = match self.conn() {
            Ok(mut conn) => {
                let closing = close.as_ref().map(|(id, spent)| (&**id, *spent));
                let call = store::lease(
                    &mut conn,
                    &keys,
                    closing,
                    Some((&*open.0, open.1)),
                    (budget, ttl),
                );
                self.timed("lease", call).await
            }
            Err(error) => Err(error),
        };
        match reply {
            Ok(reply) => {
                unanswered.answered();
                self.answered(settings);
                if reply.ok != 1 {
                    return Ok(None);
                }
                let mut lease = lock(&self.lease);
                lease.id = Some(open.0);
                lease.day = day;
                lease.left = want - tokens;
                lease.outstanding = lease.outstanding.saturating_add(tokens);
                Ok(Some(Ticket {
                    kind: Kind::Lease,
                    day,
                    id,
                    tokens,
                }))
            }
            Err(error) => {
                self.failed(settings, &error);
                drop(unanswered);
                self.outage_admit(settings, budget, day, tokens)
            }
        }
    }

    /// Takes the lease out of use; returns it (id, tokens spent) if it belongs to `day`. A
    /// lease of an earlier day is closed through the settler, under that day's keys.
    fn close_lease(&self, day: u64) -> Option<(Box<str>, u64)> {
        let mut lease = lock(&self.lease);
        let id = lease.id.take()?;
        let spent = std::mem::take(&mut lease.spent);
        lease.left = 0;
        if lease.day == day {
            return Some((id, spent));
        }
        let old_day = lease.day;
        drop(lease);
        self.push(Item::settle(old_day, id, spent));
        None
    }

    /// Redis is out of reach: the outage policy decides.
    fn outage_admit(
        &self,
        settings: &GateSettings,
        budget: u64,
        day: u64,
        tokens: u64,
    ) -> Result<Option<Ticket>, ()> {
        let policy = settings.enforcement.outage_policy;
        let counted = |result: &'static str| {
            metrics::counter!(names::BUDGET_OUTAGE_ADMISSIONS_TOTAL, "policy" => policy.as_str(), "result" => result)
                .increment(1);
        };
        let id = self.next_id("outage");
        match policy {
            OutagePolicy::FailClosed => {
                counted("refused");
                Err(())
            }
            OutagePolicy::FailOpen => {
                counted("admitted");
                Ok(Some(Ticket {
                    kind: Kind::Outage { epoch: 0 },
                    day,
                    id,
                    tokens,
                }))
            }
            OutagePolicy::LocalShare => {
                let mut outage = lock(&self.outage);
                let outage = outage.get_or_insert_with(|| self.begin_outage(budget, day));
                let now = now_ms();
                let ttl = settings.enforcement.reservation_ttl.as_millis() as u64;
                let held =
                    outage
                        .ledger
                        .reserve(day, &id, (tokens, outage.allowance, 0), (now, ttl));
                if held.is_err() {
                    counted("refused");
                    return Ok(None);
                }
                counted("admitted");
                Ok(Some(Ticket {
                    kind: Kind::Outage {
                        epoch: outage.epoch,
                    },
                    day,
                    id,
                    tokens,
                }))
            }
        }
    }

    /// This replica's share of what was left when Redis was last seen: remaining / N, N the
    /// members the last heartbeat saw (this one included).
    fn begin_outage(&self, budget: u64, day: u64) -> Outage {
        let seen = *lock(&self.seen);
        let committed = if seen.day == day {
            seen.used.saturating_add(seen.reserved)
        } else {
            0
        };
        let members = lock(&self.fleet.members).len().max(1) as u64;
        let allowance = budget.saturating_sub(committed) / members;
        let epoch = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            allowance,
            members,
            "token budget: Redis out of reach; admitting this replica's share of the remaining budget"
        );
        Outage {
            epoch,
            allowance,
            ledger: Ledger::default(),
        }
    }

    /// Settles a request's reservation with the tokens it spent; never waits.
    pub fn settle(&self, ticket: Ticket, tokens: u64) {
        match ticket.kind {
            Kind::Exact => self.push(Item::settle(ticket.day, ticket.id, tokens)),
            Kind::Lease => {
                let mut lease = lock(&self.lease);
                lease.outstanding = lease.outstanding.saturating_sub(ticket.tokens);
                if lease.id.is_some() && lease.day == ticket.day {
                    lease.spent = lease.spent.saturating_add(tokens);
                } else {
                    drop(lease);
                    self.push(Item::spent(ticket.day, tokens));
                }
            }
            Kind::Outage { epoch } => {
                if let Some(outage) = lock(&self.outage).as_ref() {
                    if outage.epoch == epoch {
                        outage.ledger.settle(ticket.day, &ticket.id, tokens);
                    }
                }
                self.push(Item::spent(ticket.day, tokens));
            }
        }
    }

    fn push(&self, item: Item) {
        let pending = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(names::BUDGET_PENDING_SETTLEMENTS).set(pending as f64);
        // The receiver lives as long as the settler; without it there is no Redis to tell.
        let _ = self.tx.send(item);
    }

    /// Settlements waiting for Redis.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// At shutdown: returns the lease's unused part and waits (at most `within`) for the
    /// queued settlements to reach Redis.
    pub async fn close(&self, within: Duration) {
        {
            let mut lease = lock(&self.lease);
            if let Some(id) = lease.id.take() {
                let (day, spent) = (lease.day, std::mem::take(&mut lease.spent));
                lease.left = 0;
                drop(lease);
                self.push(Item::settle(day, id, spent));
            }
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Item {
    fn settle(day: u64, id: Box<str>, tokens: u64) -> Item {
        Item {
            day,
            id,
            tokens,
            flush: false,
            sent: false,
        }
    }

    fn spent(day: u64, tokens: u64) -> Item {
        Item {
            day,
            id: Box::from(""),
            tokens,
            flush: true,
            sent: false,
        }
    }
}

mod breaker;
mod settler;

#[cfg(test)]
mod tests;
