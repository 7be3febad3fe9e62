//! The initial events of a new room (`/createRoom`), in the order the spec gives.

use crate::{versions::rules_for, EventTemplate};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

#[derive(Debug, Clone)]
pub struct CreateRoomOptions {
    pub version: String,
    pub creator: String,
    pub creator_displayname: Option<String>,
    pub creator_avatar_url: Option<String>,
    pub preset: Preset,
    pub name: Option<String>,
    pub topic: Option<String>,
    /// The full canonical alias, e.g. `#room:server`.
    pub canonical_alias: Option<String>,
    pub creation_content: Option<Value>,
    pub power_level_content_override: Option<Value>,
    pub initial_state: Vec<EventTemplate>,
    pub invite: Vec<String>,
    pub is_direct: bool,
}

fn state(kind: &str, state_key: &str, content: Value) -> EventTemplate {
    EventTemplate {
        kind: kind.into(),
        state_key: Some(state_key.into()),
        content,
        redacts: None,
    }
}

/// Merges `patch` into `base`, one level deep for objects (as Synapse does
/// for `power_level_content_override`).
fn merge(base: &mut Value, patch: &Value) {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// The events that create a room, from `m.room.create` to the invites.
pub fn create_room_events(o: &CreateRoomOptions) -> Vec<EventTemplate> {
    let rules = rules_for(&o.version).map(|(_, r)| r);
    let creators_privileged = rules
        .as_ref()
        .is_some_and(|r| r.authorization.explicitly_privilege_room_creators);
    let uses_sender_as_creator = rules
        .as_ref()
        .is_some_and(|r| r.authorization.use_room_create_sender);

    let mut create = json!({ "room_version": o.version });
    if !uses_sender_as_creator {
        create["creator"] = json!(o.creator);
    }
    if let Some(extra) = &o.creation_content {
        merge(&mut create, extra);
        create["room_version"] = json!(o.version);
    }
    let mut events = vec![state("m.room.create", "", create)];

    let mut member = json!({ "membership": "join" });
    if let Some(n) = &o.creator_displayname {
        member["displayname"] = json!(n);
    }
    if let Some(a) = &o.creator_avatar_url {
        member["avatar_url"] = json!(a);
    }
    events.push(state("m.room.member", &o.creator, member));

    let mut users = serde_json::Map::new();
    if !creators_privileged {
        users.insert(o.creator.clone(), json!(100));
    }
    if o.preset == Preset::TrustedPrivateChat {
        for invitee in &o.invite {
            users.insert(invitee.clone(), json!(100));
        }
    }
    let mut power = json!({
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "events_default": 0, "state_default": 50, "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.avatar": 50, "m.room.canonical_alias": 50, "m.room.topic": 50,
            "m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100
        },
        "notifications": { "room": 50 },
        "users": users,
    });
    if let Some(over) = &o.power_level_content_override {
        merge(&mut power, over);
    }
    events.push(state("m.room.power_levels", "", power));

    if let Some(alias) = &o.canonical_alias {
        events.push(state(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    let (join_rule, guest) = match o.preset {
        Preset::PublicChat => ("public", "forbidden"),
        Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
    };
    let has = |kind: &str| {
        o.initial_state
            .iter()
            .any(|e| e.kind == kind && e.state_key.as_deref() == Some(""))
    };
    if !has("m.room.join_rules") {
        events.push(state(
            "m.room.join_rules",
            "",
            json!({ "join_rule": join_rule }),
        ));
    }
    if !has("m.room.history_visibility") {
        events.push(state(
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "shared" }),
        ));
    }
    if !has("m.room.guest_access") {
        events.push(state(
            "m.room.guest_access",
            "",
            json!({ "guest_access": guest }),
        ));
    }
    events.extend(o.initial_state.iter().cloned());
    if let Some(name) = &o.name {
        events.push(state("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = &o.topic {
        events.push(state("m.room.topic", "", json!({ "topic": topic })));
    }
    for invitee in &o.invite {
        let mut content = json!({ "membership": "invite" });
        if o.is_direct {
            content["is_direct"] = json!(true);
        }
        events.push(state("m.room.member", invitee, content));
    }
    events
}
