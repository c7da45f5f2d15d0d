//! One HTTP exchange with the admin API: plain HTTP/1, bearer token, one deadline for all of it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Failure;

/// Where the URL came from, so an error can say which knob to turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Default,
}

impl Source {
    fn knob(self) -> &'static str {
        match self {
            Source::Flag => "--url",
            Source::Env | Source::Default => "SWITCHYARD_ADMIN_URL",
        }
    }
}

/// Exit codes: 1 the API said no, 2 no answer from the API, 3 authentication.
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;

/// The admin API to talk to. Deliberately not `Debug`: it holds the token.
pub struct Admin {
    /// "http://host:port" plus any path prefix, without a trailing slash.
    base: String,
    source: Source,
    token: Option<HeaderValue>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A status and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// What the call is, so a lost answer to a mutation can warn that it may have applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Read,
    Mutation,
}

/// Turns "host:port" into "http://host:port"; refuses https (the admin listener is plain HTTP).
pub fn normalise_url(raw: &str, source: Source) -> Result<String, Failure> {
    let raw = raw.trim();
    let bad = |why: &str| {
        Failure::new(
            EXIT_UNREACHABLE,
            format!("bad admin URL {raw:?} (from {}): {why}", source.knob()),
        )
        .hint("use the admin listener's address, e.g. http://127.0.0.1:9090")
    };
    let rest = match raw.split_once("://") {
        None => raw,
        Some(("http", rest)) => rest,
        Some(_) => {
            return Err(bad(
                "ctl speaks plain HTTP only; for a remote gateway use an ssh tunnel",
            ))
        }
    };
    let base = format!("http://{}", rest.trim_end_matches('/'));
    match base.parse::<Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) && uri.query().is_none() => Ok(base),
        Ok(_) => Err(bad("it needs a host and no query")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

/// Escapes a route name or incident id for one path segment.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Admin {
    pub fn new(
        base: String,
        source: Source,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Admin, Failure> {
        let token = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(secret) => {
                // Never echo the value: only say that it cannot be sent.
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
                        Failure::new(
                        EXIT_AUTH,
                        "the admin token contains characters an HTTP header cannot carry",
                    )
                    .hint("check SWITCHYARD_ADMIN_TOKEN (or --token) for stray quotes or newlines")
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Admin {
            base,
            source,
            token,
            timeout,
            client,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Sends one request and reads the whole answer within the timeout.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        effect: Effect,
    ) -> Result<Reply, Failure> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Reply { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(self.transport(&*error, effect)),
            Err(_) => Err(self.timed_out(effect)),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                USER_AGENT,
                concat!("switchyard-ctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, token.clone());
        }
        let payload = match body {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(payload)).map_err(|e| {
            Failure::new(EXIT_UNREACHABLE, format!("cannot build the request: {e}"))
                .hint(format!("is {} right?", self.source.knob()))
        })
    }

    fn transport(&self, error: &(dyn std::error::Error + 'static), effect: Effect) -> Failure {
        let connect = error
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect);
        let detail = root_cause(error);
        if connect {
            // One line, as the runbook quotes it: the cause, then the two likely fixes.
            return Failure::new(
                EXIT_UNREACHABLE,
                format!(
                    "cannot reach the admin API at {}: {detail} — is switchyard running? is {} right?",
                    self.base,
                    self.source.knob()
                ),
            );
        }
        let failure = Failure::new(
            EXIT_UNREACHABLE,
            format!(
                "the admin API at {} broke off its answer: {detail}",
                self.base
            ),
        );
        maybe_applied(failure, effect)
    }

    fn timed_out(&self, effect: Effect) -> Failure {
        let failure = Failure::new(
            EXIT_UNREACHABLE,
            format!(
                "the admin API at {} did not answer within {}",
                self.base,
                show_duration(self.timeout)
            ),
        )
        .hint(format!(
            "is switchyard running and {} right? a slower answer: --timeout 30s",
            self.source.knob()
        ));
        maybe_applied(failure, effect)
    }
}

/// A lost answer to a mutation does not mean it failed: say how to find out before retrying.
fn maybe_applied(failure: Failure, effect: Effect) -> Failure {
    match effect {
        Effect::Read => failure,
        Effect::Mutation => failure.hint(
            "the change may or may not have been applied: check `switchyard ctl status` \
             and `switchyard ctl audit` before retrying",
        ),
    }
}

/// The innermost error, which is the one that says what happened ("Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            _ => io.to_string(),
        };
    }
    current.to_string()
}

/// "10s", "1.5s", "500ms".
pub fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Parses --timeout: "10s", "500ms", "2m", or bare seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; try 10s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s or m")),
    };
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err("the timeout must be more than 0 and at most an hour".into());
    }
    Ok(Duration::from_secs_f64(secs))
}
