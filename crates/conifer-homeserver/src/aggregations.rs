//! Aggregations bundled with events (`unsigned["m.relations"]`).
//!
//! Client-Server API, "Aggregations of child events": "some child events
//! can be 'aggregated' and 'bundled' with the parent event when it is
//! served to clients". Conifer bundles the three kinds the spec defines:
//! - `m.replace` ("Server-side aggregation of `m.replace` relationships"):
//!   the most recent valid replacement, whole. A replacement is valid when
//!   it has the original's sender and type, and the original is not a
//!   state event nor itself a replacement; "most recent" is by
//!   `origin_server_ts`, ties broken by the lexicographically greatest
//!   event ID.
//! - `m.thread` (Threading, "Server-side aggregation of `m.thread`
//!   relationships"): `latest_event`, `count` and
//!   `current_user_participated`.
//! - `m.reference`: the list of referring event IDs.
//!
//! Children the viewer may not see are not counted.

use crate::error::ApiResult;
use crate::format::client_event;
use crate::visibility::UserView;
use crate::{now_ms, Homeserver};
use conifer_store::{RelationFilter, StoredEvent};
use serde_json::{json, Value};

/// Children read for one parent at most.
const MAX_CHILDREN: usize = 500;

impl Homeserver {
    /// Adds `unsigned["m.relations"]` to `formatted` (the client form of
    /// `event`) if it has children the viewer may see.
    pub(crate) fn bundle_aggregations(
        &self,
        view: &mut UserView<'_>,
        viewer: (&str, &str),
        event: &StoredEvent,
        formatted: &mut Value,
    ) -> ApiResult<()> {
        let parent = event.value();
        if parent["content"]["m.relates_to"]["rel_type"] == "m.replace" {
            return Ok(());
        }
        let filter = RelationFilter {
            rel_type: None,
            event_type: None,
            backwards: true,
        };
        let children = self.store.relations(
            &event.room_id,
            &event.event_id,
            filter,
            u64::MAX >> 1,
            MAX_CHILDREN,
        )?;
        if children.is_empty() {
            return Ok(());
        }
        let children = view.filter(children)?;
        let mut edit: Option<(u64, String, StoredEvent)> = None;
        let mut thread: Vec<StoredEvent> = Vec::new();
        let mut references: Vec<Value> = Vec::new();
        let is_state = parent.get("state_key").is_some();
        for child in children {
            let v = child.value();
            match v["content"]["m.relates_to"]["rel_type"].as_str() {
                Some("m.replace")
                    if !is_state
                        && v["sender"] == parent["sender"]
                        && v["type"] == parent["type"]
                        && v.get("state_key").is_none() =>
                {
                    let ts = v["origin_server_ts"].as_u64().unwrap_or(0);
                    let newer = edit
                        .as_ref()
                        .is_none_or(|(t, id, _)| (ts, child.event_id.as_str()) > (*t, id.as_str()));
                    if newer {
                        edit = Some((ts, child.event_id.clone(), child));
                    }
                }
                Some("m.thread") => thread.push(child),
                Some("m.reference") => references.push(json!({ "event_id": child.event_id })),
                _ => {}
            }
        }
        let mut relations = serde_json::Map::new();
        let format = |e: &StoredEvent| {
            client_event(&e.json, &e.event_id, &e.room_id, Some(viewer), now_ms())
        };
        if let Some((_, _, e)) = edit {
            relations.insert("m.replace".into(), format(&e));
        }
        if let Some(latest) = thread.first() {
            let participated = parent["sender"] == viewer.0
                || thread.iter().any(|e| e.value()["sender"] == viewer.0);
            relations.insert(
                "m.thread".into(),
                json!({
                    "latest_event": format(latest),
                    "count": thread.len(),
                    "current_user_participated": participated,
                }),
            );
        }
        if !references.is_empty() {
            references.reverse();
            relations.insert("m.reference".into(), json!({ "chunk": references }));
        }
        if relations.is_empty() {
            return Ok(());
        }
        if !formatted["unsigned"].is_object() {
            formatted["unsigned"] = json!({});
        }
        formatted["unsigned"]["m.relations"] = Value::Object(relations);
        Ok(())
    }
}
