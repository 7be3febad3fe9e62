//! The parse-and-validate steps of inbound federation input that need no
//! network and no storage: a `/send` transaction body, and a remote PDU's
//! decoding, event ID, format, signatures and content hash. The homeserver
//! runs them around its key lookups; the fuzz targets run them directly.

use crate::{MAX_EDUS, MAX_PDUS};
use conifer_rooms::ruma::canonical_json::{redact, try_from_json_map};
use conifer_rooms::ruma::room_version_rules::RoomVersionRules;
use conifer_rooms::ruma::signatures::{reference_hash, verify_event, PublicKeyMap, Verified};
use conifer_rooms::ruma::state_res::check_pdu_format;
use conifer_rooms::ruma::{CanonicalJsonObject, OwnedEventId};
use conifer_rooms::{rules_for, Pdu};
use serde_json::Value;

/// The PDUs and EDUs of a `/send` transaction body, in the order sent.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundTransaction {
    pub pdus: Vec<Value>,
    pub edus: Vec<Value>,
}

/// Why a `/send` body is refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransactionError {
    #[error("missing transaction body")]
    MissingBody,
    #[error("a transaction carries at most 50 PDUs and 100 EDUs")]
    TooLarge,
    #[error("the transaction's origin does not match its signature")]
    WrongOrigin,
}

/// Reads a `/send` body sent (and signed) by `origin`: `pdus` and `edus`
/// that are absent or not arrays count as empty; more than [`MAX_PDUS`] or
/// [`MAX_EDUS`] refuses the transaction, and so does an `origin` field that
/// names another server.
pub fn parse_transaction(
    body: Option<&Value>,
    origin: &str,
) -> Result<InboundTransaction, TransactionError> {
    let body = body.ok_or(TransactionError::MissingBody)?;
    let list = |key: &str| {
        body.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (pdus, edus) = (list("pdus"), list("edus"));
    if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
        return Err(TransactionError::TooLarge);
    }
    if body
        .get("origin")
        .and_then(Value::as_str)
        .is_some_and(|o| o != origin)
    {
        return Err(TransactionError::WrongOrigin);
    }
    Ok(InboundTransaction { pdus, edus })
}

/// A remote PDU that is a canonical JSON object, with its event ID (the
/// reference hash under its room version's rules).
#[derive(Debug, Clone)]
pub struct DecodedPdu {
    pub event_id: String,
    pub object: CanonicalJsonObject,
    pub rules: RoomVersionRules,
}

/// Decodes a PDU of a room of `version` and computes its event ID. The error
/// carries a placeholder in place of the ID (there is none yet) and the reason.
pub fn decode_pdu(version: &str, pdu: Value) -> Result<DecodedPdu, (String, String)> {
    let Some((_, rules)) = rules_for(version) else {
        return Err((
            "<unsupported room>".into(),
            format!("unsupported room version {version}"),
        ));
    };
    let Value::Object(map) = pdu else {
        return Err(("<not an object>".into(), "the PDU is not an object".into()));
    };
    let object: CanonicalJsonObject = try_from_json_map(map).map_err(|e| {
        (
            "<not canonical>".to_owned(),
            format!("the PDU is not canonical JSON: {e}"),
        )
    })?;
    let event_id = reference_hash(&object, &rules)
        .map(|h| format!("${h}"))
        .map_err(|e| ("<unhashable>".to_owned(), e.to_string()))?;
    Ok(DecodedPdu {
        event_id,
        object,
        rules,
    })
}

impl DecodedPdu {
    /// The spec's format checks for the room version.
    pub fn check_format(&self) -> Result<(), String> {
        check_pdu_format(&self.object, &self.rules.event_format)
    }

    /// The `(server, key ID)` pairs of the PDU's signatures, whose verify
    /// keys [`DecodedPdu::verify`] needs; an error if it carries none.
    pub fn signing_key_ids(&self) -> Result<Vec<(String, String)>, String> {
        let signatures = self
            .object
            .get("signatures")
            .and_then(|s| s.as_object())
            .ok_or("the PDU is not signed")?;
        Ok(signatures
            .iter()
            .flat_map(|(server, sigs)| {
                sigs.as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .map(move |key_id| (server.clone(), key_id.clone()))
            })
            .collect())
    }

    /// Checks the signatures and the content hash with `keys` (a hash
    /// mismatch keeps only the redacted event) and decodes the result.
    pub fn verify(self, keys: &PublicKeyMap) -> Result<Pdu, String> {
        let DecodedPdu {
            event_id,
            mut object,
            rules,
        } = self;
        match verify_event(keys, &object, &rules).map_err(|e| format!("bad signature: {e}"))? {
            Verified::All => {}
            // The content was changed after signing: keep only the redacted form.
            Verified::Signatures => {
                object = redact(object, &rules.redaction, None).map_err(|e| e.to_string())?
            }
        }
        let event_id = OwnedEventId::try_from(event_id.as_str()).map_err(|e| e.to_string())?;
        let json = serde_json::to_string(&object).map_err(|e| e.to_string())?;
        Pdu::from_json(event_id, json).map_err(|e| e.to_string())
    }
}
