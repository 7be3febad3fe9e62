//! Push rules: reading the rule set and editing user rules.

use super::{Hs, Resp};
use crate::error::MatrixError;
use crate::extract::{Auth, Json as Body};
use crate::push::{ruleset, save};
use crate::Homeserver;
use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use conifer_rooms::ruma::push::{Action, NewPushRule, RuleKind, Ruleset};
use conifer_rooms::ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/pushrules/", get(all))
        .route("/pushrules", get(all))
        .route("/pushrules/global/", get(global))
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

fn user(auth: &Auth) -> crate::ApiResult<OwnedUserId> {
    OwnedUserId::try_from(auth.user_id.as_str())
        .map_err(|_| MatrixError::unknown_internal("bad user ID"))
}

fn kind(k: &str) -> crate::ApiResult<RuleKind> {
    match k {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(MatrixError::invalid_param("unknown push rule kind")),
    }
}

async fn all(hs: Hs, auth: Auth) -> Resp {
    Ok(Json(json!({ "global": *ruleset(&hs, &user(&auth)?) })))
}

async fn global(hs: Hs, auth: Auth) -> Resp {
    Ok(Json(
        serde_json::to_value(&*ruleset(&hs, &user(&auth)?)).unwrap_or(json!({})),
    ))
}

fn find(rules: &Ruleset, k: &str, id: &str) -> crate::ApiResult<Value> {
    let json = serde_json::to_value(rules).unwrap_or(json!({}));
    json.get(k)
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|r| r["rule_id"] == id).cloned())
        .ok_or_else(|| MatrixError::not_found("no such push rule"))
}

async fn get_rule(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    kind(&k)?;
    Ok(Json(find(&ruleset(&hs, &user(&auth)?), &k, &id)?))
}

#[derive(Deserialize)]
struct PlaceQuery {
    before: Option<String>,
    after: Option<String>,
}

async fn put_rule(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Query(q): Query<PlaceQuery>,
    Body(mut body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    if id.starts_with('.') {
        return Err(MatrixError::invalid_param(
            "rule IDs starting with a dot are reserved",
        ));
    }
    body["rule_id"] = json!(id);
    if rk == RuleKind::Content && body.get("pattern").is_none() {
        return Err(MatrixError::missing_param("pattern"));
    }
    let new_rule: NewPushRule = match rk {
        RuleKind::Override => NewPushRule::Override(
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?,
        ),
        RuleKind::Underride => NewPushRule::Underride(
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?,
        ),
        RuleKind::Sender => NewPushRule::Sender(
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?,
        ),
        RuleKind::Room => NewPushRule::Room(
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?,
        ),
        RuleKind::Content => NewPushRule::Content(
            serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?,
        ),
        _ => return Err(MatrixError::invalid_param("unknown push rule kind")),
    };
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules
        .insert(new_rule, q.after.as_deref(), q.before.as_deref())
        .map_err(|e| {
            MatrixError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                e.to_string(),
            )
        })?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn delete_rule(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    let rk = kind(&k)?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules.remove(rk, &id).map_err(|e| match e {
        conifer_rooms::ruma::push::RemovePushRuleError::NotFound => {
            MatrixError::not_found("no such push rule")
        }
        e => MatrixError::forbidden(e.to_string()),
    })?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn get_enabled(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    kind(&k)?;
    let rule = find(&ruleset(&hs, &user(&auth)?), &k, &id)?;
    Ok(Json(json!({ "enabled": rule["enabled"] })))
}

async fn put_enabled(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    let enabled = body
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| MatrixError::missing_param("enabled"))?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules
        .set_enabled(rk, &id, enabled)
        .map_err(|_| MatrixError::not_found("no such push rule"))?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}

async fn get_actions(hs: Hs, auth: Auth, Path((k, id)): Path<(String, String)>) -> Resp {
    kind(&k)?;
    let rule = find(&ruleset(&hs, &user(&auth)?), &k, &id)?;
    Ok(Json(json!({ "actions": rule["actions"] })))
}

async fn put_actions(
    hs: Hs,
    auth: Auth,
    Path((k, id)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    let rk = kind(&k)?;
    let actions: Vec<Action> = serde_json::from_value(
        body.get("actions")
            .cloned()
            .ok_or_else(|| MatrixError::missing_param("actions"))?,
    )
    .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let uid = user(&auth)?;
    let mut rules = (*ruleset(&hs, &uid)).clone();
    rules
        .set_actions(rk, &id, actions)
        .map_err(|_| MatrixError::not_found("no such push rule"))?;
    save(&hs, &uid, &rules)?;
    Ok(Json(json!({})))
}
