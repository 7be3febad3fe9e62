//! Push rules on Ruma's request and response types, with Ruma's push types
//! doing the bookkeeping; the service side is `crate::push`.
//!
//! Error codes: an unknown `kind`, a rule ID the spec forbids and a bad
//! `before`/`after` are wrong parameters (400 `M_INVALID_PARAM`); a body
//! missing a required key or with a key of the wrong shape is `M_BAD_JSON`;
//! a rule that does not exist is 404 `M_NOT_FOUND`.
//!
//! The whole rule set and the rules of one kind stay plain JSON: Ruma's
//! `Ruleset` leaves a kind without rules out, where clients and the tests
//! expect every kind as a list (and the list of one kind has no Ruma type).

use super::{Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Auth;
use crate::push::{ruleset, ruleset_json, ruleset_value};
use crate::ruma_api::{BodyDefaults, Ruma, RumaFilled, RumaResult};
use crate::Homeserver;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use conifer_rooms::ruma::api::client::push::{
    delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all,
    get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled, PushRule,
};
use conifer_rooms::ruma::push::{AnyPushRuleRef, RuleKind, Ruleset};
use conifer_rooms::ruma::OwnedUserId;
use serde_json::json;
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

/// The five kinds the spec names (Ruma's `RuleKind` also takes others).
fn check_kind(k: &RuleKind) -> ApiResult<RuleKind> {
    match k {
        RuleKind::Override
        | RuleKind::Underride
        | RuleKind::Sender
        | RuleKind::Room
        | RuleKind::Content => Ok(k.clone()),
        _ => Err(MatrixError::invalid_param(format!(
            "unknown push rule kind {:?}: expected override, underride, sender, room or content",
            k.as_str()
        ))),
    }
}

fn lookup<'r>(rules: &'r Ruleset, k: &RuleKind, id: &str) -> ApiResult<AnyPushRuleRef<'r>> {
    rules
        .get(check_kind(k)?, id)
        .ok_or_else(|| MatrixError::not_found("no such push rule"))
}

async fn all(hs: Hs, auth: Auth, Ruma(_): Ruma<get_pushrules_all::v3::Request>) -> Resp {
    Ok(Json(ruleset_json(&hs, &user(&auth)?)))
}

async fn global(
    hs: Hs,
    auth: Auth,
    Ruma(_): Ruma<get_pushrules_global_scope::v3::Request>,
) -> Resp {
    Ok(Json(ruleset_value(&ruleset(&hs, &user(&auth)?))))
}

async fn of_kind(hs: Hs, auth: Auth, Path(k): Path<String>) -> Resp {
    check_kind(&RuleKind::from(k.as_str()))?;
    let all = ruleset_value(&ruleset(&hs, &user(&auth)?));
    Ok(Json(all.get(&k).cloned().unwrap_or_else(|| json!([]))))
}

async fn get_rule(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_pushrule::v3::Request>,
) -> RumaResult<get_pushrule::v3::Response> {
    let rules = ruleset(&hs, &user(&auth)?);
    let rule = PushRule::from(lookup(&rules, &req.kind, &req.rule_id)?);
    Ok(get_pushrule::v3::Response::new(rule).into())
}

/// "conditions: [...] A rule with no conditions always matches." The key is
/// optional in the spec (and `null` is taken as none); Ruma's type requires
/// it for override and underride rules, and ignores it for the others.
impl BodyDefaults for set_pushrule::v3::Request {
    fn fill(body: &mut serde_json::Map<String, serde_json::Value>) {
        let conditions = body.entry("conditions").or_insert(serde_json::Value::Null);
        if conditions.is_null() {
            *conditions = json!([]);
        }
    }
}

async fn put_rule(
    hs: Hs,
    auth: Auth,
    RumaFilled(req): RumaFilled<set_pushrule::v3::Request>,
) -> RumaResult<set_pushrule::v3::Response> {
    hs.set_push_rule(
        &user(&auth)?,
        req.rule,
        req.after.as_deref(),
        req.before.as_deref(),
    )?;
    Ok(set_pushrule::v3::Response::new().into())
}

async fn delete_rule(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<delete_pushrule::v3::Request>,
) -> RumaResult<delete_pushrule::v3::Response> {
    hs.delete_push_rule(&user(&auth)?, check_kind(&req.kind)?, &req.rule_id)?;
    Ok(delete_pushrule::v3::Response::new().into())
}

async fn get_enabled(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_pushrule_enabled::v3::Request>,
) -> RumaResult<get_pushrule_enabled::v3::Response> {
    let rules = ruleset(&hs, &user(&auth)?);
    let enabled = lookup(&rules, &req.kind, &req.rule_id)?.enabled();
    Ok(get_pushrule_enabled::v3::Response::new(enabled).into())
}

async fn put_enabled(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_pushrule_enabled::v3::Request>,
) -> RumaResult<set_pushrule_enabled::v3::Response> {
    hs.set_push_rule_enabled(
        &user(&auth)?,
        check_kind(&req.kind)?,
        &req.rule_id,
        req.enabled,
    )?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

async fn get_actions(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_pushrule_actions::v3::Request>,
) -> RumaResult<get_pushrule_actions::v3::Response> {
    let rules = ruleset(&hs, &user(&auth)?);
    let actions = lookup(&rules, &req.kind, &req.rule_id)?.actions().to_vec();
    Ok(get_pushrule_actions::v3::Response::new(actions).into())
}

async fn put_actions(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_pushrule_actions::v3::Request>,
) -> RumaResult<set_pushrule_actions::v3::Response> {
    hs.set_push_rule_actions(
        &user(&auth)?,
        check_kind(&req.kind)?,
        &req.rule_id,
        req.actions,
    )?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}
