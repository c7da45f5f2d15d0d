//! Steer: where the request goes. Blue or green by the rollout's live share, then into an
//! experiment's variant, both by the sticky split of the user key; a variant's or a
//! downgrade's model is written into the body. A fallback upstream is not steered.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue};
use switchyard_core::{body, RequestFacts};
use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, FlowState, Stopped};
use super::future::{Now, Then};
use crate::table::Table;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SteerLayer;

impl<S> Layer<S> for SteerLayer {
    type Service = Steer<S>;

    fn layer(&self, inner: S) -> Steer<S> {
        Steer { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Steer<S> {
    inner: S,
}

impl<S> Service<Flow> for Steer<S>
where
    S: Service<Flow, Error = Stopped> + Clone,
{
    type Response = S::Response;
    type Error = Stopped;
    type Future = Then<S, Now, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut flow: Flow) -> Self::Future {
        let mut inner = super::take(&mut self.inner);
        // A fallback upstream is not the route's upstream: the route's split is not its.
        if !flow.fallback {
            if let Some(model) = steer(&mut flow) {
                rewrite(&mut flow, &model);
            }
        }
        Then::inner(inner.call(flow), inner)
    }
}

/// Places the request; returns the model it must be rewritten to, if any.
fn steer(flow: &mut Flow) -> Option<Arc<str>> {
    // The state itself, so its fields are borrowed apart.
    let flow: &mut FlowState = flow;
    flow.steered = true;
    let route = &flow.table.routes[flow.route];
    let steer = flow.boards.steering.get(&route.name);
    let user = flow.ctx.facts().user_key.as_deref();
    if let (Some(green), Some(live)) = (&route.green, &steer) {
        let same = live.green.as_deref() == Some(&*green.name);
        if same && live.green_share > 0.0 && placed(user, &route.rollout_split, live.green_share) {
            flow.upstream = green.clone();
        }
    }
    let mut model = None;
    for (index, variant) in route.variants.iter().enumerate() {
        if placed(user, &variant.name, variant.share) {
            flow.variant = Some(index);
            if let Some(upstream) = &variant.upstream {
                flow.upstream = upstream.clone();
            }
            model.clone_from(&variant.set_model);
            break;
        }
    }
    if let Some(downgrade) = steer.as_ref().and_then(|s| s.downgrade_to.clone()) {
        model = Some(downgrade);
    }
    let split = route.green.is_some() || !route.variants.is_empty();
    if split && user.is_none() {
        metrics::counter!(switchyard_core::metrics::UNSTICKY_REQUESTS_TOTAL, "route" => route.name.clone()).increment(1);
    }
    let variant = match flow.variant {
        _ if route.variants.is_empty() => None,
        Some(index) => route.variants.get(index).map(|v| v.name.clone()),
        None => Some(route.control.clone()),
    };
    let facts = flow.ctx.facts_mut();
    if variant.is_some() {
        facts.variant = variant;
    }
    facts.upstream = flow.upstream.name.clone();
    flow.steer = steer;
    model
}

/// Writes `model` into a body known whole; the headers and the facts follow.
fn rewrite(flow: &mut Flow, model: &str) {
    // The state itself, so its fields are borrowed apart.
    let flow: &mut FlowState = flow;
    let Some(bytes) = flow.replay.as_ref() else {
        return;
    };
    let Some(rewritten) = rewrite_model(&flow.table, bytes, model, flow.ctx.facts_mut()) else {
        return;
    };
    let headers = &mut flow.parts.headers;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    headers.remove(header::TRANSFER_ENCODING);
    flow.body = body::full(rewritten.clone());
    flow.replay = Some(rewritten);
}

/// The body with its `model` replaced; the facts follow (label, price, context fill).
/// `None` leaves the request as it was: not JSON, or no model field to replace.
fn rewrite_model(
    table: &Table,
    body: &Bytes,
    model: &str,
    facts: &mut RequestFacts,
) -> Option<Bytes> {
    let mut json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    let slot = json.get_mut("model")?;
    if slot.as_str() == Some(model) {
        return None;
    }
    *slot = serde_json::Value::String(model.to_owned());
    let bytes = serde_json::to_vec(&json).ok()?;
    facts.model = Some(model.to_owned());
    let info = table.model(model);
    facts.model_label = info.map_or_else(
        || Arc::from(crate::inspect::OTHER_MODEL),
        |m| m.label.clone(),
    );
    facts.context_fill = info
        .filter(|m| m.context_window > 0)
        .map(|m| facts.prompt_tokens_estimate as f64 / m.context_window as f64);
    Some(Bytes::from(bytes))
}

/// Whether the user is in the first `share` of the split: sticky by user key; a request
/// without one is placed by chance.
fn placed(user: Option<&str>, split: &str, share: f64) -> bool {
    match user {
        Some(user) => switchyard_core::split::within(user, split, share),
        None => fastrand::f64() < share,
    }
}

#[cfg(test)]
mod tests;
