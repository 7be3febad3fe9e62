//! Filters, account data (global and per room) and room tags.

use super::{require_self, Hs, Resp};
use crate::error::MatrixError;
use crate::extract::{Auth, Json as Body};
use axum::extract::Path;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<crate::Homeserver>> {
    Router::new()
        .route("/user/:user/filter", post(create_filter))
        .route("/user/:user/filter/:id", get(get_filter))
        .route(
            "/user/:user/account_data/:kind",
            get(get_global).put(put_global),
        )
        .route(
            "/user/:user/rooms/:room/account_data/:kind",
            get(get_room).put(put_room),
        )
        .route("/user/:user/rooms/:room/tags", get(get_tags))
        .route(
            "/user/:user/rooms/:room/tags/:tag",
            put(put_tag).delete(delete_tag),
        )
}

async fn create_filter(
    hs: Hs,
    auth: Auth,
    Path(user): Path<String>,
    Body(filter): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    super::sync::validate_filter(&filter)?;
    let id = hs.store.create_filter(&user, &filter)?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

async fn get_filter(hs: Hs, auth: Auth, Path((user, id)): Path<(String, String)>) -> Resp {
    require_self(&auth, &user)?;
    let id: u64 = id
        .parse()
        .map_err(|_| MatrixError::not_found("no such filter"))?;
    Ok(Json(
        hs.store
            .filter(&user, id)?
            .ok_or_else(|| MatrixError::not_found("no such filter"))?,
    ))
}

/// Server-managed types a client may not overwrite through this API.
fn check_settable(kind: &str) -> crate::ApiResult<()> {
    if kind == "m.fully_read" || kind == "m.push_rules" {
        return Err(MatrixError::bad_json(format!(
            "{kind} cannot be set through account data"
        )));
    }
    Ok(())
}

async fn get_global(hs: Hs, auth: Auth, Path((user, kind)): Path<(String, String)>) -> Resp {
    require_self(&auth, &user)?;
    Ok(Json(
        hs.store
            .account_data(&user, None, &kind)?
            .ok_or_else(|| MatrixError::not_found("no account data of that type"))?,
    ))
}

async fn put_global(
    hs: Hs,
    auth: Auth,
    Path((user, kind)): Path<(String, String)>,
    Body(content): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    check_settable(&kind)?;
    hs.store.put_account_data(&user, None, &kind, &content)?;
    Ok(Json(json!({})))
}

async fn get_room(
    hs: Hs,
    auth: Auth,
    Path((user, room, kind)): Path<(String, String, String)>,
) -> Resp {
    require_self(&auth, &user)?;
    super::room_id(&room)?;
    Ok(Json(
        hs.store
            .account_data(&user, Some(&room), &kind)?
            .ok_or_else(|| MatrixError::not_found("no account data of that type"))?,
    ))
}

async fn put_room(
    hs: Hs,
    auth: Auth,
    Path((user, room, kind)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    super::room_id(&room)?;
    check_settable(&kind)?;
    hs.store
        .put_account_data(&user, Some(&room), &kind, &content)?;
    Ok(Json(json!({})))
}

fn tags_of(hs: &crate::Homeserver, user: &str, room: &str) -> crate::ApiResult<Value> {
    Ok(hs
        .store
        .account_data(user, Some(room), "m.tag")?
        .unwrap_or_else(|| json!({ "tags": {} })))
}

async fn get_tags(hs: Hs, auth: Auth, Path((user, room)): Path<(String, String)>) -> Resp {
    require_self(&auth, &user)?;
    Ok(Json(tags_of(&hs, &user, &room)?))
}

async fn put_tag(
    hs: Hs,
    auth: Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    super::room_id(&room)?;
    let mut tags = tags_of(&hs, &user, &room)?;
    tags["tags"][tag] = body;
    hs.store
        .put_account_data(&user, Some(&room), "m.tag", &tags)?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    hs: Hs,
    auth: Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
) -> Resp {
    require_self(&auth, &user)?;
    let mut tags = tags_of(&hs, &user, &room)?;
    if let Some(t) = tags["tags"].as_object_mut() {
        t.remove(&tag);
    }
    hs.store
        .put_account_data(&user, Some(&room), "m.tag", &tags)?;
    Ok(Json(json!({})))
}
