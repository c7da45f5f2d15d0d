//! One request on one route, outermost first: inspect, kill switch, steer, admission,
//! budget, forward, meter; and the rescue that turns a stage's answer into the response.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_core::{body, Body, BoxError, ErrorClass, RequestFacts, RequestId};
use switchyard_llm::{Dialect, Operation};
use switchyard_state::budget::{BudgetGate, Reservation, Verdict};
use switchyard_state::steer::Steering;
use switchyard_state::Outcome;
use switchyard_state::{KillBoard, Signals};

use crate::context::Context;
use crate::forward::{self, Sent};
use crate::headers::{
    append_list, strip_hop_by_hop, X_FALLBACK, X_FORWARDED_HOST, X_REQUEST_ID, X_ROUTE, X_UPSTREAM,
    X_VARIANT,
};
use crate::inspect;
use crate::meter::{InFlight, Metered, Record, Scan};
use crate::peer::Peer;
use crate::rescue::{Answer, Refusal};
use crate::table::{CompiledFallback, Route, Table, Variant};
use crate::upstream::Upstream;

/// The `x-switchyard-fallback` value on answers a kill switch made.
const KILLED: HeaderValue = HeaderValue::from_static("kill_switch");

/// The `upstream` an exchange is recorded under when the kill switch's made answer served it.
const FALLBACK_ANSWER: &str = "fallback";

/// The `x-switchyard-variant` of requests outside every variant on a route with experiments.
const CONTROL: HeaderValue = HeaderValue::from_static(switchyard_state::experiment::CONTROL);

/// The live state the gateway keeps across tables, as one request reads it.
pub(crate) struct Boards<'a> {
    pub signals: &'a Arc<Signals>,
    pub kills: &'a KillBoard,
    /// The controller's live decisions: rollout shares, throttles, downgrades.
    pub steering: &'a Steering,
    /// The token budget requests reserve from, when the assembly set one.
    pub budget: Option<&'a Arc<BudgetGate>>,
}

pub(crate) struct Exchange<'a> {
    pub boards: Boards<'a>,
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

/// What the stages before forwarding leave for it: the body to send and, when the body is
/// known whole, the bytes to send again if the first endpoint refuses the connection.
struct Outbound {
    body: Body,
    replay: Option<Bytes>,
}

impl<'a> Exchange<'a> {
    pub async fn run<B>(mut self, req: Request<B>, host: Option<String>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let mut ctx = Context::open(self.pending(RequestFacts {
            trace: self.trace,
            ..inspect::minimal(
                self.route,
                self.request_id.0.clone(),
                self.client,
                (self.dialect, self.op),
            )
        }));
        let outbound = match self.admit(&mut parts, body, &mut ctx).await {
            Ok(outbound) => outbound,
            Err(answer) => return self.rescue(answer, ctx),
        };
        self.forward_headers(&mut parts, host.as_deref());
        ctx.sent();
        self.forward(parts, outbound, ctx).await
    }

    /// Every stage before forwarding, in order: inspect, kill switch, steer, admission,
    /// budget. The first that answers ends the exchange.
    async fn admit<B>(
        &mut self,
        parts: &mut Parts,
        body: B,
        ctx: &mut Context,
    ) -> Result<Outbound, Answer>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut outbound = self.inspect(&parts.headers, body, ctx).await?;
        self.kill_switch(&parts.headers, ctx)?;
        // A fallback upstream is not the route's upstream: the route's limits protect the
        // one that is killed, not the one standing in for it.
        if !self.fallback {
            let (steer, model) = self.steer(ctx.facts_mut());
            if let (Some(model), Some(bytes)) = (model, outbound.replay.as_ref()) {
                if let Some(rewritten) = self.rewrite_model(bytes, &model, ctx.facts_mut()) {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    outbound.body = body::full(rewritten.clone());
                    outbound.replay = Some(rewritten);
                }
            }
            let admission = &self.route.admission;
            if let Some(rps) = steer.as_ref().and_then(|s| s.throttle_rps) {
                admission.check_throttle(rps)?;
            }
            admission.check_rates(ctx.facts().user_key.as_deref())?;
            let slot = admission.enter(self.boards.signals.queued()).await?;
            ctx.hold_slot(slot);
            // A request that waited in the queue may have been killed meanwhile.
            if ctx.has_slot() {
                self.kill_switch(&parts.headers, ctx)?;
            }
        }
        // Last before forwarding: a request refused by anything above reserves nothing.
        let reservation = self.admit_budget(ctx.facts()).await?;
        ctx.hold_reservation(reservation);
        Ok(outbound)
    }

    /// Inspectable LLM requests are read whole (up to the limit) to be understood;
    /// everything else streams through untouched. A body known whole can be sent again if
    /// the first endpoint refuses the connection.
    async fn inspect<B>(
        &mut self,
        headers: &http::HeaderMap,
        body: B,
        ctx: &mut Context,
    ) -> Result<Outbound, Answer>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let outbound = if self.op == Operation::Other {
            let empty = http_body::Body::is_end_stream(&body);
            *ctx.facts_mut() = self.facts(headers, None);
            Outbound {
                body: body.map_err(Into::into).boxed_unsync(),
                replay: empty.then(Bytes::new),
            }
        } else {
            let settings = &self.table.settings;
            let limits = (settings.max_body_bytes, settings.body_read_timeout);
            match inspect::read_body(body, headers, limits).await {
                Ok(bytes) => {
                    *ctx.facts_mut() = self.facts(headers, Some(&bytes));
                    Outbound {
                        body: body::full(bytes.clone()),
                        replay: Some(bytes),
                    }
                }
                Err(refusal) => {
                    *ctx.facts_mut() = self.facts(headers, None);
                    return Err(refusal.into());
                }
            }
        };
        if self.table.settings.capture_bodies {
            if let Some(bytes) = outbound.replay.as_ref() {
                let kept = &bytes[..bytes.len().min(crate::meter::CAPTURE_BYTES)];
                self.capture = Some(String::from_utf8_lossy(kept).into_owned());
            }
        }
        if ctx.facts().unparsed {
            metrics::counter!(switchyard_core::metrics::UNPARSED_REQUESTS_TOTAL, "route" => self.route.name.clone()).increment(1);
        }
        Ok(outbound)
    }

    /// Reserves the request's estimated tokens when a budget is enforced: the prompt
    /// estimate and its completion cap. Only LLM operations spend tokens.
    async fn admit_budget(&self, facts: &RequestFacts) -> Result<Option<Reservation>, Answer> {
        let Some(gate) = self.boards.budget else {
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
                Err(Answer::Budget(Refusal::BudgetExhausted, retry_after_secs))
            }
            Verdict::Unavailable => Err(Answer::Budget(Refusal::BudgetUnavailable, 1)),
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
        let steer = self.boards.steering.get(&route.name);
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

    /// The kill switch, one atomic load: a switch engaged a microsecond ago applies to this
    /// request. Passes, or switches the request to the fallback upstream, or answers (the
    /// made fallback, or 503 without one).
    fn kill_switch(&mut self, headers: &http::HeaderMap, ctx: &mut Context) -> Result<(), Answer> {
        if self.fallback {
            return Ok(());
        }
        let Some(kill) = self.boards.kills.get(&self.route.name) else {
            return Ok(());
        };
        if !kill.applies(headers, ctx.facts().user_key.as_deref()) {
            return Ok(());
        }
        match &self.route.kill.fallback {
            None => Err(Refusal::Killed.into()),
            Some(CompiledFallback::Upstream(upstream)) => {
                self.upstream = upstream;
                self.fallback = true;
                ctx.facts_mut().upstream = upstream.name.clone();
                Ok(())
            }
            Some(fallback) => match fallback.respond(self.dialect, self.op, ctx.facts().stream) {
                Some(answer) => Err(Answer::Fallback(Box::new(answer))),
                None => Err(Refusal::Killed.into()),
            },
        }
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

    async fn forward(&self, parts: Parts, outbound: Outbound, ctx: Context) -> Response<Body> {
        let out = forward::Outbound {
            parts,
            body: outbound.body,
            replay: outbound.replay,
            user_key: ctx.facts().user_key.as_deref(),
            request_id: &self.request_id.1,
            deadline: tokio::time::Instant::now() + self.table.settings.upstream_timeout,
        };
        let refusal = match forward::send(self.upstream, out).await {
            Sent::Response(response) => return self.respond(response, ctx),
            Sent::NoEndpoint | Sent::Connect => Refusal::UpstreamConnect,
            Sent::BadTarget => Refusal::BadTarget,
            Sent::Timeout => Refusal::UpstreamTimeout,
            Sent::Failed(error) => {
                tracing::debug!(%error, route = %self.route.name, "upstream failed before its response");
                Refusal::UpstreamFailed
            }
        };
        self.rescue(refusal.into(), ctx)
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

    /// The exchange's first record, holding the route's in-flight count: what a
    /// cancellation records.
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
            signals: self.boards.signals.clone(),
            _in_flight: Some(InFlight::enter(&self.route.in_flight)),
            _slot: None,
            capture: None,
            refused: false,
            reservation: None,
        }
    }

    /// The record that answers this exchange; nothing is recorded as cancelled any more.
    fn record(&self, ctx: Context, status: u16, status_error: Option<ErrorClass>) -> Box<Record> {
        let mut record = ctx.into_record();
        record.model = self
            .table
            .model(record.facts.model.as_deref().unwrap_or(""))
            .cloned();
        record.status = status;
        record.status_error = status_error;
        record.capture = self
            .capture
            .as_ref()
            .map(|text| Box::new((text.clone(), Vec::new())));
        record
    }

    /// The edge rescue: the one place an answer a stage decided on becomes a response. It
    /// counts the answer's metric, shapes the body in the client's dialect, sets the
    /// headers and records the exchange.
    fn rescue(&self, answer: Answer, ctx: Context) -> Response<Body> {
        let route = &self.route.name;
        let (refusal, retry_after) = match answer {
            Answer::Fallback(response) => {
                let mut response = *response;
                let headers = response.headers_mut();
                headers.insert(X_REQUEST_ID, self.request_id.1.clone());
                headers.insert(X_FALLBACK, KILLED);
                self.routing_headers(headers);
                let mut record = self.record(ctx, response.status().as_u16(), None);
                // No upstream served a made answer.
                record.facts.upstream = Arc::from(FALLBACK_ANSWER);
                record.refused = true;
                record.finish(Outcome::Complete, None, &Scan::None);
                return response;
            }
            Answer::Shed(shed) => {
                metrics::counter!(switchyard_core::metrics::SHED_REQUESTS_TOTAL, "route" => route.clone(), "reason" => shed.as_str()).increment(1);
                (Refusal::from(shed), Some(1))
            }
            Answer::Budget(refusal, retry_after) => {
                metrics::counter!(switchyard_core::metrics::BUDGET_REFUSED_TOTAL, "route" => route.clone(), "reason" => refusal.code()).increment(1);
                (refusal, Some(retry_after))
            }
            Answer::Refuse(refusal) => {
                let retry_after = match refusal {
                    Refusal::Killed => Some(self.route.kill.retry_after_secs),
                    Refusal::RateLimited | Refusal::QueueFull | Refusal::QueueTimeout => Some(1),
                    _ => None,
                };
                (refusal, retry_after)
            }
        };
        let mut response = refusal.respond(self.dialect, &self.request_id.1, retry_after);
        self.routing_headers(response.headers_mut());
        let mut record = self.record(ctx, refusal.status().as_u16(), refusal.class());
        record.refused = !refusal.upstream_fault();
        record.finish(Outcome::Complete, None, &Scan::None);
        response
    }

    fn respond(&self, response: Response<Incoming>, ctx: Context) -> Response<Body> {
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
        let record = self.record(ctx, status, ErrorClass::of_status(status));
        if http_body::Body::is_end_stream(&incoming) {
            record.finish(Outcome::Complete, None, &scan);
            return Response::from_parts(parts, body::empty());
        }
        let metered = Metered::new(
            incoming,
            scan,
            *record,
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
