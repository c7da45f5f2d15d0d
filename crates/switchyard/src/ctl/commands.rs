//! Each ctl command: one request, the answer checked, then rendered (or passed through as JSON).

use hyper::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::api::{
    Audit, ErrorBody, Experiment, Incident, Incidents, KillReply, ReloadReply, RuleReply,
    ShiftReply, Status,
};
use super::client::{segment, Admin, Effect, Reply, EXIT_AUTH, EXIT_REFUSED};
use super::history::{render_ack, render_audit, render_incident, render_incidents};
use super::render::{
    persistence_warning, render_experiment, render_kill, render_reload, render_revive, render_rule,
    render_shift, render_status, server_warning,
};
use super::text::{clip, View};
use super::{CtlCommand, Failure, Output};

/// Runs the command against the admin API.
// Long on purpose: one match over every command, each arm a request and its rendering.
pub async fn execute(
    admin: &Admin,
    command: &CtlCommand,
    json: bool,
    view: &View,
) -> Result<Output, Failure> {
    match command {
        CtlCommand::Status => {
            let reply = read(admin, "/admin/status".into()).await?;
            finish::<Status>(reply, json, |s| render_status(s, view), |_| None)
        }
        CtlCommand::Kill {
            route,
            reason,
            percent,
            segment: seg,
        } => {
            let body = kill_body(reason, *percent, seg.as_ref());
            let reply = mutate(admin, Method::POST, kill_path(route), Some(body)).await?;
            finish::<KillReply>(reply, json, |r| render_kill(r, view), persistence_warning)
        }
        CtlCommand::Revive { route, reason } => {
            let body = reason.as_ref().map(|r| json!({ "reason": r }));
            let reply = mutate(admin, Method::DELETE, kill_path(route), body).await?;
            finish::<KillReply>(reply, json, render_revive, persistence_warning)
        }
        CtlCommand::Rollback { route, reason } | CtlCommand::Promote { route, reason } => {
            let action = if matches!(command, CtlCommand::Rollback { .. }) {
                "rollback"
            } else {
                "promote"
            };
            let body = reason.as_ref().map(|r| json!({ "reason": r }));
            let path = format!("/admin/routes/{}/{action}", segment(route));
            let reply = mutate(admin, Method::POST, path, body).await?;
            finish::<ShiftReply>(
                reply,
                json,
                |r| render_shift(r, action),
                |r| server_warning(r.warning.as_ref()),
            )
        }
        CtlCommand::Approve { rule, route } | CtlCommand::Release { rule, route } => {
            let action = if matches!(command, CtlCommand::Approve { .. }) {
                "approve"
            } else {
                "release"
            };
            let body = route.as_ref().map(|r| json!({ "route": r }));
            let path = format!("/admin/rules/{}/{action}", segment(rule));
            let reply = mutate(admin, Method::POST, path, body).await?;
            finish::<RuleReply>(reply, json, render_rule, |r| {
                server_warning(r.warning.as_ref())
            })
        }
        CtlCommand::Experiment { name } => {
            let reply = read(admin, format!("/admin/experiments/{}", segment(name))).await?;
            finish::<Experiment>(reply, json, render_experiment, |_| None)
        }
        CtlCommand::Reload => {
            let reply = mutate(admin, Method::POST, "/admin/reload".into(), None).await?;
            finish::<ReloadReply>(reply, json, render_reload, |r| {
                server_warning(r.warning.as_ref())
            })
        }
        CtlCommand::Incidents
        | CtlCommand::Incident { .. }
        | CtlCommand::Ack { .. }
        | CtlCommand::Audit { .. } => history(admin, command, json, view).await,
    }
}

/// The incident and audit commands.
async fn history(
    admin: &Admin,
    command: &CtlCommand,
    json: bool,
    view: &View,
) -> Result<Output, Failure> {
    match command {
        CtlCommand::Incident { id } => {
            let reply = read(admin, format!("/admin/incidents/{}", segment(id))).await?;
            finish::<Incident>(reply, json, |i| render_incident(i, view), |_| None)
        }
        CtlCommand::Ack { id, note } => {
            let body = note.as_ref().map(|n| json!({ "note": n }));
            let path = format!("/admin/incidents/{}/ack", segment(id));
            let reply = mutate(admin, Method::POST, path, body).await?;
            finish::<Incident>(reply, json, render_ack, |i| {
                server_warning(i.warning.as_ref())
            })
        }
        CtlCommand::Audit { limit } => {
            let query = limit.map(|n| format!("?limit={n}")).unwrap_or_default();
            let reply = read(admin, format!("/admin/audit{query}")).await?;
            finish::<Audit>(reply, json, |a| render_audit(a, view), |_| None)
        }
        // `execute` sends only these four here; the last is the incident list.
        _ => {
            let reply = read(admin, "/admin/incidents".into()).await?;
            finish::<Incidents>(reply, json, |l| render_incidents(l, view), |_| None)
        }
    }
}

fn kill_path(route: &str) -> String {
    format!("/admin/routes/{}/kill", segment(route))
}

async fn read(admin: &Admin, path: String) -> Result<Reply, Failure> {
    send(admin, Method::GET, path, None, Effect::Read).await
}

async fn mutate(
    admin: &Admin,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
) -> Result<Reply, Failure> {
    send(admin, method, path, body, Effect::Mutation).await
}

/// The kill request: percent and segment only when given, so the server's defaults apply.
pub fn kill_body(
    reason: &str,
    percent: Option<f64>,
    seg: Option<&(String, String)>,
) -> serde_json::Value {
    let mut body = json!({ "reason": reason });
    if let Some(p) = percent {
        body["percent"] = json!(p);
    }
    if let Some((header, value)) = seg {
        body["segment"] = json!({ "header": header, "value": value });
    }
    body
}

/// Sends the request; any answer but 2xx becomes a [`Failure`].
async fn send(
    admin: &Admin,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    effect: Effect,
) -> Result<Reply, Failure> {
    let reply = admin.call(method, &path, body, effect).await?;
    if (200..300).contains(&reply.status) {
        Ok(reply)
    } else {
        Err(refusal(&reply, admin.has_token(), &path))
    }
}

/// Parses the answer for the text view (and for warnings, which `--json` users get too).
fn finish<T: DeserializeOwned>(
    reply: Reply,
    json: bool,
    render: impl FnOnce(&T) -> String,
    warn: impl FnOnce(&T) -> Option<String>,
) -> Result<Output, Failure> {
    let parsed = serde_json::from_slice::<T>(&reply.body);
    let (text, warnings) = match (parsed, json) {
        (Ok(value), _) => ((!json).then(|| render(&value)), warn(&value)),
        // Scripts get the server's JSON as is, whatever shape it has.
        (Err(_), true) => (None, None),
        (Err(e), false) => {
            return Err(Failure::new(
                EXIT_REFUSED,
                format!("the admin API's answer is not what ctl expects: {e}"),
            )
            .hint("`--json` prints it as it came")
            .with_body(reply.body));
        }
    };
    Ok(Output {
        text: text.unwrap_or_default(),
        warnings: warnings.into_iter().collect(),
        json: reply.body,
    })
}

/// What a non-2xx answer means for the person at the keyboard.
pub fn refusal(reply: &Reply, sent_token: bool, path: &str) -> Failure {
    let error = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| b.error)
        .unwrap_or_default();
    let message = if error.message.is_empty() {
        let raw = String::from_utf8_lossy(&reply.body);
        format!(
            "the admin API answered HTTP {}: {}",
            reply.status,
            clip(raw.trim(), 200)
        )
    } else {
        error.message.clone()
    };
    let failure = match reply.status {
        401 => Failure::new(
            EXIT_AUTH,
            "not authenticated: set SWITCHYARD_ADMIN_TOKEN (or --token) to an admin token",
        )
        .hint(if sent_token {
            "(the token given was not accepted)"
        } else {
            "(no token was given)"
        }),
        403 => Failure::new(EXIT_AUTH, message).hint(match error.code.as_str() {
            "humans_only" => "only a human token may acknowledge",
            _ => "this needs an operator token",
        }),
        404 => not_found(message, &error.code, path),
        422 => rejected_reload(reply).unwrap_or_else(|| Failure::new(EXIT_REFUSED, message)),
        _ => Failure::new(EXIT_REFUSED, message),
    };
    failure.with_body(reply.body.clone())
}

fn not_found(message: String, code: &str, path: &str) -> Failure {
    let failure = Failure::new(EXIT_REFUSED, message);
    match code {
        "unknown_route" => failure.hint("`switchyard ctl status` lists the routes"),
        "unknown_incident" => failure.hint("`switchyard ctl incidents` lists the incidents"),
        "no_rollout" => failure.hint("the route has no [routes.rollout] in gateway.toml"),
        "unknown_experiment" => {
            failure.hint("experiments are named in gateway.toml under [[routes.experiments]]")
        }
        "unknown_rule" => failure.hint("rules are named in gateway.toml under [[rules]]"),
        _ => failure.hint(format!(
            "this switchyard does not serve {path}: is it older than this ctl?"
        )),
    }
}

/// A 422 from /admin/reload: the message names file:line: key; the old config stays.
fn rejected_reload(reply: &Reply) -> Option<Failure> {
    let body = serde_json::from_slice::<ReloadReply>(&reply.body).ok()?;
    let error = body.error?;
    let mut keeps = "the old config keeps serving".to_string();
    if !body.config_version.is_empty() {
        keeps.push_str(&format!(" (version {})", body.config_version));
    }
    Some(
        Failure::new(EXIT_REFUSED, format!("config rejected: {}", error.message)).hint(format!(
            "{keeps}; fix the file, `switchyard check`, then reload again"
        )),
    )
}
