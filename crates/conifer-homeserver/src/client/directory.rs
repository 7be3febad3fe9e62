//! Room aliases, the public room directory and the user directory.

use super::{room_id, Hs, Resp};
use crate::error::MatrixError;
use crate::extract::Query;
use crate::extract::{Auth, Json as Body, MaybeAuth};
use crate::Homeserver;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/directory/room/:alias",
            get(get_alias).put(put_alias).delete(delete_alias),
        )
        .route("/rooms/:room/aliases", get(room_aliases))
        .route(
            "/directory/list/room/:room",
            get(get_visibility).put(put_visibility),
        )
        .route(
            "/publicRooms",
            get(public_rooms_get).post(public_rooms_post),
        )
        .route("/user_directory/search", post(search_users))
}

fn check_alias(hs: &Homeserver, alias: &str) -> crate::ApiResult<()> {
    conifer_rooms::ruma::OwnedRoomAliasId::try_from(alias)
        .map_err(|_| MatrixError::invalid_param("not a room alias"))?;
    if alias
        .split_once(':')
        .is_none_or(|(_, s)| s != hs.server_name.as_str())
    {
        return Err(MatrixError::invalid_param("aliases must be on this server"));
    }
    Ok(())
}

/// "If the event type being sent is `m.room.canonical_alias` servers SHOULD
/// ensure that any new aliases being listed in the event are valid per their
/// grammar/syntax and that they point to the room ID where the state event
/// is to be sent. Servers do not validate aliases which are being removed or
/// are already present in the state event." Aliases of other servers are
/// only checked for syntax.
pub(crate) fn check_canonical_alias(
    hs: &Homeserver,
    room: &str,
    current: Option<Value>,
    content: &Value,
) -> crate::ApiResult<()> {
    fn aliases(content: &Value) -> crate::ApiResult<Vec<&str>> {
        let mut out = Vec::new();
        match content.get("alias") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) => out.push(a.as_str()),
            Some(_) => return Err(MatrixError::invalid_param("alias must be a string")),
        }
        match content.get("alt_aliases") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for a in list {
                    out.push(a.as_str().ok_or_else(|| {
                        MatrixError::invalid_param("alt_aliases must be a list of strings")
                    })?);
                }
            }
            Some(_) => {
                return Err(MatrixError::invalid_param(
                    "alt_aliases must be a list of strings",
                ))
            }
        }
        Ok(out)
    }
    let current = current.unwrap_or(Value::Null);
    let present = aliases(&current).unwrap_or_default();
    for alias in aliases(content)? {
        if present.contains(&alias) {
            continue;
        }
        let parsed = conifer_rooms::ruma::OwnedRoomAliasId::try_from(alias)
            .map_err(|_| MatrixError::invalid_param(format!("{alias:?} is not a room alias")))?;
        if parsed.server_name() != hs.server_name.as_str() {
            continue;
        }
        if hs.store.alias(alias)?.is_none_or(|a| a.room_id != room) {
            return Err(MatrixError::bad_alias(format!(
                "the alias {alias} does not point to this room"
            )));
        }
    }
    Ok(())
}

async fn get_alias(hs: Hs, Path(alias): Path<String>) -> Resp {
    let a = hs.resolve_alias(&alias).await?;
    Ok(Json(json!({ "room_id": a.room_id, "servers": a.servers })))
}

async fn put_alias(hs: Hs, auth: Auth, Path(alias): Path<String>, Body(body): Body<Value>) -> Resp {
    check_alias(&hs, &alias)?;
    let room = body
        .get("room_id")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("room_id"))?;
    room_id(room)?;
    if hs.store.room(room)?.is_none() {
        return Err(MatrixError::not_found("unknown room"));
    }
    // As Synapse: only a member of the room may point an alias at it.
    if hs.membership(room, &auth.user_id)?.as_deref() != Some("join") {
        return Err(MatrixError::forbidden(
            "you must be in the room to create an alias for it",
        ));
    }
    match hs.store.put_alias(&alias, room, &auth.user_id) {
        Err(conifer_store::StoreError::Conflict) => Err(MatrixError::new(
            axum::http::StatusCode::CONFLICT,
            "M_UNKNOWN",
            "alias already exists",
        )),
        other => Ok(other.map(|_| Json(json!({})))?),
    }
}

async fn delete_alias(hs: Hs, auth: Auth, Path(alias): Path<String>) -> Resp {
    check_alias(&hs, &alias)?;
    let a = hs
        .store
        .alias(&alias)?
        .ok_or_else(|| MatrixError::not_found("room alias not found"))?;
    let admin = hs.store.user(&auth.user_id)?.is_some_and(|u| u.admin);
    if a.creator != auth.user_id
        && !admin
        && !may_change_canonical_alias(&hs, &a.room_id, &auth.user_id)?
    {
        return Err(MatrixError::forbidden("you may not delete this alias"));
    }
    hs.store.delete_alias(&alias)?;
    drop_from_canonical_alias(&hs, &a.room_id, &auth.user_id, &alias).await;
    Ok(Json(json!({})))
}

/// Whether the user is joined to the room with the power to send
/// `m.room.canonical_alias` (the level for that event type, else
/// `state_default`).
fn may_change_canonical_alias(hs: &Homeserver, room: &str, user: &str) -> crate::ApiResult<bool> {
    if hs.membership(room, user)?.as_deref() != Some("join") {
        return Ok(false);
    }
    let (level, pl) = hs.power_level(room, user)?;
    let needed = pl
        .pointer("/events/m.room.canonical_alias")
        .and_then(crate::rooms::as_int)
        .or_else(|| pl.get("state_default").and_then(crate::rooms::as_int))
        .unwrap_or(if pl.is_null() { 0 } else { 50 });
    Ok(level >= needed)
}

/// Takes a deleted alias out of the room's `m.room.canonical_alias` event,
/// sent as the user who deleted it. If that user may not send the event,
/// the alias stays deleted and the event is left as it is (the spec
/// recommends that the deletion succeed anyway).
async fn drop_from_canonical_alias(hs: &Homeserver, room: &str, user: &str, alias: &str) {
    let Ok(Some(event)) = hs.state_event(room, "m.room.canonical_alias", "") else {
        return;
    };
    let mut content = event.content_value();
    let Some(obj) = content.as_object_mut() else {
        return;
    };
    let mut changed = false;
    if obj.get("alias").and_then(Value::as_str) == Some(alias) {
        obj.remove("alias");
        changed = true;
    }
    if let Some(Value::Array(alt)) = obj.get_mut("alt_aliases") {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias));
        changed |= alt.len() != before;
    }
    if !changed {
        return;
    }
    let template = conifer_rooms::EventTemplate {
        kind: "m.room.canonical_alias".into(),
        state_key: Some(String::new()),
        content,
        redacts: None,
    };
    if let Err(e) = hs.send_event(room, user, template, None).await {
        tracing::info!(room, alias, error = %e.message, "deleted alias left in the canonical alias event");
    }
}

async fn room_aliases(hs: Hs, auth: Auth, Path(room): Path<String>) -> Resp {
    hs.require_joined(&room, &auth.user_id)?;
    Ok(Json(
        json!({ "aliases": hs.store.aliases_for_room(&room)? }),
    ))
}

async fn get_visibility(hs: Hs, Path(room): Path<String>) -> Resp {
    let r = hs
        .store
        .room(&room)?
        .ok_or_else(|| MatrixError::not_found("unknown room"))?;
    Ok(Json(
        json!({ "visibility": if r.published { "public" } else { "private" } }),
    ))
}

async fn put_visibility(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Body(body): Body<Value>,
) -> Resp {
    hs.store
        .room(&room)?
        .ok_or_else(|| MatrixError::not_found("unknown room"))?;
    let (level, pl) = hs.power_level(&room, &auth.user_id)?;
    if level
        < pl.get("state_default")
            .and_then(crate::rooms::as_int)
            .unwrap_or(50)
    {
        return Err(MatrixError::forbidden("you may not publish this room"));
    }
    let public = match body.get("visibility").and_then(Value::as_str) {
        Some("public") => true,
        Some("private") | None => false,
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    hs.store.set_room_published(&room, public)?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct PublicRoomsQuery {
    limit: Option<usize>,
    since: Option<String>,
    server: Option<String>,
}

async fn public_rooms_get(hs: Hs, _auth: MaybeAuth, Query(q): Query<PublicRoomsQuery>) -> Resp {
    if let Some(server) = q
        .server
        .as_deref()
        .filter(|s| *s != hs.server_name.as_str())
    {
        let mut body = json!({});
        if let Some(l) = q.limit {
            body["limit"] = json!(l);
        }
        if let Some(s) = &q.since {
            body["since"] = json!(s);
        }
        return remote_public_rooms(&hs, server, body).await;
    }
    public_rooms(&hs, q.limit, q.since.as_deref(), None)
}

#[derive(Deserialize)]
struct ServerQuery {
    server: Option<String>,
}

/// Another server's directory, asked on the client's behalf.
async fn remote_public_rooms(hs: &Homeserver, server: &str, body: Value) -> Resp {
    match hs
        .federation_call(
            server,
            "POST",
            "/_matrix/federation/v1/publicRooms",
            Some(&body),
        )
        .await
    {
        Ok((200, v)) if v.get("chunk").is_some() => Ok(Json(v)),
        Ok((status, _)) => Err(MatrixError::new(
            axum::http::StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("{server} answered {status} for its room directory"),
        )),
        Err(e) => Err(MatrixError::new(
            axum::http::StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("cannot reach {server}: {e}"),
        )),
    }
}

async fn public_rooms_post(
    hs: Hs,
    _auth: Auth,
    Query(q): Query<ServerQuery>,
    Body(body): Body<Value>,
) -> Resp {
    if let Some(server) = q
        .server
        .as_deref()
        .filter(|s| *s != hs.server_name.as_str())
    {
        return remote_public_rooms(&hs, server, body).await;
    }
    public_rooms_from_body(&hs, &body)
}

/// The directory as a `POST /publicRooms` body asks for it (limit, since,
/// `filter.generic_search_term`).
pub(crate) fn public_rooms_from_body(hs: &Homeserver, body: &Value) -> Resp {
    let term = body
        .pointer("/filter/generic_search_term")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    public_rooms(
        hs,
        body.get("limit")
            .and_then(Value::as_u64)
            .map(|l| l as usize),
        body.get("since").and_then(Value::as_str),
        term,
    )
}

fn state_str(hs: &Homeserver, room: &str, kind: &str, field: &str) -> Option<String> {
    hs.state_event(room, kind, "")
        .ok()??
        .content_value()
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

pub(crate) fn public_rooms(
    hs: &Homeserver,
    limit: Option<usize>,
    since: Option<&str>,
    term: Option<String>,
) -> Resp {
    let mut chunk = Vec::new();
    for room in hs.store.published_rooms()? {
        let name = state_str(hs, &room, "m.room.name", "name");
        let topic = state_str(hs, &room, "m.room.topic", "topic");
        let alias = state_str(hs, &room, "m.room.canonical_alias", "alias");
        if let Some(t) = &term {
            let hay = format!(
                "{} {} {}",
                name.as_deref().unwrap_or(""),
                topic.as_deref().unwrap_or(""),
                alias.as_deref().unwrap_or("")
            );
            if !hay.to_lowercase().contains(t) {
                continue;
            }
        }
        let joined = hs.store.room_members(&room, Some("join"))?.len();
        let join_rule = state_str(hs, &room, "m.room.join_rules", "join_rule")
            .unwrap_or_else(|| "invite".into());
        let mut entry = json!({
            "room_id": room, "num_joined_members": joined, "world_readable": false,
            "guest_can_join": false, "join_rule": join_rule,
        });
        for (k, v) in [("name", name), ("topic", topic), ("canonical_alias", alias)] {
            if let Some(v) = v {
                entry[k] = json!(v);
            }
        }
        chunk.push(entry);
    }
    let total = chunk.len();
    let start: usize = since
        .and_then(|s| s.strip_prefix('p'))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit = limit.unwrap_or(100).clamp(1, 500);
    let page: Vec<Value> = chunk.into_iter().skip(start).take(limit).collect();
    let mut out = json!({ "chunk": page, "total_room_count_estimate": total });
    if start + limit < total {
        out["next_batch"] = json!(format!("p{}", start + limit));
    }
    if start > 0 {
        out["prev_batch"] = json!(format!("p{}", start.saturating_sub(limit)));
    }
    Ok(Json(out))
}

async fn search_users(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let term = body
        .get("search_term")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("search_term"))?;
    let limit = match body.get("limit") {
        None => 10,
        Some(l) => l
            .as_u64()
            .ok_or_else(|| MatrixError::bad_json("limit must be a non-negative integer"))?
            .clamp(1, 100) as usize,
    };
    let (found, limited) = hs.search_user_directory(&auth.user_id, term, limit)?;
    let results: Vec<Value> = found
        .into_iter()
        .map(|u| {
            let mut r = json!({ "user_id": u.user_id });
            if let Some(n) = u.display_name {
                r["display_name"] = json!(n);
            }
            if let Some(a) = u.avatar_url {
                r["avatar_url"] = json!(a);
            }
            r
        })
        .collect();
    Ok(Json(json!({ "results": results, "limited": limited })))
}
