//! `GET /sync`.

use super::{Hs, Resp};
use crate::error::MatrixError;
use crate::extract::Auth;
use crate::extract::Query;
use crate::sync::{sync, SyncFilter, SyncFilterParam, SyncRequest};
use crate::{now_ms, Homeserver};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/sync", get(sync_handler))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    full_state: bool,
    timeout: Option<u64>,
    set_presence: Option<String>,
}

async fn sync_handler(hs: Hs, auth: Auth, Query(q): Query<SyncQuery>) -> Resp {
    let raw_filter = match q.filter.as_deref() {
        None => None,
        Some(f) => match SyncFilterParam::parse(f)? {
            SyncFilterParam::Inline(_, v) => {
                validate_filter(&v)?;
                Some(v)
            }
            SyncFilterParam::Id(id) => Some(
                hs.store
                    .filter(&auth.user_id, id)?
                    .ok_or_else(|| MatrixError::not_found("no such filter"))?,
            ),
        },
    };
    let filter = raw_filter
        .as_ref()
        .map(SyncFilter::from_json)
        .unwrap_or_default();
    match q.set_presence.as_deref() {
        Some("offline") => {}
        Some(p @ ("online" | "unavailable")) => set_presence_if_changed(&hs, &auth.user_id, p)?,
        None => set_presence_if_changed(&hs, &auth.user_id, "online")?,
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "set_presence must be online, offline or unavailable",
            ))
        }
    }
    let timeout = Duration::from_millis(
        q.timeout
            .unwrap_or(0)
            .min(hs.config.client.max_sync_timeout_ms),
    );
    let req = SyncRequest {
        since: q.since,
        full_state: q.full_state,
        timeout,
        filter,
    };
    let mut response = sync(&hs, &auth, req).await?;
    if let Some(f) = &raw_filter {
        filter_account_data(&mut response, f);
        if f.get("event_format").and_then(Value::as_str) == Some("federation") {
            federation_format(&hs, &mut response)?;
        }
    }
    Ok(Json(response))
}

/// A filter's `types` / `not_types` entry matches an event type; "A '*' can
/// be used as a wildcard to match any sequence of characters."
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Keeps the events of `events` that `filter` (an `EventFilter`) lets
/// through by type: "types: A list of event types to include. [...]
/// not_types: A list of event types to exclude. If this list is absent then
/// no event types are excluded. A matching type will be excluded even if it
/// is listed in the 'types' filter."
fn filter_by_type(events: Option<&mut Value>, filter: Option<&Value>) {
    let (Some(Value::Array(events)), Some(filter)) = (events, filter) else {
        return;
    };
    let list = |k: &str| -> Option<Vec<String>> {
        filter.get(k)?.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    let (types, not_types) = (list("types"), list("not_types").unwrap_or_default());
    events.retain(|e| {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
        types
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| type_matches(p, kind)))
            && !not_types.iter().any(|p| type_matches(p, kind))
    });
}

/// Applies the filter's `account_data` (global) and `room.account_data`
/// (per room) type lists to a sync response.
fn filter_account_data(response: &mut Value, filter: &Value) {
    filter_by_type(
        response.pointer_mut("/account_data/events"),
        filter.get("account_data"),
    );
    let room_filter = filter.pointer("/room/account_data");
    for section in ["join", "leave"] {
        if let Some(Value::Object(rooms)) = response.pointer_mut(&format!("/rooms/{section}")) {
            for room in rooms.values_mut() {
                filter_by_type(room.pointer_mut("/account_data/events"), room_filter);
            }
        }
    }
}

/// Presence only moves the stream when it changes, so polling syncs do not
/// wake each other forever.
pub(super) fn set_presence_if_changed(
    hs: &Homeserver,
    user: &str,
    presence: &str,
) -> crate::ApiResult<()> {
    let current = hs.store.presence(user)?;
    if current.as_ref().is_none_or(|p| p.presence != presence) {
        let status_msg = current.and_then(|p| p.status_msg);
        hs.store
            .set_presence(user, presence, status_msg.as_deref(), now_ms())?;
        hs.federate_presence(user, presence, status_msg.as_deref());
    }
    Ok(())
}

/// Checks a filter definition against the spec's `Filter` schema: the
/// fields it names must have the types the spec gives them (lists of
/// strings, booleans, non-negative integer limits, `event_format` one of
/// `client` and `federation`); fields it does not name are ignored. A wrong
/// shape is `400 M_BAD_JSON`.
pub(crate) fn validate_filter(f: &Value) -> crate::ApiResult<()> {
    let f = object(f, "filter")?;
    strings(f, "event_fields", "filter")?;
    match f.get("event_format") {
        None => {}
        Some(Value::String(s)) if s == "client" || s == "federation" => {}
        Some(_) => {
            return Err(MatrixError::bad_json(
                "filter.event_format must be client or federation",
            ))
        }
    }
    for key in ["presence", "account_data"] {
        if let Some(v) = f.get(key) {
            event_filter(v, key, false)?;
        }
    }
    let Some(room) = f.get("room") else {
        return Ok(());
    };
    let room = object(room, "room")?;
    strings(room, "rooms", "room")?;
    strings(room, "not_rooms", "room")?;
    boolean(room, "include_leave", "room")?;
    for key in ["ephemeral", "state", "timeline", "account_data"] {
        if let Some(v) = room.get(key) {
            event_filter(v, &format!("room.{key}"), true)?;
        }
    }
    Ok(())
}

fn object<'a>(v: &'a Value, at: &str) -> crate::ApiResult<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| MatrixError::bad_json(format!("{at} must be an object")))
}

fn strings(o: &Map<String, Value>, key: &str, at: &str) -> crate::ApiResult<()> {
    match o.get(key) {
        None => Ok(()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(MatrixError::bad_json(format!(
            "{at}.{key} must be a list of strings"
        ))),
    }
}

fn boolean(o: &Map<String, Value>, key: &str, at: &str) -> crate::ApiResult<()> {
    match o.get(key) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(MatrixError::bad_json(format!(
            "{at}.{key} must be a boolean"
        ))),
    }
}

/// An `EventFilter`, or with `room` a `RoomEventFilter` / `StateFilter`.
fn event_filter(v: &Value, at: &str, room: bool) -> crate::ApiResult<()> {
    let o = object(v, at)?;
    if let Some(l) = o.get("limit") {
        if l.as_u64().is_none() {
            return Err(MatrixError::bad_json(format!(
                "{at}.limit must be a non-negative integer"
            )));
        }
    }
    for key in ["types", "not_types", "senders", "not_senders"] {
        strings(o, key, at)?;
    }
    if room {
        for key in ["rooms", "not_rooms"] {
            strings(o, key, at)?;
        }
        for key in [
            "lazy_load_members",
            "include_redundant_members",
            "contains_url",
            "unread_thread_notifications",
        ] {
            boolean(o, key, at)?;
        }
    }
    Ok(())
}

/// `event_format`: "`federation` will return the raw event as received over
/// federation." The rooms' timeline and state events become their PDUs (with
/// `event_id` and the `unsigned` data the client format would give).
fn federation_format(hs: &Homeserver, response: &mut Value) -> crate::ApiResult<()> {
    for section in ["join", "leave"] {
        let Some(Value::Object(rooms)) = response.pointer_mut(&format!("/rooms/{section}")) else {
            continue;
        };
        for room in rooms.values_mut() {
            for list in ["/timeline/events", "/state/events"] {
                let Some(Value::Array(events)) = room.pointer_mut(list) else {
                    continue;
                };
                for event in events.iter_mut() {
                    let Some(id) = event.get("event_id").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some(stored) = hs.store.event(id)? else {
                        continue;
                    };
                    let Ok(Value::Object(mut pdu)) = serde_json::from_str::<Value>(&stored.json)
                    else {
                        continue;
                    };
                    pdu.insert("event_id".into(), Value::String(id.to_owned()));
                    match event.get("unsigned") {
                        Some(u) => pdu.insert("unsigned".into(), u.clone()),
                        None => pdu.remove("unsigned"),
                    };
                    *event = Value::Object(pdu);
                }
            }
        }
    }
    Ok(())
}
