//! The edge rescue: every answer the gateway makes itself, shaped in the client's dialect.

use http::{header, HeaderValue, Response, StatusCode};
use switchyard_core::{body, Body, ErrorClass};
use switchyard_llm::Dialect;

/// The `Allow` header of a 405: every method but CONNECT is forwarded.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Why the gateway answered instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route matches the request.
    NoRoute,
    /// Two Host headers, a Host list, or an HTTP/2 `:authority` another Host contradicts
    /// (RFC 9112 §3.2, RFC 9113 §8.3.1).
    BadHost,
    /// CONNECT: the gateway opens no tunnels.
    MethodNotAllowed,
    /// The request body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// The request body could not be read (the client went away or sent a broken body).
    BadBody,
    /// The inspected request body did not arrive whole within `body_read_timeout`.
    BodyTimeout,
    /// The upstream could not be dialled.
    UpstreamConnect,
    /// The upstream sent no response headers within `upstream_timeout`.
    UpstreamTimeout,
    /// The upstream broke the exchange before its response headers.
    UpstreamFailed,
    /// The request's path cannot be joined to the upstream's URL.
    BadTarget,
    /// The route's kill switch is engaged and it has no fallback.
    Killed,
    /// A rate limit (route or user) is used up.
    RateLimited,
    /// Every concurrency slot is busy and the queue is full.
    QueueFull,
    /// The request waited in the queue for `queue_timeout` without a slot.
    QueueTimeout,
    /// The enforced daily token budget has no room for the request's estimate.
    BudgetExhausted,
    /// Fleet mode: the budget cannot be checked (Redis out of reach, `fail_closed`).
    BudgetUnavailable,
}

impl Refusal {
    /// Whether the upstream caused it (it could not be reached, was too slow, or broke):
    /// only these count against the upstream's own health.
    pub fn upstream_fault(self) -> bool {
        matches!(
            self,
            Refusal::UpstreamConnect | Refusal::UpstreamTimeout | Refusal::UpstreamFailed
        )
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::BadHost => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadBody | Refusal::BadTarget => StatusCode::BAD_REQUEST,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::UpstreamConnect | Refusal::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Killed
            | Refusal::QueueFull
            | Refusal::QueueTimeout
            | Refusal::BudgetUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::RateLimited | Refusal::BudgetExhausted => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A short machine-readable code, also the log's `reason`.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoRoute => "no_route",
            Refusal::BadHost => "bad_host",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::BodyTooLarge => "request_too_large",
            Refusal::BadBody => "bad_request_body",
            Refusal::BodyTimeout => "request_body_timeout",
            Refusal::UpstreamConnect => "upstream_connect_failed",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::UpstreamFailed => "upstream_failed",
            Refusal::BadTarget => "bad_target",
            Refusal::Killed => "route_killed",
            Refusal::RateLimited => "rate_limited",
            Refusal::QueueFull => "overloaded",
            Refusal::QueueTimeout => "queue_timeout",
            Refusal::BudgetExhausted => "budget_exhausted",
            Refusal::BudgetUnavailable => "budget_unavailable",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::NoRoute => "no switchyard route matches this request",
            Refusal::BadHost => "the request names more than one host",
            Refusal::MethodNotAllowed => "the gateway does not open tunnels",
            Refusal::BodyTooLarge => "the request body is larger than the gateway's max_body_bytes",
            Refusal::BadBody => "the request body could not be read",
            Refusal::BodyTimeout => {
                "the request body did not arrive within the gateway's body_read_timeout"
            }
            Refusal::UpstreamConnect => "the gateway could not connect to the upstream",
            Refusal::UpstreamTimeout => {
                "the upstream did not answer within the gateway's upstream_timeout"
            }
            Refusal::UpstreamFailed => "the upstream closed the connection before answering",
            Refusal::BadTarget => "the request path cannot be forwarded to the upstream",
            Refusal::Killed => "this route is switched off by its kill switch; retry later",
            Refusal::RateLimited => {
                "the gateway's rate limit for this route or user is used up; retry later"
            }
            Refusal::QueueFull => {
                "the upstream is at its concurrency limit and the queue is full; retry later"
            }
            Refusal::QueueTimeout => "no upstream slot became free in time; retry later",
            Refusal::BudgetExhausted => {
                "the gateway's daily token budget is used up; retry when the budget day turns"
            }
            Refusal::BudgetUnavailable => {
                "the gateway cannot check its token budget right now; retry later"
            }
        }
    }

    /// The upstream error class this refusal counts as, if it is the upstream's fault.
    pub fn class(self) -> Option<ErrorClass> {
        match self {
            Refusal::UpstreamConnect => Some(ErrorClass::Connect),
            Refusal::UpstreamTimeout => Some(ErrorClass::Timeout),
            Refusal::UpstreamFailed => Some(ErrorClass::Reset),
            _ => None,
        }
    }

    /// The answer, in the client's dialect, tagged with the request id.
    pub fn respond(
        self,
        dialect: Dialect,
        request_id: &HeaderValue,
        retry_after_secs: Option<u64>,
    ) -> Response<Body> {
        let status = self.status();
        let bytes =
            switchyard_llm::error_body(dialect, status.as_u16(), self.code(), self.message());
        let mut response = Response::new(body::full(bytes));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(crate::headers::X_REQUEST_ID, request_id.clone());
        headers.insert(
            crate::headers::X_ERROR,
            HeaderValue::from_static(self.code()),
        );
        if self == Refusal::MethodNotAllowed {
            headers.insert(
                http::header::ALLOW,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
        }
        if let Some(secs) = retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An answer a stage decided on instead of the upstream's. The rescue at the route's edge
/// turns it into the response, records the exchange and counts its metric, once.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The gateway refuses: the status and body follow from the refusal.
    Refuse(Refusal),
    /// Admission shed the request (rate limit, throttle, queue).
    Shed(crate::admission::Shed),
    /// The token budget refused the request; clients retry after the given seconds.
    Budget(Refusal, u64),
    /// The kill switch's made answer (text or static fallback).
    Fallback(Box<Response<Body>>),
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Self {
        Answer::Refuse(refusal)
    }
}

impl From<crate::admission::Shed> for Answer {
    fn from(shed: crate::admission::Shed) -> Self {
        Answer::Shed(shed)
    }
}

impl From<crate::admission::Shed> for Refusal {
    fn from(shed: crate::admission::Shed) -> Self {
        use crate::admission::Shed;
        match shed {
            Shed::RouteRate | Shed::UserRate | Shed::Throttled => Refusal::RateLimited,
            Shed::QueueFull => Refusal::QueueFull,
            Shed::QueueTimeout => Refusal::QueueTimeout,
        }
    }
}
