//! Warnings that need more than one section: legal configurations that are probably mistakes.

use std::collections::BTreeMap;

use crate::ctx::Ctx;
use crate::error::join;
use crate::kill_switch::Fallback;
use crate::route::Route;
use crate::upstream::Upstream;

pub(crate) fn lint(routes: &[Route], upstreams: &BTreeMap<String, Upstream>, ctx: &mut Ctx) {
    if routes.is_empty() {
        ctx.warn(None, "routes", "no routes: every request answers 404");
    }
    for (name, upstream) in upstreams {
        // A kill-switch fallback also sends traffic there, while its route is killed; so do
        // a rollout's green and an experiment's variant.
        let used = routes.iter().any(|r| {
            &r.upstream == name
                || matches!(&r.kill_switch.fallback, Some(Fallback::Upstream(f)) if f == name)
                || r.rollout.as_ref().is_some_and(|o| &o.green == name)
                || r.experiments
                    .iter()
                    .any(|e| e.upstream.as_ref() == Some(name))
        });
        if !used {
            let key = join("upstreams", name);
            let msg = format!("no route sends traffic to upstream {name:?}");
            ctx.warn_line(Some(upstream.line), &key, msg);
        }
    }
    for (j, later) in routes.iter().enumerate() {
        let twin = routes.iter().take(j).find(|r| r.matcher == later.matcher);
        if let Some(first) = twin {
            let msg = format!(
                "route {:?} matches exactly the same requests as route {:?} (line {}); only one of them can get traffic",
                later.name, first.name, first.line
            );
            ctx.warn_line(Some(later.line), &format!("routes[{j}].match"), msg);
        }
    }
}

/// Models a variant or a downgrade rewrites requests to should be known: an unknown one has
/// no price (its cost reads 0, which flatters it in every comparison) and no context window.
pub(crate) fn lint_models(
    routes: &[Route],
    rules: &[crate::Rule],
    models: &BTreeMap<String, crate::Model>,
    ctx: &mut Ctx,
) {
    let known = |name: &str| {
        models.contains_key(name) || models.values().any(|m| m.aliases.iter().any(|a| a == name))
    };
    for (i, route) in routes.iter().enumerate() {
        for (j, experiment) in route.experiments.iter().enumerate() {
            if let Some(model) = experiment.set_model.as_deref().filter(|m| !known(m)) {
                let key = format!("routes[{i}].experiments[{j}].variant.set_model");
                let msg = format!("model {model:?} is not in [models]: its cost reads 0 and its metrics label is \"other\"");
                ctx.warn_line(Some(experiment.line), &key, msg);
            }
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(model) = rule.downgrade_to.as_deref().filter(|m| !known(m)) {
            let key = format!("rules[{i}].downgrade_to");
            let msg = format!("model {model:?} is not in [models]: its cost reads 0 and its metrics label is \"other\"");
            ctx.warn_line(Some(rule.line), &key, msg);
        }
    }
}
