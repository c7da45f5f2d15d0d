//! The upstream request's head as the built-in path writes it, and the answer's head as it
//! reads it, with the answer's framing decided as RFC 9112 §6.3 says.

use std::ops::Range;

use bytes::Bytes;
use http::uri::Authority;
use http::{header, request, response, Response, StatusCode};

use super::body::Framing;
use crate::wire::{decimal, field_map, span};

/// Writes the request line and fields; `length` is the body's, if known (else chunked).
pub(super) fn request(
    out: &mut Vec<u8>,
    parts: &request::Parts,
    authority: &Authority,
    length: Option<u64>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::HOST
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match length {
        Some(0) if !super::says_empty_length(&parts.method, &parts.headers) => {}
        Some(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete answer head.
pub(super) enum Parsed {
    /// A 1xx other than 101, this many bytes long: skipped, the final answer follows.
    Informational(usize),
    Final(Final),
}

/// Where a final answer's parts lie in the bytes read, and how its body is framed.
pub(crate) struct Final {
    pub(super) len: usize,
    status: StatusCode,
    fields: Vec<(Range<usize>, Range<usize>)>,
    framing: Framing,
    reusable: bool,
}

/// The answer's head, its body's framing, and whether the connection may carry another
/// request after the body.
pub(super) struct ResponseHead {
    parts: response::Parts,
    framing: Framing,
    reusable: bool,
}

impl ResponseHead {
    pub(super) fn into_parts(self) -> (response::Parts, Framing, bool) {
        (self.parts, self.framing, self.reusable)
    }
}

/// Header fields an answer may carry.
const MAX_FIELDS: usize = 100;

/// Reads the final answer's head in `buf`, past any interim (1xx) ones: where it starts and
/// what it says; `None` while incomplete.
pub(crate) fn answer_head(
    buf: &[u8],
    head_only: bool,
    max: usize,
) -> Result<Option<(usize, Final)>, &'static str> {
    let mut start = 0;
    loop {
        match response(&buf[start..], head_only, max)? {
            None => return Ok(None),
            Some(Parsed::Informational(len)) => start += len,
            Some(Parsed::Final(head)) => return Ok(Some((start, head))),
        }
    }
}

/// Reads an answer head at the start of `buf`: `None` while incomplete.
pub(super) fn response(
    buf: &[u8],
    head_only: bool,
    max: usize,
) -> Result<Option<Parsed>, &'static str> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max => len,
        Ok(httparse::Status::Partial) if buf.len() < max => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err("the upstream's answer head is too large")
        }
        Err(_) => return Err("the upstream's answer head is malformed"),
    };
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err("the upstream's answer head is malformed");
    };
    let status = StatusCode::from_u16(code).map_err(|_| "the upstream's status is invalid")?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err("the upstream switched protocols");
    }
    if status.is_informational() {
        return Ok(Some(Parsed::Informational(len)));
    }
    let (framing, keep_alive) = framing(res.headers, status, head_only)?;
    Ok(Some(Parsed::Final(Final {
        len,
        status,
        fields: res
            .headers
            .iter()
            .map(|f| (span(buf, f.name.as_bytes()), span(buf, f.value)))
            .collect(),
        reusable: keep_alive && minor == 1 && !matches!(framing, Framing::UntilClose),
        framing,
    })))
}

/// The body's framing and whether the upstream lets the connection live on.
fn framing(
    fields: &[httparse::Header<'_>],
    status: StatusCode,
    head_only: bool,
) -> Result<(Framing, bool), &'static str> {
    let mut length: Option<u64> = None;
    let (mut coded, mut chunked_last, mut close) = (false, false, false);
    for field in fields {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for value in field.value.split(|&b| b == b',') {
                let n = decimal(value.trim_ascii())
                    .ok_or("the upstream's Content-Length is invalid")?;
                if length.is_some_and(|l| l != n) {
                    return Err("the upstream sent conflicting Content-Length");
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            coded = true;
            for coding in field.value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= field
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), !close));
    }
    if coded {
        // Transfer-Encoding wins over Content-Length, and the connection is not trusted after.
        let framing = if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        return Ok((framing, !close && length.is_none()));
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), !close),
        None => (Framing::UntilClose, false),
    })
}

impl Final {
    /// The head's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the connection may carry another request once the body was read.
    pub(crate) fn reusable(&self) -> bool {
        self.reusable
    }

    /// The head's parts, from the bytes it was read from.
    pub(super) fn build(self, bytes: &Bytes) -> Result<ResponseHead, &'static str> {
        let headers = field_map(bytes, &self.fields)?;
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        let (parts, ()) = response.into_parts();
        Ok(ResponseHead {
            parts,
            framing: self.framing,
            reusable: self.reusable,
        })
    }
}
