//! The catch-all echo answer that lets proxy tests check what was forwarded.

use std::borrow::Cow;
use std::collections::BTreeMap;

use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use crate::body::{json, to_json, SimBody};

/// Header names to all their values, in a stable order for easy assertions.
pub(crate) type HeaderDump<'a> = BTreeMap<&'a str, Vec<Cow<'a, str>>>;

pub(crate) fn dump_headers(headers: &HeaderMap) -> HeaderDump<'_> {
    let mut out: HeaderDump<'_> = BTreeMap::new();
    for (name, value) in headers {
        out.entry(name.as_str())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()));
    }
    out
}

#[derive(Serialize)]
struct Echo<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderDump<'a>,
    body_bytes: usize,
    body_sha: String,
}

pub(crate) fn respond(parts: &Parts, body: &[u8]) -> Response<SimBody> {
    let echo = Echo {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: dump_headers(&parts.headers),
        body_bytes: body.len(),
        body_sha: format!("{:016x}", fnv1a64(body)),
    };
    json(StatusCode::OK, to_json(&echo))
}

/// FNV-1a 64: not cryptographic, only a fingerprint to compare bodies by.
pub fn fnv1a64(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
