//! Joining a room that lives on another server: `make_join` there, sign the
//! template, `send_join`, check every event of the state and auth chain it
//! returns (signatures, hashes, auth rules against their own auth events),
//! then store the room with that state and the join on top.

use super::enc;
use super::join::federation_json;
use super::receive::verified_pdu;
use crate::error::{ApiResult, MatrixError};
use crate::rooms::{outlier_of, RoomCache};
use crate::Homeserver;
use conifer_federation::{sign_request, FederationRequest};
use conifer_rooms::ruma::OwnedEventId;
use conifer_rooms::{check_auth, sign_template, Pdu};
use conifer_store::NewEvent;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

impl Homeserver {
    /// Sends one signed request to `destination` through the transport;
    /// returns the status and the JSON body (`null` if it is not JSON).
    pub(crate) async fn federation_call(
        &self,
        destination: &str,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let (status, bytes) = self
            .federation_call_raw(destination, method, uri, body)
            .await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// [`Self::federation_call`] with the answer's bytes as they came.
    pub(crate) async fn federation_call_raw(
        &self,
        destination: &str,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), String> {
        let transport = self.transport.get().ok_or("no federation transport")?;
        let authorization =
            sign_request(&self.key, method, uri, destination, body).map_err(|e| e.to_string())?;
        let response = transport
            .send(FederationRequest {
                destination: destination.to_owned(),
                method: method.to_owned(),
                uri: uri.to_owned(),
                body: body.map(|b| serde_json::to_vec(b).unwrap_or_default()),
                authorization: Some(authorization),
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok((response.status, response.body))
    }

    /// Joins `user` to a room hosted by one of `via`, trying each in turn.
    pub async fn join_remote(&self, room_id: &str, user: &str, via: &[String]) -> ApiResult<()> {
        let mut last_error = String::from("no server to join through");
        for server in via
            .iter()
            .filter(|s| s.as_str() != self.server_name.as_str())
        {
            match self.join_through(room_id, user, server).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(room = room_id, %server, error = %e, "remote join failed");
                    last_error = format!("{server}: {e}");
                }
            }
        }
        Err(MatrixError::forbidden(format!(
            "cannot join {room_id}: {last_error}"
        )))
    }

    async fn join_through(&self, room_id: &str, user: &str, server: &str) -> Result<(), String> {
        let versions: String = conifer_rooms::SUPPORTED_VERSIONS
            .iter()
            .map(|v| format!("&ver={v}"))
            .collect();
        let uri = format!(
            "/_matrix/federation/v1/make_join/{}/{}?{}",
            enc(room_id),
            enc(user),
            &versions[1..]
        );
        let (status, made) = self
            .federation_call(server, "GET", &uri, None)
            .await
            .map_err(|e| format!("make_join: {e}"))?;
        if status != 200 {
            return Err(format!("make_join answered {status}: {made}"));
        }
        let version = made["room_version"]
            .as_str()
            .ok_or("make_join named no room version")?
            .to_owned();
        let mut template = made["event"].clone();
        // Dendrite leaves the timestamp to the joining server.
        if template.get("origin_server_ts").is_none() {
            template["origin_server_ts"] = serde_json::json!(crate::now_ms());
        }
        let ours = template["type"] == "m.room.member"
            && template["sender"].as_str() == Some(user)
            && template["state_key"].as_str() == Some(user)
            && template["room_id"].as_str() == Some(room_id)
            && template["content"]["membership"] == "join";
        if !ours {
            return Err("make_join returned something other than our join".into());
        }
        let join = sign_template(&version, template, &self.key).map_err(|e| e.to_string())?;
        let uri = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            enc(room_id),
            enc(join.event_id.as_str())
        );
        let (status, sent) = self
            .federation_call(server, "PUT", &uri, Some(&federation_json(&join)))
            .await
            .map_err(|e| format!("send_join: {e}"))?;
        if status != 200 {
            return Err(format!("send_join answered {status}: {sent}"));
        }

        // Check everything the resident server sent before trusting any of it.
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut state_ids = Vec::new();
        for (list, is_state) in [(&sent["auth_chain"], false), (&sent["state"], true)] {
            for raw in list.as_array().into_iter().flatten() {
                let (_, pdu) = verified_pdu(self, &version, raw.clone())
                    .await
                    .map_err(|(id, e)| format!("{id}: {e}"))?;
                if is_state {
                    state_ids.push(pdu.event_id.clone());
                }
                events.insert(pdu.event_id.clone(), Arc::new(pdu));
            }
        }
        // From room version 12 the create event is implied by the room ID
        // instead of listed among an event's auth events.
        let implied_create = conifer_rooms::rules_for(&version)
            .filter(|(_, r)| r.authorization.room_create_event_id_as_room_id)
            .and_then(|_| {
                events
                    .values()
                    .find(|e| e.kind.to_string() == "m.room.create")
                    .cloned()
            });
        for pdu in events.values() {
            let mut auth: HashMap<(String, String), Arc<Pdu>> = pdu
                .auth_events
                .iter()
                .filter_map(|id| events.get(id))
                .filter_map(|e| Some(((e.kind.to_string(), e.state_key.clone()?), e.clone())))
                .collect();
            if let Some(create) = &implied_create {
                auth.entry(("m.room.create".into(), String::new()))
                    .or_insert_with(|| create.clone());
            }
            check_auth(
                &version,
                pdu,
                |id| events.get(id).cloned(),
                |t, k| auth.get(&(t.to_string(), k.to_owned())).cloned(),
            )
            .map_err(|e| format!("{} fails the auth rules: {e}", pdu.event_id))?;
        }
        let mut state: HashMap<(String, String), OwnedEventId> = HashMap::new();
        for id in &state_ids {
            let e = &events[id];
            if let Some(k) = &e.state_key {
                state.insert((e.kind.to_string(), k.clone()), id.clone());
            }
        }
        let lookup = |t: &str, k: &str| {
            state
                .get(&(t.to_owned(), k.to_owned()))
                .and_then(|id| events.get(id))
                .cloned()
        };
        check_auth(
            &version,
            &join,
            |id| events.get(id).cloned(),
            |t, k| lookup(&t.to_string(), k),
        )
        .map_err(|e| format!("our join fails the auth rules on the state we were sent: {e}"))?;

        let outliers = events.values().map(|e| outlier_of(e)).collect();
        let state_list = state
            .iter()
            .map(|((t, k), id)| (t.clone(), k.clone(), id.to_string()))
            .collect();
        let new_join = NewEvent {
            room_id: room_id.to_owned(),
            event_id: join.event_id.to_string(),
            json: join.json.clone(),
            depth: join.depth,
            kind: "m.room.member".into(),
            state_key: Some(user.to_owned()),
            sender: user.to_owned(),
            origin_server_ts: join.origin_server_ts.get().into(),
            prev_events: join.prev_events.iter().map(|e| e.to_string()).collect(),
            membership: Some("join".into()),
            txn: None,
            notify: vec![],
            outbox: None,
            fork: None,
        };
        let handle = self.room_handle(room_id);
        let mut guard = handle.lock().await;
        self.store
            .create_joined_room(room_id, &version, outliers, state_list, new_join)
            .map_err(|e| e.to_string())?;
        for e in events.values() {
            self.remember_event(e.clone());
        }
        let join = Arc::new(join);
        self.remember_event(join.clone());
        state.insert(
            ("m.room.member".into(), user.to_owned()),
            join.event_id.clone(),
        );
        *guard = Some(RoomCache {
            version,
            state,
            extremities: vec![(join.event_id.clone(), join.depth)],
        });
        Ok(())
    }
}
