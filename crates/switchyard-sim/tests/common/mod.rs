//! Helpers shared by the integration tests: a sim on an ephemeral port and a real client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_sim::{spawn, Profile, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub struct Harness {
    pub addr: SocketAddr,
    pub sim: Sim,
    pub client: HttpClient,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(profile: Profile) -> Harness {
    let sim = Sim::new(profile);
    let (addr, task) = spawn("127.0.0.1:0".parse().unwrap(), sim.clone())
        .await
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness {
        addr,
        sim,
        client,
        task,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Harness {
    pub fn request(&self, method: Method, path: &str, body: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("response in time")
            .expect("request succeeds");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body completes").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: &str) -> Reply {
        self.send(self.request(method, path, body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, &body.to_string()).await
    }
}

/// One SSE event: the optional `event:` name and the parsed (or raw) data.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad data {e}: {}", self.data))
    }
}

pub fn parse_sse(body: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(body).unwrap();
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = Event {
                name: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                }
            }
            event
        })
        .collect()
}

/// Sends raw bytes over a fresh HTTP/1 connection and reads until EOF.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("server closes the connection in time")
        .ok();
    out
}

/// Waits until the sim has no request in flight, as after clients went away.
pub async fn wait_idle(sim: &Sim) -> bool {
    for _ in 0..100 {
        if sim.in_flight() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
