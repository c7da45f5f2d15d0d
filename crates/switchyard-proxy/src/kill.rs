//! What a route answers while its kill switch is engaged: never an error page unless
//! that is what the route configured.

use std::collections::HashMap;
use std::sync::Arc;

use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use switchyard_config::{Fallback, KillSwitchConfig};
use switchyard_core::{body, Body};
use switchyard_llm::{Dialect, Operation};

use crate::upstream::Upstream;

/// A route's kill-switch behaviour, compiled.
#[derive(Debug)]
pub struct KillPlan {
    /// `None`: 503 with Retry-After in the client's dialect.
    pub fallback: Option<CompiledFallback>,
    pub retry_after_secs: u64,
}

/// A fallback, ready to answer.
#[derive(Debug)]
pub enum CompiledFallback {
    /// A completion in the client's dialect carrying this text.
    Text(String),
    /// A fixed response; streaming clients get its text as a completion stream instead.
    Static {
        status: StatusCode,
        content_type: HeaderValue,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: bytes::Bytes,
    },
    /// Another upstream serves the route's traffic.
    Upstream(Arc<Upstream>),
}

pub fn kill_plan(
    config: &KillSwitchConfig,
    upstreams: &HashMap<String, Arc<Upstream>>,
) -> KillPlan {
    let fallback = config.fallback.as_ref().and_then(|f| match f {
        Fallback::Text(text) => Some(CompiledFallback::Text(text.clone())),
        Fallback::Static {
            status,
            content_type,
            headers,
            body,
        } => Some(CompiledFallback::Static {
            status: *status,
            content_type: HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            headers: headers.clone(),
            body: body.clone(),
        }),
        // Validated by the config: the name exists.
        Fallback::Upstream(name) => upstreams.get(name).cloned().map(CompiledFallback::Upstream),
    });
    KillPlan {
        fallback,
        retry_after_secs: config.retry_after.as_secs().max(1),
    }
}

impl KillPlan {
    /// What the route answers while killed, as the status document names it: `text`,
    /// `static`, `upstream:NAME` or `none`.
    pub fn kind(&self) -> String {
        match &self.fallback {
            None => "none".to_owned(),
            Some(CompiledFallback::Text(_)) => "text".to_owned(),
            Some(CompiledFallback::Static { .. }) => "static".to_owned(),
            Some(CompiledFallback::Upstream(upstream)) => format!("upstream:{}", upstream.name),
        }
    }
}

impl CompiledFallback {
    /// The made answer for a text or static fallback (an upstream fallback is forwarded);
    /// `None` where a text makes no sense (embeddings): the route then answers 503.
    pub fn respond(&self, dialect: Dialect, op: Operation, stream: bool) -> Option<Response<Body>> {
        let llm = dialect != Dialect::Opaque && op != Operation::Other;
        let response = match self {
            // An embedding client needs vectors; a sentence would only break it.
            CompiledFallback::Text(_) if op == Operation::Embeddings => return None,
            CompiledFallback::Text(text) if llm => completion(dialect, op, text, stream),
            CompiledFallback::Text(text) => plain(
                StatusCode::OK,
                HeaderValue::from_static("text/plain; charset=utf-8"),
                text.clone().into(),
            ),
            // A client that asked for a stream must get a stream its SDK can parse.
            CompiledFallback::Static { body, .. } if llm && stream => {
                completion(dialect, op, &String::from_utf8_lossy(body), true)
            }
            CompiledFallback::Static {
                status,
                content_type,
                headers,
                body,
            } => {
                let mut response = plain(*status, content_type.clone(), body.clone());
                for (name, value) in headers {
                    response.headers_mut().append(name.clone(), value.clone());
                }
                response
            }
            // Forwarded by the exchange, never answered here.
            CompiledFallback::Upstream(_) => return None,
        };
        Some(response)
    }
}

fn completion(dialect: Dialect, op: Operation, text: &str, stream: bool) -> Response<Body> {
    let answer = switchyard_llm::fallback_completion(dialect, op, text, stream);
    plain(
        StatusCode::OK,
        HeaderValue::from_static(answer.content_type),
        answer.body,
    )
}

fn plain(status: StatusCode, content_type: HeaderValue, bytes: bytes::Bytes) -> Response<Body> {
    let mut response = Response::new(body::full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
