//! Accepting a transaction's verified PDUs, in order, with one database
//! commit per run of PDUs instead of one per PDU.
//!
//! Most inbound traffic is a server's messages in a room, each on top of the
//! last. Such a PDU [extends the tip](crate::Homeserver::extends_tip): the
//! state before it is the room's current state, so it needs no fetching and
//! no state loads. Consecutive PDUs of one room that all extend the tip are
//! checked under one hold of the room's lock, each advancing the in-memory
//! room as it is accepted, and persisted together in one write
//! ([`Store::persist_events`](conifer_store::Store::persist_events)) before
//! the lock is let go and before the transaction is answered, so every PDU
//! the sender sees accepted is committed.
//!
//! A run ends at a PDU of another room, after a state event (so that what a
//! later PDU reads from the store — the room's members, say — includes it),
//! and at any PDU that needs the full pipeline (missing parents or auth
//! events, forks): that one goes through `fill_gaps` and `accept_remote`
//! with no lock held across the network calls.

use crate::rooms::RoomCache;
use crate::Homeserver;
use conifer_rooms::ruma::OwnedEventId;
use conifer_rooms::{Pdu, StateIdMap};
use conifer_store::NewEvent;
use std::sync::Arc;
use tokio::sync::OwnedMutexGuard;

/// A PDU after the checks that need no room lock (`receive::checked_pdu`):
/// its event ID (or a placeholder), and the room and event, or `None` for an
/// event already stored, or the reason it was rejected.
pub(crate) type Checked = (String, Result<Option<(String, Pdu)>, String>);

/// PDUs accepted on the tip of one room and not yet persisted.
struct Run {
    room_id: String,
    guard: OwnedMutexGuard<Option<RoomCache>>,
    /// The room as it was before the run, restored if the write fails.
    saved: (StateIdMap, Vec<(OwnedEventId, i64)>),
    pending: Vec<(usize, NewEvent, Arc<Pdu>)>,
}

/// Accepts `pdus` in order; returns each one's event ID and verdict.
pub(crate) async fn accept_in_order(
    hs: &Homeserver,
    pdus: Vec<Checked>,
    origin: &str,
) -> Vec<(String, Result<(), String>)> {
    let mut verdicts: Vec<(String, Result<(), String>)> = Vec::with_capacity(pdus.len());
    let mut run: Option<Run> = None;
    for (index, (id, checked)) in pdus.into_iter().enumerate() {
        verdicts.push((id, Ok(())));
        let (room_id, pdu) = match checked {
            Ok(Some(p)) => p,
            Ok(None) => continue, // Seen before.
            Err(e) => {
                verdicts[index].1 = Err(e);
                continue;
            }
        };
        if run.as_ref().is_some_and(|r| r.room_id != room_id) {
            finish(hs, run.take(), &mut verdicts);
        }
        if run.is_none() {
            match start(hs, &room_id).await {
                Ok(r) => run = Some(r),
                Err(e) => {
                    verdicts[index].1 = Err(e);
                    continue;
                }
            }
        }
        let r = run.as_mut().expect("just started");
        let cache = r.guard.as_mut().expect("loaded by start");
        if hs.extends_tip(cache, &pdu) {
            let is_state = pdu.state_key.is_some();
            match hs.prepare_remote_on_tip(&room_id, cache, pdu).await {
                Ok((event, stored)) => r.pending.push((index, event, stored)),
                Err(e) => verdicts[index].1 = Err(e),
            }
            if is_state {
                finish(hs, run.take(), &mut verdicts);
            }
        } else {
            // The full pipeline, with no lock held while it fetches.
            finish(hs, run.take(), &mut verdicts);
            if let Some(version) = hs.room_version(&room_id) {
                hs.fill_gaps(&room_id, &version, &pdu, origin).await;
            }
            verdicts[index].1 = hs.accept_remote(&room_id, pdu).await;
        }
    }
    finish(hs, run, &mut verdicts);
    verdicts
}

/// Takes the room's lock (loading the room if needed) for a new run.
async fn start(hs: &Homeserver, room_id: &str) -> Result<Run, String> {
    let mut guard = hs.room_handle(room_id).lock_owned().await;
    if guard.is_none() {
        *guard = Some(hs.load_room_cache(room_id).map_err(|e| e.message)?);
    }
    let cache = guard.as_ref().expect("just filled");
    let saved = (cache.state.clone(), cache.extremities.clone());
    Ok(Run {
        room_id: room_id.to_owned(),
        guard,
        saved,
        pending: Vec::new(),
    })
}

/// Persists a run's events in one write and records their verdicts; on a
/// failed write, puts the room back as it was before the run. Lets go of
/// the room's lock.
fn finish(hs: &Homeserver, run: Option<Run>, verdicts: &mut [(String, Result<(), String>)]) {
    let Some(mut run) = run else { return };
    if run.pending.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut run.pending);
    let (places, events): (Vec<(usize, Arc<Pdu>)>, Vec<NewEvent>) = pending
        .into_iter()
        .map(|(index, event, stored)| ((index, stored), event))
        .unzip();
    let cache = run.guard.as_mut().expect("loaded by start");
    match hs.store.persist_events(events) {
        Ok(results) => {
            // Each is stored now, or was already (`Conflict`: a copy that
            // raced this one stored it first).
            for ((index, stored), _stored_or_duplicate) in places.into_iter().zip(results) {
                hs.settle_event(stored.event_id.as_str());
                if stored.kind.to_string() == "m.room.redaction" {
                    if let Err(e) = hs.apply_redaction(&cache.version, &run.room_id, &stored) {
                        verdicts[index].1 = Err(e.message);
                    }
                }
            }
        }
        Err(e) => {
            // Nothing was stored: the room must not run ahead of the database.
            (cache.state, cache.extremities) = run.saved;
            for (index, stored) in places {
                hs.forget_event(stored.event_id.as_str());
                verdicts[index].1 = Err(e.to_string());
            }
        }
    }
}
