//! `switchyard healthcheck`: one GET to the gateway's own `/health`, for container health
//! checks in images that carry no curl. Exit 0 on a 2xx within the timeout, 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The URL probed when none is given: the traffic listener of an image's default config.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/health";

/// Probes `url`; prints one line saying why when it fails.
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let outcome = crate::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(probe(url, timeout)));
    match outcome {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The status of one GET, with the body read to its end, within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are probed".into());
    }
    let request = Request::get(uri)
        .header(
            hyper::header::USER_AGENT,
            concat!("switchyard-healthcheck/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
