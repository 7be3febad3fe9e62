//! Records passed across the storage traits.

use serde_json::Value;
use std::collections::HashMap;

/// Room state as `(type, state_key) → event ID`.
pub type StateIds = HashMap<(String, String), String>;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<u64>,
    pub last_seen_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RoomRecord {
    pub room_id: String,
    pub version: String,
    pub published: bool,
}

#[derive(Debug, Clone)]
pub struct AliasRecord {
    pub room_id: String,
    pub creator: String,
}

/// An accepted event about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub room_id: String,
    pub event_id: String,
    /// The PDU as sent over federation (canonical form not required).
    pub json: String,
    pub depth: i64,
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: u64,
    pub prev_events: Vec<String>,
    /// `content.membership` for `m.room.member` events.
    pub membership: Option<String>,
    /// The client transaction that created it: `(user, device, txn_id)`.
    pub txn: Option<(String, String, String)>,
    /// Local users to notify: `(user_id, highlight)`.
    pub notify: Vec<(String, bool)>,
    /// Servers to send the event to, with the PDU as federation sees it;
    /// queued in the same transaction as the event.
    pub outbox: Option<(Vec<String>, String)>,
    /// For an event off the room's current state (a fork): the state
    /// before it and the room's state after it (resolved). `None`: the
    /// event extends the current state.
    pub fork: Option<ForkState>,
}

/// `(type, state_key, event_id)` triples.
pub type StateList = Vec<(String, String, String)>;

#[derive(Debug, Clone)]
pub struct ForkState {
    pub before: StateList,
    pub room: StateList,
}

#[derive(Debug, Clone, Copy)]
pub struct PersistedEvent {
    pub stream_pos: u64,
    pub state_group: i64,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event_id: String,
    pub room_id: String,
    pub json: String,
    pub stream_pos: u64,
    pub depth: i64,
    /// The room state after this event.
    pub state_group: i64,
}

impl StoredEvent {
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone)]
pub struct MembershipRecord {
    pub room_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_pos: u64,
    pub forgotten: bool,
}

#[derive(Debug, Clone)]
pub struct ReceiptRecord {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    /// Empty for unthreaded receipts.
    pub thread_id: String,
    pub event_id: String,
    pub ts: u64,
    /// Filled in by the store.
    pub stream_pos: u64,
}

#[derive(Debug, Clone)]
pub struct ToDeviceRecord {
    pub user_id: String,
    pub device_id: String,
    pub message: Value,
}

#[derive(Debug, Clone)]
pub struct PresenceRecord {
    pub user_id: String,
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub stream_pos: u64,
}

#[derive(Debug, Clone)]
pub struct BackupVersion {
    pub version: u64,
    pub algorithm: String,
    pub auth_data: Value,
    pub etag: u64,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct MediaRecord {
    pub media_id: String,
    pub sha256: String,
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
    pub uploader: String,
    pub created_ts: u64,
}

/// Which relations of an event to list, and in which direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelationFilter<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Newest first, from `before` down; otherwise oldest first after `before`.
    pub backwards: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: u64,
    pub is_pdu: bool,
    pub json: Value,
}

/// An event stored outside the timeline: state and auth events another
/// server sent when this server joined a room.
#[derive(Debug, Clone)]
pub struct OutlierEvent {
    pub event_id: String,
    pub json: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub depth: i64,
}

/// An invite to a room this server is not in.
#[derive(Debug, Clone)]
pub struct RemoteInvite {
    pub room_id: String,
    pub user_id: String,
    /// The ID of `event`.
    pub event_id: String,
    pub room_version: String,
    /// `invite`, or `leave` once the user rejected it.
    pub membership: String,
    /// The invite event, signed by both servers; after a rejection, the
    /// user's leave event.
    pub event: Value,
    /// Stripped state events for the client's `invite_state`.
    pub invite_state: Vec<Value>,
    /// Set by the store.
    pub stream_pos: u64,
}

/// Who a write at a stream position concerns, so that a long-poll wakes
/// only for what it would show (see [`crate::StreamStore::changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The room's members (events, receipts).
    Room(String),
    /// One user (account data, invites, the target of a membership event,
    /// any other change of the user's membership in a room).
    User(String),
    /// One device of a user (to-device messages).
    Device(String, String),
    /// A user and everyone sharing a room with them (presence, device
    /// lists).
    SharingWith(String),
}
