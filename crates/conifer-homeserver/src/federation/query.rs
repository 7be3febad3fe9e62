//! `GET /_matrix/federation/v1/query/profile`.

use super::FederationAuth;
use crate::api::Hs;
use crate::error::MatrixError;
use crate::extract::Query;
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

#[derive(Deserialize)]
pub struct DirectoryQuery {
    room_alias: String,
}

/// Resolves one of our room aliases for another server: "the mapped room
/// ID and list of resident homeservers in the room". Aliases of other
/// servers are not looked up on their behalf (400 `M_INVALID_PARAM`).
pub async fn directory(
    hs: Hs,
    Query(q): Query<DirectoryQuery>,
    _auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let target = hs.local_alias(&q.room_alias)?;
    Ok(Json(
        json!({ "room_id": target.room_id, "servers": target.servers }),
    ))
}

fn local_user(hs: &crate::Homeserver, user: &str) -> Result<(), MatrixError> {
    if !hs.is_local(user) {
        return Err(MatrixError::invalid_param("the user is not on this server"));
    }
    Ok(())
}

/// A local user's devices with their keys, for another server's device list.
pub async fn user_devices(
    hs: Hs,
    axum::extract::Path(user): axum::extract::Path<String>,
    _auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    local_user(&hs, &user)?;
    let keys: std::collections::HashMap<String, Value> =
        hs.store.device_keys(&user)?.into_iter().collect();
    let devices: Vec<Value> = hs
        .store
        .devices(&user)?
        .into_iter()
        .map(|d| {
            let mut v = json!({ "device_id": d.device_id, "keys": keys.get(&d.device_id).cloned().unwrap_or(json!({})) });
            if let Some(n) = d.display_name {
                v["device_display_name"] = json!(n);
            }
            v
        })
        .collect();
    let cross = hs.store.cross_signing_keys(&user)?;
    let stream_id = hs.store.stream_position();
    let mut out = json!({ "user_id": user, "stream_id": stream_id, "devices": devices });
    if let Some(k) = cross.get("master") {
        out["master_key"] = k.clone();
    }
    if let Some(k) = cross.get("self_signing") {
        out["self_signing_key"] = k.clone();
    }
    Ok(Json(out))
}

/// Device and cross-signing keys of local users.
pub async fn keys_query(hs: Hs, auth: FederationAuth) -> Result<Json<Value>, MatrixError> {
    let body = auth.body.unwrap_or(Value::Null);
    let wanted = body
        .get("device_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("device_keys"))?;
    let (mut device_keys, mut master, mut self_signing) = (json!({}), json!({}), json!({}));
    for (user, devices) in wanted {
        if !hs.is_local(user) {
            continue;
        }
        let only: Vec<&str> = devices
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut mine = serde_json::Map::new();
        for (device, keys) in hs.store.device_keys(user)? {
            if only.is_empty() || only.contains(&device.as_str()) {
                mine.insert(device, keys);
            }
        }
        device_keys[user] = Value::Object(mine);
        let cross = hs.store.cross_signing_keys(user)?;
        if let Some(k) = cross.get("master") {
            master[user] = k.clone();
        }
        if let Some(k) = cross.get("self_signing") {
            self_signing[user] = k.clone();
        }
    }
    Ok(Json(
        json!({ "device_keys": device_keys, "master_keys": master, "self_signing_keys": self_signing }),
    ))
}

/// Claims one-time keys of local devices for another server's users.
pub async fn keys_claim(hs: Hs, auth: FederationAuth) -> Result<Json<Value>, MatrixError> {
    let body = auth.body.unwrap_or(Value::Null);
    let wanted = body
        .get("one_time_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("one_time_keys"))?;
    let mut out = json!({});
    for (user, devices) in wanted {
        if !hs.is_local(user) {
            continue;
        }
        for (device, algorithm) in devices.as_object().into_iter().flatten() {
            let Some(algorithm) = algorithm.as_str() else {
                continue;
            };
            if let Some((key_id, key)) = hs.store.claim_key(user, device, algorithm)? {
                out[user][device] = json!({ key_id: key });
            }
        }
    }
    Ok(Json(json!({ "one_time_keys": out })))
}

/// Our public room directory, for another server's users.
pub async fn public_rooms_get(
    hs: Hs,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    _auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let query = crate::directory::PublicRoomsQuery {
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        since: q.get("since").cloned(),
        term: None,
    };
    directory_page(hs.public_rooms(&query)?)
}

pub async fn public_rooms_post(hs: Hs, auth: FederationAuth) -> Result<Json<Value>, MatrixError> {
    let query = crate::directory::PublicRoomsQuery::from_body(&auth.body.unwrap_or(Value::Null));
    directory_page(hs.public_rooms(&query)?)
}

fn directory_page(page: crate::directory::PublicRoomsPage) -> Result<Json<Value>, MatrixError> {
    serde_json::to_value(page)
        .map(Json)
        .map_err(|e| MatrixError::unknown_internal(e.to_string()))
}
