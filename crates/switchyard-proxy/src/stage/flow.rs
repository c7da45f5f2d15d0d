//! The request value every stage takes and passes on: the request, the route it is on, the
//! exchange's context and the choices the stages made so far. Typed fields, no lookups.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::HeaderValue;
use switchyard_core::{Body, ErrorClass, RequestFacts};
use switchyard_state::steer::Steer;

use crate::boards::Boards;
use crate::context::Context;
use crate::headers::{X_ROUTE, X_UPSTREAM, X_VARIANT};
use crate::inspect;
use crate::meter::{InFlight, Record};
use crate::rescue::Answer;
use crate::stack::{Edge, Entry};
use crate::table::{Route, Settings, Table, Variant};
use crate::upstream::Upstream;

/// The `x-switchyard-variant` of requests outside every variant on a route with experiments.
const CONTROL: HeaderValue = HeaderValue::from_static(switchyard_state::experiment::CONTROL);

/// One request on its way through its route's stack: boxed once, so that handing it from
/// stage to stage and keeping it in their futures moves a pointer.
pub(crate) struct Flow(Box<FlowState>);

/// What a [`Flow`] holds.
pub(crate) struct FlowState {
    pub table: Arc<Table>,
    /// The route's index in `table.routes`.
    pub(super) route: usize,
    pub boards: Arc<Boards>,
    pub parts: Parts,
    /// The request body: as the client sends it until inspect, then what goes upstream.
    pub body: Body,
    /// The whole body when it is known (inspected or empty): sent again if the first
    /// endpoint refuses the connection.
    pub replay: Option<Bytes>,
    /// The facts and the record made if the client leaves before an answer.
    pub ctx: Context,
    /// Where the request goes: the route's upstream, steered, or the kill switch's fallback.
    pub upstream: Arc<Upstream>,
    /// The answer is a kill switch's fallback upstream's.
    pub fallback: bool,
    /// The experiment variant the request is in, by index in the route's variants.
    pub(super) variant: Option<usize>,
    /// The route's live decisions as steer read them (the throttle admission applies).
    pub steer: Option<Arc<Steer>>,
    /// The rollout and experiments placed this request (it got past the kill switch).
    pub steered: bool,
    /// The request's text, kept only when bodies are captured for incidents.
    pub capture: Option<String>,
    pub edge: Edge,
}

/// An answer a stage decided on, with the request it ends: the edge rescue shapes it.
pub(crate) struct Stop {
    pub answer: Answer,
    pub flow: Flow,
}

/// What every stage fails with: boxed, so the usual path moves a small `Result`.
pub(crate) type Stopped = Box<Stop>;

impl Flow {
    /// The request as it enters its route's stack, holding the route's in-flight count.
    pub fn open(entry: Entry<Table>) -> Flow {
        let Entry {
            table,
            route,
            boards,
            request,
            edge,
        } = entry;
        let (parts, body) = request.into_parts();
        let on = &table.routes[route];
        let facts = RequestFacts {
            trace: edge.trace,
            ..inspect::minimal(
                on,
                edge.request_id.0.clone(),
                edge.client,
                (edge.dialect, edge.op),
            )
        };
        let record = Record {
            started: edge.started,
            ttfb: None,
            ttft: None,
            model: table.model(facts.model.as_deref().unwrap_or("")).cloned(),
            facts,
            dialect: edge.dialect,
            status: 0,
            status_error: None,
            route: on.signals.clone(),
            signals: boards.signals.clone(),
            _in_flight: Some(InFlight::enter(&on.in_flight)),
            _slot: None,
            capture: None,
            refused: false,
            reservation: None,
        };
        let upstream = on.upstream.clone();
        Flow(Box::new(FlowState {
            route,
            boards,
            parts,
            body,
            replay: None,
            ctx: Context::open(record),
            upstream,
            fallback: false,
            variant: None,
            steer: None,
            steered: false,
            capture: None,
            edge,
            table,
        }))
    }

    /// Ends the request with `answer`, for the edge rescue to shape.
    pub fn stop(self, answer: impl Into<Answer>) -> Stopped {
        Box::new(Stop {
            answer: answer.into(),
            flow: self,
        })
    }

    /// The record that answers this request; nothing is recorded as cancelled any more.
    pub fn into_record(self, status: u16, status_error: Option<ErrorClass>) -> Box<Record> {
        let FlowState {
            table,
            ctx,
            capture,
            ..
        } = *self.0;
        let mut record = ctx.into_record();
        record.model = table
            .model(record.facts.model.as_deref().unwrap_or(""))
            .cloned();
        record.status = status;
        record.status_error = status_error;
        record.capture = capture.map(|text| Box::new((text, Vec::new())));
        record
    }
}

impl std::ops::Deref for Flow {
    type Target = FlowState;

    fn deref(&self) -> &FlowState {
        &self.0
    }
}

impl std::ops::DerefMut for Flow {
    fn deref_mut(&mut self) -> &mut FlowState {
        &mut self.0
    }
}

impl FlowState {
    pub fn route(&self) -> &Route {
        &self.table.routes[self.route]
    }

    pub fn settings(&self) -> &Settings {
        &self.table.settings
    }

    pub fn variant(&self) -> Option<&Variant> {
        self.route().variants.get(self.variant?)
    }

    /// `x-switchyard-route`, `-upstream` and `-variant` on the answer, when configured.
    pub fn routing_headers(&self, headers: &mut http::HeaderMap) {
        if !self.settings().routing_headers {
            return;
        }
        let route = self.route();
        if let Some(v) = &route.route_header {
            headers.insert(X_ROUTE, v.clone());
        }
        if let Some(v) = &self.upstream.header {
            headers.insert(X_UPSTREAM, v.clone());
        }
        match self.variant() {
            Some(variant) => {
                if let Some(v) = &variant.header {
                    headers.insert(X_VARIANT, v.clone());
                }
            }
            None if self.steered && !route.variants.is_empty() => {
                headers.insert(X_VARIANT, CONTROL);
            }
            None => {}
        }
    }

    /// The request's facts from its head and, once read, its body.
    pub fn facts(&self, body: Option<&Bytes>) -> RequestFacts {
        RequestFacts {
            trace: self.edge.trace,
            ..inspect::facts(
                &self.table,
                self.route(),
                self.edge.request_id.0.clone(),
                self.edge.client,
                &self.parts.headers,
                (self.edge.dialect, self.edge.op),
                body,
            )
        }
    }
}
