//! `GET /_matrix/federation/v1/query/profile`.

use super::FederationAuth;
use crate::client::Hs;
use crate::error::MatrixError;
use axum::extract::Query;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

pub async fn profile(
    hs: Hs,
    Query(q): Query<ProfileQuery>,
    _auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    if !hs.is_local(&q.user_id) {
        return Err(MatrixError::invalid_param("the user is not on this server"));
    }
    let user = hs
        .store
        .user(&q.user_id)?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| MatrixError::not_found("profile not found"))?;
    let mut out = json!({});
    let wanted = |f: &str| q.field.as_deref().is_none_or(|w| w == f);
    if let Some(n) = user.displayname.filter(|_| wanted("displayname")) {
        out["displayname"] = json!(n);
    }
    if let Some(a) = user.avatar_url.filter(|_| wanted("avatar_url")) {
        out["avatar_url"] = json!(a);
    }
    Ok(Json(out))
}
