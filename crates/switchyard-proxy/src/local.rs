//! The few paths the gateway answers itself on the traffic listener: /health, /ready and
//! the /switchyard/ prefix. Nothing else is shadowed.

use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use switchyard_core::{body, Body};
use switchyard_state::experiment::{Feedback, FeedbackError};
use switchyard_state::fleet::FleetStanding;
use switchyard_state::Signals;

use crate::lifecycle::Phase;
use crate::table::Table;

/// Where applications report the outcome of a request.
pub const FEEDBACK_PATH: &str = "/switchyard/v1/feedback";

/// A feedback report is a few fields; anything larger is refused.
const MAX_FEEDBACK_BYTES: usize = 16 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    request_id: String,
    success: bool,
    score: Option<f64>,
}

/// The reserved prefix for the gateway's own endpoints on the traffic listener.
pub const RESERVED_PREFIX: &str = "/switchyard/";

/// How long /ready waits to dial an upstream.
const READY_DIAL: Duration = Duration::from_millis(500);

/// Whether the gateway answers this path itself.
pub fn is_local(path: &str) -> bool {
    path == "/health" || path == "/ready" || path.starts_with(RESERVED_PREFIX)
}

/// Answers a local path.
pub async fn answer<B>(
    req: Request<B>,
    table: &Table,
    phase: Phase,
    signals: &Signals,
    fleet: Option<&std::sync::Arc<dyn FleetStanding>>,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<switchyard_core::BoxError>,
{
    if req.uri().path() == FEEDBACK_PATH {
        return feedback(req, signals).await;
    }
    let (method, path) = (req.method(), req.uri().path());
    if method != Method::GET && method != Method::HEAD && !path.starts_with(RESERVED_PREFIX) {
        return json(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":{"message":"use GET","type":"invalid_request_error","code":"method_not_allowed"}}"#.into());
    }
    match path {
        "/health" => json(StatusCode::OK, format!(r#"{{"status":"ok","config_version":"{}"}}"#, table.version)),
        "/ready" => ready(table, phase, fleet).await,
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"unknown switchyard endpoint","type":"invalid_request_error","code":"not_found"}}"#.into(),
        ),
    }
}

/// 503 while starting or draining, whatever the upstreams say; else 200 when one is reachable.
/// In fleet mode the listener opened only once the fleet's state was loaded (or, without
/// Redis, the persisted one): the detail says which.
pub(crate) async fn ready(
    table: &Table,
    phase: Phase,
    fleet: Option<&std::sync::Arc<dyn FleetStanding>>,
) -> Response<Body> {
    let text = match phase {
        Phase::Starting => "starting",
        Phase::Draining => "draining",
        Phase::Serving if any_upstream_reachable(table).await => "ready",
        Phase::Serving => "no upstream reachable",
    };
    let status = if text == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let fleet = fleet.map_or(String::new(), |f| format!(r#","fleet":"{}""#, f.mode()));
    json(
        status,
        format!(
            r#"{{"status":"{text}","config_version":"{}"{fleet}}}"#,
            table.version
        ),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let text = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": code}});
    json(status, text.to_string())
}

/// `POST /switchyard/v1/feedback` `{request_id, success, score?}`: the application's
/// verdict on a request, joined to its experiment variant by request id.
async fn feedback<B>(req: Request<B>, signals: &Signals) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<switchyard_core::BoxError>,
{
    if req.method() != Method::POST {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let report = match read_report(req).await {
        Ok(report) => report,
        Err(refusal) => return refusal,
    };
    let outcome = signals.feedback(
        &report.request_id,
        Feedback {
            success: report.success,
            score: report.score,
        },
    );
    match outcome {
        Ok(counted) => {
            let experiments: Vec<_> = counted
                .into_iter()
                .map(|(experiment, variant)| serde_json::json!({"experiment": experiment, "variant": variant}))
                .collect();
            let text = serde_json::json!({"status": "recorded", "request_id": report.request_id, "experiments": experiments});
            json(StatusCode::ACCEPTED, text.to_string())
        }
        Err(FeedbackError::Unknown) => error(
            StatusCode::NOT_FOUND,
            "unknown_request",
            "no request with this id takes feedback (its route has no experiment and no feedback rule, or it is too old to remember)",
        ),
        Err(FeedbackError::Duplicate) => error(
            StatusCode::CONFLICT,
            "duplicate_feedback",
            "this request was reported on already",
        ),
    }
}

/// The feedback body, read within its size limit and parsed; or the answer refusing it.
async fn read_report<B>(req: Request<B>) -> Result<FeedbackBody, Response<Body>>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<switchyard_core::BoxError>,
{
    let bytes = match Limited::new(req.into_body(), MAX_FEEDBACK_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let message = format!("a feedback body is at most {MAX_FEEDBACK_BYTES} bytes");
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &message,
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the request body could not be read",
            ))
        }
    };
    let report: FeedbackBody = match serde_json::from_slice(&bytes) {
        Ok(report) => report,
        Err(e) => {
            let message = format!(
                "expected {{\"request_id\": string, \"success\": bool, \"score\"?: number}}: {e}"
            );
            return Err(error(StatusCode::BAD_REQUEST, "invalid_feedback", &message));
        }
    };
    if report.score.is_some_and(|s| !s.is_finite()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_feedback",
            "score must be a finite number",
        ));
    }
    Ok(report)
}

fn json(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Ready means: a config is loaded and at least one upstream accepts a TCP connection.
async fn any_upstream_reachable(table: &Table) -> bool {
    let mut dials = tokio::task::JoinSet::new();
    for upstream in &table.upstreams {
        for endpoint in &upstream.endpoints {
            let port = endpoint.authority.port_u16().unwrap_or(
                if endpoint.scheme == http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                },
            );
            let host = endpoint
                .authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            dials.spawn(async move {
                tokio::time::timeout(
                    READY_DIAL,
                    tokio::net::TcpStream::connect((host.as_str(), port)),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            });
        }
    }
    while let Some(result) = dials.join_next().await {
        if result.unwrap_or(false) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ready_with(phase: Phase) -> (StatusCode, String) {
        // A listening upstream: only the phase can make the answer 503.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let text = format!(
            "[upstreams.up]\nurl = \"http://{}\"\n[[routes]]\nname = \"r\"\nupstream = \"up\"\n",
            upstream.local_addr().unwrap()
        );
        let config =
            switchyard_config::Config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        let table = crate::Boards::new(Signals::new())
            .prepare(&config, &Default::default())
            .unwrap();
        let response = ready(&table, phase, None).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_while_serving() {
        let (status, body) = ready_with(Phase::Serving).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(r#""status":"ready""#), "{body}");
        for (phase, said) in [(Phase::Starting, "starting"), (Phase::Draining, "draining")] {
            let (status, body) = ready_with(phase).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{phase:?}: {body}");
            assert!(body.contains(&format!(r#""status":"{said}""#)), "{body}");
        }
    }
}
