//! `[server]`, `[admin]` and `[log]`: listeners, limits and logging.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::duration::parse_duration;
use crate::error::ConfigError;
use crate::token::{compile_tokens, AdminToken, TokenSpec};

/// hyper refuses an HTTP/1 read buffer below this, so a smaller budget could never take effect.
pub const MIN_HEADER_BYTES: usize = 8192;

/// `server.drain_delay` when unset.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// `server.drain_timeout` when unset.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// `[server]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSpec {
    /// Default `127.0.0.1:8080`.
    #[schemars(with = "Option<String>")]
    listen: Option<Spanned<String>>,
    /// Default 8 MiB. Bodies of LLM routes are read up to this.
    #[schemars(with = "Option<u64>")]
    max_body_bytes: Option<Spanned<u64>>,
    /// Until the upstream's response headers. Default `300s`.
    #[schemars(with = "Option<String>")]
    upstream_timeout: Option<Spanned<String>>,
    /// Slowloris guard for client request headers. Default `10s`.
    #[schemars(with = "Option<String>")]
    header_read_timeout: Option<Spanned<String>>,
    /// Max silence between two chunks of an upstream response body. Default `120s`.
    #[schemars(with = "Option<String>")]
    stream_idle_timeout: Option<Spanned<String>>,
    /// The longest an inspected request body may take to arrive whole. Default `60s`.
    #[schemars(with = "Option<String>")]
    body_read_timeout: Option<Spanned<String>>,
    /// Default `true`.
    routing_headers: Option<bool>,
    /// Total request-head budget (HTTP/1 read buffer). Default 64 KiB, min 8192.
    #[schemars(with = "Option<u64>")]
    max_header_bytes: Option<Spanned<u64>>,
    /// After SIGTERM, how long /ready answers 503 while new connections are still accepted
    /// (load balancers need time to take the replica out). Default `5s`; `0s` closes at once.
    #[schemars(with = "Option<String>")]
    drain_delay: Option<Spanned<String>>,
    /// After the listener closes, how long requests and streams in flight may finish before
    /// they are cut. Default `300s`.
    #[schemars(with = "Option<String>")]
    drain_timeout: Option<Spanned<String>>,
    /// Proxies in front of the gateway that append to X-Forwarded-For. Default 0: the
    /// client address is the TCP peer's, whatever the header says.
    #[schemars(with = "Option<u64>")]
    trusted_hops: Option<Spanned<u64>>,
    /// What serves HTTP/1.1 on a plain-TCP listener: `hyper` (default) or `builtin`, the
    /// gateway's own connection loop for the common case (it hands anything else to hyper).
    http1: Option<Http1Engine>,
    /// Optional; without it the listener speaks plain HTTP.
    tls: Option<TlsSpec>,
}

impl ServerSpec {
    /// What a file without a `[server]` table means.
    pub(crate) const DEFAULT: ServerSpec = ServerSpec {
        listen: None,
        max_body_bytes: None,
        upstream_timeout: None,
        header_read_timeout: None,
        stream_idle_timeout: None,
        body_read_timeout: None,
        routing_headers: None,
        max_header_bytes: None,
        drain_delay: None,
        drain_timeout: None,
        trusted_hops: None,
        http1: None,
        tls: None,
    };
}

/// `server.tls` as written; both paths relative to the config file's directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TlsSpec {
    /// Required. PEM certificate chain.
    #[schemars(with = "String")]
    cert: Spanned<String>,
    /// Required. PEM private key.
    #[schemars(with = "String")]
    key: Spanned<String>,
}

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSpec {
    /// Default `127.0.0.1:9090`; must differ from `server.listen`.
    #[schemars(with = "Option<String>")]
    listen: Option<Spanned<String>>,
    /// Default `var`, relative to the config file's directory.
    #[schemars(with = "Option<String>")]
    state_dir: Option<Spanned<String>>,
    /// `[[admin.tokens]]`. Default none.
    #[serde(default)]
    #[schemars(with = "Vec<TokenSpec>")]
    tokens: Vec<Spanned<TokenSpec>>,
    /// Host names, besides IP addresses and `localhost`, a mutation's `Host` may carry.
    /// Default none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    allowed_hosts: Vec<Spanned<String>>,
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSpec {
    /// `text` or `json`. Default `text`.
    format: Option<LogFormat>,
    /// A tracing filter string. Default `info`.
    #[schemars(with = "Option<String>")]
    level: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub header_read_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// How long an inspected request body may take to arrive whole; 408 beyond.
    pub body_read_timeout: Duration,
    pub routing_headers: bool,
    pub max_header_bytes: usize,
    /// Between the drain signal and closing the listener; /ready answers 503 meanwhile.
    pub drain_delay: Duration,
    /// How long open requests may finish once the listener is closed.
    pub drain_timeout: Duration,
    /// How many X-Forwarded-For entries, counted from the right, trusted proxies appended.
    pub trusted_hops: usize,
    /// What serves HTTP/1.1 on a plain-TCP listener.
    pub http1: Http1Engine,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// In file order; names and secrets unique.
    pub tokens: Vec<AdminToken>,
    /// Lower-cased host names (no port) a mutation's `Host` or `Origin` may name, besides IP
    /// addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// `server.http1`: what serves HTTP/1.1 on a plain-TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Http1Engine {
    /// hyper's HTTP/1.1 server, as for TLS and HTTP/2.
    #[default]
    Hyper,
    /// The gateway's own connection loop: keep-alive requests whose body has a
    /// Content-Length; anything else on the connection (chunked request bodies, `Expect`,
    /// upgrades, HTTP/1.0, HTTP/2 prior knowledge, bodies that trickle) is handed to hyper.
    Builtin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            max_body_bytes: 8 * 1024 * 1024,
            upstream_timeout: Duration::from_secs(300),
            header_read_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(120),
            body_read_timeout: Duration::from_secs(60),
            routing_headers: true,
            max_header_bytes: 64 * 1024,
            drain_delay: DEFAULT_DRAIN_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            trusted_hops: 0,
            http1: Http1Engine::Hyper,
            tls: None,
        }
    }
}

/// The defaults; `state_dir` here is relative, `Config::parse` resolves it against the file.
impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090),
            state_dir: PathBuf::from("var"),
            tokens: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

pub(crate) fn compile_server(spec: &ServerSpec, ctx: &Ctx) -> Result<Server, ConfigError> {
    let d = Server::default();
    let tls = match &spec.tls {
        Some(t) => Some(Tls {
            cert: ctx.path(&t.cert, "server.tls.cert")?,
            key: ctx.path(&t.key, "server.tls.key")?,
        }),
        None => None,
    };
    Ok(Server {
        listen: ctx.socket_addr(spec.listen.as_ref(), "server.listen", d.listen)?,
        max_body_bytes: ctx.bytes(
            spec.max_body_bytes.as_ref(),
            "server.max_body_bytes",
            d.max_body_bytes,
            1,
        )?,
        upstream_timeout: ctx.duration(
            spec.upstream_timeout.as_ref(),
            "server.upstream_timeout",
            d.upstream_timeout,
        )?,
        header_read_timeout: ctx.duration(
            spec.header_read_timeout.as_ref(),
            "server.header_read_timeout",
            d.header_read_timeout,
        )?,
        stream_idle_timeout: ctx.duration(
            spec.stream_idle_timeout.as_ref(),
            "server.stream_idle_timeout",
            d.stream_idle_timeout,
        )?,
        body_read_timeout: ctx.duration(
            spec.body_read_timeout.as_ref(),
            "server.body_read_timeout",
            d.body_read_timeout,
        )?,
        routing_headers: spec.routing_headers.unwrap_or(d.routing_headers),
        max_header_bytes: ctx.bytes(
            spec.max_header_bytes.as_ref(),
            "server.max_header_bytes",
            d.max_header_bytes,
            MIN_HEADER_BYTES,
        )?,
        drain_delay: drain_delay(spec.drain_delay.as_ref(), ctx, d.drain_delay)?,
        drain_timeout: ctx.duration(
            spec.drain_timeout.as_ref(),
            "server.drain_timeout",
            d.drain_timeout,
        )?,
        trusted_hops: trusted_hops(spec.trusted_hops.as_ref(), ctx)?,
        http1: spec.http1.unwrap_or_default(),
        tls,
    })
}

/// At most this many proxies in front: a longer chain is a mistake, not a deployment.
pub const MAX_TRUSTED_HOPS: u64 = 16;

fn trusted_hops(v: Option<&Spanned<u64>>, ctx: &Ctx) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(0) };
    match usize::try_from(*v.get_ref()) {
        Ok(n) if *v.get_ref() <= MAX_TRUSTED_HOPS => Ok(n),
        _ => Err(ctx.at(
            v,
            "server.trusted_hops",
            format!(
                "must be between 0 and {MAX_TRUSTED_HOPS}, got {}",
                v.get_ref()
            ),
        )),
    }
}

/// The one duration key where "0s" means something: no delay, close the listener at once.
fn drain_delay(
    v: Option<&Spanned<String>>,
    ctx: &Ctx,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => parse_duration(v.get_ref()).map_err(|msg| ctx.at(v, "server.drain_delay", msg)),
    }
}

/// Needs the server section to reject an admin listener on the server's own address.
pub(crate) fn compile_admin(
    spec: &AdminSpec,
    server_spec: &ServerSpec,
    server: &Server,
    ctx: &mut Ctx,
) -> Result<Admin, ConfigError> {
    let d = Admin::default();
    let listen = ctx.socket_addr(spec.listen.as_ref(), "admin.listen", d.listen)?;
    // Port 0 asks the OS for a fresh port each time, so two such listeners never collide.
    if listen == server.listen && listen.port() != 0 {
        // Point at whichever of the two the user actually wrote; both defaults never collide.
        let (span, key, other) = match (&spec.listen, &server_spec.listen) {
            (Some(a), _) => (a.span(), "admin.listen", "server.listen"),
            (None, Some(s)) => (s.span(), "server.listen", "admin.listen (default)"),
            (None, None) => (0..0, "admin.listen", "server.listen"),
        };
        let msg = format!("{listen} is also {other}; the admin API needs its own address");
        return Err(ctx.err(&span, key, msg));
    }
    let state_dir = match &spec.state_dir {
        Some(dir) => ctx.path(dir, "admin.state_dir")?,
        None => ctx.resolve(&d.state_dir),
    };
    let tokens = compile_tokens(&spec.tokens, ctx)?;
    let allowed_hosts = compile_hosts(&spec.allowed_hosts, ctx)?;
    Ok(Admin {
        listen,
        state_dir,
        tokens,
        allowed_hosts,
    })
}

/// DNS names as a `Host` header carries them: letters, digits, `-` and `.`, no port.
fn compile_hosts(specs: &[Spanned<String>], ctx: &Ctx) -> Result<Vec<String>, ConfigError> {
    let mut hosts = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.get_ref().trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            let msg = format!(
                "invalid host name {:?}: a DNS name such as \"gateway-1.internal\", without scheme or port",
                spec.get_ref()
            );
            return Err(ctx.at(spec, &format!("admin.allowed_hosts[{i}]"), msg));
        }
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    Ok(hosts)
}

pub(crate) fn compile_log(spec: &LogSpec, ctx: &Ctx) -> Result<Log, ConfigError> {
    let d = Log::default();
    let level = match &spec.level {
        Some(level) if level.get_ref().trim().is_empty() => {
            return Err(ctx.at(level, "log.level", "must not be empty (e.g. \"info\")"));
        }
        Some(level) => level.get_ref().trim().to_owned(),
        None => d.level,
    };
    Ok(Log {
        format: spec.format.unwrap_or(d.format),
        level,
    })
}
