//! Reading a room's graph for another server: single events, the state at
//! an event (full or as IDs), auth chains, backfill and missing events. Only
//! servers with a joined member in the room may read it, and events the
//! history visibility hides from the server go out redacted
//! ([`crate::visibility::ServerView`]).

use super::join::federation_json;
use super::FederationAuth;
use crate::api::Hs;
use crate::error::MatrixError;
use crate::{now_ms, Homeserver};
use axum::extract::{Path, RawQuery};
use axum::Json;
use conifer_rooms::ruma::OwnedEventId;
use conifer_rooms::{auth_chain, Pdu};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

/// Most events one backfill or missing-events answer carries.
const MAX_EVENTS: usize = 100;

/// Whether `server` has a joined member in the room.
fn has_member(hs: &Homeserver, room: &str, server: &str) -> Result<bool, MatrixError> {
    Ok(hs
        .store
        .room_members(room, Some("join"))?
        .iter()
        .any(|(u, _)| u.split_once(':').is_some_and(|(_, s)| s == server)))
}

/// The server's ACL first ("The following endpoint prefixes MUST be
/// protected"), then its membership.
fn require_in_room(hs: &Homeserver, room: &str, server: &str) -> Result<(), MatrixError> {
    hs.check_server_acl(room, server)?;
    if has_member(hs, room, server)? {
        Ok(())
    } else {
        Err(MatrixError::forbidden(
            "the requesting server has no member in this room",
        ))
    }
}

/// An event of the room. An event of another room is answered exactly as
/// an unknown one, so that nothing tells the asker it exists.
fn event_in_room(hs: &Homeserver, room: &str, event: &str) -> Result<Arc<Pdu>, MatrixError> {
    hs.cached_event(event)
        .filter(|pdu| pdu.room_id.as_ref().map(|r| r.as_str()) == Some(room))
        .ok_or_else(|| MatrixError::not_found("unknown event"))
}

fn query_param(query: &Option<String>, key: &str) -> Vec<String> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
        .collect()
}

pub async fn event(
    hs: Hs,
    Path(event): Path<String>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let pdu = hs
        .cached_event(&event)
        .ok_or_else(|| MatrixError::not_found("unknown event"))?;
    let room = pdu
        .room_id
        .as_ref()
        .map(|r| r.to_string())
        .ok_or_else(|| MatrixError::not_found("unknown event"))?;
    // As Synapse: a server with nobody in the event's room is refused (403,
    // and nothing of the event).
    require_in_room(&hs, &room, &auth.origin)?;
    let pdus = hs.pdus_for_server(&auth.origin, &[pdu])?;
    Ok(Json(
        json!({ "origin": hs.server_name, "origin_server_ts": now_ms(), "pdus": pdus }),
    ))
}

/// A state and its auth chain.
type StateAndChain = (Vec<Arc<Pdu>>, Vec<Arc<Pdu>>);

/// The state before `event` and that state's auth chain.
fn state_at(hs: &Homeserver, room: &str, event: &str) -> Result<StateAndChain, MatrixError> {
    event_in_room(hs, room, event)?;
    let state: Vec<Arc<Pdu>> = hs
        .store
        .state_before_event(event)?
        .values()
        .filter_map(|id| hs.cached_event(id))
        .collect();
    let ids: Vec<OwnedEventId> = state.iter().map(|p| p.event_id.clone()).collect();
    let chain = auth_chain(ids.iter(), &|id| hs.cached_event(id.as_str()))
        .into_iter()
        .filter_map(|id| hs.cached_event(id.as_str()))
        .collect();
    Ok((state, chain))
}

/// The state before the `event_id` of the query, and its auth chain, for
/// a server in the room (`state` and `state_ids`).
fn requested_state(
    hs: &Homeserver,
    room: &str,
    query: &Option<String>,
    auth: &FederationAuth,
) -> Result<StateAndChain, MatrixError> {
    require_in_room(hs, room, &auth.origin)?;
    let event = query_param(query, "event_id")
        .pop()
        .ok_or_else(|| MatrixError::missing_param("event_id"))?;
    state_at(hs, room, &event)
}

pub async fn state_ids(
    hs: Hs,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let (state, chain) = requested_state(&hs, &room, &q, &auth)?;
    Ok(Json(json!({
        "pdu_ids": state.iter().map(|p| p.event_id.to_string()).collect::<Vec<_>>(),
        "auth_chain_ids": chain.iter().map(|p| p.event_id.to_string()).collect::<Vec<_>>(),
    })))
}

pub async fn state(
    hs: Hs,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let (state, chain) = requested_state(&hs, &room, &q, &auth)?;
    Ok(Json(json!({
        "pdus": state.iter().map(|p| federation_json(p)).collect::<Vec<_>>(),
        "auth_chain": chain.iter().map(|p| federation_json(p)).collect::<Vec<_>>(),
    })))
}

pub async fn event_auth(
    hs: Hs,
    Path((room, event)): Path<(String, String)>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    require_in_room(&hs, &room, &auth.origin)?;
    let pdu = event_in_room(&hs, &room, &event)?;
    let chain = auth_chain([&pdu.event_id], &|id| hs.cached_event(id.as_str()));
    Ok(Json(
        json!({ "auth_chain": chain.iter().filter_map(|id| hs.cached_event(id.as_str())).map(|p| federation_json(&p)).collect::<Vec<_>>() }),
    ))
}

/// Walks back along `prev_events` from `from`, breadth first, not past
/// `stop`, newest first; at most `limit` events, all of `room` (a parent
/// in another room is neither returned nor followed).
fn walk_back(
    hs: &Homeserver,
    room: &str,
    from: Vec<OwnedEventId>,
    stop: &HashSet<String>,
    limit: usize,
) -> Vec<Arc<Pdu>> {
    let mut out = Vec::new();
    let mut seen: BTreeSet<OwnedEventId> = from.iter().cloned().collect();
    let mut queue: VecDeque<OwnedEventId> = from.into();
    while let Some(id) = queue.pop_front() {
        if out.len() >= limit {
            break;
        }
        let Ok(pdu) = event_in_room(hs, room, id.as_str()) else {
            continue;
        };
        for prev in &pdu.prev_events {
            if !stop.contains(prev.as_str()) && seen.insert(prev.clone()) {
                queue.push_back(prev.clone());
            }
        }
        out.push(pdu);
    }
    out
}

pub async fn backfill(
    hs: Hs,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    require_in_room(&hs, &room, &auth.origin)?;
    let limit: usize = query_param(&q, "limit")
        .pop()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| MatrixError::missing_param("limit"))?;
    let mut from = Vec::new();
    for v in query_param(&q, "v") {
        from.push(event_in_room(&hs, &room, &v)?.event_id.clone());
    }
    if from.is_empty() {
        return Err(MatrixError::missing_param("v"));
    }
    let pdus = walk_back(&hs, &room, from, &HashSet::new(), limit.min(MAX_EVENTS));
    let pdus = hs.pdus_for_server(&auth.origin, &pdus)?;
    Ok(Json(
        json!({ "origin": hs.server_name, "origin_server_ts": now_ms(), "pdus": pdus }),
    ))
}

pub async fn get_missing_events(
    hs: Hs,
    Path(room): Path<String>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    require_in_room(&hs, &room, &auth.origin)?;
    let body = auth.body.clone().unwrap_or(Value::Null);
    let strings = |k: &str| -> Vec<String> {
        body[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let earliest: HashSet<String> = strings("earliest_events").into_iter().collect();
    let limit = body["limit"].as_u64().unwrap_or(10).min(MAX_EVENTS as u64) as usize;
    let min_depth = body["min_depth"].as_i64().unwrap_or(0);
    let mut from = Vec::new();
    for id in strings("latest_events") {
        // The latest events themselves are what the caller has; start from their parents.
        if let Ok(pdu) = event_in_room(&hs, &room, &id) {
            from.extend(
                pdu.prev_events
                    .iter()
                    .filter(|p| !earliest.contains(p.as_str()))
                    .cloned(),
            );
        }
    }
    let mut events: Vec<Arc<Pdu>> = walk_back(&hs, &room, from, &earliest, limit)
        .into_iter()
        .filter(|p| p.depth >= min_depth)
        .collect();
    events.sort_by_key(|p| p.depth);
    let events = hs.pdus_for_server(&auth.origin, &events)?;
    Ok(Json(json!({ "events": events })))
}
