//! Typing, receipts, read markers and presence: what the Client-Server
//! API's handlers ask of the service layer.

use crate::error::{ApiResult, MatrixError};
use crate::{now_ms, Homeserver};
use conifer_store::ReceiptRecord;
use serde_json::json;
use std::time::Duration;

/// A user's presence as the API shows it.
pub(crate) struct PresenceView {
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<u64>,
    pub currently_active: Option<bool>,
}

impl Homeserver {
    /// Starts (for `timeout`) or stops the user's typing in a room they are
    /// joined to, and tells the room's other servers.
    pub(crate) fn set_typing(
        &self,
        room: &str,
        user: &str,
        timeout: Option<Duration>,
    ) -> ApiResult<()> {
        self.require_joined(room, user)?;
        self.typing.set(room, user, timeout);
        self.federate_typing(room, user, timeout.is_some());
        Ok(())
    }

    /// Stores a read receipt (`m.read` or `m.read.private`) of the user's
    /// for an event of the room; `m.read` goes to the room's other servers.
    pub(crate) fn put_receipt(
        &self,
        room: &str,
        user: &str,
        kind: &str,
        event: &str,
        thread: Option<&str>,
    ) -> ApiResult<()> {
        if self
            .store
            .event(event)?
            .filter(|e| e.room_id == room)
            .is_none()
        {
            return Err(MatrixError::not_found("unknown event in this room"));
        }
        self.store.put_receipt(ReceiptRecord {
            room_id: room.to_owned(),
            user_id: user.to_owned(),
            receipt_type: kind.to_owned(),
            thread_id: thread.unwrap_or("").to_owned(),
            event_id: event.to_owned(),
            ts: now_ms(),
            stream_pos: 0,
        })?;
        if kind == "m.read" {
            self.federate_read_receipt(room, user, event, now_ms());
        }
        Ok(())
    }

    /// Moves the user's fully-read marker of a room.
    pub(crate) fn set_fully_read(&self, room: &str, user: &str, event: &str) -> ApiResult<()> {
        self.store.put_account_data(
            user,
            Some(room),
            "m.fully_read",
            &json!({ "event_id": event }),
        )?;
        Ok(())
    }

    /// A user's presence: `offline` for a known user who never set one, 404
    /// for a user this server does not know.
    pub(crate) fn presence(&self, user: &str) -> ApiResult<PresenceView> {
        match self.store.presence(user)? {
            Some(p) => Ok(PresenceView {
                currently_active: Some(p.presence == "online"),
                last_active_ago: Some(now_ms().saturating_sub(p.last_active_ts)),
                presence: p.presence,
                status_msg: p.status_msg,
            }),
            None if self.store.user(user)?.is_some() => Ok(PresenceView {
                presence: "offline".into(),
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            }),
            None => Err(MatrixError::not_found("unknown user")),
        }
    }

    /// Sets the user's presence (`online`, `offline` or `unavailable`) and
    /// tells the servers of the rooms they share.
    pub(crate) fn set_presence(
        &self,
        user: &str,
        presence: &str,
        status_msg: Option<&str>,
    ) -> ApiResult<()> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(MatrixError::invalid_param(
                "presence must be online, offline or unavailable",
            ));
        }
        self.store
            .set_presence(user, presence, status_msg, now_ms())?;
        self.federate_presence(user, presence, status_msg);
        Ok(())
    }
}
