//! The edge rescue: the one place an answer a stage decided on becomes a response. It
//! counts the answer's metric, shapes the body in the client's dialect, sets the headers
//! and records the exchange, once.

use std::sync::Arc;

use http::{HeaderValue, Response};
use switchyard_core::Body;
use switchyard_state::Outcome;

use super::flow::Stop;
use crate::headers::{X_FALLBACK, X_REQUEST_ID};
use crate::meter::Scan;
use crate::rescue::{Answer, Refusal};

/// The `x-switchyard-fallback` value on answers a kill switch made.
pub(super) const KILLED: HeaderValue = HeaderValue::from_static("kill_switch");

/// The `upstream` an exchange is recorded under when the kill switch's made answer served it.
const FALLBACK_ANSWER: &str = "fallback";

pub(super) fn rescue(Stop { answer, flow }: Stop) -> Response<Body> {
    let route = flow.route();
    let (refusal, retry_after) = match answer {
        Answer::Fallback(response) => {
            let mut response = *response;
            let headers = response.headers_mut();
            headers.insert(X_REQUEST_ID, flow.edge.request_id.1.clone());
            headers.insert(X_FALLBACK, KILLED);
            flow.routing_headers(headers);
            let mut record = flow.into_record(response.status().as_u16(), None);
            // No upstream served a made answer.
            record.facts.upstream = Arc::from(FALLBACK_ANSWER);
            record.refused = true;
            record.finish(Outcome::Complete, None, &Scan::None);
            return response;
        }
        Answer::Shed(shed) => {
            metrics::counter!(switchyard_core::metrics::SHED_REQUESTS_TOTAL, "route" => route.name.clone(), "reason" => shed.as_str()).increment(1);
            (Refusal::from(shed), Some(1))
        }
        Answer::Budget(refusal, retry_after) => {
            metrics::counter!(switchyard_core::metrics::BUDGET_REFUSED_TOTAL, "route" => route.name.clone(), "reason" => refusal.code()).increment(1);
            (refusal, Some(retry_after))
        }
        Answer::Refuse(refusal) => {
            let retry_after = match refusal {
                Refusal::Killed => Some(route.kill.retry_after_secs),
                Refusal::RateLimited | Refusal::QueueFull | Refusal::QueueTimeout => Some(1),
                _ => None,
            };
            (refusal, retry_after)
        }
    };
    let mut response = refusal.respond(flow.edge.dialect, &flow.edge.request_id.1, retry_after);
    flow.routing_headers(response.headers_mut());
    let mut record = flow.into_record(refusal.status().as_u16(), refusal.class());
    record.refused = !refusal.upstream_fault();
    record.finish(Outcome::Complete, None, &Scan::None);
    response
}
