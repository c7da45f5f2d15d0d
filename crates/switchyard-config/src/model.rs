//! `[models."name"]`: context windows, prices and the other names a model goes by.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::{join, ConfigError};

/// One `[models."name"]` table as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelSpec {
    /// Required, > 0. Tokens the model accepts (prompt + completion).
    #[schemars(with = "u64")]
    context_window: Spanned<u64>,
    /// Default 0. USD per million input tokens.
    #[schemars(with = "Option<f64>")]
    input_usd_per_mtok: Option<Spanned<f64>>,
    /// Default 0. USD per million output tokens.
    #[schemars(with = "Option<f64>")]
    output_usd_per_mtok: Option<Spanned<f64>>,
    /// Default: the input price. USD per million prompt tokens read from the prompt cache.
    #[schemars(with = "Option<f64>")]
    cache_read_usd_per_mtok: Option<Spanned<f64>>,
    /// Default: the input price. USD per million prompt tokens written to the prompt cache.
    #[schemars(with = "Option<f64>")]
    cache_write_usd_per_mtok: Option<Spanned<f64>>,
    /// Default none. Other names (e.g. versioned names responses carry) that map to this model.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    aliases: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub context_window: u64,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    /// None: cached prompt tokens are priced as input.
    pub cache_read_usd_per_mtok: Option<f64>,
    pub cache_write_usd_per_mtok: Option<f64>,
    pub aliases: Vec<String>,
}

pub(crate) type ModelSpecs = BTreeMap<Spanned<String>, Spanned<ModelSpec>>;

pub(crate) fn compile_models(
    specs: &ModelSpecs,
    ctx: &Ctx,
) -> Result<BTreeMap<String, Model>, ConfigError> {
    // Every name and alias must resolve to one model; remember where each was claimed.
    let mut claimed: BTreeMap<&str, &str> = specs.keys().map(|k| (&**k.get_ref(), "")).collect();
    let mut models = BTreeMap::new();
    for (name, spec) in specs {
        let key = join("models", name.get_ref());
        if name.get_ref().is_empty() {
            return Err(ctx.at(name, "models", "a model name must not be empty"));
        }
        let model = compile_model(spec.get_ref(), &key, ctx)?;
        for (i, alias) in spec.get_ref().aliases.iter().enumerate() {
            let alias_key = format!("{key}.aliases[{i}]");
            if alias.get_ref().is_empty() {
                return Err(ctx.at(alias, &alias_key, "an alias must not be empty"));
            }
            if let Some(owner) = claimed.insert(alias.get_ref(), name.get_ref()) {
                let msg = if owner.is_empty() {
                    format!("alias {:?} is already a model name", alias.get_ref())
                } else {
                    format!(
                        "alias {:?} is already claimed by model {owner:?}",
                        alias.get_ref()
                    )
                };
                return Err(ctx.at(alias, &alias_key, msg));
            }
        }
        models.insert(name.get_ref().clone(), model);
    }
    Ok(models)
}

fn compile_model(spec: &ModelSpec, key: &str, ctx: &Ctx) -> Result<Model, ConfigError> {
    let window_key = format!("{key}.context_window");
    let context_window = ctx.positive(Some(&spec.context_window), &window_key, 0)?;
    Ok(Model {
        context_window,
        input_usd_per_mtok: price(
            spec.input_usd_per_mtok.as_ref(),
            key,
            "input_usd_per_mtok",
            ctx,
        )?,
        output_usd_per_mtok: price(
            spec.output_usd_per_mtok.as_ref(),
            key,
            "output_usd_per_mtok",
            ctx,
        )?,
        cache_read_usd_per_mtok: spec
            .cache_read_usd_per_mtok
            .as_ref()
            .map(|v| price(Some(v), key, "cache_read_usd_per_mtok", ctx))
            .transpose()?,
        cache_write_usd_per_mtok: spec
            .cache_write_usd_per_mtok
            .as_ref()
            .map(|v| price(Some(v), key, "cache_write_usd_per_mtok", ctx))
            .transpose()?,
        aliases: spec.aliases.iter().map(|a| a.get_ref().clone()).collect(),
    })
}

fn price(v: Option<&Spanned<f64>>, key: &str, field: &str, ctx: &Ctx) -> Result<f64, ConfigError> {
    let Some(v) = v else { return Ok(0.0) };
    let x = *v.get_ref();
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        let msg = format!("must be a finite number >= 0, got {x}");
        Err(ctx.at(v, &format!("{key}.{field}"), msg))
    }
}
