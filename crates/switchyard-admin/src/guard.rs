//! Refusals a mutation meets before its token is read. A browser on the operator's machine can
//! be made to reach a localhost admin API: through DNS rebinding (the request names a foreign
//! `Host`), as a cross-site request (a foreign `Origin`), or as a form post, which needs no
//! CORS preflight when its content type is not JSON. A bearer token is not sent by a browser on
//! its own, so these are a second wall, not the first.

use http::{header, HeaderMap, StatusCode, Uri};

use crate::reply::ApiError;

/// Checks a POST or DELETE: its `Host`, its `Origin`, and the content type of its body.
pub fn mutation(uri: &Uri, headers: &HeaderMap, names: &[String]) -> Result<(), ApiError> {
    let host = authority(uri, headers);
    if let Some(host) = &host {
        if !allowed_host(host, names) {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                format!(
                    "Host {host:?} is not a name of this admin listener: use its IP address or \
                     localhost, or add the name to [admin] allowed_hosts"
                ),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host
            .as_deref()
            .is_some_and(|host| same_origin(origin.as_bytes(), host));
        if !own {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "foreign_origin",
                "a mutation from another origin (a web page) is refused; send it without an \
                 Origin header, as switchyard ctl and curl do",
            ));
        }
    }
    if has_body(headers) && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a request body must be JSON, sent with `content-type: application/json`",
        ));
    }
    Ok(())
}

/// The host and port the client asked for: HTTP/2's `:authority`, else `Host`.
fn authority(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return Some(authority.as_str().to_ascii_lowercase());
    }
    let value = headers.get(header::HOST)?;
    Some(
        String::from_utf8_lossy(value.as_bytes())
            .trim()
            .to_ascii_lowercase(),
    )
}

/// An IP address, `localhost` (or a name under it), or a configured name; any port. A DNS
/// rebinding attack needs a DNS name of the attacker's, so an IP literal is always safe.
fn allowed_host(authority: &str, names: &[String]) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || names.iter().any(|name| name == host)
}

/// `Origin: http://<the Host asked for>`: the admin API's own pages, were there any.
fn same_origin(origin: &[u8], host: &str) -> bool {
    let origin = String::from_utf8_lossy(origin).trim().to_ascii_lowercase();
    origin
        .strip_prefix("http://")
        .is_some_and(|rest| rest == host || rest.strip_suffix(":80") == Some(host))
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `application/json`, any case, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], names: &[&str]) -> Result<(), &'static str> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let uri: Uri = "/admin/reload".parse().unwrap();
        mutation(&uri, &headers, &names).map_err(|e| e.code)
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:9090",
            "LOCALHOST:9090",
            "localhost",
            "10.0.3.7",
            "[::1]:9090",
            "a.localhost:1",
            "gw.internal:9090",
        ] {
            assert_eq!(check(&[("host", ok)], &["gw.internal"]), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "127.0.0.1.evil.example",
            "gw.internal.evil:1",
            "[nope]:1",
            "localhost.evil",
        ] {
            assert_eq!(
                check(&[("host", bad)], &["gw.internal"]),
                Err("unknown_host"),
                "{bad}"
            );
        }
        assert_eq!(check(&[], &[]), Ok(()), "no Host: not a browser");
    }

    #[test]
    fn origins() {
        let host = ("host", "127.0.0.1:9090");
        assert_eq!(
            check(&[host, ("origin", "http://127.0.0.1:9090")], &[]),
            Ok(())
        );
        for bad in [
            "null",
            "http://evil.example",
            "http://127.0.0.1:3000",
            "https://127.0.0.1:9090",
            "http://localhost:9090",
        ] {
            assert_eq!(
                check(&[host, ("origin", bad)], &[]),
                Err("foreign_origin"),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_must_be_json() {
        let host = ("host", "127.0.0.1:9090");
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(check(&[host, ("content-length", "2"), json], &[]), Ok(()));
        assert_eq!(check(&[host, ("content-length", "0")], &[]), Ok(()));
        assert_eq!(check(&[host], &[]), Ok(()));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let pairs = [host, ("content-length", "2"), ("content-type", bad)];
            assert_eq!(check(&pairs, &[]), Err("unsupported_media_type"), "{bad}");
        }
        let chunked = [host, ("transfer-encoding", "chunked")];
        assert_eq!(check(&chunked, &[]), Err("unsupported_media_type"));
        assert_eq!(
            check(&[host, ("content-length", "2")], &[]),
            Err("unsupported_media_type")
        );
    }
}
