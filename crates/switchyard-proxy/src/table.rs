//! The compiled routing table: the live snapshot the data path reads through `ArcSwap`.
//!
//! A table is prepared from a config without effects: the live state it refers to (route
//! signals, experiment figures, endpoint health) is looked up by stable name, or made new and
//! seen by nobody until the boards adopt the table when it is swapped in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use switchyard_config::{
    AdminToken, Config, DialectSetting as ConfigDialect, UpstreamTarget, UserKeySource,
};
use switchyard_llm::DialectSetting;
use switchyard_state::experiment::ExperimentStats;
use switchyard_state::signals::Spans;
use switchyard_state::{RouteSignals, Signals};

use crate::admission::Admission;
use crate::affinity::Ring;
use crate::forward;
use crate::health::HealthPolicy;
pub use crate::kill::CompiledFallback;
use crate::kill::{kill_plan, KillPlan};
use crate::registry::HealthRegistry;
use crate::stack::RouteStack;
use crate::upstream::{Endpoint, Upstream};

/// A failure to turn a valid config into a table (e.g. an embedded simulator has no address).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CompileError {
    pub key: String,
    pub message: String,
}

/// Prices and window of a configured model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub label: Arc<str>,
    pub context_window: u64,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    /// None: priced as input (and a warning the first time the model reports such tokens).
    pub cache_read_usd_per_mtok: Option<f64>,
    pub cache_write_usd_per_mtok: Option<f64>,
}

impl ModelInfo {
    /// The cost of one exchange in US dollars: the cached parts of the prompt at their own
    /// prices, the rest of it at the input price, completion tokens at the output price.
    pub fn cost_usd(&self, prompt: u64, cache_read: u64, cache_write: u64, completion: u64) -> f64 {
        let cache_read = cache_read.min(prompt);
        let cache_write = cache_write.min(prompt - cache_read);
        let uncached = prompt - cache_read - cache_write;
        let read_price = self
            .cache_read_usd_per_mtok
            .unwrap_or(self.input_usd_per_mtok);
        let write_price = self
            .cache_write_usd_per_mtok
            .unwrap_or(self.input_usd_per_mtok);
        (uncached as f64 * self.input_usd_per_mtok
            + cache_read as f64 * read_price
            + cache_write as f64 * write_price
            + completion as f64 * self.output_usd_per_mtok)
            / 1e6
    }
}

/// An experiment's variant, compiled.
#[derive(Debug)]
pub struct Variant {
    pub name: Arc<str>,
    /// Fraction of users in the variant.
    pub share: f64,
    /// The significance level its comparison with control is judged at.
    pub alpha: f64,
    pub set_model: Option<Arc<str>>,
    pub upstream: Option<Arc<Upstream>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `x-switchyard-variant`, made once.
    pub header: Option<HeaderValue>,
    pub stats: Arc<ExperimentStats>,
}

/// A route, compiled.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub path_prefix: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub host: Option<String>,
    pub dialect: DialectSetting,
    pub user_key: Vec<UserKeySource>,
    /// The `body:` sources of `user_key`, in order, for the inspector.
    pub body_user_paths: Vec<String>,
    /// The upstream serving the route: blue, when a rollout is configured.
    pub upstream: Arc<Upstream>,
    /// The upstream being rolled out; the share of users on it is the controller's.
    pub green: Option<Arc<Upstream>>,
    /// The split name users are hashed under for the rollout: `rollout:<route>`.
    pub rollout_split: String,
    /// A/B experiments, in config order.
    pub variants: Vec<Variant>,
    /// The `variant` label of this route's requests in no variant: `control`, made once.
    pub control: Arc<str>,
    /// `x-switchyard-route`, made once.
    pub route_header: Option<HeaderValue>,
    /// What the route answers while its kill switch is engaged.
    pub kill: KillPlan,
    /// Rate limits and the concurrency limit with its queue.
    pub admission: Arc<Admission>,
    pub signals: Arc<RouteSignals>,
    /// The window spans and context-fill threshold its signals keep.
    pub spans: Spans,
    /// A rule reads the applications' feedback on this route.
    pub takes_feedback: bool,
    pub in_flight: metrics::Gauge,
    /// The request path's stages, assembled once.
    pub stack: RouteStack<Table>,
}

/// Data-path settings from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// How long an inspected request body may take to arrive whole.
    pub body_read_timeout: Duration,
    pub routing_headers: bool,
    /// Keep request and response text for incident samples (`[incidents] capture_bodies`).
    pub capture_bodies: bool,
    /// The share of new traces sampled (`[telemetry] sampling_ratio`).
    pub sampling_ratio: f64,
    /// Proxies in front whose X-Forwarded-For entries are believed (`[server] trusted_hops`).
    pub trusted_hops: usize,
}

/// Everything a request needs to be routed and metered, frozen at one config version.
#[derive(Debug)]
pub struct Table {
    pub version: String,
    pub settings: Settings,
    pub routes: Vec<Route>,
    pub models: HashMap<String, ModelInfo>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// `[[admin.tokens]]`: who may call the admin API.
    pub tokens: Vec<AdminToken>,
}

impl Table {
    /// Prepares a validated config, without effects: `signals` and `health` are read for the
    /// live state the table keeps using, never changed (see `Boards::reconcile`). `sims` holds
    /// the addresses of embedded simulators.
    pub fn prepare(
        config: &Config,
        sims: &HashMap<String, SocketAddr>,
        signals: &Signals,
        health: &HealthRegistry,
    ) -> Result<Table, CompileError> {
        let upstreams = upstreams_of(config, sims, health)?;
        let spans = detail_spans(config);
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, spec)| route_of(config, index, spec, &upstreams, signals, spans))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Table {
            version: config.version.clone(),
            settings: Settings {
                max_body_bytes: config.server.max_body_bytes,
                upstream_timeout: config.server.upstream_timeout,
                stream_idle_timeout: config.server.stream_idle_timeout,
                body_read_timeout: config.server.body_read_timeout,
                routing_headers: config.server.routing_headers,
                capture_bodies: config.incidents.capture_bodies,
                sampling_ratio: config.telemetry.sampling_ratio,
                trusted_hops: config.server.trusted_hops,
            },
            routes,
            models: models_of(config),
            upstreams: upstreams.into_values().collect(),
            tokens: config.admin.tokens.clone(),
        })
    }

    /// The index of the first route whose match holds for this request.
    pub fn route_for(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        host: Option<&str>,
    ) -> Option<usize> {
        self.routes.iter().position(|route| {
            path.starts_with(route.path_prefix.as_str())
                && route
                    .host
                    .as_deref()
                    .is_none_or(|want| host.is_some_and(|h| host_matches(h, want)))
                && route
                    .headers
                    .iter()
                    .all(|(name, value)| headers.get(name) == Some(value))
        })
    }

    /// Keeps the admission state of routes whose limits did not change, so a reload resets
    /// no rate and drops no queued request.
    pub fn carry_over(&mut self, previous: &Table) {
        for route in &mut self.routes {
            let kept = previous.routes.iter().find(|old| old.name == route.name);
            if let Some(old) = kept.filter(|old| old.admission.limits == route.admission.limits) {
                route.admission = old.admission.clone();
            }
        }
    }

    /// The configured model of this name or alias.
    pub fn model(&self, name: &str) -> Option<&ModelInfo> {
        self.models.get(name)
    }
}

/// A configured host with a port must match the request's host and port; one without a
/// port matches the request's host on any port.
fn host_matches(host: &str, want: &str) -> bool {
    if want.contains(':') {
        return host.eq_ignore_ascii_case(want);
    }
    let bare = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    bare.eq_ignore_ascii_case(want)
}

fn variants_of(
    spec: &switchyard_config::Route,
    route: &Arc<str>,
    upstreams: &HashMap<String, Arc<Upstream>>,
    signals: &Signals,
) -> Result<Vec<Variant>, CompileError> {
    spec.experiments
        .iter()
        .map(|e| {
            let upstream = match &e.upstream {
                Some(name) => Some(upstreams.get(name).cloned().ok_or_else(|| CompileError {
                    key: format!("experiments.{}.variant.upstream", e.name),
                    message: format!("unknown upstream {name:?}"),
                })?),
                None => None,
            };
            Ok(Variant {
                name: Arc::from(e.name.as_str()),
                share: e.share(),
                alpha: e.alpha(),
                set_model: e.set_model.as_deref().map(Arc::from),
                upstream,
                headers: e.headers.clone(),
                header: HeaderValue::from_str(&e.name).ok(),
                stats: signals
                    .experiments()
                    .prepare(&e.name, route, e.share(), e.alpha()),
            })
        })
        .collect()
}

fn dialect_of(setting: ConfigDialect) -> DialectSetting {
    match setting {
        ConfigDialect::OpenAi => DialectSetting::OpenAi,
        ConfigDialect::Anthropic => DialectSetting::Anthropic,
        ConfigDialect::Auto => DialectSetting::Auto,
        ConfigDialect::Opaque => DialectSetting::Opaque,
    }
}

fn models_of(config: &Config) -> HashMap<String, ModelInfo> {
    let mut models = HashMap::new();
    for (name, model) in &config.models {
        let info = ModelInfo {
            label: Arc::from(name.as_str()),
            context_window: model.context_window,
            input_usd_per_mtok: model.input_usd_per_mtok,
            output_usd_per_mtok: model.output_usd_per_mtok,
            cache_read_usd_per_mtok: model.cache_read_usd_per_mtok,
            cache_write_usd_per_mtok: model.cache_write_usd_per_mtok,
        };
        for alias in &model.aliases {
            models.insert(alias.clone(), info.clone());
        }
        models.insert(name.clone(), info);
    }
    models
}

fn endpoints_of(
    name: &str,
    target: &UpstreamTarget,
    sims: &HashMap<String, SocketAddr>,
) -> Result<Vec<Endpoint>, CompileError> {
    let uris = match target {
        UpstreamTarget::Endpoints(uris) => uris.clone(),
        UpstreamTarget::Sim { .. } => {
            let addr = sims.get(name).ok_or_else(|| CompileError {
                key: format!("upstreams.{name}.sim"),
                message: "the embedded simulator is not running".into(),
            })?;
            let uri = format!("http://{addr}")
                .parse::<http::Uri>()
                .map_err(|e| CompileError {
                    key: format!("upstreams.{name}.sim"),
                    message: e.to_string(),
                })?;
            vec![uri]
        }
    };
    uris.iter()
        .map(|uri| {
            let parts = uri.clone().into_parts();
            match (parts.scheme, parts.authority) {
                (Some(scheme), Some(authority)) => {
                    let base_path = parts
                        .path_and_query
                        .map(|p| p.path().trim_end_matches('/').to_string())
                        .unwrap_or_default();
                    Ok(Endpoint {
                        label: Arc::from(format!("{scheme}://{authority}{base_path}")),
                        scheme,
                        authority,
                        base_path,
                    })
                }
                _ => Err(CompileError {
                    key: format!("upstreams.{name}"),
                    message: format!("{uri} has no scheme or host"),
                }),
            }
        })
        .collect()
}

/// Each upstream with its endpoints, pooled client, ring and health policy.
fn upstreams_of(
    config: &Config,
    sims: &HashMap<String, SocketAddr>,
    health: &HealthRegistry,
) -> Result<HashMap<String, Arc<Upstream>>, CompileError> {
    let mut upstreams = HashMap::new();
    for (name, spec) in &config.upstreams {
        let endpoints = endpoints_of(name, &spec.target, sims)?;
        let client = forward::client(spec.connect_timeout).map_err(|e| CompileError {
            key: format!("upstreams.{name}"),
            message: format!("TLS client: {e}"),
        })?;
        let ring = (endpoints.len() >= 2).then(|| {
            let labels: Vec<&str> = endpoints.iter().map(|e| &*e.label).collect();
            Ring::new(&labels)
        });
        let name: Arc<str> = Arc::from(name.as_str());
        let own = (config.server.http1 == switchyard_config::Http1Engine::Builtin)
            .then(|| crate::h1_client::Own::new(endpoints.len(), spec.connect_timeout));
        let upstream = Arc::new(Upstream {
            health: health.cells_for(&name, &endpoints),
            name: name.clone(),
            header: HeaderValue::from_str(&name).ok(),
            endpoints,
            client,
            own,
            ring,
            policy: HealthPolicy {
                unhealthy_after: spec.unhealthy_after,
                eject_for: spec.eject_for,
            },
            health_check: spec.health_check.clone(),
        });
        upstreams.insert(name.to_string(), upstream);
    }
    Ok(upstreams)
}

/// The detail rings hold the longest window anything reads: alerts, rollback triggers, rules.
fn detail_spans(config: &Config) -> switchyard_state::signals::Spans {
    let longest = config
        .routes
        .iter()
        .map(|r| r.rollback.window)
        .chain(config.rules.iter().map(|r| r.window))
        .fold(config.alerts.window, Duration::max);
    switchyard_state::signals::Spans {
        window: longest,
        baseline: config.alerts.baseline,
        context_fill: config.alerts.context_fill,
    }
}

/// Whether a rule reads the applications' feedback on `route`.
fn takes_feedback(config: &Config, route: &str) -> bool {
    config.rules.iter().any(|rule| {
        matches!(
            rule.metric,
            switchyard_config::RuleMetric::FeedbackScore
                | switchyard_config::RuleMetric::CompletionRate
        ) && rule.route.as_deref().is_none_or(|r| r == route)
    })
}

/// One route of the table, with the signals it records into: the live ones of its name, or new
/// ones the boards adopt with the table.
fn route_of(
    config: &Config,
    index: usize,
    spec: &switchyard_config::Route,
    upstreams: &HashMap<String, Arc<Upstream>>,
    signals: &Signals,
    spans: switchyard_state::signals::Spans,
) -> Result<Route, CompileError> {
    let unknown = |key: String, name: &str| CompileError {
        key,
        message: format!("unknown upstream {name:?}"),
    };
    let upstream = upstreams
        .get(&spec.upstream)
        .cloned()
        .ok_or_else(|| unknown(format!("routes[{index}].upstream"), &spec.upstream))?;
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let route_signals = signals.prepare_route(&spec.name, spans);
    let variants = variants_of(spec, &name, upstreams, signals)?;
    let green =
        match &spec.rollout {
            Some(rollout) => Some(upstreams.get(&rollout.green).cloned().ok_or_else(|| {
                unknown(format!("routes[{index}].rollout.green"), &rollout.green)
            })?),
            None => None,
        };
    let body_user_paths = spec
        .user_key
        .iter()
        .filter_map(|s| match s {
            UserKeySource::Body(path) => Some(path.clone()),
            _ => None,
        })
        .collect();
    Ok(Route {
        in_flight: metrics::gauge!(switchyard_core::metrics::IN_FLIGHT_REQUESTS, "route" => name.clone()),
        signals: route_signals,
        spans,
        takes_feedback: takes_feedback(config, &spec.name),
        rollout_split: format!("rollout:{name}"),
        control: Arc::from(switchyard_state::experiment::CONTROL),
        green,
        variants,
        name,
        path_prefix: spec.matcher.path_prefix.clone(),
        headers: spec.matcher.headers.clone(),
        host: spec.matcher.host.clone(),
        dialect: dialect_of(spec.dialect),
        user_key: spec.user_key.clone(),
        body_user_paths,
        route_header: HeaderValue::from_str(&spec.name).ok(),
        kill: kill_plan(&spec.kill_switch, upstreams),
        admission: Arc::new(Admission::new(&spec.name, &spec.limits)),
        upstream,
        stack: RouteStack::assemble(),
    })
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn hosts_match_with_or_without_a_port() {
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(host_matches("API.example.com:8443", "api.example.com"));
        assert!(host_matches("localhost:18081", "localhost:18081"));
        assert!(!host_matches("localhost:18082", "localhost:18081"));
        assert!(!host_matches("localhost", "localhost:18081"));
        assert!(!host_matches("other.example.com", "api.example.com"));
    }
}
