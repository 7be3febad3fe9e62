//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
//! (simplified sliding sync, MSC4186): Ruma's request and response types
//! around [`crate::sliding_sync`].

use super::Hs;
use crate::error::MatrixError;
use crate::extract::Auth;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ruma::api::client::sync::sync_events::v5;
use ruma::api::{IncomingRequestExt, OutgoingResponseExt};
use ruma::presence::PresenceState;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<crate::Homeserver>> {
    Router::new().route(
        "/org.matrix.simplified_msc3575/sync",
        post(sliding_sync_handler),
    )
}

async fn sliding_sync_handler(
    hs: Hs,
    auth: Auth,
    req: axum::extract::Request,
) -> crate::ApiResult<Response> {
    let limit = hs.config.client.max_request_bytes;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| MatrixError::too_large(format!("request body exceeds {limit} bytes")))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        return Err(MatrixError::not_json("body is not JSON"));
    }
    let request = v5::Request::try_from_http_request(http::Request::from_parts(parts, bytes), &[])
        .map_err(|e| {
            use ruma::api::error::{DeserializationError, FromHttpRequestError};
            match e {
                FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
                    MatrixError::bad_json(e.to_string())
                }
                e => MatrixError::invalid_param(e.to_string()),
            }
        })?;
    match &request.set_presence {
        PresenceState::Offline => {}
        p @ (PresenceState::Online | PresenceState::Unavailable) => {
            super::sync::set_presence_if_changed(&hs, &auth.user_id, p.as_str())?
        }
        _ => {
            return Err(MatrixError::invalid_param(
                "set_presence must be online, offline or unavailable",
            ))
        }
    }
    let max_timeout = Duration::from_millis(hs.config.client.max_sync_timeout_ms);
    let response = crate::sliding_sync::sliding_sync(&hs, &auth, request, max_timeout).await?;
    let http = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|e| MatrixError::unknown_internal(format!("cannot serialise: {e}")))?;
    Ok(http.map(axum::body::Body::from).into_response())
}
