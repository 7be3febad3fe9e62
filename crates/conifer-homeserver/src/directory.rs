//! Room aliases and the public room directory: the rules both API layers
//! share (the client's directory and aliases, federation's `publicRooms`).

use crate::error::{ApiResult, MatrixError};
use crate::Homeserver;
use conifer_rooms::ruma::directory::{PublicRoomsChunk, PublicRoomsChunkInit};
use conifer_rooms::ruma::room::JoinRuleKind;
use conifer_rooms::ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, UInt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One page of a room directory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_room_count_estimate: Option<UInt>,
}

/// What a directory page is asked for.
#[derive(Debug, Default)]
pub(crate) struct PublicRoomsQuery {
    pub limit: Option<u64>,
    pub since: Option<String>,
    /// Lower-cased `filter.generic_search_term`.
    pub term: Option<String>,
}

impl PublicRoomsQuery {
    /// The query of a `POST /publicRooms` body (limit, since,
    /// `filter.generic_search_term`).
    pub(crate) fn from_body(body: &Value) -> Self {
        PublicRoomsQuery {
            limit: body.get("limit").and_then(Value::as_u64),
            since: body.get("since").and_then(Value::as_str).map(str::to_owned),
            term: body
                .pointer("/filter/generic_search_term")
                .and_then(Value::as_str)
                .map(str::to_lowercase),
        }
    }
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
) -> ApiResult<()> {
    fn aliases(content: &Value) -> ApiResult<Vec<&str>> {
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
        let parsed = OwnedRoomAliasId::try_from(alias)
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

impl Homeserver {
    fn check_local_alias(&self, alias: &RoomAliasId) -> ApiResult<()> {
        if alias.server_name() != self.server_name.as_str() {
            return Err(MatrixError::invalid_param("aliases must be on this server"));
        }
        Ok(())
    }

    /// Points a new alias of this server at a room the user is joined to.
    pub(crate) fn create_alias(
        &self,
        alias: &RoomAliasId,
        room: &str,
        user: &str,
    ) -> ApiResult<()> {
        self.check_local_alias(alias)?;
        if self.store.room(room)?.is_none() {
            return Err(MatrixError::not_found("unknown room"));
        }
        // As Synapse: only a member of the room may point an alias at it.
        if self.membership(room, user)?.as_deref() != Some("join") {
            return Err(MatrixError::forbidden(
                "you must be in the room to create an alias for it",
            ));
        }
        match self.store.put_alias(alias.as_str(), room, user) {
            Err(conifer_store::StoreError::Conflict) => Err(MatrixError::new(
                axum::http::StatusCode::CONFLICT,
                "M_UNKNOWN",
                "alias already exists",
            )),
            other => Ok(other?),
        }
    }

    /// Deletes an alias: its creator, an admin or whoever may change the
    /// room's canonical alias may. The alias also leaves the room's
    /// `m.room.canonical_alias` event where the user may send one.
    pub(crate) async fn delete_alias(&self, alias: &RoomAliasId, user: &str) -> ApiResult<()> {
        self.check_local_alias(alias)?;
        let a = self
            .store
            .alias(alias.as_str())?
            .ok_or_else(|| MatrixError::not_found("room alias not found"))?;
        let admin = self.store.user(user)?.is_some_and(|u| u.admin);
        if a.creator != user && !admin && !self.may_change_canonical_alias(&a.room_id, user)? {
            return Err(MatrixError::forbidden("you may not delete this alias"));
        }
        self.store.delete_alias(alias.as_str())?;
        self.drop_from_canonical_alias(&a.room_id, user, alias.as_str())
            .await;
        Ok(())
    }

    /// Whether the user is joined to the room with the power to send
    /// `m.room.canonical_alias` (the level for that event type, else
    /// `state_default`).
    fn may_change_canonical_alias(&self, room: &str, user: &str) -> ApiResult<bool> {
        if self.membership(room, user)?.as_deref() != Some("join") {
            return Ok(false);
        }
        let (level, pl) = self.power_level(room, user)?;
        let needed = pl
            .pointer("/events/m.room.canonical_alias")
            .and_then(crate::rooms::as_int)
            .or_else(|| pl.get("state_default").and_then(crate::rooms::as_int))
            .unwrap_or(if pl.is_null() { 0 } else { 50 });
        Ok(level >= needed)
    }

    /// Takes a deleted alias out of the room's `m.room.canonical_alias`
    /// event, sent as the user who deleted it. If that user may not send the
    /// event, the alias stays deleted and the event is left as it is (the
    /// spec recommends that the deletion succeed anyway).
    async fn drop_from_canonical_alias(&self, room: &str, user: &str, alias: &str) {
        let Ok(Some(event)) = self.state_event(room, "m.room.canonical_alias", "") else {
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
        if let Err(e) = self.send_event(room, user, template, None).await {
            tracing::info!(room, alias, error = %e.message, "deleted alias left in the canonical alias event");
        }
    }

    /// The local aliases of a room the user is joined to.
    pub(crate) fn room_aliases(&self, room: &str, user: &str) -> ApiResult<Vec<String>> {
        self.require_joined(room, user)?;
        Ok(self.store.aliases_for_room(room)?)
    }

    /// Whether a room is published in this server's directory.
    pub(crate) fn room_published(&self, room: &str) -> ApiResult<bool> {
        Ok(self
            .store
            .room(room)?
            .ok_or_else(|| MatrixError::not_found("unknown room"))?
            .published)
    }

    /// Publishes or unpublishes a room: the user needs the room's
    /// `state_default` power level.
    pub(crate) fn set_room_published(&self, room: &str, user: &str, public: bool) -> ApiResult<()> {
        self.room_published(room)?;
        let (level, pl) = self.power_level(room, user)?;
        if level
            < pl.get("state_default")
                .and_then(crate::rooms::as_int)
                .unwrap_or(50)
        {
            return Err(MatrixError::forbidden("you may not publish this room"));
        }
        self.store.set_room_published(room, public)?;
        Ok(())
    }

    fn state_str(&self, room: &str, kind: &str, field: &str) -> Option<String> {
        self.state_event(room, kind, "")
            .ok()??
            .content_value()
            .get(field)?
            .as_str()
            .map(str::to_owned)
    }

    /// A page of this server's directory. `since` is a `p{offset}` token.
    pub(crate) fn public_rooms(&self, q: &PublicRoomsQuery) -> ApiResult<PublicRoomsPage> {
        let mut chunk = Vec::new();
        for room in self.store.published_rooms()? {
            let name = self.state_str(&room, "m.room.name", "name");
            let topic = self.state_str(&room, "m.room.topic", "topic");
            let alias = self.state_str(&room, "m.room.canonical_alias", "alias");
            if let Some(t) = &q.term {
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
            let Ok(room_id) = OwnedRoomId::try_from(room.as_str()) else {
                continue;
            };
            let joined = self.store.room_members(&room, Some("join"))?.len();
            let join_rule = self
                .state_str(&room, "m.room.join_rules", "join_rule")
                .unwrap_or_else(|| "invite".into());
            let mut entry = PublicRoomsChunk::from(PublicRoomsChunkInit {
                num_joined_members: UInt::try_from(joined as u64).unwrap_or(UInt::MAX),
                room_id,
                world_readable: false,
                guest_can_join: false,
            });
            entry.name = name;
            entry.topic = topic;
            entry.canonical_alias = alias.and_then(|a| OwnedRoomAliasId::try_from(a).ok());
            entry.join_rule = JoinRuleKind::from(join_rule.as_str());
            chunk.push(entry);
        }
        let total = chunk.len();
        let start: usize = q
            .since
            .as_deref()
            .and_then(|s| s.strip_prefix('p'))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let limit = q.limit.unwrap_or(100).clamp(1, 500) as usize;
        let page = chunk.into_iter().skip(start).take(limit).collect();
        Ok(PublicRoomsPage {
            chunk: page,
            next_batch: (start + limit < total).then(|| format!("p{}", start + limit)),
            prev_batch: (start > 0).then(|| format!("p{}", start.saturating_sub(limit))),
            total_room_count_estimate: UInt::try_from(total as u64).ok(),
        })
    }

    /// Another server's directory, asked on a client's behalf (a body as
    /// federation's `POST /publicRooms` takes it). Entries that are not
    /// valid directory entries are left out; an unreachable server or one
    /// that answers otherwise is 404.
    pub(crate) async fn remote_public_rooms(
        &self,
        server: &str,
        body: Value,
    ) -> ApiResult<PublicRoomsPage> {
        let not_found =
            |m: String| MatrixError::new(axum::http::StatusCode::NOT_FOUND, "M_NOT_FOUND", m);
        let v = match self
            .federation_call(
                server,
                "POST",
                "/_matrix/federation/v1/publicRooms",
                Some(&body),
            )
            .await
        {
            Ok((200, v)) if v.get("chunk").is_some_and(Value::is_array) => v,
            Ok((status, _)) => {
                return Err(not_found(format!(
                    "{server} answered {status} for its room directory"
                )))
            }
            Err(e) => return Err(not_found(format!("cannot reach {server}: {e}"))),
        };
        let str_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(PublicRoomsPage {
            chunk: v["chunk"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| serde_json::from_value(e.clone()).ok())
                .collect(),
            next_batch: str_of("next_batch"),
            prev_batch: str_of("prev_batch"),
            total_room_count_estimate: v
                .get("total_room_count_estimate")
                .and_then(Value::as_u64)
                .and_then(|n| UInt::try_from(n).ok()),
        })
    }
}
