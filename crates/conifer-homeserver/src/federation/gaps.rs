//! What a remote event needs before it can be checked: its auth events
//! (fetched with `/event_auth` and kept as outliers) and its missing parents
//! (fetched with `/get_missing_events` and accepted oldest first, as if they
//! had arrived in order). A server that was offline catches up this way:
//! the next event it hears of pulls in the ones it missed.

use super::enc;
use super::receive::verified_pdu;
use crate::rooms::outlier_of;
use crate::Homeserver;
use conifer_rooms::{Pdu, StateIdMap};
use serde_json::json;

/// How many missing parents one request asks for (Synapse asks for 10).
const MISSING_EVENTS_LIMIT: usize = 20;

impl Homeserver {
    fn known(&self, event_id: &str) -> bool {
        matches!(self.store.event(event_id), Ok(Some(_)))
    }

    /// Fetches what `pdu` lacks from `origin`. Failures are not errors here:
    /// the checks that follow reject the event if something is still missing.
    pub(crate) async fn fill_gaps(&self, room_id: &str, version: &str, pdu: &Pdu, origin: &str) {
        if pdu.auth_events.iter().any(|id| !self.known(id.as_str())) {
            self.fetch_auth_chain(room_id, version, pdu.event_id.as_str(), origin)
                .await;
        }
        let in_timeline = |id: &str| matches!(self.store.event(id), Ok(Some(e)) if e.stream_pos != 0 || e.state_group != 0);
        if pdu.prev_events.iter().all(|id| in_timeline(id.as_str())) {
            return;
        }
        let earliest = self.store.forward_extremities(room_id).unwrap_or_default();
        let body = json!({
            "earliest_events": earliest,
            "latest_events": [pdu.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": 0,
        });
        let uri = format!("/_matrix/federation/v1/get_missing_events/{}", enc(room_id));
        let events = match self
            .federation_call(origin, "POST", &uri, Some(&body))
            .await
        {
            Ok((200, v)) => v["events"].as_array().cloned().unwrap_or_default(),
            Ok((status, v)) => {
                tracing::info!(%origin, status, answer = %v, "get_missing_events failed");
                return;
            }
            Err(e) => {
                tracing::info!(%origin, error = %e, "get_missing_events failed");
                return;
            }
        };
        let mut missing = Vec::new();
        for raw in events {
            match verified_pdu(self, version, raw).await {
                Ok((id, p))
                    if !self.known(&id)
                        && p.room_id.as_ref().map(|r| r.as_str()) == Some(room_id) =>
                {
                    missing.push(p)
                }
                Ok(_) => {}
                Err((id, e)) => {
                    tracing::info!(event = %id, error = %e, "a missing event failed its checks")
                }
            }
        }
        missing.sort_by_key(|p| p.depth);
        // More were missing than one request brings: the earliest event's
        // parents are still unknown. Take the state before it from the
        // origin, as a server does that was away for long.
        let fetched: std::collections::HashSet<_> =
            missing.iter().map(|p| p.event_id.clone()).collect();
        let earliest = missing.first().unwrap_or(pdu);
        let gap = earliest
            .prev_events
            .iter()
            .any(|id| !fetched.contains(id) && !in_timeline(id.as_str()));
        if gap {
            self.adopt_state_before(room_id, version, earliest.event_id.as_str(), origin)
                .await;
        }
        for p in missing {
            if p.auth_events.iter().any(|id| !self.known(id.as_str())) {
                self.fetch_auth_chain(room_id, version, p.event_id.as_str(), origin)
                    .await;
            }
            let id = p.event_id.clone();
            if let Err(e) = self.accept_remote(room_id, p).await {
                tracing::info!(event = %id, error = %e, "a fetched missing event was rejected");
            }
        }
    }

    /// Fetches the state before `event_id` (and its auth chain) from
    /// `origin`, keeps the events as outliers and remembers the state for
    /// that event, whose parents this server does not have.
    async fn adopt_state_before(&self, room_id: &str, version: &str, event_id: &str, origin: &str) {
        let uri = format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            enc(room_id),
            enc(event_id)
        );
        let answer = match self.federation_call(origin, "GET", &uri, None).await {
            Ok((200, v)) => v,
            other => {
                tracing::info!(%origin, event = event_id, answer = ?other.map(|(s, _)| s), "state fetch failed");
                return;
            }
        };
        let mut outliers = Vec::new();
        let mut state = StateIdMap::new();
        for (list, is_state) in [(&answer["auth_chain"], false), (&answer["pdus"], true)] {
            for raw in list.as_array().into_iter().flatten() {
                match verified_pdu(self, version, raw.clone()).await {
                    Ok((id, p)) => {
                        if let (true, Some(k)) = (is_state, &p.state_key) {
                            state.insert((p.kind.to_string(), k.clone()), p.event_id.clone());
                        }
                        if !self.known(&id) {
                            outliers.push(outlier_of(&p));
                        }
                    }
                    Err((id, e)) => {
                        tracing::info!(event = %id, error = %e, "a state event failed its checks");
                        return;
                    }
                }
            }
        }
        if let Err(e) = self.store.store_outliers(room_id, outliers) {
            tracing::warn!(error = %e, "cannot store fetched state");
            return;
        }
        self.adopted_states
            .lock()
            .insert(event_id.to_owned(), state);
    }

    /// Stores the auth chain of `event_id` as `origin` tells it, each event
    /// checked for format, signatures and hash.
    async fn fetch_auth_chain(&self, room_id: &str, version: &str, event_id: &str, origin: &str) {
        let uri = format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(room_id),
            enc(event_id)
        );
        let chain = match self.federation_call(origin, "GET", &uri, None).await {
            Ok((200, v)) => v["auth_chain"].as_array().cloned().unwrap_or_default(),
            other => {
                tracing::info!(%origin, event = event_id, answer = ?other.map(|(s, _)| s), "event_auth failed");
                return;
            }
        };
        let mut outliers = Vec::new();
        for raw in chain {
            match verified_pdu(self, version, raw).await {
                Ok((id, p)) if !self.known(&id) => outliers.push(outlier_of(&p)),
                Ok(_) => {}
                Err((id, e)) => {
                    tracing::info!(event = %id, error = %e, "an auth event failed its checks")
                }
            }
        }
        if let Err(e) = self.store.store_outliers(room_id, outliers) {
            tracing::warn!(error = %e, "cannot store fetched auth events");
        }
    }
}

/// How many events one `/backfill` request asks for.
const BACKFILL_LIMIT: usize = 50;

impl Homeserver {
    /// Asks the other servers in the room for the history before `edge`
    /// (events this server holds whose predecessors it lacks) and stores
    /// what checks out, outside the timeline. Whether anything new came.
    pub(crate) async fn backfill_from(&self, room_id: &str, edge: &[String]) -> bool {
        let Ok(Some(room)) = self.store.room(room_id) else {
            return false;
        };
        if edge.is_empty() {
            return false;
        }
        let query: String = edge.iter().map(|id| format!("&v={}", enc(id))).collect();
        let uri = format!(
            "/_matrix/federation/v1/backfill/{}?limit={BACKFILL_LIMIT}{query}",
            enc(room_id)
        );
        for server in self.remote_servers_in(room_id) {
            let pdus = match self.federation_call(&server, "GET", &uri, None).await {
                Ok((200, v)) => v["pdus"].as_array().cloned().unwrap_or_default(),
                other => {
                    tracing::info!(%server, answer = ?other.map(|(s, _)| s), "backfill failed");
                    continue;
                }
            };
            let mut fresh = Vec::new();
            for raw in pdus {
                match verified_pdu(self, &room.version, raw).await {
                    Ok((id, p))
                        if !self.known(&id)
                            && p.room_id.as_ref().map(|r| r.as_str()) == Some(room_id) =>
                    {
                        fresh.push(outlier_of(&p))
                    }
                    Ok(_) => {}
                    Err((id, e)) => {
                        tracing::info!(event = %id, error = %e, "a backfilled event failed its checks")
                    }
                }
            }
            let any = !fresh.is_empty();
            if let Err(e) = self.store.store_outliers(room_id, fresh) {
                tracing::warn!(error = %e, "cannot store backfilled events");
                return false;
            }
            return any;
        }
        false
    }
}
