//! The accept loop, connection handling and request routing.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::body::{read_body, SimBody};
use crate::gen::{bad_request, injected, Dialect, LlmRequest};
use crate::profile::Profile;
use crate::{anthropic, control, echo, openai, responses, InFlight, Sim};

type Builder = auto::Builder<TokioExecutor>;

pub(crate) async fn serve(
    sim: Sim,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Owning the connection tasks here means aborting `serve` ends them too.
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(sim.clone(), builder.clone(), stream, graceful.watcher()));
                }
                Err(e) => {
                    // Usually fd exhaustion: back off instead of spinning.
                    tracing::debug!(error = %e, "sim accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = &mut stop => break,
        }
    }
    // New connections are refused from here; idle ones close, busy ones after their answer.
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            cut = conns.len(),
            "sim drain timeout: cutting the connections still busy"
        );
    }
    conns.shutdown().await;
    Ok(())
}

async fn connection(sim: Sim, builder: Arc<Builder>, stream: TcpStream, watcher: Watcher) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let sim = sim.clone();
        async move { Ok::<_, Infallible>(handle(sim, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "sim connection ended with an error");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Responses,
    Embeddings,
    Models,
    Messages,
}

impl Route {
    /// `None` means the echo answer.
    fn of(method: &Method, path: &str) -> Option<Route> {
        let route = match (method, path) {
            (&Method::POST, "/v1/chat/completions") => Route::Chat,
            (&Method::POST, "/v1/completions") => Route::Completions,
            (&Method::POST, "/v1/responses") => Route::Responses,
            (&Method::POST, "/v1/embeddings") => Route::Embeddings,
            (&Method::GET, "/v1/models") => Route::Models,
            (&Method::POST, "/v1/messages") => Route::Messages,
            _ => return None,
        };
        Some(route)
    }

    fn dialect(self) -> Dialect {
        if self == Route::Messages {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

async fn handle(sim: Sim, req: Request<Incoming>) -> Response<SimBody> {
    if req.uri().path().starts_with("/sim/") {
        return control::handle(&sim, req).await;
    }
    let route = Route::of(req.method(), req.uri().path());
    let (mut parts, body) = req.into_parts();
    // Only the echo needs the headers afterwards; elsewhere move them, no copy.
    let headers = if route.is_none() {
        parts.headers.clone()
    } else {
        std::mem::take(&mut parts.headers)
    };
    let guard = sim.record(headers);
    let profile = sim.profile_arc();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(msg) => return bad_request(route.map_or(Dialect::OpenAi, Route::dialect), &msg),
    };
    if profile.hang_before_headers {
        std::future::pending::<()>().await;
    }
    delay_ttfb(&profile).await;
    match route {
        Some(route) => {
            let fail = sim.draws_error(&profile);
            llm(route, &bytes, &profile, guard, fail)
        }
        None => echo::respond(&parts, &bytes),
    }
}

async fn delay_ttfb(profile: &Profile) {
    let jitter = (fastrand::f64() * 2.0 - 1.0) * profile.ttfb_jitter_ms;
    let ms = profile.ttfb_ms + jitter;
    if ms.is_finite() && ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
}

fn llm(
    route: Route,
    bytes: &[u8],
    profile: &Profile,
    guard: InFlight,
    fail: bool,
) -> Response<SimBody> {
    let dialect = route.dialect();
    if fail {
        return injected(dialect, profile.error_kind, profile.error_type.as_deref());
    }
    if route == Route::Models {
        return openai::models();
    }
    let req: LlmRequest<'_> = match serde_json::from_slice(bytes) {
        Ok(req) => req,
        Err(e) => return bad_request(dialect, &format!("invalid JSON body: {e}")),
    };
    match route {
        Route::Chat => openai::chat(&req, profile, guard),
        Route::Completions => openai::completions(&req, profile, guard),
        Route::Responses => responses::responses(&req, profile, guard),
        Route::Embeddings => openai::embeddings(&req, profile),
        Route::Messages => anthropic::messages(&req, profile, guard),
        Route::Models => openai::models(),
    }
}
