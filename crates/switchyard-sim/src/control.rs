//! The `/sim/*` control endpoints: profile get/replace/patch/switch and stats.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::body::read_body;
use crate::body::{json, to_json, SimBody};
use crate::echo::{dump_headers, HeaderDump};
use crate::gen::{bad_request, error, Dialect};
use crate::profile::{named, Profile, PROFILE_NAMES};
use crate::Sim;

#[derive(Serialize)]
struct Stats<'a> {
    requests: u64,
    in_flight: u64,
    last_headers: HeaderDump<'a>,
}

pub(crate) async fn handle(sim: &Sim, req: Request<Incoming>) -> Response<SimBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::GET, "/sim/stats") => stats(sim),
        (&Method::GET, "/sim/profile") => current(sim),
        (&Method::PUT, "/sim/profile") | (&Method::PATCH, "/sim/profile") => {
            let bytes = match read_body(body).await {
                Ok(bytes) => bytes,
                Err(msg) => return bad_request(Dialect::OpenAi, &msg),
            };
            let result = if parts.method == Method::PUT {
                serde_json::from_slice::<Profile>(&bytes)
                    .map_err(|e| format!("invalid profile: {e}"))
            } else {
                merge(&sim.profile(), &bytes)
            };
            match result.and_then(|p| p.validate().map(|()| p)) {
                Ok(profile) => {
                    sim.set_profile(profile);
                    current(sim)
                }
                Err(msg) => bad_request(Dialect::OpenAi, &msg),
            }
        }
        (&Method::POST, _) if path.starts_with("/sim/profile/") => {
            switch(sim, &path["/sim/profile/".len()..])
        }
        _ => error(
            Dialect::OpenAi,
            StatusCode::NOT_FOUND,
            "not_found_error",
            None,
            &format!("no sim control endpoint {} {path}", parts.method),
        ),
    }
}

fn stats(sim: &Sim) -> Response<SimBody> {
    let body = sim.with_last_headers(|headers| {
        to_json(&Stats {
            requests: sim.requests(),
            in_flight: sim.in_flight(),
            last_headers: dump_headers(headers),
        })
    });
    json(StatusCode::OK, body)
}

fn current(sim: &Sim) -> Response<SimBody> {
    json(StatusCode::OK, to_json(&*sim.profile_arc()))
}

/// Top-level fields of the patch replace those of the current profile.
fn merge(current: &Profile, patch: &[u8]) -> Result<Profile, String> {
    let patch: Value = serde_json::from_slice(patch).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(fields) = patch else {
        return Err("a profile patch must be a JSON object".to_owned());
    };
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(map)) => map,
        _ => return Err("the current profile could not be represented as JSON".to_owned()),
    };
    merged.extend(fields);
    serde_json::from_value(Value::Object(merged)).map_err(|e| format!("invalid profile: {e}"))
}

fn switch(sim: &Sim, name: &str) -> Response<SimBody> {
    match named(name) {
        Some(profile) => {
            sim.set_profile(profile);
            current(sim)
        }
        None => error(
            Dialect::OpenAi,
            StatusCode::NOT_FOUND,
            "not_found_error",
            None,
            &format!(
                "unknown profile {name:?}; known: {}",
                PROFILE_NAMES.join(", ")
            ),
        ),
    }
}
