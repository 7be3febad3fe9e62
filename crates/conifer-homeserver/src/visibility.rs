//! Who may see which events of a room.
//!
//! Users: the Client-Server API's "Room History Visibility" module, server
//! behaviour: "The rules governing whether a user is allowed to see an event
//! depend on the state of the room *at that event*":
//!
//! 1. If the `history_visibility` was set to `world_readable`, allow.
//! 2. If the user's `membership` was `join`, allow.
//! 3. If `history_visibility` was set to `shared`, and the user joined the
//!    room at any point after the event was sent, allow.
//! 4. If the user's `membership` was `invite`, and the `history_visibility`
//!    was set to `invited`, allow.
//! 5. Otherwise, deny.
//!
//! plus the two exceptions the module names: an `m.room.history_visibility`
//! event is visible if the visibility before *or* after it allows it, and a
//! user's own `m.room.member` event if the membership before *or* after it
//! does. "By default if no `history_visibility` is set, or if the value is
//! not understood, the visibility is assumed to be `shared`."
//!
//! Servers (federation reads: `/event`, `/backfill`, `/get_missing_events`):
//! an event whose visibility was `invited` or `joined` is shown in full only
//! to a server that had a member invited or joined (`joined`: joined) at the
//! event; any other server gets it redacted, so the room's graph stays whole
//! but the content does not leak.
//!
//! Erasure (`POST /account/deactivate` with `erase: true`): "any users (or
//! servers) which join the room after the erasure request are served
//! redacted copies of the events sent by this account. Users which had
//! visibility on those events prior to the erasure are still able to see
//! unredacted copies." A user who first joined the room before the
//! erasure request sees the originals; anyone else gets them redacted.
//!
//! History stored without state (events from before this server joined,
//! fetched by backfill, have no state group) is judged by the deepest
//! `m.room.history_visibility` and membership events at or below its depth.

use crate::error::ApiResult;
use crate::Homeserver;
use conifer_store::StoredEvent;
use serde_json::Value;
use std::collections::HashMap;

const HISTORY_VISIBILITY: &str = "m.room.history_visibility";
const MEMBER: &str = "m.room.member";

/// The four values of `m.room.history_visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    /// Reads an `m.room.history_visibility` event's content; absent or not
    /// understood means `shared`.
    pub fn from_event(event: Option<&StoredEvent>) -> Self {
        let Some(e) = event else {
            return Self::Shared;
        };
        match e.value()["content"]["history_visibility"].as_str() {
            Some("world_readable") => Self::WorldReadable,
            Some("invited") => Self::Invited,
            Some("joined") => Self::Joined,
            _ => Self::Shared,
        }
    }
}

/// The membership a stored `m.room.member` event sets.
fn membership_of(event: Option<&StoredEvent>) -> Option<String> {
    event.and_then(|e| {
        e.value()["content"]["membership"]
            .as_str()
            .map(str::to_owned)
    })
}

/// The spec's rules 1 to 5 for one visibility and one membership.
fn user_allowed(
    visibility: HistoryVisibility,
    membership: Option<&str>,
    joined_after: &mut dyn FnMut() -> ApiResult<bool>,
) -> ApiResult<bool> {
    Ok(match visibility {
        HistoryVisibility::WorldReadable => true,
        _ if membership == Some("join") => true,
        HistoryVisibility::Shared => joined_after()?,
        HistoryVisibility::Invited => membership == Some("invite"),
        HistoryVisibility::Joined => false,
    })
}

/// The parts of the room state one user's view of an event depends on.
#[derive(Clone)]
struct StateAt {
    visibility: HistoryVisibility,
    membership: Option<String>,
}

/// Judges the events of one room for one user; remembers the state of each
/// state group it looked at, so a page of events costs a few lookups.
pub struct UserView<'a> {
    hs: &'a Homeserver,
    room: String,
    user: String,
    /// Stream position of the user's current join, if joined: everything
    /// from there on was sent while the user was joined (rule 2).
    joined_since: Option<u64>,
    by_group: HashMap<i64, StateAt>,
    /// Per sender: when they asked for erasure, if they did.
    erased: HashMap<String, Option<u64>>,
    /// The user's first join of the room (`None`: never joined).
    first_join: Option<Option<u64>>,
}

impl<'a> UserView<'a> {
    pub fn new(hs: &'a Homeserver, room: &str, user: &str) -> ApiResult<Self> {
        let joined_since = hs
            .store
            .membership(room, user)?
            .filter(|m| m.membership == "join")
            .map(|m| m.stream_pos);
        Ok(Self {
            hs,
            room: room.to_owned(),
            user: user.to_owned(),
            joined_since,
            by_group: HashMap::new(),
            erased: HashMap::new(),
            first_join: None,
        })
    }

    /// Keeps the events the user may see, in order, as the user may see
    /// them (redacted where their sender asked for erasure before the user
    /// joined).
    pub fn filter(&mut self, events: Vec<StoredEvent>) -> ApiResult<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if self.may_see(&e)? {
                out.push(self.present(e)?);
            }
        }
        Ok(out)
    }

    /// The event as this user is served it: redacted if its sender asked
    /// for erasure and the user did not join the room before that.
    pub fn present(&mut self, mut e: StoredEvent) -> ApiResult<StoredEvent> {
        let v = e.value();
        let Some(sender) = v["sender"].as_str() else {
            return Ok(e);
        };
        let erased = match self.erased.get(sender) {
            Some(at) => *at,
            None => {
                let at = if self.hs.is_local(sender) {
                    self.hs.store.erased_at(sender)?
                } else {
                    None
                };
                self.erased.insert(sender.to_owned(), at);
                at
            }
        };
        let Some(erased) = erased else {
            return Ok(e);
        };
        let first_join = match self.first_join {
            Some(j) => j,
            None => {
                let j = self.hs.store.first_join(&self.room, &self.user)?;
                self.first_join = Some(j);
                j
            }
        };
        if first_join.is_some_and(|j| j < erased) {
            return Ok(e);
        }
        let version = self.hs.room_version(&self.room);
        let redacted = redacted(v, version.as_deref());
        e.json = redacted.to_string();
        Ok(e)
    }

    pub fn may_see(&mut self, e: &StoredEvent) -> ApiResult<bool> {
        if self
            .joined_since
            .is_some_and(|since| e.stream_pos >= since && e.stream_pos > 0)
        {
            return Ok(true);
        }
        let v = e.value();
        let kind = v["type"].as_str().unwrap_or("");
        let state_key = v["state_key"].as_str();
        let after = self.state_after(e)?;
        let mut joined_after = || -> ApiResult<bool> {
            if self.joined_since.is_some() {
                return Ok(true);
            }
            Ok(self
                .hs
                .store
                .joined_after(&self.room, &self.user, e.stream_pos)?)
        };
        if user_allowed(
            after.visibility,
            after.membership.as_deref(),
            &mut joined_after,
        )? {
            return Ok(true);
        }
        let own_member = kind == MEMBER && state_key == Some(self.user.as_str());
        let visibility_change = kind == HISTORY_VISIBILITY && state_key == Some("");
        if !own_member && !visibility_change {
            return Ok(false);
        }
        let Some(before) = state_before(self.hs, &self.room, &self.user, e)? else {
            return Ok(false);
        };
        let (visibility, membership) = if own_member {
            (after.visibility, before.membership)
        } else {
            (before.visibility, after.membership)
        };
        let mut joined_after = || -> ApiResult<bool> {
            Ok(self.joined_since.is_some()
                || self
                    .hs
                    .store
                    .joined_after(&self.room, &self.user, e.stream_pos)?)
        };
        user_allowed(visibility, membership.as_deref(), &mut joined_after)
    }

    fn state_after(&mut self, e: &StoredEvent) -> ApiResult<StateAt> {
        if e.state_group == 0 {
            return state_by_depth(self.hs, &self.room, &self.user, e.depth);
        }
        if let Some(s) = self.by_group.get(&e.state_group) {
            return Ok(s.clone());
        }
        let s = state_at_group(self.hs, &self.user, e.state_group)?;
        self.by_group.insert(e.state_group, s.clone());
        Ok(s)
    }
}

fn state_at_group(hs: &Homeserver, user: &str, group: i64) -> ApiResult<StateAt> {
    let found = hs
        .store
        .state_events_at_group(group, &[(HISTORY_VISIBILITY, ""), (MEMBER, user)])?;
    Ok(StateAt {
        visibility: HistoryVisibility::from_event(found[0].as_ref()),
        membership: membership_of(found[1].as_ref()),
    })
}

fn state_by_depth(hs: &Homeserver, room: &str, user: &str, depth: i64) -> ApiResult<StateAt> {
    let visibility = hs
        .store
        .state_event_by_depth(room, HISTORY_VISIBILITY, "", depth)?;
    let member = hs.store.state_event_by_depth(room, MEMBER, user, depth)?;
    Ok(StateAt {
        visibility: HistoryVisibility::from_event(visibility.as_ref()),
        membership: membership_of(member.as_ref()),
    })
}

/// The state just before `e`: after its first stored predecessor. `None`
/// when no predecessor is stored.
fn state_before(
    hs: &Homeserver,
    room: &str,
    user: &str,
    e: &StoredEvent,
) -> ApiResult<Option<StateAt>> {
    if e.state_group == 0 {
        return Ok(Some(state_by_depth(hs, room, user, e.depth - 1)?));
    }
    let v = e.value();
    for prev in v["prev_events"].as_array().into_iter().flatten() {
        // Room versions 1 and 2 list `[id, hashes]` pairs.
        let id = prev
            .as_str()
            .or_else(|| prev.get(0).and_then(Value::as_str));
        let Some(p) = id.and_then(|id| hs.store.event(id).ok().flatten()) else {
            continue;
        };
        if p.state_group == 0 {
            return Ok(Some(state_by_depth(hs, room, user, p.depth)?));
        }
        return Ok(Some(state_at_group(hs, user, p.state_group)?));
    }
    Ok(None)
}

/// The room's current history visibility.
pub fn current_visibility(hs: &Homeserver, room: &str) -> ApiResult<HistoryVisibility> {
    let event = hs
        .state_event(room, HISTORY_VISIBILITY, "")?
        .map(|p| p.event_id.to_string());
    let stored = match event {
        Some(id) => hs.store.event(&id)?,
        None => None,
    };
    Ok(HistoryVisibility::from_event(stored.as_ref()))
}

/// Judges events of one room for another server (federation reads).
pub struct ServerView<'a> {
    hs: &'a Homeserver,
    server: &'a str,
    by_group: HashMap<i64, bool>,
}

impl<'a> ServerView<'a> {
    pub fn new(hs: &'a Homeserver, server: &'a str) -> Self {
        Self {
            hs,
            server,
            by_group: HashMap::new(),
        }
    }

    /// Whether the server may see the event in full (else it gets the
    /// redacted form).
    pub fn may_see(&mut self, e: &StoredEvent) -> ApiResult<bool> {
        if e.state_group == 0 {
            let room = e.room_id.as_str();
            let visibility = HistoryVisibility::from_event(
                self.hs
                    .store
                    .state_event_by_depth(room, HISTORY_VISIBILITY, "", e.depth)?
                    .as_ref(),
            );
            return Ok(matches!(
                visibility,
                HistoryVisibility::WorldReadable | HistoryVisibility::Shared
            ));
        }
        if let Some(&ok) = self.by_group.get(&e.state_group) {
            return Ok(ok);
        }
        let state = self.hs.store.state_at_group(e.state_group)?;
        let visibility = HistoryVisibility::from_event(
            match state.get(&(HISTORY_VISIBILITY.to_owned(), String::new())) {
                Some(id) => self.hs.store.event(id)?,
                None => None,
            }
            .as_ref(),
        );
        let ok = match visibility {
            HistoryVisibility::WorldReadable | HistoryVisibility::Shared => true,
            HistoryVisibility::Invited | HistoryVisibility::Joined => {
                let mut any = false;
                for ((kind, key), id) in &state {
                    let ours = kind == MEMBER
                        && key
                            .split_once(':')
                            .is_some_and(|(_, server)| server == self.server);
                    if !ours {
                        continue;
                    }
                    let m = membership_of(self.hs.store.event(id)?.as_ref());
                    if m.as_deref() == Some("join")
                        || (visibility == HistoryVisibility::Invited
                            && m.as_deref() == Some("invite"))
                    {
                        any = true;
                        break;
                    }
                }
                any
            }
        };
        self.by_group.insert(e.state_group, ok);
        Ok(ok)
    }
}

impl Homeserver {
    /// PDUs as federation sends them to `server`: in full where it may see
    /// them, redacted where not (the graph stays whole, the content stays
    /// private).
    pub(crate) fn pdus_for_server(
        &self,
        server: &str,
        pdus: &[std::sync::Arc<conifer_rooms::Pdu>],
    ) -> ApiResult<Vec<Value>> {
        let mut view = ServerView::new(self, server);
        let mut out = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            let json = crate::federation::join::federation_json(pdu);
            let visible = match self.store.event(pdu.event_id.as_str())? {
                Some(stored) => view.may_see(&stored)?,
                None => false,
            };
            if visible {
                out.push(json);
                continue;
            }
            let version = pdu
                .room_id
                .as_ref()
                .and_then(|r| self.room_version(r.as_str()));
            out.push(redacted(json, version.as_deref()));
        }
        Ok(out)
    }
}

/// The redacted form of a PDU under its room version's rules; if the
/// version is unknown, only the keys every version keeps.
fn redacted(json: Value, version: Option<&str>) -> Value {
    use conifer_rooms::ruma::canonical_json::{redact, try_from_json_map};
    let rules = version.and_then(conifer_rooms::rules_for);
    if let (Some((_, rules)), Value::Object(map)) = (rules, &json) {
        if let Ok(object) = try_from_json_map(map.clone()) {
            if let Ok(r) = redact(object, &rules.redaction, None) {
                if let Ok(v) = serde_json::to_value(r) {
                    return v;
                }
            }
        }
    }
    let mut v = json;
    if let Some(o) = v.as_object_mut() {
        o.insert("content".into(), Value::Object(Default::default()));
    }
    v
}
