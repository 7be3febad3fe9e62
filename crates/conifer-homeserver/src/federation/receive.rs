//! `PUT /_matrix/federation/v1/send/{txnId}`: inbound PDUs and EDUs.
//!
//! Each PDU goes through the spec's checks on receipt, in order: format,
//! signatures, content hash (a mismatch means the event is redacted before
//! anything else looks at it), the auth rules against its own auth events,
//! then against the state before it (inside the room's lock, like local
//! events). Rejected PDUs are never stored.
//!
//! The answer, as Synapse gives it: `{}` for each PDU accepted, soft-failed
//! or rejected by the auth rules (it was processed), and an error only for
//! a PDU that could not be taken in at all: malformed, badly signed, of a
//! room this server is not in, or from a server the room's ACL denies.

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
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub async fn send_transaction(
    hs: Hs,
    Path(txn_id): Path<String>,
    auth: FederationAuth,
) -> Result<Json<Value>, MatrixError> {
    // As Synapse: a body that is not a transaction, or whose `origin` is not
    // the server that signed the request, is 400 `M_BAD_JSON`.
    if let Some(body) = &auth.body {
        let not_a_list = |key: &str| body.get(key).is_some_and(|v| !v.is_array());
        if !body.is_object() || not_a_list("pdus") || not_a_list("edus") {
            return Err(MatrixError::bad_json(
                "a transaction is an object with lists of pdus and edus",
            ));
        }
    }
    let InboundTransaction { pdus, edus } = parse_transaction(auth.body.as_ref(), &auth.origin)
        .map_err(|e| match e {
            TransactionError::WrongOrigin
            | TransactionError::MissingBody
            | TransactionError::TooLarge => MatrixError::bad_json(e.to_string()),
        })?;
    if !hs.store.record_inbound_txn(&auth.origin, &txn_id)? {
        return Ok(Json(json!({ "pdus": {} }))); // Already processed: idempotent.
    }
    // Signatures and hashes first (no room lock needed), then the auth
    // rules and storage in the order sent.
    let mut checked = Vec::with_capacity(pdus.len());
    let mut acl = AclMemo::default();
    for pdu in pdus {
        // Server ACLs apply to `/send` "on a per-PDU basis": a PDU of a room
        // that denies the origin is dropped before anything is fetched for it.
        let denied = pdu
            .get("room_id")
            .and_then(Value::as_str)
            .filter(|room| !acl.allows(&hs, room, &auth.origin))
            .map(str::to_owned);
        checked.push(match denied {
            Some(room_id) => (
                event_id_of(&hs, &room_id, pdu),
                Err(format!(
                    "M_FORBIDDEN: {} is denied by the server ACL of {room_id}",
                    auth.origin
                )),
            ),
            None => checked_pdu(&hs, pdu).await,
        });
    }
    // Which PDUs failed before the auth rules (in order, as the verdicts come).
    let refused: Vec<bool> = checked.iter().map(|(_, c)| c.is_err()).collect();
    let mut results = Map::new();
    let verdicts = super::ingest::accept_in_order(&hs, checked, &auth.origin).await;
    for ((id, outcome), refused) in verdicts.into_iter().zip(refused) {
        let entry = match outcome {
            Ok(()) => json!({}),
            Err(e) if refused => {
                tracing::info!(origin = %auth.origin, event = %id, error = %e, "refused a PDU");
                json!({ "error": e })
            }
            Err(e) => {
                tracing::info!(origin = %auth.origin, event = %id, error = %e, "rejected a PDU");
                json!({})
            }
        };
        results.insert(id, entry);
    }
    for edu in edus {
        receive_edu(&hs, &auth.origin, &edu, &mut acl);
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

/// A PDU's event ID under its room's version, or a placeholder.
fn event_id_of(hs: &Homeserver, room_id: &str, pdu: Value) -> String {
    let Some(version) = hs.room_version(room_id) else {
        return "<unknown room>".into();
    };
    match decode_pdu(&version, pdu) {
        Ok(decoded) => decoded.event_id,
        Err((placeholder, _)) => placeholder,
    }
}

/// Whether rooms' server ACLs allow the origin of one transaction, each
/// room looked up once.
#[derive(Default)]
struct AclMemo(HashMap<String, bool>);

impl AclMemo {
    fn allows(&mut self, hs: &Homeserver, room_id: &str, origin: &str) -> bool {
        if let Some(allowed) = self.0.get(room_id) {
            return *allowed;
        }
        // A room that cannot be read is not one to let anything into.
        let allowed = hs.server_allowed_in(room_id, origin).unwrap_or(false);
        self.0.insert(room_id.to_owned(), allowed);
        allowed
    }
}

/// Typing and read receipts from users of the sending server; those for a
/// room whose server ACL denies the origin are dropped.
fn receive_edu(hs: &Homeserver, origin: &str, edu: &Value, acl: &mut AclMemo) {
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
                && acl.allows(hs, room, origin)
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
                if !acl.allows(hs, room, origin) {
                    continue;
                }
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
