//! Answers: JSON documents and the contract's error shape.

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use switchyard_core::{body, Body};

pub const JSON: &str = "application/json";

/// A refusal the API answers with `{"error":{"code","message"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The error object alone, for answers that carry more than the error.
    pub fn object(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }

    pub fn into_response(self) -> Response<Body> {
        let text = serde_json::json!({ "error": self.object() }).to_string();
        respond(self.status, JSON, text)
    }
}

pub fn respond(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON document. Serialising our own plain structs cannot fail; if it ever did, the
/// client gets a 500 rather than a truncated document.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => respond(status, JSON, text),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("could not encode the answer: {error}"),
        )
        .into_response(),
    }
}
