//! `GET /_matrix/key/v2/server`: our verify key, self-signed.

use crate::client::Hs;
use crate::error::MatrixError;
use crate::now_ms;
use axum::Json;
use serde_json::Value;

/// Key responses stay valid for a week; servers re-fetch after that.
const KEY_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;

pub async fn server_keys(hs: Hs) -> Result<Json<Value>, MatrixError> {
    conifer_federation::server_key_response(&hs.key, now_ms() + KEY_VALIDITY_MS)
        .map(Json)
        .map_err(|e| MatrixError::unknown_internal(e.to_string()))
}
