//! Server-side search over the messages of the user's joined rooms.

use super::{Hs, Resp};
use crate::error::MatrixError;
use crate::extract::{Auth, Json as Body};
use crate::format::client_event;
use crate::visibility::UserView;
use crate::{now_ms, Homeserver};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/search", post(search))
}

async fn search(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let criteria = body
        .pointer("/search_categories/room_events")
        .ok_or_else(|| MatrixError::missing_param("search_categories.room_events"))?;
    let term = criteria
        .get("search_term")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("search_term"))?;
    let limit = criteria
        .pointer("/filter/limit")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 100) as usize;
    let wanted: Option<Vec<String>> = criteria
        .pointer("/filter/rooms")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        });
    let rooms: Vec<String> = hs
        .store
        .user_memberships(&auth.user_id)?
        .into_iter()
        .filter(|m| {
            m.membership == "join" && wanted.as_ref().is_none_or(|w| w.contains(&m.room_id))
        })
        .map(|m| m.room_id)
        .collect();
    let mut found = Vec::new();
    let mut views = std::collections::HashMap::new();
    for e in hs.store.search_messages(&rooms, term, limit)? {
        let view = match views.entry(e.room_id.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(UserView::new(&hs, &e.room_id, &auth.user_id)?)
            }
        };
        // An erased sender's words are not found by those who may only
        // see them redacted.
        if view.may_see(&e)? {
            let shown = view.present(e)?;
            if shown.value()["content"]["body"].is_string() {
                found.push(shown);
            }
        }
    }
    let viewer = Some((auth.user_id.as_str(), auth.device_id.as_str()));
    let results: Vec<Value> = found
        .iter()
        .map(|e| json!({ "rank": 1.0, "result": client_event(&e.json, &e.event_id, &e.room_id, viewer, now_ms()) }))
        .collect();
    Ok(Json(
        json!({ "search_categories": { "room_events": { "results": results, "count": results.len(), "highlights": [term] } } }),
    ))
}
