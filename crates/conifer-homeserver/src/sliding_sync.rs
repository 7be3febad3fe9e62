//! Simplified sliding sync (MSC4186): the rooms a client's lists and
//! subscriptions select, sorted by recency, with only what changed since the
//! connection's last response.
//!
//! A *connection* is `(user, device, conn_id)`. Each response gets a fresh
//! `pos`; the server keeps, per connection, what the client holds after the
//! responses it may still build on (the last `pos` it used, and those it
//! was given since): per room, the stream position up to which the room was
//! sent, the membership, the state group, the room config and the members
//! sent under lazy loading. All of it is in memory and bounded (connections
//! per device, devices, rooms per connection, members per room, least
//! recently used first); a `pos` whose state is gone is answered
//! `400 M_UNKNOWN_POS`, and the client starts over.
//!
//! Read paths are the ones `/sync` uses: timelines go through
//! [`UserView`](crate::visibility::UserView) (history visibility and
//! erasure) and get their bundled aggregations; state comes from the state
//! group of the newest event in the response's window; long-polls sleep on
//! [`crate::sync::wait_for_news`].

use crate::error::{ApiResult, MatrixError};
use crate::format::{client_event, without_room_id};
use crate::{now_ms, push, Auth, Homeserver};
use axum::http::StatusCode;
use hashlink::LruCache;
use parking_lot::Mutex;
use ruma::api::client::sync::sync_events::v5::{request as rq, response as rs, Request, Response};
use ruma::api::client::sync::sync_events::{DeviceLists, UnreadNotificationsCount};
use ruma::serde::Raw;
use ruma::{JsOption, OneTimeKeyAlgorithm, OwnedMxcUri, OwnedRoomId, OwnedUserId, UInt};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// "'Proper' activity is defined as an event being received is one of the
/// following types" (MSC4186, `bump_stamp`).
pub const BUMP_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// "Max lists: 100."
const MAX_LISTS: usize = 100;
const MAX_RANGES_PER_LIST: usize = 100;
const MAX_SUBSCRIPTIONS: usize = 1000;
const MAX_REQUIRED_STATE: usize = 200;
/// "The server may cap this number."
const MAX_TIMELINE_LIMIT: usize = 200;
const MAX_CONN_ID_LEN: usize = 64;
/// Connections (`conn_id`s) kept per device, and devices kept in all.
const CONNECTIONS_PER_DEVICE: usize = 10;
const MAX_DEVICES: usize = 10_000;
/// Rooms remembered per connection; a forgotten room is sent again whole.
const MAX_ROOMS_PER_CONNECTION: usize = 20_000;
/// Members remembered as sent under lazy loading, per room.
const MAX_LAZY_MEMBERS: usize = 1_000;
/// States kept per connection: the `pos` in use and the responses after it.
const SNAPSHOTS_PER_CONNECTION: usize = 3;
/// Rooms whose bump stamp is cached.
const BUMP_CACHE_ROOMS: usize = 100_000;
/// Events looked at, newest first, for a room's first bump-type event.
const BUMP_SCAN_LIMIT: usize = 512;
const TO_DEVICE_LIMIT: usize = 100;
const HEROES: usize = 5;

/// The sliding-sync connections of all devices, and the rooms' bump stamps.
pub(crate) struct Connections {
    inner: Mutex<Inner>,
    bumps: Mutex<LruCache<String, Bump>>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_pos: 0,
                devices: LruCache::new(MAX_DEVICES),
            }),
            bumps: Mutex::new(LruCache::new(BUMP_CACHE_ROOMS)),
        }
    }
}

struct Inner {
    next_pos: u64,
    /// `(user, device)` → `conn_id` → connection.
    devices: LruCache<(String, String), LruCache<String, Connection>>,
}

#[derive(Default)]
struct Connection {
    /// `(pos, what the client holds once it has processed that response)`.
    snapshots: Vec<(u64, Arc<Snapshot>)>,
}

#[derive(Clone, Copy)]
struct Bump {
    /// Events up to this position were looked at.
    checked: u64,
    stamp: Option<u64>,
}

/// What a client holds after processing one response.
#[derive(Clone, Default)]
struct Snapshot {
    /// The stream position and typing serial the response reached.
    to: u64,
    typing: u64,
    rooms: HashMap<String, RoomSent>,
    /// Each list's `count` as sent.
    counts: BTreeMap<String, UInt>,
    /// For eviction: a counter bumped per room sent.
    clock: u64,
}

#[derive(Clone)]
struct RoomSent {
    /// The room's data was sent up to this stream position.
    at: u64,
    /// The stream position of the membership it was sent with.
    membership_pos: u64,
    /// The state group its state was sent at (`None`: no state was sent).
    state_group: Option<i64>,
    config: RoomConfig,
    /// Lazy loading: member → membership event ID sent.
    members_sent: HashMap<String, String>,
    bump_stamp: Option<u64>,
    last_sent: u64,
}

/// "The 'room config' has two fields: the `timeline_limit` and
/// `required_state`." Combined over every rule that matches a room.
#[derive(Clone, Default, PartialEq, Debug)]
struct RoomConfig {
    timeline_limit: usize,
    required_state: BTreeSet<(String, String)>,
}

impl RoomConfig {
    fn from_parts(limit: UInt, required: &[(ruma::events::StateEventType, String)]) -> Self {
        Self {
            timeline_limit: (u64::from(limit) as usize).min(MAX_TIMELINE_LIMIT),
            required_state: required
                .iter()
                .map(|(t, k)| (t.to_string(), k.clone()))
                .collect(),
        }
    }

    /// "`timeline_limit` — take the maximum timeline limit across all room
    /// configs. `required_state` — take the union of the required state
    /// fields."
    fn combine(&mut self, other: &RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        self.required_state
            .extend(other.required_state.iter().cloned());
    }

    /// Whether this config would return more than `old` did.
    fn expands(&self, old: &RoomConfig) -> bool {
        self.timeline_limit > old.timeline_limit
            || !self.required_state.is_subset(&old.required_state)
    }

    fn lazy_members(&self) -> bool {
        self.required_state
            .iter()
            .any(|(t, k)| t == "m.room.member" && k == "$LAZY")
    }

    /// Whether `required_state` asks for the state entry `(kind, key)`:
    /// `*` matches any type or any state key, `$ME` is the user's own ID.
    fn wants(&self, kind: &str, key: &str, user: &str) -> bool {
        self.required_state.iter().any(|(t, k)| {
            (t == "*" || t == kind)
                && (k == "*" || k == key || (k == "$ME" && key == user))
                && k != "$LAZY"
        })
    }
}

/// The error for a `pos` the server has no state for: "This is done by
/// responding with a 400 HTTP status and an error code of `M_UNKNOWN_POS`."
fn unknown_pos() -> MatrixError {
    MatrixError::new(
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
        "unknown or expired sliding sync position",
    )
}

/// One room the user's server-side list holds.
struct Candidate {
    room_id: String,
    membership: String,
    membership_pos: u64,
    event_id: String,
    /// Stripped state of an invite received over federation.
    remote_invite_state: Option<Vec<Value>>,
    bump: u64,
    is_dm: bool,
}

/// Answers one sliding-sync request, waiting up to `max_timeout` when a
/// `pos` is given and nothing changed.
pub async fn sliding_sync(
    hs: &Homeserver,
    auth: &Auth,
    req: Request,
    max_timeout: Duration,
) -> ApiResult<Response> {
    validate(&req)?;
    let conn_id = req.conn_id.clone().unwrap_or_default();
    let device_key = (auth.user_id.clone(), auth.device_id.clone());
    let snapshot: Option<Arc<Snapshot>> = match &req.pos {
        None => {
            // A new connection replaces any other with the same `conn_id`.
            let mut inner = hs.sliding.inner.lock();
            if let Some(conns) = inner.devices.get_mut(&device_key) {
                conns.remove(&conn_id);
            }
            None
        }
        Some(pos) => {
            let pos: u64 = pos.parse().map_err(|_| unknown_pos())?;
            let mut inner = hs.sliding.inner.lock();
            let conn = inner
                .devices
                .get_mut(&device_key)
                .and_then(|c| c.get_mut(&conn_id))
                .ok_or_else(unknown_pos)?;
            // "Once a server has seen a request with a given `pos`, the
            // server may clean up any per-connection state from before that
            // `pos`": and the responses after it, which the client dropped.
            conn.snapshots.retain(|(p, _)| *p == pos);
            Some(conn.snapshots.first().ok_or_else(unknown_pos)?.1.clone())
        }
    };
    let timeout = match (&snapshot, req.timeout) {
        (Some(_), Some(t)) => t.min(max_timeout),
        _ => Duration::ZERO,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut typing_rx = hs.typing.subscribe();
    loop {
        let typing_seen = *typing_rx.borrow_and_update();
        let (mut response, next, empty) = compute(hs, auth, snapshot.as_deref(), &req)?;
        if !empty || snapshot.is_none() || tokio::time::Instant::now() >= deadline {
            response.pos = store_snapshot(hs, device_key, conn_id, next).to_string();
            response.txn_id = req.txn_id.clone();
            return Ok(response);
        }
        // "If no rooms have changes, the server will block waiting for a
        // change (aka long-polling, like `/v3/sync`)."
        let woken =
            crate::sync::wait_for_news(hs, auth, next.to, &mut typing_rx, typing_seen, deadline)
                .await?;
        if !woken {
            response.pos = store_snapshot(hs, device_key, conn_id, next).to_string();
            return Ok(response);
        }
    }
}

fn store_snapshot(
    hs: &Homeserver,
    device_key: (String, String),
    conn_id: String,
    next: Snapshot,
) -> u64 {
    let mut inner = hs.sliding.inner.lock();
    inner.next_pos += 1;
    let pos = inner.next_pos;
    if inner.devices.get_mut(&device_key).is_none() {
        inner
            .devices
            .insert(device_key.clone(), LruCache::new(CONNECTIONS_PER_DEVICE));
    }
    let conns = inner.devices.get_mut(&device_key).expect("just inserted");
    if conns.get_mut(&conn_id).is_none() {
        conns.insert(conn_id.clone(), Connection::default());
    }
    let conn = conns.get_mut(&conn_id).expect("just inserted");
    conn.snapshots.push((pos, Arc::new(next)));
    if conn.snapshots.len() > SNAPSHOTS_PER_CONNECTION {
        conn.snapshots.remove(0);
    }
    pos
}

/// Bounds on what one request may ask for.
fn validate(req: &Request) -> ApiResult<()> {
    if req.lists.len() > MAX_LISTS {
        return Err(MatrixError::invalid_param(format!(
            "at most {MAX_LISTS} lists"
        )));
    }
    if req.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(MatrixError::invalid_param(format!(
            "at most {MAX_SUBSCRIPTIONS} room subscriptions"
        )));
    }
    if req
        .conn_id
        .as_ref()
        .is_some_and(|c| c.len() > MAX_CONN_ID_LEN)
    {
        return Err(MatrixError::invalid_param(format!(
            "conn_id is longer than {MAX_CONN_ID_LEN} bytes"
        )));
    }
    for (name, list) in &req.lists {
        if name.len() > 255 {
            return Err(MatrixError::invalid_param("list name too long"));
        }
        if list.ranges.len() > MAX_RANGES_PER_LIST {
            return Err(MatrixError::invalid_param(format!(
                "at most {MAX_RANGES_PER_LIST} ranges per list"
            )));
        }
        if list.ranges.iter().any(|(a, b)| a > b) {
            return Err(MatrixError::invalid_param(
                "a range must not start after its end",
            ));
        }
        if list.room_details.required_state.len() > MAX_REQUIRED_STATE {
            return Err(MatrixError::invalid_param(
                "too many required_state entries",
            ));
        }
    }
    if req
        .room_subscriptions
        .values()
        .any(|s| s.required_state.len() > MAX_REQUIRED_STATE)
    {
        return Err(MatrixError::invalid_param(
            "too many required_state entries",
        ));
    }
    Ok(())
}

fn raw<T>(v: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(v).expect("a JSON value serialises"))
}

fn uint(n: u64) -> UInt {
    UInt::new_saturating(n)
}

/// The room IDs in the user's `m.direct` account data.
fn direct_rooms(hs: &Homeserver, user: &str) -> ApiResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if let Some(Value::Object(by_user)) = hs.store.account_data(user, None, "m.direct")? {
        for rooms in by_user.values() {
            for r in rooms.as_array().into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    out.insert(r.to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// The server-side room list: "the set of rooms that the user either
/// joined, been invited, knocked on, left, or been kicked or banned from,
/// sorted by recent activity".
fn candidates(
    hs: &Homeserver,
    user: &str,
    to: u64,
    snapshot: Option<&Snapshot>,
) -> ApiResult<Vec<Candidate>> {
    let direct = direct_rooms(hs, user)?;
    let memberships = hs.store.user_memberships(user)?;
    let mut out = Vec::with_capacity(memberships.len());
    for m in &memberships {
        if m.forgotten || m.stream_pos > to {
            continue;
        }
        let keep = match m.membership.as_str() {
            "join" | "invite" | "knock" => true,
            "leave" | "ban" => {
                let sent_before = snapshot.is_some_and(|s| s.rooms.contains_key(&m.room_id));
                let by_self = hs
                    .store
                    .event(&m.event_id)?
                    .is_some_and(|e| e.value()["sender"] == user);
                // "We do not include rooms the user has left themselves
                // [...] but we still include kicked and banned rooms";
                // "rooms the user has been banned from, but never joined,
                // should not be part of the list".
                sent_before
                    || (!by_self
                        && (m.membership == "leave"
                            || hs.store.first_join(&m.room_id, user)?.is_some()))
            }
            _ => false,
        };
        if keep {
            out.push(Candidate {
                room_id: m.room_id.clone(),
                membership: m.membership.clone(),
                membership_pos: m.stream_pos,
                event_id: m.event_id.clone(),
                remote_invite_state: None,
                bump: m.stream_pos,
                is_dm: direct.contains(&m.room_id),
            });
        }
    }
    for inv in hs.store.remote_invites(user)? {
        if inv.membership != "invite"
            || inv.stream_pos > to
            || memberships.iter().any(|m| m.room_id == inv.room_id)
        {
            continue;
        }
        out.push(Candidate {
            is_dm: direct.contains(&inv.room_id),
            room_id: inv.room_id,
            membership: inv.membership,
            membership_pos: inv.stream_pos,
            event_id: inv.event_id,
            remote_invite_state: Some(inv.invite_state),
            bump: inv.stream_pos,
        });
    }
    let joined: Vec<String> = out
        .iter()
        .filter(|c| c.membership == "join")
        .map(|c| c.room_id.clone())
        .collect();
    let bumps = bump_stamps(hs, &joined, to)?;
    for c in &mut out {
        // "For rooms that the user is not currently joined to, this instead
        // represents when the relevant membership happened."
        if c.membership == "join" {
            if let Some(b) = bumps.get(&c.room_id) {
                c.bump = *b;
            }
        }
    }
    out.sort_by(|a, b| b.bump.cmp(&a.bump).then_with(|| a.room_id.cmp(&b.room_id)));
    Ok(out)
}

/// The stream position of each room's latest event of a bump type, from
/// the cache, looking only at events after what the cache has seen.
fn bump_stamps(hs: &Homeserver, rooms: &[String], to: u64) -> ApiResult<HashMap<String, u64>> {
    let cached: Vec<Option<Bump>> = {
        let mut cache = hs.sliding.bumps.lock();
        rooms.iter().map(|r| cache.get(r).copied()).collect()
    };
    let mut out = HashMap::with_capacity(rooms.len());
    let mut updates = Vec::new();
    // Rooms the cache knows: which had events since they were looked at.
    let stale: Vec<(String, Bump)> = rooms
        .iter()
        .zip(&cached)
        .filter_map(|(r, b)| b.filter(|b| b.checked < to).map(|b| (r.clone(), b)))
        .collect();
    let active: BTreeSet<String> = match stale.iter().map(|(_, b)| b.checked).min() {
        Some(from) => {
            let ids: Vec<String> = stale.iter().map(|(r, _)| r.clone()).collect();
            hs.store
                .rooms_with_events(&ids, from, to)?
                .into_iter()
                .collect()
        }
        None => BTreeSet::new(),
    };
    for (room, bump) in rooms.iter().zip(cached) {
        let bump = match bump {
            Some(b) if b.checked >= to => b,
            Some(b) if !active.contains(room) => Bump { checked: to, ..b },
            Some(b) => Bump {
                checked: to,
                stamp: scan_for_bump(hs, room, b.checked, to)?.or(b.stamp),
            },
            None => Bump {
                checked: to,
                stamp: scan_for_bump(hs, room, 0, to)?,
            },
        };
        if let Some(s) = bump.stamp {
            out.insert(room.clone(), s);
        }
        updates.push((room.clone(), bump));
    }
    let mut cache = hs.sliding.bumps.lock();
    for (room, bump) in updates {
        let keep = cache.get(&room).is_some_and(|b| b.checked > bump.checked);
        if !keep {
            cache.insert(room, bump);
        }
    }
    Ok(out)
}

/// The newest event of a bump type in `(from, to]`; after
/// [`BUMP_SCAN_LIMIT`] events without one, the newest event.
fn scan_for_bump(hs: &Homeserver, room: &str, from: u64, to: u64) -> ApiResult<Option<u64>> {
    const BATCH: usize = 64;
    let mut upper = to;
    let mut newest = None;
    let mut scanned = 0;
    while upper > from && scanned < BUMP_SCAN_LIMIT {
        let batch = hs.store.room_events(room, from, upper, true, BATCH)?;
        for e in &batch {
            newest.get_or_insert(e.stream_pos);
            let v = e.value();
            if v["type"].as_str().is_some_and(|t| BUMP_TYPES.contains(&t)) {
                return Ok(Some(e.stream_pos));
            }
        }
        scanned += batch.len();
        match batch.last() {
            Some(last) if batch.len() == BATCH => upper = last.stream_pos.saturating_sub(1),
            _ => return Ok(None),
        }
    }
    Ok(if scanned >= BUMP_SCAN_LIMIT {
        newest
    } else {
        None
    })
}

/// Whether a room passes a list's filters ("All fields are applied with
/// _AND_ operators").
fn passes(hs: &Homeserver, f: Option<&rq::ListFilters>, c: &Candidate) -> ApiResult<bool> {
    let Some(f) = f else { return Ok(true) };
    if f.is_dm.is_some_and(|dm| dm != c.is_dm) {
        return Ok(false);
    }
    if f.is_invite
        .is_some_and(|inv| inv != (c.membership == "invite"))
    {
        return Ok(false);
    }
    if f.is_encrypted.is_none() && f.room_types.is_empty() && f.not_room_types.is_empty() {
        return Ok(true);
    }
    // The create and encryption events: an invite from another server has
    // only its stripped state to tell.
    let (create, encryption): (Option<Value>, Option<Value>) = match &c.remote_invite_state {
        Some(state) => {
            let find = |t: &str| state.iter().find(|e| e["type"] == t).cloned();
            (find("m.room.create"), find("m.room.encryption"))
        }
        None => {
            let group = hs.store.room_state_group(&c.room_id)?;
            let mut found = match group {
                Some(g) => hs.store.state_events_at_group(
                    g,
                    &[("m.room.create", ""), ("m.room.encryption", "")],
                )?,
                None => Vec::new(),
            }
            .into_iter()
            .map(|e| e.map(|e| e.value()));
            (found.next().flatten(), found.next().flatten())
        }
    };
    if f.is_encrypted
        .is_some_and(|want| want != encryption.is_some())
    {
        return Ok(false);
    }
    // "`room_types`: If specified, only rooms where the `m.room.create`
    // event has a `type` matching one of the strings in this array will be
    // returned. [...] For rooms which do not have a room type, use `null`";
    // "If a type is in both `room_types` and `not_room_types`, then
    // `not_room_types` wins".
    let room_type = create
        .as_ref()
        .and_then(|c| c["content"]["type"].as_str().map(str::to_owned));
    let is = |t: &ruma::directory::RoomTypeFilter| t.as_str() == room_type.as_deref();
    if !f.room_types.is_empty() && !f.room_types.iter().any(is) {
        return Ok(false);
    }
    if f.not_room_types.iter().any(is) {
        return Ok(false);
    }
    Ok(true)
}

/// The response for the window from the snapshot to now, the snapshot
/// after it, and whether it carries nothing new.
fn compute(
    hs: &Homeserver,
    auth: &Auth,
    snapshot: Option<&Snapshot>,
    req: &Request,
) -> ApiResult<(Response, Snapshot, bool)> {
    let user = auth.user_id.as_str();
    let to = hs.store.stream_position();
    let typing_now = hs.typing.serial();
    let empty_snapshot = Snapshot::default();
    let old = snapshot.unwrap_or(&empty_snapshot);
    let mut next = Snapshot {
        to,
        typing: typing_now,
        rooms: old.rooms.clone(),
        counts: BTreeMap::new(),
        clock: old.clock,
    };
    let mut response = Response::new(String::new());

    let candidates = candidates(hs, user, to, snapshot)?;
    let by_id: HashMap<&str, &Candidate> =
        candidates.iter().map(|c| (c.room_id.as_str(), c)).collect();

    // Which rooms the lists and subscriptions select, with their combined
    // config, and which rooms each list's range holds.
    let mut selected: BTreeMap<String, RoomConfig> = BTreeMap::new();
    let mut list_rooms: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, list) in &req.lists {
        let config = RoomConfig::from_parts(
            list.room_details.timeline_limit,
            &list.room_details.required_state,
        );
        let mut filtered = Vec::new();
        for c in &candidates {
            if passes(hs, list.filters.as_ref(), c)? {
                filtered.push(c);
            }
        }
        let count = uint(filtered.len() as u64);
        let mut in_range = Vec::new();
        for (a, b) in &list.ranges {
            let (a, b) = (u64::from(*a) as usize, u64::from(*b) as usize);
            for c in filtered.iter().skip(a).take(b.saturating_sub(a) + 1) {
                selected
                    .entry(c.room_id.clone())
                    .or_default()
                    .combine(&config);
                in_range.push(c.room_id.clone());
            }
        }
        list_rooms.insert(name, in_range);
        let mut result = rs::List::default();
        result.count = count;
        response.lists.insert(name.clone(), result);
        next.counts.insert(name.clone(), count);
    }
    // "Rooms that a user subscribes to that they do not have permission to
    // see, or that does not exist, should be ignored by the server."
    for (room, sub) in &req.room_subscriptions {
        if by_id.contains_key(room.as_str()) {
            selected
                .entry(room.to_string())
                .or_default()
                .combine(&RoomConfig::from_parts(
                    sub.timeline_limit,
                    &sub.required_state,
                ));
        }
    }

    // Rooms sent before with the same membership and no wider config: only
    // sent again if they have new events.
    let mut by_at: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (room, config) in &selected {
        let c = by_id[room.as_str()];
        if let Some(sent) = old.rooms.get(room) {
            if sent.membership_pos == c.membership_pos && !config.expands(&sent.config) {
                if c.membership == "join" && sent.at < to {
                    by_at.entry(sent.at).or_default().push(room.clone());
                }
                continue;
            }
        }
    }
    let mut active = BTreeSet::new();
    for (at, rooms) in &by_at {
        active.extend(hs.store.rooms_with_events(rooms, *at, to)?);
    }

    let mut initial_rooms = BTreeSet::new();
    for (room, config) in &selected {
        let c = by_id[room.as_str()];
        let sent = old
            .rooms
            .get(room)
            .filter(|s| s.membership_pos == c.membership_pos && !config.expands(&s.config));
        if sent.is_some() && !active.contains(room) {
            continue;
        }
        if sent.is_none() {
            initial_rooms.insert(room.clone());
        }
        next.clock += 1;
        let (result, record) = room_result(hs, auth, c, config, sent, snapshot, to, next.clock)?;
        if let Some(result) = result {
            let id = OwnedRoomId::try_from(room.as_str())
                .map_err(|_| MatrixError::unknown_internal("stored room ID is invalid"))?;
            response.rooms.insert(id, result);
        }
        next.rooms.insert(room.clone(), record);
    }
    evict_rooms(&mut next);

    let ext = extensions(
        hs,
        auth,
        req,
        old,
        snapshot.is_none(),
        &list_rooms,
        &initial_rooms,
        to,
    )?;
    let empty = response.rooms.is_empty()
        && ext.to_device.as_ref().is_none_or(|t| t.events.is_empty())
        && ext.e2ee.device_lists.is_empty()
        && ext.account_data.is_empty()
        && ext.receipts.is_empty()
        && ext.typing.is_empty()
        && next.counts == old.counts;
    response.extensions = ext;
    Ok((response, next, empty))
}

/// Keeps a connection's room memory under its bound, forgetting the rooms
/// sent longest ago (they will be sent whole again).
fn evict_rooms(s: &mut Snapshot) {
    if s.rooms.len() <= MAX_ROOMS_PER_CONNECTION {
        return;
    }
    let mut ages: Vec<(u64, String)> = s
        .rooms
        .iter()
        .map(|(r, sent)| (sent.last_sent, r.clone()))
        .collect();
    ages.sort();
    let excess = s.rooms.len() - MAX_ROOMS_PER_CONNECTION;
    for (_, r) in ages.into_iter().take(excess) {
        s.rooms.remove(&r);
    }
}

/// `(type, state_key)` → event ID.
type StateMap = HashMap<(String, String), String>;

/// The room state after the newest event at or before `pos`, and its group.
fn state_at(hs: &Homeserver, room: &str, pos: u64) -> ApiResult<(Option<i64>, StateMap)> {
    match hs
        .store
        .room_events(room, 0, pos, true, 1)?
        .into_iter()
        .next()
    {
        Some(e) => Ok((Some(e.state_group), hs.store.state_at_group(e.state_group)?)),
        None => Ok((None, HashMap::new())),
    }
}

/// One room's entry (`None` when it turns out to have nothing to show) and
/// what the connection remembers of it afterwards. `sent` is what was sent
/// before, if the room is sent incrementally.
#[allow(clippy::too_many_arguments)]
fn room_result(
    hs: &Homeserver,
    auth: &Auth,
    c: &Candidate,
    config: &RoomConfig,
    sent: Option<&RoomSent>,
    snapshot: Option<&Snapshot>,
    to: u64,
    clock: u64,
) -> ApiResult<(Option<rs::Room>, RoomSent)> {
    let user = auth.user_id.as_str();
    let mut room = rs::Room::new();
    let mut record = RoomSent {
        at: to,
        membership_pos: c.membership_pos,
        state_group: None,
        config: config.clone(),
        members_sent: HashMap::new(),
        bump_stamp: Some(c.bump),
        last_sent: clock,
    };
    if sent.is_none_or(|s| s.bump_stamp != Some(c.bump)) {
        room.bump_stamp = Some(uint(c.bump));
    }
    if c.membership == "invite" || c.membership == "knock" {
        // "For rooms the user has not been joined to the client also gets
        // the stripped state events."
        let state = match &c.remote_invite_state {
            Some(s) => s.clone(),
            None => crate::sync::invite_state(hs, &c.room_id, &c.event_id)?,
        };
        room.invite_state = Some(state.iter().map(raw).collect());
        room.initial = Some(true);
        if c.is_dm {
            room.is_dm = Some(true);
        }
        return Ok((Some(room), record));
    }

    // Joined rooms show everything up to now; rooms left, kicked or banned
    // from up to the membership change.
    let window_to = if c.membership == "join" {
        to
    } else {
        c.membership_pos.min(to)
    };
    record.at = window_to;
    let from = sent.map(|s| s.at).unwrap_or(0);
    let limit = config.timeline_limit;
    let mut events = hs
        .store
        .room_events(&c.room_id, from, window_to, true, limit + 1)?;
    let newest_group = match events.first() {
        Some(e) => Some(e.state_group),
        None if sent.is_none() => state_at(hs, &c.room_id, window_to)?.0,
        None => sent.and_then(|s| s.state_group),
    };
    let limited = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    // Only what the user may see (Room History Visibility): a later joiner
    // of a `joined` room gets no earlier messages.
    let mut view = crate::visibility::UserView::new(hs, &c.room_id, user)?;
    let events = view.filter(events)?;
    if sent.is_some() && events.is_empty() && newest_group == sent.and_then(|s| s.state_group) {
        record.state_group = newest_group;
        record.members_sent = sent.map(|s| s.members_sent.clone()).unwrap_or_default();
        return Ok((None, record));
    }

    let viewer = Some((user, auth.device_id.as_str()));
    let now = now_ms();
    let live_from = snapshot.map(|s| s.to);
    let mut timeline = Vec::with_capacity(events.len());
    let mut num_live = 0u64;
    for e in &events {
        if live_from.is_some_and(|f| e.stream_pos > f) {
            num_live += 1;
        }
        let mut v = client_event(&e.json, &e.event_id, &c.room_id, viewer, now);
        hs.bundle_aggregations(&mut view, (user, auth.device_id.as_str()), e, &mut v)?;
        timeline.push(raw(&without_room_id(v)));
    }
    room.timeline = timeline;
    room.limited = limited;
    room.num_live = Some(uint(num_live));
    let start = events
        .first()
        .map(|e| e.stream_pos)
        .unwrap_or(window_to + 1);
    room.prev_batch = Some(format!("t{}", start.saturating_sub(1)));

    // State: all of it for a room sent whole, what changed otherwise.
    let state: HashMap<(String, String), String> = match newest_group {
        Some(g) => hs.store.state_at_group(g)?,
        None => HashMap::new(),
    };
    record.state_group = newest_group;
    let old_state = match sent.and_then(|s| s.state_group) {
        Some(g) if Some(g) != newest_group => Some(hs.store.state_at_group(g)?),
        Some(_) => Some(state.clone()),
        None => None,
    };
    let changed = |k: &(String, String)| -> bool {
        old_state
            .as_ref()
            .is_none_or(|old| old.get(k) != state.get(k))
    };
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (k, id) in &state {
        if config.wants(&k.0, &k.1, user) && changed(k) {
            wanted.insert(id.clone());
        }
    }
    // Lazy-loaded members: "All the `senders` of events in
    // `timeline_events`, excluding membership events that were previously
    // returned" and "the target (i.e. `state_key`) of all membership events
    // in `timeline_events`". Clients "must flush any 'membership' cache
    // when `limited` is true", so then everything is sent again.
    let mut members_sent = match sent {
        Some(s) if !limited => s.members_sent.clone(),
        _ => HashMap::new(),
    };
    if config.lazy_members() {
        let mut relevant = BTreeSet::new();
        for e in &events {
            let v = e.value();
            if let Some(s) = v["sender"].as_str() {
                relevant.insert(s.to_owned());
            }
            if v["type"] == "m.room.member" {
                if let Some(t) = v["state_key"].as_str() {
                    relevant.insert(t.to_owned());
                }
            }
        }
        for member in relevant {
            let Some(id) = state.get(&("m.room.member".to_owned(), member.clone())) else {
                continue;
            };
            if members_sent.get(&member) != Some(id) {
                wanted.insert(id.clone());
            }
            if members_sent.len() < MAX_LAZY_MEMBERS {
                members_sent.insert(member, id.clone());
            }
        }
    }
    record.members_sent = members_sent;
    let mut required_state = Vec::with_capacity(wanted.len());
    for id in &wanted {
        if let Some(e) = hs.store.event(id)? {
            let e = view.present(e)?;
            required_state.push(raw(&without_room_id(client_event(
                &e.json,
                &e.event_id,
                &c.room_id,
                viewer,
                now,
            ))));
        }
    }
    room.required_state = required_state;

    // Name, avatar and heroes: sent whole the first time, then when they
    // change.
    let name_key = ("m.room.name".to_owned(), String::new());
    let avatar_key = ("m.room.avatar".to_owned(), String::new());
    let content_of = |k: &(String, String)| -> ApiResult<Option<Value>> {
        match state.get(k) {
            Some(id) => Ok(hs.store.event(id)?.map(|e| e.value()["content"].clone())),
            None => Ok(None),
        }
    };
    let name = content_of(&name_key)?
        .and_then(|c| c["name"].as_str().map(str::to_owned))
        .filter(|n| !n.is_empty());
    if changed(&name_key) {
        room.name = name.clone();
    }
    if changed(&avatar_key) {
        let url = content_of(&avatar_key)?.and_then(|c| c["url"].as_str().map(OwnedMxcUri::from));
        room.avatar = match url {
            Some(u) => JsOption::Some(u),
            None if sent.is_some() => JsOption::Null,
            None => JsOption::Undefined,
        };
    }
    let members_changed = old_state.as_ref().is_none_or(|old| {
        state
            .iter()
            .any(|(k, v)| k.0 == "m.room.member" && old.get(k) != Some(v))
    });
    if c.membership == "join" {
        if members_changed {
            let members = hs.store.room_members(&c.room_id, None)?;
            let joined = members.iter().filter(|(_, m)| m == "join").count();
            let invited = members.iter().filter(|(_, m)| m == "invite").count();
            room.joined_count = Some(uint(joined as u64));
            room.invited_count = Some(uint(invited as u64));
            // "Heroes are only included if the room name is not set"; "first
            // include joined users, then invited users, and then finally left
            // users".
            if name.is_none() {
                let mut heroes = Vec::new();
                for wanted in ["join", "invite", "leave"] {
                    for (u, _) in members.iter().filter(|(u, m)| m == wanted && u != user) {
                        if heroes.len() == HEROES {
                            break;
                        }
                        let Ok(uid) = OwnedUserId::try_from(u.as_str()) else {
                            continue;
                        };
                        let mut hero = rs::Hero::new(uid);
                        if let Some(content) = content_of(&("m.room.member".to_owned(), u.clone()))?
                        {
                            hero.name = content["displayname"].as_str().map(str::to_owned);
                            hero.avatar = content["avatar_url"].as_str().map(OwnedMxcUri::from);
                        }
                        heroes.push(hero);
                    }
                }
                room.heroes = Some(heroes);
            }
        }
        let (notifications, highlights) = hs.store.notification_counts(&c.room_id, user)?;
        let mut counts = UnreadNotificationsCount::new();
        counts.notification_count = Some(uint(notifications));
        counts.highlight_count = Some(uint(highlights));
        room.unread_notifications = counts;
    }
    if sent.is_none() {
        room.initial = Some(true);
        if c.is_dm {
            room.is_dm = Some(true);
        }
    }
    Ok((Some(room), record))
}

/// Whether an extension applies to a room: "`lists`: List of list names for
/// which [it] should be enabled. If not defined, will be enabled for *all*
/// the lists appearing in the request"; `rooms` likewise for subscriptions.
fn extension_rooms(
    req: &Request,
    lists: &Option<Vec<String>>,
    rooms: &Option<Vec<rq::ExtensionRoomConfig>>,
    list_rooms: &BTreeMap<&str, Vec<String>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, in_range) in list_rooms {
        if lists.as_ref().is_none_or(|l| l.iter().any(|n| n == name)) {
            out.extend(in_range.iter().cloned());
        }
    }
    match rooms {
        None => out.extend(req.room_subscriptions.keys().map(|r| r.to_string())),
        Some(configs) => {
            for c in configs {
                match c {
                    rq::ExtensionRoomConfig::AllSubscribed => {
                        out.extend(req.room_subscriptions.keys().map(|r| r.to_string()))
                    }
                    rq::ExtensionRoomConfig::Room(r) => {
                        out.insert(r.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn extensions(
    hs: &Homeserver,
    auth: &Auth,
    req: &Request,
    old: &Snapshot,
    initial: bool,
    list_rooms: &BTreeMap<&str, Vec<String>>,
    initial_rooms: &BTreeSet<String>,
    to: u64,
) -> ApiResult<rs::Extensions> {
    let user = auth.user_id.as_str();
    let from = old.to;
    let ext = &req.extensions;
    let mut out = rs::Extensions::default();
    // Rooms the user is joined to (receipts and typing are for members).
    let joined: BTreeSet<String> = hs
        .store
        .user_memberships(user)?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .collect();

    if ext.to_device.enabled == Some(true) {
        // MSC3885: "since: Give messages since this token only"; messages
        // up to it were received and are deleted.
        let since = match &ext.to_device.since {
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| MatrixError::invalid_param("invalid to_device since token"))?,
            None => 0,
        };
        let limit = ext
            .to_device
            .limit
            .map(|l| (u64::from(l) as usize).clamp(1, TO_DEVICE_LIMIT))
            .unwrap_or(TO_DEVICE_LIMIT);
        let messages = hs
            .store
            .to_device_since(user, &auth.device_id, since, to, limit)?;
        let next_batch = if messages.len() == limit {
            messages.last().map(|(p, _)| *p).unwrap_or(to)
        } else {
            to.max(since)
        };
        let mut td = rs::ToDevice::default();
        td.next_batch = next_batch.to_string();
        td.events = messages.iter().map(|(_, v)| raw(v)).collect();
        out.to_device = Some(td);
    }

    if ext.e2ee.enabled == Some(true) {
        let mut lists = DeviceLists::new();
        if !initial {
            let (changed, left) = hs.device_list_delta(user, from, to)?;
            lists.changed = changed
                .iter()
                .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
                .collect();
            lists.left = left
                .iter()
                .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
                .collect();
        }
        out.e2ee.device_lists = lists;
        out.e2ee.device_one_time_keys_count = hs
            .store
            .one_time_key_counts(user, &auth.device_id)?
            .into_iter()
            .map(|(alg, n)| (OneTimeKeyAlgorithm::from(alg.as_str()), uint(n)))
            .collect();
        out.e2ee.device_unused_fallback_key_types = Some(
            hs.store
                .unused_fallback_key_types(user, &auth.device_id)?
                .iter()
                .map(|a| OneTimeKeyAlgorithm::from(a.as_str()))
                .collect(),
        );
    }

    if ext.account_data.enabled == Some(true) {
        let rooms = extension_rooms(
            req,
            &ext.account_data.lists,
            &ext.account_data.rooms,
            list_rooms,
        );
        let delta = hs.store.account_data_since(user, from, to)?;
        let all = if initial || rooms.iter().any(|r| initial_rooms.contains(r)) {
            hs.store.account_data_since(user, 0, to)?
        } else {
            Vec::new()
        };
        let mut have_push_rules = false;
        for (room, kind, content) in &delta {
            if room.is_empty() {
                have_push_rules |= kind == push::PUSH_RULES;
                out.account_data
                    .global
                    .push(raw(&json!({ "type": kind, "content": content })));
            }
        }
        if initial && !have_push_rules {
            if let Ok(uid) = OwnedUserId::try_from(user) {
                out.account_data.global.push(raw(
                    &json!({ "type": push::PUSH_RULES, "content": push::ruleset_json(hs, &uid) }),
                ));
            }
        }
        for room in &rooms {
            let source = if initial_rooms.contains(room) {
                &all
            } else {
                &delta
            };
            let events: Vec<_> = source
                .iter()
                .filter(|(r, _, _)| r == room)
                .map(|(_, kind, content)| raw(&json!({ "type": kind, "content": content })))
                .collect();
            if !events.is_empty() {
                if let Ok(id) = OwnedRoomId::try_from(room.as_str()) {
                    out.account_data.rooms.insert(id, events);
                }
            }
        }
    }

    if ext.receipts.enabled == Some(true) {
        let rooms: Vec<String> =
            extension_rooms(req, &ext.receipts.lists, &ext.receipts.rooms, list_rooms)
                .into_iter()
                .filter(|r| joined.contains(r))
                .collect();
        let (fresh, seen): (Vec<String>, Vec<String>) =
            rooms.into_iter().partition(|r| initial_rooms.contains(r));
        let mut receipts = hs.store.receipts_since(&seen, from, to)?;
        receipts.extend(hs.store.receipts_since(&fresh, 0, to)?);
        let mut by_room: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
        for r in receipts {
            if r.receipt_type == "m.read.private" && r.user_id != user {
                continue;
            }
            let mut data = json!({ "ts": r.ts });
            if !r.thread_id.is_empty() {
                data["thread_id"] = json!(r.thread_id);
            }
            let types = by_room
                .entry(r.room_id)
                .or_default()
                .entry(r.event_id)
                .or_default();
            let users = types.entry(r.receipt_type).or_insert_with(|| json!({}));
            users[r.user_id] = data;
        }
        for (room, content) in by_room {
            if let Ok(id) = OwnedRoomId::try_from(room.as_str()) {
                out.receipts
                    .rooms
                    .insert(id, raw(&json!({ "type": "m.receipt", "content": content })));
            }
        }
    }

    if ext.typing.enabled == Some(true) {
        let rooms = extension_rooms(req, &ext.typing.lists, &ext.typing.rooms, list_rooms);
        for room in rooms.iter().filter(|r| joined.contains(*r)) {
            let since = if initial_rooms.contains(room) {
                0
            } else {
                old.typing
            };
            if let Some(users) = hs.typing.changed_since(room, since) {
                if let Ok(id) = OwnedRoomId::try_from(room.as_str()) {
                    out.typing.rooms.insert(
                        id,
                        raw(&json!({ "type": "m.typing", "content": { "user_ids": users } })),
                    );
                }
            }
        }
    }
    Ok(out)
}
