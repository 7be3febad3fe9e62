//! `PUT /_matrix/federation/v1/send/{txnId}`: inbound PDUs and EDUs.
//!
//! Each PDU goes through the spec's checks on receipt, in order: format,
//! signatures, content hash (a mismatch means the event is redacted before
//! anything else looks at it), the auth rules against its own auth events,
//! then against the state before it (inside the room's lock, like local
//! events). Rejected PDUs are answered with an error and never stored.

use super::FederationAuth;
use crate::client::Hs;
use crate::error::MatrixError;
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::Json;
use conifer_federation::{MAX_EDUS, MAX_PDUS};
use conifer_rooms::ruma::canonical_json::{redact, try_from_json_map};
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{reference_hash, verify_event, PublicKeyMap, Verified};
use conifer_rooms::ruma::state_res::check_pdu_format;
use conifer_rooms::ruma::{CanonicalJsonObject, OwnedEventId};
use conifer_rooms::{rules_for, Pdu};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn send_transaction(
    hs: Hs,
    Path(txn_id): Path<String>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let body = auth
        .body
        .clone()
        .ok_or_else(|| MatrixError::bad_json("missing transaction body"))?;
    let pdus = body
        .get("pdus")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let edus = body
        .get("edus")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
        return Err(MatrixError::bad_json(
            "a transaction carries at most 50 PDUs and 100 EDUs",
        ));
    }
    if body
        .get("origin")
        .and_then(Value::as_str)
        .is_some_and(|o| o != auth.origin)
    {
        return Err(MatrixError::forbidden(
            "the transaction's origin does not match its signature",
        ));
    }
    if !hs.store.record_inbound_txn(&auth.origin, &txn_id)? {
        return Ok(Json(json!({ "pdus": {} }))); // Already processed: idempotent.
    }
    // Signatures and hashes first (no room lock needed), then the auth
    // rules and storage in the order sent.
    let mut checked = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        checked.push(checked_pdu(&hs, pdu).await);
    }
    let mut results = Map::new();
    for (id, outcome) in super::ingest::accept_in_order(&hs, checked, &auth.origin).await {
        let entry = match outcome {
            Ok(()) => json!({}),
            Err(e) => {
                tracing::info!(origin = %auth.origin, event = %id, error = %e, "rejected a PDU");
                json!({ "error": e })
            }
        };
        results.insert(id, entry);
    }
    for edu in edus {
        receive_edu(&hs, &auth.origin, &edu);
    }
    Ok(Json(json!({ "pdus": results })))
}

/// The checks before the auth rules: room, format, signatures, content hash
/// (a mismatch keeps only the redacted event). `Ok(None)` for an event
/// already stored.
pub(crate) async fn checked_pdu(
    hs: &Homeserver,
    pdu: Value,
) -> (String, Result<Option<(String, Pdu)>, String>) {
    let Some(room_id) = pdu
        .get("room_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return ("<no room_id>".into(), Err("the PDU has no room_id".into()));
    };
    let Some(version) = hs.room_version(&room_id) else {
        return (
            "<unknown room>".into(),
            Err(format!("this server is not in {room_id}")),
        );
    };
    match verified_pdu(hs, &version, pdu).await {
        Ok((id, pdu)) => match hs.store.event(&id) {
            Ok(Some(_)) => (id, Ok(None)), // Seen before.
            Ok(None) => (id, Ok(Some((room_id, pdu)))),
            Err(e) => (id, Err(e.to_string())),
        },
        Err((id, e)) => (id, Err(e)),
    }
}

/// Format, signatures and content hash of a PDU of a room of `version`
/// (a hash mismatch keeps only the redacted event). Returns its event ID
/// with the decoded event, or the ID (or a placeholder) with the reason.
pub(crate) async fn verified_pdu(
    hs: &Homeserver,
    version: &str,
    pdu: Value,
) -> Result<(String, Pdu), (String, String)> {
    let Some((_, rules)) = rules_for(version) else {
        return Err((
            "<unsupported room>".into(),
            format!("unsupported room version {version}"),
        ));
    };
    let Value::Object(map) = pdu else {
        return Err(("<not an object>".into(), "the PDU is not an object".into()));
    };
    let mut object: CanonicalJsonObject = try_from_json_map(map).map_err(|e| {
        (
            "<not canonical>".to_owned(),
            format!("the PDU is not canonical JSON: {e}"),
        )
    })?;
    let id = reference_hash(&object, &rules)
        .map(|h| format!("${h}"))
        .map_err(|e| ("<unhashable>".to_owned(), e.to_string()))?;
    let checked = async {
        check_pdu_format(&object, &rules.event_format)?;
        let keys = signing_keys(hs, &object).await?;
        match verify_event(&keys, &object, &rules).map_err(|e| format!("bad signature: {e}"))? {
            Verified::All => {}
            // The content was changed after signing: keep only the redacted form.
            Verified::Signatures => {
                object = redact(object, &rules.redaction, None).map_err(|e| e.to_string())?
            }
        }
        let event_id = OwnedEventId::try_from(id.as_str()).map_err(|e| e.to_string())?;
        let json = serde_json::to_string(&object).map_err(|e| e.to_string())?;
        Pdu::from_json(event_id, json).map_err(|e| e.to_string())
    }
    .await;
    checked.map(|p| (id.clone(), p)).map_err(|e| (id, e))
}

/// The verify keys of every server that signed the event.
async fn signing_keys(
    hs: &Homeserver,
    object: &CanonicalJsonObject,
) -> Result<PublicKeyMap, String> {
    let mut map: PublicKeyMap = BTreeMap::new();
    let signatures = object
        .get("signatures")
        .and_then(|s| s.as_object())
        .ok_or("the PDU is not signed")?;
    for (server, sigs) in signatures {
        for key_id in sigs
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if let Ok(key) = hs.verify_key(server, &key_id).await {
                map.entry(server.clone())
                    .or_default()
                    .insert(key_id, Base64::new(key.to_vec()));
            }
        }
    }
    Ok(map)
}

/// Typing and read receipts from users of the sending server.
fn receive_edu(hs: &Homeserver, origin: &str, edu: &Value) {
    let from_origin = |user: &str| user.split_once(':').is_some_and(|(_, s)| s == origin);
    let content = &edu["content"];
    match edu.get("edu_type").and_then(Value::as_str) {
        Some("m.typing") => {
            let (Some(room), Some(user)) =
                (content["room_id"].as_str(), content["user_id"].as_str())
            else {
                return;
            };
            if from_origin(user)
                && matches!(
                    hs.membership(room, user).ok().flatten().as_deref(),
                    Some("join")
                )
            {
                let typing = content["typing"].as_bool().unwrap_or(false);
                hs.typing
                    .set(room, user, typing.then(|| Duration::from_secs(30)));
            }
        }
        Some("m.receipt") => {
            for (room, kinds) in content.as_object().into_iter().flatten() {
                for (kind, users) in kinds.as_object().into_iter().flatten() {
                    if kind != "m.read" {
                        continue;
                    }
                    for (user, receipt) in users.as_object().into_iter().flatten() {
                        if !from_origin(user)
                            || !matches!(
                                hs.membership(room, user).ok().flatten().as_deref(),
                                Some("join")
                            )
                        {
                            continue;
                        }
                        for event in receipt["event_ids"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                        {
                            let _ = hs.store.put_receipt(conifer_store::ReceiptRecord {
                                room_id: room.clone(),
                                user_id: user.clone(),
                                receipt_type: "m.read".into(),
                                thread_id: receipt["data"]["thread_id"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_owned(),
                                event_id: event.to_owned(),
                                ts: receipt["data"]["ts"].as_u64().unwrap_or_else(now_ms),
                                stream_pos: 0,
                            });
                        }
                    }
                }
            }
        }
        Some(kind @ ("m.direct_to_device" | "m.device_list_update" | "m.signing_key_update")) => {
            hs.receive_e2ee_edu(origin, kind, content)
        }
        Some("m.presence") => hs.receive_presence(origin, content),
        _ => {}
    }
}
