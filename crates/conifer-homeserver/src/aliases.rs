//! Room aliases of this server and of others.
//!
//! An alias of this server is read from the alias table; an alias of
//! another server is asked of that server every time
//! (`GET /_matrix/federation/v1/query/directory`), so an alias deleted or
//! moved there is never served from a stale copy. Server-Server API: "Performs
//! a query to get the mapped room ID and list of resident homeservers in the
//! room for a given room alias. Homeservers should only query room aliases
//! that belong to the target server (identified by the DNS Name in the
//! alias)."

use crate::error::{ApiResult, MatrixError};
use crate::federation::enc;
use crate::Homeserver;
use conifer_rooms::ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, ServerName};
use serde_json::Value;
use std::time::Duration;

/// Most servers kept from another server's directory answer.
const MAX_SERVERS: usize = 32;
/// Most new aliases of other servers one `m.room.canonical_alias` event may
/// add (each costs a federation query).
const MAX_REMOTE_ALIAS_CHECKS: usize = 8;
/// How long a directory query to another server may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where an alias points: the room, and servers likely to be in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTarget {
    pub room_id: String,
    pub servers: Vec<String>,
}

fn parse_alias(alias: &str) -> ApiResult<OwnedRoomAliasId> {
    OwnedRoomAliasId::try_from(alias).map_err(|_| MatrixError::invalid_param("not a room alias"))
}

fn alias_not_found() -> MatrixError {
    MatrixError::not_found("room alias not found")
}

impl Homeserver {
    /// Servers with joined members in the room, this one first if it has
    /// any; just this one if nobody is joined.
    pub(crate) fn servers_in_room(&self, room_id: &str) -> ApiResult<Vec<String>> {
        let members = self.store.room_members(room_id, Some("join"))?;
        let ours = members.iter().any(|(u, _)| self.is_local(u));
        let mut servers: Vec<String> = Vec::new();
        if ours || members.is_empty() {
            servers.push(self.server_name.to_string());
        }
        servers.extend(self.remote_servers_of(&members));
        Ok(servers)
    }

    /// One of this server's aliases: the room and the servers in it.
    pub(crate) fn local_alias(&self, alias: &str) -> ApiResult<AliasTarget> {
        let parsed = parse_alias(alias)?;
        if parsed.server_name() != self.server_name.as_str() {
            return Err(MatrixError::invalid_param(
                "the room alias is not hosted on this server",
            ));
        }
        let record = self.store.alias(alias)?.ok_or_else(alias_not_found)?;
        Ok(AliasTarget {
            servers: self.servers_in_room(&record.room_id)?,
            room_id: record.room_id,
        })
    }

    /// Resolves a room alias: one of ours from the alias table, another
    /// server's by asking that server (nothing is cached). A room alias
    /// that cannot be resolved is `M_NOT_FOUND`.
    pub async fn resolve_alias(&self, alias: &str) -> ApiResult<AliasTarget> {
        let parsed = parse_alias(alias)?;
        if parsed.server_name() == self.server_name.as_str() {
            return self.local_alias(alias);
        }
        self.query_remote_alias(&parsed).await
    }

    /// A room ID as it is, or the room an alias points to with the servers
    /// to join it through.
    pub async fn resolve_room_or_alias(&self, id_or_alias: &str) -> ApiResult<AliasTarget> {
        if id_or_alias.starts_with('#') {
            return self.resolve_alias(id_or_alias).await;
        }
        OwnedRoomId::try_from(id_or_alias)
            .map_err(|_| MatrixError::invalid_param("not a room ID or alias"))?;
        Ok(AliasTarget {
            room_id: id_or_alias.to_owned(),
            servers: Vec::new(),
        })
    }

    async fn query_remote_alias(&self, alias: &RoomAliasId) -> ApiResult<AliasTarget> {
        let server = alias.server_name().as_str();
        let uri = format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            enc(alias.as_str())
        );
        let call = self.federation_call(server, "GET", &uri, None);
        let (status, body) = match tokio::time::timeout(QUERY_TIMEOUT, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                return Err(MatrixError::not_found(format!(
                    "cannot reach {server} to resolve {alias}: {e}"
                )))
            }
            Err(_) => {
                return Err(MatrixError::not_found(format!(
                    "{server} did not answer in time for {alias}"
                )))
            }
        };
        if status == 404 {
            return Err(alias_not_found());
        }
        let room_id = body
            .get("room_id")
            .and_then(Value::as_str)
            .filter(|r| OwnedRoomId::try_from(*r).is_ok())
            .filter(|_| status == 200)
            .ok_or_else(|| {
                MatrixError::not_found(format!("{server} answered {status} for {alias}"))
            })?
            .to_owned();
        let mut servers: Vec<String> = Vec::new();
        let named = body.get("servers").and_then(Value::as_array);
        for s in named.into_iter().flatten().filter_map(Value::as_str) {
            if servers.len() >= MAX_SERVERS {
                break;
            }
            if <&ServerName>::try_from(s).is_ok() && !servers.iter().any(|k| k == s) {
                servers.push(s.to_owned());
            }
        }
        // The alias's server knows the room: it is worth a try as well.
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_owned());
        }
        Ok(AliasTarget { room_id, servers })
    }

    /// The `m.room.canonical_alias` check for aliases of other servers,
    /// after the syntax and the local aliases were checked. Client-Server
    /// API: "If the event type being sent is `m.room.canonical_alias`
    /// servers SHOULD ensure that any new aliases being listed in the event
    /// are valid per their grammar/syntax and that they point to the room ID
    /// where the state event is to be sent. Servers do not validate aliases
    /// which are being removed or are already present in the state event."
    /// Each new alias of another server is resolved through that server;
    /// one that points elsewhere or cannot be resolved is `M_BAD_ALIAS`.
    pub(crate) async fn check_remote_aliases(
        &self,
        room_id: &str,
        current: Option<&Value>,
        content: &Value,
    ) -> ApiResult<()> {
        fn listed(content: Option<&Value>) -> Vec<&str> {
            let Some(content) = content else {
                return Vec::new();
            };
            let alt = content.get("alt_aliases").and_then(Value::as_array);
            content
                .get("alias")
                .and_then(Value::as_str)
                .into_iter()
                .chain(alt.into_iter().flatten().filter_map(Value::as_str))
                .collect()
        }
        let present = listed(current);
        let mut new: Vec<&str> = Vec::new();
        for alias in listed(Some(content)) {
            let Ok(parsed) = <&RoomAliasId>::try_from(alias) else {
                continue; // Refused by the syntax check already.
            };
            if parsed.server_name() != self.server_name.as_str()
                && !present.contains(&alias)
                && !new.contains(&alias)
            {
                new.push(alias);
            }
        }
        if new.len() > MAX_REMOTE_ALIAS_CHECKS {
            return Err(MatrixError::bad_alias(format!(
                "at most {MAX_REMOTE_ALIAS_CHECKS} new aliases of other servers can be checked at once"
            )));
        }
        for alias in new {
            match self.resolve_alias(alias).await {
                Ok(target) if target.room_id == room_id => {}
                Ok(_) => {
                    return Err(MatrixError::bad_alias(format!(
                        "the alias {alias} does not point to this room"
                    )))
                }
                Err(e) => {
                    return Err(MatrixError::bad_alias(format!(
                        "the alias {alias} cannot be checked: {}",
                        e.message
                    )))
                }
            }
        }
        Ok(())
    }
}
