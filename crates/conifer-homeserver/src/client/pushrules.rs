//! Push rules: reading the rule set and editing rules, with Ruma's push
//! types doing the bookkeeping.
//!
//! Error codes: an unknown `kind`, a rule ID the spec forbids and a bad
//! `before`/`after` are wrong parameters (400 `M_INVALID_PARAM`); a body
//! missing a required key or with a key of the wrong shape is `M_BAD_JSON`;
//! a rule that does not exist is 404 `M_NOT_FOUND`.

use super::{Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Query;
use crate::extract::{Auth, Json as Body};
use crate::push::{ruleset, ruleset_json, ruleset_value, save};
use crate::Homeserver;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use conifer_rooms::ruma::push::{
    Action, AnyPushRuleRef, ConditionalPushRule, NewConditionalPushRule, NewPatternedPushRule,
    NewPushRule, NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
};
use conifer_rooms::ruma::{OwnedRoomId, OwnedUserId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/pushrules/", get(all))
        .route("/pushrules", get(all))
        .route("/pushrules/global/", get(global))
        .route("/pushrules/global", get(global))
        .route("/pushrules/global/:kind/", get(of_kind))
        .route(
            "/pushrules/global/:kind/:id",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route(
            "/pushrules/global/:kind/:id/enabled",
            get(get_enabled).put(put_enabled),
        )
        .route(
            "/pushrules/global/:kind/:id/actions",
            get(get_actions).put(put_actions),
        )
}

fn user(auth: &Auth) -> ApiResult<OwnedUserId> {
    OwnedUserId::try_from(auth.user_id.as_str())
        .map_err(|_| MatrixError::unknown_internal("bad user ID"))
}

/// The five kinds the spec names, in path form.
fn kind(k: &str) -> ApiResult<RuleKind> {
    match k {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(MatrixError::invalid_param(format!(
            "unknown push rule kind {k:?}: expected override, underride, sender, room or content"
        ))),
    }
}

fn no_such_rule() -> MatrixError {
    MatrixError::not_found("no such push rule")
}

/// One rule as the API shows it.
fn rule_json(rule: AnyPushRuleRef<'_>) -> Value {
    let v = match rule {
        AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => serde_json::to_value(r),
        AnyPushRuleRef::Content(r) => serde_json::to_value(r),
        AnyPushRuleRef::Room(r) => serde_json::to_value(r),
        AnyPushRuleRef::Sender(r) => serde_json::to_value(r),
        _ => Ok(json!({})),
    };
    v.unwrap_or_else(|_| json!({}))
}

fn lookup<'r>(rules: &'r Ruleset, k: &str, id: &str) -> ApiResult<AnyPushRuleRef<'r>> {
    rules.get(kind(k)?, id).ok_or_else(no_such_rule)
}

async fn all(hs: Hs, auth: Auth) -> Resp {
    Ok(Json(ruleset_json(&hs, &user(&auth)?)))
}

async fn global(hs: Hs, auth: Auth) -> Resp {
    Ok(Json(ruleset_value(&ruleset(&hs, &user(&auth)?))))
}

async fn of_kind(hs: Hs, auth: Auth, Path(k): Path<String>) -> Resp {
    kind(&k)?;
    let all = ruleset_value(&ruleset(&hs, &user(&auth)?));
    Ok(Json(all.get(&k).cloned().unwrap_or_else(|| json!([]))))
}

async fn get_rule(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    let rules = ruleset(&hs, &user(&auth)?);
    Ok(Json(rule_json(lookup(&rules, &k, &id)?)))
}

#[derive(Deserialize)]
struct PlaceQuery {
    before: Option<String>,
    after: Option<String>,
}

/// A body key of type `T`: `M_BAD_JSON` if it is missing or has another shape.
fn body_key<T: DeserializeOwned>(body: &Value, key: &str) -> ApiResult<T> {
    let v = body
        .get(key)
        .ok_or_else(|| MatrixError::bad_json(format!("missing required key {key}")))?;
    serde_json::from_value(v.clone()).map_err(|e| MatrixError::bad_json(format!("{key}: {e}")))
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

/// The rule a PUT describes, checked against its kind.
fn new_rule(rk: &RuleKind, id: &str, body: &Value) -> ApiResult<NewPushRule> {
    let actions: Vec<Action> = body_key(body, "actions")?;
    let conditions = || -> ApiResult<Vec<PushCondition>> {
        match body.get("conditions") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => body_key(body, "conditions"),
        }
    };
    Ok(match rk {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            id.to_owned(),
            conditions()?,
            actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            id.to_owned(),
            conditions()?,
            actions,
        )),
        RuleKind::Content => NewPushRule::Content(NewPatternedPushRule::new(
            id.to_owned(),
            body_key(body, "pattern")?,
            actions,
        )),
        RuleKind::Room => {
            let room = OwnedRoomId::try_from(id).map_err(|_| {
                MatrixError::invalid_param("the rule ID of a room rule must be a room ID")
            })?;
            NewPushRule::Room(NewSimplePushRule::new(room, actions))
        }
        RuleKind::Sender => {
            let sender = OwnedUserId::try_from(id).map_err(|_| {
                MatrixError::invalid_param("the rule ID of a sender rule must be a user ID")
            })?;
            NewPushRule::Sender(NewSimplePushRule::new(sender, actions))
        }
        _ => return Err(MatrixError::invalid_param("unknown push rule kind")),
    })
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

async fn put_rule(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Query(q): Query<PlaceQuery>,
    Body(body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    check_new_rule_id(&id)?;
    let rule = new_rule(&rk, &id, &body)?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    insert(&mut rules, rule, q.after.as_deref(), q.before.as_deref())?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn delete_rule(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    let rk = kind(&k)?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules.remove(rk, &id).map_err(|e| match e {
        RemovePushRuleError::ServerDefault => {
            MatrixError::invalid_param("server-default rules cannot be deleted")
        }
        _ => no_such_rule(),
    })?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn get_enabled(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    let rules = ruleset(&hs, &user(&auth)?);
    Ok(Json(
        json!({ "enabled": lookup(&rules, &k, &id)?.enabled() }),
    ))
}

async fn put_enabled(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    let enabled: bool = body_key(&body, "enabled")?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules
        .set_enabled(rk, &id, enabled)
        .map_err(|_| no_such_rule())?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn get_actions(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    let rules = ruleset(&hs, &user(&auth)?);
    Ok(Json(
        json!({ "actions": lookup(&rules, &k, &id)?.actions() }),
    ))
}

async fn put_actions(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    let actions: Vec<Action> = body_key(&body, "actions")?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules
        .set_actions(rk, &id, actions)
        .map_err(|_| no_such_rule())?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}
