//! Profiles: display name and avatar, mirrored into the user's room
//! memberships as the spec asks.

use super::{require_self, user_id, Hs, Resp};
use crate::error::MatrixError;
use crate::extract::{Auth, Json as Body};
use crate::Homeserver;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use conifer_rooms::EventTemplate;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/profile/:user", get(profile))
        .route("/profile/:user/:field", get(get_field).put(put_field))
}

fn local_profile(hs: &Homeserver, user: &str) -> crate::ApiResult<conifer_store::UserRecord> {
    user_id(user)?;
    hs.store
        .user(user)?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| MatrixError::not_found("profile not found"))
}

/// A remote user's profile, asked of their server.
async fn remote_profile(hs: &Homeserver, user: &str, field: Option<&str>) -> Resp {
    user_id(user)?;
    let server = crate::federation::e2ee::server_of(user);
    // Unreachable or unknown servers answer 404 like a missing profile: the
    // client cannot tell them apart from here, and no 5xx is ours to give.
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut uri = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(user));
    if let Some(f) = field {
        uri.push_str(&format!("&field={}", enc(f)));
    }
    match hs.federation_call(server, "GET", &uri, None).await {
        Ok((200, v)) if v.is_object() => Ok(Json(v)),
        Ok((404, _)) => Err(MatrixError::not_found("profile not found")),
        Ok((status, _)) => Err(MatrixError::not_found(format!(
            "{server} answered {status} for the profile"
        ))),
        Err(e) => Err(MatrixError::new(
            axum::http::StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("cannot reach {server}: {e}"),
        )),
    }
}

async fn profile(hs: Hs, Path(user): Path<String>) -> Resp {
    if !hs.is_local(&user) {
        return remote_profile(&hs, &user, None).await;
    }
    let u = local_profile(&hs, &user)?;
    let mut out = json!({});
    if let Some(n) = u.displayname {
        out["displayname"] = json!(n);
    }
    if let Some(a) = u.avatar_url {
        out["avatar_url"] = json!(a);
    }
    Ok(Json(out))
}

async fn get_field(hs: Hs, Path((user, field)): Path<(String, String)>) -> Resp {
    if !hs.is_local(&user) {
        let all = remote_profile(&hs, &user, Some(&field)).await?.0;
        return match all.get(&field) {
            Some(v) if !v.is_null() => Ok(Json(json!({ field: v }))),
            _ => Err(MatrixError::not_found("profile field not set")),
        };
    }
    let u = local_profile(&hs, &user)?;
    let value = match field.as_str() {
        "displayname" => u.displayname,
        "avatar_url" => u.avatar_url,
        _ => return Err(MatrixError::not_found("unknown profile field")),
    };
    match value {
        Some(v) => Ok(Json(json!({ field: v }))),
        None => Err(MatrixError::not_found("profile field not set")),
    }
}

async fn put_field(
    hs: Hs,
    auth: Auth,
    Path((user, field)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    let value = body.get(&field).and_then(Value::as_str).map(str::to_owned);
    match field.as_str() {
        "displayname" => hs.store.set_displayname(&user, value.as_deref())?,
        "avatar_url" => hs.store.set_avatar_url(&user, value.as_deref())?,
        _ => {
            return Err(MatrixError::bad_json(
                "only displayname and avatar_url can be set",
            ))
        }
    }
    // Update the membership event in every joined room.
    for m in hs.store.user_memberships(&user)? {
        if m.membership != "join" {
            continue;
        }
        let Some(current) = hs.state_event(&m.room_id, "m.room.member", &user)? else {
            continue;
        };
        let mut content = current.content_value();
        match &value {
            Some(v) => content[&field] = json!(v),
            None => {
                if let Some(o) = content.as_object_mut() {
                    o.remove(&field);
                }
            }
        }
        let template = EventTemplate {
            kind: "m.room.member".into(),
            state_key: Some(user.clone()),
            content,
            redacts: None,
        };
        if let Err(e) = hs.send_event(&m.room_id, &user, template, None).await {
            tracing::warn!(room = %m.room_id, error = ?e, "could not update membership profile");
        }
    }
    Ok(Json(json!({})))
}
