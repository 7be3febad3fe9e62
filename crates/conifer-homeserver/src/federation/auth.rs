//! Authenticating inbound federation requests: the X-Matrix header must be
//! addressed to us and signed by the origin with a key we know or can fetch
//! from the origin itself (P2P names carry their key in the name).

use crate::error::{ApiResult, MatrixError};
use crate::{now_ms, Homeserver};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use conifer_federation::{
    parse_x_matrix, verify_request, verify_server_key_response, FederationRequest,
};
use serde_json::Value;
use std::sync::Arc;

/// A verified inbound federation request: its origin and JSON body.
pub struct FederationAuth {
    pub origin: String,
    pub body: Option<Value>,
}

fn unauthorized(message: impl Into<String>) -> MatrixError {
    MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message)
}

#[axum::async_trait]
impl FromRequest<Arc<Homeserver>> for FederationAuth {
    type Rejection = MatrixError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, Self::Rejection> {
        let header = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| unauthorized("missing X-Matrix authorization"))?
            .to_owned();
        let x = parse_x_matrix(&header).map_err(|e| unauthorized(e.to_string()))?;
        let method = req.method().as_str().to_owned();
        let uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let limit = hs.config.client.max_request_bytes;
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| MatrixError::too_large(format!("request body exceeds {limit} bytes")))?;
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| MatrixError::not_json(format!("body is not JSON: {e}")))?,
            )
        };
        let key = hs.verify_key(&x.origin, &x.key).await?;
        verify_request(
            &x,
            &method,
            &uri,
            hs.server_name.as_str(),
            body.as_ref(),
            &key,
        )
        .map_err(|e| MatrixError::forbidden(e.to_string()))?;
        hs.sender.signal(super::Signal::Heard(x.origin.clone()));
        Ok(FederationAuth {
            origin: x.origin,
            body,
        })
    }
}

impl Homeserver {
    /// The verify key `key_id` of `server`: from the key ring, from the name
    /// of a P2P server, or fetched from the server's `/_matrix/key/v2/server`.
    pub async fn verify_key(&self, server: &str, key_id: &str) -> ApiResult<[u8; 32]> {
        let now = now_ms();
        // Our own events come back to us (backfill, state, missing events).
        if server == self.server_name.as_str() && key_id == self.key.key_id() {
            return Ok(self.key.public);
        }
        if let Some(k) = self.key_ring.lock().get(server, key_id, now) {
            return Ok(k);
        }
        let (_, keys) = self
            .fetch_server_keys(server)
            .await
            .map_err(|e| unauthorized(format!("cannot fetch the keys of {server}: {e}")))?;
        let mut ring = self.key_ring.lock();
        ring.insert(keys);
        ring.get(server, key_id, now)
            .ok_or_else(|| unauthorized(format!("{server} has no key {key_id}")))
    }

    /// `server`'s own key response, fetched through the transport and
    /// checked (its name, its self-signature, its validity).
    pub(crate) async fn fetch_server_keys(
        &self,
        server: &str,
    ) -> Result<(Value, Vec<conifer_federation::VerifyKey>), String> {
        let transport = self.transport.get().ok_or("no federation transport")?;
        let response = transport
            .send(FederationRequest {
                destination: server.to_owned(),
                method: "GET".into(),
                uri: "/_matrix/key/v2/server".into(),
                body: None,
                authorization: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        let json: Value =
            serde_json::from_slice(&response.body).map_err(|_| "the key response is not JSON")?;
        let keys =
            verify_server_key_response(server, &json, now_ms()).map_err(|e| e.to_string())?;
        Ok((json, keys))
    }
}
