//! Forward: the pooled client per upstream and the upstream request.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchyard_core::Body;

use crate::table::Endpoint;

/// A pooled HTTP/1.1 and HTTP/2 client for one upstream (https by rustls, webpki roots).
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// Builds an upstream's client; the connect timeout is the upstream's own.
pub fn client(connect_timeout: Duration) -> Result<UpstreamClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// The upstream URI: the endpoint's base path joined with the client's path and query.
pub fn upstream_uri(
    endpoint: &Endpoint,
    path_and_query: Option<&PathAndQuery>,
) -> Result<Uri, http::Error> {
    let pq = path_and_query.map_or("/", PathAndQuery::as_str);
    let joined = if endpoint.base_path.is_empty() {
        PathAndQuery::try_from(pq)?
    } else {
        PathAndQuery::try_from(format!("{}{}", endpoint.base_path, pq))?
    };
    Uri::builder()
        .scheme(endpoint.scheme.clone())
        .authority(endpoint.authority.clone())
        .path_and_query(joined)
        .build()
}

/// Picks the endpoint: sticky by user key so a conversation stays on one replica.
pub fn pick<'a>(endpoints: &'a [Endpoint], user_key: Option<&str>) -> Option<&'a Endpoint> {
    match endpoints.len() {
        0 => None,
        1 => endpoints.first(),
        n => {
            let hash = user_key.map_or_else(
                || fastrand::u64(..),
                |k| xxhash_rust::xxh3::xxh3_64(k.as_bytes()),
            );
            endpoints.get((hash % n as u64) as usize)
        }
    }
}

/// Sets the request's URI and the headers the upstream must see from us.
pub fn prepare(req: &mut Request<Body>, uri: Uri, request_id: &HeaderValue) {
    *req.uri_mut() = uri;
    // HTTP/1.1 to the upstream regardless of how the client spoke; the pool upgrades to h2
    // where ALPN offers it.
    *req.version_mut() = http::Version::HTTP_11;
    req.headers_mut().remove(http::header::HOST);
    req.headers_mut().insert("x-request-id", request_id.clone());
}
