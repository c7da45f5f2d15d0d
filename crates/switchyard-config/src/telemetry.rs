//! `[telemetry]`: trace sampling and the optional OTLP/HTTP span export.

use std::time::Duration;

use http::Uri;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TelemetrySpec {
    /// OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. Default none: no export.
    #[schemars(with = "Option<String>")]
    otlp_endpoint: Option<Spanned<String>>,
    /// Share of new traces sampled, `0..=1`. Default 1.0. A client's `traceparent` decides
    /// for its own trace.
    #[schemars(with = "Option<f64>")]
    sampling_ratio: Option<Spanned<f64>>,
    /// Spans per export request, > 0. Default 512.
    #[schemars(with = "Option<u64>")]
    batch_size: Option<Spanned<u64>>,
    /// The longest a span waits for its batch to fill. Default `5s`.
    #[schemars(with = "Option<String>")]
    batch_delay: Option<Spanned<String>>,
    /// Spans waiting for export, > 0; beyond it new spans are dropped. Default 2048.
    #[schemars(with = "Option<u64>")]
    queue_size: Option<Spanned<u64>>,
    /// Per export request. Default `10s`.
    #[schemars(with = "Option<String>")]
    export_timeout: Option<Spanned<String>>,
    /// The `service.name` resource attribute. Default `switchyard`.
    #[schemars(with = "Option<String>")]
    service_name: Option<Spanned<String>>,
}

/// A validated `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub otlp_endpoint: Option<Uri>,
    pub sampling_ratio: f64,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub queue_size: usize,
    pub export_timeout: Duration,
    pub service_name: String,
}

pub const DEFAULT_BATCH_SIZE: usize = 512;
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_delay: DEFAULT_BATCH_DELAY,
            queue_size: DEFAULT_QUEUE_SIZE,
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            service_name: "switchyard".to_owned(),
        }
    }
}

pub(crate) fn compile_telemetry(spec: &TelemetrySpec, ctx: &Ctx) -> Result<Telemetry, ConfigError> {
    let d = Telemetry::default();
    let otlp_endpoint = match &spec.otlp_endpoint {
        Some(v) => {
            Some(parse_endpoint(v.get_ref()).map_err(|m| ctx.at(v, "telemetry.otlp_endpoint", m))?)
        }
        None => None,
    };
    let count = |v: Option<&Spanned<u64>>, key: &str, default: usize| -> Result<_, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        match usize::try_from(*v.get_ref()) {
            Ok(n) if n > 0 && n <= 1 << 20 => Ok(n),
            _ => Err(ctx.at(v, key, "must be between 1 and 1048576")),
        }
    };
    let service_name = match &spec.service_name {
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(ctx.at(v, "telemetry.service_name", "must not be empty"));
        }
        Some(v) => v.get_ref().clone(),
        None => d.service_name,
    };
    Ok(Telemetry {
        otlp_endpoint,
        sampling_ratio: ctx.fraction(
            spec.sampling_ratio.as_ref(),
            "telemetry.sampling_ratio",
            d.sampling_ratio,
        )?,
        batch_size: count(
            spec.batch_size.as_ref(),
            "telemetry.batch_size",
            d.batch_size,
        )?,
        batch_delay: ctx.duration(
            spec.batch_delay.as_ref(),
            "telemetry.batch_delay",
            d.batch_delay,
        )?,
        queue_size: count(
            spec.queue_size.as_ref(),
            "telemetry.queue_size",
            d.queue_size,
        )?,
        export_timeout: ctx.duration(
            spec.export_timeout.as_ref(),
            "telemetry.export_timeout",
            d.export_timeout,
        )?,
        service_name,
    })
}

/// An OTLP/HTTP traces URL: `http` or `https`, a host, the path as written (collectors take
/// `/v1/traces`; nothing is appended). The same rules as a webhook's URL.
fn parse_endpoint(text: &str) -> Result<Uri, String> {
    crate::notify::parse_http_url(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_http_and_a_host() {
        let ok = parse_endpoint("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(ok.path(), "/v1/traces");
        for bad in ["grpc://x:4317", "x:4318", "/v1/traces", "http://", ""] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }
}
