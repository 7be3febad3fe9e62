//! Server keys: `GET /_matrix/key/v2/server` (our verify key, self-signed)
//! and the notary endpoints `/_matrix/key/v2/query`, which answer for our
//! own keys and for other servers' keys fetched from them, checked, and
//! co-signed by us.

use crate::api::Hs;
use crate::error::MatrixError;
use crate::extract::Json as Body;
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::Json;
use conifer_federation::notary_sign;
use serde_json::{json, Value};

/// Key responses stay valid for a week; servers re-fetch after that.
const KEY_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;

pub async fn server_keys(hs: Hs) -> Result<Json<Value>, MatrixError> {
    own_keys(&hs).map(Json)
}

fn own_keys(hs: &Homeserver) -> Result<Value, MatrixError> {
    conifer_federation::server_key_response(&hs.key, now_ms() + KEY_VALIDITY_MS)
        .map_err(|e| MatrixError::unknown_internal(e.to_string()))
}

/// `server`'s key response, checked and co-signed; `None` if it cannot be had.
async fn notarised(hs: &Homeserver, server: &str) -> Option<Value> {
    if server == hs.server_name.as_str() {
        return own_keys(hs).ok();
    }
    let (json, keys) = hs.fetch_server_keys(server).await.ok()?;
    hs.key_ring.lock().insert(keys);
    notary_sign(&hs.key, &json).ok()
}

/// `POST /_matrix/key/v2/query`: `{"server_keys": {server: {key_id: {}}}}`.
pub async fn query(hs: Hs, Body(body): Body<Value>) -> Result<Json<Value>, MatrixError> {
    let wanted = body
        .get("server_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("server_keys"))?;
    let mut out = Vec::new();
    for server in wanted.keys().take(100) {
        if let Some(v) = notarised(&hs, server).await {
            out.push(v);
        }
    }
    Ok(Json(json!({ "server_keys": out })))
}

/// `GET /_matrix/key/v2/query/{serverName}`.
pub async fn query_one(hs: Hs, Path(server): Path<String>) -> Result<Json<Value>, MatrixError> {
    let out: Vec<Value> = notarised(&hs, &server).await.into_iter().collect();
    Ok(Json(json!({ "server_keys": out })))
}
