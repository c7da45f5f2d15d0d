//! Inspect: what the request says about itself (dialect, model, user, prompt, context fill).

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use switchyard_config::UserKeySource;
use switchyard_core::{Body, RequestFacts, RequestId, TraceContext};
use switchyard_llm::{Dialect, Inspection, Operation};
use tokio::time::Timeout;

use crate::rescue::Refusal;
use crate::table::{Route, Table};

/// The label for models the config does not name: keeps metric cardinality bounded.
pub const OTHER_MODEL: &str = "other";

pin_project! {
    /// An inspectable request body being read whole: the bytes, or why they will not come.
    #[project = ReadProj]
    pub enum ReadBody {
        Refused { refusal: Refusal },
        Reading { #[pin] read: Timeout<Collect<Limited<Body>>> },
    }
}

/// Reads an inspectable request body, up to the limit; 413 beyond, before any upstream is
/// dialled; 408 when it has not arrived whole within `timeout` (a body trickled in forever
/// would hold the connection and its buffer).
pub fn read_body(
    body: Body,
    headers: &HeaderMap,
    (limit, timeout): (usize, std::time::Duration),
) -> ReadBody {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return ReadBody::Refused {
            refusal: Refusal::BodyTooLarge,
        };
    }
    ReadBody::Reading {
        read: tokio::time::timeout(timeout, Limited::new(body, limit).collect()),
    }
}

impl Future for ReadBody {
    type Output = Result<Bytes, Refusal>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let read = match self.project() {
            ReadProj::Refused { refusal } => return Poll::Ready(Err(*refusal)),
            ReadProj::Reading { read } => read,
        };
        let Ok(collected) = ready!(read.poll(cx)) else {
            return Poll::Ready(Err(Refusal::BodyTimeout));
        };
        Poll::Ready(match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error)
                if error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(Refusal::BodyTooLarge)
            }
            // A client that dies mid-upload must not become a forwarded, truncated request.
            Err(_) => Err(Refusal::BadBody),
        })
    }
}

/// The user key: the first configured source that has a value.
fn user_key(
    route: &Route,
    headers: &HeaderMap,
    inspection: Option<&Inspection>,
    client: SocketAddr,
) -> Option<String> {
    let mut body_tried = false;
    for source in &route.user_key {
        match source {
            UserKeySource::Header(name) => {
                if let Some(v) = headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                {
                    return Some(v.to_string());
                }
            }
            UserKeySource::Body(_) if !body_tried => {
                // The inspector tried every body path in order and kept the first hit.
                body_tried = true;
                if let Some(user) = inspection.and_then(|i| i.user.clone()) {
                    return Some(user);
                }
            }
            UserKeySource::Body(_) => {}
            UserKeySource::ClientIp => return Some(client.ip().to_string()),
        }
    }
    None
}

/// What is known of a request before it is inspected: enough to record it if the client
/// leaves early. Built without reading headers or body.
pub fn minimal(
    route: &Route,
    request_id: RequestId,
    client: SocketAddr,
    (dialect, op): (Dialect, Operation),
) -> RequestFacts {
    RequestFacts {
        request_id,
        client,
        route: route.name.clone(),
        upstream: route.upstream.name.clone(),
        variant: None,
        dialect: dialect.as_str(),
        model: None,
        model_label: Arc::from(OTHER_MODEL),
        stream: false,
        user_key: None,
        prompt_fingerprint: None,
        prompt_tokens_estimate: 0,
        max_tokens: None,
        context_fill: None,
        unparsed: false,
        gen_ai_operation: op.gen_ai_name(),
        trace: TraceContext::default(),
    }
}

/// Everything the later layers need, from the request head and (for LLM routes) its body.
pub fn facts(
    table: &Table,
    route: &Route,
    request_id: RequestId,
    client: SocketAddr,
    headers: &HeaderMap,
    (dialect, op): (Dialect, Operation),
    body: Option<&Bytes>,
) -> RequestFacts {
    let inspection = match (op, body) {
        (Operation::Other, _) | (_, None) => None,
        (op, Some(body)) => Some(switchyard_llm::inspect(
            dialect,
            op,
            body,
            &route.body_user_paths,
        )),
    };
    let model = inspection.as_ref().and_then(|i| i.model.clone());
    let info = model.as_deref().and_then(|m| table.model(m));
    let estimate = inspection.as_ref().map_or(0, |i| i.prompt_tokens_estimate);
    let context_fill = info
        .filter(|m| m.context_window > 0 && inspection.as_ref().is_some_and(|i| i.parsed))
        .map(|m| estimate as f64 / m.context_window as f64);
    RequestFacts {
        user_key: user_key(route, headers, inspection.as_ref(), client),
        request_id,
        client,
        route: route.name.clone(),
        upstream: route.upstream.name.clone(),
        variant: None,
        dialect: dialect.as_str(),
        model_label: info.map_or_else(|| Arc::from(OTHER_MODEL), |m| m.label.clone()),
        model,
        stream: inspection.as_ref().is_some_and(|i| i.stream),
        prompt_fingerprint: inspection.as_ref().and_then(|i| i.system_fingerprint),
        prompt_tokens_estimate: estimate,
        max_tokens: inspection.as_ref().and_then(|i| i.max_tokens),
        context_fill,
        unparsed: inspection.as_ref().is_some_and(|i| !i.parsed),
        gen_ai_operation: op.gen_ai_name(),
        trace: TraceContext::default(),
    }
}
