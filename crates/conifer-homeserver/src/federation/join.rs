//! Joins from other servers: `make_join` hands out a join template built on
//! the room's current state, `send_join` (v2) accepts the signed join and
//! answers with the room state and its auth chain.

use super::receive::checked_pdu;
use super::FederationAuth;
use crate::api::Hs;
use crate::error::MatrixError;
use crate::Homeserver;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::Json;
use conifer_rooms::ruma::OwnedEventId;
use conifer_rooms::{auth_chain, Pdu};
use serde_json::{json, Value};
use std::sync::Arc;

fn server_of(user: &str) -> Option<&str> {
    user.split_once(':').map(|(_, s)| s)
}

/// The room, if this server is still in it (a local user is joined): a
/// room this server left is as unknown to `make_*` as one it never had
/// (404 `M_NOT_FOUND`, as Synapse answers).
fn resident_room(hs: &Homeserver, room: &str) -> Result<conifer_store::RoomRecord, MatrixError> {
    let not_here = || MatrixError::not_found("this server is not in that room");
    let record = hs.store.room(room)?.ok_or_else(not_here)?;
    let resident = hs
        .store
        .room_members(room, Some("join"))?
        .iter()
        .any(|(u, _)| hs.is_local(u));
    if resident {
        Ok(record)
    } else {
        Err(not_here())
    }
}

pub async fn make_join(
    hs: Hs,
    path: Path<(String, String)>,
    query: RawQuery,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    make_membership(hs, path, query, auth, "join").await
}

/// `make_knock`: like `make_join`, for rooms whose join rule lets users knock.
pub async fn make_knock(
    hs: Hs,
    path: Path<(String, String)>,
    query: RawQuery,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    make_membership(hs, path, query, auth, "knock").await
}

/// `send_knock`: accepts the signed knock and answers with the room's
/// stripped state, which the knocking user's client shows.
pub async fn send_knock(
    hs: Hs,
    Path((room, event_id)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    accept_membership(&hs, &room, &event_id, &auth, "knock").await?;
    let state = crate::sync::invite_state(&hs, &room, &event_id)?;
    Ok(Json(json!({ "knock_room_state": state })))
}

async fn make_membership(
    hs: Hs,
    Path((room, user)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    auth: FederationAuth,
    membership: &str,
) -> Result<Json<Value>, MatrixError> {
    hs.check_server_acl(&room, &auth.origin)?;
    if server_of(&user) != Some(auth.origin.as_str()) {
        return Err(MatrixError::forbidden(format!(
            "the user to {membership} must be on the requesting server"
        )));
    }
    let record = resident_room(&hs, &room)?;
    // `ver` may repeat; a server that lists none only speaks room version 1.
    let versions: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("ver="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if !versions.contains(&record.version) {
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
            "the requesting server does not support this room's version",
        )
        .with_extra(json!({ "room_version": record.version })));
    }
    let template = hs.membership_template(&room, &user, membership).await?;
    Ok(Json(
        json!({ "event": template, "room_version": record.version }),
    ))
}

pub async fn send_join(
    hs: Hs,
    Path((room, event_id)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let state_before = hs.store.current_state(&room)?;
    accept_membership(&hs, &room, &event_id, &auth, "join").await?;
    let state: Vec<Arc<Pdu>> = state_before
        .values()
        .filter_map(|id| hs.cached_event(id))
        .collect();
    let ids: Vec<OwnedEventId> = state.iter().map(|p| p.event_id.clone()).collect();
    let chain = auth_chain(ids.iter(), &|id| hs.cached_event(id.as_str()));
    let joined = hs
        .cached_event(&event_id)
        .map(|p| federation_json(&p))
        .unwrap_or(Value::Null);
    Ok(Json(json!({
        "origin": hs.server_name,
        "members_omitted": false,
        "state": state.iter().map(|p| federation_json(p)).collect::<Vec<_>>(),
        "auth_chain": chain.iter().filter_map(|id| hs.cached_event(id.as_str())).map(|p| federation_json(&p)).collect::<Vec<_>>(),
        "event": joined,
    })))
}

/// A stored event as other servers see it: without this server's local
/// `unsigned` additions.
pub(crate) fn federation_json(pdu: &Pdu) -> Value {
    let mut v: Value = serde_json::from_str(&pdu.json).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("unsigned");
    }
    v
}

impl Homeserver {
    /// An unsigned membership event (`join` or `leave`) for `user` on the
    /// room's current state, or `M_FORBIDDEN` if the auth rules would refuse it.
    pub(crate) async fn membership_template(
        &self,
        room: &str,
        user: &str,
        membership: &str,
    ) -> Result<Value, MatrixError> {
        let template = conifer_rooms::EventTemplate {
            kind: "m.room.member".into(),
            state_key: Some(user.to_owned()),
            content: json!({ "membership": membership }),
            redacts: None,
        };
        let probe = self.probe_event(room, user, template).await?;
        let mut v: Value = serde_json::from_str(&probe.json)
            .map_err(|e| MatrixError::unknown_internal(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("hashes");
            o.remove("signatures");
        }
        Ok(v)
    }
}

pub async fn make_leave(
    hs: Hs,
    Path((room, user)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    hs.check_server_acl(&room, &auth.origin)?;
    if server_of(&user) != Some(auth.origin.as_str()) {
        return Err(MatrixError::forbidden(
            "the leaving user must be on the requesting server",
        ));
    }
    let record = resident_room(&hs, &room)?;
    let v = hs.membership_template(&room, &user, "leave").await?;
    Ok(Json(json!({ "event": v, "room_version": record.version })))
}

pub async fn send_leave(
    hs: Hs,
    Path((room, event_id)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    accept_membership(&hs, &room, &event_id, &auth, "leave").await?;
    Ok(Json(json!({})))
}

/// Checks and stores a `join` or `leave` that another server's user signed
/// for this room (`send_join`, `send_leave`), then passes it on to the other
/// servers in the room, which its origin cannot reach on its own.
async fn accept_membership(
    hs: &Homeserver,
    room: &str,
    event_id: &str,
    auth: &FederationAuth,
    membership: &str,
) -> Result<(), MatrixError> {
    hs.check_server_acl(room, &auth.origin)?;
    let event = auth
        .body
        .clone()
        .ok_or_else(|| MatrixError::bad_json(format!("missing {membership} event")))?;
    let sender = event["sender"].as_str().unwrap_or_default().to_owned();
    let is_own = event["type"] == "m.room.member"
        && event["content"]["membership"] == membership
        && event["state_key"].as_str() == Some(sender.as_str())
        && event["room_id"].as_str() == Some(room);
    if !is_own || server_of(&sender) != Some(auth.origin.as_str()) {
        return Err(MatrixError::bad_json(format!(
            "not a {membership} of a user of the requesting server in this room"
        )));
    }
    let (id, checked) = checked_pdu(hs, event).await;
    if id != event_id {
        return Err(MatrixError::bad_json(
            "the event ID does not match the event",
        ));
    }
    // `None`: already stored with this very event.
    if let Some((room_id, pdu)) = checked.map_err(MatrixError::forbidden)? {
        hs.accept_remote(&room_id, pdu.clone())
            .await
            .map_err(MatrixError::forbidden)?;
        hs.fan_out(&room_id, &pdu, &auth.origin);
    }
    Ok(())
}
