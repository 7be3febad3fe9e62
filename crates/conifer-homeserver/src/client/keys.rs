//! End-to-end encryption: device and one-time keys, cross-signing,
//! to-device messages and room-key backups.

use super::{Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Query;
use crate::extract::{Auth, Json as Body};
use crate::federation::e2ee::{by_server, server_of};
use crate::sync::parse_token;
use crate::Homeserver;
use axum::extract::Path;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use conifer_store::ToDeviceRecord;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/keys/upload", post(upload))
        .route("/keys/upload/:device", post(upload_legacy))
        .route("/keys/query", post(query))
        .route("/keys/claim", post(claim))
        .route("/keys/changes", get(changes))
        .route("/keys/device_signing/upload", post(device_signing_upload))
        .route("/keys/signatures/upload", post(signatures_upload))
        .route("/sendToDevice/:kind/:txn", put(send_to_device))
        .route("/room_keys/version", post(create_backup).get(latest_backup))
        .route(
            "/room_keys/version/:version",
            get(get_backup).put(update_backup).delete(delete_backup),
        )
        .route(
            "/room_keys/keys",
            get(get_keys_all).put(put_keys_all).delete(delete_keys_all),
        )
        .route(
            "/room_keys/keys/:room",
            get(get_keys_room)
                .put(put_keys_room)
                .delete(delete_keys_room),
        )
        .route(
            "/room_keys/keys/:room/:session",
            get(get_keys_session)
                .put(put_keys_session)
                .delete(delete_keys_session),
        )
}

fn counts(hs: &Homeserver, auth: &Auth) -> ApiResult<Value> {
    let mut c = hs
        .store
        .one_time_key_counts(&auth.user_id, &auth.device_id)?;
    c.entry("signed_curve25519".into()).or_insert(0);
    Ok(json!({ "one_time_key_counts": c }))
}

fn entries(v: Option<&Value>) -> Vec<(String, Value)> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

async fn upload(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let device_keys = body.get("device_keys").filter(|v| !v.is_null());
    if let Some(dk) = device_keys {
        check_device_keys(&auth, dk)?;
    }
    let one_time = entries(body.get("one_time_keys"));
    let fallback = entries(
        body.get("fallback_keys")
            .or_else(|| body.get("org.matrix.msc2732.fallback_keys")),
    );
    let changed = device_keys.is_some()
        && hs
            .store
            .device_keys(&auth.user_id)?
            .iter()
            .all(|(d, k)| d != &auth.device_id || Some(k) != device_keys);
    hs.store.upload_keys(
        &auth.user_id,
        &auth.device_id,
        device_keys,
        &one_time,
        &fallback,
    )?;
    if changed {
        hs.device_list_changed(&auth.user_id, Some(&auth.device_id), false)?;
    }
    Ok(Json(counts(&hs, &auth)?))
}

/// The device keys an upload publishes must be the uploader's own: `user_id`
/// and `device_id` "Must match the user ID used when logging in" and "Must
/// match the device ID used when logging in", and the object must carry a
/// valid signature by the device's own Ed25519 key ("The signature is
/// calculated using the process described at Signing JSON").
fn check_device_keys(auth: &Auth, dk: &Value) -> ApiResult<()> {
    use conifer_rooms::ruma::canonical_json::try_from_json_map;
    use conifer_rooms::ruma::serde::Base64;
    use conifer_rooms::ruma::signatures::verify_json;
    if dk.get("user_id").and_then(Value::as_str) != Some(&auth.user_id)
        || dk.get("device_id").and_then(Value::as_str) != Some(&auth.device_id)
    {
        return Err(MatrixError::invalid_param(
            "device_keys must name your user and device",
        ));
    }
    let key_id = format!("ed25519:{}", auth.device_id);
    let key = dk
        .pointer(&format!(
            "/keys/{}",
            key_id.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::invalid_param(format!("device_keys lacks the key {key_id}")))?;
    let signature = dk
        .get("signatures")
        .and_then(|s| s.get(&auth.user_id))
        .and_then(|s| s.get(&key_id))
        .cloned()
        .ok_or_else(|| {
            MatrixError::invalid_param("device_keys are not signed by the device's own key")
        })?;
    let key = Base64::parse(key)
        .map_err(|_| MatrixError::invalid_param(format!("{key_id} is not unpadded base64")))?;
    // Only the device's self-signature is checked here: cross-signing
    // signatures by other keys come and go through /keys/signatures/upload.
    let mut object = dk.as_object().cloned().unwrap_or_default();
    object.insert(
        "signatures".into(),
        json!({ auth.user_id.clone(): { key_id.clone(): signature } }),
    );
    let object = try_from_json_map(object)
        .map_err(|e| MatrixError::bad_json(format!("device_keys is not canonical JSON: {e}")))?;
    let keys = [(
        auth.user_id.clone(),
        [(key_id.clone(), key)].into_iter().collect(),
    )]
    .into_iter()
    .collect();
    verify_json(&keys, &object).map_err(|e| {
        MatrixError::invalid_param(format!("device_keys self-signature is invalid: {e}"))
    })
}

async fn upload_legacy(hs: Hs, auth: Auth, Path(_device): Path<String>, body: Body<Value>) -> Resp {
    upload(hs, auth, body).await
}

fn device_keys_with_names(
    hs: &Homeserver,
    user: &str,
    wanted: &[String],
) -> ApiResult<Map<String, Value>> {
    let mut out = Map::new();
    let names: std::collections::HashMap<String, Option<String>> = hs
        .store
        .devices(user)?
        .into_iter()
        .map(|d| (d.device_id, d.display_name))
        .collect();
    for (device, mut keys) in hs.store.device_keys(user)? {
        if !wanted.is_empty() && !wanted.contains(&device) {
            continue;
        }
        if let Some(Some(name)) = names.get(&device) {
            keys["unsigned"] = json!({ "device_display_name": name });
        }
        out.insert(device, keys);
    }
    Ok(out)
}

/// How long `/keys/query` and `/keys/claim` wait for remote servers when
/// the request names no `timeout`: "10 seconds is the recommended default".
const DEFAULT_REMOTE_TIMEOUT_MS: u64 = 10_000;
/// The longest wait a client may ask for; larger `timeout`s are cut to it.
const MAX_REMOTE_TIMEOUT_MS: u64 = 30_000;

/// The one deadline for all the remote servers a keys query or claim asks,
/// from the request's `timeout` ("The time (in milliseconds) to wait when
/// downloading keys from remote servers"): absent or `null` is the default,
/// an integer above the maximum is cut to it, and anything but a
/// non-negative integer is refused.
fn remote_deadline(body: &Value) -> ApiResult<tokio::time::Instant> {
    let ms = match body.get("timeout") {
        None | Some(Value::Null) => DEFAULT_REMOTE_TIMEOUT_MS,
        Some(v) => match v.as_u64() {
            Some(ms) => ms.min(MAX_REMOTE_TIMEOUT_MS),
            None if v.is_i64() => {
                return Err(MatrixError::invalid_param("timeout must not be negative"))
            }
            None => {
                return Err(MatrixError::invalid_param(
                    "timeout must be an integer number of milliseconds",
                ))
            }
        },
    };
    Ok(tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
}

async fn query(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let wanted = body
        .get("device_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("device_keys"))?;
    let mut device_keys = Map::new();
    let (mut master, mut self_signing, mut user_signing) = (Map::new(), Map::new(), Map::new());
    let mut failures = Map::new();
    // Remote users' keys come from their servers, all asked at once.
    let deadline = remote_deadline(&body)?;
    let requests = by_server(&hs, wanted.iter())
        .into_iter()
        .map(|(server, users)| (server, json!({ "device_keys": users })))
        .collect();
    for (server, answer) in hs.remote_keys_all("query", requests, deadline).await {
        match answer {
            Ok(answer) => {
                for (field, into) in [
                    ("device_keys", &mut device_keys),
                    ("master_keys", &mut master),
                    ("self_signing_keys", &mut self_signing),
                ] {
                    for (user, v) in answer[field].as_object().into_iter().flatten() {
                        if server_of(user) == server {
                            into.insert(user.clone(), v.clone());
                        }
                    }
                }
            }
            Err(failure) => {
                failures.insert(server, failure);
            }
        }
    }
    for (user, devices) in wanted {
        if !hs.is_local(user) {
            continue;
        }
        let list: Vec<String> = devices
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        device_keys.insert(
            user.clone(),
            Value::Object(device_keys_with_names(&hs, user, &list)?),
        );
        let cs = hs.store.cross_signing_keys(user)?;
        if let Some(k) = cs.get("master") {
            master.insert(user.clone(), k.clone());
        }
        if let Some(k) = cs.get("self_signing") {
            self_signing.insert(user.clone(), k.clone());
        }
        if user == &auth.user_id {
            if let Some(k) = cs.get("user_signing") {
                user_signing.insert(user.clone(), k.clone());
            }
        }
    }
    Ok(Json(json!({
        "device_keys": device_keys, "master_keys": master, "self_signing_keys": self_signing,
        "user_signing_keys": user_signing, "failures": failures,
    })))
}

async fn claim(hs: Hs, _auth: Auth, Body(body): Body<Value>) -> Resp {
    let wanted = body
        .get("one_time_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("one_time_keys"))?;
    let mut out = Map::new();
    let mut failures = Map::new();
    let deadline = remote_deadline(&body)?;
    let requests = by_server(&hs, wanted.iter())
        .into_iter()
        .map(|(server, users)| (server, json!({ "one_time_keys": users })))
        .collect();
    for (server, answer) in hs.remote_keys_all("claim", requests, deadline).await {
        match answer {
            Ok(answer) => {
                for (user, v) in answer["one_time_keys"].as_object().into_iter().flatten() {
                    if server_of(user) == server {
                        out.insert(user.clone(), v.clone());
                    }
                }
            }
            Err(failure) => {
                failures.insert(server, failure);
            }
        }
    }
    for (user, devices) in wanted {
        if !hs.is_local(user) {
            continue;
        }
        let Some(devices) = devices.as_object() else {
            continue;
        };
        let mut per_user = Map::new();
        for (device, algorithm) in devices {
            let Some(algorithm) = algorithm.as_str() else {
                continue;
            };
            if let Some((key_id, key)) = hs.store.claim_key(user, device, algorithm)? {
                per_user.insert(device.clone(), json!({ key_id: key }));
            }
        }
        if !per_user.is_empty() {
            out.insert(user.clone(), Value::Object(per_user));
        }
    }
    Ok(Json(json!({ "one_time_keys": out, "failures": failures })))
}

#[derive(Deserialize)]
struct ChangesQuery {
    from: String,
    to: String,
}

async fn changes(hs: Hs, auth: Auth, Query(q): Query<ChangesQuery>) -> Resp {
    let from = parse_token(&q.from)
        .ok_or_else(|| MatrixError::invalid_param("invalid from token"))?
        .0;
    let to = parse_token(&q.to)
        .ok_or_else(|| MatrixError::invalid_param("invalid to token"))?
        .0;
    let (changed, left) = hs.device_list_delta(&auth.user_id, from, to)?;
    Ok(Json(json!({ "changed": changed, "left": left })))
}

async fn device_signing_upload(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    // Replacing an existing master key needs the password; the first upload does not.
    let existing = hs.store.cross_signing_keys(&auth.user_id)?;
    if existing.contains_key("master")
        && body
            .get("master_key")
            .is_some_and(|k| Some(k) != existing.get("master"))
    {
        super::account::require_password(&hs, &auth, &body).await?;
    }
    for (field, kind) in [
        ("master_key", "master"),
        ("self_signing_key", "self_signing"),
        ("user_signing_key", "user_signing"),
    ] {
        if let Some(key) = body.get(field) {
            if key.get("user_id").and_then(Value::as_str) != Some(&auth.user_id) {
                return Err(MatrixError::invalid_param(format!(
                    "{field} must be for your own user"
                )));
            }
            hs.store.put_cross_signing_key(&auth.user_id, kind, key)?;
        }
    }
    hs.device_list_changed(&auth.user_id, None, false)?;
    Ok(Json(json!({})))
}

/// Merges uploaded signatures into the stored device or cross-signing keys.
async fn signatures_upload(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let Some(users) = body.as_object() else {
        return Err(MatrixError::bad_json("expected an object"));
    };
    let mut failures = Map::new();
    for (user, keys) in users {
        let Some(keys) = keys.as_object() else {
            continue;
        };
        for (key_id, signed) in keys {
            let sigs = signed.get("signatures").cloned().unwrap_or(json!({}));
            let mut stored_device = hs
                .store
                .device_keys(user)?
                .into_iter()
                .find(|(d, _)| d == key_id)
                .map(|(_, k)| k);
            let cross = hs.store.cross_signing_keys(user)?;
            let cross_hit = cross.iter().find(|(_, k)| {
                k["keys"]
                    .as_object()
                    .is_some_and(|m| m.keys().any(|id| id.ends_with(&format!(":{key_id}"))))
            });
            let merge = |target: &mut Value| {
                if let Some(new) = sigs.as_object() {
                    for (signer, s) in new {
                        let entry = target["signatures"][signer]
                            .as_object_mut()
                            .map(|m| m.clone())
                            .unwrap_or_default();
                        let mut merged = entry;
                        if let Some(s) = s.as_object() {
                            merged.extend(s.clone());
                        }
                        target["signatures"][signer] = Value::Object(merged);
                    }
                }
            };
            if let Some(dk) = stored_device.as_mut() {
                merge(dk);
                hs.store.replace_device_keys(user, key_id, dk)?;
            } else if let Some((kind, key)) = cross_hit {
                let mut key = key.clone();
                merge(&mut key);
                hs.store.put_cross_signing_key(user, kind, &key)?;
            } else {
                failures.insert(
                    user.clone(),
                    json!({ key_id: { "errcode": "M_NOT_FOUND", "error": "unknown key" } }),
                );
                continue;
            }
            hs.store.mark_keys_changed(user)?;
        }
    }
    let _ = auth;
    Ok(Json(json!({ "failures": failures })))
}

async fn send_to_device(
    hs: Hs,
    auth: Auth,
    Path((kind, txn)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    let messages = body
        .get("messages")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::missing_param("messages"))?;
    let message_id = format!("{}-{}-{txn}", auth.device_id, crate::now_ms());
    hs.federate_to_device(&auth.user_id, &kind, &message_id, messages);
    let mut out = Vec::new();
    for (user, devices) in messages {
        if !hs.is_local(user) {
            continue;
        }
        let Some(devices) = devices.as_object() else {
            continue;
        };
        for (device, content) in devices {
            let message = json!({ "type": kind, "sender": auth.user_id, "content": content });
            if device == "*" {
                for d in hs.store.devices(user)? {
                    out.push(ToDeviceRecord {
                        user_id: user.clone(),
                        device_id: d.device_id,
                        message: message.clone(),
                    });
                }
            } else {
                out.push(ToDeviceRecord {
                    user_id: user.clone(),
                    device_id: device.clone(),
                    message,
                });
            }
        }
    }
    if !out.is_empty() {
        hs.store.queue_to_device(out)?;
    }
    Ok(Json(json!({})))
}

async fn create_backup(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("algorithm"))?;
    let auth_data = body
        .get("auth_data")
        .ok_or_else(|| MatrixError::missing_param("auth_data"))?;
    let version = hs
        .store
        .create_backup(&auth.user_id, algorithm, auth_data)?;
    Ok(Json(json!({ "version": version.to_string() })))
}

fn backup_json(b: conifer_store::BackupVersion) -> Value {
    json!({ "version": b.version.to_string(), "algorithm": b.algorithm, "auth_data": b.auth_data, "etag": b.etag.to_string(), "count": b.count })
}

async fn latest_backup(hs: Hs, auth: Auth) -> Resp {
    let b = hs
        .store
        .backup_version(&auth.user_id, None)?
        .ok_or_else(|| MatrixError::not_found("no backup"))?;
    Ok(Json(backup_json(b)))
}

fn version_of(v: &str) -> ApiResult<u64> {
    v.parse()
        .map_err(|_| MatrixError::not_found("unknown backup version"))
}

async fn get_backup(hs: Hs, auth: Auth, Path(v): Path<String>) -> Resp {
    let b = hs
        .store
        .backup_version(&auth.user_id, Some(version_of(&v)?))?
        .ok_or_else(|| MatrixError::not_found("unknown backup version"))?;
    Ok(Json(backup_json(b)))
}

async fn update_backup(hs: Hs, auth: Auth, Path(v): Path<String>, Body(body): Body<Value>) -> Resp {
    let version = version_of(&v)?;
    if body
        .get("version")
        .and_then(Value::as_str)
        .is_some_and(|b| b != v)
    {
        return Err(MatrixError::invalid_param("version in body does not match"));
    }
    let auth_data = body
        .get("auth_data")
        .ok_or_else(|| MatrixError::missing_param("auth_data"))?;
    if !hs.store.update_backup(&auth.user_id, version, auth_data)? {
        return Err(MatrixError::not_found("unknown backup version"));
    }
    Ok(Json(json!({})))
}

async fn delete_backup(hs: Hs, auth: Auth, Path(v): Path<String>) -> Resp {
    if !hs.store.delete_backup(&auth.user_id, version_of(&v)?)? {
        return Err(MatrixError::not_found("unknown backup version"));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: String,
}

/// The backup must be the current one for uploads (`M_WRONG_ROOM_KEYS_VERSION` otherwise).
fn current_version(hs: &Homeserver, auth: &Auth, v: &str, writing: bool) -> ApiResult<u64> {
    let version = version_of(v)?;
    let latest = hs.store.backup_version(&auth.user_id, None)?;
    match latest {
        Some(b) if b.version == version => Ok(version),
        Some(b) if writing => Err(MatrixError::new(
            axum::http::StatusCode::FORBIDDEN,
            "M_WRONG_ROOM_KEYS_VERSION",
            "not the current backup version",
        )
        .with_extra(json!({ "current_version": b.version.to_string() }))),
        _ if !writing
            && hs
                .store
                .backup_version(&auth.user_id, Some(version))?
                .is_some() =>
        {
            Ok(version)
        }
        _ => Err(MatrixError::not_found("unknown backup version")),
    }
}

fn keys_response(
    hs: &Homeserver,
    auth: &Auth,
    version: u64,
    room: Option<&str>,
    session: Option<&str>,
) -> Resp {
    let keys = hs
        .store
        .backup_keys(&auth.user_id, version, room, session)?;
    if let Some(s) = session {
        let (_, _, k) = keys
            .into_iter()
            .next()
            .ok_or_else(|| MatrixError::not_found("no such session"))?;
        let _ = s;
        return Ok(Json(k));
    }
    let mut rooms = Map::new();
    for (r, s, k) in keys {
        let entry = rooms.entry(r).or_insert_with(|| json!({ "sessions": {} }));
        entry["sessions"][s] = k;
    }
    if let Some(r) = room {
        return Ok(Json(rooms.remove(r).unwrap_or(json!({ "sessions": {} }))));
    }
    Ok(Json(json!({ "rooms": rooms })))
}

fn store_keys(
    hs: &Homeserver,
    auth: &Auth,
    version: u64,
    keys: Vec<(String, String, Value)>,
) -> Resp {
    hs.store.put_backup_keys(&auth.user_id, version, &keys)?;
    let b = hs
        .store
        .backup_version(&auth.user_id, Some(version))?
        .ok_or_else(|| MatrixError::not_found("unknown backup version"))?;
    Ok(Json(
        json!({ "etag": b.etag.to_string(), "count": b.count }),
    ))
}

fn sessions_of(room: &str, v: &Value) -> Vec<(String, String, Value)> {
    v.get("sessions")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(s, k)| (room.to_owned(), s.clone(), k.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_keys_all(hs: Hs, auth: Auth, Query(q): Query<VersionQuery>) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    keys_response(&hs, &auth, v, None, None)
}
async fn get_keys_room(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    keys_response(&hs, &auth, v, Some(&room), None)
}
async fn get_keys_session(
    hs: Hs,
    auth: Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    keys_response(&hs, &auth, v, Some(&room), Some(&session))
}
async fn put_keys_all(
    hs: Hs,
    auth: Auth,
    Query(q): Query<VersionQuery>,
    Body(body): Body<Value>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, true)?;
    let keys = body
        .get("rooms")
        .and_then(Value::as_object)
        .map(|m| m.iter().flat_map(|(r, v)| sessions_of(r, v)).collect())
        .unwrap_or_default();
    store_keys(&hs, &auth, v, keys)
}
async fn put_keys_room(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
    Body(body): Body<Value>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, true)?;
    store_keys(&hs, &auth, v, sessions_of(&room, &body))
}
async fn put_keys_session(
    hs: Hs,
    auth: Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    Body(body): Body<Value>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, true)?;
    store_keys(&hs, &auth, v, vec![(room, session, body)])
}
async fn delete_keys_all(hs: Hs, auth: Auth, Query(q): Query<VersionQuery>) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    hs.store.delete_backup_keys(&auth.user_id, v, None, None)?;
    store_keys(&hs, &auth, v, vec![])
}
async fn delete_keys_room(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    hs.store
        .delete_backup_keys(&auth.user_id, v, Some(&room), None)?;
    store_keys(&hs, &auth, v, vec![])
}
async fn delete_keys_session(
    hs: Hs,
    auth: Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> Resp {
    let v = current_version(&hs, &auth, &q.version, false)?;
    hs.store
        .delete_backup_keys(&auth.user_id, v, Some(&room), Some(&session))?;
    store_keys(&hs, &auth, v, vec![])
}
