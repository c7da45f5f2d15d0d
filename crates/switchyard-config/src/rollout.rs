//! `[routes.rollout]`, `[routes.rollback]` and `[[routes.experiments]]`: changing what serves a
//! route, safely.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::{join, ConfigError};
use crate::upstream::Upstream;

/// The seed's stages: 5 % → 25 % → 100 %.
pub const DEFAULT_STAGES: [f64; 3] = [5.0, 25.0, 100.0];
pub const DEFAULT_BAKE: Duration = Duration::from_secs(600);
pub const DEFAULT_MIN_REQUESTS: u64 = 500;

/// `[routes.rollout]` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutSpec {
    /// Required: the upstream serving today.
    #[schemars(with = "String")]
    blue: Spanned<String>,
    /// Required: the upstream being rolled out.
    #[schemars(with = "String")]
    green: Spanned<String>,
    /// Percent of users on green at each stage, rising, ending at 100. Default [5, 25, 100].
    #[schemars(with = "Option<Vec<f64>>")]
    stages: Option<Spanned<Vec<Spanned<f64>>>>,
    /// Time at each stage before advancing. Default `10m`.
    #[schemars(with = "Option<String>")]
    bake: Option<Spanned<String>>,
    /// Green requests a stage needs before advancing. Default 500.
    #[schemars(with = "Option<u64>")]
    min_requests: Option<Spanned<u64>>,
}

/// `[routes.rollback]` as written: the seed's triggers.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackSpec {
    /// Green's error rate over `error_window`, `0..=1`. Default 0.05.
    #[schemars(with = "Option<f64>")]
    error_rate: Option<Spanned<f64>>,
    /// The window every trigger is judged over. Default `2m`.
    #[schemars(with = "Option<String>")]
    error_window: Option<Spanned<String>>,
    /// Green's p99 latency. Default `60s`.
    #[schemars(with = "Option<String>")]
    p99_latency: Option<Spanned<String>>,
    /// Green's cost per request over blue's, minus one. Default 0.5 (50 % more).
    #[schemars(with = "Option<f64>")]
    cost_increase: Option<Spanned<f64>>,
    /// Rate of an error class blue did not show in the window, `0..=1`. Default 0.001.
    #[schemars(with = "Option<f64>")]
    new_error_class_rate: Option<Spanned<f64>>,
    /// How far back a class blue produced still counts as known. Default `24h`.
    #[schemars(with = "Option<String>")]
    new_error_class_lookback: Option<Spanned<String>>,
    /// Green requests in the window before any trigger is judged. Default 20.
    #[schemars(with = "Option<u64>")]
    min_requests: Option<Spanned<u64>>,
    /// Any firing alert of the route rolls back while traffic is shifting. Default true.
    on_alert: Option<bool>,
}

/// `[[routes.experiments]]` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentSpec {
    /// Required, unique across routes, `[a-z0-9_-]+`.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Required: fraction of users in the variant, `0..=1`.
    #[schemars(with = "f64")]
    share: Spanned<f64>,
    /// Required: what the variant changes.
    #[schemars(with = "VariantSpec")]
    variant: Spanned<VariantSpec>,
    /// False-positive rate of the sequential test, in (0, 0.5]. Default 0.05.
    #[schemars(with = "Option<f64>")]
    alpha: Option<Spanned<f64>>,
}

impl ExperimentSpec {
    pub(crate) fn name_span(&self) -> std::ops::Range<usize> {
        self.name.span()
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VariantSpec {
    #[schemars(with = "Option<String>")]
    set_model: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    upstream: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    headers: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// A validated rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub blue: String,
    pub green: String,
    /// Percent of users on green, strictly rising, the last 100.
    pub stages: Vec<f64>,
    pub bake: Duration,
    pub min_requests: u64,
}

/// Validated rollback triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub error_rate: f64,
    pub window: Duration,
    pub p99_latency: Duration,
    pub cost_increase: f64,
    pub new_error_class_rate: f64,
    /// An error class blue produced within this span (or since the rollout started) is not new.
    pub new_error_class_lookback: Duration,
    pub min_requests: u64,
    pub on_alert: bool,
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            error_rate: 0.05,
            window: Duration::from_secs(120),
            p99_latency: Duration::from_secs(60),
            cost_increase: 0.5,
            new_error_class_rate: 0.001,
            new_error_class_lookback: Duration::from_secs(24 * 3600),
            min_requests: 20,
            on_alert: true,
        }
    }
}

/// A validated A/B experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    pub name: String,
    /// Fraction of users in the variant, as parts per million (kept exact for `Eq`).
    pub share_ppm: u32,
    pub set_model: Option<String>,
    pub upstream: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The test's false-positive rate, as parts per million.
    pub alpha_ppm: u32,
    pub line: usize,
}

impl Experiment {
    pub fn share(&self) -> f64 {
        f64::from(self.share_ppm) / 1e6
    }

    pub fn alpha(&self) -> f64 {
        f64::from(self.alpha_ppm) / 1e6
    }
}

fn known_upstream(
    name: &Spanned<String>,
    key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<String, ConfigError> {
    if upstreams.contains_key(name.get_ref()) {
        return Ok(name.get_ref().clone());
    }
    let msg = crate::upstream::unknown_upstream(name.get_ref(), upstreams);
    Err(ctx.at(name, key, msg))
}

pub(crate) fn compile_rollout(
    spec: &RolloutSpec,
    route_key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<Rollout, ConfigError> {
    let key = format!("{route_key}.rollout");
    let blue = known_upstream(&spec.blue, &format!("{key}.blue"), upstreams, ctx)?;
    let green = known_upstream(&spec.green, &format!("{key}.green"), upstreams, ctx)?;
    if blue == green {
        let msg = "green is the same upstream as blue: a rollout needs two upstreams";
        return Err(ctx.at(&spec.green, &format!("{key}.green"), msg));
    }
    let stages = match &spec.stages {
        None => DEFAULT_STAGES.to_vec(),
        Some(list) => {
            let mut stages = Vec::with_capacity(list.get_ref().len());
            for (i, stage) in list.get_ref().iter().enumerate() {
                let p = *stage.get_ref();
                let stage_key = format!("{key}.stages[{i}]");
                if !(p > 0.0 && p <= 100.0) {
                    let msg = format!("must be a percentage above 0 and at most 100, got {p}");
                    return Err(ctx.at(stage, &stage_key, msg));
                }
                if stages.last().is_some_and(|&last| p <= last) {
                    let msg = "stages must rise: each is a larger share of users on green";
                    return Err(ctx.at(stage, &stage_key, msg));
                }
                stages.push(p);
            }
            if stages.last() != Some(&100.0) {
                let msg = "the last stage must be 100: a rollout ends with every user on green";
                return Err(ctx.at(list, &format!("{key}.stages"), msg));
            }
            stages
        }
    };
    let bake = ctx.duration(spec.bake.as_ref(), &format!("{key}.bake"), DEFAULT_BAKE)?;
    // Zero would advance on time alone: a stage must see green serve before it moves on.
    let min_requests = ctx.positive(
        spec.min_requests.as_ref(),
        &format!("{key}.min_requests"),
        DEFAULT_MIN_REQUESTS,
    )?;
    Ok(Rollout {
        blue,
        green,
        stages,
        bake,
        min_requests,
    })
}

pub(crate) fn compile_rollback(
    spec: Option<&Spanned<RollbackSpec>>,
    route_key: &str,
    has_rollout: bool,
    ctx: &mut Ctx,
) -> Result<Rollback, ConfigError> {
    let d = Rollback::default();
    let Some(spanned) = spec else { return Ok(d) };
    let key = format!("{route_key}.rollback");
    if !has_rollout {
        let msg = "has no effect without [routes.rollout]: there is no green to roll back";
        ctx.warn(Some(&spanned.span()), &key, msg);
    }
    let s = spanned.get_ref();
    let error_rate = ctx.fraction(
        s.error_rate.as_ref(),
        &format!("{key}.error_rate"),
        d.error_rate,
    )?;
    let window = ctx.duration(
        s.error_window.as_ref(),
        &format!("{key}.error_window"),
        d.window,
    )?;
    let p99_latency = ctx.duration(
        s.p99_latency.as_ref(),
        &format!("{key}.p99_latency"),
        d.p99_latency,
    )?;
    let cost_increase = rollback_cost_increase(s, &key, d.cost_increase, ctx)?;
    let new_error_class_rate = ctx.fraction(
        s.new_error_class_rate.as_ref(),
        &format!("{key}.new_error_class_rate"),
        d.new_error_class_rate,
    )?;
    let new_error_class_lookback = ctx.duration(
        s.new_error_class_lookback.as_ref(),
        &format!("{key}.new_error_class_lookback"),
        d.new_error_class_lookback,
    )?;
    let min_requests = ctx.positive(
        s.min_requests.as_ref(),
        &format!("{key}.min_requests"),
        d.min_requests,
    )?;
    Ok(Rollback {
        error_rate,
        window,
        p99_latency,
        cost_increase,
        new_error_class_rate,
        new_error_class_lookback,
        min_requests,
        on_alert: s.on_alert.unwrap_or(d.on_alert),
    })
}

/// `cost_increase`: a finite ratio of 0 or more.
fn rollback_cost_increase(
    s: &RollbackSpec,
    key: &str,
    default: f64,
    ctx: &Ctx,
) -> Result<f64, ConfigError> {
    match &s.cost_increase {
        Some(v) if *v.get_ref() >= 0.0 && v.get_ref().is_finite() => Ok(*v.get_ref()),
        Some(v) => {
            let msg = format!(
                "must be 0 or more (0.5 = green may cost 50 % more per request), got {}",
                v.get_ref()
            );
            Err(ctx.at(v, &format!("{key}.cost_increase"), msg))
        }
        None => Ok(default),
    }
}

pub(crate) fn compile_experiments(
    specs: &[Spanned<ExperimentSpec>],
    route_key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<Vec<Experiment>, ConfigError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spanned)| {
            let key = format!("{route_key}.experiments[{i}]");
            compile_experiment(spanned, &key, upstreams, ctx)
        })
        .collect()
}

fn compile_experiment(
    spanned: &Spanned<ExperimentSpec>,
    key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<Experiment, ConfigError> {
    let s = spanned.get_ref();
    let name = s.name.get_ref();
    if !crate::ctx::is_label_name(name) {
        let msg = format!("invalid experiment name {name:?}: use [a-z0-9_-]+ (it becomes a metric label and a URL segment)");
        return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
    }
    if name == "control" || name == "none" {
        let msg = format!("{name:?} is reserved: it labels requests outside every variant");
        return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
    }
    let share = ctx.fraction(Some(&s.share), &format!("{key}.share"), 0.0)?;
    let v = s.variant.get_ref();
    let upstream = match &v.upstream {
        Some(u) => Some(known_upstream(
            u,
            &format!("{key}.variant.upstream"),
            upstreams,
            ctx,
        )?),
        None => None,
    };
    let set_model = match &v.set_model {
        Some(m) if m.get_ref().trim().is_empty() => {
            return Err(ctx.at(m, &format!("{key}.variant.set_model"), "must not be empty"))
        }
        Some(m) => Some(m.get_ref().clone()),
        None => None,
    };
    let headers = variant_headers(v, key, ctx)?;
    let alpha = experiment_alpha(s, key, ctx)?;
    if set_model.is_none() && upstream.is_none() && headers.is_empty() {
        let msg = "the variant changes nothing: set set_model, upstream or headers";
        return Err(ctx.at(&s.variant, &format!("{key}.variant"), msg));
    }
    Ok(Experiment {
        name: name.clone(),
        share_ppm: (share * 1e6).round() as u32,
        set_model,
        upstream,
        headers,
        alpha_ppm: (alpha * 1e6).round() as u32,
        line: ctx.line(&spanned.span()),
    })
}

/// `variant.headers`: valid names and values, each name once (names ignore case).
fn variant_headers(
    v: &VariantSpec,
    key: &str,
    ctx: &Ctx,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(v.headers.len());
    for (h, value) in &v.headers {
        let header_key = join(&format!("{key}.variant.headers"), h.get_ref());
        let name =
            HeaderName::from_bytes(h.get_ref().to_ascii_lowercase().as_bytes()).map_err(|_| {
                ctx.at(
                    h,
                    &header_key,
                    format!("invalid header name {:?}", h.get_ref()),
                )
            })?;
        let value = HeaderValue::from_str(value.get_ref()).map_err(|_| {
            ctx.at(
                value,
                &header_key,
                format!("invalid header value {:?}", value.get_ref()),
            )
        })?;
        if headers.iter().any(|(seen, _)| *seen == name) {
            let msg = format!("header {name} is set twice (header names ignore case)");
            return Err(ctx.at(h, &header_key, msg));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

/// `alpha`: in (0, 0.5], default 0.05.
fn experiment_alpha(s: &ExperimentSpec, key: &str, ctx: &Ctx) -> Result<f64, ConfigError> {
    match &s.alpha {
        Some(a) if *a.get_ref() > 0.0 && *a.get_ref() <= 0.5 => Ok(*a.get_ref()),
        Some(a) => {
            let msg = format!(
                "must be above 0 and at most 0.5 (the false-positive rate), got {}",
                a.get_ref()
            );
            Err(ctx.at(a, &format!("{key}.alpha"), msg))
        }
        None => Ok(0.05),
    }
}
