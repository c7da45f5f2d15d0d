//! Which endpoint a request is for, what it needs of the caller, and who answers it.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard_core::Body;

use crate::auth::{self, Need};
use crate::change::{self, Move, RuleMove};
use crate::reply::{respond, ApiError, JSON};
use crate::state::AdminState;
use crate::{actions, exposition, guard, kill, openapi, reads};

/// The admin API's endpoints; path parameters are kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    OpenApi,
    Status,
    Kill(String),
    Reload,
    Incidents,
    Incident(String),
    Ack(String),
    Audit,
    Rollback(String),
    Promote(String),
    Approve(String),
    Release(String),
    Experiments,
    Experiment(String),
}

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let endpoint = match segments.as_slice() {
            ["metrics"] => Endpoint::Metrics,
            ["admin", "openapi.json"] => Endpoint::OpenApi,
            ["admin", "status"] => Endpoint::Status,
            ["admin", "reload"] => Endpoint::Reload,
            ["admin", "incidents"] => Endpoint::Incidents,
            ["admin", "audit"] => Endpoint::Audit,
            ["admin", "experiments"] => Endpoint::Experiments,
            ["admin", "routes", route, "kill"] if !route.is_empty() => {
                Endpoint::Kill((*route).to_owned())
            }
            ["admin", "routes", route, "rollback"] if !route.is_empty() => {
                Endpoint::Rollback((*route).to_owned())
            }
            ["admin", "routes", route, "promote"] if !route.is_empty() => {
                Endpoint::Promote((*route).to_owned())
            }
            ["admin", "rules", rule, "approve"] if !rule.is_empty() => {
                Endpoint::Approve((*rule).to_owned())
            }
            ["admin", "rules", rule, "release"] if !rule.is_empty() => {
                Endpoint::Release((*rule).to_owned())
            }
            ["admin", "experiments", name] if !name.is_empty() => {
                Endpoint::Experiment((*name).to_owned())
            }
            ["admin", "incidents", id] if !id.is_empty() => Endpoint::Incident((*id).to_owned()),
            ["admin", "incidents", id, "ack"] if !id.is_empty() => Endpoint::Ack((*id).to_owned()),
            _ => return None,
        };
        Some(endpoint)
    }

    /// The methods served here, as the `Allow` header lists them.
    fn allowed(&self) -> &'static str {
        match self {
            Endpoint::Kill(_) => "POST, DELETE",
            Endpoint::Reload
            | Endpoint::Ack(_)
            | Endpoint::Rollback(_)
            | Endpoint::Promote(_)
            | Endpoint::Approve(_)
            | Endpoint::Release(_) => "POST",
            _ => "GET",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }

    fn need(&self) -> Need {
        match self {
            Endpoint::Kill(_)
            | Endpoint::Reload
            | Endpoint::Rollback(_)
            | Endpoint::Promote(_)
            | Endpoint::Approve(_)
            | Endpoint::Release(_) => Need::Operate,
            Endpoint::Ack(_) => Need::HumanOperator,
            _ => Need::Read,
        }
    }
}

fn not_allowed(endpoint: &Endpoint) -> Response<Body> {
    let allowed = endpoint.allowed();
    let message = format!("use {}", allowed.replace(", ", " or "));
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// Answers one admin request. The endpoint is resolved before the token is checked, so an
/// unknown path is a 404 and a wrong method a 405 whoever asks; everything past that needs a
/// valid token.
pub async fn route(state: AdminState, req: Request<Incoming>) -> Response<Body> {
    let Some(endpoint) = Endpoint::parse(req.uri().path()) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
            .into_response();
    };
    if !endpoint.allows(req.method()) {
        return not_allowed(&endpoint);
    }
    if endpoint == Endpoint::Metrics {
        // Prometheus scrapes without a token; the listener is not public.
        return respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            exposition::render(&state.metrics),
        );
    }
    if matches!(*req.method(), Method::POST | Method::DELETE) {
        if let Err(refusal) = guard::mutation(req.uri(), req.headers(), &state.allowed_hosts) {
            return refusal.into_response();
        }
    }
    if endpoint == Endpoint::OpenApi {
        // The document is public, like the repository it is committed in: it holds no state.
        return respond(StatusCode::OK, JSON, openapi::document_json().to_owned());
    }
    let principal = {
        // The tokens of the snapshot in force: a reload that revokes one applies at once.
        let snapshot = state.gateway.table();
        match auth::authorize(req.headers(), &snapshot.tokens, endpoint.need()) {
            Ok(principal) => principal,
            Err(refusal) => return refusal.into_response(),
        }
    };
    let (parts, body) = req.into_parts();
    dispatch(&state, &principal, endpoint, &parts, body).await
}

/// Hands an authorised request to its handler: one arm per endpoint and method.
async fn dispatch(
    state: &AdminState,
    principal: &auth::Principal,
    endpoint: Endpoint,
    parts: &http::request::Parts,
    body: Incoming,
) -> Response<Body> {
    match endpoint {
        Endpoint::Metrics | Endpoint::OpenApi | Endpoint::Status => reads::status(state),
        Endpoint::Incidents => reads::incidents(state).await,
        Endpoint::Incident(id) => reads::incident(state, &id).await,
        Endpoint::Audit => reads::audit(state, parts.uri.query()).await,
        Endpoint::Kill(route) if parts.method == Method::DELETE => {
            kill::revive(state, principal, &route, parts.uri.query(), body).await
        }
        Endpoint::Kill(route) => {
            kill::kill(state, principal, &route, parts.uri.query(), body).await
        }
        Endpoint::Reload => actions::reload(state, principal, body).await,
        Endpoint::Ack(id) => actions::ack(state, principal, &id, body).await,
        Endpoint::Rollback(route) => {
            let query = parts.uri.query();
            change::shift(state, principal, &route, (query, body), Move::Rollback).await
        }
        Endpoint::Promote(route) => {
            let query = parts.uri.query();
            change::shift(state, principal, &route, (query, body), Move::Promote).await
        }
        Endpoint::Approve(rule) => {
            let query = parts.uri.query();
            change::rule(state, principal, &rule, (query, body), RuleMove::Approve).await
        }
        Endpoint::Release(rule) => {
            let query = parts.uri.query();
            change::rule(state, principal, &rule, (query, body), RuleMove::Release).await
        }
        Endpoint::Experiments => change::experiments(state),
        Endpoint::Experiment(name) => change::experiment(state, &name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(Endpoint::parse("/metrics"), Some(Endpoint::Metrics));
        assert_eq!(
            Endpoint::parse("/admin/routes/support/kill"),
            Some(Endpoint::Kill("support".into()))
        );
        assert_eq!(
            Endpoint::parse("/admin/incidents/inc-1/ack"),
            Some(Endpoint::Ack("inc-1".into()))
        );
        assert_eq!(Endpoint::parse("/admin/routes//kill"), None);
        assert_eq!(Endpoint::parse("/admin/status/"), None);
        assert_eq!(Endpoint::parse("/admin"), None);
        assert_eq!(Endpoint::parse(""), None);
    }

    #[test]
    fn methods() {
        let kill = Endpoint::Kill("r".into());
        assert!(kill.allows(&Method::POST) && kill.allows(&Method::DELETE));
        assert!(!kill.allows(&Method::GET));
        assert!(!Endpoint::Status.allows(&Method::HEAD));
    }

    /// The OpenAPI document and the router describe the same endpoints with the same methods.
    // Long: one pass over every path and method of the document, then over the router's.
    #[test]
    fn the_openapi_document_covers_the_router() {
        let doc: serde_json::Value = serde_json::from_str(openapi::document_json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut seen = Vec::new();
        for (template, operations) in paths {
            let path = template.replace(['{', '}'], "");
            let endpoint = Endpoint::parse(&path)
                .unwrap_or_else(|| panic!("{template} is in the document, not in the router"));
            let mut methods: Vec<String> = operations
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            methods.sort();
            let mut allowed: Vec<&str> = endpoint.allowed().split(", ").collect();
            allowed.sort_unstable();
            assert_eq!(methods, allowed, "{template}");
            seen.push(std::mem::discriminant(&endpoint));
        }
        // Every kind of endpoint the router knows is documented.
        let all = [
            Endpoint::Metrics,
            Endpoint::OpenApi,
            Endpoint::Status,
            Endpoint::Kill(String::new()),
            Endpoint::Reload,
            Endpoint::Incidents,
            Endpoint::Incident(String::new()),
            Endpoint::Ack(String::new()),
            Endpoint::Audit,
            Endpoint::Rollback(String::new()),
            Endpoint::Promote(String::new()),
            Endpoint::Approve(String::new()),
            Endpoint::Release(String::new()),
            Endpoint::Experiments,
            Endpoint::Experiment(String::new()),
        ];
        for endpoint in &all {
            // A new variant must be added above: this match has no wildcard.
            match endpoint {
                Endpoint::Metrics
                | Endpoint::OpenApi
                | Endpoint::Status
                | Endpoint::Kill(_)
                | Endpoint::Reload
                | Endpoint::Incidents
                | Endpoint::Incident(_)
                | Endpoint::Ack(_)
                | Endpoint::Audit
                | Endpoint::Rollback(_)
                | Endpoint::Promote(_)
                | Endpoint::Approve(_)
                | Endpoint::Release(_)
                | Endpoint::Experiments
                | Endpoint::Experiment(_) => {}
            }
            assert!(
                seen.contains(&std::mem::discriminant(endpoint)),
                "{endpoint:?} is served but not in the OpenAPI document"
            );
        }
    }
}
