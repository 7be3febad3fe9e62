//! Building new local events and checking them against the auth rules.

use crate::{versions::rules_for, Pdu, ServerKey};
use ruma::canonical_json::try_from_json_map;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{
    auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
};
use ruma::{CanonicalJsonObject, EventId, OwnedEventId, RoomId, UserId};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a local user asks for: the rest (auth events, prev events, depth,
/// hashes, signature, ID) is filled in by [`build_event`].
#[derive(Debug, Clone)]
pub struct EventTemplate {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub redacts: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unsupported room version {0}")]
    UnsupportedVersion(String),
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error("event too large")]
    TooLarge,
    #[error("not allowed: {0}")]
    Forbidden(String),
}

/// Builds, hashes and signs an event on top of `prev_events` (with their
/// depths). `state` looks up the current state event for `(type, state_key)`.
#[allow(clippy::too_many_arguments)]
pub fn build_event(
    version: &str,
    room_id: &RoomId,
    sender: &UserId,
    template: &EventTemplate,
    prev_events: &[(OwnedEventId, i64)],
    state: &dyn Fn(&str, &str) -> Option<OwnedEventId>,
    now_ms: u64,
    key: &ServerKey,
) -> Result<Pdu, BuildError> {
    let (_, rules) =
        rules_for(version).ok_or_else(|| BuildError::UnsupportedVersion(version.to_owned()))?;
    let kind = TimelineEventType::from(template.kind.as_str());
    let content = serde_json::value::to_raw_value(&template.content)
        .map_err(|e| BuildError::Invalid(e.to_string()))?;
    let auth_types = auth_types_for_event(
        &kind,
        sender,
        template.state_key.as_deref(),
        &content,
        &rules.authorization,
    )
    .map_err(BuildError::Invalid)?;
    let mut auth_events: Vec<String> = auth_types
        .iter()
        .filter_map(|(t, k)| state(&t.to_string(), k))
        .map(|id| id.to_string())
        .collect();
    auth_events.sort();
    auth_events.dedup();

    let depth = prev_events
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let is_v12_create = kind == TimelineEventType::RoomCreate
        && rules.authorization.room_create_event_id_as_room_id;
    let mut object = json!({
        "auth_events": auth_events,
        "content": template.content,
        "depth": depth,
        "origin_server_ts": now_ms,
        "prev_events": prev_events.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "sender": sender.as_str(),
        "type": template.kind,
    });
    let map = object.as_object_mut().expect("built as an object");
    if !is_v12_create {
        map.insert("room_id".into(), json!(room_id.as_str()));
    }
    if let Some(sk) = &template.state_key {
        map.insert("state_key".into(), json!(sk));
    }
    if let Some(redacts) = &template.redacts {
        if rules.redaction.content_field_redacts {
            map["content"]["redacts"] = json!(redacts);
        } else {
            map.insert("redacts".into(), json!(redacts));
        }
    }
    sign_and_identify(object, &rules, key)
}

/// Hashes and signs an unsigned event (such as a `make_join` template from
/// another server) for `version`, and derives its event ID.
pub fn sign_template(version: &str, template: Value, key: &ServerKey) -> Result<Pdu, BuildError> {
    let (_, rules) =
        rules_for(version).ok_or_else(|| BuildError::UnsupportedVersion(version.to_owned()))?;
    sign_and_identify(template, &rules, key)
}

/// Hashes and signs a PDU object and derives its event ID.
pub(crate) fn sign_and_identify(
    object: Value,
    rules: &RoomVersionRules,
    key: &ServerKey,
) -> Result<Pdu, BuildError> {
    let Value::Object(map) = object else {
        return Err(BuildError::Invalid("not an object".into()));
    };
    let mut canonical: CanonicalJsonObject =
        try_from_json_map(map).map_err(|e| BuildError::Invalid(e.to_string()))?;
    ruma::signatures::hash_and_sign_event(
        key.server_name.as_str(),
        &key.pair,
        &mut canonical,
        &rules.redaction,
    )
    .map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => BuildError::TooLarge,
        e => BuildError::Invalid(e.to_string()),
    })?;
    let hash =
        ruma::signatures::reference_hash(&canonical, rules).map_err(|_| BuildError::TooLarge)?;
    let event_id = OwnedEventId::try_from(format!("${hash}"))
        .map_err(|e| BuildError::Invalid(e.to_string()))?;
    let json = serde_json::to_string(&canonical).map_err(|e| BuildError::Invalid(e.to_string()))?;
    if json.len() > 65_536 {
        return Err(BuildError::TooLarge);
    }
    Pdu::from_json(event_id, json).map_err(|e| BuildError::Invalid(e.to_string()))
}

/// Checks an event against the authorization rules: its own auth events
/// (state-independent rules) and then the given state.
pub fn check_auth(
    version: &str,
    pdu: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>>,
) -> Result<(), BuildError> {
    let (_, rules) =
        rules_for(version).ok_or_else(|| BuildError::UnsupportedVersion(version.to_owned()))?;
    check_state_independent_auth_rules(&rules.authorization, pdu, fetch_event)
        .map_err(BuildError::Forbidden)?;
    check_state_dependent_auth_rules(&rules.authorization, pdu, fetch_state)
        .map_err(BuildError::Forbidden)
}
