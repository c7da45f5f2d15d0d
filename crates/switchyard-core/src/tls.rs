//! The one TLS client configuration for every outbound https connection (upstreams, probes,
//! webhooks, OTLP): rustls with the ring provider and the built-in web PKI roots.

use std::sync::Arc;

/// A client config trusting the web PKI roots shipped in the binary (no system store lookups).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth())
}
