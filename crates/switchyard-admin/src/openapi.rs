//! The admin API's OpenAPI 3.1 document, built from the request and answer types the handlers
//! use, served at `GET /admin/openapi.json` and committed as docs/openapi.json.
//!
//! The paths are declared here, one per endpoint and method; a test checks them against the
//! router both ways, and the schemas are derived from the very types the handlers serialise.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::actions::{AckBody, Acknowledged, Applied, Rejected, ReloadBody};
use crate::change::{ExperimentList, RuleAnswer, RuleBody, ShiftAnswer, ShiftBody};
use crate::kill::{KillBody, ReviveBody};
use crate::mutation::FlipAnswer;
use crate::reads::{AuditPage, IncidentList};
use crate::reply::ErrorBody;
use crate::status::Status;
use switchyard_control::experiment::ExperimentView;
use switchyard_control::incidents::Incident;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchyard admin API",
        description = "The admin listener of switchyard: what is in force, and the levers \
                       (kill switches, rollbacks, promotions, rule approvals, reloads, incident \
                       acknowledgements). Every endpoint but `/metrics` and \
                       `/admin/openapi.json` needs a bearer token from `[[admin.tokens]]`; \
                       mutations need an operator token. Every error answer is \
                       `{\"error\":{\"code\",\"message\"}}`. See docs/admin-api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        metrics,
        openapi_json,
        status,
        kill,
        revive,
        rollback,
        promote,
        approve,
        release,
        experiments,
        experiment,
        reload,
        incidents,
        incident,
        ack,
        audit,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "read", description = "What is in force; any token"),
        (name = "act", description = "Levers; an operator token, audited"),
        (name = "public", description = "No token"),
    )
)]
struct AdminApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A secret from `[[admin.tokens]]` (`token_env` or `token_file`)",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document, built from the types.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as `GET /admin/openapi.json` serves it and docs/openapi.json holds it:
/// pretty-printed, with a final newline.
pub fn document_json() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| match document().to_pretty_json() {
        Ok(text) => format!("{text}\n"),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document could not be encoded");
            "{}\n".to_owned()
        }
    })
}

// The path declarations. Their bodies are empty: the handlers are in reads, kill, change and
// actions, reached through the router; these only describe them. Each attribute is one endpoint's
// document, kept whole and literal so that it reads like the JSON it becomes.

/// Prometheus text exposition; no token.
#[utoipa::path(get, path = "/metrics", tag = "public", security(()),
    responses((status = 200, description = "Every metric family (docs/metrics.md)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// This document; no token.
#[utoipa::path(get, path = "/admin/openapi.json", tag = "public", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

/// What is in force now.
#[utoipa::path(get, path = "/admin/status", tag = "read",
    responses(
        (status = 200, description = "Routes, kill switches, rollouts, alerts and rules firing", body = Status),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn status() {}

/// Engages the route's kill switch and opens an incident.
#[utoipa::path(post, path = "/admin/routes/{route}/kill", tag = "act",
    params(("route" = String, Path, description = "A route name", example = "support")),
    request_body(content = KillBody, content_type = "application/json"),
    responses(
        (status = 200, description = "In force and saved", body = FlipAnswer),
        (status = 400, description = "No reason, or a bad percent or segment", body = ErrorBody),
        (status = 404, description = "No such route (`unknown_route`)", body = ErrorBody),
        (status = 503, description = "In force but not saved (`state_not_saved`): the answer plus `error`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn kill() {}

/// Releases the route's kill switch.
#[utoipa::path(delete, path = "/admin/routes/{route}/kill", tag = "act",
    params(("route" = String, Path, description = "A route name", example = "support")),
    request_body(content = Option<ReviveBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Released and saved", body = FlipAnswer),
        (status = 404, description = "No such route and no switch left for it", body = ErrorBody),
        (status = 503, description = "Released but not saved: the answer plus `error`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn revive() {}

/// Sends every user of the route's rollout back to blue and opens an incident.
#[utoipa::path(post, path = "/admin/routes/{route}/rollback", tag = "act",
    params(("route" = String, Path, description = "A route name", example = "support"),
        ("local" = Option<bool>, Query, description = "Fleet mode: make the change on this replica only (divergent, replayed into Redis when it is back)")),
    request_body(content = Option<ShiftBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rolled back (in fleet mode: Redis accepted it and this replica applied it)", body = ShiftAnswer),
        (status = 404, description = "`unknown_route` or `no_rollout`", body = ErrorBody),
        (status = 409, description = "`already_there` (also when another replica decided first)", body = ErrorBody),
        (status = 503, description = "`fleet_unavailable`: Redis did not take the change; nothing changed", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn rollback() {}

/// Sends every user of the route's rollout to green.
#[utoipa::path(post, path = "/admin/routes/{route}/promote", tag = "act",
    params(("route" = String, Path, description = "A route name", example = "support"),
        ("local" = Option<bool>, Query, description = "Fleet mode: make the change on this replica only (divergent, replayed into Redis when it is back)")),
    request_body(content = Option<ShiftBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Promoted (in fleet mode: Redis accepted it and this replica applied it)", body = ShiftAnswer),
        (status = 404, description = "`unknown_route` or `no_rollout`", body = ErrorBody),
        (status = 409, description = "`already_there` (also when another replica decided first)", body = ErrorBody),
        (status = 503, description = "`fleet_unavailable`: Redis did not take the change; nothing changed", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn promote() {}

/// Puts in force the model downgrade a rule waits on.
#[utoipa::path(post, path = "/admin/rules/{rule}/approve", tag = "act",
    params(("rule" = String, Path, description = "A rule name", example = "token_explosion"),
        ("local" = Option<bool>, Query, description = "Fleet mode: make the change on this replica only (divergent, replayed into Redis when it is back)")),
    request_body(content = Option<RuleBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Approved (in fleet mode: for every replica, once Redis accepted it and this replica applied it)", body = RuleAnswer),
        (status = 503, description = "`fleet_unavailable`: Redis did not take the change; nothing changed", body = ErrorBody),
        (status = 404, description = "`unknown_rule` or `unknown_route`", body = ErrorBody),
        (status = 409, description = "`not_awaiting_approval` or `not_a_downgrade`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn approve() {}

/// Lifts a rule's model downgrade.
#[utoipa::path(post, path = "/admin/rules/{rule}/release", tag = "act",
    params(("rule" = String, Path, description = "A rule name", example = "token_explosion"),
        ("local" = Option<bool>, Query, description = "Fleet mode: make the change on this replica only (divergent, replayed into Redis when it is back)")),
    request_body(content = Option<RuleBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Released (in fleet mode: for every replica, once Redis accepted it and this replica applied it)", body = RuleAnswer),
        (status = 503, description = "`fleet_unavailable`: Redis did not take the change; nothing changed", body = ErrorBody),
        (status = 404, description = "`unknown_rule` or `unknown_route`", body = ErrorBody),
        (status = 409, description = "`not_in_force` or `not_a_downgrade`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn release() {}

/// Every experiment's figures and verdict.
#[utoipa::path(get, path = "/admin/experiments", tag = "read",
    responses(
        (status = 200, description = "The experiments", body = ExperimentList),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn experiments() {}

/// One experiment's figures and verdict.
#[utoipa::path(get, path = "/admin/experiments/{name}", tag = "read",
    params(("name" = String, Path, description = "An experiment name", example = "research-mini")),
    responses(
        (status = 200, description = "The experiment", body = ExperimentView),
        (status = 404, description = "`unknown_experiment`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn experiment() {}

/// Re-reads the configuration file and puts it in force.
#[utoipa::path(post, path = "/admin/reload", tag = "act",
    request_body(content = Option<ReloadBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied", body = Applied),
        (status = 422, description = "Rejected: the version in force stays", body = Rejected),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn reload() {}

/// The incidents, newest first.
#[utoipa::path(get, path = "/admin/incidents", tag = "read",
    responses(
        (status = 200, description = "Summaries", body = IncidentList),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn incidents() {}

/// One incident, in full.
#[utoipa::path(get, path = "/admin/incidents/{id}", tag = "read",
    params(("id" = String, Path, description = "An incident id")),
    responses(
        (status = 200, description = "The incident", body = Incident),
        (status = 404, description = "`unknown_incident`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn incident() {}

/// Acknowledges an incident; a human operator's token only.
#[utoipa::path(post, path = "/admin/incidents/{id}/ack", tag = "act",
    params(("id" = String, Path, description = "An incident id")),
    request_body(content = Option<AckBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The incident, acknowledged", body = Acknowledged),
        (status = 403, description = "`forbidden` or `humans_only`", body = ErrorBody),
        (status = 404, description = "`unknown_incident`", body = ErrorBody),
        (status = 409, description = "`already_acknowledged`", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn ack() {}

/// The last audit entries, oldest first.
#[utoipa::path(get, path = "/admin/audit", tag = "read",
    params(("limit" = Option<u32>, Query, minimum = 1, description = "How many entries: default 100, at most 1000 (more is taken as 1000)")),
    responses(
        (status = 200, description = "The entries", body = AuditPage),
        (status = 400, description = "A limit that is not a whole number from 1", body = ErrorBody),
        (status = "default", description = "A refusal", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/openapi.json is this document; a change to the types or paths must regenerate it.
    #[test]
    fn the_committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = document_json();
        if std::env::var_os("SWITCHYARD_BLESS").is_some() {
            std::fs::write(&path, generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date with the admin API's types; regenerate it with \
             `switchyard openapi > docs/openapi.json` \
             (or SWITCHYARD_BLESS=1 cargo test -p switchyard-admin --lib openapi)"
        );
    }

    #[test]
    fn every_answer_and_body_has_a_schema() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Status",
            "FlipAnswer",
            "KillBody",
            "Incident",
            "AuditEntry",
            "ErrorBody",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        let refs = document_json()
            .matches("\"$ref\": \"#/components/schemas/")
            .count();
        assert!(refs > 20, "{refs}");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
