//! `[fleet]`: several replicas sharing their runtime state through Redis.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// Default `reconcile_interval`: the most a lost pub/sub message costs.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// Default `command_timeout`: the longest a Redis command may take before it counts as failed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(50);

/// `[fleet]` as written. Leaving the section out keeps the gateway a single replica.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetSpec {
    /// Required: `redis://HOST:PORT[/DB]`.
    #[schemars(with = "Option<String>")]
    redis_url: Option<Spanned<String>>,
    /// Prefix of every key and channel, so several fleets share one Redis. Default `switchyard`.
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
    /// This replica's name among the members. Default: the host name.
    #[schemars(with = "Option<String>")]
    instance_id: Option<Spanned<String>>,
    /// How often the shared state's version is compared. Default `2s`.
    #[schemars(with = "Option<String>")]
    reconcile_interval: Option<Spanned<String>>,
    /// Default `50ms`.
    #[schemars(with = "Option<String>")]
    command_timeout: Option<Spanned<String>>,
}

/// A validated `[fleet]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub redis_url: String,
    pub namespace: String,
    pub instance_id: String,
    pub reconcile_interval: Duration,
    pub command_timeout: Duration,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

fn name(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let text = v.get_ref().trim();
    let fine = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if text.is_empty() || !text.chars().all(fine) {
        return Err(ctx.at(
            v,
            key,
            "must be non-empty letters, digits, '-', '_', '.' or ':'",
        ));
    }
    Ok(text.to_owned())
}

pub(crate) fn compile_fleet(
    spec: Option<&FleetSpec>,
    ctx: &Ctx,
) -> Result<Option<Fleet>, ConfigError> {
    let Some(spec) = spec else { return Ok(None) };
    let Some(url) = &spec.redis_url else {
        return Err(ctx.err(
            &(0..0),
            "fleet.redis_url",
            "is required in [fleet] (e.g. \"redis://127.0.0.1:6379\")",
        ));
    };
    let redis_url = url.get_ref().trim().to_owned();
    if !redis_url.starts_with("redis://") {
        return Err(ctx.at(url, "fleet.redis_url", "must start with redis://"));
    }
    let namespace = match &spec.namespace {
        Some(v) => name(ctx, v, "fleet.namespace")?,
        None => "switchyard".to_owned(),
    };
    let instance_id = match &spec.instance_id {
        Some(v) => name(ctx, v, "fleet.instance_id")?,
        None => host_name(),
    };
    let reconcile_interval = ctx.duration(
        spec.reconcile_interval.as_ref(),
        "fleet.reconcile_interval",
        DEFAULT_RECONCILE_INTERVAL,
    )?;
    let command_timeout = ctx.duration(
        spec.command_timeout.as_ref(),
        "fleet.command_timeout",
        DEFAULT_COMMAND_TIMEOUT,
    )?;
    Ok(Some(Fleet {
        redis_url,
        namespace,
        instance_id,
        reconcile_interval,
        command_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    #[test]
    fn absent_section_is_single_replica_and_defaults_apply() {
        let c = Config::parse("", "t", Path::new(".")).unwrap();
        assert!(c.fleet.is_none());
        let c = Config::parse(
            "[fleet]\nredis_url = \"redis://127.0.0.1:6379\"\ninstance_id = \"a\"\n",
            "t",
            Path::new("."),
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.namespace, "switchyard");
        assert_eq!(f.instance_id, "a");
        assert_eq!(f.reconcile_interval.as_secs(), 2);
        assert_eq!(f.command_timeout.as_millis(), 50);
    }

    #[test]
    fn url_is_required() {
        let e = Config::parse("[fleet]\nnamespace = \"x\"\n", "t", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "fleet.redis_url");
    }
}
