//! HTTP/1.1 wire pieces both sides of the built-in path share (its server in `h1`, its upstream
//! client in `h1_client`): chunked transfer coding (RFC 9112 §7.1), decimal lengths, and the
//! header map of a head parsed in place.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The size line of a chunk of `len` bytes.
pub(crate) fn chunk_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Where `part`, a slice of `base`, lies in it.
pub(crate) fn span(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// A length in decimal digits only, within u64: none for anything else, empty included.
pub(crate) fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// The fields of a head, from where they lie in `bytes`.
pub(crate) fn field_map(
    bytes: &Bytes,
    fields: &[(Range<usize>, Range<usize>)],
) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let name = HeaderName::from_bytes(&bytes[name.clone()])
            .map_err(|_| "a field name is malformed")?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value.clone()))
            .map_err(|_| "a field value is malformed")?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        for (len, want) in [
            (0, "0\r\n"),
            (9, "9\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = Vec::new();
            chunk_size(&mut out, len);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
