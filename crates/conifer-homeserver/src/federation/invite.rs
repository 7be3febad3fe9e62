//! Invites across servers (`PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`).
//!
//! Inbound: another server's user invites one of ours. The invite event is
//! checked (shape, origin, signatures, hashes), co-signed with this server's
//! key and handed back; when this server is not in the room, the invite is
//! kept so the user sees it in `/sync` under `rooms.invite` (with the room's
//! stripped state) until they join the room or reject the invite.
//!
//! Outbound: a local user invites a remote user. The invite event is built
//! on the room's current state and checked against the auth rules, sent to
//! the invitee's server, and only the copy that server co-signed is then
//! stored in the room (and sent to the other servers in it). The room's lock
//! is held throughout, so the event still extends the room's tips.
//!
//! Rejecting an invite to a room this server is not in sends a `leave`
//! through the inviting server (`make_leave`, `send_leave`); the leave is
//! kept so that `/sync` shows the room under `rooms.leave`.

use super::enc;
use super::join::federation_json;
use super::receive::verified_pdu;
use super::FederationAuth;
use crate::api::Hs;
use crate::error::{ApiResult, MatrixError};
use crate::format::{client_event_from_value, stripped_state};
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use conifer_rooms::ruma::canonical_json::{redact, try_from_json_map};
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{verify_json, PublicKeyMap};
use conifer_rooms::ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId};
use conifer_rooms::{rules_for, sign_template, EventTemplate, Pdu};
use conifer_store::RemoteInvite;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

fn server_of(user: &str) -> Option<&str> {
    user.split_once(':').map(|(_, s)| s)
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`.
pub async fn invite_v2(
    hs: Hs,
    Path((room, event_id)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    hs.check_server_acl(&room, &auth.origin)?;
    let body = auth
        .body
        .clone()
        .ok_or_else(|| MatrixError::bad_json("missing invite body"))?;
    let version = body["room_version"]
        .as_str()
        .ok_or_else(|| MatrixError::bad_json("missing room_version"))?
        .to_owned();
    if !conifer_rooms::is_supported(&version) {
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
            format!("this server does not support room version {version}"),
        )
        .with_extra(json!({ "room_version": version })));
    }
    let mut event = body["event"].clone();
    if !event.is_object() {
        return Err(MatrixError::bad_json("missing invite event"));
    }
    // Older servers put the stripped state into the event's `unsigned`.
    let unsigned = event.as_object_mut().and_then(|o| o.remove("unsigned"));
    let room_state = body["invite_room_state"]
        .as_array()
        .or_else(|| unsigned.as_ref()?["invite_room_state"].as_array())
        .cloned()
        .unwrap_or_default();

    let invitee = event["state_key"].as_str().unwrap_or_default().to_owned();
    let sender = event["sender"].as_str().unwrap_or_default().to_owned();
    let is_invite = event["type"] == "m.room.member"
        && event["content"]["membership"] == "invite"
        && event["room_id"].as_str() == Some(room.as_str());
    if !is_invite {
        return Err(MatrixError::bad_json("not an invite event for this room"));
    }
    if server_of(&sender) != Some(auth.origin.as_str()) {
        return Err(MatrixError::forbidden(
            "the inviting user must be on the requesting server",
        ));
    }
    if !hs.is_local(&invitee) {
        return Err(MatrixError::forbidden(
            "the invitee is not a user of this server",
        ));
    }
    match hs.store.user(&invitee)? {
        Some(u) if !u.deactivated => {}
        _ => return Err(MatrixError::not_found("no such user")),
    }

    let (id, pdu) = verified_pdu(&hs, &version, event)
        .await
        .map_err(|(_, e)| MatrixError::forbidden(e))?;
    if id != event_id {
        return Err(MatrixError::bad_json(
            "the event ID does not match the event",
        ));
    }
    if pdu.content_value()["membership"] != "invite" {
        return Err(MatrixError::forbidden("the invite's content was altered"));
    }
    let cosigned = sign_template(&version, federation_json(&pdu), &hs.key)?;
    if cosigned.event_id.as_str() != event_id {
        return Err(MatrixError::unknown_internal(
            "co-signing changed the event ID",
        ));
    }
    let cosigned: Value = serde_json::from_str(&cosigned.json)
        .map_err(|e| MatrixError::unknown_internal(e.to_string()))?;

    // A room this server is in gets the invite event through `/send` as well,
    // like any other event; only invites into unknown rooms are kept aside.
    if hs.store.room(&room)?.is_none() {
        let mut invite_state: Vec<Value> = room_state
            .iter()
            .filter(|e| e["type"].is_string() && e["state_key"].is_string())
            .filter(|e| e["type"] != "m.room.member" || e["state_key"] == sender.as_str())
            .map(stripped_state)
            .collect();
        invite_state.push(client_event_from_value(
            &cosigned,
            &event_id,
            &room,
            None,
            now_ms(),
        ));
        hs.store.put_remote_invite(RemoteInvite {
            room_id: room.clone(),
            user_id: invitee.clone(),
            event_id: event_id.clone(),
            room_version: version,
            membership: "invite".into(),
            event: cosigned.clone(),
            invite_state,
            stream_pos: 0,
        })?;
        tracing::info!(room = %room, %sender, %invitee, "invited over federation");
    }
    Ok(Json(json!({ "event": cosigned })))
}

impl Homeserver {
    /// A local user (`sender`) invites a user of another server into
    /// `room_id`: the invitee's server must co-sign the invite before it is
    /// stored in the room.
    pub(crate) async fn invite_remote(
        &self,
        room_id: &str,
        sender: &str,
        template: EventTemplate,
    ) -> ApiResult<Arc<Pdu>> {
        let invitee = template
            .state_key
            .clone()
            .ok_or_else(|| MatrixError::bad_json("an invite needs a state key"))?;
        let server = server_of(&invitee)
            .ok_or_else(|| MatrixError::invalid_param("bad user ID"))?
            .to_owned();
        let handle = self.room_handle(room_id);
        let mut guard = handle.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_room_cache(room_id)?);
        }
        let cache = guard.as_mut().expect("just filled");
        let version = cache.version.clone();
        // Refuse here what the room would refuse, before bothering the invitee's server.
        let pdu = self.build_checked(room_id, cache, sender, &template)?;
        let invite_room_state = self.invite_room_state(&cache.state, sender);
        let body = json!({
            "room_version": version,
            "event": federation_json(&pdu),
            "invite_room_state": invite_room_state,
        });
        let uri = format!(
            "/_matrix/federation/v2/invite/{}/{}",
            enc(room_id),
            enc(pdu.event_id.as_str())
        );
        let (status, answer) = self
            .federation_call(&server, "PUT", &uri, Some(&body))
            .await
            .map_err(|e| {
                MatrixError::new(
                    StatusCode::FORBIDDEN,
                    "M_FORBIDDEN",
                    format!("cannot reach {server} to invite {invitee}: {e}"),
                )
            })?;
        if status != 200 {
            return Err(MatrixError::forbidden(format!(
                "{server} refused the invite ({status}): {answer}"
            )));
        }
        let returned = answer["event"].clone();
        self.check_cosigned(&version, &returned, &server).await?;
        let (id, signed) = verified_pdu(self, &version, returned)
            .await
            .map_err(|(_, e)| MatrixError::forbidden(format!("{server}'s invite: {e}")))?;
        if id != pdu.event_id.as_str() || signed.content_value()["membership"] != "invite" {
            return Err(MatrixError::forbidden(format!(
                "{server} returned another event than the invite it was sent"
            )));
        }
        self.accept_local(room_id, cache, signed, None).await
    }

    /// Rejects an invite to a room this server is not in: a `leave` through
    /// the inviting server (`make_leave`, `send_leave`). If no server can
    /// be reached, the leave is only this server's (signed here, after the
    /// invite), as the user asked all the same. Either way the leave is
    /// kept so that `/sync` shows the room under `leave`.
    pub(crate) async fn reject_remote_invite(&self, room_id: &str, user: &str) -> ApiResult<()> {
        let invite = match self.store.remote_invite(room_id, user)? {
            Some(i) if i.membership == "invite" => i,
            _ => return Err(MatrixError::forbidden("you are not in this room")),
        };
        let inviter = invite.event["sender"].as_str().and_then(server_of);
        let servers = inviter
            .into_iter()
            .chain(room_id.split_once(':').map(|(_, s)| s));
        let mut outcome = Err("no server to reject through".to_owned());
        for server in servers {
            outcome = self.leave_through(room_id, user, server).await;
            match &outcome {
                Ok(_) => break,
                Err(e) => {
                    tracing::info!(room = room_id, %server, error = %e, "remote reject failed")
                }
            }
        }
        let leave = match outcome {
            Ok(leave) => leave,
            Err(e) => {
                tracing::warn!(room = room_id, error = %e, "invite rejected without telling the inviting server");
                let template = json!({
                    "type": "m.room.member",
                    "room_id": room_id,
                    "sender": user,
                    "state_key": user,
                    "content": { "membership": "leave" },
                    "origin_server_ts": now_ms(),
                    "depth": invite.event["depth"].as_i64().unwrap_or(0) + 1,
                    "prev_events": [invite.event_id],
                    "auth_events": [invite.event_id],
                });
                sign_template(&invite.room_version, template, &self.key)?
            }
        };
        let json = federation_json(&leave);
        self.store
            .reject_remote_invite(room_id, user, leave.event_id.as_str(), &json)?;
        Ok(())
    }

    async fn leave_through(&self, room_id: &str, user: &str, server: &str) -> Result<Pdu, String> {
        let uri = format!(
            "/_matrix/federation/v1/make_leave/{}/{}",
            enc(room_id),
            enc(user)
        );
        let (status, made) = self.federation_call(server, "GET", &uri, None).await?;
        if status != 200 {
            return Err(format!("make_leave answered {status}: {made}"));
        }
        let version = made["room_version"].as_str().unwrap_or("1").to_owned();
        let mut template = made["event"].clone();
        if template.get("origin_server_ts").is_none() {
            template["origin_server_ts"] = json!(now_ms());
        }
        let ours = template["type"] == "m.room.member"
            && template["sender"].as_str() == Some(user)
            && template["state_key"].as_str() == Some(user)
            && template["room_id"].as_str() == Some(room_id)
            && template["content"]["membership"] == "leave";
        if !ours {
            return Err("make_leave returned something other than our leave".into());
        }
        let leave = sign_template(&version, template, &self.key).map_err(|e| e.to_string())?;
        let uri = format!(
            "/_matrix/federation/v2/send_leave/{}/{}",
            enc(room_id),
            enc(leave.event_id.as_str())
        );
        let (status, sent) = self
            .federation_call(server, "PUT", &uri, Some(&federation_json(&leave)))
            .await?;
        if status != 200 {
            return Err(format!("send_leave answered {status}: {sent}"));
        }
        Ok(leave)
    }

    /// Stripped state for an invitee: the room's public face and the
    /// inviter's membership.
    fn invite_room_state(
        &self,
        state: &HashMap<(String, String), OwnedEventId>,
        inviter: &str,
    ) -> Vec<Value> {
        crate::format::INVITE_STATE
            .iter()
            .map(|kind| (kind.to_string(), String::new()))
            .chain([("m.room.member".to_owned(), inviter.to_owned())])
            .filter_map(|key| state.get(&key))
            .filter_map(|id| self.cached_event(id.as_str()))
            .map(|e| stripped_state(&federation_json(&e)))
            .collect()
    }

    /// Checks that `server` signed the event (its signature over the
    /// redacted event, as for any server's signature on an event).
    async fn check_cosigned(&self, version: &str, event: &Value, server: &str) -> ApiResult<()> {
        let refused = |why: String| MatrixError::forbidden(format!("{server}'s invite: {why}"));
        let (_, rules) = rules_for(version)
            .ok_or_else(|| refused(format!("unsupported room version {version}")))?;
        let Value::Object(map) = event.clone() else {
            return Err(refused("no event in the answer".into()));
        };
        let object: CanonicalJsonObject =
            try_from_json_map(map).map_err(|e| refused(e.to_string()))?;
        let mut redacted =
            redact(object, &rules.redaction, None).map_err(|e| refused(e.to_string()))?;
        let theirs = match redacted.get("signatures") {
            Some(CanonicalJsonValue::Object(s)) => s.get(server).cloned(),
            _ => None,
        };
        let Some(CanonicalJsonValue::Object(theirs)) = theirs else {
            return Err(refused("the invitee's server did not sign it".into()));
        };
        let mut keys = BTreeMap::new();
        for key_id in theirs.keys() {
            if let Ok(key) = self.verify_key(server, key_id).await {
                keys.insert(key_id.clone(), Base64::new(key.to_vec()));
            }
        }
        let mut only_theirs = CanonicalJsonObject::new();
        only_theirs.insert(server.to_owned(), CanonicalJsonValue::Object(theirs));
        redacted.insert("signatures".into(), CanonicalJsonValue::Object(only_theirs));
        let mut map: PublicKeyMap = BTreeMap::new();
        map.insert(server.to_owned(), keys);
        verify_json(&map, &redacted).map_err(|e| refused(format!("bad signature: {e}")))
    }
}
