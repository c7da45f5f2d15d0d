use super::*;

fn parsed(text: &str) -> Parsed {
    parse(text.as_bytes(), 64 * 1024)
}

fn refused(text: &str) -> Refusal {
    match parsed(text) {
        Parsed::Refuse(refusal) => refusal,
        other => panic!("not refused: {other:?}\n{text}"),
    }
}

fn head(text: &str) -> Head {
    match parsed(text) {
        Parsed::Head(head) => head,
        other => panic!("not served: {other:?}\n{text}"),
    }
}

#[test]
fn a_post_with_a_length_is_served_and_rebuilt_field_for_field() {
    let text = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nX-Two: a\r\nx-two: b\r\n\r\nhello";
    let head = head(text);
    assert_eq!(head.len, text.len() - 5);
    assert_eq!(head.body, 5);
    assert!(!head.close && !head.head_only);
    let request = head.request(&Bytes::from(text)).unwrap();
    assert_eq!(request.method(), Method::POST);
    assert_eq!(request.uri(), "/v1/chat/completions?x=1");
    assert_eq!(request.version(), Version::HTTP_11);
    assert_eq!(request.headers()["host"], "gw");
    let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
    assert_eq!(twos, ["a", "b"]);
    let body = request.into_body();
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
}

#[test]
fn a_partial_head_asks_for_more_until_the_budget_is_spent() {
    assert_eq!(parsed("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
    assert_eq!(parsed("PR"), Parsed::Partial);
    let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100));
    assert_eq!(
        parse(long.as_bytes(), 64),
        Parsed::Refuse(Refusal::TooLarge)
    );
    let whole = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
    assert_eq!(
        parse(whole.as_bytes(), 64),
        Parsed::Refuse(Refusal::TooLarge)
    );
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
        Refusal::TooLarge
    );
}

#[test]
fn framing_that_could_be_read_two_ways_is_a_400() {
    let post = "POST / HTTP/1.1\r\nHost: x\r\n";
    for fields in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 40\r\n",
        "Content-Length: 5, 40\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding : chunked\r\n",
    ] {
        let text = format!("{post}{fields}\r\n");
        assert_eq!(refused(&text).status(), 400, "{fields}");
    }
}

#[test]
fn a_coding_other_than_chunked_is_a_501_and_chunked_alone_goes_to_hyper() {
    let post = "POST / HTTP/1.1\r\nHost: x\r\n";
    assert_eq!(
        refused(&format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n")),
        Refusal::Coding
    );
    assert_eq!(
        refused(&format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n")).status(),
        501
    );
    assert_eq!(
        parsed(&format!("{post}Transfer-Encoding: Chunked\r\n\r\n")),
        Parsed::HandOver
    );
    assert_eq!(
        parsed(&format!(
            "{post}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n"
        )),
        Parsed::Refuse(Refusal::Coding)
    );
}

#[test]
fn what_this_path_does_not_serve_is_handed_over() {
    for text in [
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        assert_eq!(parsed(text), Parsed::HandOver, "{text}");
    }
}

#[test]
fn connection_close_head_and_bare_line_feeds_are_read() {
    let head = head("HEAD /x HTTP/1.1\nHost: x\nConnection: keep-alive, Close\n\n");
    assert!(head.close && head.head_only);
    assert_eq!(head.body, 0);
}

#[test]
fn a_malformed_head_is_a_400() {
    for text in [
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "\x00\x01 / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(refused(text).status(), 400, "{text:?}");
    }
}

#[test]
fn a_target_past_64_kib_is_a_414() {
    let text = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000));
    assert_eq!(
        parse(text.as_bytes(), 128 * 1024),
        Parsed::Refuse(Refusal::UriTooLong)
    );
    assert_eq!(Refusal::UriTooLong.status(), 414);
}
