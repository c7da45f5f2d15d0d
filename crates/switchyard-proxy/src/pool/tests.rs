use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// A test upstream: how many connections it accepted, and which of them the gateway closed
/// (by the order they were accepted in).
struct Upstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<usize>,
}

impl Upstream {
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    async fn next_closed(&mut self) -> usize {
        tokio::time::timeout(Duration::from_secs(10), self.closed.recv())
            .await
            .expect("a connection closed in time")
            .expect("the upstream runs")
    }
}

/// An HTTP/1.1 upstream answering `GET /` with `ok`, `GET /empty` with a 204 and `GET /big`
/// with a megabyte; with `close_after_one`, it closes each connection after one answer.
async fn upstream(close_after_one: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                serve(stream, close_after_one).await;
                let _ = closed_tx.send(n);
            });
        }
    });
    Upstream {
        addr,
        accepts,
        closed,
    }
}

/// Answers requests (heads only) until the peer closes or `close_after_one`.
async fn serve(mut stream: TcpStream, close_after_one: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let answer: Vec<u8> = if head.starts_with("GET /empty ") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if head.starts_with("GET /big ") {
            let mut big = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
            big.resize(big.len() + 1_048_576, b'x');
            big
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        };
        if stream.write_all(&answer).await.is_err() || close_after_one {
            return;
        }
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        scheme: Scheme::HTTP,
        authority: Authority::try_from(addr.to_string()).unwrap(),
        base_path: String::new(),
        label: Arc::from(format!("http://{addr}")),
    }
}

fn pool_to(addr: SocketAddr, idle_timeout: Duration) -> Pool {
    let mut pool = Pool::new(Duration::from_secs(2), &[endpoint(addr)]).unwrap();
    Arc::get_mut(&mut pool.shared).unwrap().idle_timeout = idle_timeout;
    pool
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .body(switchyard_core::body::empty())
        .unwrap()
}

/// Sends `GET path` and reads the whole answer.
async fn fetch(pool: &Pool, path: &str) -> (http::StatusCode, Bytes) {
    let response = pool.send(0, get(path)).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// Waits until `done` holds, letting the connection tasks run.
async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the condition held in time");
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let upstream = upstream(false).await;
    let pool = pool_to(upstream.addr, Duration::from_secs(90));
    for _ in 0..10 {
        assert_eq!(fetch(&pool, "/").await, (http::StatusCode::OK, "ok".into()));
    }
    // Empty bodies are dropped unread, and still give their connection back.
    for _ in 0..3 {
        let response = pool.send(0, get("/empty")).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
    }
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    assert_eq!(upstream.accepts(), 1);
    assert_eq!(pool.idle_open(0), 1);
}

#[tokio::test]
async fn the_upstream_sees_a_host_and_the_path_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = pool_to(addr, Duration::from_secs(90));
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(answer).await.unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    pool.send(0, get("/v1/models?x=1")).await.unwrap();
    let head = served.await.unwrap();
    assert!(
        head.starts_with("get /v1/models?x=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let mut upstream = upstream(false).await;
    let pool = pool_to(upstream.addr, Duration::from_secs(90));
    let response = pool.send(0, get("/big")).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(pool.idle_open(0), 0);
    assert_eq!(upstream.next_closed().await, 0);
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    assert_eq!(upstream.accepts(), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_skipped_for_a_new_one() {
    let mut upstream = upstream(true).await;
    let pool = pool_to(upstream.addr, Duration::from_secs(90));
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    assert_eq!(upstream.next_closed().await, 0);
    // The legacy pool did the same: a connection seen closed is never checked out.
    until(|| pool.idle_open(0) == 0).await;
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    assert_eq!(upstream.accepts(), 2);
}

#[tokio::test]
async fn idle_connections_expire_at_checkout_or_by_the_sweeper() {
    let mut upstream = upstream(false).await;
    let timeout = Duration::from_millis(300);
    let pool = pool_to(upstream.addr, timeout);
    let started = Instant::now();
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    // Nothing else asks: the sweeper closes it, not before the timeout.
    assert_eq!(upstream.next_closed().await, 0);
    assert!(started.elapsed() >= timeout);
    assert_eq!(pool.idle_open(0), 0);
    // A connection found expired at checkout is closed, and a new one dialed.
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    tokio::time::sleep(timeout + Duration::from_millis(50)).await;
    assert_eq!(fetch(&pool, "/").await.1, "ok");
    assert_eq!(upstream.next_closed().await, 1);
    assert_eq!(upstream.accepts(), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = pool_to(addr, Duration::from_secs(90));
    let error = pool.send(0, get("/")).await.unwrap_err();
    assert!(error.is_connect(), "{error}");
}

#[tokio::test]
async fn an_upstream_that_dies_after_the_request_is_a_send_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
    });
    let pool = pool_to(addr, Duration::from_secs(90));
    let error = pool.send(0, get("/")).await.unwrap_err();
    assert!(!error.is_connect(), "{error}");
    assert!(matches!(error, Error::Send(_)));
}

#[test]
fn the_host_header_names_the_port_only_where_it_is_not_the_default() {
    let cases = [
        ("http", "example.com", "example.com"),
        ("http", "example.com:80", "example.com"),
        ("http", "example.com:443", "example.com:443"),
        ("https", "example.com:443", "example.com"),
        ("https", "example.com:8443", "example.com:8443"),
        ("http", "127.0.0.1:9000", "127.0.0.1:9000"),
        ("http", "[::1]:9000", "[::1]:9000"),
    ];
    for (scheme, authority, host) in cases {
        let endpoint = Endpoint {
            scheme: Scheme::try_from(scheme).unwrap(),
            authority: Authority::try_from(authority).unwrap(),
            base_path: String::new(),
            label: Arc::from(authority),
        };
        let slot = Slot::new(&endpoint);
        assert_eq!(slot.host.unwrap(), host, "{scheme}://{authority}");
        assert_eq!(slot.dst.to_string(), format!("{scheme}://{authority}/"));
    }
}

/// An https upstream offering h2 by ALPN (the test certificate, for 127.0.0.1), answering
/// each request with its version and URI; and how many connections it accepted.
async fn h2_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../switchyard/tests/fixtures");
    let acceptor = crate::server::tls_acceptor(
        &fixtures.join("test-cert.pem"),
        &fixtures.join("test-key.pem"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(stream).await.unwrap();
                let answer = service_fn(|req: Request<Incoming>| async move {
                    let text = format!("{:?} {}", req.version(), req.uri());
                    Ok::<_, std::convert::Infallible>(Response::new(switchyard_core::body::full(
                        Bytes::from(text),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn an_https_endpoint_picking_h2_shares_one_connection() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let (addr, accepts) = h2_upstream().await;
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../switchyard/tests/fixtures");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("test-ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let settings = settings(Duration::from_secs(2));
    let connector = switchyard_core::client::https_connector_with(&settings, tls);
    let endpoint = Endpoint {
        scheme: Scheme::HTTPS,
        authority: Authority::try_from(addr.to_string()).unwrap(),
        base_path: String::new(),
        label: Arc::from("h2"),
    };
    let pool = Pool::with_connector(connector, &settings, &[endpoint]);
    let (status, body) = fetch(&pool, "/v1/models?x=1").await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(body, format!("HTTP/2.0 https://{addr}/v1/models?x=1"));
    let together: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { fetch(&pool, "/").await })
        })
        .collect();
    for task in together {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, http::StatusCode::OK);
        assert!(body.starts_with(b"HTTP/2.0"));
    }
    assert_eq!(fetch(&pool, "/").await.0, http::StatusCode::OK);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}
