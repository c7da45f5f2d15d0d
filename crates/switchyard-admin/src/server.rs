//! The admin HTTP server.

use std::future::Future;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_control::Alerts;
use switchyard_core::{body, Body};
use switchyard_proxy::Gateway;
use tokio::net::TcpListener;

use crate::{exposition, status};

/// What the admin API reads.
#[derive(Clone)]
pub struct AdminState {
    pub gateway: Arc<Gateway>,
    pub alerts: Arc<Alerts>,
    pub metrics: PrometheusHandle,
}

fn respond(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    respond(status, "application/json", text)
}

async fn route(
    state: AdminState,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            exposition::render(&state.metrics),
        ),
        (&Method::GET, "/admin/status") => {
            let table = state.gateway.table();
            let text = status::render(
                &table,
                &state.alerts.firing(),
                state.gateway.signals().tokens_today(),
            );
            respond(StatusCode::OK, "application/json", text)
        }
        (_, "/metrics" | "/admin/status") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    };
    Ok(response)
}

/// Serves the admin API until `shutdown` resolves; also keeps the recorder's histograms drained.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    let upkeep = state.metrics.clone();
    let upkeep_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(state.clone(), req));
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
    upkeep_task.abort();
}
