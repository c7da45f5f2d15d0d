use crate::ctl::json::pretty;

#[test]
fn ctl_json_keeps_the_server_key_order() {
    let body = br#"{"route":"support","engaged":true,"before":null,"took_us":14,"list":[],"o":{}}"#;
    assert_eq!(
        pretty(body),
        "{\n  \"route\": \"support\",\n  \"engaged\": true,\n  \"before\": null,\n  \
         \"took_us\": 14,\n  \"list\": [],\n  \"o\": {}\n}"
    );
}

#[test]
fn ctl_json_nests_and_leaves_strings_alone() {
    let body = br#"{ "a" : [1, {"b": "x, {y}: \"z\" [w]"}] , "c":{ } }"#;
    assert_eq!(
        pretty(body),
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x, {y}: \\\"z\\\" [w]\"\n    }\n  ],\n  \"c\": {}\n}"
    );
    let reparsed: serde_json::Value = serde_json::from_str(&pretty(body)).unwrap();
    assert_eq!(
        reparsed,
        serde_json::from_slice::<serde_json::Value>(body).unwrap()
    );
}

#[test]
fn ctl_json_passes_anything_else_through() {
    assert_eq!(pretty(b"Bad Gateway\n"), "Bad Gateway");
}
