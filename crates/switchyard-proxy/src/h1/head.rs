//! A request head as the built-in HTTP/1.1 path reads it: httparse's parse, then the framing
//! rules of RFC 9112 §6 decided before a byte is forwarded.

use std::ops::Range;

use bytes::Bytes;
use http::{Method, Request, Uri, Version};
use http_body_util::Full;

use crate::wire::{decimal, field_map, span};

/// Header fields a request may carry; more is a 431, as hyper answers.
pub(crate) const MAX_HEADERS: usize = 100;

/// The longest target `http::Uri` takes; hyper answers a longer one with 414 as well.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A request this path does not serve (HTTP/2 prior knowledge, HTTP/1.0, a chunked body,
    /// `Expect`, an upgrade, CONNECT): hyper reads the connection from here, these bytes
    /// included.
    HandOver,
    /// A complete head this path serves.
    Head(Head),
    /// The request is refused and the connection closed.
    Refuse(Refusal),
}

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400: the head breaks HTTP/1.1's syntax or its framing rules.
    Malformed(&'static str),
    /// 431: the head is larger than `max_header_bytes` or has too many fields.
    TooLarge,
    /// 414: the target is longer than a URI may be here (64 KiB).
    UriTooLong,
    /// 501: a transfer coding other than chunked.
    Coding,
}

impl Refusal {
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Refusal::Malformed(_) => http::StatusCode::BAD_REQUEST,
            Refusal::TooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UriTooLong => http::StatusCode::URI_TOO_LONG,
            Refusal::Coding => http::StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "bad_request",
            Refusal::TooLarge => "request_header_too_large",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::Coding => "unsupported_transfer_coding",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Malformed(why) => why,
            Refusal::TooLarge => "the request head is larger than the gateway's max_header_bytes",
            Refusal::UriTooLong => "the request target is longer than 65,534 bytes",
            Refusal::Coding => "the gateway reads no transfer coding but chunked",
        }
    }
}

/// A complete request head: where its parts lie in the bytes read, and its framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes of the head, the blank line included.
    pub(crate) len: usize,
    method: Range<usize>,
    target: Range<usize>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// The body's length (Content-Length, or none).
    pub(crate) body: u64,
    /// `Connection: close`: the connection closes after the answer.
    pub(crate) close: bool,
    /// A HEAD request: the answer carries no body.
    pub(crate) head_only: bool,
}

/// Reads the head at the start of `buf`, at most `max_bytes` long.
pub(crate) fn parse(buf: &[u8], max_bytes: usize) -> Parsed {
    // HTTP/2 with prior knowledge starts with its preface; hyper speaks it.
    if buf.starts_with(b"PRI ") {
        return Parsed::HandOver;
    }
    if b"PRI ".starts_with(buf) {
        return Parsed::Partial;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Parsed::Refuse(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Refuse(Refusal::Malformed("the request head is malformed")),
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        // HTTP/1.0: hyper's keep-alive rules for it apply.
        return Parsed::HandOver;
    };
    if method == "CONNECT" {
        return Parsed::HandOver;
    }
    if target.len() > MAX_TARGET {
        return Parsed::Refuse(Refusal::UriTooLong);
    }
    let framing = match framing(req.headers) {
        Ok(framing) => framing,
        Err(refusal) => return Parsed::Refuse(refusal),
    };
    let Some(body) = framing.length else {
        return Parsed::HandOver;
    };
    if framing.hand_over {
        return Parsed::HandOver;
    }
    Parsed::Head(Head {
        len,
        method: span(buf, method.as_bytes()),
        target: span(buf, target.as_bytes()),
        fields: req
            .headers
            .iter()
            .map(|f| (span(buf, f.name.as_bytes()), span(buf, f.value)))
            .collect(),
        body,
        close: framing.close,
        head_only: method == "HEAD",
    })
}

/// What the fields say about the body and the connection.
struct Framing {
    /// The body's length; `None` for a chunked body.
    length: Option<u64>,
    close: bool,
    hand_over: bool,
}

/// RFC 9112 §6: Content-Length and Transfer-Encoding read one way only, or refused.
fn framing(fields: &[httparse::Header<'_>]) -> Result<Framing, Refusal> {
    let mut length = None;
    let mut coding = Coding::default();
    let (mut close, mut hand_over) = (false, false);
    for field in fields {
        let name = field.name.as_bytes();
        // Compare by length first: most fields are none of these.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if length.is_some() {
                    return Err(Refusal::Malformed("more than one Content-Length"));
                }
                length = Some(content_length(field.value)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => coding.read(field.value)?,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in field.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    hand_over |= token.eq_ignore_ascii_case(b"upgrade");
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => hand_over = true,
            7 if name.eq_ignore_ascii_case(b"upgrade") => hand_over = true,
            _ => {}
        }
    }
    if !coding.present {
        return Ok(Framing {
            length: Some(length.unwrap_or(0)),
            close,
            hand_over,
        });
    }
    if length.is_some() {
        return Err(Refusal::Malformed(
            "Content-Length and Transfer-Encoding together",
        ));
    }
    if !coding.chunked_last {
        return Err(Refusal::Malformed(
            "Transfer-Encoding does not end in chunked",
        ));
    }
    if coding.other {
        return Err(Refusal::Coding);
    }
    Ok(Framing {
        length: None,
        close,
        hand_over: true,
    })
}

/// The transfer codings of every Transfer-Encoding field, in order.
#[derive(Default)]
struct Coding {
    present: bool,
    chunked: bool,
    chunked_last: bool,
    other: bool,
}

impl Coding {
    fn read(&mut self, value: &[u8]) -> Result<(), Refusal> {
        self.present = true;
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"chunked") {
                if self.chunked {
                    return Err(Refusal::Malformed("chunked applied twice"));
                }
                self.chunked = true;
                self.chunked_last = true;
            } else if KNOWN_CODINGS.iter().any(|c| token.eq_ignore_ascii_case(c)) {
                self.other = true;
                self.chunked_last = false;
            } else {
                return Err(Refusal::Malformed("unknown transfer coding"));
            }
        }
        Ok(())
    }
}

/// The registered transfer codings besides chunked (RFC 9112 §7).
const KNOWN_CODINGS: [&[u8]; 6] = [
    b"compress",
    b"deflate",
    b"gzip",
    b"x-compress",
    b"x-gzip",
    b"identity",
];

/// A Content-Length value: decimal digits only, within u64 (no sign, no list).
fn content_length(value: &[u8]) -> Result<u64, Refusal> {
    decimal(value).ok_or(Refusal::Malformed("Content-Length is not a decimal length"))
}

impl Head {
    /// The request, from `bytes`: the head as parsed, then its body.
    pub(crate) fn request(&self, bytes: &Bytes) -> Result<Request<Full<Bytes>>, Refusal> {
        const TARGET: Refusal = Refusal::Malformed("the request target is malformed");
        let method = Method::from_bytes(&bytes[self.method.clone()])
            .map_err(|_| Refusal::Malformed("the method is malformed"))?;
        let uri = Uri::from_maybe_shared(bytes.slice(self.target.clone())).map_err(|_| TARGET)?;
        let headers = field_map(bytes, &self.fields).map_err(Refusal::Malformed)?;
        // The body was read whole before this; its length fits the buffer that holds it.
        let end = self.len + usize::try_from(self.body).unwrap_or(usize::MAX);
        let mut request = Request::new(Full::new(bytes.slice(self.len..end)));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

#[cfg(test)]
mod tests;
