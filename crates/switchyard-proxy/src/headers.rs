//! Header hygiene at the proxy boundary (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Header names the gateway sets on every request or response, made once: a name given as
/// `&str` is parsed again on every insert.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
pub const X_UPSTREAM: HeaderName = HeaderName::from_static("x-switchyard-upstream");
pub const X_VARIANT: HeaderName = HeaderName::from_static("x-switchyard-variant");
pub const X_FALLBACK: HeaderName = HeaderName::from_static("x-switchyard-fallback");
pub const X_ERROR: HeaderName = HeaderName::from_static("x-switchyard-error");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, never to be forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRAILER);
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
}

/// Appends `value` to a comma-separated list header, keeping every line the client sent.
pub fn append_list(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let mut joined = String::new();
    for line in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        if !line.is_empty() {
            joined.push_str(line);
            joined.push_str(", ");
        }
    }
    joined.push_str(value);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn appends_to_lists() {
        let mut h = HeaderMap::new();
        append_list(&mut h, "x-forwarded-for", "10.0.0.1");
        append_list(&mut h, "x-forwarded-for", "127.0.0.1");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        h.append("x-forwarded-for", "10.9.9.9".parse().unwrap());
        append_list(&mut h, "x-forwarded-for", "127.0.0.2");
        assert_eq!(
            h["x-forwarded-for"],
            "10.0.0.1, 127.0.0.1, 10.9.9.9, 127.0.0.2"
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }
}
