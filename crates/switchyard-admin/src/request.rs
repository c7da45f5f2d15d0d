//! Request bodies: small, optional JSON objects.

use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::reply::ApiError;

/// The most an admin request body may carry; the largest real one is a kill reason.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads a JSON object body; an empty body gives `T::default()`, so every field the
/// endpoint needs must be checked by the caller.
pub async fn json_body<T: DeserializeOwned + Default>(body: Incoming) -> Result<T, ApiError> {
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(error) => {
            return Err(ApiError::bad_request(format!(
                "the body could not be read: {error}"
            )))
        }
    };
    parse(&bytes)
}

/// A body read whole: whitespace only is `T::default()`, anything else must be the JSON.
pub(crate) fn parse<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}
