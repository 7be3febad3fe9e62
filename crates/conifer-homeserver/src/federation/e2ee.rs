//! End-to-end encryption across servers: device and cross-signing keys and
//! one-time keys of remote users (asked of their server on the client's
//! behalf), to-device messages both ways (`m.direct_to_device` EDUs), and
//! device-list changes both ways (`m.device_list_update` and
//! `m.signing_key_update` EDUs).

use crate::Homeserver;
use conifer_store::ToDeviceRecord;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A remote answer, cut short for an error message.
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The server part of a user ID.
pub(crate) fn server_of(user: &str) -> &str {
    user.split_once(':').map(|(_, s)| s).unwrap_or("")
}

/// Splits `{user: x}` into one map per remote server.
pub(crate) fn by_server<'a>(
    hs: &Homeserver,
    wanted: impl Iterator<Item = (&'a String, &'a Value)>,
) -> BTreeMap<String, Map<String, Value>> {
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (user, v) in wanted.filter(|(u, _)| !hs.is_local(u)) {
        out.entry(server_of(user).to_owned())
            .or_default()
            .insert(user.clone(), v.clone());
    }
    out
}

/// At most this many servers are asked at once for one client's keys
/// query or claim.
const REMOTE_KEYS_CONCURRENCY: usize = 16;

/// A `failures` entry as Synapse gives it: an HTTP-like status and a message.
fn failure(status: u16, message: impl Into<String>) -> Value {
    json!({ "status": status, "message": message.into() })
}

impl Homeserver {
    /// Asks `server` a keys query or claim (`kind` is `query` or `claim`).
    /// On failure, returns the entry for the response's `failures`.
    pub(crate) async fn remote_keys(
        &self,
        server: &str,
        kind: &str,
        body: Value,
    ) -> Result<Value, Value> {
        let uri = format!("/_matrix/federation/v1/user/keys/{kind}");
        match self
            .federation_call(server, "POST", &uri, Some(&body))
            .await
        {
            Ok((200, v)) if v.is_object() => Ok(v),
            Ok((200, _)) => Err(failure(502, format!("{server} answered no JSON object"))),
            Ok((status, v)) => Err(failure(
                status,
                format!("{server} answered {status}: {}", short(&v)),
            )),
            Err(e) => Err(failure(503, format!("{server} is unreachable: {e}"))),
        }
    }

    /// Asks every server of `requests` (server name → request body) at once,
    /// at most [`REMOTE_KEYS_CONCURRENCY`] at a time, and gives up on those
    /// that have not answered by `deadline`: each server's answer, or the
    /// `failures` entry for it.
    pub(crate) async fn remote_keys_all(
        &self,
        kind: &str,
        requests: BTreeMap<String, Value>,
        deadline: tokio::time::Instant,
    ) -> Vec<(String, Result<Value, Value>)> {
        stream::iter(requests)
            .map(|(server, body)| async move {
                let asked = self.remote_keys(&server, kind, body);
                let answer = match tokio::time::timeout_at(deadline, asked).await {
                    Ok(answer) => answer,
                    Err(_) => Err(failure(503, format!("{server} did not answer in time"))),
                };
                if let Err(f) = &answer {
                    tracing::info!(%server, kind, failure = %f, "remote keys request failed");
                }
                (server, answer)
            })
            .buffer_unordered(REMOTE_KEYS_CONCURRENCY)
            .collect()
            .await
    }

    /// Queues to-device messages for remote users: one EDU per server.
    pub(crate) fn federate_to_device(
        &self,
        sender: &str,
        kind: &str,
        message_id: &str,
        messages: &Map<String, Value>,
    ) {
        for (server, users) in by_server(self, messages.iter()) {
            let edu = json!({ "edu_type": "m.direct_to_device", "content": {
                "sender": sender, "type": kind, "message_id": message_id, "messages": users,
            }});
            self.queue_for(vec![server], false, &edu);
        }
    }

    /// Marks `user`'s keys changed and tells the servers sharing a room with
    /// them, so their clients fetch the new device list.
    pub(crate) fn device_list_changed(
        &self,
        user: &str,
        device_id: Option<&str>,
        deleted: bool,
    ) -> crate::error::ApiResult<()> {
        let stream_id = self.store.mark_keys_changed(user)?;
        let servers = self.servers_sharing(user);
        let edu = match device_id {
            Some(device) => {
                let keys = self
                    .store
                    .device_keys(user)?
                    .into_iter()
                    .find(|(d, _)| d == device)
                    .map(|(_, k)| k);
                let mut content = json!({
                    "user_id": user, "device_id": device, "stream_id": stream_id,
                    "prev_id": [], "deleted": deleted,
                });
                if let Some(k) = keys.filter(|_| !deleted) {
                    content["keys"] = k;
                }
                json!({ "edu_type": "m.device_list_update", "content": content })
            }
            None => {
                let cross = self.store.cross_signing_keys(user)?;
                let mut content = json!({ "user_id": user });
                if let Some(k) = cross.get("master") {
                    content["master_key"] = k.clone();
                }
                if let Some(k) = cross.get("self_signing") {
                    content["self_signing_key"] = k.clone();
                }
                json!({ "edu_type": "m.signing_key_update", "content": content })
            }
        };
        self.queue_for(servers, false, &edu);
        Ok(())
    }

    /// Inbound EDUs about encryption, from users of `origin` only.
    pub(crate) fn receive_e2ee_edu(&self, origin: &str, kind: &str, content: &Value) {
        match kind {
            "m.direct_to_device" => {
                let (Some(sender), Some(event_type)) =
                    (content["sender"].as_str(), content["type"].as_str())
                else {
                    return;
                };
                if server_of(sender) != origin {
                    return;
                }
                let mut out = Vec::new();
                for (user, devices) in content["messages"].as_object().into_iter().flatten() {
                    if !self.is_local(user) {
                        continue;
                    }
                    for (device, body) in devices.as_object().into_iter().flatten() {
                        let message =
                            json!({ "type": event_type, "sender": sender, "content": body });
                        let targets: Vec<String> = if device == "*" {
                            self.store
                                .devices(user)
                                .unwrap_or_default()
                                .into_iter()
                                .map(|d| d.device_id)
                                .collect()
                        } else {
                            vec![device.clone()]
                        };
                        for d in targets {
                            out.push(ToDeviceRecord {
                                user_id: user.clone(),
                                device_id: d,
                                message: message.clone(),
                            });
                        }
                    }
                }
                if !out.is_empty() {
                    if let Err(e) = self.store.queue_to_device(out) {
                        tracing::warn!(error = %e, "cannot store to-device messages");
                    }
                }
            }
            "m.device_list_update" | "m.signing_key_update" => {
                if let Some(user) = content["user_id"].as_str() {
                    if server_of(user) == origin {
                        let _ = self.store.mark_keys_changed(user);
                    }
                }
            }
            _ => {}
        }
    }
}
