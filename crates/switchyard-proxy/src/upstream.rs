//! An upstream: its endpoints, its pooled client, its ring and health, and the choice of
//! endpoint for a request.

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::HeaderValue;
use switchyard_config::HealthCheck;
use switchyard_core::client::HttpsClient;
use switchyard_core::Body;

use crate::affinity::Ring;
use crate::health::{self, EndpointHealth, HealthPolicy};

/// A pooled HTTP/1.1 and HTTP/2 client for one upstream (https by rustls, webpki roots).
pub type UpstreamClient = HttpsClient<Body>;

/// One place an upstream answers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: Authority,
    /// A path prefix of the upstream's URL, without a trailing slash ("" for none).
    pub base_path: String,
    /// scheme://authority/base_path: the endpoint's name in health state and metrics.
    pub label: Arc<str>,
}

/// An upstream: its endpoints and its own connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    /// `x-switchyard-upstream`, made once.
    pub header: Option<HeaderValue>,
    pub endpoints: Vec<Endpoint>,
    pub client: UpstreamClient,
    /// With `server.http1 = "builtin"`: the built-in path's connections to the plain-`http`
    /// endpoints, by index.
    pub(crate) own: Option<crate::h1_client::Own>,
    /// The consistent-hash ring, for two endpoints or more.
    pub ring: Option<Ring>,
    pub policy: HealthPolicy,
    pub health_check: Option<HealthCheck>,
    /// Each endpoint's health, by index: taken from the gateway's health registry when the
    /// table is prepared, so it is shared with earlier and later tables.
    pub health: Box<[Arc<EndpointHealth>]>,
}

impl Upstream {
    pub fn health_of(&self, index: usize) -> Option<&Arc<EndpointHealth>> {
        self.health.get(index)
    }
}

impl Upstream {
    /// The endpoint for a request: by user key on the ring, else in turn; endpoints out of
    /// the ring are skipped, unless all are out (health alone never refuses a request).
    /// `avoid` is an endpoint that just refused a connection: it is never chosen again.
    pub fn choose(&self, key: Option<&str>, avoid: Option<usize>) -> Option<usize> {
        let Some(ring) = &self.ring else {
            return (!self.endpoints.is_empty() && avoid != Some(0)).then_some(0);
        };
        let now = health::now_ms();
        let allowed = |i: usize| avoid != Some(i);
        let healthy = |i: usize| allowed(i) && self.health_of(i).is_none_or(|h| h.available(now));
        match key {
            Some(key) => ring
                .by_key(key.as_bytes(), healthy)
                .or_else(|| ring.by_key(key.as_bytes(), allowed)),
            None => ring
                .round_robin(healthy)
                .or_else(|| ring.round_robin(allowed)),
        }
    }
}
