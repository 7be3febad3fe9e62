//! The room service: building local events on the current state, checking
//! them against the auth rules and persisting them, one room at a time.

use crate::error::{ApiResult, MatrixError};
use crate::format::TXN_KEY;
use crate::{now_ms, push, Homeserver};
use conifer_rooms::ruma::canonical_json::{redact, try_from_json_map, RedactedBecause};
use conifer_rooms::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use conifer_rooms::{
    build_event, check_auth, create_room_events, resolve_state, rules_for, CreateRoomOptions,
    EventTemplate, Pdu, StateIdMap,
};
use conifer_store::{ForkState, NewEvent};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What the room service keeps in memory per room, under the room's lock.
pub struct RoomCache {
    pub version: String,
    pub state: HashMap<(String, String), OwnedEventId>,
    pub extremities: Vec<(OwnedEventId, i64)>,
}

impl RoomCache {
    /// Whether `pdu`'s only parent is the room's only forward extremity, so
    /// that the state before it is the current state.
    pub(crate) fn builds_on_tip(&self, pdu: &Pdu) -> bool {
        self.extremities.len() == 1
            && pdu.prev_events.len() == 1
            && self.extremities[0].0 == pdu.prev_events[0]
    }
}

type Handle = Arc<tokio::sync::Mutex<Option<RoomCache>>>;

#[derive(Default)]
pub struct RoomCaches {
    rooms: Mutex<HashMap<String, Handle>>,
}

impl Homeserver {
    pub(crate) fn room_handle(&self, room_id: &str) -> Handle {
        self.rooms
            .rooms
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .clone()
    }

    pub(crate) fn load_room_cache(&self, room_id: &str) -> ApiResult<RoomCache> {
        let room = self
            .store
            .room(room_id)?
            .ok_or_else(|| MatrixError::not_found("unknown room"))?;
        let state = self
            .store
            .current_state(room_id)?
            .into_iter()
            .filter_map(|(k, v)| Some((k, OwnedEventId::try_from(v).ok()?)))
            .collect();
        let extremities = self
            .store
            .forward_extremities(room_id)?
            .into_iter()
            .filter_map(|id| {
                let depth = self.cached_event(&id)?.depth;
                Some((OwnedEventId::try_from(id).ok()?, depth))
            })
            .collect();
        Ok(RoomCache {
            version: room.version,
            state,
            extremities,
        })
    }

    /// The current state event for `(kind, state_key)`.
    pub fn state_event(
        &self,
        room_id: &str,
        kind: &str,
        state_key: &str,
    ) -> ApiResult<Option<Arc<Pdu>>> {
        let state = self.store.current_state(room_id)?;
        Ok(state
            .get(&(kind.to_owned(), state_key.to_owned()))
            .and_then(|id| self.cached_event(id)))
    }

    /// The user's current membership in the room, if any.
    pub fn membership(&self, room_id: &str, user_id: &str) -> ApiResult<Option<String>> {
        Ok(self
            .store
            .membership(room_id, user_id)?
            .map(|m| m.membership))
    }

    pub fn require_joined(&self, room_id: &str, user_id: &str) -> ApiResult<()> {
        match self.membership(room_id, user_id)?.as_deref() {
            Some("join") => Ok(()),
            _ => Err(MatrixError::forbidden("you are not joined to this room")),
        }
    }

    /// The sender's power level and the level an action needs, read from the
    /// current `m.room.power_levels` content.
    pub fn power_level(&self, room_id: &str, user_id: &str) -> ApiResult<(i64, Value)> {
        let create = self.state_event(room_id, "m.room.create", "")?;
        let pl = self
            .state_event(room_id, "m.room.power_levels", "")?
            .map(|p| p.content_value())
            .unwrap_or(Value::Null);
        if let Some(create) = &create {
            let version = create
                .content_value()
                .get("room_version")
                .and_then(Value::as_str)
                .unwrap_or("1")
                .to_owned();
            let creators_privileged = rules_for(&version)
                .is_some_and(|(_, r)| r.authorization.explicitly_privilege_room_creators);
            let extra = create
                .content_value()
                .get("additional_creators")
                .cloned()
                .unwrap_or(json!([]));
            let is_creator = create.sender.as_str() == user_id
                || extra
                    .as_array()
                    .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(user_id)));
            if creators_privileged && is_creator {
                return Ok((i64::MAX, pl));
            }
            if pl.is_null() {
                return Ok((
                    if create.sender.as_str() == user_id {
                        100
                    } else {
                        0
                    },
                    pl,
                ));
            }
        }
        let level = pl
            .pointer(&format!(
                "/users/{}",
                user_id.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(as_int)
            .or_else(|| pl.get("users_default").and_then(as_int))
            .unwrap_or(0);
        Ok((level, pl))
    }

    /// Builds, authorizes and persists a local event in `room_id`.
    pub async fn send_event(
        &self,
        room_id: &str,
        sender: &str,
        template: EventTemplate,
        txn: Option<(String, String)>,
    ) -> ApiResult<Arc<Pdu>> {
        if template.kind.len() > MAX_KEY_BYTES {
            return Err(MatrixError::too_large("the event type exceeds 255 bytes"));
        }
        if template
            .state_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_KEY_BYTES)
        {
            return Err(MatrixError::too_large("the state key exceeds 255 bytes"));
        }
        let handle = self.room_handle(room_id);
        let mut guard = handle.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_room_cache(room_id)?);
        }
        let cache = guard.as_mut().expect("just filled");
        let room = OwnedRoomId::try_from(room_id)
            .map_err(|_| MatrixError::invalid_param("bad room ID"))?;
        let sender_id =
            OwnedUserId::try_from(sender).map_err(|_| MatrixError::invalid_param("bad user ID"))?;
        let pdu = {
            let lookup = |t: &str, k: &str| cache.state.get(&(t.to_owned(), k.to_owned())).cloned();
            build_event(
                &cache.version,
                &room,
                &sender_id,
                &template,
                &cache.extremities,
                &lookup,
                now_ms(),
                &self.key,
            )?
        };
        self.accept_local(
            room_id,
            cache,
            pdu,
            txn.map(|(d, t)| (sender.to_owned(), d, t)),
        )
        .await
    }

    /// Authorizes and persists an event built on `cache`, then advances the cache.
    pub(crate) async fn accept_local(
        &self,
        room_id: &str,
        cache: &mut RoomCache,
        pdu: Pdu,
        txn: Option<(String, String, String)>,
    ) -> ApiResult<Arc<Pdu>> {
        let before = (cache.state.clone(), cache.extremities.clone());
        let (new_event, stored) = self.prepare_local(room_id, cache, pdu, txn).await?;
        let destinations: Vec<String> = new_event
            .outbox
            .as_ref()
            .map(|(d, _)| d.clone())
            .unwrap_or_default();
        if let Err(e) = self.store.persist_event(new_event) {
            // Nothing was stored: the cache must not run ahead of the database.
            (cache.state, cache.extremities) = before;
            self.forget_event(stored.event_id.as_str());
            return Err(e.into());
        }
        self.settle_event(stored.event_id.as_str());
        for d in destinations {
            self.sender.signal(crate::federation::Signal::Queued(d));
        }
        if stored.kind.to_string() == "m.room.redaction" {
            self.apply_redaction(&cache.version, room_id, &stored)?;
        }
        Ok(stored)
    }

    /// Authorizes an event built on `cache` and advances the cache past it;
    /// returns what to persist. Nothing is written yet.
    async fn prepare_local(
        &self,
        room_id: &str,
        cache: &mut RoomCache,
        pdu: Pdu,
        txn: Option<(String, String, String)>,
    ) -> ApiResult<(NewEvent, Arc<Pdu>)> {
        self.prepare(room_id, cache, pdu, txn, true).await
    }

    /// Authorizes an event against the room's current state and advances the
    /// cache past it; returns what to persist. `forward` queues the PDU for
    /// the other servers in the room (local events; a remote event's origin
    /// sends it to everyone itself). Nothing is written yet.
    pub(crate) async fn prepare(
        &self,
        room_id: &str,
        cache: &mut RoomCache,
        pdu: Pdu,
        txn: Option<(String, String, String)>,
        forward: bool,
    ) -> ApiResult<(NewEvent, Arc<Pdu>)> {
        self.check_auth_on_state(&cache.version, &pdu, &cache.state)?;
        let state = &cache.state;
        let kind = pdu.kind.to_string();
        if kind == "m.room.redaction" {
            self.check_redaction_allowed(room_id, &pdu)?;
        }
        let mut unsigned = serde_json::Map::new();
        if let Some(sk) = &pdu.state_key {
            if let Some(prev) = state
                .get(&(kind.clone(), sk.clone()))
                .and_then(|id| self.cached_event(id.as_str()))
            {
                unsigned.insert("prev_content".into(), prev.content_value());
                unsigned.insert("replaces_state".into(), json!(prev.event_id));
                unsigned.insert("prev_sender".into(), json!(prev.sender));
            }
        }
        if let Some((_, device, txn_id)) = &txn {
            unsigned.insert(
                TXN_KEY.into(),
                json!({ "device": device, "txn_id": txn_id }),
            );
        }
        // Most events (a remote message, say) gain nothing: keep their JSON.
        let stored_json = if unsigned.is_empty() {
            pdu.json.clone()
        } else {
            let mut value: Value = serde_json::from_str(&pdu.json)
                .map_err(|e| MatrixError::bad_json(e.to_string()))?;
            value["unsigned"] = Value::Object(unsigned);
            value.to_string()
        };
        // One read of the joined members serves notifications and the outbox.
        let members = self.store.room_members(room_id, Some("join"))?;
        let notify = self
            .notifications_for(room_id, &members, &pdu, &stored_json)
            .await?;
        let membership = (kind == "m.room.member").then(|| {
            pdu.content_value()
                .get("membership")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        });
        // Every other server with members in the room gets the PDU as signed
        // (without our local `unsigned` additions).
        let destinations = if forward {
            self.remote_servers_of(&members)
        } else {
            Vec::new()
        };
        let outbox = (!destinations.is_empty()).then(|| (destinations, pdu.json.clone()));
        let new_event = NewEvent {
            room_id: room_id.to_owned(),
            event_id: pdu.event_id.to_string(),
            json: stored_json.clone(),
            depth: pdu.depth,
            kind: kind.clone(),
            state_key: pdu.state_key.clone(),
            sender: pdu.sender.to_string(),
            origin_server_ts: pdu.origin_server_ts.get().into(),
            prev_events: pdu.prev_events.iter().map(|e| e.to_string()).collect(),
            membership,
            txn,
            notify,
            outbox,
            fork: None,
        };
        if let Some(sk) = &pdu.state_key {
            cache
                .state
                .insert((kind.clone(), sk.clone()), pdu.event_id.clone());
        }
        cache.extremities = vec![(pdu.event_id.clone(), pdu.depth)];
        let mut stored = pdu;
        stored.json = stored_json;
        let stored = Arc::new(stored);
        // Not stored yet: held until the caller has persisted it.
        self.hold_event(stored.clone());
        Ok((new_event, stored))
    }

    /// Builds an event for `sender` on the room's current state (with this
    /// server's key; callers strip the signature) and checks it against the
    /// auth rules, without storing anything.
    pub(crate) async fn probe_event(
        &self,
        room_id: &str,
        sender: &str,
        template: EventTemplate,
    ) -> ApiResult<Pdu> {
        let handle = self.room_handle(room_id);
        let mut guard = handle.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_room_cache(room_id)?);
        }
        let cache = guard.as_ref().expect("just filled");
        self.build_checked(room_id, cache, sender, &template)
    }

    /// Builds an event for `sender` on the room's current state in `cache`
    /// (signed with this server's key) and checks it against the auth
    /// rules. Nothing is stored and the cache is not advanced.
    pub(crate) fn build_checked(
        &self,
        room_id: &str,
        cache: &RoomCache,
        sender: &str,
        template: &EventTemplate,
    ) -> ApiResult<Pdu> {
        let room = OwnedRoomId::try_from(room_id)
            .map_err(|_| MatrixError::invalid_param("bad room ID"))?;
        let sender_id =
            OwnedUserId::try_from(sender).map_err(|_| MatrixError::invalid_param("bad user ID"))?;
        let lookup = |t: &str, k: &str| cache.state.get(&(t.to_owned(), k.to_owned())).cloned();
        let pdu = build_event(
            &cache.version,
            &room,
            &sender_id,
            template,
            &cache.extremities,
            &lookup,
            now_ms(),
            &self.key,
        )?;
        self.check_auth_on_state(&cache.version, &pdu, &cache.state)?;
        Ok(pdu)
    }

    /// Accepts a PDU from another server that passed the signature and hash
    /// checks, by the spec's checks on receipt: it must pass the auth rules
    /// against its own auth events and against the state before it (the
    /// states after its parents, resolved when they differ); one that fails
    /// only against the room's current state is soft-failed (kept out of
    /// the timeline). An event on a fork moves the room to the resolution of
    /// the current state and the state after it. Its parents must be known:
    /// the federation layer fetches missing ones first.
    pub(crate) async fn accept_remote(&self, room_id: &str, pdu: Pdu) -> Result<(), String> {
        let handle = self.room_handle(room_id);
        let mut guard = handle.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_room_cache(room_id).map_err(|e| e.message)?);
        }
        let cache = guard.as_mut().expect("just filled");
        self.check_against_auth_events(&cache.version, &pdu)?;

        // The state after each parent; parents after the current state (the
        // common case: the event extends the room) need no load.
        // With one forward extremity, an event on top of it sees the current
        // state: no store reads needed.
        let on_the_tip = cache.builds_on_tip(&pdu);
        let current_group = if on_the_tip {
            None
        } else {
            self.store
                .room_state_group(room_id)
                .map_err(|e| e.to_string())?
        };
        let mut forks: Vec<StateIdMap> = Vec::new();
        // Parents we lack are stood for by the state before the event that
        // another server gave us (`federation::gaps`), if it did.
        let adopted = self.adopted_states.lock().remove(pdu.event_id.as_str());
        let adopted = adopted.map(|s| forks.push(s)).is_some();
        for prev in pdu.prev_events.iter().filter(|_| !on_the_tip) {
            let stored = self
                .store
                .event(prev.as_str())
                .map_err(|e| e.to_string())?
                .filter(|e| e.stream_pos != 0 || e.state_group != 0);
            let Some(stored) = stored else {
                if adopted {
                    continue;
                }
                return Err(format!("missing prev event {prev}"));
            };
            if Some(stored.state_group) == current_group {
                continue;
            }
            let state = self
                .store
                .state_at_group(stored.state_group)
                .map_err(|e| e.to_string())?;
            forks.push(
                state
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, OwnedEventId::try_from(v).ok()?)))
                    .collect(),
            );
        }
        let prevs: std::collections::HashSet<&OwnedEventId> = pdu.prev_events.iter().collect();
        let mut tips: Vec<(OwnedEventId, i64)> = cache
            .extremities
            .iter()
            .filter(|(id, _)| !prevs.contains(id))
            .cloned()
            .collect();
        tips.push((pdu.event_id.clone(), pdu.depth));
        let saved = (cache.state.clone(), cache.extremities.clone());
        let fetch = |id: &conifer_rooms::ruma::EventId| self.cached_event(id.as_str());

        let fork = if forks.is_empty() {
            None
        } else {
            if forks.len() < pdu.prev_events.len() {
                forks.push(cache.state.clone());
            }
            let before = if forks.len() == 1 {
                forks.pop().expect("one fork")
            } else {
                resolve_state(&cache.version, &forks, fetch).map_err(|e| e.to_string())?
            };
            // Soft-fail: allowed by the state before it, not by the room now.
            let soft_failed = self
                .check_auth_on_state(&cache.version, &pdu, &cache.state)
                .is_err();
            cache.state = before.clone();
            Some((before, soft_failed))
        };
        let prepared = self.prepare(room_id, cache, pdu, None, false).await;
        let (mut new_event, stored) = match prepared {
            Ok(p) => p,
            Err(e) => {
                (cache.state, cache.extremities) = saved;
                return Err(e.message);
            }
        };
        if let Some((before, soft_failed)) = fork {
            let after = std::mem::replace(&mut cache.state, saved.0.clone());
            if soft_failed {
                cache.extremities = saved.1;
                tracing::info!(event = %stored.event_id, room = room_id, "soft-failed: not allowed by the current state");
                let outcome = self
                    .store
                    .store_outliers(room_id, vec![outlier_of(&stored)])
                    .map_err(|e| e.to_string());
                self.settle_event(stored.event_id.as_str());
                return outcome;
            }
            let room_state = if after == saved.0 {
                after
            } else {
                match resolve_state(&cache.version, &[saved.0.clone(), after], fetch) {
                    Ok(s) => s,
                    Err(e) => {
                        (cache.state, cache.extremities) = saved;
                        self.forget_event(stored.event_id.as_str());
                        return Err(e.to_string());
                    }
                }
            };
            new_event.fork = Some(ForkState {
                before: state_list(&before),
                room: state_list(&room_state),
            });
            cache.state = room_state;
        }
        if let Err(e) = self.store.persist_event(new_event) {
            (cache.state, cache.extremities) = saved;
            // Already stored (a retransmission that raced the first copy).
            if matches!(e, conifer_store::StoreError::Conflict) {
                self.settle_event(stored.event_id.as_str());
                return Ok(());
            }
            self.forget_event(stored.event_id.as_str());
            return Err(e.to_string());
        }
        self.settle_event(stored.event_id.as_str());
        // Other forks stay forward extremities until an event merges them.
        cache.extremities = tips;
        if stored.kind.to_string() == "m.room.redaction" {
            self.apply_redaction(&cache.version, room_id, &stored)
                .map_err(|e| e.message)?;
        }
        Ok(())
    }

    /// Whether a remote PDU can take the fast path: it extends the room's
    /// single forward extremity (so the state before it is the current
    /// state), every auth event is known, and no state was adopted for it.
    /// Such an event needs no fetching and no state loads.
    pub(crate) fn extends_tip(&self, cache: &RoomCache, pdu: &Pdu) -> bool {
        cache.builds_on_tip(pdu)
            && !self
                .adopted_states
                .lock()
                .contains_key(pdu.event_id.as_str())
            && pdu
                .auth_events
                .iter()
                .all(|id| self.cached_event(id.as_str()).is_some())
    }

    /// Checks a remote PDU that [extends the tip](Self::extends_tip) against
    /// its auth events and the current state and advances the cache past
    /// it; returns what to persist. Nothing is written yet.
    pub(crate) async fn prepare_remote_on_tip(
        &self,
        room_id: &str,
        cache: &mut RoomCache,
        pdu: Pdu,
    ) -> Result<(NewEvent, Arc<Pdu>), String> {
        self.check_against_auth_events(&cache.version, &pdu)?;
        self.prepare(room_id, cache, pdu, None, false)
            .await
            .map_err(|e| e.message)
    }

    /// The auth rules for `pdu` against a room state (the current one, or
    /// the state before the event).
    pub(crate) fn check_auth_on_state(
        &self,
        version: &str,
        pdu: &Pdu,
        state: &StateIdMap,
    ) -> Result<(), conifer_rooms::BuildError> {
        check_auth(
            version,
            pdu,
            |id| self.cached_event(id.as_str()),
            |t, k| {
                state
                    .get(&(t.to_string(), k.to_owned()))
                    .and_then(|id| self.cached_event(id.as_str()))
            },
        )
    }

    /// The auth rules against the event's own auth events (which must be
    /// stored; the federation layer fetches missing ones first).
    fn check_against_auth_events(&self, version: &str, pdu: &Pdu) -> Result<(), String> {
        let mut auth: HashMap<(String, String), Arc<Pdu>> = HashMap::new();
        for id in &pdu.auth_events {
            let e = self
                .cached_event(id.as_str())
                .ok_or_else(|| format!("missing auth event {id}"))?;
            if let Some(k) = &e.state_key {
                auth.insert((e.kind.to_string(), k.clone()), e);
            }
        }
        // From room version 12 the create event is the room ID's, unlisted.
        let implied_create = rules_for(version)
            .is_some_and(|(_, r)| r.authorization.room_create_event_id_as_room_id);
        if implied_create && pdu.kind.to_string() != "m.room.create" {
            let room = pdu.room_id.as_ref().map(|r| r.as_str()).unwrap_or("!");
            let create_id = format!("${}", &room[1..]);
            let create = self
                .cached_event(&create_id)
                .ok_or_else(|| format!("missing create event {create_id}"))?;
            auth.insert(("m.room.create".into(), String::new()), create);
        }
        check_auth(
            version,
            pdu,
            |id| self.cached_event(id.as_str()),
            |t, k| auth.get(&(t.to_string(), k.to_owned())).cloned(),
        )
        .map_err(|e| format!("fails the auth rules against its auth events: {e}"))
    }

    /// Who gets a notification for this event: local joined members other
    /// than the sender whose push rules say notify.
    async fn notifications_for(
        &self,
        room_id: &str,
        members: &[(String, String)],
        pdu: &Pdu,
        json: &str,
    ) -> ApiResult<Vec<(String, bool)>> {
        let count = members.len() as u64;
        let mut out = Vec::new();
        for (user, _) in members {
            if user == pdu.sender.as_str() || !self.is_local(user) {
                continue;
            }
            let name = self
                .store
                .user(user)?
                .and_then(|u| u.displayname)
                .unwrap_or_else(|| {
                    user.trim_start_matches('@')
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                });
            let (notify, highlight) = push::evaluate(self, room_id, json, count, user, &name).await;
            if notify {
                out.push((user.clone(), highlight));
            }
        }
        Ok(out)
    }

    /// Redacting someone else's event needs the room's `redact` level. A
    /// redaction naming an event of another room is refused, local or
    /// received over federation.
    fn check_redaction_allowed(&self, room_id: &str, redaction: &Pdu) -> ApiResult<()> {
        let Some(target) = redaction
            .redacts
            .as_ref()
            .and_then(|id| self.cached_event(id.as_str()))
        else {
            return Ok(()); // Redacting an unknown event is allowed and does nothing.
        };
        if !in_room(&target, room_id) {
            return Err(MatrixError::invalid_param(
                "cannot redact an event of another room",
            ));
        }
        if target.sender == redaction.sender {
            return Ok(());
        }
        let (level, pl) = self.power_level(room_id, redaction.sender.as_str())?;
        let needed = pl.get("redact").and_then(as_int).unwrap_or(50);
        if level < needed {
            return Err(MatrixError::forbidden(
                "you may not redact other users' events",
            ));
        }
        Ok(())
    }

    pub(crate) fn apply_redaction(
        &self,
        version: &str,
        room_id: &str,
        redaction: &Pdu,
    ) -> ApiResult<()> {
        let Some(target) = redaction
            .redacts
            .as_ref()
            .and_then(|id| self.cached_event(id.as_str()))
            .filter(|target| in_room(target, room_id))
        else {
            return Ok(());
        };
        let Some((_, rules)) = rules_for(version) else {
            return Ok(());
        };
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&target.json) else {
            return Ok(());
        };
        let Ok(object) = try_from_json_map(map) else {
            return Ok(());
        };
        let because = crate::format::client_event(
            &redaction.json,
            redaction.event_id.as_str(),
            room_id,
            None,
            now_ms(),
        );
        let because = match because {
            Value::Object(m) => try_from_json_map(m).ok().map(RedactedBecause::from_json),
            _ => None,
        };
        let redacted = redact(object, &rules.redaction, because)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let json =
            serde_json::to_string(&redacted).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        self.store.redact_event(target.event_id.as_str(), &json)?;
        self.forget_event(target.event_id.as_str());
        Ok(())
    }

    /// Creates a room with its initial events; returns the room ID.
    pub async fn create_room(
        &self,
        options: CreateRoomOptions,
        publish: bool,
        alias: Option<String>,
    ) -> ApiResult<String> {
        let (_, rules) = rules_for(&options.version).ok_or_else(|| {
            MatrixError::unsupported_room_version(format!(
                "room version {} is not supported",
                options.version
            ))
        })?;
        if let Some(a) = &alias {
            if self.store.alias(a)?.is_some() {
                return Err(MatrixError::room_in_use("room alias already taken"));
            }
        }
        // Invites of users on other servers need those servers' co-signature:
        // the caller sends them once the room exists (`invite_remote`).
        let mut templates = create_room_events(&options)
            .into_iter()
            .filter(|t| {
                let remote = t.state_key.as_deref().is_some_and(|u| !self.is_local(u));
                !(t.kind == "m.room.member" && t.content["membership"] == "invite" && remote)
            })
            .collect::<Vec<_>>()
            .into_iter();
        let create = templates.next().expect("the create event comes first");
        let creator = OwnedUserId::try_from(options.creator.as_str())
            .map_err(|_| MatrixError::invalid_param("bad user ID"))?;
        let placeholder =
            OwnedRoomId::try_from(format!("!{}:{}", crate::random_token(18), self.server_name))
                .map_err(|_| MatrixError::unknown_internal("cannot form a room ID"))?;
        let none = |_: &str, _: &str| None;
        let create_pdu = build_event(
            &options.version,
            &placeholder,
            &creator,
            &create,
            &[],
            &none,
            now_ms(),
            &self.key,
        )?;
        // Since room version 12 the room ID is the create event's ID.
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            format!("!{}", &create_pdu.event_id.as_str()[1..])
        } else {
            placeholder.to_string()
        };
        // Build and authorise every initial event on an in-memory state, then
        // store the room with all of them in one transaction: a createRoom
        // that fails (say, on a bad initial_state) leaves nothing behind.
        let mut cache = RoomCache {
            version: options.version.clone(),
            state: HashMap::new(),
            extremities: vec![],
        };
        let mut prepared = Vec::new();
        let outcome = async {
            prepared.push(
                self.prepare_local(&room_id, &mut cache, create_pdu, None)
                    .await?,
            );
            let room = OwnedRoomId::try_from(room_id.as_str())
                .map_err(|_| MatrixError::unknown_internal("cannot form a room ID"))?;
            for template in templates {
                let pdu = {
                    let lookup =
                        |t: &str, k: &str| cache.state.get(&(t.to_owned(), k.to_owned())).cloned();
                    build_event(
                        &cache.version,
                        &room,
                        &creator,
                        &template,
                        &cache.extremities,
                        &lookup,
                        now_ms(),
                        &self.key,
                    )?
                };
                prepared.push(self.prepare_local(&room_id, &mut cache, pdu, None).await?);
            }
            let events = prepared.iter().map(|(e, _)| e.clone()).collect();
            self.store
                .create_room_with_events(&room_id, &options.version, events)?;
            Ok::<(), MatrixError>(())
        }
        .await;
        if let Err(e) = outcome {
            for (_, pdu) in &prepared {
                self.forget_event(pdu.event_id.as_str());
            }
            return Err(e);
        }
        for (_, pdu) in &prepared {
            self.settle_event(pdu.event_id.as_str());
        }
        *self.room_handle(&room_id).lock().await = Some(cache);
        if publish {
            self.store.set_room_published(&room_id, true)?;
        }
        if let Some(a) = alias {
            self.store
                .put_alias(&a, &room_id, creator.as_str())
                .map_err(|_| MatrixError::room_in_use("room alias already taken"))?;
        }
        Ok(room_id)
    }
}

/// Whether the event belongs to the room (a room version 12 create event
/// names no room: the room's ID is derived from its event ID).
fn in_room(pdu: &Pdu, room_id: &str) -> bool {
    match &pdu.room_id {
        Some(r) => r.as_str() == room_id,
        None => room_id.strip_prefix('!') == pdu.event_id.as_str().strip_prefix('$'),
    }
}

/// "`state_key` 255 bytes", "`type` 255 bytes": the spec's size limits per key.
const MAX_KEY_BYTES: usize = 255;

pub fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn state_list(state: &StateIdMap) -> conifer_store::StateList {
    state
        .iter()
        .map(|((t, k), id)| (t.clone(), k.clone(), id.to_string()))
        .collect()
}

/// An event kept outside the timeline.
pub(crate) fn outlier_of(e: &Pdu) -> conifer_store::OutlierEvent {
    conifer_store::OutlierEvent {
        event_id: e.event_id.to_string(),
        json: e.json.clone(),
        kind: e.kind.to_string(),
        state_key: e.state_key.clone(),
        sender: e.sender.to_string(),
        depth: e.depth,
    }
}
