//! Request extractors: the authenticated user, strict JSON bodies and query
//! strings that fail as Matrix errors.

use crate::error::MatrixError;
use crate::Homeserver;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The user and device behind the request's access token.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: String,
    pub device_id: String,
    pub token: String,
}

/// Reads the token from `Authorization: Bearer` or the deprecated
/// `access_token` query parameter.
pub fn token_of(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let h = h.to_str().ok()?;
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "access_token").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[axum::async_trait]
impl FromRequestParts<Arc<Homeserver>> for Auth {
    type Rejection = MatrixError;

    async fn from_request_parts(
        parts: &mut Parts,
        hs: &Arc<Homeserver>,
    ) -> Result<Self, Self::Rejection> {
        let token =
            token_of(parts).ok_or_else(|| MatrixError::missing_token("missing access token"))?;
        hs.authenticate(&token).await
    }
}

/// For endpoints where a token is optional: a bad token is still an error.
pub struct MaybeAuth;

#[axum::async_trait]
impl FromRequestParts<Arc<Homeserver>> for MaybeAuth {
    type Rejection = MatrixError;

    async fn from_request_parts(
        parts: &mut Parts,
        hs: &Arc<Homeserver>,
    ) -> Result<Self, Self::Rejection> {
        match token_of(parts) {
            Some(token) => hs.authenticate(&token).await.map(|_| MaybeAuth),
            None => Ok(MaybeAuth),
        }
    }
}

/// A JSON body: `M_NOT_JSON` if it is not JSON, `M_BAD_JSON` if it does not
/// have the expected shape, `M_TOO_LARGE` past the configured size.
pub struct Json<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned> FromRequest<Arc<Homeserver>> for Json<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, Self::Rejection> {
        let limit = hs.config.client.max_request_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| MatrixError::too_large(format!("request body exceeds {limit} bytes")))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| MatrixError::not_json(format!("body is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(MatrixError::bad_json("body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(Json)
            .map_err(|e| MatrixError::bad_json(e.to_string()))
    }
}

/// A query string: one that does not have the expected shape (`limit=-1`,
/// `timeout=abc`) is `400 M_INVALID_PARAM` as JSON, where axum's own `Query`
/// would answer in plain text (a required parameter left out is
/// `M_MISSING_PARAM`). The spec: "`M_INVALID_PARAM` A parameter that
/// was specified has the wrong value. For example, the server expected an
/// integer and instead received a string."
pub struct Query<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| {
                let text = e.body_text();
                if text.contains("missing field") {
                    MatrixError::missing_param(text)
                } else {
                    MatrixError::invalid_param(text)
                }
            })
    }
}
