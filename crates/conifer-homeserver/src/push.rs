//! Push rules: the user's rule set (defaults until edited), editing it as
//! the push rules API asks, and evaluating it for new events to count
//! notifications and highlights.

use crate::error::{ApiResult, MatrixError};
use crate::Homeserver;
use conifer_rooms::ruma::events::AnySyncTimelineEvent;
use conifer_rooms::ruma::push::{
    Action, ConditionalPushRule, NewPushRule, PushConditionRoomCtx, RemovePushRuleError, RuleKind,
    Ruleset,
};
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

/// Rule IDs the spec lets a user create.
fn check_new_rule_id(id: &str) -> ApiResult<()> {
    if id.is_empty() {
        return Err(MatrixError::invalid_param("the rule ID is empty"));
    }
    if id.starts_with('.') {
        return Err(MatrixError::invalid_param(
            "rule IDs starting with a dot are reserved for server-default rules",
        ));
    }
    if id.contains('/') || id.contains('\\') {
        return Err(MatrixError::invalid_param(
            "rule IDs may not contain slashes or backslashes",
        ));
    }
    Ok(())
}

fn no_such_rule() -> MatrixError {
    MatrixError::not_found("no such push rule")
}

/// Moves rule `id` of one kind's ordered set next to `before` (just above
/// it) or, without `before`, just below `after`. The anchors are looked up
/// before anything moves.
macro_rules! place {
    ($set:expr, $id:expr, $after:expr, $before:expr) => {{
        let set = &mut $set;
        let anchor = |a: &str| {
            set.get_index_of(a).ok_or_else(|| {
                MatrixError::invalid_param(format!("before/after rule not found: {a}"))
            })
        };
        let after = $after.map(anchor).transpose()?;
        let before = $before.map(anchor).transpose()?;
        let from = set.get_index_of($id).ok_or_else(no_such_rule)?;
        if let (Some(a), Some(b)) = (after, before) {
            if b < a {
                return Err(MatrixError::invalid_param(
                    "the before rule is more important than the after rule",
                ));
            }
        }
        if let Some(b) = before {
            set.move_index(from, if from < b { b - 1 } else { b });
        } else if let Some(a) = after {
            set.move_index(from, if from < a { a } else { a + 1 });
        }
    }};
}

/// Inserts or updates a user rule, placing it as `before`/`after` ask.
fn insert(
    rules: &mut Ruleset,
    rule: NewPushRule,
    after: Option<&str>,
    before: Option<&str>,
) -> ApiResult<()> {
    let id = rule.rule_id().to_owned();
    for anchor in [after, before].into_iter().flatten() {
        if anchor.starts_with('.') {
            return Err(MatrixError::invalid_param(
                "a rule cannot be placed relative to a server-default rule",
            ));
        }
        if anchor == id {
            return Err(MatrixError::invalid_param(
                "a rule cannot be placed relative to itself",
            ));
        }
    }
    let rk = rule.kind();
    match rule {
        // Ruma puts a new override rule second (after `.m.rule.master`),
        // which needs a first rule to exist.
        NewPushRule::Override(r) if rules.override_.is_empty() => {
            rules.override_.insert(ConditionalPushRule::from(r));
        }
        rule => rules
            .insert(rule, None, None)
            .map_err(|e| MatrixError::invalid_param(e.to_string()))?,
    }
    match rk {
        RuleKind::Override => place!(rules.override_, id.as_str(), after, before),
        RuleKind::Underride => place!(rules.underride, id.as_str(), after, before),
        RuleKind::Content => place!(rules.content, id.as_str(), after, before),
        RuleKind::Room => place!(rules.room, id.as_str(), after, before),
        RuleKind::Sender => place!(rules.sender, id.as_str(), after, before),
        _ => {}
    }
    Ok(())
}

impl Homeserver {
    /// Adds or replaces a rule of the user's, placed just above `before` or
    /// just below `after`; server-default rules and the IDs the spec
    /// reserves or forbids are refused.
    pub(crate) fn set_push_rule(
        &self,
        user: &UserId,
        rule: NewPushRule,
        after: Option<&str>,
        before: Option<&str>,
    ) -> ApiResult<()> {
        check_new_rule_id(rule.rule_id())?;
        let mut rules = (*ruleset(self, user)).clone();
        insert(&mut rules, rule, after, before)?;
        save(self, user, &rules)?;
        Ok(())
    }

    /// Deletes a rule of the user's (not a server-default one).
    pub(crate) fn delete_push_rule(
        &self,
        user: &UserId,
        kind: RuleKind,
        id: &str,
    ) -> ApiResult<()> {
        let mut rules = (*ruleset(self, user)).clone();
        rules.remove(kind, id).map_err(|e| match e {
            RemovePushRuleError::ServerDefault => {
                MatrixError::invalid_param("server-default rules cannot be deleted")
            }
            _ => no_such_rule(),
        })?;
        save(self, user, &rules)?;
        Ok(())
    }

    /// Enables or disables one rule.
    pub(crate) fn set_push_rule_enabled(
        &self,
        user: &UserId,
        kind: RuleKind,
        id: &str,
        enabled: bool,
    ) -> ApiResult<()> {
        let mut rules = (*ruleset(self, user)).clone();
        rules
            .set_enabled(kind, id, enabled)
            .map_err(|_| no_such_rule())?;
        save(self, user, &rules)?;
        Ok(())
    }

    /// Replaces the actions of one rule.
    pub(crate) fn set_push_rule_actions(
        &self,
        user: &UserId,
        kind: RuleKind,
        id: &str,
        actions: Vec<Action>,
    ) -> ApiResult<()> {
        let mut rules = (*ruleset(self, user)).clone();
        rules
            .set_actions(kind, id, actions)
            .map_err(|_| no_such_rule())?;
        save(self, user, &rules)?;
        Ok(())
    }
}
