//! The request path, outermost first: local answers, route, inspect, forward, meter.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_control::{Outcome, Signals};
use switchyard_core::{body, Body, ErrorClass, RequestFacts, RequestId};
use switchyard_llm::{Dialect, DialectSetting, Operation};

use crate::forward;
use crate::headers::{append_list, strip_hop_by_hop};
use crate::inspect;
use crate::local;
use crate::meter::{InFlight, Metered, Record, Scan};
use crate::rescue::Refusal;
use crate::table::{Route, Table};

/// The gateway: the routing snapshot in force and the signals it feeds.
#[derive(Debug)]
pub struct Gateway {
    table: ArcSwap<Table>,
    signals: Arc<Signals>,
}

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl Gateway {
    pub fn new(table: Table, signals: Arc<Signals>) -> Arc<Self> {
        Arc::new(Gateway {
            table: ArcSwap::from_pointee(table),
            signals,
        })
    }

    /// The snapshot in force.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Puts a new snapshot in force with one atomic store; requests in flight keep theirs.
    pub fn swap(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    pub fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    /// Handles one request. Never fails: every problem becomes an answer.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let table = self.table.load_full();
        if local::is_local(req.uri().path()) {
            return Ok(local::answer(req.method(), req.uri().path(), &table).await);
        }
        let request_id = request_id(req.headers());
        let host = req.uri().host().map(str::to_owned).or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
        let Some(route) = table.route_for(req.uri().path(), req.headers(), host.as_deref()) else {
            let (dialect, _) = switchyard_llm::classify(
                DialectSetting::Auto,
                req.method().as_str(),
                req.uri().path(),
            );
            metrics::counter!(switchyard_core::metrics::GATEWAY_ERRORS_TOTAL, "reason" => Refusal::NoRoute.code()).increment(1);
            return Ok(Refusal::NoRoute.respond(dialect, &request_id.1));
        };
        let (dialect, op) =
            switchyard_llm::classify(route.dialect, req.method().as_str(), req.uri().path());
        let exchange = Exchange {
            gateway: &self,
            table: &table,
            route,
            dialect,
            op,
            started,
            peer,
            request_id,
        };
        Ok(exchange.run(req, host).await)
    }
}

/// The client's `x-request-id` if it sent a usable one, else a fresh one.
fn request_id(headers: &http::HeaderMap) -> (RequestId, HeaderValue) {
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

/// One request on one route, from inspection to the metered response.
struct Exchange<'a> {
    gateway: &'a Gateway,
    table: &'a Table,
    route: &'a Route,
    dialect: Dialect,
    op: Operation,
    started: Instant,
    peer: Peer,
    request_id: (RequestId, HeaderValue),
}

impl Exchange<'_> {
    async fn run(self, req: Request<Incoming>, host: Option<String>) -> Response<Body> {
        let in_flight = InFlight::enter(&self.route.in_flight);
        let (mut parts, incoming) = req.into_parts();
        // Inspectable LLM requests are read whole (up to the limit) to be understood;
        // everything else streams through untouched.
        let (facts, upstream_body) = if self.op == Operation::Other {
            (
                self.facts(&parts.headers, None),
                incoming.map_err(Into::into).boxed_unsync(),
            )
        } else {
            match inspect::read_body(incoming, &parts.headers, self.table.settings.max_body_bytes)
                .await
            {
                Ok(bytes) => (self.facts(&parts.headers, Some(&bytes)), body::full(bytes)),
                Err(refusal) => {
                    let facts = self.facts(&parts.headers, None);
                    return self.refuse(refusal, facts, in_flight);
                }
            }
        };
        if facts.unparsed {
            metrics::counter!(switchyard_core::metrics::UNPARSED_REQUESTS_TOTAL, "route" => self.route.name.clone()).increment(1);
        }
        strip_hop_by_hop(&mut parts.headers);
        append_list(
            &mut parts.headers,
            "x-forwarded-for",
            &self.peer.addr.ip().to_string(),
        );
        append_list(
            &mut parts.headers,
            "x-forwarded-proto",
            if self.peer.tls { "https" } else { "http" },
        );
        if let Some(host) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            parts.headers.insert("x-forwarded-host", host);
        }
        let Some(endpoint) =
            forward::pick(&self.route.upstream.endpoints, facts.user_key.as_deref())
        else {
            return self.refuse(Refusal::UpstreamConnect, facts, in_flight);
        };
        let Ok(uri) = forward::upstream_uri(endpoint, parts.uri.path_and_query()) else {
            return self.refuse(Refusal::BadTarget, facts, in_flight);
        };
        let mut upstream_req = Request::from_parts(parts, upstream_body);
        forward::prepare(&mut upstream_req, uri, &self.request_id.1);
        let sent = tokio::time::timeout(
            self.table.settings.upstream_timeout,
            self.route.upstream.client.request(upstream_req),
        )
        .await;
        match sent {
            Err(_) => self.refuse(Refusal::UpstreamTimeout, facts, in_flight),
            Ok(Err(error)) if error.is_connect() => {
                self.refuse(Refusal::UpstreamConnect, facts, in_flight)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, route = %self.route.name, "upstream failed before its response");
                self.refuse(Refusal::UpstreamFailed, facts, in_flight)
            }
            Ok(Ok(response)) => self.respond(response, facts, in_flight),
        }
    }

    fn facts(&self, headers: &http::HeaderMap, body: Option<&bytes::Bytes>) -> RequestFacts {
        inspect::facts(
            self.table,
            self.route,
            self.request_id.0.clone(),
            self.peer.addr,
            headers,
            (self.dialect, self.op),
            body,
        )
    }

    fn record(
        &self,
        facts: RequestFacts,
        status: u16,
        status_error: Option<ErrorClass>,
        in_flight: InFlight,
    ) -> Record {
        let model = self
            .table
            .model(facts.model.as_deref().unwrap_or(""))
            .cloned();
        Record {
            started: self.started,
            ttfb: None,
            facts,
            dialect: self.dialect,
            status,
            status_error,
            model,
            route: self.route.signals.clone(),
            signals: self.gateway.signals.clone(),
            _in_flight: in_flight,
        }
    }

    fn refuse(&self, refusal: Refusal, facts: RequestFacts, in_flight: InFlight) -> Response<Body> {
        let mut response = refusal.respond(self.dialect, &self.request_id.1);
        self.routing_headers(response.headers_mut());
        let record = self.record(facts, refusal.status().as_u16(), refusal.class(), in_flight);
        record.finish(Outcome::Complete, None, &Scan::None);
        response
    }

    fn respond(
        &self,
        response: Response<Incoming>,
        facts: RequestFacts,
        in_flight: InFlight,
    ) -> Response<Body> {
        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert("x-request-id", self.request_id.1.clone());
        self.routing_headers(&mut parts.headers);
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let scan = if self.op == Operation::Other {
            Scan::None
        } else {
            Scan::for_response(self.dialect, content_type)
        };
        let status = parts.status.as_u16();
        let record = self.record(facts, status, ErrorClass::of_status(status), in_flight);
        if http_body::Body::is_end_stream(&incoming) {
            record.finish(Outcome::Complete, None, &scan);
            return Response::from_parts(parts, body::empty());
        }
        let metered = Metered::new(
            incoming,
            scan,
            record,
            self.table.settings.stream_idle_timeout,
        );
        Response::from_parts(parts, metered.boxed_unsync())
    }

    fn routing_headers(&self, headers: &mut http::HeaderMap) {
        if !self.table.settings.routing_headers {
            return;
        }
        if let Some(v) = &self.route.route_header {
            headers.insert("x-switchyard-route", v.clone());
        }
        if let Some(v) = &self.route.upstream_header {
            headers.insert("x-switchyard-upstream", v.clone());
        }
    }
}
