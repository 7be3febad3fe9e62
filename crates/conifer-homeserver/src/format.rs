//! Events as clients see them (the "client event" format).

use serde_json::{json, Map, Value};

/// Where the transaction ID of a locally sent event is kept in `unsigned`;
/// only the sending device gets it back, as `transaction_id`.
pub const TXN_KEY: &str = "io.conifer.txn";

/// Formats a stored PDU for the client `(user, device)`; `room_id` is the
/// room it belongs to (room version 12 create events carry none).
pub fn client_event(
    pdu_json: &str,
    event_id: &str,
    room_id: &str,
    viewer: Option<(&str, &str)>,
    now_ms: u64,
) -> Value {
    let pdu: Value = serde_json::from_str(pdu_json).unwrap_or(Value::Null);
    client_event_from_value(&pdu, event_id, room_id, viewer, now_ms)
}

pub fn client_event_from_value(
    pdu: &Value,
    event_id: &str,
    room_id: &str,
    viewer: Option<(&str, &str)>,
    now_ms: u64,
) -> Value {
    let mut out = Map::new();
    for key in [
        "content",
        "origin_server_ts",
        "sender",
        "type",
        "state_key",
        "redacts",
    ] {
        if let Some(v) = pdu.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    // Room version 11 moved `redacts` into the content; older clients read it at the top.
    if out.get("type").and_then(Value::as_str) == Some("m.room.redaction")
        && !out.contains_key("redacts")
    {
        if let Some(r) = pdu.pointer("/content/redacts") {
            out.insert("redacts".into(), r.clone());
        }
    }
    out.insert("event_id".into(), json!(event_id));
    out.insert("room_id".into(), json!(room_id));
    let mut unsigned = Map::new();
    if let Some(Value::Object(u)) = pdu.get("unsigned") {
        for (k, v) in u {
            if k == TXN_KEY {
                let mine = viewer.is_some_and(|(user, device)| {
                    pdu.get("sender").and_then(Value::as_str) == Some(user)
                        && v.get("device").and_then(Value::as_str) == Some(device)
                });
                if mine {
                    if let Some(t) = v.get("txn_id") {
                        unsigned.insert("transaction_id".into(), t.clone());
                    }
                }
            } else {
                unsigned.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(ts) = pdu.get("origin_server_ts").and_then(Value::as_u64) {
        unsigned.insert("age".into(), json!(now_ms.saturating_sub(ts)));
    }
    out.insert("unsigned".into(), Value::Object(unsigned));
    Value::Object(out)
}

/// The state events an invitee sees before joining (besides the invite).
pub const INVITE_STATE: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The stripped form used in invite and knock state.
pub fn stripped_state(pdu: &Value) -> Value {
    json!({
        "type": pdu.get("type"),
        "state_key": pdu.get("state_key"),
        "content": pdu.get("content"),
        "sender": pdu.get("sender"),
    })
}

/// Sync responses nest events under their room, so the room ID is dropped.
pub fn without_room_id(mut event: Value) -> Value {
    if let Some(o) = event.as_object_mut() {
        o.remove("room_id");
    }
    event
}
