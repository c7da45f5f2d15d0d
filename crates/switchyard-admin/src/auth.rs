//! Who is calling: bearer tokens from `[[admin.tokens]]`, compared in constant time.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use switchyard_config::{AdminToken, Role, TokenKind};
use switchyard_core::Body;

use crate::reply::ApiError;

/// The caller, as the token they presented names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub kind: TokenKind,
}

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing, malformed or unknown bearer token")]
    Unauthorized,
    #[error("this needs an operator token")]
    Forbidden,
    #[error("only a human operator may do this")]
    HumansOnly,
}

const HOW_TO: &str = "send `Authorization: Bearer <secret>` with a token from [[admin.tokens]] \
     (switchyard ctl reads it from SWITCHYARD_ADMIN_TOKEN)";

impl AuthError {
    pub fn into_response(self) -> Response<Body> {
        match self {
            AuthError::Unauthorized => {
                let mut response =
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", HOW_TO).into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            AuthError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this is a mutation: it needs a token with role operator; yours is a viewer",
            )
            .into_response(),
            AuthError::HumansOnly => ApiError::new(
                StatusCode::FORBIDDEN,
                "humans_only",
                "acknowledging an incident needs a human operator's token; \
                 automation tokens may not acknowledge",
            )
            .into_response(),
        }
    }
}

/// What an endpoint demands of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid token: viewer or operator.
    Read,
    /// An operator token.
    Operate,
    /// An operator token held by a human.
    HumanOperator,
}

/// Identifies the caller and checks they may do what `need` says.
pub fn authorize(
    headers: &HeaderMap,
    tokens: &[AdminToken],
    need: Need,
) -> Result<Principal, AuthError> {
    let presented = bearer(headers).ok_or(AuthError::Unauthorized)?;
    let principal = identify(presented.as_bytes(), tokens).ok_or(AuthError::Unauthorized)?;
    if need != Need::Read && principal.role != Role::Operator {
        return Err(AuthError::Forbidden);
    }
    if need == Need::HumanOperator && principal.kind != TokenKind::Human {
        return Err(AuthError::HumansOnly);
    }
    Ok(principal)
}

/// The secret of `Authorization: Bearer <secret>` (scheme in any case), if well formed.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    // Two Authorization headers are ambiguous: refuse rather than guess which one counts.
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?;
    let (scheme, secret) = text.split_once(' ')?;
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() || secret.contains(' ') {
        return None;
    }
    Some(secret)
}

/// The token whose secret equals `presented`. Every configured secret is compared, whatever
/// matched before, so the time taken does not tell which token (or how many) came close.
fn identify(presented: &[u8], tokens: &[AdminToken]) -> Option<Principal> {
    const NONE: u64 = u64::MAX;
    let mut found = NONE;
    for (index, token) in tokens.iter().enumerate() {
        // A token without a secret never authenticates (its variable or file was missing).
        let Some(secret) = &token.secret else {
            continue;
        };
        // `ct_eq` on slices of different lengths is false at once: only the length of a
        // secret can leak, never its content.
        let hit = presented.ct_eq(secret.as_bytes());
        found = u64::conditional_select(&found, &(index as u64), hit);
    }
    if found == NONE {
        return None;
    }
    let token = tokens.get(usize::try_from(found).ok()?)?;
    Some(Principal {
        name: token.name.clone(),
        role: token.role,
        kind: token.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, secret: Option<&str>) -> AdminToken {
        AdminToken {
            name: name.into(),
            role,
            kind: TokenKind::Human,
            secret: secret.map(str::to_owned),
            source: "env T".into(),
            line: 1,
        }
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&headers("Bearer  ")), None);
        assert_eq!(bearer(&headers("Bearer a b")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn identifies_the_matching_token_only() {
        let tokens = vec![
            token("none", Role::Operator, None),
            token("view", Role::Viewer, Some("viewer-secret-0123")),
            token("op", Role::Operator, Some("operator-secret-01")),
        ];
        let op = identify(b"operator-secret-01", &tokens).unwrap();
        assert_eq!(op.name, "op");
        assert_eq!(
            identify(b"viewer-secret-0123", &tokens).unwrap().name,
            "view"
        );
        assert!(identify(b"operator-secret-0", &tokens).is_none());
        assert!(identify(b"", &tokens).is_none());
    }
}
