//! Header hygiene at the proxy boundary (RFC 9110 §7.6.1).

use std::net::{IpAddr, SocketAddr};

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
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

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
    // Most requests carry none: one look at each name, instead of a hashed removal of each
    // hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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

/// The names [`strip_hop_by_hop`] removes, besides those `Connection` names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || name == header::TRAILER
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
}

/// Appends `value` to a comma-separated list header, keeping every line the client sent.
pub fn append_list(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let mut lines = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|line| !line.is_empty())
        .peekable();
    if lines.peek().is_none() {
        headers.insert(name, value);
        return;
    }
    let mut joined = String::new();
    for line in lines {
        joined.push_str(line);
        joined.push_str(", ");
    }
    let Ok(value) = value.to_str() else {
        return;
    };
    joined.push_str(value);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// `X-Forwarded-For`'s entry for the peer: its address as `Display` writes it; an IPv4 one
/// (the common case, once per request) digit by digit on the stack.
pub fn forwarded_for(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let (mut text, mut len) = ([0u8; 15], 0);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = match octet {
            100.. => 0,
            10.. => 1,
            _ => 2,
        };
        for digit in &digits[skip..] {
            text[len] = b'0' + digit;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len]).ok()
}

/// The client's address: the TCP peer's, or with `trusted_hops` proxies in front, the entry
/// the outermost of them appended to X-Forwarded-For (the `trusted_hops`-th from the right).
/// Entries further left are the client's own words and never used. A chain shorter than
/// `trusted_hops` yields its leftmost entry (a trusted proxy wrote it); an entry that is not
/// an IP address yields the peer. A derived address carries port 0.
pub fn client_addr(headers: &HeaderMap, peer: SocketAddr, trusted_hops: usize) -> SocketAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let mut entries: Vec<&str> = Vec::new();
    for line in headers.get_all("x-forwarded-for") {
        let Ok(text) = line.to_str() else {
            return peer;
        };
        entries.extend(text.split(',').map(str::trim));
    }
    let Some(at) = entries.len().checked_sub(1) else {
        return peer;
    };
    let index = at.saturating_sub(trusted_hops - 1);
    entries
        .get(index)
        .and_then(|entry| entry.parse::<IpAddr>().ok())
        .map_or(peer, |ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
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
        let xff = |v: &'static str| (X_FORWARDED_FOR, HeaderValue::from_static(v));
        let (name, value) = xff("10.0.0.1");
        append_list(&mut h, name, value);
        let (name, value) = xff("127.0.0.1");
        append_list(&mut h, name, value);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        h.append("x-forwarded-for", "10.9.9.9".parse().unwrap());
        let (name, value) = xff("127.0.0.2");
        append_list(&mut h, name, value);
        assert_eq!(
            h["x-forwarded-for"],
            "10.0.0.1, 127.0.0.1, 10.9.9.9, 127.0.0.2"
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        h.insert("x-forwarded-for", HeaderValue::from_static(""));
        let (name, value) = xff("127.0.0.3");
        append_list(&mut h, name, value);
        assert_eq!(
            h["x-forwarded-for"], "127.0.0.3",
            "an empty line is dropped"
        );
    }

    #[test]
    fn every_ipv4_octet_is_written_as_display_writes_it() {
        use std::net::Ipv4Addr;
        for octet in 0..=255u8 {
            for ip in [
                [octet, 0, 9, 10],
                [1, octet, 99, 100],
                [255, 10, octet, 0],
                [9, 99, 0, octet],
            ] {
                let ip = IpAddr::V4(Ipv4Addr::from(ip));
                assert_eq!(forwarded_for(ip).unwrap(), ip.to_string().as_str());
            }
        }
    }

    #[test]
    fn the_peer_entry_is_the_address_as_text() {
        for ip in [
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::ff00:42:8329",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(ip).unwrap(), ip.to_string().as_str());
        }
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(
            forwarded_for(longest).unwrap(),
            longest.to_string().as_str()
        );
    }

    #[test]
    fn requests_without_hop_by_hop_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        for name in ["proxy-authorization", "trailer", "proxy-connection"] {
            let mut h = h.clone();
            h.insert(name, "x".parse().unwrap());
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 2, "{name} is removed");
        }
    }

    #[test]
    fn the_client_address_trusts_only_the_configured_hops() {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_addr(&h, peer, 1), peer, "no header: the peer");
        h.append("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(client_addr(&h, peer, 0), peer);
        let ip = |h: &HeaderMap, hops| client_addr(h, peer, hops).ip().to_string();
        assert_eq!(ip(&h, 1), "10.0.0.2");
        assert_eq!(ip(&h, 2), "10.0.0.1");
        assert_eq!(ip(&h, 3), "6.6.6.6");
        assert_eq!(ip(&h, 9), "6.6.6.6", "a short chain: its leftmost entry");
        h.insert("x-forwarded-for", "1.1.1.1, bogus".parse().unwrap());
        assert_eq!(client_addr(&h, peer, 1), peer, "not an address: the peer");
        h.insert("x-forwarded-for", "2001:db8::1".parse().unwrap());
        assert_eq!(ip(&h, 1), "2001:db8::1");
    }
}
