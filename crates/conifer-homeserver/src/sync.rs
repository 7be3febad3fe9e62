//! `/sync` (v3): one global stream position plus the typing serial make the
//! token `s{position}_{typing}`. A long-poll subscribes to both before it
//! reads, so a write that lands between the read and the wait still wakes it.

use crate::error::{ApiResult, MatrixError};
use crate::format::{client_event, client_event_from_value, stripped_state, without_room_id};
use crate::{now_ms, push, Auth, Homeserver};
use conifer_store::{Audience, StoredEvent};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Most to-device messages in one response.
const TO_DEVICE_LIMIT: usize = 100;

#[derive(Debug, Clone)]
pub struct SyncFilter {
    pub timeline_limit: usize,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    pub include_leave: bool,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub timeline_types: Option<Vec<String>>,
    pub timeline_not_types: Vec<String>,
    pub state_types: Option<Vec<String>>,
    pub presence_enabled: bool,
    pub account_data_enabled: bool,
}

impl Default for SyncFilter {
    fn default() -> Self {
        Self {
            timeline_limit: 10,
            lazy_load_members: false,
            include_redundant_members: false,
            include_leave: false,
            rooms: None,
            not_rooms: vec![],
            timeline_types: None,
            timeline_not_types: vec![],
            state_types: None,
            presence_enabled: true,
            account_data_enabled: true,
        }
    }
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    })
}

/// A `*` wildcard at the end of a type filter matches any suffix.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl SyncFilter {
    /// Reads the parts of a Matrix filter definition that sync honours.
    pub fn from_json(f: &Value) -> Self {
        let mut s = SyncFilter::default();
        let room = f.get("room").cloned().unwrap_or(Value::Null);
        if let Some(l) = room.pointer("/timeline/limit").and_then(Value::as_u64) {
            s.timeline_limit = l.clamp(1, 1000) as usize;
        }
        s.lazy_load_members = room
            .pointer("/state/lazy_load_members")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        s.include_redundant_members = room
            .pointer("/state/include_redundant_members")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        s.include_leave = room
            .get("include_leave")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        s.rooms = strings(room.get("rooms"));
        s.not_rooms = strings(room.get("not_rooms")).unwrap_or_default();
        s.timeline_types = strings(room.pointer("/timeline/types"));
        s.timeline_not_types = strings(room.pointer("/timeline/not_types")).unwrap_or_default();
        s.state_types = strings(room.pointer("/state/types"));
        s.presence_enabled = strings(f.pointer("/presence/types")).is_none_or(|t| !t.is_empty());
        s.account_data_enabled =
            strings(f.pointer("/account_data/types")).is_none_or(|t| !t.is_empty());
        s
    }

    pub fn wants_room(&self, room_id: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == room_id))
            && !self.not_rooms.iter().any(|x| x == room_id)
    }

    pub fn wants_timeline(&self, kind: &str) -> bool {
        self.timeline_types
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| type_matches(p, kind)))
            && !self
                .timeline_not_types
                .iter()
                .any(|p| type_matches(p, kind))
    }

    pub fn wants_state(&self, kind: &str) -> bool {
        self.state_types
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| type_matches(p, kind)))
    }
}

/// The `filter` query parameter of `/sync`: a filter definition inline (JSON
/// starting with `{`), or the ID of a stored one.
#[derive(Debug, Clone)]
pub enum SyncFilterParam {
    /// A definition given inline: as read, and the JSON it was read from.
    Inline(SyncFilter, Value),
    Id(u64),
}

impl SyncFilterParam {
    pub fn parse(param: &str) -> Result<Self, MatrixError> {
        if param.trim_start().starts_with('{') {
            let v = serde_json::from_str(param)
                .map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}")))?;
            Ok(Self::Inline(SyncFilter::from_json(&v), v))
        } else {
            param
                .parse()
                .map(Self::Id)
                .map_err(|_| MatrixError::invalid_param("invalid filter ID"))
        }
    }
}

pub struct SyncRequest {
    pub since: Option<String>,
    pub full_state: bool,
    pub timeout: Duration,
    pub filter: SyncFilter,
}

/// `s{pos}_{typing}`; also accepts a bare `s{pos}` or pagination token `t{pos}`.
pub fn parse_token(token: &str) -> Option<(u64, u64)> {
    let body = token
        .strip_prefix('s')
        .or_else(|| token.strip_prefix('t'))?;
    let mut parts = body.split('_');
    let pos = parts.next()?.parse().ok()?;
    let typing = parts.next().map(|t| t.parse().ok()).unwrap_or(Some(0))?;
    Some((pos, typing))
}

pub async fn sync(hs: &Homeserver, auth: &Auth, req: SyncRequest) -> ApiResult<Value> {
    let since = match &req.since {
        Some(t) => Some(
            parse_token(t)
                .ok_or_else(|| crate::MatrixError::invalid_param("invalid since token"))?,
        ),
        None => None,
    };
    // A token from ahead of this server's streams (a restored database, or a
    // made-up token) is answered at once from where the server is, rather
    // than left to wait for positions that may never come.
    let ahead = since.is_some_and(|(pos, typing)| {
        pos > hs.store.stream_position() || typing > hs.typing.serial()
    });
    let timeout = if ahead {
        std::time::Duration::ZERO
    } else {
        req.timeout
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut typing_rx = hs.typing.subscribe();
    loop {
        let typing_seen = *typing_rx.borrow_and_update();
        hs.sync_computations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (response, empty, to) = conifer_store::off_runtime(|| compute(hs, auth, since, &req))?;
        if since.is_none() || req.full_state || !empty || tokio::time::Instant::now() >= deadline {
            return Ok(response);
        }
        // Nothing to show yet: sleep until a write that concerns this user
        // (or its device, its rooms, the users it shares rooms with), a
        // typing change in one of its rooms, or the deadline.
        if !wait_for_news(hs, auth, to, &mut typing_rx, typing_seen, deadline).await? {
            return Ok(response);
        }
    }
}

/// Sleeps until a write that concerns this user (or its device, its rooms,
/// the users it shares rooms with), a typing change in one of its rooms, or
/// the deadline; `checked` is the stream position the caller's response
/// reached, `typing_seen` the typing serial it saw. Writes for others wake
/// the task only to look at the change log, never to compute a response.
/// `false` when the server is shutting down (nothing more will come).
/// Shared by `/sync` and sliding sync.
pub(crate) async fn wait_for_news(
    hs: &Homeserver,
    auth: &Auth,
    checked: u64,
    typing_rx: &mut tokio::sync::watch::Receiver<u64>,
    typing_seen: u64,
    deadline: tokio::time::Instant,
) -> ApiResult<bool> {
    let listener = Listener::new(hs, auth)?;
    let registration = hs.waiters.register(&listener.user, listener.rooms.iter());
    let mut checked = checked;
    let mut typing_checked = typing_seen;
    // A commit between the computation and the registration woke no
    // one, but it is in the change log.
    let mut pending = true;
    loop {
        if std::mem::take(&mut pending) {
            let now = hs.store.stream_position();
            match hs.store.changes_since(checked) {
                None => return Ok(true),
                Some(changes) => {
                    if changes
                        .iter()
                        .any(|(p, a)| *p <= now && listener.concerns(a))
                    {
                        return Ok(true);
                    }
                    checked = checked.max(now);
                }
            }
        }
        let wake = match hs.typing.next_expiry() {
            Some(t) => deadline.min(tokio::time::Instant::from_std(t)),
            None => deadline,
        };
        tokio::select! {
            _ = registration.notify.notified() => pending = true,
            r = typing_rx.changed() => {
                if r.is_err() { return Ok(false); }
                let serial = *typing_rx.borrow_and_update();
                if listener.rooms.iter().any(|room| hs.typing.changed_since(room, typing_checked).is_some()) {
                    return Ok(true);
                }
                typing_checked = serial;
            }
            _ = tokio::time::sleep_until(wake) => return Ok(true),
        }
    }
}

/// What a waiting long-poll listens for: writes for its user, its device,
/// the rooms it has a membership in, or the users it shares rooms with.
struct Listener {
    user: String,
    device: String,
    rooms: BTreeSet<String>,
    sharing: BTreeSet<String>,
}

impl Listener {
    fn new(hs: &Homeserver, auth: &Auth) -> ApiResult<Self> {
        Ok(Self {
            user: auth.user_id.clone(),
            device: auth.device_id.clone(),
            rooms: hs
                .memberships_of(&auth.user_id)?
                .iter()
                .map(|m| m.room_id.clone())
                .collect(),
            sharing: hs
                .store
                .users_sharing_rooms(&auth.user_id)?
                .into_iter()
                .collect(),
        })
    }

    fn concerns(&self, audience: &Audience) -> bool {
        match audience {
            Audience::Room(r) => self.rooms.contains(r),
            Audience::User(u) => *u == self.user,
            Audience::Device(u, d) => *u == self.user && *d == self.device,
            Audience::SharingWith(u) => *u == self.user || self.sharing.contains(u),
        }
    }
}

struct Window {
    from: u64,
    to: u64,
    typing_from: u64,
    initial: bool,
}

/// What the store's change log says changed in a window: the rooms with new
/// events or receipts (the `Room` audiences) and the users whose presence or
/// device keys moved (`SharingWith`). With it, an incremental sync looks only
/// at those rooms and users instead of every room the user is in.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub rooms: std::collections::HashSet<String>,
    pub sharing_with: BTreeSet<String>,
}

impl Changes {
    /// `None` when the log no longer reaches back to `from` (a client that
    /// was away long): then everything has to be looked at.
    pub(crate) fn of(hs: &Homeserver, from: u64, to: u64) -> Option<Self> {
        let mut changes = Changes::default();
        for (pos, audience) in hs.store.changes_since(from)? {
            if pos > to {
                break;
            }
            match audience {
                Audience::Room(r) => {
                    changes.rooms.insert(r);
                }
                Audience::SharingWith(u) => {
                    changes.sharing_with.insert(u);
                }
                Audience::User(_) | Audience::Device(..) => {}
            }
        }
        Some(changes)
    }
}

/// The response for the window from `since` to now, whether it is empty,
/// and the stream position it reaches.
fn compute(
    hs: &Homeserver,
    auth: &Auth,
    since: Option<(u64, u64)>,
    req: &SyncRequest,
) -> ApiResult<(Value, bool, u64)> {
    let user = auth.user_id.as_str();
    let (since_pos, since_typing) = since.unwrap_or((0, 0));
    let mut to = hs.store.stream_position();
    let typing_now = hs.typing.serial();

    let to_device =
        hs.store
            .to_device_since(user, &auth.device_id, since_pos, to, TO_DEVICE_LIMIT)?;
    if to_device.len() == TO_DEVICE_LIMIT {
        // Deliver the rest next time: everything else stops at the same point.
        to = to_device.last().map(|(p, _)| *p).unwrap_or(to);
    }
    let w = Window {
        from: since_pos,
        to,
        typing_from: since_typing,
        initial: since.is_none(),
    };
    let filter = &req.filter;

    let memberships = hs.memberships_of(user)?;
    let changes = if w.initial {
        None
    } else {
        Changes::of(hs, w.from, w.to)
    };
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut leave = Map::new();
    let mut knock = Map::new();

    let active = active_rooms(hs, auth, &memberships, &w, changes.as_ref())?;
    for m in memberships.iter() {
        if !filter.wants_room(&m.room_id) || m.stream_pos > w.to {
            continue;
        }
        let is_new = w.initial || m.stream_pos > w.from;
        match m.membership.as_str() {
            "join" => {
                let full = req.full_state || is_new;
                if !full && !active.contains(&m.room_id) {
                    continue;
                }
                if let Some(entry) = joined_room(hs, auth, &m.room_id, &w, full, filter)? {
                    join.insert(m.room_id.clone(), entry);
                }
            }
            "invite" if is_new => {
                invite.insert(m.room_id.clone(), json!({ "invite_state": { "events": invite_state(hs, &m.room_id, &m.event_id)? } }));
            }
            "knock" if is_new => {
                knock.insert(m.room_id.clone(), json!({ "knock_state": { "events": invite_state(hs, &m.room_id, &m.event_id)? } }));
            }
            "leave" | "ban" if !m.forgotten && ((!w.initial && is_new) || filter.include_leave) => {
                let lw = Window {
                    to: m.stream_pos,
                    ..w
                };
                let from = if w.initial { None } else { Some(w.from) };
                let (timeline, state) =
                    timeline_and_state(hs, auth, &m.room_id, from, &lw, true, filter)?;
                leave.insert(m.room_id.clone(), json!({ "timeline": timeline, "state": { "events": state }, "account_data": { "events": [] } }));
            }
            _ => {}
        }
    }

    // Invites over federation to rooms this server is not in, and the
    // rejections of such invites since the last sync.
    for inv in hs.store.remote_invites(user)? {
        let is_new = w.initial || inv.stream_pos > w.from;
        if !is_new || inv.stream_pos > w.to || !filter.wants_room(&inv.room_id) {
            continue;
        }
        if memberships.iter().any(|m| m.room_id == inv.room_id) {
            continue;
        }
        if inv.membership == "invite" {
            invite.insert(
                inv.room_id.clone(),
                json!({ "invite_state": { "events": inv.invite_state } }),
            );
        } else if !w.initial || filter.include_leave {
            let event = without_room_id(client_event_from_value(
                &inv.event,
                &inv.event_id,
                &inv.room_id,
                None,
                now_ms(),
            ));
            leave.insert(inv.room_id.clone(), json!({ "timeline": { "events": [event] }, "state": { "events": [] }, "account_data": { "events": [] } }));
        }
    }

    let mut device_lists = json!({ "changed": [], "left": [] });
    if !w.initial {
        let (changed, left) =
            hs.device_list_delta_in(user, w.from, w.to, &memberships, changes.as_ref())?;
        device_lists = json!({ "changed": changed, "left": left });
    }

    let mut account_data = Vec::new();
    if filter.account_data_enabled {
        let mut have_push_rules = false;
        for (room, kind, content) in hs.store.account_data_since(user, w.from, w.to)? {
            if room.is_empty() {
                have_push_rules |= kind == push::PUSH_RULES;
                account_data.push(json!({ "type": kind, "content": content }));
            }
        }
        if w.initial && !have_push_rules {
            if let Ok(uid) = conifer_rooms::ruma::OwnedUserId::try_from(user) {
                account_data.push(
                    json!({ "type": push::PUSH_RULES, "content": push::ruleset_json(hs, &uid) }),
                );
            }
        }
    }

    let mut presence = Vec::new();
    if filter.presence_enabled {
        // Whose presence to look at: with the change log, only the users
        // whose presence (or keys) moved and who share a room with this one.
        let sharing = match &changes {
            Some(ch) => hs.sharing_among(user, &ch.sharing_with)?,
            None => hs.store.users_sharing_rooms(user)?,
        };
        for p in hs.store.presence_since(&sharing, w.from, w.to)? {
            let mut content = json!({
                "presence": p.presence,
                "last_active_ago": now_ms().saturating_sub(p.last_active_ts),
                "currently_active": p.presence == "online",
            });
            if let Some(s) = p.status_msg {
                content["status_msg"] = json!(s);
            }
            presence.push(json!({ "type": "m.presence", "sender": p.user_id, "content": content }));
        }
    }

    let otk_counts = hs.store.one_time_key_counts(user, &auth.device_id)?;
    let fallback = hs.store.unused_fallback_key_types(user, &auth.device_id)?;
    let to_device_events: Vec<Value> = to_device.into_iter().map(|(_, v)| v).collect();

    let empty = join.is_empty()
        && invite.is_empty()
        && leave.is_empty()
        && knock.is_empty()
        && to_device_events.is_empty()
        && account_data.is_empty()
        && presence.is_empty()
        && device_lists["changed"].as_array().is_none_or(Vec::is_empty)
        && device_lists["left"].as_array().is_none_or(Vec::is_empty);

    let response = json!({
        "next_batch": format!("s{}_{}", w.to, typing_now),
        "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
        "account_data": { "events": account_data },
        "presence": { "events": presence },
        "to_device": { "events": to_device_events },
        "device_lists": device_lists,
        "device_one_time_keys_count": otk_counts,
        "device_unused_fallback_key_types": fallback,
        "org.matrix.msc2732.device_unused_fallback_key_types": fallback,
    });
    Ok((response, empty, w.to))
}

/// The joined rooms where anything a sync shows changed in the window:
/// events, receipts, room account data or typing. With the change log, the
/// rooms it names (events and receipts take a position for their room);
/// without it, three queries over all joined rooms.
fn active_rooms(
    hs: &Homeserver,
    auth: &Auth,
    memberships: &[conifer_store::MembershipRecord],
    w: &Window,
    changes: Option<&Changes>,
) -> ApiResult<BTreeSet<String>> {
    let joined = memberships.iter().filter(|m| m.membership == "join");
    if w.initial {
        return Ok(joined.map(|m| m.room_id.clone()).collect());
    }
    let mut active: BTreeSet<String> = match changes {
        Some(ch) => joined
            .filter(|m| ch.rooms.contains(&m.room_id))
            .map(|m| m.room_id.clone())
            .collect(),
        None => {
            let joined: Vec<String> = joined.map(|m| m.room_id.clone()).collect();
            let mut active: BTreeSet<String> = hs
                .store
                .rooms_with_events(&joined, w.from, w.to)?
                .into_iter()
                .collect();
            active.extend(
                hs.store
                    .receipts_since(&joined, w.from, w.to)?
                    .into_iter()
                    .map(|r| r.room_id),
            );
            active
        }
    };
    active.extend(
        hs.store
            .account_data_since(&auth.user_id, w.from, w.to)?
            .into_iter()
            .map(|(room, _, _)| room)
            .filter(|r| !r.is_empty()),
    );
    let joined_now: std::collections::HashSet<&str> = memberships
        .iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id.as_str())
        .collect();
    active.extend(
        hs.typing
            .rooms_changed_since(w.typing_from)
            .into_iter()
            .filter(|r| joined_now.contains(r.as_str())),
    );
    Ok(active)
}

fn joined_room(
    hs: &Homeserver,
    auth: &Auth,
    room_id: &str,
    w: &Window,
    full: bool,
    filter: &SyncFilter,
) -> ApiResult<Option<Value>> {
    let user = auth.user_id.as_str();
    // A full room (initial sync, new join, full_state) shows the latest events
    // with all state before them; otherwise only what happened since `from`.
    let from = if full { None } else { Some(w.from) };
    let (timeline, state) = timeline_and_state(hs, auth, room_id, from, w, full, filter)?;

    let mut ephemeral = Vec::new();
    if let Some(users) = hs
        .typing
        .changed_since(room_id, if w.initial { 0 } else { w.typing_from })
    {
        ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
    }
    let receipts =
        hs.store
            .receipts_since(&[room_id.to_owned()], if full { 0 } else { w.from }, w.to)?;
    let mut by_event: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != user {
            continue;
        }
        let mut data = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            data["thread_id"] = json!(r.thread_id);
        }
        let types = by_event.entry(r.event_id).or_default();
        let users = types.entry(r.receipt_type).or_insert_with(|| json!({}));
        users[r.user_id] = data;
    }
    if !by_event.is_empty() {
        ephemeral.push(json!({ "type": "m.receipt", "content": by_event }));
    }

    let mut account_data = Vec::new();
    if filter.account_data_enabled {
        for (room, kind, content) in
            hs.store
                .account_data_since(user, if full { 0 } else { w.from }, w.to)?
        {
            if room == room_id {
                account_data.push(json!({ "type": kind, "content": content }));
            }
        }
    }

    let has_timeline = timeline["events"].as_array().is_some_and(|a| !a.is_empty());
    if !full && !has_timeline && state.is_empty() && ephemeral.is_empty() && account_data.is_empty()
    {
        return Ok(None);
    }
    let (notifications, highlights) = hs.store.notification_counts(room_id, user)?;
    let members = hs.store.room_members(room_id, None)?;
    let joined: Vec<&String> = members
        .iter()
        .filter(|(_, m)| m == "join")
        .map(|(u, _)| u)
        .collect();
    let invited = members.iter().filter(|(_, m)| m == "invite").count();
    let heroes: Vec<&&String> = joined
        .iter()
        .filter(|u| u.as_str() != user)
        .take(5)
        .collect();
    Ok(Some(json!({
        "timeline": timeline,
        "state": { "events": state },
        "ephemeral": { "events": ephemeral },
        "account_data": { "events": account_data },
        "unread_notifications": { "notification_count": notifications, "highlight_count": highlights },
        "summary": { "m.joined_member_count": joined.len(), "m.invited_member_count": invited, "m.heroes": heroes },
    })))
}

/// The timeline of `(from, w.to]` (the newest `limit` events) and the state
/// a client needs with it: everything before the timeline when `full`, else
/// what changed between `from` and the timeline's start.
fn timeline_and_state(
    hs: &Homeserver,
    auth: &Auth,
    room_id: &str,
    from: Option<u64>,
    w: &Window,
    full: bool,
    filter: &SyncFilter,
) -> ApiResult<(Value, Vec<Value>)> {
    let viewer = Some((auth.user_id.as_str(), auth.device_id.as_str()));
    let now = now_ms();
    let limit = filter.timeline_limit;
    let mut events = hs
        .store
        .room_events(room_id, from.unwrap_or(0), w.to, true, limit + 1)?;
    let limited = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    // Only what the user may see: a user who joins a `joined` room gets no
    // earlier messages in its first sync (Room History Visibility).
    let mut view = crate::visibility::UserView::new(hs, room_id, &auth.user_id)?;
    let events = view.filter(events)?;

    let start_pos = events.first().map(|e| e.stream_pos).unwrap_or(w.to + 1);
    // An incremental sync whose timeline is complete needs no state: every
    // state change is in the timeline itself.
    let state_ids: Vec<String> = if full {
        state_before_pos(hs, room_id, start_pos)?
            .values()
            .cloned()
            .collect()
    } else if limited {
        let state_before = state_before_pos(hs, room_id, start_pos)?;
        let old = state_before_pos(hs, room_id, from.unwrap_or(0) + 1)?;
        state_before
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(_, v)| v.clone())
            .collect()
    } else {
        Vec::new()
    };

    let senders: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.value()["sender"].as_str().map(str::to_owned))
        .collect();
    let mut state_ids = state_ids;
    if filter.lazy_load_members {
        lazy_members(
            hs,
            auth,
            room_id,
            &events,
            &senders,
            start_pos,
            full,
            filter.include_redundant_members,
            &mut state_ids,
        )?;
    }
    let mut state = Vec::new();
    for id in state_ids {
        let Some(e) = hs.store.event(&id)? else {
            continue;
        };
        let v = e.value();
        let kind = v["type"].as_str().unwrap_or("");
        if !filter.wants_state(kind) {
            continue;
        }
        if filter.lazy_load_members && kind == "m.room.member" {
            let target = v["state_key"].as_str().unwrap_or("");
            if target != auth.user_id && !senders.contains(target) {
                continue;
            }
        }
        state.push(without_room_id(client_event(
            &e.json,
            &e.event_id,
            room_id,
            viewer,
            now,
        )));
    }

    let mut timeline_events: Vec<Value> = Vec::with_capacity(events.len());
    for e in events
        .iter()
        .filter(|e| filter.wants_timeline(e.value()["type"].as_str().unwrap_or("")))
    {
        let mut v = client_event(&e.json, &e.event_id, room_id, viewer, now);
        hs.bundle_aggregations(
            &mut view,
            (auth.user_id.as_str(), auth.device_id.as_str()),
            e,
            &mut v,
        )?;
        timeline_events.push(without_room_id(v));
    }
    let prev_batch = format!("t{}", start_pos.saturating_sub(1));
    Ok((
        json!({ "events": timeline_events, "limited": limited, "prev_batch": prev_batch }),
        state,
    ))
}

/// Lazy-loading members: adds to `state_ids` the membership (at the start
/// of the timeline) of each timeline sender the device has not been sent
/// yet, and remembers what it was sent. "The server will only return
/// membership events for users who are 'relevant' to the timeline", and,
/// unless `include_redundant_members`, not again those it already sent
/// (Client-Server API, "Lazy-loading room members"). What was sent is kept
/// in memory per device and room (bounded; after eviction or a restart a
/// member may be sent again, which clients accept).
#[allow(clippy::too_many_arguments)]
fn lazy_members(
    hs: &Homeserver,
    auth: &Auth,
    room_id: &str,
    events: &[StoredEvent],
    senders: &BTreeSet<String>,
    start_pos: u64,
    full: bool,
    redundant: bool,
    state_ids: &mut Vec<String>,
) -> ApiResult<()> {
    let key = (
        auth.user_id.clone(),
        auth.device_id.clone(),
        room_id.to_owned(),
    );
    let mut sent = {
        let mut cache = hs.lazy_members_sent.lock();
        if full {
            cache.remove(&key);
        }
        cache.remove(&key).unwrap_or_default()
    };
    let before = state_before_pos(hs, room_id, start_pos)?;
    let listed: BTreeSet<String> = state_ids.iter().cloned().collect();
    let mut wanted: Vec<&String> = senders.iter().collect();
    if full {
        wanted.push(&auth.user_id);
    }
    for user in wanted {
        let Some(id) = before.get(&("m.room.member".to_owned(), user.clone())) else {
            continue;
        };
        if (redundant || sent.get(user) != Some(id)) && !listed.contains(id) {
            state_ids.push(id.clone());
        }
        sent.insert(user.clone(), id.clone());
    }
    // Membership events in the timeline are what the client now knows.
    for e in events {
        let v = e.value();
        if v["type"] == "m.room.member" {
            if let Some(target) = v["state_key"].as_str() {
                sent.insert(target.to_owned(), e.event_id.clone());
            }
        }
    }
    hs.lazy_members_sent.lock().insert(key, sent);
    Ok(())
}

/// The room state just before the event at stream position `pos`.
pub fn state_before_pos(
    hs: &Homeserver,
    room_id: &str,
    pos: u64,
) -> ApiResult<HashMap<(String, String), String>> {
    let before: Option<StoredEvent> = hs
        .store
        .room_events(room_id, 0, pos.saturating_sub(1), true, 1)?
        .into_iter()
        .next();
    match before {
        Some(e) => Ok(hs.store.state_at_group(e.state_group)?),
        // Nothing earlier in the timeline: a room joined through another
        // server starts with our join, on top of the state it was sent.
        None => match hs
            .store
            .room_events(room_id, pos.saturating_sub(1), pos, false, 1)?
            .into_iter()
            .next()
        {
            Some(first) => Ok(hs.store.state_before_event(&first.event_id)?),
            None => Ok(HashMap::new()),
        },
    }
}

/// Stripped state for an invite or knock: the room's public face plus the
/// membership event itself.
pub(crate) fn invite_state(
    hs: &Homeserver,
    room_id: &str,
    event_id: &str,
) -> ApiResult<Vec<Value>> {
    let state = hs.store.current_state(room_id)?;
    let mut out = Vec::new();
    for kind in crate::format::INVITE_STATE {
        if let Some(id) = state.get(&(kind.to_owned(), String::new())) {
            if let Some(e) = hs.store.event(id)? {
                out.push(stripped_state(&e.value()));
            }
        }
    }
    if let Some(e) = hs.store.event(event_id)? {
        let v = e.value();
        if let Some(inviter) = v["sender"].as_str() {
            if let Some(id) = state.get(&("m.room.member".to_owned(), inviter.to_owned())) {
                if let Some(m) = hs.store.event(id)? {
                    out.push(stripped_state(&m.value()));
                }
            }
        }
        let mut ev = client_event(&e.json, &e.event_id, room_id, None, now_ms());
        ev["room_id"] = json!(room_id);
        out.push(ev);
    }
    Ok(out)
}
