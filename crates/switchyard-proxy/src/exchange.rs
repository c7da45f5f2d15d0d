//! One request on one route, outermost first: inspect, kill switch, admission, forward, meter.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_control::Outcome;
use switchyard_core::{body, Body, ErrorClass, RequestFacts, RequestId};
use switchyard_llm::{Dialect, Operation};
use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Shed;
use crate::forward::{self, Sent};
use crate::gateway::{Gateway, Peer};
use crate::headers::{append_list, strip_hop_by_hop};
use crate::inspect;
use crate::meter::{InFlight, Metered, Record, Scan};
use crate::rescue::Refusal;
use crate::table::{CompiledFallback, Route, Table, Upstream};

/// The `x-switchyard-fallback` value on answers a kill switch made.
const KILLED: HeaderValue = HeaderValue::from_static("kill_switch");

pub(crate) struct Exchange<'a> {
    pub gateway: &'a Gateway,
    pub table: &'a Table,
    pub route: &'a Route,
    /// Where the request goes: the route's upstream, or its kill switch's fallback upstream.
    pub upstream: &'a Arc<Upstream>,
    /// The answer is a kill switch's fallback.
    pub fallback: bool,
    pub dialect: Dialect,
    pub op: Operation,
    pub started: Instant,
    pub peer: Peer,
    pub request_id: (RequestId, HeaderValue),
}

/// Held for the whole exchange: the in-flight count and, under a concurrency limit, a slot.
pub(crate) struct Held {
    in_flight: Option<InFlight>,
    slot: Option<OwnedSemaphorePermit>,
    /// Until an answer is on its way, the record of a request hyper drops because the client
    /// left (mid-upload, queued, or waiting for the upstream's headers): it is recorded as
    /// cancelled, so slow first bytes that make clients give up still reach the windows.
    unanswered: Option<Box<Record>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut record) = self.unanswered.take() {
            record._in_flight = self.in_flight.take();
            record._slot = self.slot.take();
            record.finish(Outcome::Cancelled, None, &Scan::None);
        }
    }
}

/// What the kill switch says about a request.
enum KillVerdict {
    Pass,
    Answer(Response<Body>),
    Refuse,
}

impl<'a> Exchange<'a> {
    pub async fn run(mut self, req: Request<Incoming>, host: Option<String>) -> Response<Body> {
        let (mut parts, incoming) = req.into_parts();
        let mut held = Held {
            in_flight: Some(InFlight::enter(&self.route.in_flight)),
            slot: None,
            unanswered: Some(Box::new(self.pending(inspect::minimal(
                self.route,
                self.request_id.0.clone(),
                self.peer.addr,
                self.dialect,
            )))),
        };
        // Inspectable LLM requests are read whole (up to the limit) to be understood;
        // everything else streams through untouched.
        // A body known whole can be sent again if the first endpoint refuses the connection.
        let (mut facts, upstream_body, replay) = if self.op == Operation::Other {
            let empty = http_body::Body::is_end_stream(&incoming);
            (
                self.facts(&parts.headers, None),
                incoming.map_err(Into::into).boxed_unsync(),
                empty.then(Bytes::new),
            )
        } else {
            match inspect::read_body(incoming, &parts.headers, self.table.settings.max_body_bytes)
                .await
            {
                Ok(bytes) => (
                    self.facts(&parts.headers, Some(&bytes)),
                    body::full(bytes.clone()),
                    Some(bytes),
                ),
                Err(refusal) => {
                    let facts = self.facts(&parts.headers, None);
                    return self.refuse(refusal, facts, held);
                }
            }
        };
        if facts.unparsed {
            metrics::counter!(switchyard_core::metrics::UNPARSED_REQUESTS_TOTAL, "route" => self.route.name.clone()).increment(1);
        }
        if let Some(pending) = held.unanswered.as_mut() {
            // The labels a cancellation is counted under; the rest stays minimal.
            pending.facts.model_label = facts.model_label.clone();
            pending.facts.model.clone_from(&facts.model);
            pending.facts.context_fill = facts.context_fill;
            pending.facts.prompt_fingerprint = facts.prompt_fingerprint;
        }
        match self.kill_verdict(&parts.headers, &mut facts) {
            KillVerdict::Pass => {}
            KillVerdict::Answer(answer) => return self.answer_fallback(answer, facts, held),
            KillVerdict::Refuse => return self.refuse(Refusal::Killed, facts, held),
        }
        // A fallback upstream is not the route's upstream: the route's limits protect the
        // one that is killed, not the one standing in for it.
        if !self.fallback {
            if let Err(shed) = self.route.admission.check_rates(facts.user_key.as_deref()) {
                return self.shed(shed, facts, held);
            }
            match self
                .route
                .admission
                .enter(self.gateway.signals().queued())
                .await
            {
                Ok(slot) => held.slot = slot,
                Err(shed) => return self.shed(shed, facts, held),
            }
            // A request that waited in the queue may have been killed meanwhile.
            if held.slot.is_some() {
                match self.kill_verdict(&parts.headers, &mut facts) {
                    KillVerdict::Pass => {}
                    KillVerdict::Answer(answer) => {
                        return self.answer_fallback(answer, facts, held)
                    }
                    KillVerdict::Refuse => return self.refuse(Refusal::Killed, facts, held),
                }
            }
        }
        self.forward_headers(&mut parts, host.as_deref());
        self.forward(parts, (upstream_body, replay), facts, held)
            .await
    }

    /// One atomic load: a switch engaged a microsecond ago applies to this request.
    fn kill_verdict(&mut self, headers: &http::HeaderMap, facts: &mut RequestFacts) -> KillVerdict {
        let Some(kill) = self.gateway.kills().get(&self.route.name) else {
            return KillVerdict::Pass;
        };
        if self.fallback || !kill.applies(headers, facts.user_key.as_deref()) {
            return KillVerdict::Pass;
        }
        match self.killed(facts) {
            Some(answer) => KillVerdict::Answer(answer),
            None if !self.fallback => KillVerdict::Refuse,
            None => KillVerdict::Pass,
        }
    }

    /// The kill switch's answer: a made response (text or static), or `None` with
    /// `self.upstream` switched to the fallback upstream, or `None` for no fallback (503).
    fn killed(&mut self, facts: &mut RequestFacts) -> Option<Response<Body>> {
        let route = self.route;
        match &route.kill.fallback {
            None => None,
            Some(CompiledFallback::Upstream(upstream)) => {
                self.upstream = upstream;
                self.fallback = true;
                facts.upstream = upstream.name.clone();
                None
            }
            Some(fallback) => {
                let answer = fallback.respond(self.dialect, self.op, facts.stream)?;
                facts.upstream = Arc::from("fallback");
                Some(answer)
            }
        }
    }

    fn answer_fallback(
        &self,
        mut response: Response<Body>,
        facts: RequestFacts,
        held: Held,
    ) -> Response<Body> {
        let headers = response.headers_mut();
        headers.insert("x-request-id", self.request_id.1.clone());
        headers.insert("x-switchyard-fallback", KILLED);
        self.routing_headers(headers);
        let status = response.status().as_u16();
        self.record(facts, status, None, held)
            .finish(Outcome::Complete, None, &Scan::None);
        response
    }

    fn shed(&self, shed: Shed, facts: RequestFacts, held: Held) -> Response<Body> {
        metrics::counter!(switchyard_core::metrics::SHED_REQUESTS_TOTAL, "route" => self.route.name.clone(), "reason" => shed.as_str()).increment(1);
        let refusal = match shed {
            Shed::RouteRate | Shed::UserRate => Refusal::RateLimited,
            Shed::QueueFull => Refusal::QueueFull,
            Shed::QueueTimeout => Refusal::QueueTimeout,
        };
        self.refuse(refusal, facts, held)
    }

    fn forward_headers(&self, parts: &mut Parts, host: Option<&str>) {
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
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            parts.headers.insert("x-forwarded-host", host);
        }
    }

    async fn forward(
        &self,
        parts: Parts,
        (body, replay): (Body, Option<Bytes>),
        facts: RequestFacts,
        held: Held,
    ) -> Response<Body> {
        let out = forward::Outbound {
            parts,
            body,
            replay,
            user_key: facts.user_key.as_deref(),
            request_id: &self.request_id.1,
            deadline: tokio::time::Instant::now() + self.table.settings.upstream_timeout,
        };
        match forward::send(self.upstream, out).await {
            Sent::Response(response) => self.respond(response, facts, held),
            Sent::NoEndpoint | Sent::Connect => self.refuse(Refusal::UpstreamConnect, facts, held),
            Sent::BadTarget => self.refuse(Refusal::BadTarget, facts, held),
            Sent::Timeout => self.refuse(Refusal::UpstreamTimeout, facts, held),
            Sent::Failed(error) => {
                tracing::debug!(%error, route = %self.route.name, "upstream failed before its response");
                self.refuse(Refusal::UpstreamFailed, facts, held)
            }
        }
    }

    fn facts(&self, headers: &http::HeaderMap, body: Option<&Bytes>) -> RequestFacts {
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

    /// The record of this exchange with nothing held yet: what a cancellation records.
    fn pending(&self, facts: RequestFacts) -> Record {
        let model = self
            .table
            .model(facts.model.as_deref().unwrap_or(""))
            .cloned();
        Record {
            started: self.started,
            ttfb: None,
            facts,
            dialect: self.dialect,
            status: 0,
            status_error: None,
            model,
            route: self.route.signals.clone(),
            signals: self.gateway.signals().clone(),
            _in_flight: None,
            _slot: None,
        }
    }

    /// The record that answers this exchange; the cancellation record is disarmed.
    fn record(
        &self,
        facts: RequestFacts,
        status: u16,
        status_error: Option<ErrorClass>,
        mut held: Held,
    ) -> Record {
        held.unanswered = None;
        let mut record = self.pending(facts);
        record.status = status;
        record.status_error = status_error;
        record._in_flight = held.in_flight.take();
        record._slot = held.slot.take();
        record
    }

    fn refuse(&self, refusal: Refusal, facts: RequestFacts, held: Held) -> Response<Body> {
        let retry_after = match refusal {
            Refusal::Killed => Some(self.route.kill.retry_after_secs),
            Refusal::RateLimited | Refusal::QueueFull | Refusal::QueueTimeout => Some(1),
            _ => None,
        };
        let mut response = refusal.respond(self.dialect, &self.request_id.1, retry_after);
        self.routing_headers(response.headers_mut());
        let record = self.record(facts, refusal.status().as_u16(), refusal.class(), held);
        record.finish(Outcome::Complete, None, &Scan::None);
        response
    }

    fn respond(
        &self,
        response: Response<Incoming>,
        facts: RequestFacts,
        held: Held,
    ) -> Response<Body> {
        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert("x-request-id", self.request_id.1.clone());
        self.routing_headers(&mut parts.headers);
        if self.fallback {
            parts.headers.insert("x-switchyard-fallback", KILLED);
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let scan = if self.op == Operation::Other {
            Scan::None
        } else {
            Scan::for_response(self.dialect, content_type)
        };
        let status = parts.status.as_u16();
        let record = self.record(facts, status, ErrorClass::of_status(status), held);
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
        let upstream = if self.fallback {
            &self.upstream.header
        } else {
            &self.route.upstream.header
        };
        if let Some(v) = upstream {
            headers.insert("x-switchyard-upstream", v.clone());
        }
    }
}
