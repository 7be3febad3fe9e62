//! Sending and reading room events: send, state, redact, event, context,
//! members, joined_members and messages.

use super::{room_id, Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Query;
use crate::extract::{Auth, Json as Body};
use crate::format::client_event;
use crate::ratelimit::Action;
use crate::sync::{parse_token, state_before_pos};
use crate::visibility::{current_visibility, HistoryVisibility, UserView};
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::routing::{get, put};
use axum::{Json, Router};
use conifer_rooms::EventTemplate;
use conifer_store::StoredEvent;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/rooms/:room/send/:kind/:txn", put(send))
        .route("/rooms/:room/state", get(all_state))
        .route(
            "/rooms/:room/state/:kind",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/rooms/:room/state/:kind/",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/rooms/:room/state/:kind/*state_key",
            get(get_state).put(put_state),
        )
        .route("/rooms/:room/redact/:event/:txn", put(redact))
        .route("/rooms/:room/event/:event", get(event))
        .route("/rooms/:room/context/:event", get(context))
        .route("/rooms/:room/members", get(members))
        .route("/rooms/:room/joined_members", get(joined_members))
        .route("/rooms/:room/messages", get(messages))
}

pub fn v1_routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/rooms/:room/relations/:event", get(relations_all))
        .route(
            "/rooms/:room/relations/:event/:rel_type",
            get(relations_of_type),
        )
        .route(
            "/rooms/:room/relations/:event/:rel_type/:event_type",
            get(relations_of_type_and_kind),
        )
        .route("/rooms/:room/threads", get(threads))
}

#[derive(Deserialize)]
struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/rooms/{roomId}/threads` (Threading): "the thread roots in a
/// given room", "ordered by the `latest_event` in each event's aggregated
/// children", each with its bundled aggregations; `include=participated`
/// keeps the threads the user "has either sent the thread root or a reply
/// in"; without `from`, "the server starts paginating from the most recent
/// event visible to the user (as per history visibility rules)".
async fn threads(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<ThreadsQuery>,
) -> Resp {
    room_id(&room)?;
    let participant = match q.include.as_deref() {
        None | Some("all") => None,
        Some("participated") => Some(auth.user_id.as_str()),
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "include must be all or participated",
            ))
        }
    };
    if q.limit == Some(0) {
        return Err(MatrixError::invalid_param(
            "limit must be greater than zero",
        ));
    }
    let limit = q.limit.unwrap_or(20).min(100);
    let until = visible_until(&hs, &room, &auth.user_id)?.min(hs.store.stream_position());
    let before = match &q.from {
        Some(t) => parse_token(t)
            .ok_or_else(|| MatrixError::invalid_param("invalid pagination token"))?
            .0
            .min(until),
        None => until,
    };
    let roots = hs.store.thread_roots(&room, before, participant, limit)?;
    let mut view = UserView::new(&hs, &room, &auth.user_id)?;
    let mut events = Vec::with_capacity(roots.len());
    for (root, _) in &roots {
        if let Some(e) = hs.store.event(root)? {
            if e.room_id == room && e.stream_pos <= until {
                events.push(e);
            }
        }
    }
    let visible = view.filter(events)?;
    let mut out = json!({ "chunk": format_all(&hs, &auth, &mut view, &visible)? });
    if roots.len() == limit {
        if let Some((_, latest)) = roots.last() {
            out["next_batch"] = json!(format!("t{}", latest.saturating_sub(1)));
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct RelationsQuery {
    from: Option<String>,
    dir: Option<String>,
    limit: Option<usize>,
}

async fn relations(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    event: &str,
    rel_type: Option<&str>,
    kind: Option<&str>,
    q: &RelationsQuery,
) -> Resp {
    room_id(room)?;
    let until = visible_until(hs, room, &auth.user_id)?.min(hs.store.stream_position());
    let mut view = UserView::new(hs, room, &auth.user_id)?;
    visible_event(hs, room, event, until, &mut view)?;
    let backwards = q.dir.as_deref() != Some("f");
    let from = match &q.from {
        Some(t) => {
            parse_token(t)
                .ok_or_else(|| MatrixError::invalid_param("invalid pagination token"))?
                .0
        }
        None if backwards => until,
        None => 0,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let filter = conifer_store::RelationFilter {
        rel_type,
        event_type: kind,
        backwards,
    };
    let events = hs
        .store
        .relations(room, event, filter, from.min(until), limit)?;
    let visible = view.filter(
        events
            .iter()
            .filter(|e| e.stream_pos <= until)
            .cloned()
            .collect(),
    )?;
    let mut out = json!({ "chunk": format_all(hs, auth, &mut view, &visible)? });
    if events.len() == limit {
        if let Some(last) = events.last() {
            out["next_batch"] = json!(format!(
                "t{}",
                if backwards {
                    last.stream_pos - 1
                } else {
                    last.stream_pos
                }
            ));
        }
    }
    Ok(Json(out))
}

async fn relations_all(
    hs: Hs,
    auth: Auth,
    Path((room, event)): Path<(String, String)>,
    Query(q): Query<RelationsQuery>,
) -> Resp {
    relations(&hs, &auth, &room, &event, None, None, &q).await
}

async fn relations_of_type(
    hs: Hs,
    auth: Auth,
    Path((room, event, rel)): Path<(String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> Resp {
    relations(&hs, &auth, &room, &event, Some(&rel), None, &q).await
}

async fn relations_of_type_and_kind(
    hs: Hs,
    auth: Auth,
    Path((room, event, rel, kind)): Path<(String, String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> Resp {
    relations(&hs, &auth, &room, &event, Some(&rel), Some(&kind), &q).await
}

/// How far into a room's history the user may look: everything while
/// joined, up to the leave for a former member ("After a user has left a
/// room, they may see any events which they were allowed to see before they
/// left the room, but no events received after they left"), everything for
/// anyone in a `world_readable` room. Which of those events the user may see
/// is [`UserView`]'s to say.
fn visible_until(hs: &Homeserver, room: &str, user: &str) -> ApiResult<u64> {
    match hs.store.membership(room, user)? {
        Some(m) if m.membership == "join" => Ok(u64::MAX),
        Some(m) if m.membership == "leave" || m.membership == "ban" => Ok(m.stream_pos),
        _ if hs.store.room(room)?.is_some()
            && current_visibility(hs, room)? == HistoryVisibility::WorldReadable =>
        {
            Ok(u64::MAX)
        }
        _ => Err(MatrixError::forbidden("you are not in this room")),
    }
}

/// The room state the user may see: the current state for a member, the
/// state at the leave for a former member.
fn visible_state(hs: &Homeserver, room: &str, user: &str) -> ApiResult<conifer_store::StateIds> {
    match visible_until(hs, room, user)? {
        u64::MAX => Ok(hs.store.current_state(room)?),
        until => state_before_pos(hs, room, until + 1),
    }
}

fn format(hs: &Homeserver, e: &StoredEvent, auth: &Auth) -> Value {
    let _ = hs;
    client_event(
        &e.json,
        &e.event_id,
        &e.room_id,
        Some((&auth.user_id, &auth.device_id)),
        now_ms(),
    )
}

/// Timeline events as clients see them, with their bundled aggregations
/// (latest edit, thread summary, references); `view` is the one that
/// chose the events, so its lookups serve the children too.
fn format_all(
    hs: &Homeserver,
    auth: &Auth,
    view: &mut UserView<'_>,
    events: &[StoredEvent],
) -> ApiResult<Vec<Value>> {
    let viewer = (auth.user_id.as_str(), auth.device_id.as_str());
    events
        .iter()
        .map(|e| {
            let mut v = format(hs, e, auth);
            hs.bundle_aggregations(view, viewer, e, &mut v)?;
            Ok(v)
        })
        .collect()
}

async fn send(
    hs: Hs,
    auth: Auth,
    Path((room, kind, txn)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> Resp {
    room_id(&room)?;
    if let Some(id) = hs
        .store
        .event_for_txn(&auth.user_id, &auth.device_id, &txn)?
    {
        return Ok(Json(json!({ "event_id": id })));
    }
    hs.limits.check(Action::Message, &auth.user_id)?;
    hs.require_joined(&room, &auth.user_id)?;
    let template = EventTemplate {
        kind,
        state_key: None,
        content,
        redacts: None,
    };
    let pdu = hs
        .send_event(
            &room,
            &auth.user_id,
            template,
            Some((auth.device_id.clone(), txn)),
        )
        .await?;
    Ok(Json(json!({ "event_id": pdu.event_id })))
}

async fn all_state(hs: Hs, auth: Auth, Path(room): Path<String>) -> Resp {
    room_id(&room)?;
    let ids = visible_state(&hs, &room, &auth.user_id)?;
    let mut out = Vec::new();
    for id in ids.values() {
        if let Some(e) = hs.store.event(id)? {
            out.push(format(&hs, &e, &auth));
        }
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
struct StateQuery {
    format: Option<String>,
}

async fn state_event(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    kind: &str,
    key: &str,
    q: &StateQuery,
) -> Resp {
    room_id(room)?;
    let ids = visible_state(hs, room, &auth.user_id)?;
    let id = ids
        .get(&(kind.to_owned(), key.to_owned()))
        .ok_or_else(|| MatrixError::not_found("no such state event"))?;
    let e = hs
        .store
        .event(id)?
        .ok_or_else(|| MatrixError::not_found("no such state event"))?;
    if q.format.as_deref() == Some("event") {
        return Ok(Json(format(hs, &e, auth)));
    }
    Ok(Json(e.value().get("content").cloned().unwrap_or(json!({}))))
}

async fn get_state_empty_key(
    hs: Hs,
    auth: Auth,
    Path((room, kind)): Path<(String, String)>,
    Query(q): Query<StateQuery>,
) -> Resp {
    state_event(&hs, &auth, &room, &kind, "", &q).await
}

async fn get_state(
    hs: Hs,
    auth: Auth,
    Path((room, kind, key)): Path<(String, String, String)>,
    Query(q): Query<StateQuery>,
) -> Resp {
    state_event(&hs, &auth, &room, &kind, &key, &q).await
}

async fn set_state(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    kind: String,
    key: String,
    content: Value,
) -> Resp {
    room_id(room)?;
    hs.limits.check(Action::Message, &auth.user_id)?;
    if kind == "m.room.member" {
        // Membership has its own endpoints, which check their preconditions.
        conifer_rooms::ruma::OwnedUserId::try_from(key.as_str())
            .map_err(|_| MatrixError::bad_json("member state key must be a user ID"))?;
    }
    if kind == "m.room.create" {
        return Err(MatrixError::forbidden(
            "the create event cannot be replaced",
        ));
    }
    if hs.store.room(room)?.is_none() {
        return Err(MatrixError::not_found("unknown room"));
    }
    let current = hs.state_event(room, &kind, &key)?;
    // As Synapse: the same content from the same member again is the
    // event already in the room, not a new one.
    if let Some(prev) = &current {
        if prev.sender.as_str() == auth.user_id
            && prev.content_value() == content
            && hs.membership(room, &auth.user_id)?.as_deref() == Some("join")
        {
            return Ok(Json(json!({ "event_id": prev.event_id })));
        }
    }
    if kind == "m.room.canonical_alias" && key.is_empty() {
        let current = current.map(|p| p.content_value());
        super::directory::check_canonical_alias(hs, room, current.clone(), &content)?;
        hs.check_remote_aliases(room, current.as_ref(), &content)
            .await?;
    }
    let template = EventTemplate {
        kind,
        state_key: Some(key),
        content,
        redacts: None,
    };
    let pdu = hs.send_event(room, &auth.user_id, template, None).await?;
    Ok(Json(json!({ "event_id": pdu.event_id })))
}

async fn put_state_empty_key(
    hs: Hs,
    auth: Auth,
    Path((room, kind)): Path<(String, String)>,
    Body(content): Body<Value>,
) -> Resp {
    set_state(&hs, &auth, &room, kind, String::new(), content).await
}

async fn put_state(
    hs: Hs,
    auth: Auth,
    Path((room, kind, key)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> Resp {
    set_state(&hs, &auth, &room, kind, key, content).await
}

async fn redact(
    hs: Hs,
    auth: Auth,
    Path((room, event, txn)): Path<(String, String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    room_id(&room)?;
    if let Some(id) = hs
        .store
        .event_for_txn(&auth.user_id, &auth.device_id, &txn)?
    {
        return Ok(Json(json!({ "event_id": id })));
    }
    hs.require_joined(&room, &auth.user_id)?;
    // As Synapse: a redaction only ever names an event of its own room.
    if hs.store.event(&event)?.is_some_and(|e| e.room_id != room) {
        return Err(MatrixError::invalid_param(
            "cannot redact an event of another room",
        ));
    }
    let mut content = json!({});
    if let Some(r) = body.get("reason") {
        content["reason"] = r.clone();
    }
    let template = EventTemplate {
        kind: "m.room.redaction".into(),
        state_key: None,
        content,
        redacts: Some(event),
    };
    let pdu = hs
        .send_event(
            &room,
            &auth.user_id,
            template,
            Some((auth.device_id.clone(), txn)),
        )
        .await?;
    Ok(Json(json!({ "event_id": pdu.event_id })))
}

/// An event of the room that the user may see, else `M_NOT_FOUND` (as for
/// an event that does not exist, so that nothing leaks).
fn visible_event(
    hs: &Homeserver,
    room: &str,
    event: &str,
    until: u64,
    view: &mut UserView<'_>,
) -> ApiResult<StoredEvent> {
    let e = hs
        .store
        .event(event)?
        .filter(|e| e.room_id == room && e.stream_pos <= until)
        .ok_or_else(|| MatrixError::not_found("event not found"))?;
    if !view.may_see(&e)? {
        return Err(MatrixError::not_found("event not found"));
    }
    view.present(e)
}

async fn event(hs: Hs, auth: Auth, Path((room, event)): Path<(String, String)>) -> Resp {
    room_id(&room)?;
    let until = visible_until(&hs, &room, &auth.user_id)?;
    let mut view = UserView::new(&hs, &room, &auth.user_id)?;
    let e = visible_event(&hs, &room, &event, until, &mut view)?;
    Ok(Json(
        format_all(&hs, &auth, &mut view, std::slice::from_ref(&e))?.remove(0),
    ))
}

#[derive(Deserialize)]
struct ContextQuery {
    limit: Option<usize>,
    filter: Option<String>,
}

fn parse_filter(hs: &Homeserver, auth: &Auth, filter: Option<&str>) -> ApiResult<Option<Value>> {
    match filter {
        None => Ok(None),
        Some(f) if f.trim_start().starts_with('{') => {
            Ok(Some(serde_json::from_str(f).map_err(|e| {
                MatrixError::bad_json(format!("invalid filter: {e}"))
            })?))
        }
        Some(id) => {
            let id: u64 = id
                .parse()
                .map_err(|_| MatrixError::invalid_param("invalid filter ID"))?;
            Ok(Some(
                hs.store
                    .filter(&auth.user_id, id)?
                    .ok_or_else(|| MatrixError::not_found("no such filter"))?,
            ))
        }
    }
}

/// Member events of the senders of `events` (lazy loading).
fn lazy_members(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    events: &[StoredEvent],
) -> ApiResult<Vec<Value>> {
    let senders: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.value()["sender"].as_str().map(str::to_owned))
        .collect();
    let state = hs.store.current_state(room)?;
    let mut out = Vec::new();
    for s in senders {
        if let Some(id) = state.get(&("m.room.member".to_owned(), s)) {
            if let Some(e) = hs.store.event(id)? {
                out.push(format(hs, &e, auth));
            }
        }
    }
    Ok(out)
}

async fn context(
    hs: Hs,
    auth: Auth,
    Path((room, event)): Path<(String, String)>,
    Query(q): Query<ContextQuery>,
) -> Resp {
    room_id(&room)?;
    let until = visible_until(&hs, &room, &auth.user_id)?;
    let mut view = UserView::new(&hs, &room, &auth.user_id)?;
    let e = visible_event(&hs, &room, &event, until, &mut view)?;
    let limit = q.limit.unwrap_or(10).min(100);
    let lazy = parse_filter(&hs, &auth, q.filter.as_deref())?
        .and_then(|f| f.get("lazy_load_members").and_then(Value::as_bool))
        .unwrap_or(false);
    let before = hs
        .store
        .room_events(&room, 0, e.stream_pos - 1, true, limit / 2)?;
    let after = hs.store.room_events(
        &room,
        e.stream_pos,
        until.min(hs.store.stream_position()),
        false,
        limit - limit / 2,
    )?;
    let (before, after) = (view.filter(before)?, view.filter(after)?);
    let start = before
        .last()
        .map(|b| b.stream_pos - 1)
        .unwrap_or(e.stream_pos - 1);
    let end = after.last().map(|a| a.stream_pos).unwrap_or(e.stream_pos);
    // "The state of the room at the last event returned."
    let last = after.last().unwrap_or(&e);
    let state_ids = hs.store.state_at_group(last.state_group)?;
    // Lazy loading: "only return membership events for users who are
    // 'relevant' to the timeline", here the senders in the window; other
    // state is returned as usual.
    let senders: BTreeSet<String> = before
        .iter()
        .chain(after.iter())
        .chain(std::iter::once(&e))
        .filter_map(|x| x.value()["sender"].as_str().map(str::to_owned))
        .collect();
    let mut state = Vec::new();
    for ((kind, key), id) in &state_ids {
        if lazy && kind == "m.room.member" && !senders.contains(key) {
            continue;
        }
        if let Some(s) = hs.store.event(id)? {
            state.push(format(&hs, &s, &auth));
        }
    }
    Ok(Json(json!({
        "event": format_all(&hs, &auth, &mut view, std::slice::from_ref(&e))?.remove(0),
        "events_before": format_all(&hs, &auth, &mut view, &before)?,
        "events_after": format_all(&hs, &auth, &mut view, &after)?,
        "start": format!("t{start}"),
        "end": format!("t{end}"),
        "state": state,
    })))
}

#[derive(Deserialize)]
struct MembersQuery {
    membership: Option<String>,
    not_membership: Option<String>,
}

async fn members(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Resp {
    room_id(&room)?;
    let ids = visible_state(&hs, &room, &auth.user_id)?;
    let mut chunk = Vec::new();
    for ((kind, _), id) in &ids {
        if kind != "m.room.member" {
            continue;
        }
        let Some(e) = hs.store.event(id)? else {
            continue;
        };
        let m = e.value()["content"]["membership"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if q.membership.as_ref().is_some_and(|x| *x != m)
            || q.not_membership.as_ref().is_some_and(|x| *x == m)
        {
            continue;
        }
        chunk.push(format(&hs, &e, &auth));
    }
    Ok(Json(json!({ "chunk": chunk })))
}

async fn joined_members(hs: Hs, auth: Auth, Path(room): Path<String>) -> Resp {
    room_id(&room)?;
    hs.require_joined(&room, &auth.user_id)?;
    let mut joined = serde_json::Map::new();
    for (user, _) in hs.store.room_members(&room, Some("join"))? {
        let content = hs
            .state_event(&room, "m.room.member", &user)?
            .map(|p| p.content_value())
            .unwrap_or(json!({}));
        joined.insert(user, json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }));
    }
    Ok(Json(json!({ "joined": joined })))
}

#[derive(Deserialize)]
struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<usize>,
    filter: Option<String>,
}

async fn messages(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Resp {
    room_id(&room)?;
    let backwards = match q.dir.as_deref() {
        Some("b") => true,
        Some("f") => false,
        None => return Err(MatrixError::missing_param("dir")),
        Some(_) => return Err(MatrixError::invalid_param("dir must be b or f")),
    };
    let until = visible_until(&hs, &room, &auth.user_id)?.min(hs.store.stream_position());
    let token = |t: &Option<String>| -> ApiResult<Option<u64>> {
        match t {
            Some(t) => Ok(Some(
                parse_token(t)
                    .ok_or_else(|| MatrixError::invalid_param("invalid pagination token"))?
                    .0,
            )),
            None => Ok(None),
        }
    };
    let by_depth = q.from.as_deref().is_some_and(|t| t.starts_with('d'));
    let from = if by_depth { None } else { token(&q.from)? };
    let to = token(&q.to)?;
    let limit = q.limit.unwrap_or(10).clamp(1, 1000);
    let filter_json = parse_filter(&hs, &auth, q.filter.as_deref())?;
    let lazy = filter_json
        .as_ref()
        .and_then(|f| f.get("lazy_load_members"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let types: Option<Vec<String>> = filter_json
        .as_ref()
        .and_then(|f| f.get("types"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
    let not_types: Vec<String> = filter_json
        .as_ref()
        .and_then(|f| f.get("not_types"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // `d{depth}`: history from before this server joined, read by depth.
    if let Some(depth) = backwards
        .then_some(q.from.as_deref())
        .flatten()
        .and_then(|t| t.strip_prefix('d'))
    {
        let depth: i64 = depth
            .parse()
            .map_err(|_| MatrixError::invalid_param("invalid pagination token"))?;
        return older_history(&hs, &auth, &room, depth, limit, q.from.clone()).await;
    }
    let start = from.unwrap_or(if backwards { until } else { 0 }).min(until);
    let mut end_by_depth: Option<i64> = None;
    let mut events = if backwards {
        hs.store
            .room_events(&room, to.unwrap_or(0), start, true, limit)?
    } else {
        hs.store
            .room_events(&room, start, to.unwrap_or(until).min(until), false, limit)?
    };
    let end = if events.len() < limit {
        // The local timeline ends here; if the room began elsewhere, older
        // history continues by depth (fetched from other servers).
        let edge = match events.last() {
            Some(e) => Some(e.clone()),
            None if backwards => hs
                .store
                .room_events(&room, 0, until, false, 1)?
                .into_iter()
                .next(),
            None => None,
        };
        if let Some(e) = edge.filter(|e| backwards && e.value()["type"] != "m.room.create") {
            // The page goes on into the history from before this server
            // joined, so that a short local timeline never reads as the
            // start of the room.
            let older = hs
                .older_history_page(&room, e.depth, limit - events.len())
                .await?;
            events.extend(older.events);
            end_by_depth = older.next;
        }
        None
    } else {
        events.last().map(|e| {
            if backwards {
                e.stream_pos - 1
            } else {
                e.stream_pos
            }
        })
    };
    let mut view = UserView::new(&hs, &room, &auth.user_id)?;
    let visible = view.filter(events)?;
    let wanted: Vec<StoredEvent> = visible
        .into_iter()
        .filter(|e| {
            let v = e.value();
            let kind = v["type"].as_str().unwrap_or("");
            types.as_ref().is_none_or(|t| t.iter().any(|x| x == kind))
                && !not_types.iter().any(|x| x == kind)
        })
        .collect();
    let mut out = json!({
        "start": q.from.clone().unwrap_or_else(|| format!("t{start}")),
        "chunk": format_all(&hs, &auth, &mut view, &wanted)?,
    });
    if let Some(end) = end {
        out["end"] = json!(format!("t{end}"));
    } else if let Some(depth) = end_by_depth {
        out["end"] = json!(format!("d{depth}"));
    }
    if lazy {
        out["state"] = json!(lazy_members(&hs, &auth, &room, &wanted)?);
    }
    Ok(Json(out))
}

/// A page of the history before this server joined the room, deepest first:
/// what is stored, topped up from other servers by backfill when short.
async fn older_history(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    below: i64,
    limit: usize,
    from: Option<String>,
) -> Resp {
    visible_until(hs, room, &auth.user_id)?;
    let page = hs.older_history_page(room, below, limit).await?;
    let end = page.next.map(|depth| format!("d{depth}"));
    let mut view = UserView::new(hs, room, &auth.user_id)?;
    let visible = view.filter(page.events)?;
    let mut out = json!({
        "start": from.unwrap_or_else(|| format!("d{below}")),
        "chunk": format_all(hs, auth, &mut view, &visible)?,
    });
    if let Some(end) = end {
        out["end"] = json!(end);
    }
    Ok(Json(out))
}
