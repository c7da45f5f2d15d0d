//! The gateway's edge: local answers, screening, the route; then the route's stack of
//! stages (`stage`), which answers.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use switchyard_core::{Body, BoxError, RequestId};
use switchyard_llm::DialectSetting;
use switchyard_state::budget::BudgetGate;
use switchyard_state::fleet::FleetStanding;
use switchyard_state::steer::Steering;
use switchyard_state::{KillBoard, Signals};

use crate::boards::Boards;
use crate::lifecycle::Lifecycle;
use crate::local;
pub use crate::peer::Peer;
use crate::rescue::Refusal;
use crate::stack::{Edge, Entry};
use crate::table::{Route, Table};

/// The gateway: the routing snapshot in force and the signals it feeds.
#[derive(Debug)]
pub struct Gateway {
    table: ArcSwap<Table>,
    /// Signals, kill switches, steering, the budget and endpoint health: what outlives a
    /// table and every request reads.
    boards: Arc<Boards>,
    /// Starting, serving or draining: what /ready says before it dials an upstream.
    lifecycle: Lifecycle,
    /// Fleet mode: what `/ready` reports of the replica's standing.
    fleet: std::sync::OnceLock<Arc<dyn FleetStanding>>,
}

impl Gateway {
    /// A gateway whose kill switches live in memory only.
    pub fn new(table: Table, signals: Arc<Signals>) -> Arc<Self> {
        Gateway::with_kill_board(table, signals, KillBoard::in_memory())
    }

    /// A gateway reading its kill switches from `kills` (persisted in state_dir).
    pub fn with_kill_board(
        table: Table,
        signals: Arc<Signals>,
        kills: Arc<KillBoard>,
    ) -> Arc<Self> {
        Gateway::with_boards(table, signals, kills, Steering::new())
    }

    /// A gateway reading kill switches from `kills` and the controller's decisions from
    /// `steering`.
    pub fn with_boards(
        table: Table,
        signals: Arc<Signals>,
        kills: Arc<KillBoard>,
        steering: Arc<Steering>,
    ) -> Arc<Self> {
        let boards = Boards::with(signals, kills, steering);
        boards.reconcile(&table);
        Arc::new(Gateway {
            table: ArcSwap::from_pointee(table),
            boards: Arc::new(boards),
            lifecycle: Lifecycle::default(),
            fleet: std::sync::OnceLock::new(),
        })
    }

    /// Starts as `Starting`: the assembly marks it serving once every piece of state the
    /// data path reads is loaded, and draining when shutdown begins.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Fleet mode: `/ready` says whether the replica shares the fleet's state or serves
    /// degraded.
    pub fn join_fleet(&self, fleet: Arc<dyn FleetStanding>) {
        let _ = self.fleet.set(fleet);
    }

    /// Requests reserve their tokens from `gate` from now on (when it enforces a budget).
    pub fn set_budget(&self, gate: Arc<BudgetGate>) {
        let _ = self.boards.budget.set(gate);
    }

    pub fn budget(&self) -> Option<&Arc<BudgetGate>> {
        self.boards.budget.get()
    }

    pub fn steering(&self) -> &Arc<Steering> {
        &self.boards.steering
    }

    pub fn kills(&self) -> &Arc<KillBoard> {
        &self.boards.kills
    }

    /// The snapshot in force.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// A snapshot of `config` over the gateway's live state, without effects: nothing in
    /// force changes until [`Gateway::swap`]. `sims` holds the embedded simulators' addresses.
    pub fn prepare(
        &self,
        config: &switchyard_config::Config,
        sims: &std::collections::HashMap<String, std::net::SocketAddr>,
    ) -> Result<Table, crate::table::CompileError> {
        self.boards.prepare(config, sims)
    }

    /// Puts a prepared snapshot in force: the boards adopt it (route signals, experiments,
    /// endpoint health and probes), then one atomic store; requests in flight keep theirs.
    /// Admission state (rates, queues) carries over for routes whose limits are unchanged.
    /// Infallible.
    pub fn swap(&self, mut table: Table) {
        table.carry_over(&self.table.load());
        self.boards.reconcile(&table);
        self.table.store(Arc::new(table));
    }

    pub fn signals(&self) -> &Arc<Signals> {
        &self.boards.signals
    }

    /// Handles one request. Never fails: every problem becomes an answer.
    pub(crate) async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        peer: Peer,
    ) -> Result<Response<Body>, Infallible>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = switchyard_core::clock::now();
        let table = self.table.load_full();
        if local::is_local(req.uri().path()) {
            return Ok(local::answer(
                req,
                &table,
                self.lifecycle.phase(),
                &self.boards.signals,
                self.fleet.get(),
            )
            .await);
        }
        let request_id = request_id(req.headers());
        if let Some(refusal) = screen(&req) {
            return Ok(refuse_unrouted(&req, refusal, &request_id.1));
        }
        let host = req.uri().host().map(str::to_owned).or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
        let Some(index) = table.route_for(req.uri().path(), req.headers(), host.as_deref()) else {
            return Ok(refuse_unrouted(&req, Refusal::NoRoute, &request_id.1));
        };
        let route = &table.routes[index];
        let edge = Edge {
            host,
            ..edge(&req, &table, route, (started, peer), request_id)
        };
        // The stack reaches its route through its own `Arc` of the table, by index.
        let answer = route.stack.call(Entry {
            table: table.clone(),
            route: index,
            boards: self.boards.clone(),
            // One body type for every route's stack, whatever body the embedding program uses.
            request: req.map(|body| body.map_err(Into::into).boxed_unsync()),
            edge,
        });
        Ok(answer.await)
    }
}

/// What the edge learnt of a routed request: its client, dialect, operation and trace hop.
fn edge<B>(
    req: &Request<B>,
    table: &Table,
    route: &Route,
    (started, peer): (std::time::Instant, Peer),
    request_id: (RequestId, HeaderValue),
) -> Edge {
    let (dialect, op) =
        switchyard_llm::classify(route.dialect, req.method().as_str(), req.uri().path());
    Edge {
        started,
        peer,
        client: crate::headers::client_addr(req.headers(), peer.addr, table.settings.trusted_hops),
        request_id,
        dialect,
        op,
        trace: crate::trace::hop(req.headers(), table.settings.sampling_ratio),
        host: None,
    }
}

/// An answer to a request refused before it has a route: in the dialect its path suggests,
/// counted as a gateway error.
fn refuse_unrouted<B>(
    req: &Request<B>,
    refusal: Refusal,
    request_id: &HeaderValue,
) -> Response<Body> {
    let (dialect, _) = switchyard_llm::classify(
        DialectSetting::Auto,
        req.method().as_str(),
        req.uri().path(),
    );
    metrics::counter!(switchyard_core::metrics::GATEWAY_ERRORS_TOTAL, "reason" => refusal.code())
        .increment(1);
    refusal.respond(dialect, request_id, None)
}

/// What no route may see: a tunnel request, or a request naming two hosts. An HTTP/1
/// absolute-form target wins over Host (RFC 9112 §3.2.2); over HTTP/2 a Host that differs
/// from `:authority` makes the request malformed (RFC 9113 §8.3.1).
fn screen<B>(req: &Request<B>) -> Option<Refusal> {
    if req.method() == http::Method::CONNECT {
        return Some(Refusal::MethodNotAllowed);
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() || host.is_some_and(|h| h.as_bytes().contains(&b',')) {
        return Some(Refusal::BadHost);
    }
    let authority = req.uri().authority();
    if let (Some(host), Some(authority), http::Version::HTTP_2) = (host, authority, req.version()) {
        if !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
        {
            return Some(Refusal::BadHost);
        }
    }
    None
}

/// The client's `x-request-id` if it sent a usable one, else a fresh one.
pub(crate) fn request_id(headers: &http::HeaderMap) -> (RequestId, HeaderValue) {
    if let Some(value) = headers.get("x-request-id") {
        if let Ok(text) = value.to_str() {
            if !text.is_empty() && text.len() <= 200 {
                return (RequestId(Arc::from(text)), value.clone());
            }
        }
    }
    let id = RequestId::generate(fastrand::u128(..));
    let value =
        HeaderValue::from_str(&id.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    (id, value)
}
