//! Outbound EDUs: typing and public read receipts of local users go to
//! every other server with members in the room, through the outbox.

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
        let servers = self.remote_servers_in(room_id);
        if servers.is_empty() {
            return;
        }
        match self.store.outbox_push(&servers, false, &edu) {
            Ok(()) => servers
                .into_iter()
                .for_each(|s| self.sender.signal(Signal::Queued(s))),
            Err(e) => tracing::warn!(room = room_id, error = %e, "cannot queue an EDU"),
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
        if servers.is_empty() {
            return;
        }
        let json = crate::federation::join::federation_json(pdu);
        match self.store.outbox_push(&servers, true, &json) {
            Ok(()) => servers
                .into_iter()
                .for_each(|s| self.sender.signal(Signal::Queued(s))),
            Err(e) => tracing::warn!(room = room_id, error = %e, "cannot queue a PDU"),
        }
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
}
