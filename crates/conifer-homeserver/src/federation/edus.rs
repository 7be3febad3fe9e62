//! Outbound EDUs: typing and public read receipts of local users go to
//! every other server with members in the room, presence to every server
//! sharing a room with the user, through the outbox; and inbound presence.

use crate::federation::Signal;
use crate::Homeserver;
use serde_json::{json, Value};

impl Homeserver {
    /// Servers other than this one with joined members in the room.
    pub(crate) fn remote_servers_in(&self, room_id: &str) -> Vec<String> {
        let members = self
            .store
            .room_members(room_id, Some("join"))
            .unwrap_or_default();
        self.remote_servers_of(&members)
    }

    /// Servers other than this one among `(user, membership)` pairs, sorted, once each.
    pub(crate) fn remote_servers_of(&self, members: &[(String, String)]) -> Vec<String> {
        let mut servers: Vec<String> = members
            .iter()
            .filter_map(|(u, _)| u.split_once(':').map(|(_, s)| s.to_owned()))
            .filter(|s| s != self.server_name.as_str())
            .collect();
        servers.sort();
        servers.dedup();
        servers
    }

    fn queue_edu(&self, room_id: &str, edu: Value) {
        self.queue_for(self.remote_servers_in(room_id), false, &edu);
    }

    /// Queues a PDU or EDU for `servers` and wakes their senders.
    pub(crate) fn queue_for(&self, servers: Vec<String>, is_pdu: bool, json: &Value) {
        if servers.is_empty() {
            return;
        }
        match self.store.outbox_push(&servers, is_pdu, json) {
            Ok(()) => servers
                .into_iter()
                .for_each(|s| self.sender.signal(Signal::Queued(s))),
            Err(e) => tracing::warn!(error = %e, "cannot queue federation traffic"),
        }
    }

    /// Sends a PDU that arrived by `send_join` or `send_leave` on to the other
    /// servers in the room: its origin reached only this server.
    pub(crate) fn fan_out(&self, room_id: &str, pdu: &conifer_rooms::Pdu, origin: &str) {
        let servers: Vec<String> = self
            .remote_servers_in(room_id)
            .into_iter()
            .filter(|s| s != origin)
            .collect();
        self.queue_for(
            servers,
            true,
            &crate::federation::join::federation_json(pdu),
        );
    }

    pub(crate) fn federate_typing(&self, room_id: &str, user_id: &str, typing: bool) {
        self.queue_edu(room_id, json!({ "edu_type": "m.typing", "content": { "room_id": room_id, "user_id": user_id, "typing": typing } }));
    }

    pub(crate) fn federate_read_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        event_id: &str,
        ts: u64,
    ) {
        let receipt =
            json!({ "m.read": { user_id: { "event_ids": [event_id], "data": { "ts": ts } } } });
        self.queue_edu(
            room_id,
            json!({ "edu_type": "m.receipt", "content": { room_id: receipt } }),
        );
    }

    /// Servers sharing a room with `user`, other than this one.
    pub(crate) fn servers_sharing(&self, user: &str) -> Vec<String> {
        let users = self.store.users_sharing_rooms(user).unwrap_or_default();
        self.remote_servers_of(
            &users
                .into_iter()
                .map(|u| (u, String::new()))
                .collect::<Vec<_>>(),
        )
    }

    /// Tells the servers sharing a room with a local user of a presence change.
    pub(crate) fn federate_presence(&self, user: &str, presence: &str, status_msg: Option<&str>) {
        let mut entry = json!({ "user_id": user, "presence": presence, "last_active_ago": 0,
            "currently_active": presence == "online" });
        if let Some(m) = status_msg {
            entry["status_msg"] = json!(m);
        }
        self.queue_for(
            self.servers_sharing(user),
            false,
            &json!({ "edu_type": "m.presence", "content": { "push": [entry] } }),
        );
    }

    /// Presence of `origin`'s users, as their server reports it.
    pub(crate) fn receive_presence(&self, origin: &str, content: &Value) {
        for p in content["push"].as_array().into_iter().flatten() {
            let (Some(user), Some(presence)) = (p["user_id"].as_str(), p["presence"].as_str())
            else {
                continue;
            };
            if crate::federation::e2ee::server_of(user) != origin
                || !matches!(presence, "online" | "offline" | "unavailable")
            {
                continue;
            }
            let ago = p["last_active_ago"].as_u64().unwrap_or(0);
            let at = crate::now_ms().saturating_sub(ago);
            if let Err(e) = self
                .store
                .set_presence(user, presence, p["status_msg"].as_str(), at)
            {
                tracing::warn!(error = %e, "cannot store remote presence");
            }
        }
    }
}
