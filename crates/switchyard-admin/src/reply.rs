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
    pub fn object(&self) -> ErrorObject {
        ErrorObject {
            code: self.code.to_owned(),
            message: self.message.clone(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        json(
            self.status,
            &ErrorBody {
                error: self.object(),
            },
        )
    }
}

/// Every refusal: `{"error":{"code","message"}}`. Answers that say more (a reload's `422`, a
/// mutation's `503 state_not_saved`) carry other fields beside `error`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// A stable, machine-readable reason, such as `unknown_route` or `state_not_saved`.
    pub code: String,
    /// What happened and what to do next, for a person.
    pub message: String,
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
        Err(error) => {
            // Hand-made, so a failure here cannot recurse.
            let message = serde_json::Value::from(format!("could not encode the answer: {error}"));
            let text = format!(r#"{{"error":{{"code":"internal","message":{message}}}}}"#);
            respond(StatusCode::INTERNAL_SERVER_ERROR, JSON, text)
        }
    }
}
