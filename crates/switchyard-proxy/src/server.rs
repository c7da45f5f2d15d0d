//! Listeners: TCP or TLS, HTTP/1.1 and HTTP/2, with head-read and handshake bounds, and the
//! drain that closes them.

use std::any::TypeId;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;
use tower_service::Service;

use crate::gateway::Gateway;
use crate::h1;
use crate::peer::Peer;
use crate::proxy::Proxy;

/// A TLS handshake that takes longer than this is dropped (a slow-handshake guard).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A bound traffic listener and how it speaks.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// `server.http1 = "builtin"`: plain-TCP HTTP/1.1 is served by the gateway's own
    /// connection loop (see `h1`), when nothing wraps the gateway in layers of its own.
    pub builtin_http1: bool,
    /// The largest request body the built-in loop reads before calling the gateway; a larger
    /// one is left to hyper.
    pub max_body_bytes: usize,
}

/// A TLS acceptor for the PEM certificate chain and key, offering h2 and http/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let pem_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| ServeError::Pem { path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn builder(header_read_timeout: Duration, max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves until `stop` resolves with the time open requests may still take. Then the
/// listening socket is closed (new connections are refused, not left in a backlog nobody
/// reads), idle connections are closed, open ones are told to finish (HTTP/1 closes after the
/// response, HTTP/2 sends GOAWAY), and those still open when the time is up are cut.
/// Returns how many connections were cut.
///
/// `layer` wraps the gateway's [`Proxy`] of each connection: the embedding program's own
/// middleware, outermost (`tower_layer::Identity` for none). What it wraps is a `Proxy` that
/// knows the connection's peer; it sees every request first and every response last,
/// including the gateway's own answers.
pub async fn serve<L, S, B>(
    listener: Listener,
    gateway: Arc<Gateway>,
    layer: L,
    stop: impl Future<Output = Duration>,
) -> usize
where
    L: Layer<Proxy, Service = S> + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<switchyard_core::BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<switchyard_core::BoxError>,
{
    let layer = Arc::new(layer);
    let builtin = builtin_settings::<L>(&listener);
    let Listener {
        tcp,
        tls,
        header_read_timeout,
        max_header_bytes,
        ..
    } = listener;
    let builder = Arc::new(builder(header_read_timeout, max_header_bytes));
    let graceful = GracefulShutdown::new();
    let (draining, drain) = watch::channel(false);
    // Every connection's task, so the ones that outlive the drain can be cut and counted.
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    let drain_timeout = loop {
        let (stream, addr) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            timeout = &mut stop => break timeout,
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            tls: tls.is_some(),
        };
        let proxy = Proxy::for_peer(gateway.clone(), peer);
        let direct = builtin.map(|settings| (proxy.clone(), settings, drain.clone()));
        let service = layer.layer(proxy);
        connections.spawn(connection(
            stream,
            peer,
            tls.clone(),
            (service, builder.clone(), direct),
            graceful.watcher(),
        ));
    };
    drop(tcp);
    let _ = draining.send(true);
    finish(graceful, connections, drain_timeout).await
}

/// The built-in HTTP/1.1 loop's settings, if it serves this listener: asked for, plain TCP,
/// and no layer of the embedding program's around the gateway (the loop calls the gateway
/// itself; a layer's service takes hyper's request type).
fn builtin_settings<L: 'static>(listener: &Listener) -> Option<h1::Settings> {
    if !listener.builtin_http1 {
        return None;
    }
    if listener.tls.is_some() {
        tracing::warn!(
            "server.http1 = \"builtin\" serves plain TCP only; hyper serves this TLS listener"
        );
        return None;
    }
    if TypeId::of::<L>() != TypeId::of::<tower_layer::Identity>() {
        tracing::warn!(
            "server.http1 = \"builtin\" is not used under an embedding layer; hyper serves"
        );
        return None;
    }
    Some(h1::Settings {
        header_read_timeout: listener.header_read_timeout,
        max_header_bytes: listener.max_header_bytes,
        max_body_bytes: listener.max_body_bytes,
    })
}

/// Asks every open connection to finish, waits up to `drain_timeout`, then cuts the rest.
async fn finish(
    graceful: GracefulShutdown,
    mut connections: JoinSet<()>,
    drain_timeout: Duration,
) -> usize {
    tracing::info!(
        open = graceful.count(),
        drain_timeout = ?drain_timeout,
        "no longer accepting connections; waiting for requests in flight"
    );
    // hyper's connections are told by `graceful`, the built-in loop's by the drain flag
    // the caller set; both are done when their tasks end.
    let all_done = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(drain_timeout, all_done).await.is_ok() {
        return 0;
    }
    while connections.try_join_next().is_some() {}
    let cut = connections.len();
    connections.shutdown().await;
    tracing::warn!(
        cut,
        drain_timeout = ?drain_timeout,
        "drain timeout: cut the connections whose requests were still in flight"
    );
    cut
}

/// What the built-in HTTP/1.1 loop needs for one connection: the gateway for its peer, the
/// limits, and the drain flag.
type Direct = (Proxy, h1::Settings, watch::Receiver<bool>);

/// One accepted connection, served until it closes (or the drain says to close it).
async fn connection<S, B>(
    stream: TcpStream,
    peer: Peer,
    tls: Option<TlsAcceptor>,
    (service, builder, direct): (S, Arc<auto::Builder<TokioExecutor>>, Option<Direct>),
    watcher: Watcher,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<switchyard_core::BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<switchyard_core::BoxError>,
{
    let addr = peer.addr;
    let service = service_fn(move |req| {
        let mut service = service.clone();
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req).await
        }
    });
    let result = match (tls, direct) {
        (None, Some((proxy, settings, drain))) => {
            match h1::serve(stream, proxy, settings, drain).await {
                h1::Ended::Closed => return,
                h1::Ended::HandOver(rest) => {
                    let conn = builder.serve_connection(TokioIo::new(rest), service);
                    watcher.watch(conn.into_owned()).await
                }
            }
        }
        (None, None) => {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn.into_owned()).await
        }
        (Some(acceptor), _) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Ok(Err(error)) => return tracing::debug!(%error, %addr, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %addr, "connection ended with an error");
    }
}
