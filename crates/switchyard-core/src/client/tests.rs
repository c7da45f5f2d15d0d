use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

const SETTINGS: ClientSettings = ClientSettings {
    connect_timeout: Some(Duration::from_secs(2)),
    tcp_keepalive: Some(Duration::from_secs(60)),
    http2: true,
    pool_idle_timeout: Duration::from_secs(90),
};

/// An HTTP/1.1 server on an ephemeral port answering every request with its path.
async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let path = Bytes::copy_from_slice(req.uri().path().as_bytes());
                    Ok::<_, Infallible>(Response::new(Full::new(path)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn plain_http_goes_through_and_the_connection_is_pooled() {
    let addr = server().await;
    for settings in [
        SETTINGS,
        ClientSettings {
            connect_timeout: None,
            tcp_keepalive: None,
            http2: false,
            pool_idle_timeout: Duration::from_secs(30),
        },
    ] {
        let client: HttpsClient<Full<Bytes>> = https_client(&settings).unwrap();
        for path in ["/one", "/two"] {
            let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
            let response = client.get(uri).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), http::Version::HTTP_11);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], path.as_bytes());
        }
    }
}

#[tokio::test]
async fn an_https_url_speaks_tls() {
    // A plain HTTP server cannot answer a TLS ClientHello: the request fails rather than
    // being sent in the clear.
    let addr = server().await;
    let client: HttpsClient<Full<Bytes>> = https_client(&SETTINGS).unwrap();
    let uri: http::Uri = format!("https://{addr}/secret").parse().unwrap();
    let error = client.get(uri).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}
