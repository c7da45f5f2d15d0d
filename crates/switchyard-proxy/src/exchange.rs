//! One request on one route, outermost first: inspect, kill switch, admission, forward, meter.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_core::{body, Body, ErrorClass, RequestFacts, RequestId};
use switchyard_llm::{Dialect, Operation};
use switchyard_state::budget::{Reservation, Verdict};
use switchyard_state::Outcome;
use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Shed;
use crate::forward::{self, Sent};
use crate::gateway::{Gateway, Peer};
use crate::headers::{
    append_list, strip_hop_by_hop, X_FALLBACK, X_FORWARDED_HOST, X_REQUEST_ID, X_ROUTE, X_UPSTREAM,
    X_VARIANT,
};
use crate::inspect;
use crate::meter::{InFlight, Metered, Record, Scan};
use crate::rescue::Refusal;
use crate::table::{CompiledFallback, Route, Table, Upstream, Variant};

/// The `x-switchyard-fallback` value on answers a kill switch made.
const KILLED: HeaderValue = HeaderValue::from_static("kill_switch");

/// The `x-switchyard-variant` of requests outside every variant on a route with experiments.
const CONTROL: HeaderValue = HeaderValue::from_static(switchyard_state::experiment::CONTROL);

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
    /// The client's address for user keys, rate limits and logs: the peer's, or what
    /// `trusted_hops` proxies in front say it is.
    pub client: std::net::SocketAddr,
    pub request_id: (RequestId, HeaderValue),
    /// The experiment variant the request is in, if any.
    pub variant: Option<&'a Variant>,
    /// The request's text, kept only when bodies are captured for incidents.
    pub capture: Option<String>,
    /// The rollout and experiments placed this request (it got past the kill switch).
    pub steered: bool,
    /// The gateway's hop of the request's trace.
    pub trace: switchyard_core::TraceContext,
}

/// Held for the whole exchange: the in-flight count and, under a concurrency limit, a slot.
pub(crate) struct Held {
    in_flight: Option<InFlight>,
    slot: Option<OwnedSemaphorePermit>,
    /// Until an answer is on its way, the record of a request hyper drops because the client
    /// left (mid-upload, queued, or waiting for the upstream's headers): it is recorded as
    /// cancelled, so slow first bytes that make clients give up still reach the windows.
    unanswered: Option<Box<Record>>,
    /// The request's tokens reserved from the budget.
    reservation: Option<Reservation>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut record) = self.unanswered.take() {
            record._in_flight = self.in_flight.take();
            record._slot = self.slot.take();
            record.reservation = self.reservation.take();
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
            reservation: None,
            unanswered: Some(Box::new(self.pending(RequestFacts {
                trace: self.trace,
                ..inspect::minimal(
                    self.route,
                    self.request_id.0.clone(),
                    self.client,
                    (self.dialect, self.op),
                )
            }))),
        };
        // Until it is sent, a request the client gives up on says nothing about the upstream.
        if let Some(pending) = held.unanswered.as_mut() {
            pending.refused = true;
        }
        // Inspectable LLM requests are read whole (up to the limit) to be understood;
        // everything else streams through untouched.
        // A body known whole can be sent again if the first endpoint refuses the connection.
        let (mut facts, mut upstream_body, mut replay) = if self.op == Operation::Other {
            let empty = http_body::Body::is_end_stream(&incoming);
            (
                self.facts(&parts.headers, None),
                incoming.map_err(Into::into).boxed_unsync(),
                empty.then(Bytes::new),
            )
        } else {
            let settings = &self.table.settings;
            let limits = (settings.max_body_bytes, settings.body_read_timeout);
            match inspect::read_body(incoming, &parts.headers, limits).await {
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
        if self.table.settings.capture_bodies {
            if let Some(bytes) = replay.as_ref() {
                let kept = &bytes[..bytes.len().min(crate::meter::CAPTURE_BYTES)];
                self.capture = Some(String::from_utf8_lossy(kept).into_owned());
            }
        }
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
            let (steer, model) = self.steer(&mut facts);
            if let (Some(model), Some(bytes)) = (model, replay.as_ref()) {
                if let Some(rewritten) = self.rewrite_model(bytes, &model, &mut facts) {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    upstream_body = body::full(rewritten.clone());
                    replay = Some(rewritten);
                }
            }
            if let Some(pending) = held.unanswered.as_mut() {
                pending.facts.upstream = facts.upstream.clone();
                pending.facts.variant.clone_from(&facts.variant);
            }
            if let Some(rps) = steer.as_ref().and_then(|s| s.throttle_rps) {
                if let Err(shed) = self.route.admission.check_throttle(rps) {
                    return self.shed(shed, facts, held);
                }
            }
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
        // Last before forwarding: a request refused by anything above reserves nothing.
        match self.admit_budget(&facts).await {
            Ok(reservation) => held.reservation = reservation,
            Err((refusal, retry_after)) => {
                metrics::counter!(switchyard_core::metrics::BUDGET_REFUSED_TOTAL, "route" => self.route.name.clone(), "reason" => refusal.code()).increment(1);
                return self.refuse_with(refusal, facts, held, retry_after);
            }
        }
        self.forward_headers(&mut parts, host.as_deref());
        // From here a client that gives up waited on the upstream: that counts against it.
        if let Some(pending) = held.unanswered.as_mut() {
            pending.refused = false;
        }
        self.forward(parts, (upstream_body, replay), facts, held)
            .await
    }

    /// Reserves the request's estimated tokens when a budget is enforced: the prompt
    /// estimate and its completion cap. Only LLM operations spend tokens.
    async fn admit_budget(
        &self,
        facts: &RequestFacts,
    ) -> Result<Option<Reservation>, (Refusal, Option<u64>)> {
        let Some(gate) = self.gateway.budget() else {
            return Ok(None);
        };
        if self.op == Operation::Other || self.dialect == Dialect::Opaque {
            return Ok(None);
        }
        let tokens = gate.estimate(facts.prompt_tokens_estimate, facts.max_tokens);
        match gate.admit(&facts.request_id.0, tokens).await {
            Verdict::Unmetered => Ok(None),
            Verdict::Admitted(reservation) => Ok(Some(reservation)),
            Verdict::Exhausted { retry_after_secs } => {
                Err((Refusal::BudgetExhausted, Some(retry_after_secs)))
            }
            Verdict::Unavailable => Err((Refusal::BudgetUnavailable, Some(1))),
        }
    }

    /// Where the request goes: blue or green by the rollout's live share, then into an
    /// experiment's variant, both by the sticky split of the user key. Returns the route's
    /// live decisions and the model the request must be rewritten to, if any.
    fn steer(
        &mut self,
        facts: &mut RequestFacts,
    ) -> (
        Option<Arc<switchyard_state::steer::Steer>>,
        Option<Arc<str>>,
    ) {
        let route = self.route;
        self.steered = true;
        let steer = self.gateway.steering().get(&route.name);
        let user = facts.user_key.as_deref();
        if let (Some(green), Some(live)) = (&route.green, &steer) {
            let same = live.green.as_deref() == Some(&*green.name);
            if same
                && live.green_share > 0.0
                && placed(user, &route.rollout_split, live.green_share)
            {
                self.upstream = green;
            }
        }
        let mut model = None;
        for variant in &route.variants {
            if placed(user, &variant.name, variant.share) {
                self.variant = Some(variant);
                if let Some(upstream) = &variant.upstream {
                    self.upstream = upstream;
                }
                model.clone_from(&variant.set_model);
                break;
            }
        }
        if !route.variants.is_empty() {
            facts.variant = Some(match self.variant {
                Some(v) => v.name.clone(),
                None => route.control.clone(),
            });
        }
        if let Some(downgrade) = steer.as_ref().and_then(|s| s.downgrade_to.clone()) {
            model = Some(downgrade);
        }
        let split = route.green.is_some() || !route.variants.is_empty();
        if split && user.is_none() {
            metrics::counter!(switchyard_core::metrics::UNSTICKY_REQUESTS_TOTAL, "route" => route.name.clone()).increment(1);
        }
        facts.upstream = self.upstream.name.clone();
        (steer, model)
    }

    /// The body with its `model` replaced; the facts follow (label, price, context fill).
    /// `None` leaves the request as it was: not JSON, or no model field to replace.
    fn rewrite_model(&self, body: &Bytes, model: &str, facts: &mut RequestFacts) -> Option<Bytes> {
        let mut json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).ok()?;
        let slot = json.get_mut("model")?;
        if slot.as_str() == Some(model) {
            return None;
        }
        *slot = serde_json::Value::String(model.to_owned());
        let bytes = serde_json::to_vec(&json).ok()?;
        facts.model = Some(model.to_owned());
        let info = self.table.model(model);
        facts.model_label = info.map_or_else(
            || Arc::from(crate::inspect::OTHER_MODEL),
            |m| m.label.clone(),
        );
        facts.context_fill = info
            .filter(|m| m.context_window > 0)
            .map(|m| facts.prompt_tokens_estimate as f64 / m.context_window as f64);
        Some(Bytes::from(bytes))
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
        headers.insert(X_REQUEST_ID, self.request_id.1.clone());
        headers.insert(X_FALLBACK, KILLED);
        self.routing_headers(headers);
        let status = response.status().as_u16();
        let mut record = self.record(facts, status, None, held);
        record.refused = true;
        record.finish(Outcome::Complete, None, &Scan::None);
        response
    }

    fn shed(&self, shed: Shed, facts: RequestFacts, held: Held) -> Response<Body> {
        metrics::counter!(switchyard_core::metrics::SHED_REQUESTS_TOTAL, "route" => self.route.name.clone(), "reason" => shed.as_str()).increment(1);
        let refusal = match shed {
            Shed::RouteRate | Shed::UserRate | Shed::Throttled => Refusal::RateLimited,
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
            parts.headers.insert(X_FORWARDED_HOST, host);
        }
        crate::trace::propagate(&mut parts.headers, &self.trace);
        if let Some(variant) = self.variant {
            for (name, value) in &variant.headers {
                parts.headers.insert(name.clone(), value.clone());
            }
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
        RequestFacts {
            trace: self.trace,
            ..inspect::facts(
                self.table,
                self.route,
                self.request_id.0.clone(),
                self.client,
                headers,
                (self.dialect, self.op),
                body,
            )
        }
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
            ttft: None,
            facts,
            dialect: self.dialect,
            status: 0,
            status_error: None,
            model,
            route: self.route.signals.clone(),
            signals: self.gateway.signals().clone(),
            _in_flight: None,
            _slot: None,
            capture: None,
            refused: false,
            reservation: None,
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
        record.reservation = held.reservation.take();
        record.capture = self
            .capture
            .as_ref()
            .map(|text| Box::new((text.clone(), Vec::new())));
        record
    }

    fn refuse(&self, refusal: Refusal, facts: RequestFacts, held: Held) -> Response<Body> {
        let retry_after = match refusal {
            Refusal::Killed => Some(self.route.kill.retry_after_secs),
            Refusal::RateLimited | Refusal::QueueFull | Refusal::QueueTimeout => Some(1),
            _ => None,
        };
        self.refuse_with(refusal, facts, held, retry_after)
    }

    fn refuse_with(
        &self,
        refusal: Refusal,
        facts: RequestFacts,
        held: Held,
        retry_after: Option<u64>,
    ) -> Response<Body> {
        let mut response = refusal.respond(self.dialect, &self.request_id.1, retry_after);
        self.routing_headers(response.headers_mut());
        let mut record = self.record(facts, refusal.status().as_u16(), refusal.class(), held);
        record.refused = !refusal.upstream_fault();
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
        // Both framings from the upstream: hyper read the body by Transfer-Encoding, so the
        // Content-Length is a lie that would cut or pad the body downstream; an intermediary
        // removes it before forwarding (RFC 9112 §6.3).
        if parts.headers.contains_key(header::TRANSFER_ENCODING) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(X_REQUEST_ID, self.request_id.1.clone());
        self.routing_headers(&mut parts.headers);
        if self.fallback {
            parts.headers.insert(X_FALLBACK, KILLED);
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
            headers.insert(X_ROUTE, v.clone());
        }
        if let Some(v) = &self.upstream.header {
            headers.insert(X_UPSTREAM, v.clone());
        }
        match self.variant {
            Some(variant) => {
                if let Some(v) = &variant.header {
                    headers.insert(X_VARIANT, v.clone());
                }
            }
            None if self.steered && !self.route.variants.is_empty() => {
                headers.insert(X_VARIANT, CONTROL);
            }
            None => {}
        }
    }
}

/// Whether the user is in the first `share` of the split: sticky by user key; a request
/// without one is placed by chance.
fn placed(user: Option<&str>, split: &str, share: f64) -> bool {
    match user {
        Some(user) => switchyard_core::split::within(user, split, share),
        None => fastrand::f64() < share,
    }
}
