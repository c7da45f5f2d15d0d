//! Wire-level tools for the abuse tests: an upstream that records exactly what reaches it,
//! an upstream that answers with scripted bytes, raw HTTP/2 frames, and latency percentiles.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every request an upstream read, as the bytes it received, complete requests only.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Vec<u8>>>>);

impl Recorded {
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Every request head as text, for messages.
    pub fn heads(&self) -> String {
        self.requests()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// An HTTP/1.1 upstream that parses strictly (CRLF lines, one Content-Length or chunked),
/// records each complete request and answers `200 ok`. A request it cannot parse is not
/// recorded and closes the connection.
pub async fn recorder() -> (Recorded, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Recorded::default();
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(record_connection(stream, log.clone()));
        }
    });
    (recorded, addr)
}

async fn record_connection(mut stream: TcpStream, log: Recorded) {
    let mut buf = Vec::new();
    for _ in 0..100_000 {
        let Some(len) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let request: Vec<u8> = buf.drain(..len).collect();
        log.0.lock().unwrap().push(request);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until `buf` starts with one complete, strictly framed request; its length.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    for _ in 0..10_000 {
        match frame_len(buf) {
            Framing::Complete(len) => return Some(len),
            Framing::Invalid => return None,
            Framing::Partial => {}
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    None
}

enum Framing {
    Complete(usize),
    Partial,
    Invalid,
}

fn frame_len(buf: &[u8]) -> Framing {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Framing::Partial;
    };
    let head = &buf[..end];
    let Ok(text) = std::str::from_utf8(head) else {
        return Framing::Invalid;
    };
    if text.contains('\0')
        || text
            .split("\r\n")
            .any(|l| l.contains('\r') || l.contains('\n'))
    {
        return Framing::Invalid;
    }
    let mut lengths = Vec::new();
    let mut chunked = false;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            return Framing::Invalid;
        };
        if name.ends_with(' ') || name.is_empty() {
            return Framing::Invalid;
        }
        match name.to_ascii_lowercase().as_str() {
            "content-length" => match value.trim().parse::<usize>() {
                Ok(n) => lengths.push(n),
                Err(_) => return Framing::Invalid,
            },
            "transfer-encoding" if value.trim().eq_ignore_ascii_case("chunked") => chunked = true,
            "transfer-encoding" => return Framing::Invalid,
            _ => {}
        }
    }
    let body_start = end + 4;
    match (chunked, lengths.as_slice()) {
        (true, []) => match find(&buf[body_start..], b"0\r\n\r\n") {
            Some(at) => Framing::Complete(body_start + at + 5),
            None => Framing::Partial,
        },
        (false, []) => Framing::Complete(body_start),
        (false, [n]) if buf.len() >= body_start + n => Framing::Complete(body_start + n),
        (false, [_]) => Framing::Partial,
        _ => Framing::Invalid,
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An upstream that reads one request head and answers with `response`, then closes.
pub async fn scripted(response: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut stream, &mut buf).await.is_some() {
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Sends `request` on a fresh connection; what came back before the gateway closed it (or
/// `wait` passed), and whether it closed.
pub async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// HTTP/2 frame types and flags the tests use (RFC 9113 §6).
pub mod h2 {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), first byte ORed with `high`.
fn hpack_int(out: &mut Vec<u8>, high: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(high | n as u8);
        return;
    }
    out.push(high | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, raw bytes: nothing is checked here.
pub fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// The request pseudo-headers of a POST to `path`, then `extra`.
pub fn request_block(path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"gw.test"),
        (b":path", path),
    ];
    fields.extend_from_slice(extra);
    hpack(&fields)
}

/// A cleartext HTTP/2 connection with the preface and an empty SETTINGS sent.
pub async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut hello = h2::PREFACE.to_vec();
    hello.extend(frame(h2::SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    stream
}

/// A frame the server sent: type, flags, stream, payload.
pub type Frame = (u8, u8, u32, Vec<u8>);

/// Reads frames until `done` says so, the connection closes or `wait` passes.
pub async fn read_frames(
    stream: &mut TcpStream,
    wait: Duration,
    done: impl Fn(&[Frame]) -> bool,
) -> (Vec<Frame>, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..100_000 {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let stream_id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            frames.push((buf[3], buf[4], stream_id, buf[9..9 + len].to_vec()));
            buf.drain(..9 + len);
        }
        if done(&frames) {
            return (frames, false);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (frames, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (frames, false),
        }
    }
    (frames, false)
}

/// The error code of the first RST_STREAM on `stream`, or of a GOAWAY.
pub fn reset_or_goaway(frames: &[Frame], stream: u32) -> Option<(u8, u32)> {
    frames.iter().find_map(|(kind, _, id, payload)| {
        let code = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match *kind {
            h2::RST_STREAM if *id == stream => Some((h2::RST_STREAM, code(0)?)),
            h2::GOAWAY => Some((h2::GOAWAY, code(4)?)),
            _ => None,
        }
    })
}

/// The 99th percentile of the samples.
pub fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = ((samples.len() as f64) * 0.99).ceil() as usize;
    samples[at.saturating_sub(1).min(samples.len() - 1)]
}

/// `n` sequential small proxied requests from a healthy client on its own connection (the
/// route's upstream answers them): each latency.
pub async fn healthy_latencies(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = b"GET /healthy-client HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let mut samples = Vec::with_capacity(n);
    let mut buf = vec![0u8; 4096];
    for _ in 0..n {
        let started = Instant::now();
        stream.write_all(request).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("healthy client answered within 10 s")
                .unwrap();
            assert!(read > 0, "healthy connection closed");
            got.extend_from_slice(&buf[..read]);
            if complete_response(&got) {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    samples
}

/// A response with a Content-Length header whose body has fully arrived.
fn complete_response(got: &[u8]) -> bool {
    let Some(end) = find(got, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + len
}
