//! `PUT /_matrix/federation/v1/send/{txnId}`: inbound PDUs and EDUs.
//!
//! Each PDU goes through the spec's checks on receipt, in order: format,
//! signatures, content hash (a mismatch means the event is redacted before
//! anything else looks at it), the auth rules against its own auth events,
//! then against the state before it (inside the room's lock, like local
//! events). Rejected PDUs are answered with an error and never stored.

use super::FederationAuth;
use crate::api::Hs;
use crate::error::MatrixError;
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::Json;
use conifer_federation::{
    decode_pdu, parse_transaction, DecodedPdu, InboundTransaction, TransactionError,
};
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::PublicKeyMap;
use conifer_rooms::Pdu;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn send_transaction(
    hs: Hs,
    Path(txn_id): Path<String>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    let InboundTransaction { pdus, edus } = parse_transaction(auth.body.as_ref(), &auth.origin)
        .map_err(|e| match e {
            TransactionError::WrongOrigin => MatrixError::forbidden(e.to_string()),
            TransactionError::MissingBody | TransactionError::TooLarge => {
                MatrixError::bad_json(e.to_string())
            }
        })?;
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
    let decoded = decode_pdu(version, pdu)?;
    let id = decoded.event_id.clone();
    let checked = async {
        decoded.check_format()?;
        let keys = signing_keys(hs, &decoded).await?;
        decoded.verify(&keys)
    }
    .await;
    checked.map(|p| (id.clone(), p)).map_err(|e| (id, e))
}

/// The verify keys of every server that signed the event (those that cannot
/// be had are left out, and their signatures then fail to verify).
async fn signing_keys(hs: &Homeserver, pdu: &DecodedPdu) -> Result<PublicKeyMap, String> {
    let mut map: PublicKeyMap = BTreeMap::new();
    for (server, key_id) in pdu.signing_key_ids()? {
        if let Ok(key) = hs.verify_key(&server, &key_id).await {
            map.entry(server)
                .or_default()
                .insert(key_id, Base64::new(key.to_vec()));
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
