//! Creating rooms and changing memberships.

use super::{room_id, user_id, Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::{Auth, Json as Body};
use crate::ratelimit::Action;
use crate::Homeserver;
use axum::extract::{Path, RawQuery};
use axum::routing::{get, post};
use axum::{Json, Router};
use conifer_rooms::{CreateRoomOptions, EventTemplate, Preset};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/createRoom", post(create_room))
        .route("/joined_rooms", get(joined_rooms))
        .route("/join/:room", post(join_by_id_or_alias))
        .route("/rooms/:room/join", post(join_by_id))
        .route("/knock/:room", post(knock))
        .route("/rooms/:room/invite", post(invite))
        .route("/rooms/:room/leave", post(leave))
        .route("/rooms/:room/forget", post(forget))
        .route("/rooms/:room/kick", post(kick))
        .route("/rooms/:room/ban", post(ban))
        .route("/rooms/:room/unban", post(unban))
}

#[derive(Deserialize)]
struct CreateRoomBody {
    visibility: Option<String>,
    room_alias_name: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    invite: Vec<String>,
    room_version: Option<String>,
    creation_content: Option<Value>,
    #[serde(default)]
    initial_state: Vec<InitialState>,
    preset: Option<String>,
    #[serde(default)]
    is_direct: bool,
    power_level_content_override: Option<Value>,
}

#[derive(Deserialize)]
struct InitialState {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    content: Value,
}

async fn create_room(hs: Hs, auth: Auth, Body(body): Body<CreateRoomBody>) -> Resp {
    hs.limits.check(Action::Message, &auth.user_id)?;
    let public = match body.visibility.as_deref() {
        Some("public") => true,
        Some("private") | None => false,
        Some(_) => {
            return Err(MatrixError::bad_json(
                "visibility must be public or private",
            ))
        }
    };
    let preset = match body.preset.as_deref() {
        Some("public_chat") => Preset::PublicChat,
        Some("trusted_private_chat") => Preset::TrustedPrivateChat,
        Some("private_chat") => Preset::PrivateChat,
        None if public => Preset::PublicChat,
        None => Preset::PrivateChat,
        Some(other) => return Err(MatrixError::bad_json(format!("unknown preset {other}"))),
    };
    for invitee in &body.invite {
        user_id(invitee)?;
    }
    if body
        .creation_content
        .as_ref()
        .is_some_and(|c| !c.is_object())
        || body
            .power_level_content_override
            .as_ref()
            .is_some_and(|c| !c.is_object())
    {
        return Err(MatrixError::bad_json(
            "creation_content and power_level_content_override must be objects",
        ));
    }
    let version = body
        .room_version
        .clone()
        .unwrap_or_else(|| hs.config.rooms.default_version.clone());
    if !conifer_rooms::is_supported(&version) {
        return Err(MatrixError::unsupported_room_version(format!(
            "room version {version} is not supported"
        )));
    }
    let alias = match &body.room_alias_name {
        Some(local) => {
            let alias = format!("#{local}:{}", hs.server_name);
            conifer_rooms::ruma::OwnedRoomAliasId::try_from(alias.as_str())
                .map_err(|_| MatrixError::invalid_param("invalid room_alias_name"))?;
            Some(alias)
        }
        None => None,
    };
    let me = hs.store.user(&auth.user_id)?;
    let remote_invites: Vec<String> = body
        .invite
        .iter()
        .filter(|u| !hs.is_local(u))
        .cloned()
        .collect();
    let options = CreateRoomOptions {
        version,
        creator: auth.user_id.clone(),
        creator_displayname: me.as_ref().and_then(|u| u.displayname.clone()),
        creator_avatar_url: me.as_ref().and_then(|u| u.avatar_url.clone()),
        preset,
        name: body.name,
        topic: body.topic,
        canonical_alias: alias.clone(),
        creation_content: body.creation_content,
        power_level_content_override: body.power_level_content_override,
        initial_state: body
            .initial_state
            .into_iter()
            .map(|s| EventTemplate {
                kind: s.kind,
                state_key: Some(s.state_key),
                content: s.content,
                redacts: None,
            })
            .collect(),
        invite: body.invite,
        is_direct: body.is_direct,
    };
    let room = hs.create_room(options, public, alias).await?;
    for invitee in remote_invites {
        let mut content = json!({ "membership": "invite" });
        if body.is_direct {
            content["is_direct"] = json!(true);
        }
        let template = EventTemplate {
            kind: "m.room.member".into(),
            state_key: Some(invitee),
            content,
            redacts: None,
        };
        hs.invite_remote(&room, &auth.user_id, template).await?;
    }
    Ok(Json(json!({ "room_id": room })))
}

async fn joined_rooms(hs: Hs, auth: Auth) -> Resp {
    let rooms: Vec<String> = hs
        .store
        .user_memberships(&auth.user_id)?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .collect();
    Ok(Json(json!({ "joined_rooms": rooms })))
}

/// Sends a membership event for `target` with the sender's profile when it
/// is about the sender itself.
async fn membership_event(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    target: &str,
    membership: &str,
    reason: Option<&str>,
    extra: Option<&Value>,
) -> ApiResult<()> {
    let mut content = json!({ "membership": membership });
    // A join or knock carries the sender's profile; an invite of a local
    // user carries the invitee's, so clients can show a name.
    let with_profile = (target == auth.user_id && matches!(membership, "join" | "knock"))
        || (membership == "invite" && hs.is_local(target));
    if with_profile {
        if let Some(u) = hs.store.user(target)? {
            if let Some(n) = u.displayname {
                content["displayname"] = json!(n);
            }
            if let Some(a) = u.avatar_url {
                content["avatar_url"] = json!(a);
            }
        }
    }
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            content
                .as_object_mut()
                .expect("object")
                .entry(k.clone())
                .or_insert(v.clone());
        }
    }
    if hs.store.room(room)?.is_none() {
        return Err(MatrixError::not_found(
            "unknown room (joining rooms on other servers needs federation)",
        ));
    }
    let template = EventTemplate {
        kind: "m.room.member".into(),
        state_key: Some(target.to_owned()),
        content,
        redacts: None,
    };
    if membership == "invite" && !hs.is_local(target) {
        // The invitee's server co-signs the invite first.
        hs.invite_remote(room, &auth.user_id, template).await?;
    } else {
        hs.send_event(room, &auth.user_id, template, None).await?;
    }
    Ok(())
}

/// A room ID, or the room an alias points at.
fn resolve_room(hs: &Homeserver, id_or_alias: &str) -> ApiResult<String> {
    if id_or_alias.starts_with('#') {
        return Ok(hs
            .store
            .alias(id_or_alias)?
            .ok_or_else(|| MatrixError::not_found("room alias not found"))?
            .room_id);
    }
    room_id(id_or_alias)?;
    Ok(id_or_alias.to_owned())
}

async fn join(hs: &Homeserver, auth: &Auth, room: &str, body: &Value, via: Vec<String>) -> Resp {
    hs.limits.check(Action::Message, &auth.user_id)?;
    if hs.store.room(room)?.is_none() {
        // Not here: join through the servers the client named, or the one in the room ID.
        let mut servers = via;
        let invite = hs.store.remote_invite(room, &auth.user_id)?;
        if let Some(invite) = invite.filter(|i| i.membership == "invite") {
            if let Some((_, server)) = invite.event["sender"]
                .as_str()
                .and_then(|s| s.split_once(':'))
            {
                servers.push(server.to_owned());
            }
        }
        if let Some((_, server)) = room.split_once(':') {
            servers.push(server.to_owned());
        }
        hs.join_remote(room, &auth.user_id, &servers).await?;
        return Ok(Json(json!({ "room_id": room })));
    }
    if hs.membership(room, &auth.user_id)?.as_deref() != Some("join") {
        let reason = body.get("reason").and_then(Value::as_str);
        membership_event(hs, auth, room, &auth.user_id, "join", reason, None).await?;
    }
    Ok(Json(json!({ "room_id": room })))
}

/// `via` (and the older `server_name`) query parameters: servers to join through.
fn via_servers(query: Option<String>) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| {
            kv.strip_prefix("via=")
                .or_else(|| kv.strip_prefix("server_name="))
        })
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

async fn join_by_id_or_alias(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    Body(body): Body<Value>,
) -> Resp {
    let target = hs.resolve_room_or_alias(&room).await?;
    let via = [target.servers, via_servers(query)].concat();
    join(&hs, &auth, &target.room_id, &body, via).await
}

async fn join_by_id(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    room_id(&room)?;
    join(&hs, &auth, &room, &body, Vec::new()).await
}

async fn knock(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    let room = resolve_room(&hs, &room)?;
    membership_event(
        &hs,
        &auth,
        &room,
        &auth.user_id,
        "knock",
        body.get("reason").and_then(Value::as_str),
        None,
    )
    .await?;
    Ok(Json(json!({ "room_id": room })))
}

fn target(body: &Value) -> ApiResult<String> {
    let t = body
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("user_id"))?;
    user_id(t)?;
    Ok(t.to_owned())
}

async fn invite(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    room_id(&room)?;
    let t = target(&body)?;
    let extra = json!({});
    membership_event(
        &hs,
        &auth,
        &room,
        &t,
        "invite",
        body.get("reason").and_then(Value::as_str),
        Some(&extra),
    )
    .await?;
    Ok(Json(json!({})))
}

async fn leave(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    room_id(&room)?;
    match hs.membership(&room, &auth.user_id)?.as_deref() {
        Some("join") | Some("invite") | Some("knock") => {
            membership_event(
                &hs,
                &auth,
                &room,
                &auth.user_id,
                "leave",
                body.get("reason").and_then(Value::as_str),
                None,
            )
            .await?;
        }
        Some(_) => {}
        // Perhaps an invite to a room on another server.
        None => hs.reject_remote_invite(&room, &auth.user_id).await?,
    }
    Ok(Json(json!({})))
}

async fn forget(hs: Hs, auth: Auth, Path(room): Path<String>) -> Resp {
    room_id(&room)?;
    match hs.membership(&room, &auth.user_id)?.as_deref() {
        Some("join") => Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            "leave the room before forgetting it",
        )),
        None => Err(MatrixError::not_found("you were never in this room")),
        Some(_) => {
            hs.store.forget_room(&room, &auth.user_id)?;
            hs.memberships.forget(&auth.user_id);
            Ok(Json(json!({})))
        }
    }
}

async fn moderate(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    body: &Value,
    membership: &str,
) -> Resp {
    room_id(room)?;
    let t = target(body)?;
    membership_event(
        hs,
        auth,
        room,
        &t,
        membership,
        body.get("reason").and_then(Value::as_str),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn kick(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    let t = target(&body)?;
    if !matches!(
        hs.membership(&room, &t)?.as_deref(),
        Some("join") | Some("invite") | Some("knock")
    ) {
        return Err(MatrixError::forbidden("the user is not in the room"));
    }
    moderate(&hs, &auth, &room, &body, "leave").await
}

async fn ban(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    moderate(&hs, &auth, &room, &body, "ban").await
}

async fn unban(hs: Hs, auth: Auth, Path(room): Path<String>, Body(body): Body<Value>) -> Resp {
    let t = target(&body)?;
    if hs.membership(&room, &t)?.as_deref() != Some("ban") {
        return Err(MatrixError::forbidden("the user is not banned"));
    }
    moderate(&hs, &auth, &room, &body, "leave").await
}
