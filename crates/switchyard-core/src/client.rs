//! The one outbound HTTP client builder: upstreams, health probes, webhooks and the OTLP
//! exporter all dial through it, over plain TCP or rustls (see [`crate::tls`]). Each caller
//! keeps its own timeouts and pool settings in a [`ClientSettings`].

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A pooled client for http and https URLs (rustls, web PKI roots) sending bodies of type `B`.
pub type HttpsClient<B> = Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;

/// What differs between callers: how long to dial, TCP keepalive, whether to offer HTTP/2,
/// and how long an idle pooled connection is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// `None`: the operating system's connect timeout.
    pub connect_timeout: Option<Duration>,
    /// `None`: no TCP keepalive probes.
    pub tcp_keepalive: Option<Duration>,
    /// Offer `h2` by ALPN on https (plain http stays HTTP/1.1 either way).
    pub http2: bool,
    pub pool_idle_timeout: Duration,
}

/// Builds a client. Fails only when rustls refuses its own configuration.
pub fn https_client<B>(settings: &ClientSettings) -> Result<HttpsClient<B>, rustls::Error>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(settings.connect_timeout);
    http.set_keepalive(settings.tcp_keepalive);
    let tls = crate::tls::client_config()?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if settings.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .build(connector))
}

#[cfg(test)]
mod tests;
