//! The built-in HTTP/1.1 path's head reading, for the fuzz target and the replay of its
//! corpus: bytes in, the framing decision and the request built from it checked. No I/O.

use bytes::Bytes;

use crate::h1::head::{parse, Parsed};

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
