//! Any bytes as JSON into Ruma's canonical JSON conversion and the remote PDU
//! decoding the homeserver does (`decode_pdu`: event ID from the reference
//! hash; format, signature and hash checks; `Pdu::from_json`): no panic,
//! canonical JSON is idempotent, and a verified PDU keeps its event ID.
//! Seeds: fuzz/seeds/canonical_json/.
#![no_main]

use conifer_federation::decode_pdu;
use conifer_rooms::ruma::signatures::PublicKeyMap;
use conifer_rooms::ruma::{CanonicalJsonValue, OwnedEventId};
use conifer_rooms::{Pdu, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn canonical(v: Value) -> Option<String> {
    CanonicalJsonValue::try_from(v)
        .ok()
        .map(|c| serde_json::to_string(&c).expect("canonical JSON serializes"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(text) = canonical(v.clone()) {
        let again: Value = serde_json::from_str(&text).expect("canonical JSON is JSON");
        assert_eq!(canonical(again).as_deref(), Some(text.as_str()));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Pdu::from_json(OwnedEventId::try_from("$x").unwrap(), s.to_owned());
    }
    // No keys: every signature fails, but the whole path before it runs.
    let keys = PublicKeyMap::new();
    for version in SUPPORTED_VERSIONS {
        let Ok(decoded) = decode_pdu(version, v.clone()) else {
            continue;
        };
        let id = decoded.event_id.clone();
        let _ = decoded.check_format();
        let _ = decoded.signing_key_ids();
        if let Ok(pdu) = decoded.verify(&keys) {
            assert_eq!(pdu.event_id.as_str(), id);
        }
    }
});
