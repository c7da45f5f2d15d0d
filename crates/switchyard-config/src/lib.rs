//! gateway.toml: specs, validation with key and line, compiled snapshot.
//!
//! Each section lives in its own module as a `FooSpec` (what users write, unknown keys rejected)
//! plus the validated runtime value. Adding a section means a module, a field on `FileSpec`
//! and a field on [`Config`].

mod alerts;
mod ctx;
mod duration;
mod error;
mod fleet;
mod kill_switch;
mod limits;
mod lint;
mod locate;
mod model;
mod notify;
mod rollout;
mod route;
mod rules;
mod server;
mod token;
mod upstream;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use alerts::{Alerts, Budgets};
pub use duration::parse_duration;
pub use error::{ConfigError, ConfigWarning};
pub use fleet::{Fleet, DEFAULT_COMMAND_TIMEOUT, DEFAULT_RECONCILE_INTERVAL};
pub use kill_switch::{
    Fallback, KillSwitchConfig, DEFAULT_FALLBACK_CONTENT_TYPE, DEFAULT_RETRY_AFTER,
};
pub use limits::{Limits, DEFAULT_QUEUE_TIMEOUT};
pub use model::Model;
pub use notify::{EventKind, Notify, Webhook, DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT};
pub use rollout::{
    Experiment, Rollback, Rollout, DEFAULT_BAKE, DEFAULT_MIN_REQUESTS, DEFAULT_STAGES,
};
pub use route::{
    default_user_key, parse_user_key, DialectSetting, Route, RouteMatch, UserKeySource,
    DEFAULT_USER_KEY,
};
pub use rules::{IncidentSettings, Rule, RuleAction, RuleMetric, Threshold};
pub use server::{Admin, Log, LogFormat, Server, Tls, MIN_HEADER_BYTES};
pub use token::{AdminToken, Role, TokenKind, MIN_TOKEN_BYTES};
pub use upstream::{
    parse_endpoint, HealthCheck, Upstream, UpstreamTarget, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EJECT_FOR, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_UNHEALTHY_AFTER,
};

/// The origin used for text that did not come from a file.
pub const INLINE_ORIGIN: &str = "<inline>";

/// The whole file as written. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    server: server::ServerSpec,
    #[serde(default)]
    admin: server::AdminSpec,
    #[serde(default)]
    log: server::LogSpec,
    /// Key = model name as clients send it.
    #[serde(default)]
    models: model::ModelSpecs,
    #[serde(default)]
    upstreams: upstream::UpstreamSpecs,
    #[serde(default)]
    routes: Vec<toml::Spanned<route::RouteSpec>>,
    #[serde(default)]
    alerts: alerts::AlertsSpec,
    #[serde(default)]
    budgets: alerts::BudgetsSpec,
    #[serde(default)]
    notify: notify::NotifySpec,
    #[serde(default)]
    rules: Vec<toml::Spanned<rules::RuleSpec>>,
    #[serde(default)]
    incidents: rules::IncidentsSpec,
    /// Absent: one replica, no Redis.
    #[serde(default)]
    fleet: Option<fleet::FleetSpec>,
}

/// The config version of a file's text: XXH3-64 of the exact bytes, in hex.
pub fn version_of(text: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// A validated gateway.toml.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hex of xxh3_64 over the exact file text: the "config version" shown by the admin API.
    pub version: String,
    /// The file path, or [`INLINE_ORIGIN`].
    pub origin: String,
    pub server: Server,
    pub admin: Admin,
    pub log: Log,
    pub models: BTreeMap<String, Model>,
    pub upstreams: BTreeMap<String, Upstream>,
    /// In file order.
    pub routes: Vec<Route>,
    pub alerts: Alerts,
    pub budgets: Budgets,
    pub notify: Notify,
    /// In file order.
    pub rules: Vec<Rule>,
    pub incidents: IncidentSettings,
    /// `[fleet]`, when replicas share their runtime state through Redis.
    pub fleet: Option<Fleet>,
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Parses and validates `text`. `origin` names it in errors; `base_dir` is where relative
    /// paths resolve (the config file's directory).
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let spec: FileSpec =
            toml::from_str(text).map_err(|e| locate::from_toml_error(&e, text, origin))?;
        let mut ctx = ctx::Ctx::new(text, origin, base_dir);
        let server = server::compile_server(&spec.server, &ctx)?;
        let admin = server::compile_admin(&spec.admin, &spec.server, &server, &mut ctx)?;
        let log = server::compile_log(&spec.log, &ctx)?;
        let models = model::compile_models(&spec.models, &ctx)?;
        let upstreams = upstream::compile_upstreams(&spec.upstreams, &ctx)?;
        let routes = route::compile_routes(&spec.routes, &upstreams, &mut ctx)?;
        let alerts = alerts::compile_alerts(&spec.alerts, &mut ctx)?;
        let budgets = alerts::compile_budgets(&spec.budgets, &mut ctx)?;
        let notify = notify::compile_notify(&spec.notify, &ctx)?;
        let rules = rules::compile_rules(&spec.rules, &routes, &mut ctx)?;
        let incidents = rules::compile_incidents(&spec.incidents, &ctx)?;
        let fleet = fleet::compile_fleet(spec.fleet.as_ref(), &ctx)?;
        lint::lint(&routes, &upstreams, &mut ctx);
        lint::lint_models(&routes, &rules, &models, &mut ctx);
        Ok(Config {
            version: version_of(text),
            origin: origin.to_owned(),
            server,
            admin,
            log,
            models,
            upstreams,
            routes,
            alerts,
            budgets,
            notify,
            rules,
            incidents,
            fleet,
            warnings: ctx.warnings,
        })
    }

    /// Reads and parses a file; relative paths in it resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            key: String::new(),
            message: e.to_string(),
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Config::parse(&text, &origin, base_dir)
    }

    /// Looks a model up by name or alias; returns its canonical name.
    pub fn model(&self, name: &str) -> Option<(&str, &Model)> {
        if let Some((canonical, model)) = self.models.get_key_value(name) {
            return Some((canonical, model));
        }
        // Aliases are few and lookups by alias rare next to exact names; a scan is enough.
        self.models
            .iter()
            .find(|(_, m)| m.aliases.iter().any(|a| a == name))
            .map(|(canonical, m)| (canonical.as_str(), m))
    }
}
