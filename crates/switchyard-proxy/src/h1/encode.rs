//! A response as the built-in HTTP/1.1 path writes it: the status line and fields, the
//! framing it chooses, a `Date`, and chunks.

use std::cell::RefCell;
use std::time::UNIX_EPOCH;

use http::{header, response, StatusCode};

/// How the body that follows a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body is sent (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked, ended by a last chunk.
    Chunked,
}

/// Writes the head of a response into `out` and says how its body is framed. `length` is
/// the body's exact length if known; `close` adds `Connection: close`.
pub(crate) fn head(
    out: &mut Vec<u8>,
    parts: &response::Parts,
    length: Option<u64>,
    head_only: bool,
    close: bool,
) -> Framing {
    let status = parts.status;
    let framing = if head_only || no_body(status) {
        Framing::None
    } else {
        length.map_or(Framing::Chunked, Framing::Length)
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A HEAD answer and a 304 keep the length the upstream gave; a body this path frames
    // gets its own framing fields.
    let own_framing = framing != Framing::None || status == StatusCode::NO_CONTENT;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING
            || (own_framing && name == header::CONTENT_LENGTH)
            || (close && name == header::CONNECTION)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// Statuses whose answers never carry a body (RFC 9110 §6.4.1).
fn no_body(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Whether the service's answer asks for the connection to close.
pub(crate) fn asks_close(parts: &response::Parts) -> bool {
    parts.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

thread_local! {
    /// The IMF-fixdate of the second last written on this thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// The current time as an IMF-fixdate (RFC 9110 §5.6.7), worked out once a second per thread.
fn date(out: &mut Vec<u8>) {
    let now = switchyard_core::clock::system_now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            }
        }
        out.extend_from_slice(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn written(
        response: Response<()>,
        length: Option<u64>,
        head_only: bool,
        close: bool,
    ) -> (String, Framing) {
        let (parts, ()) = response.into_parts();
        let mut out = Vec::new();
        let framing = head(&mut out, &parts, length, head_only, close);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_known_length_replaces_the_fields_framing() {
        let response = Response::builder()
            .header("content-type", "application/json")
            .header("content-length", "99")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (text, framing) = written(response, Some(12), false, false);
        assert_eq!(framing, Framing::Length(12));
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with("GMT\r\ncontent-length: 12\r\n\r\n"),
            "{text}"
        );
        assert!(!text.contains("99") && !text.contains("chunked"), "{text}");
    }

    #[test]
    fn an_unknown_length_is_chunked_and_close_is_said_once() {
        let response = Response::builder()
            .header("connection", "close")
            .body(())
            .unwrap();
        let (text, framing) = written(response, None, false, true);
        assert_eq!(framing, Framing::Chunked);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert!(
            text.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn head_204_and_304_answers_carry_no_body_framing() {
        let head = Response::builder()
            .header("content-length", "42")
            .body(())
            .unwrap();
        let (text, framing) = written(head, Some(0), true, false);
        assert_eq!(framing, Framing::None);
        assert!(
            text.contains("content-length: 42\r\n"),
            "HEAD keeps the length: {text}"
        );
        let no_content = Response::builder()
            .status(204)
            .header("content-length", "0")
            .body(())
            .unwrap();
        let (text, framing) = written(no_content, Some(0), false, false);
        assert_eq!(framing, Framing::None);
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        let not_modified = Response::builder()
            .status(304)
            .header("content-length", "7")
            .body(())
            .unwrap();
        let (text, framing) = written(not_modified, None, false, false);
        assert_eq!(framing, Framing::None);
        assert!(
            text.contains("content-length: 7\r\n") && !text.contains("chunked"),
            "{text}"
        );
    }

    #[test]
    fn a_date_the_service_set_is_kept() {
        let response = Response::builder()
            .header("date", "Thu, 01 Jan 1970 00:00:00 GMT")
            .body(())
            .unwrap();
        let (text, _) = written(response, Some(0), false, false);
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        let response = Response::builder().body(()).unwrap();
        let (text, _) = written(response, Some(0), false, false);
        let date = text
            .split("date: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    }
}
