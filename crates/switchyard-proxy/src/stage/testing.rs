//! Helpers for the stages' tests: a route compiled from a few lines of config, a request
//! as a `Flow` with a `Full` body, and an inner service that keeps what reached it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use switchyard_config::Config;
use switchyard_core::{body, Body, BoxError};
use switchyard_state::steer::Steering;
use switchyard_state::{KillBoard, KillSwitch, Signals};
use tower_service::Service;

use super::flow::{Flow, Stop, Stopped};
use crate::boards::Boards;
use crate::peer::Peer;
use crate::rescue::Answer;
use crate::stack::{Edge, Entry};
use crate::table::Table;

/// A table with one route `r` on `/v1/` to upstream `up` (nothing listens there), with
/// `extra` appended to the config.
pub fn table(extra: &str) -> Arc<Table> {
    table_to("http://127.0.0.1:9", extra)
}

/// A table with one route `r` on `/v1/` to upstream `up` at `url`.
pub fn table_to(url: &str, extra: &str) -> Arc<Table> {
    let toml = format!(
        "[server]\nmax_body_bytes = 1024\nbody_read_timeout = \"5s\"\nupstream_timeout = \"3s\"\n\n\
         [upstreams.up]\nurl = \"{url}\"\n\n\
         [upstreams.spare]\nurl = \"http://127.0.0.1:10\"\n\n\
         [[routes]]\nname = \"r\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"/v1/\" }}\n\
         user_key = [\"header:x-user\"]\n{extra}"
    );
    let config = Config::parse(&toml, "test.toml", Path::new(".")).unwrap();
    let table = Boards::new(Signals::new()).prepare(&config, &HashMap::new());
    Arc::new(table.unwrap())
}

pub fn boards() -> Arc<Boards> {
    Arc::new(Boards::with(
        Signals::new(),
        KillBoard::in_memory(),
        Steering::new(),
    ))
}

/// Engages route `r`'s kill switch for every request.
pub fn kill(boards: &Boards) {
    let _flip = boards.kills.engage(KillSwitch {
        route: "r".into(),
        reason: "test".into(),
        percent: None,
        segment: None,
        engaged_at_ms: 0,
        by: "test".into(),
    });
}

/// A chat completion for `model`, from user `u1`.
pub fn chat(model: &str) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("x-user", "u1")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The request as it enters route `r`'s stack, opened.
pub fn flow<B>(table: &Arc<Table>, boards: &Arc<Boards>, req: Request<B>) -> Flow
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Flow::open(entry(table, boards, req))
}

/// The request entering route `r`'s stack.
pub fn entry<B>(table: &Arc<Table>, boards: &Arc<Boards>, req: Request<B>) -> Entry<Table>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (dialect, op) = switchyard_llm::classify(
        table.routes[0].dialect,
        req.method().as_str(),
        req.uri().path(),
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    Entry {
        table: table.clone(),
        route: 0,
        boards: boards.clone(),
        request: req.map(|b| b.map_err(Into::into).boxed_unsync()),
        edge: Edge {
            started: switchyard_core::clock::now(),
            peer: Peer { addr, tls: false },
            client: addr,
            request_id: crate::gateway::request_id(&http::HeaderMap::new()),
            dialect,
            op,
            trace: switchyard_core::TraceContext::default(),
            host: None,
        },
    }
}

/// The inner service: keeps every request that reaches it and answers 204.
#[derive(Clone, Default)]
pub struct Reached(pub Arc<Mutex<Vec<Flow>>>);

impl Reached {
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The last request that reached the inner service.
    pub fn last(&self) -> Flow {
        self.0.lock().unwrap().pop().unwrap()
    }
}

impl Service<Flow> for Reached {
    type Response = Response<Body>;
    type Error = Stopped;
    type Future = std::future::Ready<Result<Response<Body>, Stopped>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, flow: Flow) -> Self::Future {
        self.0.lock().unwrap().push(flow);
        let mut response = Response::new(body::empty());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        std::future::ready(Ok(response))
    }
}

/// Checks readiness, then calls: one request, tower's way.
pub async fn oneshot<S: Service<Flow>>(
    service: &mut S,
    flow: Flow,
) -> Result<S::Response, S::Error> {
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(flow).await
}

/// The answer a stage stopped with.
pub fn answer<R>(result: Result<R, Stopped>) -> Answer {
    match result {
        Ok(_) => panic!("the stage did not stop the request"),
        Err(stop) => {
            let Stop { answer, flow } = *stop;
            drop(flow);
            answer
        }
    }
}

/// The request's body as it would go upstream.
pub async fn outbound(flow: &mut Flow) -> Bytes {
    let body = std::mem::replace(&mut flow.body, body::empty());
    body.collect().await.unwrap().to_bytes()
}
