//! A persistent data unit: an event as the room graph sees it.

use ruma::events::TimelineEventType;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("malformed event JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The fields of an event that the room graph reads; the full JSON is kept
/// as it was signed.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: i64,
    pub rejected: bool,
    /// The PDU JSON (without `event_id` for room versions ≥ 3).
    pub json: String,
}

#[derive(Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<OwnedEventId>,
    #[serde(default)]
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    #[serde(default)]
    depth: i64,
}

#[derive(Deserialize)]
struct ContentRedacts {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    pub fn from_json(event_id: OwnedEventId, json: String) -> Result<Self, PduError> {
        let f: Fields = serde_json::from_str(&json)?;
        // Room version 11 moved `redacts` into the content.
        let redacts = match f.redacts {
            Some(r) => Some(r),
            None if f.kind == TimelineEventType::RoomRedaction => {
                serde_json::from_str::<ContentRedacts>(f.content.get())
                    .ok()
                    .and_then(|c| c.redacts)
            }
            None => None,
        };
        Ok(Self {
            event_id,
            room_id: f.room_id,
            sender: f.sender,
            origin_server_ts: f.origin_server_ts,
            kind: f.kind,
            content: f.content,
            state_key: f.state_key,
            prev_events: f.prev_events,
            auth_events: f.auth_events,
            redacts,
            depth: f.depth,
            rejected: false,
            json,
        })
    }

    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.content.get()).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

impl AsRef<EventId> for Pdu {
    fn as_ref(&self) -> &EventId {
        &self.event_id
    }
}
