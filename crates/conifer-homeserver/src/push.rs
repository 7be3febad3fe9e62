//! Push rules: the user's rule set (defaults until edited) and evaluating it
//! for new events to count notifications and highlights.

use crate::Homeserver;
use conifer_rooms::ruma::events::AnySyncTimelineEvent;
use conifer_rooms::ruma::push::{PushConditionRoomCtx, Ruleset};
use conifer_rooms::ruma::serde::Raw;
use conifer_rooms::ruma::{OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::{json, Value};
use std::sync::Arc;

/// Push rules are stored as the `m.push_rules` global account data, the way
/// clients also see them in `/sync`.
pub const PUSH_RULES: &str = "m.push_rules";

/// The user's rule set. Parsed rule sets are cached: every stored event
/// evaluates them once per local member.
pub fn ruleset(hs: &Homeserver, user_id: &UserId) -> Arc<Ruleset> {
    if let Some(r) = hs.push_rules.lock().get(user_id.as_str()) {
        return r.clone();
    }
    let rules = Arc::new(
        hs.store
            .account_data(user_id.as_str(), None, PUSH_RULES)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value::<Ruleset>(v.get("global")?.clone()).ok())
            .unwrap_or_else(|| Ruleset::server_default(user_id)),
    );
    let mut cache = hs.push_rules.lock();
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(user_id.to_string(), rules.clone());
    rules
}

/// `{"global": …}` as `GET /pushrules/` and the `m.push_rules` account data
/// show it.
pub fn ruleset_json(hs: &Homeserver, user_id: &UserId) -> Value {
    json!({ "global": ruleset_value(&ruleset(hs, user_id)) })
}

/// A rule set with every kind present, even one without rules (Ruma leaves
/// empty kinds out).
pub fn ruleset_value(rules: &Ruleset) -> Value {
    let mut v = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        for k in ["override", "content", "room", "sender", "underride"] {
            obj.entry(k).or_insert_with(|| json!([]));
        }
    }
    v
}

pub fn save(
    hs: &Homeserver,
    user_id: &UserId,
    rules: &Ruleset,
) -> Result<(), conifer_store::StoreError> {
    hs.store.put_account_data(
        user_id.as_str(),
        None,
        PUSH_RULES,
        &json!({ "global": rules }),
    )?;
    hs.push_rules
        .lock()
        .insert(user_id.to_string(), Arc::new(rules.clone()));
    Ok(())
}

/// `(notify, highlight)` for `user` receiving the event.
pub async fn evaluate(
    hs: &Homeserver,
    room_id: &str,
    pdu_json: &str,
    member_count: u64,
    user: &str,
    displayname: &str,
) -> (bool, bool) {
    let (Ok(user_id), Ok(room)) = (OwnedUserId::try_from(user), OwnedRoomId::try_from(room_id))
    else {
        return (false, false);
    };
    let Ok(raw_value) = serde_json::value::RawValue::from_string(pdu_json.to_owned()) else {
        return (false, false);
    };
    let raw: Raw<AnySyncTimelineEvent> = Raw::from_json(raw_value);
    let rules = ruleset(hs, &user_id);
    let ctx = PushConditionRoomCtx::new(
        room,
        UInt::new(member_count).unwrap_or_default(),
        user_id,
        displayname.to_owned(),
    );
    let actions = rules.get_actions(&raw, &ctx).await;
    let notify = actions.iter().any(|a| a.should_notify());
    let highlight = actions.iter().any(|a| a.is_highlight());
    (notify, highlight)
}
