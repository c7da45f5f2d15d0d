//! The built-in HTTP/1.1 path's framing, for the fuzz targets and the replay of their corpora:
//! bytes in, the framing decision checked. No I/O. `h1_head`: a client's request head and the
//! request built from it; `h1_answer`: an upstream's answer head and its body's decoding.

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use crate::h1::head::{parse, Parsed};
use crate::h1_client::{answer_head, Decoded, Decoder, Framing};

/// Reads `bytes` as the start of a connection, under a small and the default head budget;
/// what it came to (0 partial, 1 handed to hyper, 2 served, 3 refused). Never panics; the
/// invariants are asserts.
pub fn h1_head(bytes: &[u8]) -> usize {
    let small = parse(bytes, 8192);
    let outcome = check(bytes, parse(bytes, 64 * 1024));
    if let Parsed::Head(head) = &small {
        assert!(head.len <= 8192, "a head past its budget was served");
    }
    outcome
}

fn check(bytes: &[u8], parsed: Parsed) -> usize {
    let head = match parsed {
        Parsed::Partial => return 0,
        Parsed::HandOver => return 1,
        Parsed::Refuse(refusal) => {
            assert!(refusal.status().is_client_error() || refusal.status() == 501);
            return 3;
        }
        Parsed::Head(head) => head,
    };
    assert!(head.len <= bytes.len(), "the head ends past the bytes read");
    // The head is read from its own bytes alone: what follows cannot change it.
    assert_eq!(
        parse(&bytes[..head.len], 64 * 1024),
        Parsed::Head(head.clone())
    );
    let Ok(body) = usize::try_from(head.body) else {
        return 2;
    };
    if bytes.len() - head.len < body {
        return 2;
    }
    if let Ok(request) = head.request(&Bytes::copy_from_slice(bytes)) {
        let fields = request.headers();
        assert!(
            !fields.contains_key(http::header::TRANSFER_ENCODING),
            "a Transfer-Encoding request was served as one with a length"
        );
        assert!(fields.get_all(http::header::CONTENT_LENGTH).iter().count() <= 1);
        if let Some(length) = fields.get(http::header::CONTENT_LENGTH) {
            assert_eq!(
                length.to_str().ok().and_then(|l| l.parse().ok()),
                Some(head.body)
            );
        }
        assert_eq!(
            http_body::Body::size_hint(request.body()).exact(),
            Some(head.body)
        );
    }
    2
}

/// The head budget `h1_answer` reads under (the built-in path's own is 64 KiB).
const ANSWER_HEAD: usize = 16 * 1024;

/// Reads `bytes[1..]` as an upstream's answer (`bytes[0]`: bit 0, the request was `HEAD`; bits
/// 1-4, the size less one of the pieces the body arrives in). What it came to (0 incomplete
/// head, 1 refused head, 2 read). Never panics; the invariants are asserts.
pub fn h1_answer(bytes: &[u8]) -> usize {
    let Some((&flags, answer)) = bytes.split_first() else {
        return 0;
    };
    let head_only = flags & 1 == 1;
    let piece = usize::from((flags >> 1) & 15) + 1;
    let (interim, head) = match answer_head(answer, head_only, ANSWER_HEAD) {
        Ok(Some(found)) => found,
        Ok(None) => return 0,
        Err(_) => return 1,
    };
    let end = interim + head.len();
    assert!(end <= answer.len(), "the head ends past the bytes read");
    // The head is read from its own bytes alone: what follows cannot change it.
    let again = answer_head(&answer[..end], head_only, ANSWER_HEAD)
        .ok()
        .flatten()
        .map(|(i, h)| (i, h.len(), h.framing(), h.reusable()));
    let framing = head.framing();
    assert_eq!(again, Some((interim, head.len(), framing, head.reusable())));
    let status = head.status();
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        assert_eq!(
            framing,
            Framing::Length(0),
            "an answer that has no body was given one"
        );
    }
    assert!(
        !(head.reusable() && framing == Framing::UntilClose),
        "a connection whose answer ends at close was kept"
    );
    // The body decodes the same whole and in pieces, and a length is taken exactly.
    let body = &answer[end..];
    let whole = decode(framing, body, body.len().max(1));
    assert_eq!(
        whole,
        decode(framing, body, piece),
        "pieces of {piece} bytes"
    );
    if let (Framing::Length(n), Ending::Ended(left)) = (framing, &whole.1) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        assert_eq!((whole.0.as_slice(), *left), (&body[..n], body.len() - n));
    }
    2
}

/// How a decoding ended: the body's end and the bytes left past it, a failure, or out of bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Ended(usize),
    Failed(&'static str),
    Incomplete,
}

/// The body's data and how its decoding ended, `bytes` arriving `piece` bytes at a time.
fn decode(framing: Framing, bytes: &[u8], piece: usize) -> (Vec<u8>, Ending) {
    let mut decoder = Decoder::new(BytesMut::new(), framing);
    let mut fed = 0;
    let mut data = Vec::new();
    loop {
        match decoder.decode() {
            Ok(Decoded::Data(more)) => data.extend_from_slice(&more),
            Ok(Decoded::End) => {
                assert!(decoder.is_done());
                return (data, Ending::Ended(decoder.leftover() + bytes.len() - fed));
            }
            Err(why) => return (data, Ending::Failed(why)),
            Ok(Decoded::More) if fed == bytes.len() => return (data, Ending::Incomplete),
            Ok(Decoded::More) => {
                let next = (fed + piece).min(bytes.len());
                decoder.buf_mut().extend_from_slice(&bytes[fed..next]);
                fed = next;
            }
        }
    }
}
