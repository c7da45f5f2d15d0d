//! gateway.toml: specs, validation with key and line, compiled snapshot.
//!
//! Each section lives in its own module as a `FooSpec` (what users write, unknown keys rejected)
//! plus the validated runtime value. Adding a section means a module, a field on `FileSpec`
//! and a field on [`Config`].

mod alerts;
mod budgets;
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
mod telemetry;
mod token;
mod upstream;

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

pub use alerts::{Alerts, Budgets};
pub use budgets::{Enforcement, OutagePolicy};
pub use duration::parse_duration;
pub use error::{ConfigError, ConfigWarning};
pub use fleet::{Fleet, DEFAULT_COMMAND_TIMEOUT, DEFAULT_RECONCILE_INTERVAL};
pub use kill_switch::{
    Fallback, KillSwitchConfig, DEFAULT_FALLBACK_CONTENT_TYPE, DEFAULT_RETRY_AFTER,
};
pub use limits::{Limits, DEFAULT_QUEUE_TIMEOUT};
pub use model::Model;
pub use notify::{
    EventKind, Notify, Secret, Signing, Webhook, DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT,
};
pub use rollout::{
    Experiment, Rollback, Rollout, DEFAULT_BAKE, DEFAULT_MIN_REQUESTS, DEFAULT_STAGES,
};
pub use route::{
    default_user_key, parse_user_key, DialectSetting, Route, RouteMatch, UserKeySource,
    DEFAULT_USER_KEY,
};
pub use rules::{IncidentSettings, Rule, RuleAction, RuleMetric, Threshold};
pub use server::{
    Admin, Http1Engine, Log, LogFormat, Server, Tls, DEFAULT_DRAIN_DELAY, DEFAULT_DRAIN_TIMEOUT,
    MIN_HEADER_BYTES,
};
pub use telemetry::{
    Telemetry, DEFAULT_BATCH_DELAY, DEFAULT_BATCH_SIZE, DEFAULT_EXPORT_TIMEOUT, DEFAULT_QUEUE_SIZE,
};
pub use token::{AdminToken, Role, TokenKind, MIN_TOKEN_BYTES};
pub use upstream::{
    parse_endpoint, HealthCheck, Upstream, UpstreamTarget, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EJECT_FOR, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_UNHEALTHY_AFTER,
};

/// The origin used for text that did not come from a file.
pub const INLINE_ORIGIN: &str = "<inline>";

/// The whole file as written. Every section is optional in a fragment; a file a gateway runs
/// on needs `[server]` and a route (see [`Config::load`]).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// `None` when the file has no `[server]` table at all (an empty one is `Some`).
    #[serde(default)]
    server: Option<server::ServerSpec>,
    #[serde(default)]
    admin: server::AdminSpec,
    #[serde(default)]
    log: server::LogSpec,
    /// Key = model name as clients send it.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, model::ModelSpec>")]
    models: model::ModelSpecs,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, upstream::UpstreamSpec>")]
    upstreams: upstream::UpstreamSpecs,
    #[serde(default)]
    #[schemars(with = "Vec<route::RouteSpec>")]
    routes: Vec<toml::Spanned<route::RouteSpec>>,
    #[serde(default)]
    alerts: alerts::AlertsSpec,
    #[serde(default)]
    budgets: budgets::BudgetsSpec,
    #[serde(default)]
    notify: notify::NotifySpec,
    #[serde(default)]
    #[schemars(with = "Vec<rules::RuleSpec>")]
    rules: Vec<toml::Spanned<rules::RuleSpec>>,
    #[serde(default)]
    incidents: rules::IncidentsSpec,
    #[serde(default)]
    telemetry: telemetry::TelemetrySpec,
    /// Absent: one replica, no Redis.
    #[serde(default)]
    fleet: Option<fleet::FleetSpec>,
}

/// Whether the text must be a whole gateway file or may be a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    File,
    Fragment,
}

/// The two things a whole file has and an empty or truncated one usually lacks. Both are
/// reported on line 1: the problem is the file as a whole, not a key in it.
fn require_whole(
    has_server: bool,
    routes: &[Route],
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let missing = |key: &str, message: &str| ConfigError {
        origin: origin.to_owned(),
        line: Some(1),
        key: key.to_owned(),
        message: message.to_owned(),
    };
    if !has_server {
        let what = if text.trim().is_empty() {
            "the file is empty"
        } else {
            "missing"
        };
        return Err(missing(
            "server",
            &format!("{what}: a gateway file needs a [server] table (it may be empty); without one it is taken for a partial write"),
        ));
    }
    if routes.is_empty() {
        return Err(missing(
            "routes",
            "no routes: every request would answer 404; add a [[routes]] table",
        ));
    }
    Ok(())
}

/// The JSON schema (draft 2020-12) of gateway.toml, generated from the types the file is read
/// into, so it cannot drift from them. Editors with a TOML language server (Taplo, Even Better
/// TOML) use it for completion and checks; `switchyard check` stays the judge of what is valid.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(FileSpec);
    schema.insert("title".into(), "switchyard gateway.toml".into());
    let mut value = schema.to_value();
    without_null(&mut value);
    value
}

/// TOML has no null: an optional key is one left out, so `Option`'s null is taken out of the
/// schema (`"type": ["string", "null"]` and `"anyOf": [{...}, {"type": "null"}]`).
fn without_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
                if let [Value::Object(only)] = options.as_slice() {
                    let only = only.clone();
                    map.remove("anyOf");
                    map.extend(only);
                }
            }
            map.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
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
    pub telemetry: Telemetry,
    /// `[fleet]`, when replicas share their runtime state through Redis.
    pub fleet: Option<Fleet>,
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Parses and validates `text`. `origin` names it in errors; `base_dir` is where relative
    /// paths resolve (the config file's directory).
    ///
    /// This accepts a fragment: a text without `[server]` or without routes is valid here (tests
    /// and embedders build configs from pieces). Files go through [`Config::load`], which
    /// refuses both.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::compile(text, origin, base_dir, Whole::Fragment)
    }

    fn compile(
        text: &str,
        origin: &str,
        base_dir: &Path,
        whole: Whole,
    ) -> Result<Config, ConfigError> {
        let spec: FileSpec =
            toml::from_str(text).map_err(|e| locate::from_toml_error(&e, text, origin))?;
        let mut ctx = ctx::Ctx::new(text, origin, base_dir);
        let server_spec = spec.server.as_ref().unwrap_or(&server::ServerSpec::DEFAULT);
        let server = server::compile_server(server_spec, &ctx)?;
        let admin = server::compile_admin(&spec.admin, server_spec, &server, &mut ctx)?;
        let log = server::compile_log(&spec.log, &ctx)?;
        let models = model::compile_models(&spec.models, &ctx)?;
        let upstreams = upstream::compile_upstreams(&spec.upstreams, &ctx)?;
        let routes = route::compile_routes(&spec.routes, &upstreams, &mut ctx)?;
        let alerts = alerts::compile_alerts(&spec.alerts, &mut ctx)?;
        let budgets = alerts::compile_budgets(&spec.budgets, &mut ctx)?;
        let notify = notify::compile_notify(&spec.notify, &mut ctx)?;
        let rules = rules::compile_rules(&spec.rules, &routes, &mut ctx)?;
        let incidents = rules::compile_incidents(&spec.incidents, &ctx)?;
        let telemetry = telemetry::compile_telemetry(&spec.telemetry, &ctx)?;
        if whole == Whole::File {
            require_whole(spec.server.is_some(), &routes, text, origin)?;
        }
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
            telemetry,
            fleet,
            warnings: ctx.warnings,
        })
    }

    /// Reads and parses a file; relative paths in it resolve against its directory.
    ///
    /// A file is what a gateway runs on, so it must be whole: a file without a `[server]`
    /// table or without a route is refused (an empty or half-written file would otherwise
    /// load as a gateway that answers 404 to everything).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: path.display().to_string(),
            line: None,
            key: String::new(),
            message: e.to_string(),
        })?;
        Config::load_text(path, &text)
    }

    /// As [`Config::load`], with the file's text already read (the file watcher reads it
    /// until it stops changing, and parses exactly what it read).
    pub fn load_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Config::compile(text, &origin, base_dir, Whole::File)
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
